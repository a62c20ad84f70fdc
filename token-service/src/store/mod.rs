//! Storage: one SQLite file in WAL mode, behind [`Store`].
//!
//! Handlers never see SQL or SQLite types: they run a closure against a [`Repo`], whose methods
//! are the whole storage vocabulary (consumers, services, plugins, credentials, codes, tokens,
//! the change feed). A server database later means another `Repo` backend, not new handlers.
//!
//! Writes go to one writer thread, which group-commits: it takes every write waiting, runs each
//! in its own savepoint of one `BEGIN IMMEDIATE` transaction, and commits once (one fsync with
//! `synchronous=FULL`) before answering any of them. So an acknowledged write survives SIGKILL
//! and power loss, a failing write rolls back alone, and the fsync cost is shared by every
//! write of the batch. Reads use a small pool of reader connections on tokio's blocking pool
//! (WAL lets them run beside the writer). No lock is held across an `.await`.
//!
//! The change feed (`changes`) is kept by triggers: whenever a token row is deleted, its access
//! token replaced, or the consumer or credential behind it changes, the access-token digest is
//! appended in the same transaction. The filter polls it to evict cached tokens.

mod index;
mod repo;
mod schema;

pub use index::{Index, IndexSize, IndexedToken, ProtectedService};
pub use repo::{NewCode, NewToken, Page, Purged, Repo, RetiredRefresh, TokenWithOwner};

use index::Invalidation;

use crate::metrics::{IndexMap, Metrics};
use crate::model::{Credential, MAX_IDENTIFIER_BYTES};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The row an update names is gone (deleted meanwhile).
    #[error("the row to update does not exist")]
    NotFound,
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    fn classify(err: rusqlite::Error) -> StoreError {
        if let rusqlite::Error::FromSqlConversionFailure(_, _, cause) = &err {
            return StoreError::Corrupt(cause.to_string());
        }
        if let rusqlite::Error::SqliteFailure(code, Some(message)) = &err {
            if code.code == rusqlite::ErrorCode::ConstraintViolation {
                if let Some(columns) = message.strip_prefix("UNIQUE constraint failed: ") {
                    let column = columns.split(", ").last().unwrap_or(columns);
                    let column = column.rsplit('.').next().unwrap_or(column);
                    return StoreError::Conflict(column.to_string());
                }
                if message.starts_with("FOREIGN KEY") {
                    return StoreError::MissingReference;
                }
            }
        }
        StoreError::Database(err)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    /// At most `READER_POOL` reads at once, so their connections are always reused: a burst
    /// of requests queues here instead of opening (and closing) a connection per read.
    read_permits: Arc<tokio::sync::Semaphore>,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
}

/// Tokens the in-memory index holds at most by default.
pub const DEFAULT_INDEX_ENTRIES: usize = 65_536;

const READER_POOL: usize = 8;
/// Most writes one commit carries: bounds the latency a batch adds to its first write.
const MAX_BATCH: usize = 512;

