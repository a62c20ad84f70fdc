//! The server backend: PostgreSQL, shared by several token-service replicas.
//!
//! Each replica keeps the embedded backend's shape: one writer thread group-commits every
//! waiting write (one transaction, one savepoint per write), readers come from a small pool.
//! What several writers change is the rest:
//!
//! - **Decisions are single statements.** Spending a code (`UPDATE ... WHERE used_at IS NULL`)
//!   and rotating a refresh token (`DELETE` of the old row) are decided by the row lock: of
//!   replicas racing on one row, one changes it and the others, once it commits, change
//!   nothing and lose (see [`super::Repo::rotate_token`]). Reads inside a write lock the row
//!   they find, so an admin read-modify-write never overwrites another replica's.
//! - **Every replica's index learns every replica's changes.** Triggers append to `changes`
//!   (token digests; a `service` or `credential` row when services, plugins or credentials
//!   change) with the writing transaction's id. A follower thread reads, every `feed_poll` (100 ms by default),
//!   the rows of transactions below the *horizon*, the oldest transaction still running
//!   (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction below it has ended, so the
//!   rows it reads between two horizons are final, and none is skipped however commits
//!   interleave (a `seq` read in order would skip a low seq committed late). The filter's
//!   state poll uses the same horizons as feed positions, through any replica. A replica's own
//!   writes leave its index before they commit, as with SQLite, and the tokens it issues enter
//!   it as they commit. A request carrying a feed position the follower has not reached yet
//!   makes the index catch up first ([`Postgres::catch_up`]).
//! - **Every replica knows every live token's digest.** The feed also carries the digest of
//!   each token inserted or updated (`issued` rows), and the follower reads every change its
//!   snapshot sees (above the horizon too), checking which digests rows still hold. A digest
//!   the set lacks is refused only once a feed read begun after the check arrived is applied
//!   (`Store::checked_token`), so a token another replica just issued is never refused.
//! - **Migrations and purges take advisory locks**: replicas starting at once migrate one at a
//!   time; one replica purges at a time, in short batches that skip locked rows.

use super::index::{Expiry, Invalidation, TokenChanges};
use super::sql::{Dialect, Row, Sql, Value};
use super::{
    schema, Deliver, FeedChange, Index, Job, Purged, Repo, StoreError, StoreResult, READER_POOL,
};
use crate::metrics::Metrics;
use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, IsolationLevel, NoTls, Statement, Transaction};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Most writes one commit carries.
const MAX_BATCH: usize = 256;
/// `pg_advisory_lock` keys: schema migrations, and the purge.
const MIGRATION_LOCK: i64 = 0x6f61_7574_6832_0001;
const PURGE_LOCK: i64 = 0x6f61_7574_6832_0002;
/// Own transactions remembered at most while the follower has not read past them.
const MAX_OWN_TRANSACTIONS: usize = 100_000;
/// Rows of each kind one purge transaction deletes at most.
const PURGE_BATCH: i64 = 1_000;

pub struct Postgres {
    config: postgres::Config,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    cursor: Arc<Cursor>,
    /// Connections the readers' side opened so far (the pool and catch-ups): how the tests
    /// see that a burst is served on the pool's connections.
    opened: AtomicUsize,
}

/// A connection with the statements prepared on it (named statements live as long as it).
struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
    /// When it last served: one idle longer than [`IDLE_CHECK`] is checked before use.
    used: Instant,
}

/// A connection idle this long may have died with its server (a PostgreSQL restart): it is
/// checked (one round trip) before it serves, so the first request after a restart is
/// served rather than failed.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long data sent to the server may go unacknowledged before the connection is given up
/// (`TCP_USER_TIMEOUT`): a partitioned server, not a slow one.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the change follower waits for a new connection (see [`follow_changes`]).
const FOLLOWER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Connection {
    fn open(config: &postgres::Config) -> StoreResult<Connection> {
        Ok(Connection {
            client: config.connect(NoTls).map_err(classify)?,
            statements: HashMap::new(),
            used: Instant::now(),
        })
    }

    /// The connection if it is still usable.
    fn checked(mut self) -> Option<Connection> {
        if self.client.is_closed() {
            return None;
        }
        if self.used.elapsed() > IDLE_CHECK && self.client.is_valid(IDLE_CHECK).is_err() {
            return None;
        }
        self.used = Instant::now();
        Some(self)
    }
}

