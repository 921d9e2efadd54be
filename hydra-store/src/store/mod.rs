//! The `Store`: every SQL statement the runtime needs, and nothing else.
//!
//! Policy (retries, backoff, what a lost lease means) is the runtime's; the
//! store only applies writes atomically and reports what happened. Every
//! write made on behalf of a claimed run is conditional on the caller's
//! fencing token and fails with [`StoreError::LeaseLost`] when the token is no
//! longer current. Times are milliseconds on the engine's clock, passed in
//! by the caller: the store never reads a clock.
//!
//! This file owns the [`Store`] handle: connecting, the write gate, commit
//! counting, statements in the backend's placeholders, and beginning and
//! settling a write transaction. What differs between databases is asked
//! of the store's dialect (`crate::backend`); no room here names a
//! backend. The statements live in one submodule per concern:
//!
//! - `fence`: the fencing condition every write on behalf of a claimed run carries;
//! - `runs`: creating, reading, listing and cancelling runs;
//! - `claim`: handing due runs to workers;
//! - `lease`: renewing leases and reclaiming expired ones;
//! - `step_write`: the step-row statements (an attempt, an outcome);
//! - `checkpoint`: fenced run transitions, with or without a step result;
//! - `batch`: group commit of many runs' writes;
//! - `cron`: cron schedules;
//! - `workers`: worker liveness rows;
//! - `repair`: an operator's retry and fork of a run;
//! - `search`: search attributes;
//! - `prune`: retention (deleting old finished runs in batches);
//! - `copy`: moving a whole database into another;
//! - `moved`: the seal a move leaves on its source;
//! - `inspect`: a run's signals and events, runs counted by status.
//! - `shown`: what an operator is shown of one run: pages of its steps,
//!   children, signals and events, payloads over a size left unread.

mod batch;
mod checkpoint;
mod children;
mod claim;
mod copy;
mod cron;
mod events;
mod fence;
mod inspect;
mod lease;
mod moved;
mod prune;
mod repair;
mod runs;
mod search;
mod shown;
mod signals;
pub(crate) mod step_write;
mod suspend;
mod workers;

pub use batch::{BatchOp, BatchValue};
pub use checkpoint::{Checkpoint, Transition};
pub use children::child_outcome_payload;
pub use copy::{MoveReport, MovedTable};
pub use events::EventValue;
pub use inspect::{EndedBucket, EventRow, SignalRow, StatusCount};
pub(crate) use moved::{moved_in, moved_to};
pub use prune::Pruned;
pub use repair::{COMPENSATION_MARKER, ForkRequest};
pub use search::{MAX_SEARCH_NAME_BYTES, MAX_SEARCH_VALUE_BYTES, check_search_attribute};
pub use shown::{Page, ShowLimits, Shown};
pub use signals::{AwakeableDraws, NewSignal, Receive, Received, SignalSent};
pub use suspend::DueRuns;

use crate::backend::{self, Backend, Dialect, WakeUps};
use crate::connect::{Durability, StoreOptions};
use crate::error::StoreError;
use crate::sql::{Db, Direct, Txn};
use sea_orm::{DatabaseConnection, Statement, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The persistence layer of one database, shared by engines and workers.
/// Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// What differs between databases, and the backend's state for this
    /// store (see `crate::backend`).
    dialect: Arc<dyn Dialect>,
    /// Write transactions committed through this store (for benchmarks).
    commits: Arc<AtomicU64>,
    /// A backend's own connection, on the store of its writer thread: its
    /// statements go there, never to the pool.
    direct: Option<Arc<dyn Direct>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dialect", &self.dialect).field("direct", &self.direct.is_some()).finish()
    }
}

