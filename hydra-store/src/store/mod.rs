//! The `Store`: every SQL statement the runtime needs, and nothing else.
//!
//! Policy (retries, backoff, what a lost lease means) is the runtime's; the
//! store only applies writes atomically and reports what happened. Every
//! write made on behalf of a claimed run is conditional on the caller's
//! fencing token and fails with [`StoreError::LeaseLost`] when the token is no
//! longer current. Times are milliseconds on the engine's clock, passed in
//! by the caller: the store never reads a clock.
//!
//! This file owns the [`Store`] handle: connecting, the SQLite write gate,
//! commit counting, `?` placeholder translation and settling a write
//! transaction. The statements live in one submodule per concern:
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
//! - `inspect`: a run's signals and events, runs counted by status.

mod batch;
mod batch_steps;
mod checkpoint;
mod children;
mod claim;
mod copy;
mod cron;
mod events;
mod fence;
mod inspect;
mod lease;
mod prune;
mod repair;
mod runs;
mod search;
mod signals;
mod step_write;
mod suspend;
mod workers;

pub use batch::{BatchOp, BatchValue};
pub use checkpoint::{Checkpoint, Transition};
pub use children::{child_outcome_payload, child_signal_name};
pub use copy::{MoveReport, MovedTable};
pub use events::EventValue;
pub use inspect::{EndedBucket, EventRow, SignalRow, StatusCount};
pub use prune::Pruned;
pub use repair::{COMPENSATION_MARKER, ForkRequest};
pub use search::{MAX_SEARCH_NAME_BYTES, MAX_SEARCH_VALUE_BYTES, check_search_attribute};
pub use signals::{NewSignal, Receive, Received, SignalSent};
pub use suspend::DueRuns;

use crate::connect::{self, Backend, StoreOptions, db_backend};
use crate::error::StoreError;
use sea_orm::{DatabaseConnection, DatabaseTransaction, Statement, Value};

/// The persistence layer of one database, shared by engines and workers.
/// Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// Write transactions committed through this store (for benchmarks).
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// SQLite: one writer at a time in this process. SQLite has one write
    /// lock per database; a writer that finds it taken sleeps in the busy
    /// handler (1 ms and more each time), so writers of this process queue
    /// here instead. Other processes still meet the busy timeout.
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// PostgreSQL: the one `LISTEN` connection of this store (and its
    /// clones), shared by every listener (see `listen.rs`).
    pub(crate) runs_listener: std::sync::Arc<tokio::sync::Mutex<std::sync::Weak<crate::listen::SharedListener>>>,
    /// SQLite file: the one `PRAGMA data_version` watching task of this
    /// store (and its clones), shared by every watcher (see `watch.rs`).
    pub(crate) commit_watch: std::sync::Arc<tokio::sync::Mutex<std::sync::Weak<crate::watch::SharedWatch>>>,
    /// A SQLite file (not an in-memory database): other processes may share it.
    sqlite_file: bool,
    /// SQLite file: the writer thread that runs the hot write transactions
    /// (see `crate::writer`). `None` on the writer's own store.
    writer: Option<std::sync::Arc<crate::writer::Writer>>,
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
        let (db, backend) = connect::open(&options).await?;
        let write_gate = (backend == Backend::Sqlite).then(Default::default);
        let sqlite_file = connect::is_sqlite_file(&options.url);
        let mut store = Store {
            db,
            backend,
            commits: Default::default(),
            write_gate,
            runs_listener: Default::default(),
            commit_watch: Default::default(),
            sqlite_file,
            writer: None,
        };
        if options.writer_thread
            && let Some(path) = connect::writer_file(&options.url)
        {
            store.writer = Some(std::sync::Arc::new(store.start_writer(path, options.busy_timeout).await?));
        }
        Ok(store)
    }

    /// Opens the writer thread's own connection to the file and starts it
    /// (see `crate::writer`). Its store shares this one's commit count.
    async fn start_writer(
        &self,
        path: std::path::PathBuf,
        busy: std::time::Duration,
    ) -> Result<crate::writer::Writer, StoreError> {
        use crate::writer::{SyncConn, Writer, WriterConn};
        use sea_orm::{DatabaseConnectionType, MockDatabaseConnection};
        // Opening is file I/O: off the async threads.
        let file = path.clone();
        let opened = tokio::task::spawn_blocking(move || SyncConn::open(&file, busy))
            .await
            .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("opening the SQLite writer: {e}"))))?;
        let conn = std::sync::Arc::new(opened.map_err(StoreError::Database)?);
        let mock = MockDatabaseConnection::new(WriterConn(std::sync::Arc::clone(&conn)));
        let db = DatabaseConnection::from(DatabaseConnectionType::MockDatabaseConnection(std::sync::Arc::new(mock)));
        let store = Store {
            db,
            backend: Backend::Sqlite,
            commits: std::sync::Arc::clone(&self.commits),
            write_gate: None,
            runs_listener: Default::default(),
            commit_watch: Default::default(),
            sqlite_file: true,
            writer: None,
        };
        // Also file I/O (it opens the checkpoint thread's connection).
        tokio::task::spawn_blocking(move || Writer::start(conn, store, &path, busy))
            .await
            .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("starting the SQLite writer: {e}"))))?
    }

    /// The SQLite writer thread, if this store has one: a write method
    /// then runs its transaction there, holding the write gate (see
    /// `crate::writer`).
    fn writer(&self) -> Option<&crate::writer::Writer> {
        self.writer.as_deref()
    }

    /// Whether this store is a SQLite file, which other processes may share.
    pub(crate) fn is_sqlite_file(&self) -> bool {
        self.sqlite_file
    }

    /// Waits for this process's turn to write (SQLite; see `write_gate`).
    async fn gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(g) => Some(std::sync::Arc::clone(g).lock_owned().await),
            None => None,
        }
    }

    /// A write transaction (`BEGIN IMMEDIATE` on SQLite), safe to drop at
    /// any point (see `connect::begin`).
    async fn begin(&self) -> Result<DatabaseTransaction, sea_orm::DbErr> {
        connect::begin(&self.db, connect::immediate()).await
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many write transactions this store (and its clones) committed:
    /// creates, claims that claimed something, renewals, checkpoints, group
    /// commits. The benchmark reports it per step.
    pub fn write_commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes back a [`Store::count`] whose commit did not happen (the
    /// SQLite writer learns that only after the store's code went on).
    pub(crate) fn uncount(&self) {
        self.commits.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this store's hot write transactions run on the SQLite
    /// writer thread (see [`StoreOptions::writer_thread`]). For tests.
    #[doc(hidden)]
    pub fn __writer_thread(&self) -> bool {
        self.writer.is_some()
    }

    /// The underlying sea-orm connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(StoreError::from)
    }

    /// Turns `?` placeholders into `$n` on PostgreSQL. Every statement in
    /// this module is written once, with `?`, and never contains a literal `?`.
    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        let text: String = match self.backend {
            Backend::Sqlite => sql.to_owned(),
            Backend::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        };
        Statement::from_sql_and_values(db_backend(self.backend), text, values)
    }

    /// Commits `txn` (and counts the commit) if `result` is a success,
    /// rolls it back otherwise.
    async fn settle<T>(&self, txn: DatabaseTransaction, result: Result<T, StoreError>) -> Result<T, StoreError> {
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
