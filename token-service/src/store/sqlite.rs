//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go to one writer thread, which group-commits: it takes every write waiting, runs each
//! in its own savepoint of one `BEGIN IMMEDIATE` transaction, and commits once (one fsync with
//! `synchronous=FULL`) before answering any of them. So an acknowledged write survives SIGKILL
//! and power loss, a failing write rolls back alone, and the fsync cost is shared by every
//! write of the batch. Reads use a small pool of reader connections on tokio's blocking pool
//! (WAL lets them run beside the writer).
//!
//! The change feed (`changes`) is kept by triggers: whenever a token row is deleted, its access
//! token replaced, or the consumer or credential behind it changes, the access-token digest is
//! appended in the same transaction. SQLite's update hook tells the writer which tables a batch
//! touched, so the in-memory [`Index`] is kept exact without polling.

use super::index::{Expiry, Invalidation, TokenChanges};
use super::sql::{Dialect, Row, Sql, Value};
use super::{schema, Deliver, Index, Job, Repo, StoreError, StoreResult, READER_POOL};
use crate::metrics::Metrics;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Most writes one commit carries: bounds the latency a batch adds to its first write.
const MAX_BATCH: usize = 512;

pub struct Sqlite {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file, brings its schema up to date and starts
    /// the writer thread.
    pub fn open(path: &Path, index: Arc<Index>, metrics: Arc<Metrics>) -> StoreResult<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Task(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut writer = open_connection(path)?;
        schema::migrate_sqlite(&mut writer)?;
        let feed = Feed::follow(&writer, index)?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_batches(writer, queue, feed, &metrics))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            jobs,
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn submit(&self, job: Job) -> StoreResult<()> {
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Task("the writer thread stopped".into()))
    }

    /// Runs `f` in a read transaction on a pooled reader (blocking: call it off the runtime).
    pub fn read<T>(&self, f: impl FnOnce(&Repo<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = {
            let tx = conn.transaction().map_err(classify)?;
            let value = f(&Repo::new(&*tx));
            drop(tx);
            value
        };
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < READER_POOL {
                pool.push(conn);
            }
        }
        result
    }
}

impl Sql for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let mut stmt = self.prepare_cached(&placeholders(sql)).map_err(classify)?;
        let changed = stmt
            .execute(rusqlite::params_from_iter(params))
            .map_err(classify)?;
        Ok(changed as u64)
    }

    fn query(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let mut stmt = self.prepare_cached(&placeholders(sql)).map_err(classify)?;
        let columns: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(classify)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(classify)? {
            let values = (0..columns.len())
                .map(|i| value_at(row, i, &columns[i]))
                .collect::<StoreResult<Vec<_>>>()?;
            found.push(Row::new(columns.clone(), values));
        }
        Ok(found)
    }
}

/// Statements are written with PostgreSQL's `$1`; SQLite's numbered form is `?1`.
fn placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '?' } else { c });
    }
    Cow::Owned(out)
}

fn value_at(row: &rusqlite::Row<'_>, index: usize, column: &str) -> StoreResult<Value> {
    Ok(match row.get_ref(index).map_err(classify)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Text(bytes) => Value::Text(
            String::from_utf8(bytes.to_vec())
                .map_err(|e| StoreError::Corrupt(format!("column '{column}': {e}")))?,
        ),
        other => {
            return Err(StoreError::Corrupt(format!(
                "column '{column}' holds a {:?}",
                other.data_type()
            )))
        }
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(v) => ToSqlOutput::from(*v),
            Value::Text(v) => ToSqlOutput::from(v.as_str()),
        })
    }
}

/// SQLite's errors as the store's: constraint failures by what failed, never by guessing.
pub(super) fn classify(err: rusqlite::Error) -> StoreError {
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

/// The writer thread: one transaction per batch of waiting writes, one savepoint per write.
fn write_batches(
    mut conn: Connection,
    queue: mpsc::Receiver<Job>,
    mut feed: Feed,
    metrics: &Metrics,
) {
    while let Some(batch) = super::next_batch(&queue, MAX_BATCH) {
        feed.reload_digests_if_needed(&conn);
        let writes = batch.len();
        let mut delivers = Vec::with_capacity(writes);
        let commit = run_batch(&mut conn, batch, &mut delivers, &mut feed);
        metrics.write_batch(writes, commit.as_ref().ok().copied());
        super::deliver_all(delivers, commit);
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
        .map_err(classify)?;
    for job in batch {
        let savepoint = tx.savepoint().map_err(classify)?;
        // A write that panics must not take the writer thread (and every later write) with
        // it: its savepoint rolls back and its caller sees the write dropped.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job(&Repo::new(&*savepoint))
        }));
        let Ok((ok, deliver)) = outcome else { continue };
        delivers.push(deliver);
        if ok {
            savepoint.commit().map_err(classify)?;
        }
        // Dropped uncommitted, a savepoint rolls back: a failed write leaves no trace.
    }
    let pending = feed.before_commit(&tx);
    let committing = Instant::now();
    if let Err(e) = tx.commit() {
        feed.commit_failed(&pending);
        return Err(classify(e));
    }
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
    /// Token rows inserted or updated (an update may give a row a new digest or expiry).
    written_tokens: Vec<i64>,
}