/// A write waiting for the writer thread: runs on a savepoint, says whether it succeeded, and
/// hands back how to deliver its result once the batch's commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Store> {
        Store::open_with_index(path, DEFAULT_INDEX_ENTRIES)
    }

    /// [`Store::open`], with an in-memory index of at most `index_entries` tokens.
    pub fn open_with_index(path: &Path, index_entries: usize) -> StoreResult<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Task(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut writer = open_connection(path)?;
        schema::migrate(&mut writer)?;
        let index = Arc::new(Index::new(index_entries));
        let feed = Feed::follow(&writer, index.clone())?;
        let (jobs, queue) = mpsc::channel();
        let metrics = Arc::new(Metrics::new());
        let writer_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_batches(writer, queue, feed, &writer_metrics))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                jobs,
                readers: Mutex::new(Vec::new()),
                read_permits: Arc::new(tokio::sync::Semaphore::new(READER_POOL)),
                index,
                metrics,
            }),
        })
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
        let job: Job = Box::new(move |conn: &Connection| {
            let result = f(&Repo::new(conn));
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |commit: Result<(), String>| {
                let committed = commit.map_err(|e| E::from(StoreError::Task(e)));
                let _ = answer.send(committed.and(result));
            });
            (ok, deliver)
        });
        self.inner
            .jobs
            .send(job)
            .map_err(|_| StoreError::Task("the writer thread stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Task("the write was dropped".into()))?
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
    /// `feed_retention_s`; counts what it deleted.
    pub async fn purge_expired(&self, now: i64, feed_retention_s: i64) -> StoreResult<Purged> {
        let purged = self
            .write(move |repo| repo.purge_expired(now, feed_retention_s))
            .await?;
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
    pub async fn checked_token(&self, digest: &str) -> StoreResult<Option<Arc<IndexedToken>>> {
        if !index::is_digest(digest) {
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

    /// Runs `f` on a reader connection (a consistent snapshot for its duration).
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Repo<'_>) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Task("the reader pool is closed".into()))?;
        run_blocking(move || {
            let _permit = permit;
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let result = {
                let tx = conn.transaction().map_err(StoreError::classify)?;
                let value = f(&Repo::new(&tx));
                drop(tx);
                value
            };
            if let Ok(mut pool) = inner.readers.lock() {
                if pool.len() < READER_POOL {
                    pool.push(conn);
                }
            }
            result
        })
        .await
    }
}

/// The writer thread: one transaction per batch of waiting writes, one savepoint per write.
fn write_batches(
    mut conn: Connection,
    queue: mpsc::Receiver<Job>,
    mut feed: Feed,
    metrics: &Metrics,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let writes = batch.len();
        let mut delivers = Vec::with_capacity(writes);
        let commit = run_batch(&mut conn, batch, &mut delivers, &mut feed);
        metrics.write_batch(writes, commit.as_ref().ok().copied());
        let commit = commit.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "a write batch failed to commit");
            e.to_string()
        });
        for deliver in delivers {
            deliver(commit.clone());
        }
    }
}

/// Runs a batch in one transaction; answers how long it held the write transaction (BEGIN
/// to COMMIT returned) and how long its COMMIT took.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    delivers: &mut Vec<Deliver>,
    feed: &mut Feed,
) -> StoreResult<(Duration, Duration)> {
    let began = Instant::now();
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(StoreError::classify)?;
    for job in batch {
        let savepoint = tx.savepoint().map_err(StoreError::classify)?;
        // A write that panics must not take the writer thread (and every later write) with
        // it: its savepoint rolls back and its caller sees the write dropped.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&savepoint)));
        let Ok((ok, deliver)) = outcome else { continue };
        delivers.push(deliver);
        if ok {
            savepoint.commit().map_err(StoreError::classify)?;
        }
        // Dropped uncommitted, a savepoint rolls back: a failed write leaves no trace.
    }
    let pending = feed.before_commit(&tx);
    let committing = Instant::now();
    tx.commit().map_err(StoreError::classify)?;
    let done = Instant::now();
    feed.after_commit(conn, pending);
    Ok((done - began, done - committing))
}

/// Keeps the in-memory [`Index`] exact: learns from SQLite's update hook which tables a batch
/// touched, and from the change feed which token digests it changed.
struct Feed {
    index: Arc<Index>,
    touched: Arc<Mutex<Touched>>,
    /// The newest change-feed seq already applied to the index.
    applied_seq: i64,
}

#[derive(Default)]
struct Touched {
    changes: bool,
    services: bool,
    credentials: bool,
    inserted_tokens: Vec<i64>,
}

/// What a batch will have changed once committed.
struct Pending {
    invalidation: Invalidation,
    newest_seq: i64,
    inserted_tokens: Vec<i64>,
}

