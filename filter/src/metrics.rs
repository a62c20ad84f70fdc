//! The filter's counters. Requests count into plain memory (no host call on the request path);
//! the root context adds them to Envoy's stats on every tick, so `/stats` lags by at most one
//! poll interval. Envoy shows each as `wasmcustom.<name>` (also in `/stats/prometheus`).

/// Every counter, with its Envoy stat name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests allowed upstream with a valid token.
    Allowed,
    /// Requests allowed as the anonymous consumer.
    AllowedAnonymous,
    /// Requests on routes without protection (no service, or no enabled plugin).
    Passed,
    DeniedMissing,
    DeniedInvalid,
    DeniedGlobalToken,
    DeniedBodyTooLarge,
    /// Requests answered 503 (or 500 for a misconfigured anonymous consumer).
    Unavailable,
    CacheHitWorker,
    CacheHitShared,
    /// Cache hits whose verdict was "invalid" (the negative cache).
    CacheHitNegative,
    CacheMiss,
    ChecksSent,
    CheckFailed,
    CheckTimeout,
    Relayed,
    RelayFailed,
    StatePolls,
    StatePollFailed,
    /// JWT access tokens verified by the filter itself (no call), cache hits not counted.
    JwtVerifiedLocally,
    /// Distrusted JWTs (revoked, changed, or `distrust_all`) asked about with a check.
    JwtCheckedRemotely,
}

pub const ALL: [Metric; 21] = [
    Metric::Allowed,
    Metric::AllowedAnonymous,
    Metric::Passed,
    Metric::DeniedMissing,
    Metric::DeniedInvalid,
    Metric::DeniedGlobalToken,
    Metric::DeniedBodyTooLarge,
    Metric::Unavailable,
    Metric::CacheHitWorker,
    Metric::CacheHitShared,
    Metric::CacheHitNegative,
    Metric::CacheMiss,
    Metric::ChecksSent,
    Metric::CheckFailed,
    Metric::CheckTimeout,
    Metric::Relayed,
    Metric::RelayFailed,
    Metric::StatePolls,
    Metric::StatePollFailed,
    Metric::JwtVerifiedLocally,
    Metric::JwtCheckedRemotely,
];

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Allowed => "oauth2.allowed",
            Metric::AllowedAnonymous => "oauth2.allowed_anonymous",
            Metric::Passed => "oauth2.passed",
            Metric::DeniedMissing => "oauth2.denied.missing_token",
            Metric::DeniedInvalid => "oauth2.denied.invalid_token",
            Metric::DeniedGlobalToken => "oauth2.denied.global_token",
            Metric::DeniedBodyTooLarge => "oauth2.denied.body_too_large",
            Metric::Unavailable => "oauth2.unavailable",
            Metric::CacheHitWorker => "oauth2.cache.hit_worker",
            Metric::CacheHitShared => "oauth2.cache.hit_shared",
            Metric::CacheHitNegative => "oauth2.cache.hit_negative",
            Metric::CacheMiss => "oauth2.cache.miss",
            Metric::ChecksSent => "oauth2.check.sent",
            Metric::CheckFailed => "oauth2.check.failed",
            Metric::CheckTimeout => "oauth2.check.timeout",
            Metric::Relayed => "oauth2.relay.sent",
            Metric::RelayFailed => "oauth2.relay.failed",
            Metric::StatePolls => "oauth2.state_poll.sent",
            Metric::StatePollFailed => "oauth2.state_poll.failed",
            Metric::JwtVerifiedLocally => "oauth2.jwt.verified_locally",
            Metric::JwtCheckedRemotely => "oauth2.jwt.checked_remotely",
        }
    }

    /// Its place in [`ALL`] (the declaration order).
    fn index(self) -> usize {
        self as usize
    }
}

/// Counts not yet added to Envoy's stats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pending: [u64; ALL.len()],
}

impl Counters {
    pub fn add(&mut self, metric: Metric) {
        if let Some(count) = self.pending.get_mut(metric.index()) {
            *count = count.saturating_add(1);
        }
    }

    /// Counted since the last call to `take`.
    pub fn get(&self, metric: Metric) -> u64 {
        self.pending.get(metric.index()).copied().unwrap_or(0)
    }

    /// The counts since the last call, each metric with its count (zeros left out); resets.
    pub fn take(&mut self) -> Vec<(Metric, u64)> {
        let taken = ALL
            .iter()
            .zip(self.pending.iter())
            .filter(|(_, count)| **count > 0)
            .map(|(metric, count)| (*metric, *count))
            .collect();
        self.pending = [0; ALL.len()];
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_prefixed() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.name().starts_with("oauth2."));
            assert_eq!(a.index(), i);
            for b in ALL.iter().skip(i + 1) {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn counts_are_taken_once() {
        let mut c = Counters::default();
        c.add(Metric::Allowed);
        c.add(Metric::Allowed);
        c.add(Metric::CacheMiss);
        assert_eq!(c.get(Metric::Allowed), 2);
        assert_eq!(c.take(), vec![(Metric::Allowed, 2), (Metric::CacheMiss, 1)]);
        assert!(c.take().is_empty());
    }
}