impl Postgres {
    /// Connects, migrates the schema (one replica at a time), and starts the writer and the
    /// change follower. Blocking: call it off the async runtime.
    pub fn connect(
        url: &str,
        feed_poll: Duration,
        index: Arc<Index>,
        metrics: Arc<Metrics>,
    ) -> StoreResult<Postgres> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Task(format!("not a PostgreSQL URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("token-service");
        }
        config.connect_timeout(Duration::from_secs(5));
        // A stuck statement fails (the caller answers 503) instead of holding a request, a
        // row lock or the feed's horizon for ever; the operator's own options come first.
        let options = config.get_options().unwrap_or_default().to_string();
        config.options(format!(
            "-c statement_timeout=10s -c lock_timeout=5s -c idle_in_transaction_session_timeout=60s {options}"
        ).trim());
        config.keepalives_idle(Duration::from_secs(30));
        // A network partition drops packets instead of refusing them: without this, a query
        // sent on a pooled connection waits for TCP's own give-up (~15 min), holding its
        // request and its pool slot, so the replica hangs where it must answer 503, and after
        // the partition heals it recovers only at the next retransmission (~45 s measured by
        // the compose fault tests). Sent data unacknowledged for this long closes the
        // connection: the request fails closed and the next one opens a fresh connection.
        // (The server acknowledges a query as it arrives, so long statements are not cut.)
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
        let mut writer = Connection::open(&config)?;
        schema::migrate_postgres(&mut writer.client)?;
        // The digest set as of the horizon, read in the same snapshot: every change the set
        // lacks is above the horizon, where the follower starts.
        let horizon = in_transaction(&mut writer, true, |repo| {
            let horizon = repo.postgres_horizon()?;
            load_digests(&index, repo)?;
            Ok(horizon)
        })?;
        let (jobs, queue) = mpsc::channel();
        let own = Arc::new(Mutex::new(HashSet::new()));
        let writer = Writer {
            config: config.clone(),
            conn: Some(writer),
            index: index.clone(),
            own: own.clone(),
        };
        std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || writer.run(queue, &metrics))
            .map_err(|e| StoreError::Task(format!("cannot start the writer thread: {e}")))?;
        let cursor = Arc::new(Cursor {
            advancing: Mutex::new(()),
            applied: AtomicI64::new(horizon),
            begun: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            last_began: Mutex::new(None),
            index: Arc::downgrade(&index),
            own,
        });
        let (follower_config, follower_cursor) = (config.clone(), cursor.clone());
        std::thread::Builder::new()
            .name("postgres-feed".into())
            .spawn(move || follow_changes(follower_config, follower_cursor, feed_poll))
            .map_err(|e| StoreError::Task(format!("cannot start the change follower: {e}")))?;
        Ok(Postgres {
            config,
            jobs,
            readers: Mutex::new(Vec::new()),
            cursor,
            opened: AtomicUsize::new(0),
        })
    }

    /// The feed position this replica's index has applied.
    pub fn applied(&self) -> i64 {
        self.cursor.applied.load(Ordering::Acquire)
    }

    /// What a request must remember as it arrives to catch up: see [`Postgres::caught_up`].
    pub fn catch_up_ticket(&self) -> u64 {
        self.cursor.begun.load(Ordering::Acquire)
    }

    /// Whether the index has applied `position`, or read a horizon beyond any position that
    /// existed when the request holding `ticket` arrived: a feed read *begun* after that
    /// (and done) saw every transaction a filter could have heard of by then, so a larger
    /// position is not one of this feed's (forged, or another database's) and reading again
    /// would find nothing more. Without this, every such request read the feed once more.
    pub fn caught_up(&self, position: i64, ticket: u64) -> bool {
        self.applied() >= position || self.cursor.succeeded.load(Ordering::Acquire) > ticket
    }

    /// Brings the index up to the feed's current horizon (blocking), for a request that carries
    /// a position this replica's follower has not reached yet: the filter learned of a
    /// revocation from another replica, and this one must not answer from before it. The
    /// caller serializes catch-ups (one connection at a time: see `Store::catch_up`).
    pub fn catch_up(&self, position: i64, ticket: u64) -> StoreResult<()> {
        if self.caught_up(position, ticket) {
            return Ok(());
        }
        let mut conn = self.pooled()?;
        let result = self.cursor.advance(&mut conn, position, ticket);
        self.give_back(conn, result.is_ok());
        result
    }

    pub fn submit(&self, job: Job) -> StoreResult<()> {
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Task("the writer thread stopped".into()))
    }

    /// Runs `f` in a read-only snapshot on a pooled connection (blocking).
    pub fn read<T>(&self, f: impl FnOnce(&Repo<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.pooled()?;
        let result = in_transaction(&mut conn, true, f);
        self.give_back(conn, result.is_ok());
        result
    }

    /// Deletes expired rows in short batches; another replica already purging means this one
    /// has nothing to do.
    pub fn purge_expired(&self, now: i64, feed_retention_s: i64) -> StoreResult<Purged> {
        let mut conn = self.pooled()?;
        let result = purge_with_lock(&mut conn, now, feed_retention_s, &self.cursor.index);
        self.give_back(conn, result.is_ok());
        result
    }

    fn pooled(&self) -> StoreResult<Connection> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        match pooled.and_then(Connection::checked) {
            Some(conn) => Ok(conn),
            None => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                Connection::open(&self.config)
            }
        }
    }

    /// Connections opened for reads and catch-ups so far.
    #[cfg(test)]
    pub fn connections_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }

    /// How long ago the latest feed read (the follower's, or a catch-up's) began.
    pub fn since_last_feed_read(&self) -> Option<Duration> {
        let began = *self.cursor.last_began.lock().ok()?;
        began.map(|at| at.elapsed())
    }

    /// Feed reads (advances of the cursor) so far, the follower's included.
    #[cfg(test)]
    pub fn feed_reads(&self) -> u64 {
        self.cursor.begun.load(Ordering::Acquire)
    }

    /// Pools a connection again, unless its last use failed (it may be what failed).
    fn give_back(&self, mut conn: Connection, succeeded: bool) {
        if !succeeded || conn.client.is_closed() {
            return;
        }
        conn.used = Instant::now();
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < READER_POOL {
                pool.push(conn);
            }
        }
    }
}

