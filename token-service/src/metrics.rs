//! The token-service's own metrics, served at `/metrics` on the admin listener in the
//! Prometheus text format (0.0.4).
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): a registry owned by
//! the [`crate::store::Store`] (no process-global recorder, so each store, and each unit test,
//! counts on its own), and its own text encoder (no HTTP listener of its own: the admin
//! router serves it behind the admin key).
//!
//! Every label value is known up front, so every series is created here, once, and the
//! handles kept in arrays indexed by enum: counting is one atomic add, with no look-up, lock
//! or allocation on the request paths (a family's own `get_or_create` would take a lock and
//! hash the labels on every call). Histograms take a lock, but only the writer thread
//! observes them, once per batch. Gauges of the index's size are read when scraped.

use crate::grants::error::ErrorCode;
use crate::grants::validity::Validity;
use crate::store::{IndexSize, Purged};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `Content-Type` of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// How a token came to be issued (the `grant` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
    /// The authorize endpoint's `response_type=token`.
    Implicit,
}

impl Grant {
    /// Every grant, in declaration order (so `grant as usize` indexes it).
    pub const ALL: [Grant; 5] = [
        Grant::AuthorizationCode,
        Grant::RefreshToken,
        Grant::ClientCredentials,
        Grant::Password,
        Grant::Implicit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::Password => "password",
            Grant::Implicit => "implicit",
        }
    }
}

/// What a token check answered (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Active,
    Invalid,
    GlobalToken,
    /// The service named in the check's path does not exist (a misconfigured route).
    UnknownService,
}

impl CheckOutcome {
    pub const ALL: [CheckOutcome; 4] = [
        CheckOutcome::Active,
        CheckOutcome::Invalid,
        CheckOutcome::GlobalToken,
        CheckOutcome::UnknownService,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CheckOutcome::Active => "active",
            CheckOutcome::Invalid => "invalid",
            CheckOutcome::GlobalToken => "global_token",
            CheckOutcome::UnknownService => "unknown_service",
        }
    }
}

impl From<Validity> for CheckOutcome {
    fn from(validity: Validity) -> Self {
        match validity {
            Validity::Active => CheckOutcome::Active,
            Validity::Invalid => CheckOutcome::Invalid,
            Validity::GlobalToken => CheckOutcome::GlobalToken,
        }
    }
}

/// The in-memory index's maps (the `map` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMap {
    Service,
    Credential,
    Token,
    /// The digests of every live token: a hit answered a check "invalid" (unknown, or
    /// expired) without a read; a miss left it to the token map.
    Digest,
}

impl IndexMap {
    pub const ALL: [IndexMap; 4] = [
        IndexMap::Service,
        IndexMap::Credential,
        IndexMap::Token,
        IndexMap::Digest,
    ];

    pub fn label(self) -> &'static str {
        match self {
            IndexMap::Service => "service",
            IndexMap::Credential => "credential",
            IndexMap::Token => "token",
            IndexMap::Digest => "digest",
        }
    }
}

/// `(kind label, rows)` of one purge, in the order of [`Metrics::purged_rows`].
fn purged_by_kind(purged: &Purged) -> [(&'static str, u64); 5] {
    [
        ("authorization_code", purged.authorization_codes),
        ("token", purged.tokens),
        ("retired_refresh_token", purged.retired_refresh_tokens),
        ("distrusted_jwt", purged.distrusted_jwts),
        ("change", purged.changes),
    ]
}

const HIT: usize = 0;
const MISS: usize = 1;

/// Writes per batch: 1, 2, 4, ... 512 (the store's largest batch).
fn batch_size_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 10)
}

/// 100 µs to ~3.3 s: an fsync on a quiet SSD is well under a millisecond, on a busy disk
/// it can take seconds.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 16)
}

