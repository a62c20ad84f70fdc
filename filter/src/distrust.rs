//! JWTs the filter must no longer verify locally (docs/jwt-access-tokens.md §4): revoked,
//! deleted, refreshed away, or whose identity changed. Each is asked about (the §2 check)
//! until it expires. Bounded: when the set is full, the filter asks about **every** JWT until
//! the last entry it could not keep has expired (slower, never open); so does an answer's
//! `distrust_all`, until a later answer clears it.

use crate::cache::{digest_from_hex, TokenDigest};
use crate::jwt::CLOCK_SKEW_S;
use crate::state::StatePoll;
use std::collections::HashMap;

/// Entries one service's set keeps (each about 100 bytes with the map's overhead); an answer
/// carries at most 10 000.
pub const MAX_DISTRUSTED: usize = 16_384;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distrust {
    /// Raw JWT digest → the Unix second from which the JWT is refused anyway (`exp` + skew).
    entries: HashMap<TokenDigest, u64>,
    /// The latest answer's `distrust_all`.
    all: bool,
    /// Every JWT is asked about until then: entries were dropped for want of room (or could
    /// not be read), and a JWT they named may still be presented until this second.
    overflow_until: u64,
}

impl Distrust {
    /// Applies a state answer: a `reset` answer's list replaces the set, another's adds to it.
    /// Returns whether the set is incomplete and only a reset answer can complete it: after
    /// `distrust_all`, the entries from before it were never sent, so an incremental answer
    /// saying `false` does not clear it (the set keeps asking about every JWT); the caller
    /// polls once without a feed position instead.
    #[must_use]
    pub fn apply(&mut self, poll: &StatePoll, now: u64) -> bool {
        if poll.reset {
            self.entries.clear();
            self.overflow_until = 0;
        }
        let wants_complete_list = self.all && !poll.distrust_all && !poll.reset;
        if !wants_complete_list {
            self.all = poll.distrust_all;
        }
        if !poll.distrusted.is_empty() {
            self.prune(now);
        }
        for entry in &poll.distrusted {
            let until = entry.exp.saturating_add(CLOCK_SKEW_S);
            if until <= now {
                continue;
            }
            match digest_from_hex(&entry.digest) {
                Some(digest) if self.entries.len() < MAX_DISTRUSTED => {
                    self.entries.insert(digest, until);
                }
                // Full, or unreadable: whatever it named must not be verified locally.
                _ => self.overflow_until = self.overflow_until.max(until),
            }
        }
        wants_complete_list
    }

    /// Whether the JWT of this (raw, unscoped) digest must be asked about rather than verified.
    pub fn asks(&self, digest: &TokenDigest, now: u64) -> bool {
        self.all
            || now < self.overflow_until
            || self.entries.get(digest).is_some_and(|until| now < *until)
    }

    /// Drops the entries of JWTs that have expired (they are refused by `exp` anyway).
    fn prune(&mut self, now: u64) {
        self.entries.retain(|_, until| now < *until);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::digest;
    use crate::state::Distrusted;

    fn hex(d: &TokenDigest) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn answer(reset: bool, all: bool, list: &[(&str, u64)]) -> StatePoll {
        StatePoll {
            seq: 1,
            reset,
            revoked: vec![],
            service: None,
            plugin: None,
            issuer: None,
            keys: vec![],
            distrusted: list
                .iter()
                .map(|(t, exp)| Distrusted {
                    digest: hex(&digest(t)),
                    exp: *exp,
                })
                .collect(),
            distrust_all: all,
        }
    }

    #[test]
    fn entries_last_until_exp_plus_skew_and_a_reset_replaces_them() {
        let mut d = Distrust::default();
        let _ = d.apply(&answer(false, false, &[("a", 1000), ("b", 2000)]), 900);
        assert!(d.asks(&digest("a"), 1029));
        assert!(!d.asks(&digest("a"), 1030));
        assert!(!d.asks(&digest("c"), 900));
        let _ = d.apply(&answer(false, false, &[("c", 1500)]), 1100);
        assert_eq!(d.len(), 2, "a expired and was pruned; b and c stay");
        let _ = d.apply(&answer(true, false, &[("a", 3000)]), 1100);
        assert!(d.asks(&digest("a"), 1100) && !d.asks(&digest("b"), 1100));
    }

    #[test]
    fn distrust_all_asks_for_everything_until_cleared() {
        let mut d = Distrust::default();
        assert!(!d.apply(&answer(false, true, &[]), 0));
        assert!(d.asks(&digest("anything"), 0));
        // An incremental `false` cannot clear it: the entries from before were never sent.
        assert!(
            d.apply(&answer(false, false, &[]), 0),
            "asks for the complete list"
        );
        assert!(d.asks(&digest("anything"), 0), "never open meanwhile");
        assert!(!d.apply(&answer(true, false, &[("a", 3000)]), 0));
        assert!(!d.asks(&digest("anything"), 0));
        assert!(d.asks(&digest("a"), 0));
    }

    #[test]
    fn a_full_set_asks_for_every_jwt_until_the_dropped_entries_expire() {
        let mut d = Distrust::default();
        let names: Vec<String> = (0..=MAX_DISTRUSTED).map(|i| format!("t{i}")).collect();
        let list: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 5000)).collect();
        let _ = d.apply(&answer(false, false, &list), 100);
        assert_eq!(d.len(), MAX_DISTRUSTED);
        assert!(d.asks(&digest("never named"), 100), "never open");
        assert!(d.asks(&digest("never named"), 5029));
        assert!(!d.asks(&digest("never named"), 5030));
    }

    #[test]
    fn an_unreadable_digest_is_never_a_pass() {
        let mut d = Distrust::default();
        let mut poll = answer(false, false, &[]);
        poll.distrusted.push(Distrusted {
            digest: "not-hex".into(),
            exp: 500,
        });
        let _ = d.apply(&poll, 100);
        assert!(d.asks(&digest("x"), 100));
        assert!(!d.asks(&digest("x"), 530));
    }
}