impl Feed {
    fn follow(writer: &Connection, index: Arc<Index>) -> StoreResult<Feed> {
        let applied_seq = Repo::new(writer).newest_change()?;
        let touched = Arc::new(Mutex::new(Touched::default()));
        let hook = touched.clone();
        writer.update_hook(Some(
            move |action: rusqlite::hooks::Action, _db: &str, table: &str, rowid: i64| {
                let Ok(mut t) = hook.lock() else { return };
                match table {
                    "changes" => t.changes = true,
                    "services" | "plugins" => t.services = true,
                    "oauth2_credentials" => t.credentials = true,
                    "oauth2_tokens" if action == rusqlite::hooks::Action::SQLITE_INSERT => {
                        t.inserted_tokens.push(rowid)
                    }
                    _ => {}
                }
            },
        ));
        Ok(Feed {
            index,
            touched,
            applied_seq,
        })
    }

    /// Reads what the batch changed (inside its transaction) and drops it from the index
    /// before the commit makes the change visible.
    fn before_commit(&mut self, tx: &Connection) -> Pending {
        let touched = self
            .touched
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        let mut pending = Pending {
            invalidation: Invalidation {
                services: touched.services,
                credentials: touched.credentials,
                ..Invalidation::default()
            },
            newest_seq: self.applied_seq,
            inserted_tokens: touched.inserted_tokens,
        };
        if touched.changes {
            match Repo::new(tx).changed_digests_after(self.applied_seq) {
                Ok((newest, digests)) => {
                    pending.newest_seq = newest;
                    pending.invalidation.digests = digests;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the change feed; clearing the token index");
                    pending.invalidation.all = true;
                }
            }
        }
        if !pending.invalidation.is_empty() {
            self.index.invalidate(&pending.invalidation);
        }
        pending
    }

