//! What stands between an unauthenticated caller and the cost of checking a client secret
//! (security review, issue 18):
//!
//! - **A bounded hashing pool.** A `hash_secret` secret is checked with PBKDF2, ~10 ms of CPU
//!   by design. Run inline on a tokio worker, fifty connections presenting wrong secrets
//!   starved the runtime (relays and state polls timed out). PBKDF2 now runs on tokio's
//!   blocking threads, at most `hashers` at once (half the CPUs, so the async workers keep the
//!   other half), with at most `waiting` more queued behind them; a check beyond that is
//!   refused at once with 503 `temporarily_unavailable` and `Retry-After`, never queued without
//!   bound. 503 rather than 429: the pool is shared by every client, so being refused says
//!   nothing about this client's behaviour; it is the server that is busy, and the filter
//!   answers its own outages with the same 503 body.
//! - **A limit of failed authentications per client.** Every confidential client (hashed or
//!   not) may fail `burst` authentications, then one more per `refill_every`; beyond, its
//!   authentications are refused with 429 `invalid_client` and `Retry-After` *without looking at
//!   the secret*, so an online guess of a user-chosen secret gets ~10 tries per 10 s instead of
//!   thousands. Only failures count and each client has its own allowance: an attacker
//!   hammering one `client_id` never delays another client's authentications (the client
//!   attacked is refused until its allowance refills: the price of stopping the guess). Only
//!   `client_id`s of existing confidential clients get an entry, and at most
//!   [`MAX_TRACKED_CLIENTS`], so memory is bounded whatever ids are sprayed.
//!
//! Both are per process: with N PostgreSQL replicas behind one balancer, a client's allowance
//! is N times larger.

use super::error::OAuthError;
use crate::model::Credential;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Clients whose failures are tracked at most; see [`FailureLimiter::record_failure`].
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The guard of client authentication: one per process, shared by every request.
pub struct ClientAuthGuard {
    hashing: HashPool,
    failures: FailureLimiter,
}

impl Default for ClientAuthGuard {
    fn default() -> Self {
        ClientAuthGuard::new(HashPool::for_this_machine(), FailureLimit::default())
    }
}

impl ClientAuthGuard {
    pub fn new(hashing: HashPool, limit: FailureLimit) -> Self {
        ClientAuthGuard {
            hashing,
            failures: FailureLimiter::new(limit, MAX_TRACKED_CLIENTS),
        }
    }

    /// Checks `secret` against a confidential client's stored secret: refused unchecked when
    /// the client failed too often lately, or when PBKDF2 is needed and the pool is full.
    pub async fn verify(
        &self,
        client: &Credential,
        secret: &str,
        from_header: bool,
    ) -> Result<(), OAuthError> {
        if let Some(wait) = self.failures.refusal(&client.client_id, Instant::now()) {
            return Err(OAuthError::too_many_failed_authentications(
                whole_seconds(wait),
                from_header,
            ));
        }
        let quick = crate::secrets::verify_client_secret_quickly(
            secret,
            &client.client_secret,
            client.hash_secret,
        );
        let verified = match quick {
            Some(verified) => verified,
            None => {
                self.hashing
                    .verify(secret.to_owned(), client.client_secret.clone())
                    .await?
            }
        };
        if verified {
            return Ok(());
        }
        self.failures
            .record_failure(&client.client_id, Instant::now());
        Err(OAuthError::invalid_client(from_header))
    }
}

/// `Retry-After` is whole seconds; never 0 for a refusal.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// PBKDF2 checks off the async workers, at most `hashers` running and `waiting` queued.
/// Identical checks in flight (the same presented secret against the same stored one: a burst
/// of a client's own requests before its first check is remembered) share one computation, so
/// a legitimate client's concurrent requests never fill the pool, while distinct guesses do.
pub struct HashPool {
    /// Running or queued checks: taken without waiting, or the check is refused.
    admitted: Arc<Semaphore>,
    /// Running checks.
    hashing: Arc<Semaphore>,
    /// Checks in flight by what they compare (a digest, never the secret itself).
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::OnceCell<bool>>>>,
}