impl Drop for Postgres {
    /// Closing a connection blocks on its own runtime, which a tokio worker must not do: the
    /// pool is closed on a thread of its own.
    fn drop(&mut self) {
        let readers = self
            .readers
            .lock()
            .map(|mut pool| std::mem::take(&mut *pool))
            .unwrap_or_default();
        let _ = std::thread::Builder::new()
            .name("postgres-close".into())
            .spawn(move || drop(readers));
    }
}

/// Runs `f` in one transaction (read-only snapshot, or read-write), committing when it
/// returns `Ok`.
fn in_transaction<T>(
    conn: &mut Connection,
    read_only: bool,
    f: impl FnOnce(&Repo<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let Connection {
        client, statements, ..
    } = conn;
    let mut builder = client.build_transaction();
    if read_only {
        builder = builder
            .read_only(true)
            .isolation_level(IsolationLevel::RepeatableRead);
    }
    let tx = Tx::new(builder.start().map_err(classify)?, statements);
    let value = f(&Repo::new(&tx))?;
    tx.into_inner().commit().map_err(classify)?;
    Ok(value)
}

/// One transaction (or savepoint) with its connection's statement cache.
struct Tx<'a> {
    tx: RefCell<Transaction<'a>>,
    statements: RefCell<&'a mut HashMap<String, Statement>>,
    /// A write of the writer thread: its reads lock what they find.
    writes: bool,
    /// Ids of the token rows it inserted.
    inserted: RefCell<Vec<String>>,
}

