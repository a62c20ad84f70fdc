//! Step On's login sessions, in memory and bounded so that nobody can push anyone else's out.
//!
//! The demo has no passwords: anyone may log in, as often as they like. So the table is bounded
//! without ever evicting a live session for a newcomer:
//! - each client address (an IPv6 client's /64) holds at most `per_client` sessions; past that
//!   its logins are refused ([`Refused::TooManyFromClient`]) until one of them ends;
//! - the whole table holds at most `capacity`; when it is full, logins are refused
//!   ([`Refused::Full`]), never granted by dropping someone's session;
//! - a session unused for `idle` ends (lazily: expired sessions are swept when a login needs
//!   room and dropped when presented), so refused clients get in again soon.
//!
//! Filling the table thus takes `capacity / per_client` addresses, and only delays new logins;
//! a logged-in session lasts until its owner logs out or leaves it idle.

use crate::random;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub capacity: usize,
    pub per_client: usize,
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            capacity: 10_000,
            per_client: 32,
            idle: Duration::from_secs(30 * 60),
        }
    }
}

/// A logged-in user, as the pages need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Bound to the session's forms (consent, logout), so another site cannot post them.
    pub csrf: String,
}

/// Why a login gets no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This client already holds `per_client` sessions.
    TooManyFromClient,
    /// The table holds `capacity` live sessions.
    Full,
    /// The system's random generator failed.
    Random(String),
}

/// Who a session counts against: the client's IPv4 address, or its IPv6 /64 (one host
/// usually has the whole /64, so counting single IPv6 addresses would bound nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl From<IpAddr> for Client {
    fn from(address: IpAddr) -> Client {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Client(IpAddr::V6(prefix.into()))
            }
            v4 => Client(v4),
        }
    }
}

struct Entry {
    session: Session,
    client: Client,
    last_used: Instant,
}

/// Sweeps run at most this often: a client refused in a loop must not make every one of its
/// attempts scan the whole table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Entry>,
    per_client: HashMap<Client, usize>,
    last_sweep: Option<Instant>,
}

pub struct Sessions {
    limits: Limits,
    table: Mutex<Table>,
}

impl Sessions {
    pub fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            table: Mutex::default(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session `id`, marked used at `now`; an idle one ends here.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut table = self.table();
        let entry = table.by_id.get_mut(id)?;
        if now.saturating_duration_since(entry.last_used) >= self.limits.idle {
            table.remove(id);
            return None;
        }
        entry.last_used = now;
        Some(entry.session.clone())
    }

    /// A new session for `user` from `client`, unless the limits say no: its id.
    pub fn start(&self, user: String, client: Client, now: Instant) -> Result<String, Refused> {
        let random = || random::token().map_err(|e| Refused::Random(e.to_string()));
        let (id, csrf) = (random()?, random()?);
        let mut table = self.table();
        if !table.has_room(&self.limits, client) {
            table.sweep(self.limits.idle, now);
        }
        if table.per_client.get(&client).copied().unwrap_or(0) >= self.limits.per_client {
            return Err(Refused::TooManyFromClient);
        }
        if table.by_id.len() >= self.limits.capacity {
            return Err(Refused::Full);
        }
        let entry = Entry {
            session: Session { user, csrf },
            client,
            last_used: now,
        };
        *table.per_client.entry(client).or_default() += 1;
        table.by_id.insert(id.clone(), entry);
        Ok(id)
    }

    /// Ends session `id` (logout, or a new login replacing it).
    pub fn end(&self, id: &str) {
        self.table().remove(id);
    }
}

impl Table {
    fn has_room(&self, limits: &Limits, client: Client) -> bool {
        self.by_id.len() < limits.capacity
            && self.per_client.get(&client).copied().unwrap_or(0) < limits.per_client
    }