impl HashPool {
    pub fn new(hashers: usize, waiting: usize) -> HashPool {
        let hashers = hashers.max(1);
        HashPool {
            admitted: Arc::new(Semaphore::new(hashers + waiting)),
            hashing: Arc::new(Semaphore::new(hashers)),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Half the CPUs hash (at least one), each with eight checks (~80 ms) queued behind it.
    pub fn for_this_machine() -> HashPool {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let hashers = (cpus / 2).max(1);
        HashPool::new(hashers, 8 * hashers)
    }

    async fn verify(&self, presented: String, stored: String) -> Result<bool, OAuthError> {
        let key = flight_key(&presented, &stored);
        let flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        // One caller computes; the others wait for its answer. A refused computation (a full
        // pool) leaves the cell empty: the next waiter tries in its turn.
        let verified = flight
            .get_or_try_init(|| self.compute(presented, stored))
            .await
            .copied();
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            in_flight.remove(&key);
        }
        verified
    }

    async fn compute(&self, presented: String, stored: String) -> Result<bool, OAuthError> {
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            return Err(OAuthError::secret_checks_overloaded());
        };
        let running = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OAuthError::server_error())?;
        // Both permits go with the work: a caller that hangs up does not free a slot while its
        // PBKDF2 still runs.
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            crate::secrets::verify_client_secret(&presented, &stored, true)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a client secret check failed");
            OAuthError::server_error()
        })
    }
}

/// What an in-flight check compares, as a digest (length-prefixed, so no two pairs collide).
fn flight_key(presented: &str, stored: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update((stored.len() as u64).to_be_bytes());
    hasher.update(stored.as_bytes());
    hasher.update(presented.as_bytes());
    hasher.finalize().into()
}

/// How many failed authentications a client may make: `burst` at once, then one per
/// `refill_every` (a token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub burst: u32,
    pub refill_every: Duration,
}

impl Default for FailureLimit {
    /// Ten failures per ten seconds: a client with a mistyped secret notices long before, an
    /// online guess gets six tries a minute.
    fn default() -> Self {
        FailureLimit {
            burst: 10,
            refill_every: Duration::from_secs(1),
        }
    }
}

/// A client's remaining allowance of failures as of `at`.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    left: f64,
    at: Instant,
}

/// Failed authentications per `client_id`, in bounded memory.
pub struct FailureLimiter {
    limit: FailureLimit,
    max_clients: usize,
    clients: Mutex<HashMap<String, Allowance>>,
}