impl<'a> Tx<'a> {
    fn new(tx: Transaction<'a>, statements: &'a mut HashMap<String, Statement>) -> Tx<'a> {
        Tx {
            tx: RefCell::new(tx),
            statements: RefCell::new(statements),
            writes: false,
            inserted: RefCell::new(Vec::new()),
        }
    }

    fn writing(mut self) -> Tx<'a> {
        self.writes = true;
        self
    }

    fn into_inner(self) -> Transaction<'a> {
        self.tx.into_inner()
    }

    fn statement(&self, sql: &str) -> StoreResult<Statement> {
        if let Some(known) = self.statements.borrow().get(sql) {
            return Ok(known.clone());
        }
        let prepared = self.tx.borrow_mut().prepare(sql).map_err(classify)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }
}

impl Sql for Tx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn locks_rows(&self) -> bool {
        self.writes
    }

    fn inserted_token(&self, id: &str) {
        self.inserted.borrow_mut().push(id.to_string());
    }

    fn execute(&self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        self.tx
            .borrow_mut()
            .execute(&statement, &params)
            .map_err(classify)
    }

    fn query(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = self
            .tx
            .borrow_mut()
            .query(&statement, &params)
            .map_err(classify)?;
        let columns: Arc<[String]> = statement
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        rows.iter()
            .map(|row| {
                let values = (0..columns.len())
                    .map(|i| value_at(row, i))
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Row::new(columns.clone(), values))
            })
            .collect()
    }
}

fn value_at(row: &postgres::Row, index: usize) -> StoreResult<Value> {
    let column = &row.columns()[index];
    let read = |e: postgres::Error| {
        StoreError::Corrupt(format!("column '{}' cannot be read: {e}", column.name()))
    };
    Ok(match *column.type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(read)?.into(),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(read)?
            .map(i64::from)
            .into(),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(read)?
            .map(i64::from)
            .into(),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(index)
            .map_err(read)?
            .into(),
        ref other => {
            return Err(StoreError::Corrupt(format!(
                "column '{}' has the unsupported type {other}",
                column.name()
            )))
        }
    })
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Value::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::BOOL) => (*v != 0).to_sql(ty, out),
            (Value::Text(v), _) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            (value, ty) => Err(format!("{value:?} cannot be a {ty} parameter").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// PostgreSQL's errors as the store's, by SQLSTATE (never by message text). Unique
/// constraints are named `<table>__<column>` in the schema, so a conflict names its column.
pub(super) fn classify(err: postgres::Error) -> StoreError {
    if unreachable(&err) {
        return StoreError::Unavailable(err.to_string());
    }
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            let constraint = db.constraint().unwrap_or_default();
            let column = constraint.rsplit("__").next().unwrap_or(constraint);
            return StoreError::Conflict(column.to_string());
        }
        if *db.code() == SqlState::FOREIGN_KEY_VIOLATION {
            return StoreError::MissingReference;
        }
    }
    StoreError::Postgres(err)
}

/// The server cannot be reached or will not serve now: a connection refused, lost or timed
/// out (an I/O error, or a closed connection), or the server shutting down, starting up or out
/// of connections. Not a fault of the request: it may succeed shortly.
fn unreachable(err: &postgres::Error) -> bool {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08") // connection_exception
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    err.is_closed()
        || std::error::Error::source(err).is_some_and(|source| source.is::<std::io::Error>())
}

/// Transactions this replica's writer committed (or is committing): their changes are
/// already out of its index, so its follower skips them instead of dropping them again
/// (which would also refuse every read that raced, for nothing).
type OwnTransactions = Arc<Mutex<HashSet<i64>>>;

