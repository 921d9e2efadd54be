//! SQLite: a file in WAL mode (the embedded default), or a database in
//! memory.
//!
//! What is SQLite's own:
//! - one write lock for the whole database: every write transaction
//!   begins `IMMEDIATE` (a deferred one that later writes can fail with
//!   SQLITE_BUSY at once), and writers of this process queue on the
//!   store's write gate instead of in SQLite's busy handler;
//! - so no row locks are needed: `FOR UPDATE` is empty, and a fenced
//!   insert checks the token with `EXISTS`;
//! - the hot write transactions of a file run on the writer thread
//!   (`writer/`), on a synchronous connection of its own;
//! - no notifications: other processes' commits are seen through `PRAGMA
//!   data_version` (`watch.rs`);
//! - the step results of a group commit in two multi-row statements
//!   (`steps.rs`).

mod steps;
pub(crate) mod watch;
pub(crate) mod writer;

use super::{Backend, Dialect, Fut, HotStep, Offload, StepAnswers, WakeUps};
use crate::connect::{self, Durability, StoreOptions};
use crate::error::StoreError;
use crate::sql::Db;
use crate::store::Store;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionOptions, TransactionTrait,
    Value,
};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// SQLite, for one store.
#[derive(Debug, Default)]
pub(crate) struct Sqlite {
    /// One writer at a time in this process. SQLite has one write lock per
    /// database; a writer that finds it taken sleeps in the busy handler
    /// (1 ms and more each time), so writers of this process queue here
    /// instead. Other processes still meet the busy timeout. `None` on the
    /// writer thread's own store (its caller holds the gate).
    gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// A file (not in memory): other processes may share it.
    file: bool,
    /// The writer thread, for a file it may open itself.
    writer: Option<writer::Writer>,
    /// The one `PRAGMA data_version` watching task of this store (and its
    /// clones), shared by every watcher (see `watch.rs`).
    watch: tokio::sync::Mutex<std::sync::Weak<watch::SharedWatch>>,
}

/// What a `sqlite:` URL points at.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `url` normalised (a mode always given); `plain` when the path has no
    /// escapes and the only parameter is a read-write `mode`, so that the
    /// writer thread can open `path` itself.
    File {
        url: String,
        path: String,
        plain: bool,
    },
    Memory,
}

fn classify(url: &str) -> Result<Target, StoreError> {
    let invalid = |reason: &str| connect::invalid(url, reason);
    let trimmed = url.trim();
    let Some(rest) = trimmed.strip_prefix("sqlite:") else {
        return Err(invalid("not a sqlite: URL"));
    };
    if rest == ":memory:" || rest.contains("mode=memory") || rest == "//:memory:" {
        return Ok(Target::Memory);
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(invalid("no file path after `sqlite://`"));
    }
    let parent = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent
        && !dir.is_dir()
    {
        return Err(invalid(&format!("directory `{}` does not exist", dir.display())));
    }
    // A file URL without a mode creates the file, as the embedded default should.
    let query = if query.split('&').any(|kv| kv.starts_with("mode=")) {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    let plain = !path.contains('%')
        && query.split('&').filter(|kv| !kv.is_empty()).all(|kv| kv == "mode=rwc" || kv == "mode=rw");
    Ok(Target::File { url: format!("sqlite://{path}?{query}"), path: path.to_owned(), plain })
}

/// The file of a SQLite URL that the writer thread opens itself; `None`
/// for URLs it leaves to the pool (in-memory, read-only, escaped paths,
/// parameters other than `mode`).
fn writer_file(url: &str) -> Option<std::path::PathBuf> {
    match classify(url) {
        Ok(Target::File { path, plain: true, .. }) => Some(path.into()),
        _ => None,
    }
}

/// The `synchronous` setting of every connection to a file: `FULL` syncs
/// the WAL at each commit (a power loss keeps every acknowledged write);
/// `NORMAL` only at checkpoints.
fn synchronous(durability: Durability) -> (SqliteSynchronous, &'static str) {
    match durability {
        Durability::Relaxed | Durability::Volatile => (SqliteSynchronous::Normal, "NORMAL"),
        _ => (SqliteSynchronous::Full, "FULL"),
    }
}

/// Opens a SQLite database (see [`super::open`]).
pub(crate) async fn open(
    opts: &StoreOptions,
    commits: &Arc<AtomicU64>,
) -> Result<(DatabaseConnection, Arc<dyn Dialect>), StoreError> {
    let target = classify(&opts.url)?;
    if let Target::File { path, .. } = &target
        && !opts.create_if_missing
        && !std::path::Path::new(path).is_file()
    {
        return Err(connect::invalid(&opts.url, &format!("no database file at `{path}`")));
    }
    let busy = opts.busy_timeout;
    let sync = synchronous(opts.durability);
    let mut co = match &target {
        Target::File { url, .. } => {
            let mut co = ConnectOptions::new(url.clone());
            co.max_connections(opts.max_connections.unwrap_or(8)).map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal).synchronous(sync.0).busy_timeout(busy).foreign_keys(true)
            });
            co
        }
        Target::Memory => {
            let mut co = ConnectOptions::new("sqlite::memory:");
            // One connection that never idles out: the database lives as long as it does.
            co.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .map_sqlx_sqlite_opts(move |o| o.busy_timeout(busy).foreign_keys(true));
            co
        }
    };
    co.connect_timeout(opts.connect_timeout).acquire_timeout(opts.connect_timeout).sqlx_logging(false);
    // A brand-new file being switched to WAL by several processes at once
    // can report "locked"; that clears in moments.
    let (db, deadline) = connect::connect(co, opts, true).await?;
    let mut sqlite = Sqlite {
        gate: Some(Arc::default()),
        file: matches!(target, Target::File { .. }),
        writer: None,
        watch: Default::default(),
    };
    connect::migrate(&db, &sqlite, deadline).await?;
    if opts.writer_thread
        && let Some(path) = writer_file(&opts.url)
    {
        sqlite.writer = Some(start_writer(path, busy, sync, commits).await?);
    }
    Ok((db, Arc::new(sqlite)))
}

