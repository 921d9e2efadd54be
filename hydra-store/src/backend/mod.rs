//! What differs between databases, one folder per backend behind one
//! trait ([`Dialect`]).
//!
//! The statement rooms (`crate::store`) write their SQL once, in the form
//! SQLite and PostgreSQL share, and ask the store's dialect for everything
//! else: placeholders, transactions and locks, the fence of an insert,
//! upserts and `RETURNING`, the multi-row step writes of a group commit,
//! copying tables, how a process learns that runs became claimable
//! elsewhere, and how many write transactions pay to run at once. The
//! trait's provided methods are the shared form; a backend overrides what
//! it spells differently.
//!
//! - `sqlite/`: a WAL-mode file (or memory), the write gate, the writer
//!   thread (`sqlite/writer/`), wake-ups by `PRAGMA data_version`
//!   (`sqlite/watch.rs`), multi-row step writes (`sqlite/steps.rs`);
//! - `postgres/`: `FOR UPDATE SKIP LOCKED`, a task per `BEGIN`, wake-ups by
//!   `LISTEN` (`postgres/listen.rs`), step writes as arrays after one
//!   ordered lock (`postgres/steps.rs`).
//!
//! Adding a backend means a folder that implements [`Dialect`] (and a
//! [`WakeSource`]), its `Backend` variant, its line in `pick`, [`open`] and
//! [`is_transient_code`]; `docs/ARCHITECTURE.md` ("To add a backend") lists the
//! rest, and what a database outside the SQL subset SQLite and PostgreSQL
//! share needs beyond it.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::error::StoreError;
use crate::model::{Lease, OpenStep, StepRecord};
use crate::sql::{Db, Direct};
use crate::store::{BatchValue, Store};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A boxed future: what the trait's asynchronous methods return.
pub(crate) type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answers of step results written together, in their order.
pub(crate) type StepAnswers = Vec<Result<BatchValue, StoreError>>;

/// A step result that keeps its run going and moves its open step: the
/// write a group commit applies together with others of its kind.
pub(crate) type HotStep<'a> = (&'a Lease, &'a StepRecord, OpenStep);

/// Which database a [`crate::Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite: a file in WAL mode, or in memory.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Opens the database `opts` names, applies migrations, and returns its
/// pool and the dialect of its backend (with the backend's own state: a
/// write gate, a writer thread, a listening connection). `commits` is the
/// store's commit count, shared with any store the backend builds itself.
pub(crate) async fn open(
    opts: &crate::StoreOptions,
    commits: &Arc<AtomicU64>,
) -> Result<(DatabaseConnection, Arc<dyn Dialect>), StoreError> {
    match pick(&opts.url)? {
        Backend::Sqlite => sqlite::open(opts, commits).await,
        Backend::Postgres => postgres::open(opts).await,
    }
}

/// The backend a URL names, by its scheme.
/// Whether a database error code means a passing condition (contention,
/// a connection going away) that a retry may outlive, on any backend: each
/// backend names its own codes, and codes of different backends do not
/// collide (SQLite's are numbers, PostgreSQL's five-character SQLSTATEs).
pub(crate) fn is_transient_code(code: &str) -> bool {
    sqlite::is_transient_code(code) || postgres::is_transient_code(code)
}

fn pick(url: &str) -> Result<Backend, StoreError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(crate::connect::invalid(url, "the URL is empty"));
    }
    match trimmed.split_once(':') {
        Some(("sqlite", _)) => Ok(Backend::Sqlite),
        Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => Ok(Backend::Postgres),
        Some((scheme, _)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
            Err(StoreError::UnsupportedScheme { scheme: scheme.to_owned(), url: crate::connect::redact(url) })
        }
        _ => Err(crate::connect::invalid(url, "expected sqlite://PATH?mode=rwc, sqlite::memory: or postgres://…")),
    }
}

/// Wake-ups: a backend's way to learn that runs became claimable, or
/// ended, in another process (see [`Store::wake_ups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WakeUp {
    /// A run of this namespace became claimable.
    Runs(String),
    /// The run with this ID ended.
    Ended(String),
    /// A cancel was accepted for the running run with this ID.
    CancelRequested(String),
    /// Something was committed (which runs, the backend cannot tell): a
    /// worker with a free slot may claim. A commit of this very process
    /// also shows as one.
    Changed,
}

/// What differs between databases (see the module docs). One value per
/// store: it also holds the backend's state for that store.
pub(crate) trait Dialect: Send + Sync + std::fmt::Debug {
    /// Which database this is.
    fn kind(&self) -> Backend;

    /// sea-orm's name for it (statements carry it).
    fn db_backend(&self) -> DbBackend;

