//! Storage: SQLite (one file, the embedded default) or PostgreSQL (several replicas on one
//! server), behind [`Store`].
//!
//! Handlers never see SQL or a database's types: they run a closure against a [`Repo`], whose
//! methods are the whole storage vocabulary (consumers, services, plugins, credentials, codes,
//! tokens, the change feed), written once over [`sql::Sql`] for both backends.
//!
//! Both backends give writes the same guarantees: each write runs in its own savepoint of a
//! group-committed transaction on one writer thread per process, so an acknowledged write is
//! durable, a failing write rolls back alone, and what a write read it also decided on. Reads
//! run on a small pool of connections on tokio's blocking pool. No lock is held across an
//! `.await`. See [`sqlite`] and [`postgres`] for what each does to keep the in-memory
//! [`Index`] exact.

mod index;
mod postgres;
mod repo;
mod schema;
mod signing_keys;
pub(crate) mod sql;
mod sqlite;
#[cfg(test)]
pub(crate) mod testing;

pub use index::{Index, IndexSize, IndexedToken, Presence, ProtectedService, DEFAULT_MAX_DIGESTS};
pub use repo::{
    FeedChange, FeedPage, NewCode, NewToken, Page, Purged, Repo, RetiredRefresh, TokenWithOwner,
};
pub use signing_keys::SigningKeyRow;

use crate::metrics::{IndexMap, Metrics};
use crate::model::{Credential, MAX_IDENTIFIER_BYTES};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint failed; carries the column (`username`, `client_id`, ...).
    #[error("unique constraint violation on {0}")]
    Conflict(String),
    /// A foreign key pointed nowhere (e.g. a token for an unknown credential).
    #[error("referenced entity does not exist")]
    MissingReference,
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The row an update names is gone (deleted meanwhile).
    #[error("the row to update does not exist")]
    NotFound,
    #[error("storage task failed: {0}")]
    Task(String),
    /// The database cannot be reached (refused, lost, timed out, shutting down): nothing is
    /// wrong with the request, and the same request may succeed shortly. Answered 503 (the
    /// OAuth endpoints' `temporarily_unavailable`), never a 500.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The same failure for one more caller (a batch's commit fails every write in it):
    /// unavailability stays unavailability, anything else is reported as it was.
    fn for_another_caller(&self) -> StoreError {
        match self {
            StoreError::Unavailable(what) => StoreError::Unavailable(what.clone()),
            other => StoreError::Task(other.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where the data lives: `postgres://...` (or `postgresql://...`) is a PostgreSQL server,
/// anything else a SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::str::FromStr for Database {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<::postgres::Config>()
                .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
            Ok(Database::Postgres(text.to_string()))
        } else if text.is_empty() {
            Err("the database is a file path or a postgres:// URL".into())
        } else {
            Ok(Database::Sqlite(PathBuf::from(text)))
        }
    }
}

impl std::fmt::Display for Database {
    /// A URL is shown without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("***"));
                    write!(f, "{parsed}")
                }
                _ => write!(f, "{url}"),
            },
        }
    }
}

/// How a store is run.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Tokens the in-memory index holds at most.
    pub index_entries: usize,
    /// PostgreSQL: how often a replica reads the changes other replicas committed.
    pub feed_poll: Duration,
    /// Live tokens whose digests the index holds at most (all of them, so that an unknown
    /// token is refused without a read); beyond it, unknown tokens' checks read.
    pub max_token_digests: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            index_entries: DEFAULT_INDEX_ENTRIES,
            feed_poll: DEFAULT_FEED_POLL,
            max_token_digests: DEFAULT_MAX_DIGESTS,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// At most `READER_POOL` reads at once, so their connections are always reused: a burst
    /// of requests queues here instead of opening (and closing) a connection per read.
    read_permits: Arc<tokio::sync::Semaphore>,
    /// PostgreSQL: one catch-up at a time. Requests waiting for it wait here, on the async
    /// runtime, holding neither a connection nor a blocking thread; most find, once their turn
    /// comes, that the catch-up before them did their work.
    catching_up: tokio::sync::Mutex<()>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Postgres>),
}

/// Tokens the in-memory index holds at most by default.
pub const DEFAULT_INDEX_ENTRIES: usize = 65_536;
/// How often a PostgreSQL replica reads other replicas' changes by default.
pub const DEFAULT_FEED_POLL: Duration = Duration::from_millis(100);

const READER_POOL: usize = 8;
/// PostgreSQL: unknown tokens wait for a feed read begun after they arrived (a token another
/// replica just issued is known once it is done); such reads begin at most this often, so a
/// flood of made-up tokens costs at most one small read per interval, not one per token.
const UNKNOWN_TOKEN_FEED_READ_INTERVAL: Duration = Duration::from_millis(10);
/// Rows of each kind one SQLite purge write deletes at most (the writer interleaves others).
const PURGE_BATCH: i64 = 1_000;

