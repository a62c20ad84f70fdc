//! The retry budget of the state poll (docs/gateway-protocol.md §1).
//!
//! The propagation bound (one poll interval plus one round trip) assumes the poll succeeds.
//! With several replicas, one that lost its database answers the poll 503 until Envoy's health
//! checker ejects it, which takes up to two check intervals: a poll that lands on it would
//! otherwise leave every revocation of that round waiting a whole interval more. A failed poll
//! is therefore asked again at once; Envoy's load balancer sends the new attempt to the next
//! replica. The budget is per service and per round, so a total outage costs a bounded number
//! of polls (answered at once by a replica without its database, or by Envoy itself).

use std::collections::HashMap;

/// Attempts after the first failure in one round. Envoy's round robin sends consecutive calls
/// to consecutive replicas, but every configuration's poller (and, in the wasm build, every
/// check of the worker) picks from the same rotation, so one poller's attempts can skip the
/// healthy replica: four retries reach it with three replicas of which two are failing and
/// two pollers taking turns, at a cost of five fast failures per round in a total outage.
pub const RETRIES_PER_ROUND: u8 = 4;

/// How many times each service's poll failed in the current round. An entry lives from a
/// failure to the next success or round, so there are never more than the services polled.
#[derive(Debug, Default)]
pub struct PollRetries {
    failed: HashMap<String, u8>,
}

impl PollRetries {
    /// A regular poll of `service` leaves (on the interval): a fresh budget.
    pub fn new_round(&mut self, service: &str) {
        self.failed.remove(service);
    }

    /// A poll of `service` got no usable answer: whether to ask again at once.
    pub fn retry_after_failure(&mut self, service: &str) -> bool {
        let failed = self.failed.entry(service.to_string()).or_insert(0);
        if *failed >= RETRIES_PER_ROUND {
            return false;
        }
        *failed += 1;
        true
    }

    /// A poll of `service` was answered: the next failure starts a new budget.
    pub fn succeeded(&mut self, service: &str) {
        self.failed.remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_poll_is_retried_at_once_within_the_round_budget() {
        let mut retries = PollRetries::default();
        retries.new_round("a");
        for _ in 0..RETRIES_PER_ROUND {
            assert!(retries.retry_after_failure("a"));
        }
        assert!(
            !retries.retry_after_failure("a"),
            "a failure past the budget waits for the next interval"
        );
        assert!(!retries.retry_after_failure("a"));
        retries.new_round("a");
        assert!(
            retries.retry_after_failure("a"),
            "the next round has a budget"
        );
    }

    #[test]
    fn an_answer_restores_the_budget_and_services_keep_their_own() {
        let mut retries = PollRetries::default();
        for _ in 0..RETRIES_PER_ROUND {
            assert!(retries.retry_after_failure("a"));
        }
        assert!(
            retries.retry_after_failure("b"),
            "another service's failures do not spend this one's budget"
        );
        retries.succeeded("a");
        for _ in 0..RETRIES_PER_ROUND {
            assert!(retries.retry_after_failure("a"));
        }
        assert!(!retries.retry_after_failure("a"));
        retries.succeeded("a");
        retries.succeeded("b");
        assert!(retries.failed.is_empty(), "answered services keep no entry");
    }
}