    /// A statement from SQL written with `?` placeholders (never a literal
    /// `?` in the text) and its values, in this database's placeholders.
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.db_backend(), sql, values)
    }

    // Transactions.

    /// Begins a write transaction on the pool, safe to drop at any point.
    fn begin<'a>(&'a self, db: &'a DatabaseConnection) -> Fut<'a, Result<DatabaseTransaction, DbErr>>;

    /// Begins a transaction that reads a consistent snapshot of `tables`
    /// and keeps writers out of them until it ends (a move's source).
    fn begin_snapshot<'a>(
        &'a self,
        db: &'a DatabaseConnection,
        tables: &'a [&'a str],
    ) -> Fut<'a, Result<DatabaseTransaction, DbErr>>;

    /// Takes the lock that makes concurrent migrations of one database
    /// wait for each other, inside the migration's transaction.
    fn migration_lock<'a>(&'a self, txn: &'a DatabaseTransaction) -> Fut<'a, Result<(), DbErr>>;

    /// The statements that make `tables` refuse every write with
    /// `message` (a string literal's content, quotes doubled): a moved
    /// database's seal (see `store/moved.rs`).
    fn seal(&self, message: &str, tables: &[&str]) -> Vec<String>;

    /// What the commits of connection `db` survive, as it reports its own
    /// settings (see [`crate::Store::durability`]).
    fn durability<'a>(&'a self, db: Db<'a>) -> Fut<'a, Result<crate::Durability, DbErr>>;

    /// One writer at a time in this process, if the database has one
    /// write lock: writers queue here rather than in the database's busy
    /// handler.
    fn write_gate(&self) -> Option<&Arc<tokio::sync::Mutex<()>>> {
        None
    }

    /// A thread of the backend's own that runs the hot write transactions
    /// (group commits, starts) on a [`Direct`] connection, if it has one.
    fn writer(&self) -> Option<&dyn Offload> {
        None
    }

    /// Whether this database's wake-ups name the runs they concern (a
    /// namespace, an ended run) rather than only that something was
    /// committed (see [`WakeUps::names_runs`]).
    fn wake_ups_name_runs(&self) -> bool {
        false
    }

    /// How many group-commit transactions are worth running at once: one
    /// where the database writes one at a time anyway, more where
    /// concurrent transactions hide each other's round trips.
    fn committers(&self) -> usize {
        1
    }

    // Wake-ups.

    /// Tells of runs that became claimable (or ended) in any process;
    /// `None` if nothing else can write to this database (in memory).
    fn wake_ups<'a>(&'a self, store: &'a Store) -> Fut<'a, Result<Option<WakeUps>, StoreError>>;

    // SQL text.

    /// `col` compared in a form no index serves (see `store/fence.rs`).
    fn unindexed(&self, col: &str) -> String {
        format!("{col} || ''")
    }

    /// The function of the larger of two values.
    fn greatest(&self) -> &'static str;

    /// Locks the rows a `SELECT` reads until the transaction ends (empty
    /// where the transaction already holds the database's write lock).
    fn for_update(&self) -> &'static str;

    /// Locks the rows a `SELECT` of `alias` reads, skipping rows another
    /// transaction holds (empty as [`Dialect::for_update`]).
    fn for_update_skip_locked(&self, alias: Option<&str>) -> String;

    /// The tail of a statement that returns `cols` of the rows it wrote.
    fn returning(&self, cols: &str) -> String {
        format!(" RETURNING {cols}")
    }

    /// The tail of an insert that writes nothing where a row with the
    /// same `key` columns exists.
    fn on_conflict_ignore(&self, key: &str) -> String {
        format!(" ON CONFLICT ({key}) DO NOTHING")
    }

    /// The tail of an insert that updates the row with the same `key`
    /// columns instead, by `set` (`excluded.col` names the new value);
    /// `filter`, if not empty, limits which existing rows are updated.
    fn on_conflict_update(&self, key: &str, set: &str, filter: &str) -> String {
        if filter.is_empty() {
            format!(" ON CONFLICT ({key}) DO UPDATE SET {set}")
        } else {
            format!(" ON CONFLICT ({key}) DO UPDATE SET {set} WHERE {filter}")
        }
    }

    /// An `INSERT … SELECT` that inserts only while the fence (`fence`: a
    /// condition on `workflow_executions`, see `store/fence.rs`) holds;
    /// with `open`, the statement also moves the run's open step (where
    /// the fence is an update of the run). Values: [`Dialect::fenced_values`].
    fn fenced_insert(&self, fence: &str, open: &str, insert: &str, select: &str, tail: &str) -> String;

    /// The values of a [`Dialect::fenced_insert`], given the fence's, the
    /// time, the open step's and the row's.
    fn fenced_values(&self, fence: [Value; 3], now: i64, open: Vec<Value>, row: Vec<Value>) -> Vec<Value>;

    // Group commits.

    /// Whether the step results `hot` are worth writing together (rather
    /// than one statement each).
    fn steps_together_pays(&self, hot: &[(usize, HotStep<'_>)]) -> bool;

    /// Locks the runs `ids`, and the parents of the runs `ending` (an end
    /// tells its parent in the same transaction), in the byte order of
    /// their IDs, until the transaction ends. A transaction that writes
    /// several runs, or ends a run that may have a parent, calls it before
    /// it writes any run, so that no two such transactions wait for each
    /// other in a cycle (lease renewals lock in the same order, see
    /// `store/fence.rs`). A backend that takes row locks must lock here; one
    /// whose write transactions run one at a time (SQLite's one writer)
    /// has no cycle to avoid.
    fn lock_runs<'a>(
        &'a self,
        store: &'a Store,
        db: Db<'a>,
        ids: Vec<String>,
        ending: Vec<String>,
    ) -> Fut<'a, Result<(), StoreError>>;

    /// Writes the step results `items` together in `txn` (see
    /// `store/batch.rs`, which has locked their runs with
    /// [`Dialect::lock_runs`] first): `Some` answers in the order of
    /// `items` when every row was written, `None` when one was refused and
    /// the transaction must be rolled back. A backend that writes one step
    /// this way too ([`Dialect::writes_one_step_together`]) answers a
    /// single item with its own answer, never `None`.
    fn steps_together<'a>(
        &'a self,
        store: &'a Store,
        db: Db<'a>,
        items: &'a [HotStep<'a>],
        now: i64,
    ) -> Fut<'a, Result<Option<StepAnswers>, StoreError>>;

    /// Whether one step result alone is written as [`Dialect::steps_together`]
    /// writes many (where that is as cheap as the one-row statement).
    fn writes_one_step_together(&self) -> bool {
        false
    }

    /// Whether a write refused inside a batch (a step already recorded, a
    /// position taken) leaves the batch's transaction unusable or changed,
    /// so that the batch must be redone one write per transaction.
    fn refusal_spoils_batch(&self) -> bool {
        false
    }

    // Moving a database.

    /// A query of one column, `name`, listing the columns of table `?`.
    fn columns_query(&self) -> &'static str;

    /// After rows with explicit IDs were copied into `table`: moves its ID
    /// sequence past them, where it has one.
    fn after_copy<'a>(&'a self, _db: Db<'a>, _table: &'a str) -> Fut<'a, Result<(), DbErr>> {
        Box::pin(async { Ok(()) })
    }
}

