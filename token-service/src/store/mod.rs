//! Storage: one SQLite file in WAL mode, behind [`Store`].
//!
//! Handlers never see SQL or SQLite types: they run a closure against a [`Repo`], whose methods
//! are the whole storage vocabulary (consumers, services, plugins, credentials, codes, tokens,
//! the change feed). A server database later means another `Repo` backend, not new handlers.
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction on the single writer connection, with
//! `synchronous=FULL`, so an acknowledged write survives SIGKILL and power loss. Reads use a
//! small pool of reader connections (WAL lets them run beside the writer). All SQLite work runs
//! on tokio's blocking pool; no lock is held across an `.await`.
//!
//! The change feed (`changes`) is kept by triggers: whenever a token row is deleted, its access
//! token replaced, or the consumer or credential behind it changes, the access-token digest is
//! appended in the same transaction. The filter polls it to evict cached tokens.

mod repo;
mod schema;

pub use repo::{NewCode, NewToken, Page, RefreshOutcome, Repo, TokenWithOwner};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    fn classify(err: rusqlite::Error) -> StoreError {
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
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

const READER_POOL: usize = 8;

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Task(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut writer = open_connection(path)?;
        schema::migrate(&mut writer)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` in a write transaction; commits when it returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Repo<'_>) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| StoreError::Task("writer lock poisoned".into()))?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(StoreError::classify)?;
            let value = f(&Repo::new(&tx))?;
            tx.commit().map_err(StoreError::classify)?;
            Ok(value)
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
        run_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path)?,
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

async fn run_blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
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