/// A write waiting for the writer thread: runs on a savepoint, says whether it succeeded, and
/// hands back how to deliver its result once the batch's commit is known.
type Job = Box<dyn FnOnce(&Repo<'_>) -> (bool, Deliver) + Send>;
type Deliver = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// The next batch for a writer thread: the first write waiting (blocking), then every other
/// one already waiting, up to `max`; `None` once the store is gone.
fn next_batch(queue: &std::sync::mpsc::Receiver<Job>, max: usize) -> Option<Vec<Job>> {
    let mut batch = vec![queue.recv().ok()?];
    while batch.len() < max {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Answers every write of a batch with the batch's commit.
fn deliver_all(delivers: Vec<Deliver>, commit: StoreResult<(Duration, Duration)>) {
    let commit = commit.map(drop).inspect_err(|e| {
        tracing::error!(error = %e, "a write batch failed to commit");
    });
    for deliver in delivers {
        deliver(
            commit
                .as_ref()
                .map(|_| ())
                .map_err(StoreError::for_another_caller),
        );
    }
}

impl Store {
    /// Opens (creating if needed) a SQLite file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Store> {
        Store::open_sqlite(path, &StoreOptions::default())
    }

    fn open_sqlite(path: &Path, options: &StoreOptions) -> StoreResult<Store> {
        let (index, metrics) = Store::parts(options);
        let backend = sqlite::Sqlite::open(path, index.clone(), metrics.clone())?;
        Ok(Store::with(Backend::Sqlite(backend), index, metrics))
    }

    /// Opens the database (either kind), migrating its schema; PostgreSQL is connected to
    /// off the async runtime (its client blocks).
    pub async fn connect(database: &Database, options: StoreOptions) -> StoreResult<Store> {
        match database {
            Database::Sqlite(path) => Store::open_sqlite(path, &options),
            Database::Postgres(url) => {
                let url = url.clone();
                run_blocking(move || {
                    let (index, metrics) = Store::parts(&options);
                    let backend = postgres::Postgres::connect(
                        &url,
                        options.feed_poll,
                        index.clone(),
                        metrics.clone(),
                    )?;
                    Ok(Store::with(
                        Backend::Postgres(Box::new(backend)),
                        index,
                        metrics,
                    ))
                })
                .await
            }
        }
    }

    fn parts(options: &StoreOptions) -> (Arc<Index>, Arc<Metrics>) {
        (
            Arc::new(Index::new(options.index_entries).with_max_digests(options.max_token_digests)),
            Arc::new(Metrics::new()),
        )
    }

    fn with(backend: Backend, index: Arc<Index>, metrics: Arc<Metrics>) -> Store {
        Store {
            inner: Arc::new(Inner {
                backend,
                read_permits: Arc::new(tokio::sync::Semaphore::new(READER_POOL)),
                catching_up: tokio::sync::Mutex::new(()),
                index,
                metrics,
            }),
        }
    }

    /// Runs `f` in a write transaction; its changes are committed (durably) when it returns
    /// `Ok`, and rolled back alone when it returns `Err`.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Repo<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.transaction(f).await
    }

    /// [`Store::write`] for a caller's own error type: `f` reads, decides and writes in one
    /// write transaction (so a read-modify-write cannot lose a concurrent update), and any
    /// `Err` it returns (a validation error, say) rolls back whatever it wrote.
    pub async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Repo<'_>) -> Result<T, E> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |repo: &Repo<'_>| {
            let result = f(repo);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |commit: StoreResult<()>| {
                let committed = commit.map_err(E::from);
                let _ = answer.send(committed.and(result));
            });
            (ok, deliver)
        });
        match &self.inner.backend {
            Backend::Sqlite(db) => db.submit(job)?,
            Backend::Postgres(db) => db.submit(job)?,
        }
        answered
            .await
            // The writer drops the writes it could not run: their batch lost its connection.
            .map_err(|_| {
                StoreError::Unavailable("the write was not run (its connection failed)".into())
            })?
    }

    /// Makes sure the in-memory index has applied the change feed up to `position`, a feed
    /// position the filter holds (docs/gateway-protocol.md: `x-oauth2-feed-position`). With
    /// PostgreSQL the filter may have learned a revocation from another replica before this
    /// one's follower read it: the index then catches up (one read) before it answers, so no
    /// answer older than what the filter knows is cached again. SQLite's index is always
    /// current.
    pub async fn catch_up(&self, position: i64) -> StoreResult<()> {
        let Backend::Postgres(db) = &self.inner.backend else {
            return Ok(());
        };
        if db.applied() >= position {
            return Ok(());
        }
        let ticket = db.catch_up_ticket();
        let _turn = self.inner.catching_up.lock().await;
        if db.caught_up(position, ticket) {
            return Ok(());
        }
        self.read_the_feed(position, ticket).await
    }

    /// PostgreSQL: waits until the index has applied a feed read begun after `ticket` was
    /// taken (as a request arrived), so it holds every token committed before: then a digest
    /// it lacks is no token's. Such reads begin at most every
    /// [`UNKNOWN_TOKEN_FEED_READ_INTERVAL`], each serving every request waiting for one.
    async fn catch_up_after(&self, ticket: u64) -> StoreResult<()> {
        let Backend::Postgres(db) = &self.inner.backend else {
            return Ok(());
        };
        let _turn = self.inner.catching_up.lock().await;
        if db.caught_up(i64::MAX, ticket) {
            return Ok(());
        }
        let elapsed = db.since_last_feed_read().unwrap_or(Duration::MAX);
        if let Some(rest) = UNKNOWN_TOKEN_FEED_READ_INTERVAL.checked_sub(elapsed) {
            tokio::time::sleep(rest).await;
            if db.caught_up(i64::MAX, ticket) {
                return Ok(());
            }
        }
        self.read_the_feed(i64::MAX, ticket).await
    }

    /// One feed read for a catch-up (the caller holds `catching_up`).
    async fn read_the_feed(&self, position: i64, ticket: u64) -> StoreResult<()> {
        // The feed read is a read like the others: within the reader pool's bound.
        let permit = self.read_permit().await?;
        let inner = self.inner.clone();
        run_blocking(move || {
            let _permit = permit;
            match &inner.backend {
                Backend::Postgres(db) => db.catch_up(position, ticket),
                Backend::Sqlite(_) => Ok(()),
            }
        })
        .await
    }

    async fn read_permit(&self) -> StoreResult<tokio::sync::OwnedSemaphorePermit> {
        self.inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Task("the reader pool is closed".into()))
    }

    /// PostgreSQL: connections opened for reads and catch-ups, and feed reads, so far.
    #[cfg(test)]
    fn postgres_counts(&self) -> Option<(usize, u64)> {
        match &self.inner.backend {
            Backend::Postgres(db) => Some((db.connections_opened(), db.feed_reads())),
            Backend::Sqlite(_) => None,
        }
    }

    /// Which backend this store runs on.
    pub fn dialect(&self) -> sql::Dialect {
        match &self.inner.backend {
            Backend::Sqlite(_) => sql::Dialect::Sqlite,
            Backend::Postgres(_) => sql::Dialect::Postgres,
        }
    }

    /// The in-memory read path (see [`Index`]).
    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// The service's metrics: kept here because every part of the service reaches the store
    /// (handlers through their state, the writer thread and the index inside it).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metrics in the Prometheus text format, with the index's size as of now.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render(self.index().sizes())
    }

    /// Deletes expired codes and tokens, and change-feed entries older than
    /// `feed_retention_s`, in short batches; counts what it deleted.
    pub async fn purge_expired(&self, now: i64, feed_retention_s: i64) -> StoreResult<Purged> {
        let purged = match &self.inner.backend {
            Backend::Sqlite(_) => {
                let mut total = Purged::default();
                loop {
                    let batch = self
                        .write(move |repo| {
                            repo.purge_expired_batch(now, feed_retention_s, PURGE_BATCH)
                        })
                        .await?;
                    total.add(&batch);
                    if !batch.any_kind_reached(PURGE_BATCH as u64) {
                        break total;
                    }
                }
            }
            Backend::Postgres(_) => {
                let inner = self.inner.clone();
                run_blocking(move || match &inner.backend {
                    Backend::Postgres(db) => db.purge_expired(now, feed_retention_s),
                    Backend::Sqlite(_) => Ok(Purged::default()),
                })
                .await?
            }
        };
        self.metrics().purged(&purged);
        Ok(purged)
    }

    /// A service (by id or name) with its enabled `oauth2` plugin; from memory when it can.
    pub async fn protected_service(&self, key: &str) -> StoreResult<Option<Arc<ProtectedService>>> {
        if key.len() > MAX_IDENTIFIER_BYTES {
            return Ok(None);
        }
        let known = self.index().service(key);
        self.metrics()
            .index_lookup(IndexMap::Service, known.is_some());
        if let Some(known) = known {
            return Ok(known);
        }
        let (key, generation, store) = (key.to_string(), self.index().generation(), self.clone());
        self.read(move |repo| {
            let found = match repo.service(&key)? {
                Some(service) => Some(ProtectedService {
                    plugin: repo.enabled_oauth2_plugin(&service.id)?,
                    service,
                }),
                None => None,
            };
            Ok(store.index().learn_service(generation, &key, found))
        })
        .await
    }

    /// The OAuth credential with this `client_id`; from memory when it can.
    pub async fn credential_by_client_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<Arc<Credential>>> {
        // Client ids come from requests: one longer than any stored is unknown, and is not
        // remembered (64 KB ids once grew the index by 200 MB).
        if client_id.len() > MAX_IDENTIFIER_BYTES {
            return Ok(None);
        }
        let known = self.index().credential(client_id);
        self.metrics()
            .index_lookup(IndexMap::Credential, known.is_some());
        if let Some(known) = known {
            return Ok(known);
        }
        let (id, generation, store) = (
            client_id.to_string(),
            self.index().generation(),
            self.clone(),
        );
        self.read(move |repo| {
            let found = repo.credential_by_client_id(&id)?;
            Ok(store.index().learn_credential(generation, &id, found))
        })
        .await
    }

    /// What a check needs of the token with this access-token digest; from memory when it can.
    /// `None` for a digest no live token has, and may be (without a read) for an expired one.
    pub async fn checked_token(&self, digest: &str) -> StoreResult<Option<Arc<IndexedToken>>> {
        if !index::is_digest(digest) {
            return Ok(None);
        }
        let refused = self.refused_from_memory(digest).await;
        self.metrics().index_lookup(IndexMap::Digest, refused);
        if refused {
            return Ok(None);
        }
        let known = self.index().token(digest);
        self.metrics()
            .index_lookup(IndexMap::Token, known.is_some());
        if let Some(known) = known {
            return Ok(Some(known));
        }
        let (digest, generation, store) =
            (digest.to_string(), self.index().generation(), self.clone());
        self.read(move |repo| {
            Ok(repo
                .token_with_owner(&digest)?
                .map(|found| store.index().learn_token(generation, &digest, found)))
        })
        .await
    }

    /// Whether the digest set shows that `digest` is no live token's, or an expired one's. On
    /// PostgreSQL the set must first have applied a feed read begun after the request arrived
    /// (another replica may just have issued the token); if that read fails, the check reads.
    async fn refused_from_memory(&self, digest: &str) -> bool {
        let ticket = match &self.inner.backend {
            Backend::Postgres(db) => db.catch_up_ticket(),
            Backend::Sqlite(_) => 0,
        };
        let refused = |store: &Store| {
            matches!(
                store.index().presence(digest, crate::model::now()),
                index::Presence::Absent | index::Presence::Expired
            )
        };
        if !refused(self) {
            return false;
        }
        match self.catch_up_after(ticket).await {
            Ok(()) => refused(self),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the change feed: the token check reads the database");
                false
            }
        }
    }

    /// Runs `f` on a reader connection (a consistent snapshot for its duration).
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Repo<'_>) -> StoreResult<T> + Send + 'static,
    {
        let permit = self.read_permit().await?;
        let inner = self.inner.clone();
        run_blocking(move || {
            let _permit = permit;
            match &inner.backend {
                Backend::Sqlite(db) => db.read(f),
                Backend::Postgres(db) => db.read(f),
            }
        })
        .await
    }
}