/// Opens the writer thread's own connection to the file and starts it
/// (see `writer/`). Its store shares the caller's commit count.
async fn start_writer(
    path: std::path::PathBuf,
    busy: std::time::Duration,
    sync: (SqliteSynchronous, &'static str),
    commits: &Arc<AtomicU64>,
) -> Result<writer::Writer, StoreError> {
    // Opening is file I/O: off the async threads.
    let file = path.clone();
    let opened = tokio::task::spawn_blocking(move || writer::SyncConn::open(&file, busy, sync.1))
        .await
        .map_err(|e| StoreError::Database(DbErr::Custom(format!("opening the SQLite writer: {e}"))))?;
    let conn = Arc::new(opened.map_err(StoreError::Database)?);
    let own = Sqlite { gate: None, file: true, writer: None, watch: Default::default() };
    let store = super::direct_store(Arc::new(own), Arc::clone(&conn) as Arc<dyn crate::sql::Direct>, commits);
    // Also file I/O (it opens the checkpoint thread's connection).
    tokio::task::spawn_blocking(move || writer::Writer::start(conn, store, &path, busy))
        .await
        .map_err(|e| StoreError::Database(DbErr::Custom(format!("starting the SQLite writer: {e}"))))?
}

/// `BEGIN IMMEDIATE`: takes the write lock up front, so a transaction that
/// reads then writes never fails with BUSY_SNAPSHOT.
/// SQLite's transient result codes: 5 BUSY, 6 LOCKED, 261 BUSY_RECOVERY,
/// 517 BUSY_SNAPSHOT (the writer lost a race; a new transaction may win).
pub(crate) fn is_transient_code(code: &str) -> bool {
    matches!(code, "5" | "6" | "261" | "517")
}

fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

impl Dialect for Sqlite {
    fn kind(&self) -> Backend {
        Backend::Sqlite
    }

    fn db_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    fn begin<'a>(&'a self, db: &'a DatabaseConnection) -> Fut<'a, Result<DatabaseTransaction, DbErr>> {
        // SQLite's driver rolls back a `BEGIN` whose caller is gone (its
        // connection thread finishes it), and the caller's in-process write
        // gate must cover the `BEGIN IMMEDIATE` itself: it begins in place.
        Box::pin(db.begin_with_options(immediate()))
    }

    fn begin_snapshot<'a>(
        &'a self,
        db: &'a DatabaseConnection,
        _tables: &'a [&'a str],
    ) -> Fut<'a, Result<DatabaseTransaction, DbErr>> {
        // The write lock: no other connection writes until it ends.
        self.begin(db)
    }

    fn migration_lock<'a>(&'a self, _txn: &'a DatabaseTransaction) -> Fut<'a, Result<(), DbErr>> {
        // `BEGIN IMMEDIATE` already holds the database's write lock.
        Box::pin(async { Ok(()) })
    }

    fn write_gate(&self) -> Option<&Arc<tokio::sync::Mutex<()>>> {
        self.gate.as_ref()
    }

    fn writer(&self) -> Option<&dyn Offload> {
        self.writer.as_ref().map(|w| w as &dyn Offload)
    }

    fn wake_ups<'a>(&'a self, store: &'a Store) -> Fut<'a, Result<Option<WakeUps>, StoreError>> {
        Box::pin(async move {
            if !self.file {
                // In memory: no other process can write to it.
                return Ok(None);
            }
            watch::watch(&self.watch, store).await.map(|w| Some(WakeUps::new(w)))
        })
    }

    fn greatest(&self) -> &'static str {
        "MAX"
    }

    fn for_update(&self) -> &'static str {
        ""
    }

    fn for_update_skip_locked(&self, _alias: Option<&str>) -> String {
        String::new()
    }

    fn fenced_insert(&self, fence: &str, _open: &str, insert: &str, select: &str, tail: &str) -> String {
        // Every write transaction holds the database's write lock: a check
        // of the token is the fence. The open step is written by the
        // caller's guard before.
        format!("{insert} SELECT {select} WHERE EXISTS (SELECT 1 FROM workflow_executions {fence}) {tail}")
    }

    fn fenced_values(&self, fence: [Value; 3], _now: i64, _open: Vec<Value>, row: Vec<Value>) -> Vec<Value> {
        let mut v = row;
        v.extend(fence);
        v
    }

    fn steps_together_pays(&self, hot: &[(usize, HotStep<'_>)]) -> bool {
        // Each statement is a round trip to the connection's thread: two
        // statements for any number of steps pay from one.
        !hot.is_empty()
    }

    fn lock_runs<'a>(
        &'a self,
        _store: &'a Store,
        _db: Db<'a>,
        _ids: Vec<String>,
        _ending: Vec<String>,
    ) -> Fut<'a, Result<(), StoreError>> {
        // The one writer runs write transactions one at a time: none waits
        // for another's row.
        Box::pin(async { Ok(()) })
    }

    fn steps_together<'a>(
        &'a self,
        store: &'a Store,
        db: Db<'a>,
        items: &'a [HotStep<'a>],
        now: i64,
    ) -> Fut<'a, Result<Option<StepAnswers>, StoreError>> {
        Box::pin(steps::steps_in(store, db, items, now))
    }

    fn writes_one_step_together(&self) -> bool {
        true
    }

    fn columns_query(&self) -> &'static str {
        "SELECT name FROM pragma_table_info(?)"
    }

    fn seal(&self, message: &str, tables: &[&str]) -> Vec<String> {
        // One trigger per table and kind of write (SQLite's triggers are
        // per row: a write that changes no row is not refused, and changes
        // nothing).
        let mut out = Vec::new();
        for table in tables {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                out.push(format!(
                    "CREATE TRIGGER hydra_moved_{table}_{} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, \
                     '{message}'); END",
                    op.to_lowercase()
                ));
            }
        }
        out
    }

    fn durability<'a>(&'a self, db: Db<'a>) -> Fut<'a, Result<Durability, DbErr>> {
        Box::pin(async move {
            // 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
            let row = db.one(self.statement("SELECT synchronous AS v FROM pragma_synchronous", vec![])).await?;
            let level: i64 = match row {
                Some(r) => r.try_get("", "v")?,
                None => 0,
            };
            Ok(if !self.file {
                Durability::Volatile
            } else if level >= 2 {
                Durability::Full
            } else {
                Durability::Relaxed
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert_eq!(classify("sqlite::memory:").ok(), Some(Target::Memory));
        assert_eq!(
            classify("sqlite://x.db").ok(),
            Some(Target::File { url: "sqlite://x.db?mode=rwc".into(), path: "x.db".into(), plain: true })
        );
        assert_eq!(
            classify("sqlite://x.db?mode=ro").ok(),
            Some(Target::File { url: "sqlite://x.db?mode=ro".into(), path: "x.db".into(), plain: false })
        );
        assert!(matches!(classify("sqlite:///no/such/dir/x.db"), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(classify("sqlite://"), Err(StoreError::InvalidUrl { .. })));
    }

    #[test]
    fn only_plain_read_write_files_get_a_writer() {
        assert_eq!(writer_file("sqlite:///tmp/y.db?mode=rwc"), Some("/tmp/y.db".into()));
        assert_eq!(writer_file("sqlite:///tmp/y.db?mode=rw"), Some("/tmp/y.db".into()));
        assert_eq!(writer_file("sqlite://y.db"), Some("y.db".into()), "a mode is added: rwc");
        assert_eq!(writer_file("sqlite://y.db?mode=ro"), None);
        assert_eq!(writer_file("sqlite://y.db?mode=rwc&cache=shared"), None);
        assert_eq!(writer_file("sqlite://a%20b.db?mode=rwc"), None);
        assert_eq!(writer_file("sqlite::memory:"), None);
    }
}