impl Store {
    /// Opens `url` with default [`StoreOptions`] and applies migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(StoreOptions::new(url)).await
    }

    /// Opens a database and applies migrations. Fails with a clear
    /// [`StoreError`] within the connect timeout on a bad URL, an unknown
    /// scheme or an unreachable server.
    pub async fn connect_with(options: StoreOptions) -> Result<Store, StoreError> {
        let commits = Arc::new(AtomicU64::new(0));
        let (db, dialect) = backend::open(&options, &commits).await?;
        Ok(Store::from_parts(db, dialect, commits, None))
    }

    pub(crate) fn from_parts(
        db: DatabaseConnection,
        dialect: Arc<dyn Dialect>,
        commits: Arc<AtomicU64>,
        direct: Option<Arc<dyn Direct>>,
    ) -> Store {
        Store { db, dialect, commits, direct }
    }

    /// What differs between databases, for this store.
    pub(crate) fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    /// The count a `SELECT COUNT(*) AS n …` statement answers on `db`.
    pub(crate) async fn count_on(&self, db: Db<'_>, sql: &str, values: Vec<Value>) -> Result<u64, StoreError> {
        let n: i64 = match db.one(self.stmt(sql, values)).await? {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Where this store's statements run outside a transaction: its
    /// backend's own connection on a writer thread's store, else the pool.
    pub(crate) fn conn(&self) -> Db<'_> {
        match &self.direct {
            Some(d) => Db::Direct(d.as_ref()),
            None => Db::Pool(&self.db),
        }
    }

    /// Whether the backend runs this store's hot write transactions on a
    /// writer thread of its own (see [`Store::offload`]).
    fn has_writer(&self) -> bool {
        self.dialect.writer().is_some()
    }

    /// Runs `job` (the store's code for one write transaction) on the
    /// backend's writer thread, holding the write gate.
    async fn offload<T: Send + 'static>(
        &self,
        job: impl for<'s> FnOnce(&'s Store) -> std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + 's>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        let internal = |what: &str| StoreError::Database(sea_orm::DbErr::Custom(what.to_owned()));
        let writer = self.dialect.writer().ok_or_else(|| internal("this store has no writer thread"))?;
        let gate = self.gate().await;
        let erased: backend::ErasedJob = Box::new(move |store| {
            Box::pin(async move { job(store).await.map(|v| Box::new(v) as Box<dyn std::any::Any + Send>) })
        });
        let any = writer.run_job(gate, erased).await?;
        any.downcast::<T>().map(|b| *b).map_err(|_| internal("the writer thread answered with another type"))
    }

    /// Waits for this process's turn to write (see [`Dialect::write_gate`]).
    async fn gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.dialect.write_gate() {
            Some(g) => Some(Arc::clone(g).lock_owned().await),
            None => None,
        }
    }

    /// A write transaction (`BEGIN IMMEDIATE` on SQLite), safe to drop at
    /// any point: on the backend's own connection on a writer thread's
    /// store, else on the pool.
    async fn begin(&self) -> Result<Txn, sea_orm::DbErr> {
        match &self.direct {
            Some(d) => Txn::begin_direct(d),
            None => Ok(Txn::Orm(self.dialect.begin(&self.db).await?)),
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.dialect.kind()
    }

    /// Tells of runs that became claimable (or ended) in any process: on
    /// PostgreSQL by `LISTEN`, on a SQLite file by watching its commits.
    /// `None` where no other process can write (a database in memory).
    /// The first receiver of a store opens its connection (outside the
    /// pool); the others share it.
    pub async fn wake_ups(&self) -> Result<Option<WakeUps>, StoreError> {
        self.dialect.wake_ups(self).await
    }

    /// Whether this database's wake-ups name the runs they concern (see
    /// [`WakeUps::names_runs`]): a caller waiting for one run's end need
    /// not open them otherwise.
    pub fn wake_ups_name_runs(&self) -> bool {
        self.dialect.wake_ups_name_runs()
    }

    /// How many group-commit transactions are worth running at once on
    /// this database.
    pub fn committers(&self) -> usize {
        self.dialect.committers()
    }

    /// How many write transactions this store (and its clones) committed:
    /// creates, claims that claimed something, renewals, checkpoints, group
    /// commits. The benchmark reports it per step.
    pub fn write_commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this store's hot write transactions run on a writer thread
    /// of the backend's own (see [`StoreOptions::writer_thread`]). For tests.
    #[doc(hidden)]
    pub fn __writer_thread(&self) -> bool {
        self.has_writer()
    }

    /// What this store's acknowledged writes survive, as its connections
    /// report their own settings (SQLite: `synchronous` of the pool's
    /// connection and of the writer thread's; PostgreSQL: the session's
    /// `synchronous_commit`). [`Durability::Relaxed`] if any of them
    /// would lose acknowledged writes in a power loss;
    /// [`Durability::Volatile`] for a database in memory (nothing survives
    /// its process).
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        let pool = self.dialect.durability(Db::Pool(&self.db)).await?;
        if pool != Durability::Full || !self.has_writer() {
            return Ok(pool);
        }
        self.offload(|store| Box::pin(async move { Ok(store.dialect.durability(store.conn()).await?) })).await
    }

    /// The underlying sea-orm connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(StoreError::from)
    }

    /// A statement from SQL written with `?` placeholders (never a literal
    /// `?` in the text), in the backend's placeholders.
    pub(crate) fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        self.dialect.statement(sql, values)
    }

    /// Commits `txn` (and counts the commit) if `result` is a success,
    /// rolls it back otherwise.
    async fn settle<T>(&self, txn: Txn, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(v) => {
                txn.commit().await?;
                self.count();
                Ok(v)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }
}
