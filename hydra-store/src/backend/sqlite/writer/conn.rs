//! The writer thread's connection: statements executed in place on a
//! synchronous `rusqlite` connection (see the parent module), as the
//! store's [`Direct`] connection.
//!
//! Statements come from the store's rooms as they run on the pool: SQL
//! with `?` placeholders and sea-orm [`Value`]s, bound here without a copy
//! ([`Bound`]). Rows come back as [`OwnedRow`]s, each cell as SQLite stored
//! it, and are read by the types the code declares (`crate::sql::Decode`).
//!
//! Transactions: [`SyncConn`] keeps the nesting itself (`BEGIN IMMEDIATE`,
//! then `SAVEPOINT`s) and reports the failure of each command where it
//! happens. It also remembers the failures that end a transaction behind
//! the code's back (SQLite rolls back by itself after some errors; the
//! job's caller stopped waiting): from then on every statement of the job
//! fails, and [`SyncConn::end_job`] rolls back whatever is open and hands
//! that failure to the job's caller. A statement never runs outside the
//! transaction it was written for.

use crate::sql::{Cell, Direct, OwnedRow};
use sea_orm::{DbErr, RuntimeErr, Statement, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Prepared statements kept per connection (least recently used go first;
/// a group commit's multi-row statements have one text per row count, and
/// one of many rows holds a large program).
const STATEMENT_CACHE: usize = 128;

/// A synchronous SQLite connection: the writer thread's [`Direct`]
/// connection.
pub(crate) struct SyncConn {
    inner: Mutex<Inner>,
}

struct Inner {
    conn: rusqlite::Connection,
    /// Open transaction levels: 0 none, 1 `BEGIN`, more are savepoints.
    depth: usize,
    /// The first failure that ended this job's transaction behind the
    /// code's back (SQLite rolled it back itself, the caller left).
    failed: Option<DbErr>,
    /// Set when the job's caller stopped waiting: nothing more is
    /// committed (see [`SyncConn::start_job`]).
    abandoned: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for SyncConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncConn")
    }
}

impl SyncConn {
    /// Opens the (existing, migrated) database file with the pool's
    /// settings: WAL, `synchronous`, the busy timeout, foreign keys.
    pub(crate) fn open(
        path: &std::path::Path,
        busy: std::time::Duration,
        synchronous: &str,
    ) -> Result<SyncConn, DbErr> {
        let conn = open_file(path, busy).map_err(conn_err)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
        ))
        .map_err(conn_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans that do not depend on the values bound: otherwise a
        // statement whose plan looked at a bound value (the claim's, for
        // the partial index and its `LIMIT ?`) is compiled anew at every
        // run (bundled SQLite is built with STAT4). Same plans here.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(conn_err)?;
        Ok(SyncConn { inner: Mutex::new(Inner { conn, depth: 0, failed: None, abandoned: None }) })
    }

    /// Hands this connection's WAL checkpoints to the caller: SQLite no
    /// longer checkpoints when a commit of this connection leaves the WAL
    /// long (its automatic checkpoint copies pages into the file and syncs
    /// it on the committing thread); [`super::checkpoint::due`] says when.
    pub(crate) fn checkpoint_elsewhere(&self) {
        self.lock().conn.wal_hook(Some(super::checkpoint::committed));
    }

    /// How often SQLite compiled `sql` anew since it entered the statement
    /// cache.
    #[cfg(test)]
    pub(crate) fn recompiled(&self, sql: &str) -> i32 {
        let inner = self.lock();
        inner.conn.prepare_cached(sql).map_or(-1, |s| s.get_status(rusqlite::StatementStatus::RePrepare))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a connection that is still
        // usable: `end_job` rolls back whatever it left open.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a job whose caller sets `abandoned` when it stops waiting:
    /// from then on the job's `COMMIT` rolls back instead (as on the pool,
    /// where a dropped caller's transaction is rolled back), and so does a
    /// statement outside a transaction (each runs in one of its own).
    pub(crate) fn start_job(&self, abandoned: Arc<AtomicBool>) {
        self.lock().abandoned = Some(abandoned);
    }

    /// Ends a job: rolls back any transaction still open (a job that
    /// panicked, a transaction forgotten on an error path) and returns the
    /// failure that ended the job's transaction behind its back, if any.
    pub(crate) fn end_job(&self) -> Option<DbErr> {
        let mut inner = self.lock();
        if !inner.conn.is_autocommit() {
            let _ = inner.conn.execute_batch("ROLLBACK");
        }
        inner.depth = 0;
        inner.abandoned = None;
        inner.failed.take()
    }
}

impl Direct for SyncConn {
    fn execute(&self, stmt: &Statement) -> Result<u64, DbErr> {
        unwinding("a statement", || self.lock().run(&stmt.sql, |inner| inner.execute_statement(stmt)))
    }

    fn query(&self, stmt: &Statement) -> Result<Vec<OwnedRow>, DbErr> {
        unwinding("a query", || self.lock().run(&stmt.sql, |inner| inner.query_rows(stmt)))
    }

    #[cfg(test)]
    fn execute_batch(&self, sql: &str) -> Result<(), DbErr> {
        unwinding("statements", || {
            let mut inner = self.lock();
            inner.check()?;
            let r = inner.conn.execute_batch(sql).map_err(exec_err);
            if let Err(e) = &r {
                inner.after_error(e);
            }
            r
        })
    }

    fn begin(&self) -> Result<(), DbErr> {
        unwinding("BEGIN", || {
            let mut inner = self.lock();
            inner.check()?;
            let sql =
                if inner.depth == 0 { "BEGIN IMMEDIATE".to_owned() } else { format!("SAVEPOINT s{}", inner.depth) };
            if inner.depth > 0 && inner.conn.is_autocommit() {
                return Err(rolled_back_by_sqlite());
            }
            transaction_command(&inner.conn, &sql).map_err(exec_err)?;
            inner.depth += 1;
            Ok(())
        })
    }

    fn end(&self, commit: bool) -> Result<(), DbErr> {
        unwinding("the end of a transaction", || self.lock().end(commit))
    }
}

impl Inner {
    fn is_abandoned(&self) -> bool {
        self.abandoned.as_ref().is_some_and(|a| a.load(Ordering::Acquire))
    }

    /// Ends the innermost transaction level.
    fn end(&mut self, commit: bool) -> Result<(), DbErr> {
        if self.depth == 0 {
            return Err(DbErr::Custom("no transaction to end".into()));
        }
        self.depth -= 1;
        let d = self.depth;
        if self.conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself.
            self.depth = 0;
            let e = self.failed.clone().unwrap_or_else(rolled_back_by_sqlite);
            return if commit { Err(e) } else { Ok(()) };
        }
        if commit && d == 0 && self.is_abandoned() {
            // Nobody waits for the answer: nothing is committed.
            let _ = self.conn.execute_batch("ROLLBACK");
            self.failed.get_or_insert_with(abandoned);
            return Err(abandoned());
        }
        if commit && let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let sql = match (d, commit) {
            (0, true) => "COMMIT".to_owned(),
            (0, false) => "ROLLBACK".to_owned(),
            (d, true) => format!("RELEASE s{d}"),
            (d, false) => format!("ROLLBACK TO s{d}; RELEASE s{d}"),
        };
        let r = transaction_command(&self.conn, &sql).map_err(exec_err);
        if r.is_err() && d == 0 && !self.conn.is_autocommit() {
            // A COMMIT that failed (SQLite keeps the transaction open after
            // a busy COMMIT, or one with a deferred constraint violated):
            // nothing of it may stay behind.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        r
    }

    /// Whether a statement may run now: not after a failure that ended this
    /// job's transaction, not outside the transaction it was written for
    /// (SQLite ends a transaction by itself after some errors, such as a
    /// full disk), not once the job's caller stopped waiting.
    fn check(&mut self) -> Result<(), DbErr> {
        if self.failed.is_none() && self.depth > 0 && self.conn.is_autocommit() {
            self.failed = Some(rolled_back_by_sqlite());
        }
        // Nobody waits for the answer: nothing more is done (in particular,
        // no wait for the write lock).
        if self.failed.is_none() && self.is_abandoned() {
            self.failed = Some(abandoned());
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// After a statement's error: if SQLite rolled the transaction back
    /// with it, that error is the job's failure (it ended the transaction).
    fn after_error(&mut self, e: &DbErr) {
        if self.failed.is_none() && self.depth > 0 && self.conn.is_autocommit() {
            self.failed = Some(e.clone());
        }
    }

    fn prepare<'s>(&'s self, statement: &'s Statement) -> Result<rusqlite::CachedStatement<'s>, DbErr> {
        let mut stmt = self.conn.prepare_cached(&statement.sql).map_err(exec_err)?;
        // As the pool's driver: a parameter left unbound would read as NULL.
        let given = statement.values.as_ref().map_or(0, |v| v.0.len());
        if stmt.parameter_count() != given {
            return Err(DbErr::Custom(format!(
                "{given} values for a statement of {} parameters",
                stmt.parameter_count()
            )));
        }
        if let Some(values) = &statement.values {
            for (i, v) in values.0.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, Bound::of(v)?).map_err(exec_err)?;
            }
        }
        Ok(stmt)
    }

    /// Runs one statement: inside the job's transaction, or outside any
    /// in a transaction of its own, committed only if the job's caller is
    /// still waiting (SQLite would commit it alone anyway).
    fn run<T>(&mut self, sql: &str, f: impl FnOnce(&Inner) -> Result<T, DbErr>) -> Result<T, DbErr> {
        self.check()?;
        // A read outside a transaction reads a snapshot, as on the pool:
        // it takes no write lock, so it never waits for another writer.
        let read_only = || self.conn.prepare_cached(sql).map(|s| s.readonly()).unwrap_or(false);
        if self.depth > 0 || read_only() {
            let r = f(self);
            if let Err(e) = &r {
                self.after_error(e);
            }
            return r;
        }
        transaction_command(&self.conn, "BEGIN IMMEDIATE").map_err(exec_err)?;
        let r = f(self).and_then(|v| {
            if self.is_abandoned() {
                return Err(abandoned());
            }
            transaction_command(&self.conn, "COMMIT").map_err(exec_err)?;
            Ok(v)
        });
        if r.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        r
    }

    fn query_rows(&self, statement: &Statement) -> Result<Vec<OwnedRow>, DbErr> {
        let mut stmt = self.prepare(statement)?;
        let mut rows = stmt.raw_query();
        let mut names: Option<Arc<[String]>> = None;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(query_err)? {
            // Read once the statement ran: a schema changed by another
            // process is seen by the step, not by the prepare.
            let names = names.get_or_insert_with(|| {
                (0..row.as_ref().column_count())
                    .map(|i| row.as_ref().column_name(i).map_or_else(|_| format!("#{i}"), str::to_owned))
                    .collect()
            });
            let mut cells = Vec::with_capacity(names.len());
            for i in 0..names.len() {
                cells.push(cell(row.get_ref(i).map_err(query_err)?));
            }
            out.push(OwnedRow::new(Arc::clone(names), cells));
        }
        Ok(out)
    }

    fn execute_statement(&self, statement: &Statement) -> Result<u64, DbErr> {
        let mut stmt = self.prepare(statement)?;
        // Stepped to the end, so a statement with RETURNING runs whole too.
        let mut rows = stmt.raw_query();
        while rows.next().map_err(exec_err)?.is_some() {}
        drop(rows);
        drop(stmt);
        Ok(self.conn.changes())
    }
}

/// A cell as SQLite stored it.
fn cell(v: rusqlite::types::ValueRef<'_>) -> Cell {
    use rusqlite::types::ValueRef as R;
    match v {
        R::Null => Cell::Null,
        R::Integer(i) => Cell::Integer(i),
        R::Real(f) => Cell::Real(f),
        R::Text(t) => Cell::Text(t.to_vec()),
        R::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

/// A connection to the existing file at `path`, read-write, that waits up
/// to `busy` for a lock (the writer's, and the checkpoint thread's).
pub(super) fn open_file(path: &std::path::Path, busy: std::time::Duration) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

/// Runs a transaction command (`BEGIN IMMEDIATE`, `COMMIT`, `SAVEPOINT sN`
/// …) from the statement cache: parsed once, not at every transaction.
fn transaction_command(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    if sql.contains(';') {
        return conn.execute_batch(sql);
    }
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// The failure of a job whose caller stopped waiting before its commit.
fn abandoned() -> DbErr {
    DbErr::Custom("the caller stopped waiting before the commit; rolled back".into())
}

fn rolled_back_by_sqlite() -> DbErr {
    DbErr::Custom("the transaction was rolled back by SQLite after an error".into())
}

/// Runs `f`, turning a panic (of the driver, say) into an error: the
/// connection's lock is left usable for the next job.
pub(super) fn unwinding<T>(what: &str, f: impl FnOnce() -> Result<T, DbErr>) -> Result<T, DbErr> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(DbErr::Custom(format!("the SQLite writer panicked in {what}"))))
}

/// A statement value bound as SQLite stores it, borrowed (no copy of a
/// string or a payload).
struct Bound<'a>(rusqlite::types::ToSqlOutput<'a>);

impl<'a> Bound<'a> {
    fn of(v: &'a Value) -> Result<Bound<'a>, DbErr> {
        use rusqlite::types::{ToSqlOutput, Value as Owned, ValueRef as R};
        let int = |x: Option<i64>| ToSqlOutput::Owned(x.map_or(Owned::Null, Owned::Integer));
        Ok(Bound(match v {
            Value::Bool(x) => int(x.map(i64::from)),
            Value::TinyInt(x) => int(x.map(i64::from)),
            Value::SmallInt(x) => int(x.map(i64::from)),
            Value::Int(x) => int(x.map(i64::from)),
            Value::BigInt(x) => int(*x),
            Value::TinyUnsigned(x) => int(x.map(i64::from)),
            Value::SmallUnsigned(x) => int(x.map(i64::from)),
            Value::Unsigned(x) => int(x.map(i64::from)),
            Value::BigUnsigned(x) => match x {
                None => ToSqlOutput::Owned(Owned::Null),
                Some(u) => int(Some(
                    i64::try_from(*u).map_err(|_| DbErr::Custom(format!("{u} does not fit a SQLite integer")))?,
                )),
            },
            Value::Float(x) => ToSqlOutput::Owned(x.map_or(Owned::Null, |f| Owned::Real(f64::from(f)))),
            Value::Double(x) => ToSqlOutput::Owned(x.map_or(Owned::Null, Owned::Real)),
            Value::String(x) => ToSqlOutput::Borrowed(x.as_deref().map_or(R::Null, |s| R::Text(s.as_bytes()))),
            Value::Char(x) => ToSqlOutput::Owned(x.map_or(Owned::Null, |c| Owned::Text(c.to_string()))),
            Value::Bytes(x) => ToSqlOutput::Borrowed(x.as_deref().map_or(R::Null, R::Blob)),
            other => return Err(DbErr::Custom(format!("the SQLite writer cannot bind {other:?}"))),
        }))
    }
}

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match &self.0 {
            ToSqlOutput::Borrowed(r) => ToSqlOutput::Borrowed(*r),
            ToSqlOutput::Owned(v) => ToSqlOutput::Borrowed(v.into()),
            other => return Err(rusqlite::Error::ToSqlConversionFailure(format!("{other:?}").into())),
        })
    }
}

/// A driver error as sea-orm reports the async driver's: a database error
/// with SQLite's extended result code, so that unique violations and busy
/// errors are recognised as before (see `crate::error`).
#[derive(Debug)]
struct SqliteFailure {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sea_orm::sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sea_orm::sqlx::error::ErrorKind {
        use sea_orm::sqlx::error::ErrorKind;
        // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY, _FOREIGNKEY, _NOTNULL, _CHECK.
        match self.code {
            2067 | 1555 => ErrorKind::UniqueViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn runtime_err(e: rusqlite::Error) -> RuntimeErr {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let message = msg.unwrap_or_else(|| f.to_string());
            let failure = SqliteFailure { code: f.extended_code, message };
            RuntimeErr::SqlxError(std::sync::Arc::new(sea_orm::sqlx::Error::Database(Box::new(failure))))
        }
        other => RuntimeErr::Internal(other.to_string()),
    }
}

fn exec_err(e: rusqlite::Error) -> DbErr {
    DbErr::Exec(runtime_err(e))
}

fn query_err(e: rusqlite::Error) -> DbErr {
    DbErr::Query(runtime_err(e))
}

fn conn_err(e: rusqlite::Error) -> DbErr {
    DbErr::Conn(runtime_err(e))
}
