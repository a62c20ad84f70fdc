//! Clients under load through Envoy while a fault happens: each thread requests a token and
//! uses it at once (its first use is a check at a replica: a cache miss), on fresh
//! connections, until stopped. Every answer is kept with its time, so a test can say how many
//! errors the fault cost and when the last one was.

use crate::cluster::{fresh_connections, Cluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub what: &'static str,
    /// 0: no answer within the client's timeout (refused, reset or hung).
    pub status: u16,
}

#[derive(Default)]
struct Record {
    /// Every token the token endpoint answered 200 for, with when.
    acknowledged: Vec<(Instant, String)>,
    seen: Vec<Seen>,
}

pub struct Load {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What the load saw, once stopped.
pub struct Outcome {
    pub acknowledged: Vec<(Instant, String)>,
    pub seen: Vec<Seen>,
}

impl Load {
    pub fn start(cluster: &'static Cluster, threads: usize) -> Load {
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (record, stop) = (record.clone(), stop.clone());
                std::thread::spawn(move || run(cluster, &record, &stop))
            })
            .collect();
        Load {
            record,
            stop,
            threads,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Tokens acknowledged after `since`.
    pub fn acknowledged_after(&self, since: Instant) -> usize {
        self.with(|r| r.acknowledged.iter().filter(|(at, _)| *at > since).count())
    }

    /// How long the load has gone without an error, counted from `since` at the earliest.
    pub fn quiet_for(&self, since: Instant) -> Duration {
        let last_error = self.with(|r| {
            r.seen
                .iter()
                .filter(|s| s.status != 200)
                .map(|s| s.at)
                .max()
        });
        last_error.map_or(since, |at| at.max(since)).elapsed()
    }

    pub fn stop(mut self) -> Outcome {
        self.stop.store(true, Ordering::Release);
        for thread in std::mem::take(&mut self.threads) {
            // A load thread that panicked has recorded what it saw before.
            let _ = thread.join();
        }
        let record = std::mem::take(&mut *self.record.lock().unwrap_or_else(|p| p.into_inner()));
        Outcome {
            acknowledged: record.acknowledged,
            seen: record.seen,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn run(cluster: &Cluster, record: &Mutex<Record>, stop: &AtomicBool) {
    // Longer than the filter's 1 s check timeout: a slow answer is Envoy's to give.
    let client = fresh_connections(Duration::from_secs(5));
    let push = |seen: Seen, token: Option<String>| {
        let mut record = record.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = token {
            record.acknowledged.push((seen.at, token));
        }
        record.seen.push(seen);
    };
    while !stop.load(Ordering::Acquire) {
        let (status, token) = cluster.request_token(&client);
        let at = Instant::now();
        push(
            Seen {
                at,
                what: "token",
                status,
            },
            token.clone(),
        );
        let Some(token) = token else { continue };
        let status = cluster.use_token(&client, Some(&token));
        push(
            Seen {
                at: Instant::now(),
                what: "check",
                status,
            },
            None,
        );
    }
}

impl Outcome {
    pub fn errors(&self) -> Vec<&Seen> {
        self.seen.iter().filter(|s| s.status != 200).collect()
    }

    /// The errors as `what status at +ms` relative to `fault`, for the report.
    pub fn error_summary(&self, fault: Instant) -> Vec<String> {
        self.errors()
            .iter()
            .map(|s| {
                let (sign, ms) = if s.at >= fault {
                    ("+", (s.at - fault).as_millis())
                } else {
                    ("-", (fault - s.at).as_millis())
                };
                format!("{} {} at {sign}{ms} ms", s.what, s.status)
            })
            .collect()
    }

    /// From `fault` to the last error (zero when there was none after it).
    pub fn recovery(&self, fault: Instant) -> Duration {
        self.errors()
            .iter()
            .map(|s| s.at.saturating_duration_since(fault))
            .max()
            .unwrap_or_default()
    }
}