impl FailureLimiter {
    pub fn new(limit: FailureLimit, max_clients: usize) -> FailureLimiter {
        FailureLimiter {
            limit,
            max_clients,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long `client_id` must wait before its next authentication is looked at; `None`
    /// when it may authenticate now.
    pub fn refusal(&self, client_id: &str, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let left = self.left(clients.get(client_id)?, now);
        (left < 1.0).then(|| self.limit.refill_every.mul_f64(1.0 - left))
    }

    /// Takes one failure from `client_id`'s allowance. A client not tracked yet gets an entry;
    /// when [`MAX_TRACKED_CLIENTS`] are tracked, entries whose allowance refilled (they hold no
    /// refusal) make room first, and if all are still limited the new client goes untracked:
    /// memory stays bounded, and the hashing pool still bounds how fast anyone guesses.
    pub fn record_failure(&self, client_id: &str, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if !clients.contains_key(client_id) && clients.len() >= self.max_clients {
            clients.retain(|_, a| self.left(a, now) < f64::from(self.limit.burst));
            if clients.len() >= self.max_clients {
                tracing::warn!(
                    tracked = clients.len(),
                    "too many clients failing authentication to track one more"
                );
                return;
            }
        }
        let full = Allowance {
            left: f64::from(self.limit.burst),
            at: now,
        };
        let allowance = clients.entry(client_id.to_owned()).or_insert(full);
        *allowance = Allowance {
            left: (self.left(allowance, now) - 1.0).max(0.0),
            at: now,
        };
    }

    /// Clients with an entry (for tests and the bound).
    pub fn tracked(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn left(&self, allowance: &Allowance, now: Instant) -> f64 {
        let refilled = now.saturating_duration_since(allowance.at).as_secs_f64()
            / self.limit.refill_every.as_secs_f64().max(f64::MIN_POSITIVE);
        (allowance.left + refilled).min(f64::from(self.limit.burst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_clients: usize) -> FailureLimiter {
        FailureLimiter::new(FailureLimit::default(), max_clients)
    }

    #[test]
    fn ten_failures_then_refused_until_one_refills() {
        let l = limiter(100);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(l.refusal("a", t0), None);
            l.record_failure("a", t0);
        }
        assert_eq!(l.refusal("a", t0), Some(Duration::from_secs(1)));
        let half = t0 + Duration::from_millis(500);
        assert_eq!(l.refusal("a", half), Some(Duration::from_millis(500)));
        assert_eq!(l.refusal("a", t0 + Duration::from_secs(1)), None);
        // Another client's allowance is its own.
        assert_eq!(l.refusal("b", t0), None);
    }

    #[test]
    fn a_guesser_gets_one_try_per_second_after_the_burst() {
        let l = limiter(100);
        let t0 = Instant::now();
        let mut looked_at = 0;
        for ms in (0..60_000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            if l.refusal("a", now).is_none() {
                looked_at += 1;
                l.record_failure("a", now);
            }
        }
        // Ten at once, then one a second for a minute.
        assert!((69..=70).contains(&looked_at), "{looked_at}");
    }

    #[test]
    fn memory_is_bounded_and_limited_clients_are_kept() {
        let l = limiter(3);
        let t0 = Instant::now();
        for _ in 0..10 {
            l.record_failure("victim", t0);
        }
        let later = t0 + Duration::from_secs(20);
        for i in 0..1000 {
            l.record_failure(&format!("spray{i}"), later);
        }
        assert!(l.tracked() <= 3, "{}", l.tracked());
        // The victim refilled by then, so it could be dropped: limited entries are the ones kept.
        let l = limiter(3);
        for _ in 0..10 {
            l.record_failure("victim", t0);
        }
        for i in 0..1000 {
            l.record_failure(&format!("spray{i}"), t0);
        }
        assert!(l.tracked() <= 3);
        assert!(l.refusal("victim", t0).is_some());
    }

    /// A client's own burst (200 requests before its first check is remembered, as
    /// `faults::hundreds_of_concurrent_requests_lose_and_duplicate_nothing` sends) costs one
    /// PBKDF2 and none is refused, however small the pool; distinct wrong secrets still fill it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_checks_in_flight_share_one_computation() {
        let stored = crate::secrets::hash_client_secret("secret123", false);
        let pool = Arc::new(HashPool::new(1, 1));
        let same: Vec<_> = (0..200)
            .map(|_| {
                let (pool, stored) = (pool.clone(), stored.clone());
                tokio::spawn(async move { pool.verify("secret123".into(), stored).await })
            })
            .collect();
        for check in same {
            assert!(matches!(check.await, Ok(Ok(true))));
        }
        let guesses: Vec<_> = (0..20)
            .map(|i| {
                let (pool, stored) = (pool.clone(), stored.clone());
                tokio::spawn(async move { pool.verify(format!("guess{i}"), stored).await })
            })
            .collect();
        let mut refused = 0;
        for guess in guesses {
            match guess.await {
                Ok(Ok(verified)) => assert!(!verified),
                Ok(Err(_)) => refused += 1,
                Err(e) => unreachable!("{e}"),
            }
        }
        assert!(refused > 0, "distinct guesses still fill the pool");
        assert!(pool.in_flight.lock().unwrap().is_empty());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
    }
}