async fn run_blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::testing::{on_both_backends, Backend, TestDb};
    use super::*;
    use crate::model::{new_id, ClientType, Consumer, Credential};
    use rusqlite::Connection;

    /// No PostgreSQL where the URL points (a port just freed): the failure is "unavailable"
    /// (answered 503), not an internal error (500). The compose fault tests found the 500s:
    /// a replica cut from its database answered its token requests and admin API so.
    #[tokio::test]
    async fn an_unreachable_postgresql_is_unavailable_not_an_internal_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://nobody@127.0.0.1:{port}/none");
        match Store::connect(&Database::Postgres(url), StoreOptions::default()).await {
            Ok(_) => panic!("connected to a port nobody listens on"),
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }

    #[test]
    fn a_failed_commit_tells_every_caller_whether_the_database_was_unavailable() {
        let unavailable = StoreError::Unavailable("connection lost".into());
        assert!(unavailable.for_another_caller().is_unavailable());
        let corrupt = StoreError::Corrupt("a row".into()).for_another_caller();
        assert!(!corrupt.is_unavailable());
        assert!(corrupt.to_string().contains("a row"), "{corrupt}");
    }

    /// A database with consumer `u` and its credential `client`; `None` when the backend is
    /// not available (see [`testing`]).
    async fn store_with_client(backend: Backend) -> Option<(TestDb, Store, String)> {
        let db = TestDb::new(backend).await?;
        let store = db.open().await;
        let credential_id = new_id();
        let id = credential_id.clone();
        store
            .write(move |repo| {
                let consumer = Consumer {
                    id: new_id(),
                    created_at: 0,
                    username: Some("u".into()),
                    custom_id: None,
                    tags: None,
                };
                repo.insert_consumer(&consumer)?;
                repo.insert_credential(&Credential {
                    id,
                    created_at: 0,
                    consumer_id: consumer.id,
                    name: "c".into(),
                    client_id: "client".into(),
                    client_secret: "s".into(),
                    hash_secret: false,
                    redirect_uris: None,
                    client_type: ClientType::Confidential,
                    tags: None,
                })
            })
            .await
            .expect("fixture");
        Some((db, store, credential_id))
    }

    fn token(credential_id: &str, hash: &str, ttl_at: Option<i64>) -> NewToken {
        NewToken {
            id: new_id(),
            jwt_exp: None,
            credential_id: credential_id.to_string(),
            service_id: None,
            access_token_hash: hash.to_string(),
            refresh_token_hash: None,
            authenticated_userid: None,
            scope: None,
            expires_in: 10,
            ttl_at,
            family_id: new_id(),
            created_at: crate::model::now(),
        }
    }

    async fn purge_removes_only_expired_rows(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let now = 1_000_000;
        let (c1, c2, c3) = (credential.clone(), credential.clone(), credential.clone());
        store
            .write(move |repo| repo.insert_token(&token(&c1, &digest("expired"), Some(now - 1))))
            .await
            .ok();
        assert!(indexed(&store, "expired"));
        store
            .write(move |repo| repo.insert_token(&token(&c2, "alive", Some(now + 100))))
            .await
            .ok();
        store
            .write(move |repo| repo.insert_token(&token(&c3, "forever", None)))
            .await
            .ok();
        let removed = store.purge_expired(now, 3600).await.expect("purge");
        assert!(
            !indexed(&store, "expired"),
            "purged tokens leave the index at once"
        );
        assert_eq!(removed.tokens, 1);
        assert_eq!(removed.codes_and_tokens(), 1);
        let text = store.render_metrics();
        assert!(
            text.contains("\ntoken_service_purged_rows_total{kind=\"token\"} 1\n"),
            "{text}"
        );
        for (hash, kept) in [
            (digest("expired"), false),
            ("alive".to_string(), true),
            ("forever".to_string(), true),
        ] {
            let found = store
                .read({
                    let hash = hash.clone();
                    move |repo| repo.token("", &hash)
                })
                .await
                .ok()
                .flatten();
            assert_eq!(found.is_some(), kept, "{hash}");
        }
    }

    async fn a_failing_write_rolls_back_alone_in_its_batch(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let c = credential.clone();
        let ok = store.write(move |repo| repo.insert_token(&token(&c, "first", None)));
        let c = credential.clone();
        let clash = store.write(move |repo| {
            repo.insert_token(&token(&c, "partial", None))?;
            repo.insert_token(&token(&c, "first", None))
        });
        let (ok, clash) = tokio::join!(ok, clash);
        assert!(ok.is_ok());
        assert!(
            matches!(clash, Err(StoreError::Conflict(ref column)) if column == "access_token_hash"),
            "{clash:?}"
        );
        let partial = store
            .read(|repo| repo.token("", "partial"))
            .await
            .ok()
            .flatten();
        assert!(partial.is_none(), "nothing of the failed write remains");
    }

    async fn deleting_a_consumer_feeds_its_tokens_to_the_filter(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let c = credential.clone();
        store
            .write(move |repo| repo.insert_token(&token(&c, "digest-1", None)))
            .await
            .ok();
        let seen = store
            .read(|repo| repo.feed_page(0, 100))
            .await
            .expect("feed");
        delete_the_consumer(&store).await;
        // PostgreSQL's feed holds a change back while any older transaction of the server
        // runs (another test's, here): poll until it is below the horizon.
        let mut next = FeedPage::default();
        for _ in 0..200 {
            next = store
                .read(move |repo| repo.feed_page(seen.position, 100))
                .await
                .expect("feed");
            if !next.digests.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(next.digests, vec!["digest-1".to_string()]);
        assert!(next.position > seen.position && next.floor <= seen.position);
    }

    /// Deletes the fixture's consumer (and so, by cascade, its credential and tokens).
    async fn delete_the_consumer(store: &Store) {
        let deleted = store
            .write(|repo| {
                let consumer = repo.consumer("u")?.map(|c| c.id).unwrap_or_default();
                repo.delete_consumer(&consumer)
            })
            .await;
        assert!(matches!(deleted, Ok(true)), "{deleted:?}");
    }

    fn indexed(store: &Store, name: &str) -> bool {
        store.index().token(&digest(name)).is_some()
    }

    fn digest(name: &str) -> String {
        crate::secrets::token_digest(name)
    }

    async fn issued_tokens_are_in_memory_when_the_write_returns(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        store
            .write(move |repo| repo.insert_token(&token(&credential, &digest("fresh"), None)))
            .await
            .expect("insert");
        assert!(indexed(&store, "fresh"));
    }

    async fn a_rolled_back_insert_is_not_indexed(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let failed = store
            .write(move |repo| {
                repo.insert_token(&token(&credential, &digest("never"), None))?;
                Err::<(), _>(StoreError::MissingReference)
            })
            .await;
        assert!(failed.is_err());
        assert!(!indexed(&store, "never"));
    }

    async fn a_renamed_consumer_is_not_answered_under_its_old_name(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        store
            .write(move |repo| repo.insert_token(&token(&credential, &digest("t"), None)))
            .await
            .expect("insert");
        let before = store.checked_token(&digest("t")).await.expect("read");
        assert_eq!(
            before.and_then(|t| t.consumer_username.clone()).as_deref(),
            Some("u")
        );
        store
            .write(|repo| {
                let mut consumer = repo.consumer("u")?.ok_or(StoreError::MissingReference)?;
                consumer.username = Some("renamed".into());
                repo.update_consumer(&consumer)
            })
            .await
            .expect("rename");
        assert!(!indexed(&store, "t"), "dropped by the rename");
        let after = store.checked_token(&digest("t")).await.expect("read");
        assert_eq!(
            after.and_then(|t| t.consumer_username.clone()).as_deref(),
            Some("renamed")
        );
    }

    async fn revocations_and_cascades_leave_the_index_before_the_write_returns(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let (c1, c2) = (credential.clone(), credential.clone());
        let doomed = store
            .write(move |repo| repo.insert_token(&token(&c1, &digest("revoked"), None)))
            .await
            .expect("insert");
        store
            .write(move |repo| repo.insert_token(&token(&c2, &digest("cascaded"), None)))
            .await
            .expect("insert");
        store
            .write(move |repo| repo.delete_token(&doomed.id))
            .await
            .expect("delete");
        assert!(!indexed(&store, "revoked"));
        assert!(indexed(&store, "cascaded"));
        delete_the_consumer(&store).await;
        assert!(!indexed(&store, "cascaded"));
    }

    async fn service_and_credential_writes_drop_what_the_index_knows_of_them(backend: Backend) {
        let Some((_dir, store, _)) = store_with_client(backend).await else {
            return;
        };
        assert!(store
            .protected_service("other")
            .await
            .expect("read")
            .is_none());
        assert!(store
            .credential_by_client_id("client")
            .await
            .expect("read")
            .is_some());
        assert!(
            matches!(store.index().service("other"), Some(None)),
            "remembered"
        );
        assert!(store.index().credential("client").is_some(), "remembered");
        store
            .write(|repo| {
                repo.insert_service(&crate::model::Service {
                    id: new_id(),
                    created_at: 0,
                    updated_at: 0,
                    name: Some("other".into()),
                    url: None,
                    tags: None,
                })
            })
            .await
            .expect("service");
        assert!(store.index().service("other").is_none());
        assert!(store.index().credential("client").is_some());
        let found = store.protected_service("other").await.expect("read");
        assert!(found.is_some_and(|s| s.plugin.is_none()));
        delete_the_consumer(&store).await;
        assert!(store.index().credential("client").is_none());
        assert!(store
            .credential_by_client_id("client")
            .await
            .expect("read")
            .is_none());
    }

    async fn over_long_identifiers_are_unknown_and_never_remembered(backend: Backend) {
        let Some((_dir, store, _)) = store_with_client(backend).await else {
            return;
        };
        let long = "c".repeat(64 * 1024);
        assert!(store
            .credential_by_client_id(&long)
            .await
            .expect("read")
            .is_none());
        assert!(store.index().credential(&long).is_none(), "not remembered");
        assert!(store
            .protected_service(&long)
            .await
            .expect("read")
            .is_none());
        assert!(store.index().service(&long).is_none(), "not remembered");
        assert!(store
            .checked_token(&"f".repeat(10_000))
            .await
            .expect("read")
            .is_none());
        // Short unknown ones are still remembered (the negative cache).
        store.credential_by_client_id("nobody").await.expect("read");
        assert!(matches!(store.index().credential("nobody"), Some(None)));
    }

    fn sample(store: &Store, series: &str) -> f64 {
        let text = store.render_metrics();
        let value = text.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        });
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    /// Every write lands in exactly one batch, and every committed batch is timed.
    async fn the_writer_reports_its_batches(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let batches = "token_service_store_write_batch_size";
        let (writes, count) = (
            sample(&store, &format!("{batches}_sum")),
            sample(&store, &format!("{batches}_count")),
        );
        let concurrent = (0..20).map(|i| {
            let c = credential.clone();
            store.write(move |repo| repo.insert_token(&token(&c, &format!("h{i}"), None)))
        });
        for written in futures_util::future::join_all(concurrent).await {
            written.expect("write");
        }
        assert_eq!(sample(&store, &format!("{batches}_sum")) - writes, 20.0);
        let new_batches = sample(&store, &format!("{batches}_count")) - count;
        assert!((1.0..=20.0).contains(&new_batches), "{new_batches}");
        let commits = sample(&store, "token_service_store_commit_duration_seconds_count");
        let all_batches = sample(&store, &format!("{batches}_count"));
        assert_eq!(commits, all_batches, "every batch committed");
        assert!(sample(&store, "token_service_store_commit_duration_seconds_sum") > 0.0);
    }

    /// Hits and misses of the index, and its size, as the store reads and fills it.
    async fn index_lookups_and_size_are_exported(backend: Backend) {
        let Some((_dir, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let lookups = |map: &str, result: &str| {
            sample(
                &store,
                &format!("token_service_index_lookups_total{{map=\"{map}\",result=\"{result}\"}}"),
            )
        };
        store.credential_by_client_id("client").await.expect("read");
        store.credential_by_client_id("client").await.expect("read");
        assert_eq!(lookups("credential", "miss"), 1.0);
        assert_eq!(lookups("credential", "hit"), 1.0);
        store.checked_token(&digest("absent")).await.expect("read");
        // Not a digest, or too long to be stored: refused before any look-up.
        store.checked_token("not hex").await.expect("read");
        store
            .credential_by_client_id(&"c".repeat(64 * 1024))
            .await
            .expect("read");
        // The absent token is refused by the digest set: the token map is not even asked.
        assert_eq!(
            (lookups("digest", "hit"), lookups("digest", "miss")),
            (1.0, 0.0)
        );
        assert_eq!(
            (lookups("token", "hit"), lookups("token", "miss")),
            (0.0, 0.0)
        );
        assert_eq!(lookups("credential", "miss"), 1.0);
        store
            .write(move |repo| repo.insert_token(&token(&credential, &digest("t"), None)))
            .await
            .expect("insert");
        store.checked_token(&digest("t")).await.expect("read");
        assert_eq!(lookups("token", "hit"), 1.0);
        assert_eq!(
            lookups("digest", "miss"),
            1.0,
            "a live token is left to the token map"
        );
        assert_eq!(
            sample(&store, "token_service_index_entries{map=\"token\"}"),
            1.0
        );
        let [_, credentials, tokens, _] = store.index().sizes();
        assert_eq!(
            sample(&store, "token_service_index_bytes{map=\"token\"}"),
            tokens.bytes as f64
        );
        assert_eq!(credentials.entries, 1);
    }

    /// Token-row reads so far: the token map's misses (each reads the database).
    fn token_reads(store: &Store) -> f64 {
        sample(
            store,
            "token_service_index_lookups_total{map=\"token\",result=\"miss\"}",
        )
    }

    /// Issue 18: every distinct invalid token cost a database read (6,478/s from one client).
    /// With every live token's digest in memory, 1,000 made-up tokens cost no token read; on
    /// PostgreSQL they share a handful of feed reads (the catch-up that makes a token another
    /// replica just issued known).
    async fn distinct_unknown_tokens_cost_no_database_read(backend: Backend) {
        let Some(db) = TestDb::new(backend).await else {
            return;
        };
        // No follower round during the test: every feed read is an unknown token's.
        let store = db
            .open_following_every(std::time::Duration::from_secs(3600))
            .await;
        let feed_reads = || store.postgres_counts().map_or(0, |(_, reads)| reads);
        let (reads, feed_before) = (token_reads(&store), feed_reads());
        let checks = (0..1_000).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.checked_token(&digest(&format!("made-up-{i}"))).await })
        });
        for check in futures_util::future::join_all(checks).await {
            assert!(check.expect("task").expect("check").is_none());
        }
        assert_eq!(
            token_reads(&store) - reads,
            0.0,
            "a token read per unknown token"
        );
        let feed = feed_reads() - feed_before;
        assert!(
            feed <= 50,
            "1,000 unknown tokens read the feed {feed} times"
        );
        assert_eq!(
            sample(
                &store,
                "token_service_index_lookups_total{map=\"digest\",result=\"hit\"}"
            ),
            1_000.0
        );
    }

    /// The digest set is loaded at start-up: tokens issued before a restart are valid after
    /// it, and unknown tokens are still refused without a read.
    async fn a_restart_loads_every_token_into_the_index(backend: Backend) {
        let Some((db, store, credential)) = store_with_client(backend).await else {
            return;
        };
        for name in ["before-1", "before-2"] {
            let c = credential.clone();
            store
                .write(move |repo| repo.insert_token(&token(&c, &digest(name), None)))
                .await
                .expect("insert");
        }
        drop(store);
        let store = db.open().await;
        assert_eq!(store.index().digests_complete(), Some(true));
        let before = token_reads(&store);
        assert!(store
            .checked_token(&digest("unknown"))
            .await
            .expect("check")
            .is_none());
        assert_eq!(token_reads(&store), before, "an unknown token was read");
        for name in ["before-1", "before-2"] {
            let found = store.checked_token(&digest(name)).await.expect("check");
            assert!(found.is_some(), "{name} did not survive the restart");
        }
        let [.., digests] = store.index().sizes();
        assert_eq!(digests.entries, 2);
        assert!(digests.bytes >= 2 * 40, "{digests:?}");
    }

    /// A token the index knows to have expired is refused without a read, though only its
    /// digest is in memory (here: after a restart).
    async fn expired_tokens_are_refused_without_a_read(backend: Backend) {
        let Some((db, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let mut expired = token(&credential, &digest("expired"), None);
        expired.created_at = crate::model::now() - 100;
        let mut alive = token(&credential, &digest("alive"), None);
        alive.created_at = crate::model::now();
        store
            .write(move |repo| {
                repo.insert_token(&expired)?;
                repo.insert_token(&alive)
            })
            .await
            .expect("insert");
        drop(store);
        let store = db.open().await;
        let before = token_reads(&store);
        assert!(store
            .checked_token(&digest("expired"))
            .await
            .expect("check")
            .is_none());
        assert_eq!(token_reads(&store), before, "the expired token was read");
        assert!(store
            .checked_token(&digest("alive"))
            .await
            .expect("check")
            .is_some());
        assert_eq!(
            token_reads(&store),
            before + 1.0,
            "a live token is read once"
        );
    }

    /// An update giving a token a new digest (the admin API's PATCH, PUT): the new digest is
    /// valid at once, the old one refused without a read.
    async fn a_changed_digest_is_known_at_once_and_the_old_one_is_not(backend: Backend) {
        let Some((_db, store, credential)) = store_with_client(backend).await else {
            return;
        };
        let mut t = store
            .write(move |repo| repo.insert_token(&token(&credential, &digest("old"), None)))
            .await
            .expect("insert");
        t.access_token_hash = digest("new");
        store
            .write(move |repo| repo.update_token(&t))
            .await
            .expect("update");
        let before = token_reads(&store);
        assert!(store
            .checked_token(&digest("old"))
            .await
            .expect("check")
            .is_none());
        assert_eq!(token_reads(&store), before, "the old digest was read");
        assert!(store
            .checked_token(&digest("new"))
            .await
            .expect("check")
            .is_some());
    }

    /// Issue 18: a token issued on one replica is valid on another at once, though that
    /// replica's follower has not run: its digest set is incomplete until a feed read begun
    /// after the check arrived, which every unknown token waits for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_token_issued_on_one_replica_is_valid_at_once_on_another() {
        let Some((db, a, credential)) = store_with_client(Backend::Postgres).await else {
            return;
        };
        let b = db
            .open_following_every(std::time::Duration::from_secs(3600))
            .await;
        // The feed position the filter holds: from a poll before the issuance.
        let known = b
            .read(|repo| repo.feed_page(0, 0))
            .await
            .expect("feed")
            .position;
        for i in 0..20 {
            let c = credential.clone();
            let name = format!("issued-on-a-{i}");
            a.write(move |repo| repo.insert_token(&token(&c, &digest(&name), None)))
                .await
                .expect("insert");
            b.catch_up(known).await.expect("catch up");
            let found = b.checked_token(&digest(&format!("issued-on-a-{i}"))).await;
            assert!(found.expect("check").is_some(), "token {i} unknown to b");
        }
        // And b's own follower learns them too, after which they cost no feed read.
        assert!(b
            .checked_token(&digest("never-issued"))
            .await
            .expect("check")
            .is_none());
        assert!(matches!(
            b.index()
                .presence(&digest("issued-on-a-0"), crate::model::now()),
            index::Presence::Present
        ));
    }

    /// Rows written by another version, or damaged: errors naming the row, never defaults.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_rows_are_errors_not_defaults() {
        let Some((db, store, credential_id)) = store_with_client(Backend::Sqlite).await else {
            return;
        };
        let dir = &db.dir;
        let conn = Connection::open(dir.path().join("t.db")).expect("open");
        conn.execute(
            "UPDATE oauth2_credentials SET redirect_uris = 'not a list' WHERE id = ?1",
            [&credential_id],
        )
        .expect("corrupt");
        let found = store
            .read(|repo| repo.credential_by_client_id("client"))
            .await;
        assert!(
            matches!(&found, Err(StoreError::Corrupt(m)) if m.contains("redirect_uris")),
            "{:?}",
            found.map(|_| ())
        );
        conn.execute(
            "UPDATE oauth2_credentials SET redirect_uris = NULL, client_type = 'publik' WHERE id = ?1",
            [&credential_id],
        )
        .expect("corrupt");
        let found = store
            .read(|repo| repo.credential_by_client_id("client"))
            .await;
        assert!(matches!(found, Err(StoreError::Corrupt(_))));
        let service_id = new_id();
        let id = service_id.clone();
        store
            .write(move |repo| {
                repo.insert_service(&crate::model::Service {
                    id,
                    created_at: 0,
                    updated_at: 0,
                    name: Some("svc".into()),
                    url: None,
                    tags: None,
                })
            })
            .await
            .expect("service");
        conn.execute(
            "INSERT INTO plugins (id, created_at, updated_at, name, service_id, enabled, config)
             VALUES ('p', 0, 0, 'oauth2', ?1, 1, '{\"enable_client_credentials\": true}')",
            [&service_id],
        )
        .expect("a config without a provision key");
        let found = store.protected_service("svc").await;
        assert!(
            matches!(&found, Err(StoreError::Corrupt(m)) if m.contains("provision_key")),
            "{:?}",
            found.map(|_| ())
        );
        assert!(store.index().service("svc").is_none(), "nothing learned");
    }

    /// An update that matches no row (deleted meanwhile) is an error, not a silent success.
    async fn updating_a_deleted_row_is_not_found(backend: Backend) {
        let Some((_dir, store, credential_id)) = store_with_client(backend).await else {
            return;
        };
        let ghost = crate::model::Consumer {
            id: new_id(),
            created_at: 0,
            username: Some("ghost".into()),
            custom_id: None,
            tags: None,
        };
        let updated = store.write(move |repo| repo.update_consumer(&ghost)).await;
        assert!(matches!(updated, Err(StoreError::NotFound)), "{updated:?}");
        let updated = store
            .write(move |repo| {
                let found = repo.credential(&credential_id)?;
                let credential = found.ok_or(StoreError::MissingReference)?;
                repo.delete_credential(&credential.id)?;
                repo.update_credential(&credential)
            })
            .await;
        assert!(matches!(updated, Err(StoreError::NotFound)), "{updated:?}");
        let still_there = store
            .read(|repo| repo.credential_by_client_id("client"))
            .await;
        assert!(
            still_there.is_ok_and(|c| c.is_some()),
            "the failed write rolled back whole"
        );
    }

    on_both_backends!(
        purge_removes_only_expired_rows,
        a_failing_write_rolls_back_alone_in_its_batch,
        deleting_a_consumer_feeds_its_tokens_to_the_filter,
        issued_tokens_are_in_memory_when_the_write_returns,
        a_rolled_back_insert_is_not_indexed,
        a_renamed_consumer_is_not_answered_under_its_old_name,
        revocations_and_cascades_leave_the_index_before_the_write_returns,
        service_and_credential_writes_drop_what_the_index_knows_of_them,
        over_long_identifiers_are_unknown_and_never_remembered,
        the_writer_reports_its_batches,
        index_lookups_and_size_are_exported,
        updating_a_deleted_row_is_not_found,
        distinct_unknown_tokens_cost_no_database_read,
        a_restart_loads_every_token_into_the_index,
        expired_tokens_are_refused_without_a_read,
        a_changed_digest_is_known_at_once_and_the_old_one_is_not,
        rotating_one_token_at_once_has_one_winner,
        concurrent_read_modify_writes_lose_nothing,
    );

    /// 20 transactions, each reading consumer `u` and adding one tag, spread over three
    /// replicas on PostgreSQL: every tag is there in the end (none overwrote another's).
    async fn concurrent_read_modify_writes_lose_nothing(backend: Backend) {
        let Some((db, first, _)) = store_with_client(backend).await else {
            return;
        };
        let mut replicas = vec![first];
        if backend == Backend::Postgres {
            replicas.push(db.open().await);
            replicas.push(db.open().await);
        }
        let writers = (0..20).map(|i| {
            replicas[i % replicas.len()].write(move |repo| {
                let mut consumer = repo.consumer("u")?.ok_or(StoreError::NotFound)?;
                consumer
                    .tags
                    .get_or_insert_with(Vec::new)
                    .push(format!("t{i}"));
                repo.update_consumer(&consumer)
            })
        });
        for written in futures_util::future::join_all(writers).await {
            written.expect("write");
        }
        let tags = replicas[0]
            .read(|repo| repo.consumer("u"))
            .await
            .expect("read")
            .and_then(|c| c.tags)
            .unwrap_or_default();
        assert_eq!(tags.len(), 20, "{tags:?}");
    }

    /// Of 20 writers rotating one refresh token at once (on three replicas with PostgreSQL),
    /// exactly one replaces it; the others change nothing.
    async fn rotating_one_token_at_once_has_one_winner(backend: Backend) {
        let Some((db, first, credential)) = store_with_client(backend).await else {
            return;
        };
        let mut replicas = vec![first];
        if backend == Backend::Postgres {
            replicas.push(db.open().await);
            replicas.push(db.open().await);
        }
        let mut old = token(&credential, &digest("old"), None);
        old.refresh_token_hash = Some(digest("old-refresh"));
        let old = replicas[0]
            .write(move |repo| repo.insert_token(&old))
            .await
            .expect("insert");
        let racers = (0..20).map(|i| {
            let (old, mut new) = (
                old.clone(),
                token(&credential, &digest(&format!("new{i}")), None),
            );
            new.family_id = old.family_id.clone();
            replicas[i % replicas.len()].write(move |repo| repo.rotate_token(&old, &new))
        });
        let results = futures_util::future::join_all(racers).await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            winners,
            1,
            "{:?}",
            results
                .iter()
                .map(|r| r.as_ref().map(drop))
                .collect::<Vec<_>>()
        );
        assert!(results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::NotFound))));
        let family = old.family_id.clone();
        let tokens = replicas[0]
            .read(move |repo| {
                let all = repo.list_tokens(0, 100)?.data;
                Ok(all.into_iter().filter(|t| t.family_id == family).count())
            })
            .await
            .expect("read");
        assert_eq!(tokens, 1, "one pair in the family");
    }

    async fn postgres_replicas() -> Option<(TestDb, Store, Store, String)> {
        let (db, a, credential) = store_with_client(Backend::Postgres).await?;
        let b = db.open().await;
        Some((db, a, b, credential))
    }

    /// A revocation on one replica leaves every other replica's index within its feed poll.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_revocation_reaches_the_other_replicas_index() {
        let Some((_db, a, b, credential)) = postgres_replicas().await else {
            return;
        };
        let t = a
            .write(move |repo| repo.insert_token(&token(&credential, &digest("shared"), None)))
            .await
            .expect("insert");
        assert!(b
            .checked_token(&digest("shared"))
            .await
            .expect("read")
            .is_some());
        assert!(indexed(&b, "shared"), "b remembers it");
        a.write(move |repo| repo.delete_token(&t.id))
            .await
            .expect("revoke");
        assert!(!indexed(&a, "shared"), "a forgot it before answering");
        let forgotten = wait_for(|| !indexed(&b, "shared")).await;
        assert!(
            forgotten.is_some(),
            "b's index still holds the revoked token"
        );
        assert!(b
            .checked_token(&digest("shared"))
            .await
            .expect("read")
            .is_none());
    }

    /// A replica whose follower is behind catches up when a request carries a newer feed
    /// position (the filter learned the revocation from another replica): it never answers
    /// from before what the filter knows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_replica_behind_the_filter_catches_up_before_answering() {
        let Some((db, a, credential)) = store_with_client(Backend::Postgres).await else {
            return;
        };
        let b = db
            .open_following_every(std::time::Duration::from_secs(3600))
            .await;
        let t = a
            .write(move |repo| repo.insert_token(&token(&credential, &digest("lagging"), None)))
            .await
            .expect("insert");
        assert!(b
            .checked_token(&digest("lagging"))
            .await
            .expect("read")
            .is_some());
        let before = a.read(|repo| repo.feed_page(0, 0)).await.expect("feed");
        a.write(move |repo| repo.delete_token(&t.id))
            .await
            .expect("revoke");
        // What the filter holds once a poll (through any replica) brought it the revocation.
        let mut known = before.position;
        for _ in 0..200 {
            let page = a
                .read(move |repo| repo.feed_page(before.position, 100))
                .await
                .expect("feed");
            if !page.digests.is_empty() {
                known = page.position;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(known > before.position, "the revocation reached the feed");
        assert!(indexed(&b, "lagging"), "b's follower has not run");
        b.catch_up(0).await.expect("catch up");
        assert!(
            indexed(&b, "lagging"),
            "a position b has applied changes nothing"
        );
        b.catch_up(known).await.expect("catch up");
        assert!(!indexed(&b, "lagging"));
        assert!(b
            .checked_token(&digest("lagging"))
            .await
            .expect("read")
            .is_none());
    }

    /// Issue 18: 200 requests carrying a feed position far beyond the feed (forged, or from
    /// another database) made 211 PostgreSQL backends, one per request. They must share the
    /// reader pool's connections and a handful of feed reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_burst_of_catch_ups_beyond_the_feed_stays_in_the_reader_pool() {
        const BURST: usize = 200;
        let Some(db) = TestDb::new(Backend::Postgres).await else {
            return;
        };
        // No follower round during the test: every feed read is a catch-up's.
        let store = db
            .open_following_every(std::time::Duration::from_secs(3600))
            .await;
        let before = store.postgres_counts().expect("postgres");
        let burst: Vec<_> = (0..BURST)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.catch_up(i64::MAX).await })
            })
            .collect();
        for request in burst {
            request.await.expect("task").expect("catch up");
        }
        let after = store.postgres_counts().expect("postgres");
        let (opened, reads) = (after.0 - before.0, after.1 - before.1);
        assert!(
            opened <= READER_POOL,
            "{BURST} catch-ups opened {opened} connections"
        );
        assert!(reads <= 20, "{BURST} catch-ups read the feed {reads} times");
        // Each read was one connection's: a later burst reuses the pool.
        store.catch_up(i64::MAX).await.expect("catch up");
        assert_eq!(store.postgres_counts().expect("postgres").0, after.0);
    }

    /// Credentials and services created or changed on one replica are not answered from the
    /// other's memory (a remembered "unknown client" included).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_admin_changes_reach_the_other_replicas_index() {
        let Some((_db, a, b, _)) = postgres_replicas().await else {
            return;
        };
        assert!(b.protected_service("late").await.expect("read").is_none());
        assert!(
            matches!(b.index().service("late"), Some(None)),
            "remembered as unknown"
        );
        a.write(|repo| {
            repo.insert_service(&crate::model::Service {
                id: new_id(),
                created_at: 0,
                updated_at: 0,
                name: Some("late".into()),
                url: None,
                tags: None,
            })
        })
        .await
        .expect("service");
        assert!(wait_for(|| b.index().service("late").is_none())
            .await
            .is_some());
        assert!(b.protected_service("late").await.expect("read").is_some());
    }

    /// Feed positions are horizons: a change committed after a later-started one, with a
    /// lower seq, is still delivered, and nothing is delivered twice or skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_the_feed_skips_no_change_committed_out_of_order() {
        let Some((db, a, _b, credential)) = postgres_replicas().await else {
            return;
        };
        for name in ["slow", "fast"] {
            let c = credential.clone();
            a.write(move |repo| repo.insert_token(&token(&c, &digest(name), None)))
                .await
                .expect("insert");
        }
        let start = a.read(|repo| repo.feed_page(0, 100)).await.expect("feed");
        let Database::Postgres(url) = db.database.clone() else {
            unreachable!()
        };
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (began, begun) = tokio::sync::oneshot::channel();
        let slow_digest = digest("slow");
        // A transaction that deletes `slow` first and commits last.
        let slow = tokio::task::spawn_blocking(move || {
            let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("connect");
            let mut tx = client.transaction().expect("begin");
            tx.execute(
                "DELETE FROM oauth2_tokens WHERE access_token_hash = $1",
                &[&slow_digest],
            )
            .expect("delete");
            let _ = began.send(());
            let _ = held.recv();
            tx.commit().expect("commit");
        });
        begun.await.expect("slow transaction began");
        let fast = digest("fast");
        a.write(move |repo| {
            repo.token("", &fast)
                .and_then(|t| repo.delete_token(&t.map(|t| t.id).unwrap_or_default()))
        })
        .await
        .expect("delete fast");
        let during = a
            .read(move |repo| repo.feed_page(start.position, 100))
            .await
            .expect("feed");
        assert!(
            during.digests.is_empty(),
            "held back by the running transaction: {during:?}"
        );
        let _ = hold.send(());
        slow.await.expect("slow transaction");
        let after = a
            .read(move |repo| repo.feed_page(during.position, 100))
            .await
            .expect("feed");
        let mut got = after.digests.clone();
        got.sort();
        let mut want = vec![digest("slow"), digest("fast")];
        want.sort();
        assert_eq!(got, want);
        let last = a
            .read(move |repo| repo.feed_page(after.position, 100))
            .await
            .expect("feed");
        assert!(last.digests.is_empty(), "nothing twice");
    }

    /// Polls `condition` every 10 ms for up to 2 s; answers how long it took.
    async fn wait_for(mut condition: impl FnMut() -> bool) -> Option<std::time::Duration> {
        let began = std::time::Instant::now();
        while began.elapsed() < std::time::Duration::from_secs(2) {
            if condition() {
                return Some(began.elapsed());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        None
    }
}