/// The writer thread: one transaction per batch of waiting writes, one savepoint per write;
/// a lost connection is opened again for the next batch.
struct Writer {
    config: postgres::Config,
    conn: Option<Connection>,
    index: Arc<Index>,
    own: OwnTransactions,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>, metrics: &Metrics) {
        while let Some(batch) = super::next_batch(&queue, MAX_BATCH) {
            let writes = batch.len();
            let mut delivers = Vec::with_capacity(writes);
            let commit = match self.conn.take().and_then(Connection::checked) {
                Some(c) => Ok(c),
                None => Connection::open(&self.config),
            }
            .and_then(|mut c| {
                let result = self.run_batch(&mut c, batch, &mut delivers);
                // A failed batch may have failed with its connection: the next opens another.
                if result.is_ok() {
                    c.used = Instant::now();
                    self.conn = Some(c);
                }
                result
            });
            metrics.write_batch(writes, commit.as_ref().ok().copied());
            // Jobs a failed connection never ran are dropped: their callers see the write fail.
            super::deliver_all(delivers, commit);
        }
    }

    fn run_batch(
        &self,
        conn: &mut Connection,
        batch: Vec<Job>,
        delivers: &mut Vec<Deliver>,
    ) -> StoreResult<(Duration, Duration)> {
        let began = Instant::now();
        let Connection {
            client, statements, ..
        } = conn;
        let mut tx = client.transaction().map_err(classify)?;
        let mut inserted = Vec::new();
        for job in batch {
            let savepoint = Tx::new(tx.transaction().map_err(classify)?, statements).writing();
            // A write that panics must not take the writer thread with it: its savepoint
            // rolls back and its caller sees the write dropped.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job(&Repo::new(&savepoint))
            }));
            let written = savepoint.inserted.take();
            let savepoint = savepoint.into_inner();
            let Ok((ok, deliver)) = outcome else { continue };
            delivers.push(deliver);
            if ok {
                savepoint.commit().map_err(classify)?;
                inserted.extend(written);
            }
        }
        let tx = Tx::new(tx, statements);
        let repo = Repo::new(&tx);
        let (invalidation, tokens) = own_changes(&repo)?;
        if let Some(txid) = repo.postgres_transaction_id()? {
            // Bounded for a follower that cannot reach the server for long: a transaction
            // left out is only applied twice, which costs nothing but a few cache misses.
            if let Ok(mut own) = self.own.lock() {
                if own.len() < MAX_OWN_TRANSACTIONS {
                    own.insert(txid);
                }
            }
        }
        if !invalidation.is_empty() {
            self.index.invalidate(&invalidation);
        }
        // Issued tokens, read before the commit (the transaction sees its own rows) and indexed
        // after it, unless anything was invalidated meanwhile (another replica's revocation
        // applied by the follower): then their first check reads them.
        let issued = if inserted.is_empty() || !invalidation.is_empty() {
            Vec::new()
        } else {
            repo.tokens_with_owner_by_id(&inserted)?
        };
        let generation = self.index.generation();
        // Before the commit, so no committed token is missing from the digest set.
        self.index.apply_tokens(&tokens, Expiry::Raise);
        let committing = Instant::now();
        if let Err(e) = tx.into_inner().commit() {
            if !tokens.gone.is_empty() {
                // Whether the revocations committed is unknown: the set may lack live tokens.
                self.index.digests_incomplete();
            }
            return Err(classify(e));
        }
        let done = Instant::now();
        self.index.apply_tokens(&tokens, Expiry::Exact);
        // Again after the commit: a read may have raced it and put a stale answer back.
        if !invalidation.is_empty() {
            self.index.invalidate(&invalidation);
        }
        for found in issued {
            let digest = found.token.access_token_hash.clone();
            self.index.learn_token(generation, &digest, found);
        }
        Ok((done - began, done - committing))
    }
}

/// What the current transaction changed so far: what the index must forget, and what its
/// digest set must learn.
fn own_changes(repo: &Repo<'_>) -> StoreResult<(Invalidation, TokenChanges)> {
    let changes: Vec<FeedChange> = repo
        .postgres_own_changes()?
        .into_iter()
        .map(|(kind, digest)| FeedChange {
            txid: 0,
            kind,
            digest,
        })
        .collect();
    let tokens = token_changes(repo, &changes)?;
    Ok((invalidation_of(changes, &HashSet::new()), tokens))
}