    /// Drops the changes again (a read may have raced the commit) and adds inserted tokens.
    fn after_commit(&mut self, conn: &Connection, pending: Pending) {
        self.applied_seq = pending.newest_seq;
        if !pending.invalidation.is_empty() {
            self.index.invalidate(&pending.invalidation);
        }
        if pending.inserted_tokens.is_empty() {
            return;
        }
        match Repo::new(conn).tokens_with_owner_by_rowid(&pending.inserted_tokens) {
            Ok(tokens) => self.index.add(tokens),
            Err(e) => tracing::warn!(error = %e, "cannot index newly issued tokens"),
        }
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

/// A reader: WAL mode is a property of the file (set by the writer), so only per-connection
/// settings are needed here.
fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) fn map_err(err: rusqlite::Error) -> StoreError {
    StoreError::classify(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{new_id, ClientType, Consumer, Credential};

    async fn store_with_client() -> (tempfile::TempDir, Store, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).expect("store");
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
        (dir, store, credential_id)
    }

    fn token(credential_id: &str, hash: &str, ttl_at: Option<i64>) -> NewToken {
        NewToken {
            credential_id: credential_id.to_string(),
            service_id: None,
            access_token_hash: hash.to_string(),
            refresh_token_hash: None,
            authenticated_userid: None,
            scope: None,
            expires_in: 10,
            ttl_at,
            family_id: new_id(),
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn purge_removes_only_expired_rows() {
        let (_dir, store, credential) = store_with_client().await;
        let now = 1_000_000;
        let (c1, c2, c3) = (credential.clone(), credential.clone(), credential.clone());
        store
            .write(move |repo| repo.insert_token(&token(&c1, "expired", Some(now - 1))))
            .await
            .ok();
        store
            .write(move |repo| repo.insert_token(&token(&c2, "alive", Some(now + 100))))
            .await
            .ok();
        store
            .write(move |repo| repo.insert_token(&token(&c3, "forever", None)))
            .await
            .ok();
        let removed = store.purge_expired(now, 3600).await.expect("purge");
        assert_eq!(removed.tokens, 1);
        assert_eq!(removed.codes_and_tokens(), 1);
        let text = store.render_metrics();
        assert!(
            text.contains("\ntoken_service_purged_rows_total{kind=\"token\"} 1\n"),
            "{text}"
        );
        for (hash, kept) in [("expired", false), ("alive", true), ("forever", true)] {
            let found = store
                .read(move |repo| repo.token("", hash))
                .await
                .ok()
                .flatten();
            assert_eq!(found.is_some(), kept, "{hash}");
        }
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_alone_in_its_batch() {
        let (_dir, store, credential) = store_with_client().await;
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

    #[tokio::test]
    async fn deleting_a_consumer_feeds_its_tokens_to_the_filter() {
        let (_dir, store, credential) = store_with_client().await;
        let c = credential.clone();
        store
            .write(move |repo| repo.insert_token(&token(&c, "digest-1", None)))
            .await
            .ok();
        let (seq, _, _) = store
            .read(|repo| repo.changes_since(0, 100))
            .await
            .unwrap_or_default();
        delete_the_consumer(&store).await;
        let (_, _, revoked) = store
            .read(move |repo| repo.changes_since(seq, 100))
            .await
            .unwrap_or_default();
        assert_eq!(revoked, vec!["digest-1".to_string()]);
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

    #[tokio::test]
    async fn issued_tokens_are_in_memory_when_the_write_returns() {
        let (_dir, store, credential) = store_with_client().await;
        store
            .write(move |repo| repo.insert_token(&token(&credential, &digest("fresh"), None)))
            .await
            .expect("insert");
        assert!(indexed(&store, "fresh"));
    }

    #[tokio::test]
    async fn a_rolled_back_insert_is_not_indexed() {
        let (_dir, store, credential) = store_with_client().await;
        let failed = store
            .write(move |repo| {
                repo.insert_token(&token(&credential, &digest("never"), None))?;
                Err::<(), _>(StoreError::MissingReference)
            })
            .await;
        assert!(failed.is_err());
        assert!(!indexed(&store, "never"));
    }

    #[tokio::test]
    async fn a_renamed_consumer_is_not_answered_under_its_old_name() {
        let (_dir, store, credential) = store_with_client().await;
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

    #[tokio::test]
    async fn revocations_and_cascades_leave_the_index_before_the_write_returns() {
        let (_dir, store, credential) = store_with_client().await;
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

    #[tokio::test]
    async fn service_and_credential_writes_drop_what_the_index_knows_of_them() {
        let (_dir, store, _) = store_with_client().await;
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

    #[tokio::test]
    async fn over_long_identifiers_are_unknown_and_never_remembered() {
        let (_dir, store, _) = store_with_client().await;
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
    #[tokio::test]
    async fn the_writer_reports_its_batches() {
        let (_dir, store, credential) = store_with_client().await;
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
    #[tokio::test]
    async fn index_lookups_and_size_are_exported() {
        let (_dir, store, credential) = store_with_client().await;
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
        assert_eq!(
            (lookups("token", "hit"), lookups("token", "miss")),
            (0.0, 1.0)
        );
        assert_eq!(lookups("credential", "miss"), 1.0);
        store
            .write(move |repo| repo.insert_token(&token(&credential, &digest("t"), None)))
            .await
            .expect("insert");
        store.checked_token(&digest("t")).await.expect("read");
        assert_eq!(lookups("token", "hit"), 1.0);
        assert_eq!(
            sample(&store, "token_service_index_entries{map=\"token\"}"),
            1.0
        );
        let [_, credentials, tokens] = store.index().sizes();
        assert_eq!(
            sample(&store, "token_service_index_bytes{map=\"token\"}"),
            tokens.bytes as f64
        );
        assert_eq!(credentials.entries, 1);
    }

    /// Rows written by another version, or damaged: errors naming the row, never defaults.
    #[tokio::test]
    async fn corrupt_rows_are_errors_not_defaults() {
        let (dir, store, credential_id) = store_with_client().await;
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
    #[tokio::test]
    async fn updating_a_deleted_row_is_not_found() {
        let (_dir, store, credential_id) = store_with_client().await;
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
}
