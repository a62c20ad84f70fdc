//! How state polls reach the workers. The wasm build polls once per worker (each VM is an
//! island); natively, one poller on Envoy's main thread polls each service and *publishes* every
//! answer here, and each worker thread applies what it has not seen yet through the same
//! [`oauth2_filter::flow::Worker::apply_poll`] before it decides anything (one atomic load when
//! nothing is new). So a revocation reaches every worker within the poll interval plus one round
//! trip, as in the wasm build, with one poll per service instead of one per worker.
//!
//! The feed also keeps the services to poll: the filter's default one, and every service a
//! route named to any worker.

use oauth2_filter::distrust::Distrust;
use oauth2_filter::flow::worker::MAX_SERVICES;
use oauth2_filter::state::{Protection, StatePoll};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Answers kept for workers that have not caught up. A worker further behind drops its own
/// cache copy and applies what is left (see [`Catchup::missed`]).
const KEPT: usize = 256;

#[derive(Default)]
pub struct Feed {
    /// The generation of the newest answer (0: none yet).
    latest: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (generation, service, answer, whether it moved the cache epoch).
    entries: VecDeque<(u64, String, StatePoll, bool)>,
    /// Every service to poll, with the change-feed position of its latest answer.
    services: BTreeMap<String, i64>,
    /// The settings of each service's latest answer.
    protections: BTreeMap<String, Protection>,
    /// Each service's latest answer and its generation, for a worker that missed answers:
    /// the entries may have dropped a service's only recent one (a service whose polls fail
    /// while the others' go on).
    newest: BTreeMap<String, (u64, StatePoll)>,
    /// Each service's complete distrust set, as of the latest answer: a worker that missed
    /// answers cannot rebuild it from what the entries still hold, and a JWT distrusted in a
    /// dropped answer must never be verified locally again.
    distrust: BTreeMap<String, Distrust>,
}

/// What a worker has to apply to be current.
#[derive(Debug, Default)]
pub struct Catchup {
    /// (service, answer, whether the poller moved the cache epoch for it).
    pub polls: Vec<(String, StatePoll, bool)>,
    /// Answers it never saw were dropped: their revocations may be missing from the worker's
    /// own copy of the cache, which it must therefore clear. (The poller evicted them from
    /// shared data when it published them, and `polls` then starts with each service's newest
    /// answer, which carries its full settings.)
    pub missed: bool,
    pub latest: u64,
    /// When `missed`: every service's complete distrust set, to replace the worker's after it
    /// applied `polls`.
    pub distrust: Vec<(String, Distrust)>,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a service to poll; `false` when as many are polled as a worker may track.
    pub fn register(&self, service: &str) -> bool {
        let mut inner = self.lock();
        if inner.services.contains_key(service) {
            return true;
        }
        if inner.services.len() >= MAX_SERVICES {
            return false;
        }
        inner.services.insert(service.to_string(), 0);
        true
    }

    /// Every service to poll, with the position to poll from.
    pub fn services(&self) -> Vec<(String, i64)> {
        self.lock()
            .services
            .iter()
            .map(|(s, seq)| (s.clone(), *seq))
            .collect()
    }

    /// Publishes a state answer for every worker; `bump_epoch` runs once when the answer
    /// resets the feed or changes the service's settings (every cache entry then goes, once,
    /// whenever each worker applies it).
    pub fn publish(&self, service: &str, poll: StatePoll, bump_epoch: impl FnOnce()) {
        let mut inner = self.lock();
        let mut next_since = poll.seq;
        let protection = poll.protection();
        let bumped = poll.reset || inner.protections.get(service) != Some(&protection);
        if bumped {
            bump_epoch();
        }
        let generation = self.latest.load(Ordering::Acquire).wrapping_add(1);
        if inner.protections.contains_key(service) || inner.protections.len() < MAX_SERVICES {
            let wants_complete_list = inner
                .distrust
                .entry(service.to_string())
                .or_default()
                .apply(&poll, unix_now());
            if wants_complete_list {
                // A negative position asks for a reset answer (jwt-access-tokens.md §4).
                next_since = -1;
            }
            inner.protections.insert(service.to_string(), protection);
            inner
                .newest
                .insert(service.to_string(), (generation, poll.clone()));
        }
        if let Some(seq) = inner.services.get_mut(service) {
            *seq = next_since;
        }
        inner
            .entries
            .push_back((generation, service.to_string(), poll, bumped));
        while inner.entries.len() > KEPT {
            inner.entries.pop_front();
        }
        // Published under the lock, so a worker that sees the generation finds its entry.
        self.latest.store(generation, Ordering::Release);
    }