/// What feed changes did to tokens, as the transaction reading them sees the rows: each
/// digest they name (issued, changed or revoked) is held by a row, or gone.
fn token_changes(repo: &Repo<'_>, changes: &[FeedChange]) -> StoreResult<TokenChanges> {
    let mut named: Vec<String> = changes
        .iter()
        .filter(|c| c.kind == "token" || c.kind == "issued")
        .map(|c| c.digest.clone())
        .collect();
    named.sort_unstable();
    named.dedup();
    let live = repo.token_expiries_of(&named)?;
    Ok(TokenChanges::new(named, live))
}

/// Digests the digest set's load reads at once.
const DIGEST_PAGE: i64 = 10_000;

/// Loads every live token's digest, as `repo`'s snapshot sees them.
fn load_digests(index: &Index, repo: &Repo<'_>) -> StoreResult<()> {
    index.load_digests(|after| repo.token_expiries_page(after, DIGEST_PAGE))
}

/// What changes mean for an index, leaving out those of the `skipped` transactions.
fn invalidation_of(
    changes: impl IntoIterator<Item = FeedChange>,
    skipped: &HashSet<i64>,
) -> Invalidation {
    let mut invalidation = Invalidation::default();
    for change in changes
        .into_iter()
        .filter(|change| !skipped.contains(&change.txid))
    {
        match change.kind.as_str() {
            "token" => invalidation.digests.push(change.digest),
            "service" => invalidation.services = true,
            "credential" => invalidation.credentials = true,
            // A new digest: nothing remembered can be stale (the digest set learns it).
            "issued" => {}
            _ => invalidation.all = true,
        }
    }
    invalidation
}

/// How far this replica's index has followed the change feed, shared by the follower thread
/// and by requests that must not be answered from an index older than the feed position the
/// filter already holds ([`Postgres::catch_up`]).
struct Cursor {
    /// Held while advancing: one advance at a time (the follower's, or a request's catch-up).
    advancing: Mutex<()>,
    /// The horizon every change below which is applied.
    applied: AtomicI64,
    /// Advances begun so far; each is numbered by this count once it began.
    begun: AtomicU64,
    /// The number of the latest advance that succeeded.
    succeeded: AtomicU64,
    /// When the latest advance began (to space out the catch-ups of unknown tokens).
    last_began: Mutex<Option<Instant>>,
    index: std::sync::Weak<Index>,
    own: OwnTransactions,
}

impl Cursor {
    /// Reads the changes committed since the last advance and drops them from the index,
    /// unless, by the time it holds the lock, the index reached `until` or an advance begun
    /// after `ticket` was taken succeeded (see [`Postgres::caught_up`]): requests catching up
    /// at once read the feed once, not once each. The follower passes `u64::MAX`.
    fn advance(&self, conn: &mut Connection, until: i64, ticket: u64) -> StoreResult<()> {
        let Some(index) = self.index.upgrade() else {
            return Ok(());
        };
        let _advancing = self
            .advancing
            .lock()
            .map_err(|_| StoreError::Task("the feed cursor is poisoned".into()))?;
        if self.applied.load(Ordering::Acquire) >= until
            || self.succeeded.load(Ordering::Acquire) > ticket
        {
            return Ok(());
        }
        let number = self.begun.fetch_add(1, Ordering::AcqRel) + 1;
        if let Ok(mut last) = self.last_began.lock() {
            *last = Some(Instant::now());
        }
        let from = self.applied.load(Ordering::Acquire);
        // Every change a transaction visible to this snapshot made, the horizon's included
        // and those above it (committed, but beside an older one still running): a token
        // another replica issued is in the digest set once a read begun after its commit is
        // done. Changes above the horizon are read again next time; applying one twice
        // changes nothing.
        let (next, changes, tokens, gap) = in_transaction(conn, true, |repo| {
            let next = repo.postgres_horizon()?;
            let gap = from < repo.postgres_feed_floor()?;
            if gap || index.digests_complete() == Some(false) {
                // Changes were pruned before this replica read them, or a load or commit
                // failed: the digest set is read again, whole, in this snapshot.
                load_digests(&index, repo)?;
            }
            let changes = repo.postgres_changes_between(from, i64::MAX)?;
            let tokens = token_changes(repo, &changes)?;
            Ok((next, changes, tokens, gap))
        })?;
        index.apply_tokens(&tokens, Expiry::Exact);
        let mut invalidation = match self.own.lock() {
            Ok(mut own) => {
                let invalidation = invalidation_of(changes, &own);
                // Own transactions below the horizon have ended: none is still ahead.
                own.retain(|txid| *txid >= next);
                invalidation
            }
            Err(_) => invalidation_of(changes, &HashSet::new()),
        };
        // Pruned changes may have revoked anything.
        invalidation.all |= gap;
        if !invalidation.is_empty() {
            index.invalidate(&invalidation);
        }
        self.applied.store(next, Ordering::Release);
        self.succeeded.fetch_max(number, Ordering::AcqRel);
        Ok(())
    }
}