type Labels = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Registry,
    tokens_issued: [Counter; Grant::ALL.len()],
    oauth_errors: [Counter; ErrorCode::ALL.len()],
    token_checks: [Counter; CheckOutcome::ALL.len()],
    state_polls: Counter,
    /// `[map][HIT or MISS]`.
    index_lookups: [[Counter; 2]; IndexMap::ALL.len()],
    index_entries: [Gauge; IndexMap::ALL.len()],
    index_bytes: [Gauge; IndexMap::ALL.len()],
    batch_size: Histogram,
    batch_duration: Histogram,
    commit_duration: Histogram,
    /// In [`purged_by_kind`]'s order.
    purged_rows: [Counter; 5],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A labelled family registered under `name`, with one series per `(label, value)` created
/// now (so each is exported from zero) and its handles returned in `values`' order.
fn family<M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [M; N]
where
    M: prometheus_client::registry::Metric
        + prometheus_client::metrics::TypedMetric
        + Clone
        + Default,
{
    let family = Family::<Labels, M>::default();
    let handles = values.map(|value| family.get_or_create_owned(&[(label, value)]));
    registry.register(name, help, family);
    handles
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("token_service");
        let r = &mut registry;
        let tokens_issued = family(
            r,
            "tokens_issued",
            "Access tokens issued, by grant",
            "grant",
            Grant::ALL.map(Grant::label),
        );
        let oauth_errors = family(
            r,
            "oauth_errors",
            "OAuth error answers of the authorize, token, introspection and revocation endpoints, by error code",
            "error",
            ErrorCode::ALL.map(ErrorCode::as_str),
        );
        let token_checks = family(
            r,
            "token_checks",
            "Token checks answered to the filter, by outcome",
            "outcome",
            CheckOutcome::ALL.map(CheckOutcome::label),
        );
        let state_polls = Counter::default();
        r.register(
            "state_polls",
            "State polls (plugin settings and change feed) answered to the filter",
            state_polls.clone(),
        );
        let lookups = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let index_lookups = IndexMap::ALL.map(|map| {
            ["hit", "miss"].map(|result| {
                lookups.get_or_create_owned(&[("map", map.label()), ("result", result)])
            })
        });
        r.register(
            "index_lookups",
            "Look-ups in the in-memory index, by map and result (a miss reads the database)",
            lookups,
        );
        let maps = IndexMap::ALL.map(IndexMap::label);
        let index_entries = family(
            r,
            "index_entries",
            "Entries the in-memory index holds, by map",
            "map",
            maps,
        );
        let index_bytes = family(
            r,
            "index_bytes",
            "Approximate bytes the in-memory index holds, by map",
            "map",
            maps,
        );
        let batch_size = Histogram::new(batch_size_buckets());
        r.register(
            "store_write_batch_size",
            "Writes committed together by the store's writer thread, per batch",
            batch_size.clone(),
        );
        let batch_duration = Histogram::new(duration_buckets());
        r.register(
            "store_write_batch_duration_seconds",
            "Time a write batch holds the write transaction, from BEGIN to its COMMIT returned",
            batch_duration.clone(),
        );
        let commit_duration = Histogram::new(duration_buckets());
        r.register(
            "store_commit_duration_seconds",
            "Time of a write batch's COMMIT (its fsync), which every write of the batch waits for",
            commit_duration.clone(),
        );
        let purged_rows = family(
            r,
            "purged_rows",
            "Expired rows deleted by the periodic purge, by kind",
            "kind",
            purged_by_kind(&Purged::default()).map(|(kind, _)| kind),
        );
        Metrics {
            registry,
            tokens_issued,
            oauth_errors,
            token_checks,
            state_polls,
            index_lookups,
            index_entries,
            index_bytes,
            batch_size,
            batch_duration,
            commit_duration,
            purged_rows,
        }
    }

    pub fn token_issued(&self, grant: Grant) {
        self.tokens_issued[grant as usize].inc();
    }

    pub fn oauth_error(&self, code: ErrorCode) {
        self.oauth_errors[code as usize].inc();
    }

    pub fn token_checked(&self, outcome: CheckOutcome) {
        self.token_checks[outcome as usize].inc();
    }

    pub fn state_polled(&self) {
        self.state_polls.inc();
    }

    /// A look-up in `map` answered from memory (`hit`) or not.
    pub fn index_lookup(&self, map: IndexMap, hit: bool) {
        self.index_lookups[map as usize][if hit { HIT } else { MISS }].inc();
    }

    /// One batch of the writer thread: `writes` jobs; `timing` when it committed:
    /// (BEGIN to COMMIT returned, the COMMIT alone).
    pub fn write_batch(&self, writes: usize, timing: Option<(Duration, Duration)>) {
        self.batch_size.observe(writes as f64);
        if let Some((batch, commit)) = timing {
            self.batch_duration.observe(batch.as_secs_f64());
            self.commit_duration.observe(commit.as_secs_f64());
        }
    }

    pub fn purged(&self, purged: &Purged) {
        for (counter, (_, rows)) in self.purged_rows.iter().zip(purged_by_kind(purged)) {
            counter.inc_by(rows);
        }
    }

    /// The text exposition, with the index's size as of now (`sizes` in [`IndexMap::ALL`]'s
    /// order).
    pub fn render(&self, sizes: [IndexSize; IndexMap::ALL.len()]) -> String {
        for ((entries, bytes), size) in self.index_entries.iter().zip(&self.index_bytes).zip(sizes)
        {
            entries.set(saturating_i64(size.entries));
            bytes.set(saturating_i64(size.bytes));
        }
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail, and the registry holds only well-formed metrics.
        if prometheus_text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed");
        }
        text
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `GET /metrics` (admin listener).
pub async fn serve(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let text = state.store.render_metrics();
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `series` (name and labels, exactly as exported).
    fn sample(text: &str, series: &str) -> f64 {
        let found = text.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        });
        found
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    }

    fn no_index() -> [IndexSize; 4] {
        [IndexSize::default(); 4]
    }

    #[test]
    fn enum_discriminants_index_their_all_lists() {
        for (i, g) in Grant::ALL.iter().enumerate() {
            assert_eq!(*g as usize, i);
        }
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{}", c.as_str());
        }
        for (i, o) in CheckOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, m) in IndexMap::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
    }

    #[test]
    fn every_series_is_exported_from_zero() {
        let text = Metrics::new().render(no_index());
        for grant in Grant::ALL {
            let series = format!(
                "token_service_tokens_issued_total{{grant=\"{}\"}}",
                grant.label()
            );
            assert_eq!(sample(&text, &series), 0.0);
        }
        for code in ErrorCode::ALL {
            let series = format!(
                "token_service_oauth_errors_total{{error=\"{}\"}}",
                code.as_str()
            );
            assert_eq!(sample(&text, &series), 0.0);
        }
        assert_eq!(sample(&text, "token_service_state_polls_total"), 0.0);
        assert_eq!(
            sample(&text, "token_service_store_write_batch_size_count"),
            0.0
        );
        assert!(text.contains("# TYPE token_service_store_commit_duration_seconds histogram\n"));
    }

    #[test]
    fn counters_count_under_their_own_labels_only() {
        let m = Metrics::new();
        m.token_issued(Grant::Password);
        m.token_issued(Grant::Password);
        m.token_issued(Grant::Implicit);
        m.oauth_error(ErrorCode::InvalidClient);
        m.token_checked(CheckOutcome::from(Validity::GlobalToken));
        m.token_checked(CheckOutcome::UnknownService);
        m.state_polled();
        m.index_lookup(IndexMap::Token, true);
        m.index_lookup(IndexMap::Token, false);
        m.index_lookup(IndexMap::Token, false);
        m.purged(&Purged {
            tokens: 3,
            changes: 7,
            ..Purged::default()
        });
        let text = m.render(no_index());
        for (series, value) in [
            ("token_service_tokens_issued_total{grant=\"password\"}", 2.0),
            ("token_service_tokens_issued_total{grant=\"implicit\"}", 1.0),
            (
                "token_service_tokens_issued_total{grant=\"authorization_code\"}",
                0.0,
            ),
            (
                "token_service_oauth_errors_total{error=\"invalid_client\"}",
                1.0,
            ),
            (
                "token_service_oauth_errors_total{error=\"invalid_request\"}",
                0.0,
            ),
            (
                "token_service_token_checks_total{outcome=\"global_token\"}",
                1.0,
            ),
            (
                "token_service_token_checks_total{outcome=\"unknown_service\"}",
                1.0,
            ),
            ("token_service_token_checks_total{outcome=\"active\"}", 0.0),
            ("token_service_state_polls_total", 1.0),
            (
                "token_service_index_lookups_total{map=\"token\",result=\"hit\"}",
                1.0,
            ),
            (
                "token_service_index_lookups_total{map=\"token\",result=\"miss\"}",
                2.0,
            ),
            (
                "token_service_index_lookups_total{map=\"service\",result=\"miss\"}",
                0.0,
            ),
            ("token_service_purged_rows_total{kind=\"token\"}", 3.0),
            ("token_service_purged_rows_total{kind=\"change\"}", 7.0),
            (
                "token_service_purged_rows_total{kind=\"authorization_code\"}",
                0.0,
            ),
        ] {
            assert_eq!(sample(&text, series), value, "{series}");
        }
    }

    #[test]
    fn batches_fill_the_histograms() {
        let m = Metrics::new();
        m.write_batch(
            1,
            Some((Duration::from_millis(3), Duration::from_millis(2))),
        );
        m.write_batch(
            300,
            Some((Duration::from_millis(30), Duration::from_millis(20))),
        );
        m.write_batch(2, None);
        let text = m.render(no_index());
        let batch = "token_service_store_write_batch_size";
        assert_eq!(sample(&text, &format!("{batch}_count")), 3.0);
        assert_eq!(sample(&text, &format!("{batch}_sum")), 303.0);
        assert_eq!(sample(&text, &format!("{batch}_bucket{{le=\"1\"}}")), 1.0);
        assert_eq!(sample(&text, &format!("{batch}_bucket{{le=\"2\"}}")), 2.0);
        assert_eq!(sample(&text, &format!("{batch}_bucket{{le=\"256\"}}")), 2.0);
        assert_eq!(sample(&text, &format!("{batch}_bucket{{le=\"512\"}}")), 3.0);
        let commit = "token_service_store_commit_duration_seconds";
        assert_eq!(
            sample(&text, &format!("{commit}_count")),
            2.0,
            "only committed batches"
        );
        assert!((sample(&text, &format!("{commit}_sum")) - 0.022).abs() < 1e-9);
        let whole = "token_service_store_write_batch_duration_seconds";
        assert!((sample(&text, &format!("{whole}_sum")) - 0.033).abs() < 1e-9);
    }

    #[test]
    fn the_index_size_is_read_at_each_render() {
        let m = Metrics::new();
        let sizes = |tokens| {
            [
                IndexSize::default(),
                IndexSize {
                    entries: 1,
                    bytes: 200,
                },
                IndexSize {
                    entries: tokens,
                    bytes: tokens * 300,
                },
                IndexSize::default(),
            ]
        };
        let text = m.render(sizes(4));
        assert_eq!(
            sample(&text, "token_service_index_entries{map=\"token\"}"),
            4.0
        );
        assert_eq!(
            sample(&text, "token_service_index_bytes{map=\"token\"}"),
            1200.0
        );
        assert_eq!(
            sample(&text, "token_service_index_bytes{map=\"credential\"}"),
            200.0
        );
        let text = m.render(sizes(0));
        assert_eq!(
            sample(&text, "token_service_index_entries{map=\"token\"}"),
            0.0
        );
    }

    /// The exposition format's line grammar, as Prometheus reads it: comments are HELP or
    /// TYPE, and every sample belongs to the family the TYPE before it declared.
    #[test]
    fn every_sample_follows_its_type_line() {
        let text = Metrics::new().render(no_index());
        let mut family: Option<(String, String)> = None;
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                family = Some((name.to_string(), kind.to_string()));
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, kind) = family.as_ref().expect("a TYPE before any sample");
            let series = line.rsplit_once(' ').expect("name value").0;
            let metric = series.split('{').next().unwrap_or_default();
            let allowed = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| metric.strip_suffix(s) == Some(name)),
                _ => metric == name,
            };
            assert!(allowed, "{line} after # TYPE {name} {kind}");
            assert!(metric.starts_with("token_service_"), "{line}");
            samples += 1;
        }
        assert!(samples > 40, "{samples}");
    }
}