    /// The newest generation: a worker that applied it has nothing to do.
    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::Acquire)
    }

    /// Everything after generation `applied`.
    pub fn since(&self, applied: u64) -> Catchup {
        let inner = self.lock();
        let oldest = inner.entries.front().map_or(0, |(g, _, _, _)| *g);
        let missed = oldest > applied.saturating_add(1);
        // Dropped, but still the newest of its service: applied first, as a plain answer (the
        // worker reads the current epoch from shared data when it applies it).
        let dropped_newest = inner
            .newest
            .iter()
            .filter(|(_, (g, _))| missed && *g > applied && *g < oldest)
            .map(|(s, (_, p))| (s.clone(), p.clone(), false));
        let kept = inner
            .entries
            .iter()
            .filter(|(g, _, _, _)| *g > applied)
            .map(|(_, s, p, bumped)| (s.clone(), p.clone(), *bumped));
        let distrust = match missed {
            true => inner
                .distrust
                .iter()
                .map(|(s, d)| (s.clone(), d.clone()))
                .collect(),
            false => Vec::new(),
        };
        Catchup {
            polls: dropped_newest.chain(kept).collect(),
            missed,
            latest: self.latest(),
            distrust,
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(seq: i64) -> StatePoll {
        StatePoll {
            seq,
            reset: false,
            revoked: vec![format!("{seq:064x}")],
            service: None,
            plugin: None,
            issuer: None,
            keys: vec![],
            distrusted: vec![],
            distrust_all: false,
        }
    }

    #[test]
    fn workers_catch_up_in_order() {
        let feed = Feed::default();
        assert!(feed.register("a"));
        assert!(feed.register("a"));
        assert_eq!(feed.services(), vec![("a".to_string(), 0)]);
        assert_eq!(feed.latest(), 0);
        assert!(feed.since(0).polls.is_empty());

        feed.publish("a", poll(4), || {});
        feed.publish("a", poll(7), || {});
        assert_eq!(feed.services(), vec![("a".to_string(), 7)]);
        let all = feed.since(0);
        assert!(!all.missed);
        assert_eq!(all.latest, 2);
        let seqs: Vec<i64> = all.polls.iter().map(|(_, p, _)| p.seq).collect();
        assert_eq!(seqs, vec![4, 7]);
        let rest = feed.since(1);
        assert_eq!(rest.polls.len(), 1);
        assert!(feed.since(2).polls.is_empty());
    }

    #[test]
    fn a_worker_far_behind_knows_it_missed_answers() {
        let feed = Feed::default();
        feed.register("a");
        for seq in 0..(KEPT as i64 + 10) {
            feed.publish("a", poll(seq), || {});
        }
        let catchup = feed.since(0);
        assert!(catchup.missed);
        assert_eq!(catchup.polls.len(), KEPT);
        let current = feed.since(catchup.latest - 1);
        assert!(!current.missed);
    }

    #[test]
    fn a_worker_far_behind_gets_the_newest_answer_of_a_service_that_went_quiet() {
        let feed = Feed::default();
        feed.register("quiet");
        feed.register("busy");
        feed.publish("quiet", poll(3), || {});
        for seq in 0..(KEPT as i64 + 10) {
            feed.publish("busy", poll(seq), || {});
        }
        let catchup = feed.since(0);
        assert!(catchup.missed);
        let first = catchup.polls.first().map(|(s, p, _)| (s.as_str(), p.seq));
        assert_eq!(first, Some(("quiet", 3)));
        assert_eq!(catchup.polls.len(), KEPT + 1);
        // A worker that saw it gets nothing twice.
        let after = feed.since(2);
        assert!(after.polls.iter().all(|(s, _, _)| s == "busy"));
    }

    #[test]
    fn bounded_services() {
        let feed = Feed::default();
        for i in 0..MAX_SERVICES {
            assert!(feed.register(&format!("s{i}")));
        }
        assert!(!feed.register("one-too-many"));
    }
}