/// The change follower: applies other replicas' committed changes to this replica's index
/// every `every`, until the store is gone.
fn follow_changes(mut config: postgres::Config, cursor: Arc<Cursor>, every: Duration) {
    // A connection attempt made during a partition waits for its SYN's retransmissions: with
    // the requests' 5 s, the index stayed stale for up to 5 s after the partition healed
    // (measured by the compose fault tests). The follower tries again every round anyway.
    config.connect_timeout(FOLLOWER_CONNECT_TIMEOUT);
    let mut conn: Option<Connection> = None;
    loop {
        std::thread::sleep(every);
        if cursor.index.strong_count() == 0 {
            return;
        }
        let mut c = match conn.take().map_or_else(|| Connection::open(&config), Ok) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "change follower: cannot reach PostgreSQL");
                continue;
            }
        };
        match cursor.advance(&mut c, i64::MAX, u64::MAX) {
            Ok(()) => conn = Some(c),
            // The connection may be what failed: the next round opens another.
            Err(e) => tracing::warn!(error = %e, "change follower: cannot read the feed"),
        }
    }
}

/// One replica at a time (a session advisory lock), short batches until nothing is left.
/// Each batch's purged tokens leave this replica's index as it commits (the others' follow).
fn purge_with_lock(
    conn: &mut Connection,
    now: i64,
    feed_retention_s: i64,
    index: &std::sync::Weak<Index>,
) -> StoreResult<Purged> {
    let locked: bool = conn
        .client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&PURGE_LOCK])
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    if !locked {
        return Ok(Purged::default());
    }
    let mut total = Purged::default();
    let result = loop {
        match in_transaction(conn, false, |repo| {
            let batch = repo.purge_expired_batch(now, feed_retention_s, PURGE_BATCH)?;
            let (invalidation, tokens) = own_changes(repo)?;
            // Before the commit: purged tokens had expired, so dropping them early is no
            // wrong answer, and dropping them late could drop a digest issued again since.
            if let Some(index) = index.upgrade() {
                index.apply_tokens(&tokens, Expiry::Raise);
            }
            Ok((batch, invalidation))
        }) {
            Ok((batch, invalidation)) => {
                if let Some(index) = index.upgrade().filter(|_| !invalidation.is_empty()) {
                    index.invalidate(&invalidation);
                }
                total.add(&batch);
                if !batch.any_kind_reached(PURGE_BATCH as u64) {
                    break Ok(total);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = conn
        .client
        .execute("SELECT pg_advisory_unlock($1)", &[&PURGE_LOCK]);
    result
}

pub(super) fn migration_lock(client: &mut Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map(drop)
        .map_err(classify)
}

pub(super) fn migration_unlock(client: &mut Client) {
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
}