/// A backend's thread for hot write transactions (see [`Dialect::writer`]):
/// it runs a job of the store's own code on a store whose statements go to
/// its [`Direct`] connection, one hand-off per transaction.
pub(crate) trait Offload: Send + Sync {
    /// Runs `job` while `gate` (the store's write gate) is held.
    fn run_job<'a>(
        &'a self,
        gate: Option<tokio::sync::OwnedMutexGuard<()>>,
        job: ErasedJob,
    ) -> Fut<'a, Result<Box<dyn std::any::Any + Send>, StoreError>>;
}

/// A job for an [`Offload`]: the store's code for one write transaction,
/// its answer type erased.
pub(crate) type ErasedJob = Box<
    dyn for<'s> FnOnce(
            &'s Store,
        ) -> Pin<Box<dyn Future<Output = Result<Box<dyn std::any::Any + Send>, StoreError>> + 's>>
        + Send,
>;

/// The wake-ups of one store (see [`Store::wake_ups`]).
pub struct WakeUps {
    source: Box<dyn WakeSource>,
}

/// Where a backend's wake-ups come from.
pub(crate) trait WakeSource: Send {
    /// The next wake-up (see [`WakeUps::next`]).
    fn next(&mut self) -> Fut<'_, Result<WakeUp, StoreError>>;
    /// See [`WakeUps::names_runs`].
    fn names_runs(&self) -> bool;
}

impl std::fmt::Debug for WakeUps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeUps").field("names_runs", &self.names_runs()).finish()
    }
}

impl WakeUps {
    pub(crate) fn new(source: impl WakeSource + 'static) -> Self {
        WakeUps { source: Box::new(source) }
    }

    /// Waits for the next wake-up. An error means wake-ups may have been
    /// missed (the connection was lost and is being re-established, or
    /// this receiver fell behind): look once anyway, and call again.
    pub async fn next(&mut self) -> Result<WakeUp, StoreError> {
        self.source.next().await
    }

    /// Whether these wake-ups tell which runs (a namespace, an ended run)
    /// rather than only that something was committed.
    pub fn names_runs(&self) -> bool {
        self.source.names_runs()
    }
}

/// Builds the store of a backend's own [`Direct`] connection (its writer
/// thread's): statements go to `conn`, `dialect` speaks for it.
pub(crate) fn direct_store(dialect: Arc<dyn Dialect>, conn: Arc<dyn Direct>, commits: &Arc<AtomicU64>) -> Store {
    Store::from_parts(DatabaseConnection::default(), dialect, Arc::clone(commits), Some(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_backend_or_say_why_not() {
        assert_eq!(pick("sqlite::memory:").ok(), Some(Backend::Sqlite));
        assert_eq!(pick(" sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(pick("postgres://u@localhost/db").ok(), Some(Backend::Postgres));
        assert_eq!(pick("postgresql://u@localhost/db").ok(), Some(Backend::Postgres));
        assert!(matches!(pick("mysql://u@h/db"), Err(StoreError::UnsupportedScheme { .. })));
        assert!(matches!(pick(""), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(pick("not a url"), Err(StoreError::InvalidUrl { .. })));
    }
}