/// What a batch will have changed once committed.
struct Pending {
    invalidation: Invalidation,
    newest_seq: i64,
    inserted_tokens: Vec<i64>,
    tokens: TokenChanges,
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
                        t.inserted_tokens.push(rowid);
                        t.written_tokens.push(rowid);
                    }
                    "oauth2_tokens" if action == rusqlite::hooks::Action::SQLITE_UPDATE => {
                        t.written_tokens.push(rowid)
                    }
                    _ => {}
                }
            },
        ));
        let feed = Feed {
            index,
            touched,
            applied_seq,
        };
        feed.load_digests(writer);
        Ok(feed)
    }

    /// Loads every live token's digest into the index (the writer is the only writer: what
    /// it reads between batches is the whole truth).
    fn load_digests(&self, conn: &Connection) {
        let repo = Repo::new(conn);
        let loaded = self
            .index
            .load_digests(|after| repo.token_expiries_page(after, DIGEST_PAGE));
        if let Err(e) = loaded {
            tracing::warn!(error = %e, "cannot load the token digests: unknown tokens' checks read the database");
        }
    }

    /// After a failed load or commit, the digest set is loaded again before the next batch.
    fn reload_digests_if_needed(&self, conn: &Connection) {
        if self.index.digests_complete() == Some(false) {
            self.load_digests(conn);
        }
    }

    /// A commit that failed may have left rows the digest set already dropped.
    fn commit_failed(&self, pending: &Pending) {
        if !pending.tokens.gone.is_empty() {
            self.index.digests_incomplete();
        }
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
            tokens: TokenChanges::default(),
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
                    self.index.digests_incomplete();
                }
            }
        }
        if !pending.invalidation.is_empty() {
            self.index.invalidate(&pending.invalidation);
        }
        let named = pending.invalidation.digests.clone();
        if !named.is_empty() || !touched.written_tokens.is_empty() {
            match token_changes(tx, named, &touched.written_tokens) {
                Ok(tokens) => pending.tokens = tokens,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the batch's tokens: unknown tokens' checks read the database until a reload");
                    self.index.digests_incomplete();
                }
            }
        }
        // Before the commit, so no committed token is missing from the set; a revoked one
        // leaves it with the commit that is about to happen.
        self.index.apply_tokens(&pending.tokens, Expiry::Raise);
        pending
    }

    /// Drops the changes again (a read may have raced the commit) and adds inserted tokens.
    fn after_commit(&mut self, conn: &Connection, pending: Pending) {
        self.applied_seq = pending.newest_seq;
        self.index.apply_tokens(&pending.tokens, Expiry::Exact);
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

/// Digests the digest set's load reads at once.
const DIGEST_PAGE: i64 = 10_000;

/// What a batch did to tokens, read inside its transaction: the rows it wrote, and the
/// digests the feed named (still held by a row, or gone).
fn token_changes(
    tx: &Connection,
    named: Vec<String>,
    written: &[i64],
) -> StoreResult<TokenChanges> {
    let repo = Repo::new(tx);
    let mut live = repo.token_expiries_of(&named)?;
    live.extend(repo.token_expiries_by_rowid(written)?);
    Ok(TokenChanges::new(named, live))
}

/// A reader: WAL mode is a property of the file (set by the writer), so only per-connection
/// settings are needed here.
fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(classify)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(classify)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn numbered_placeholders_become_sqlites() {
        assert_eq!(placeholders("a = $1 AND b = $12"), "a = ?1 AND b = ?12");
        assert_eq!(placeholders("no params"), "no params");
        assert_eq!(placeholders("'$' || $2"), "'$' || ?2");
    }
}