    fn remove(&mut self, id: &str) {
        let Some(entry) = self.by_id.remove(id) else {
            return;
        };
        if let Some(count) = self.per_client.get_mut(&entry.client) {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&entry.client);
            }
        }
    }

    /// Drops every session idle for `idle` at `now` (unless a sweep ran within [`SWEEP_EVERY`]).
    fn sweep(&mut self, idle: Duration, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let expired: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.last_used) >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> Client {
        Client::from(address.parse::<IpAddr>().unwrap())
    }

    fn small() -> Sessions {
        Sessions::new(Limits {
            capacity: 4,
            per_client: 2,
            idle: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_client_past_its_share_is_refused_and_nobody_is_evicted() {
        let (sessions, now) = (small(), Instant::now());
        let clark = sessions
            .start("clark".into(), client("10.0.0.1"), now)
            .unwrap();
        let lex = client("10.0.0.2");
        sessions.start("lex".into(), lex, now).unwrap();
        sessions.start("lex".into(), lex, now).unwrap();
        for _ in 0..100 {
            let refused = sessions.start("lex".into(), lex, now);
            assert_eq!(refused, Err(Refused::TooManyFromClient));
        }
        assert_eq!(sessions.get(&clark, now).unwrap().user, "clark");
    }

    #[test]
    fn a_full_table_refuses_newcomers_and_keeps_everyone_in() {
        let (sessions, now) = (small(), Instant::now());
        let ids: Vec<String> = (1..=4)
            .map(|i| {
                let from = client(&format!("10.0.0.{i}"));
                sessions.start(format!("user{i}"), from, now).unwrap()
            })
            .collect();
        for i in 10..200 {
            let from = client(&format!("10.0.{i}.1"));
            let refused = sessions.start("lex".into(), from, now);
            assert_eq!(refused, Err(Refused::Full));
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                sessions.get(id, now).unwrap().user,
                format!("user{}", i + 1)
            );
        }
        // A logout makes room again.
        sessions.end(&ids[0]);
        assert!(sessions
            .start("lois".into(), client("10.0.9.1"), now)
            .is_ok());
    }

    #[test]
    fn idle_sessions_end_and_make_room_used_ones_stay() {
        let (sessions, start) = (small(), Instant::now());
        let lex = client("10.0.0.2");
        let first = sessions.start("lex".into(), lex, start).unwrap();
        let second = sessions.start("lex".into(), lex, start).unwrap();
        let later = start + Duration::from_secs(45);
        assert!(sessions.get(&second, later).is_some(), "used at 45 s");
        let after_idle = start + Duration::from_secs(60);
        // The first is idle for a minute now: swept to make room; the second was used.
        assert!(sessions.start("lex".into(), lex, after_idle).is_ok());
        assert!(sessions.get(&first, after_idle).is_none());
        assert!(sessions.get(&second, after_idle).is_some());
        let much_later = after_idle + Duration::from_secs(60);
        assert!(
            sessions.get(&second, much_later).is_none(),
            "idle for a minute"
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let (sessions, now) = (small(), Instant::now());
        sessions
            .start("a".into(), client("2001:db8:1:2::1"), now)
            .unwrap();
        sessions
            .start("a".into(), client("2001:db8:1:2::ffff"), now)
            .unwrap();
        let same_64 = sessions.start("a".into(), client("2001:db8:1:2:abcd::1"), now);
        assert_eq!(same_64, Err(Refused::TooManyFromClient));
        assert!(sessions
            .start("b".into(), client("2001:db8:1:3::1"), now)
            .is_ok());
        // An IPv4 client seen through an IPv6 socket is that IPv4 client.
        assert_eq!(client("::ffff:10.0.0.1"), client("10.0.0.1"));
    }

    #[test]
    fn ended_and_unknown_sessions_are_gone() {
        let (sessions, now) = (small(), Instant::now());
        let id = sessions
            .start("clark".into(), client("10.0.0.1"), now)
            .unwrap();
        let session = sessions.get(&id, now).unwrap();
        assert_eq!(session.csrf.len(), 32);
        sessions.end(&id);
        assert!(sessions.get(&id, now).is_none());
        assert!(sessions.get("nonsense", now).is_none());
    }
}
