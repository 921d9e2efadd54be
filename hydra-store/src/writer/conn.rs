//! The writer thread's connection: sea-orm statements executed in place on
//! a synchronous `rusqlite` connection (see the parent module).
//!
//! sea-orm 2.0.4 has two ways to put a connection of one's own under its
//! API: the `proxy` feature, which does not compile together with
//! `sqlx-sqlite` in that version (its row converter still boxes
//! `Value::String`), and the `mock` feature's [`MockDatabaseTrait`], used
//! here: sea-orm hands each statement to [`WriterConn`], which executes it
//! on the connection and wraps the answer in sea-orm's own result types
//! (through a one-shot [`MockDatabase`], their only public constructor).
//!
//! Two things the async driver did for us are done here:
//! - Transactions. The trait reports `BEGIN`, `COMMIT` and rollbacks as
//!   calls without a result, so this connection keeps the nesting itself
//!   (`BEGIN IMMEDIATE`, then `SAVEPOINT`s) and remembers the first failure
//!   of any of them: from then on every statement of the job fails with it,
//!   and [`SyncConn::end_job`] rolls back whatever is open and hands the
//!   failure to the job's caller. A statement never runs outside the
//!   transaction it was written for.
//! - Types. Rows are read with sea-orm's strict conversions (an `i32` only
//!   from `Value::Int`, an `Option<String>` only from `Value::String(None)`),
//!   while SQLite stores plain integers and untyped NULLs. Each column is
//!   typed by its name from the entities' declared column types (see
//!   [`column_kinds`]), else by its storage class.

use sea_orm::{
    ColumnTrait, ColumnType, DbBackend, DbErr, ExecResult, IdenStatic, Iterable, MockDatabase, MockDatabaseTrait,
    MockExecResult, QueryResult, RuntimeErr, Statement, Transaction, Value,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Prepared statements kept per connection (least recently used go first;
/// a group commit's multi-row statements have one text per row count, and
/// one of many rows holds a large program).
const STATEMENT_CACHE: usize = 128;

/// A synchronous SQLite connection serving sea-orm (through [`WriterConn`]).
pub(crate) struct SyncConn {
    inner: Mutex<Inner>,
}

struct Inner {
    conn: rusqlite::Connection,
    /// Open transaction levels: 0 none, 1 `BEGIN`, more are savepoints.
    depth: usize,
    /// The first failure of a transaction command in this job, or of a
    /// statement after which SQLite rolled the transaction back itself.
    failed: Option<DbErr>,
    /// Set when the job's caller stopped waiting: nothing more is
    /// committed (see [`SyncConn::start_job`]).
    abandoned: Option<Arc<AtomicBool>>,
    /// A `COMMIT` the job asked for did not happen (see
    /// [`SyncConn::take_refused_commit`]).
    refused_commit: bool,
}

impl std::fmt::Debug for SyncConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncConn")
    }
}

impl SyncConn {
    /// Opens the (existing, migrated) database file with the pool's
    /// settings: WAL, `synchronous = NORMAL`, the busy timeout, foreign keys.
    pub(crate) fn open(path: &std::path::Path, busy: std::time::Duration) -> Result<SyncConn, DbErr> {
        let conn = open_file(path, busy).map_err(conn_err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(conn_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans that do not depend on the values bound: otherwise a
        // statement whose plan looked at a bound value (the claim's, for
        // the partial index and its `LIMIT ?`) is compiled anew at every
        // run (bundled SQLite is built with STAT4). Same plans here.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(conn_err)?;
        Ok(SyncConn {
            inner: Mutex::new(Inner { conn, depth: 0, failed: None, abandoned: None, refused_commit: false }),
        })
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
    /// panicked, a transaction dropped on an error path) and returns the
    /// first transaction-command failure of the job, if any.
    pub(crate) fn end_job(&self) -> Option<DbErr> {
        let mut inner = self.lock();
        if !inner.conn.is_autocommit() {
            let _ = inner.conn.execute_batch("ROLLBACK");
        }
        inner.depth = 0;
        inner.abandoned = None;
        inner.failed.take()
    }

    /// Whether this job asked for a `COMMIT` that did not happen (failed,
    /// or refused for a caller that stopped waiting); cleared by reading.
    pub(crate) fn take_refused_commit(&self) -> bool {
        std::mem::take(&mut self.lock().refused_commit)
    }

    fn begin_sync(&self) {
        let mut inner = self.lock();
        if inner.failed.is_none() && inner.is_abandoned() {
            inner.failed = Some(abandoned());
        }
        let sql = if inner.depth == 0 { "BEGIN IMMEDIATE".to_owned() } else { format!("SAVEPOINT s{}", inner.depth) };
        inner.depth += 1;
        inner.command(&sql);
    }

    fn end_sync(&self, commit: bool) {
        let mut inner = self.lock();
        if inner.depth == 0 {
            return;
        }
        inner.depth -= 1;
        if inner.depth == 0 && commit && inner.is_abandoned() && inner.failed.is_none() {
            inner.failed = Some(abandoned());
        }
        if !commit && (inner.failed.is_some() || inner.conn.is_autocommit()) {
            // Already failed (`end_job` rolls back) or rolled back by SQLite.
            return;
        }
        let sql = match (inner.depth, commit) {
            (0, true) => "COMMIT".to_owned(),
            (0, false) => "ROLLBACK".to_owned(),
            (d, true) => format!("RELEASE s{d}"),
            (d, false) => format!("ROLLBACK TO s{d}; RELEASE s{d}"),
        };
        inner.command(&sql);
        if inner.depth == 0 && commit && inner.failed.is_some() {
            inner.refused_commit = true;
        }
        if inner.depth == 0 && commit && inner.failed.is_some() && !inner.conn.is_autocommit() {
            // A COMMIT that failed (SQLite keeps the transaction open after
            // a busy COMMIT, or one with a deferred constraint violated):
            // nothing of it may stay behind.
            let _ = inner.conn.execute_batch("ROLLBACK");
        }
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

impl Inner {
    fn is_abandoned(&self) -> bool {
        self.abandoned.as_ref().is_some_and(|a| a.load(Ordering::Acquire))
    }

    /// Runs a transaction command unless the job already failed, and
    /// remembers its failure. Anything but `BEGIN` needs the transaction
    /// to be open still (SQLite rolls back by itself on some errors).
    fn command(&mut self, sql: &str) {
        if self.failed.is_some() {
            return;
        }
        if !sql.starts_with("BEGIN") && self.conn.is_autocommit() {
            self.failed = Some(DbErr::Custom(format!("`{sql}` without a transaction: SQLite rolled it back")));
            return;
        }
        if let Err(e) = transaction_command(&self.conn, sql) {
            self.failed = Some(exec_err(e));
        }
    }

    /// Whether a statement may run now: not after a failure of this job,
    /// not outside the transaction it was written for (SQLite ends a
    /// transaction by itself after some errors, such as a full disk), not
    /// once the job's caller stopped waiting.
    fn check(&mut self) -> Result<(), DbErr> {
        if self.failed.is_none() && self.depth > 0 && self.conn.is_autocommit() {
            self.failed = Some(DbErr::Custom("the transaction was rolled back by SQLite after an error".into()));
        }
        // Nobody waits for the answer: nothing more is done (in particular,
        // no wait for the write lock).
        if self.failed.is_none() && self.is_abandoned() {
            self.failed = Some(abandoned());
        }
        match &self.failed {
            // The failure itself: a busy BEGIN stays a (retryable) busy error.
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// After a statement's error: if SQLite rolled the transaction back
    /// with it, that error is the job's failure (it ends the transaction).
    fn after_error(&mut self, e: &DbErr) {
        if self.failed.is_none() && self.depth > 0 && self.conn.is_autocommit() {
            self.failed = Some(e.clone());
        }
    }

    fn prepare(&self, statement: &Statement) -> Result<rusqlite::CachedStatement<'_>, DbErr> {
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
                stmt.raw_bind_parameter(i + 1, bind(v)?).map_err(exec_err)?;
            }
        }
        Ok(stmt)
    }
}

/// The writer's [`SyncConn`] as sea-orm's connection holds it.
#[derive(Debug)]
pub(crate) struct WriterConn(pub(crate) std::sync::Arc<SyncConn>);

impl WriterConn {
    fn query_rows(&self, statement: &Statement) -> Result<Vec<BTreeMap<String, Value>>, DbErr> {
        self.0.lock().run(&statement.sql, |inner| inner.query_rows(statement))
    }

    fn execute_statement(&self, statement: &Statement) -> Result<MockExecResult, DbErr> {
        self.0.lock().run(&statement.sql, |inner| inner.execute_statement(statement))
    }
}

impl Inner {
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
}

impl Inner {
    fn query_rows(&self, statement: &Statement) -> Result<Vec<BTreeMap<String, Value>>, DbErr> {
        let mut stmt = self.prepare(statement)?;
        let mut rows = stmt.raw_query();
        let mut names: Option<Vec<String>> = None;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(query_err)? {
            // Read once the statement ran: a schema changed by another
            // process is seen by the step, not by the prepare.
            let names = names.get_or_insert_with(|| {
                (0..row.as_ref().column_count())
                    .map(|i| row.as_ref().column_name(i).map_or_else(|_| format!("#{i}"), str::to_owned))
                    .collect()
            });
            let mut values = BTreeMap::new();
            for (i, name) in names.iter().enumerate() {
                let v = row.get_ref(i).map_err(query_err)?;
                values.insert(name.clone(), typed(name, v)?);
            }
            out.push(values);
        }
        Ok(out)
    }

    fn execute_statement(&self, statement: &Statement) -> Result<MockExecResult, DbErr> {
        let mut stmt = self.prepare(statement)?;
        // Stepped to the end, so a statement with RETURNING runs whole too.
        let mut rows = stmt.raw_query();
        while rows.next().map_err(exec_err)?.is_some() {}
        drop(rows);
        drop(stmt);
        let last_insert_id = u64::try_from(self.conn.last_insert_rowid()).unwrap_or(0);
        Ok(MockExecResult { last_insert_id, rows_affected: self.conn.changes() })
    }
}

/// Runs `f`, turning a panic (of the driver, say) into an error: a panic
/// must not unwind through sea-orm's connection lock, which would poison
/// it for every later job.
pub(super) fn unwinding<T>(what: &str, f: impl FnOnce() -> Result<T, DbErr>) -> Result<T, DbErr> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(DbErr::Custom(format!("the SQLite writer panicked in {what}"))))
}

/// What sea-orm's result types are built from: a statement that was not
/// run (the one-shot [`MockDatabase`] only logs it).
fn logged() -> Statement {
    Statement::from_string(DbBackend::Sqlite, "")
}

impl MockDatabaseTrait for WriterConn {
    fn execute(&mut self, _counter: usize, statement: Statement) -> Result<ExecResult, DbErr> {
        let result = unwinding("a statement", || self.execute_statement(&statement))?;
        MockDatabase::new(DbBackend::Sqlite).append_exec_results([result]).execute(0, logged())
    }

    fn query(&mut self, _counter: usize, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let rows = unwinding("a query", || self.query_rows(&statement))?;
        MockDatabase::new(DbBackend::Sqlite).append_query_results([rows]).query(0, logged())
    }

    fn begin(&mut self) {
        let _ = unwinding("BEGIN", || {
            self.0.begin_sync();
            Ok(())
        });
    }

    fn commit(&mut self) {
        let _ = unwinding("COMMIT", || {
            self.0.end_sync(true);
            Ok(())
        });
    }

    fn rollback(&mut self) {
        let _ = unwinding("ROLLBACK", || {
            self.0.end_sync(false);
            Ok(())
        });
    }

    fn drain_transaction_log(&mut self) -> Vec<Transaction> {
        Vec::new()
    }

    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    fn ping(&self) -> Result<(), DbErr> {
        self.0.lock().check()
    }
}

/// A statement value as SQLite stores it.
fn bind(v: &Value) -> Result<rusqlite::types::Value, DbErr> {
    use rusqlite::types::Value as S;
    let int = |x: Option<i64>| x.map_or(S::Null, S::Integer);
    Ok(match v {
        Value::Bool(x) => int(x.map(i64::from)),
        Value::TinyInt(x) => int(x.map(i64::from)),
        Value::SmallInt(x) => int(x.map(i64::from)),
        Value::Int(x) => int(x.map(i64::from)),
        Value::BigInt(x) => int(*x),
        Value::TinyUnsigned(x) => int(x.map(i64::from)),
        Value::SmallUnsigned(x) => int(x.map(i64::from)),
        Value::Unsigned(x) => int(x.map(i64::from)),
        Value::BigUnsigned(x) => match x {
            None => S::Null,
            Some(u) => {
                S::Integer(i64::try_from(*u).map_err(|_| DbErr::Custom(format!("{u} does not fit a SQLite integer")))?)
            }
        },
        Value::Float(x) => x.map_or(S::Null, |f| S::Real(f64::from(f))),
        Value::Double(x) => x.map_or(S::Null, S::Real),
        Value::String(x) => x.clone().map_or(S::Null, S::Text),
        Value::Char(x) => x.map_or(S::Null, |c| S::Text(c.to_string())),
        Value::Bytes(x) => x.clone().map_or(S::Null, S::Blob),
        other => return Err(DbErr::Custom(format!("the SQLite writer cannot bind {other:?}"))),
    })
}

/// How sea-orm reads a column of this name (see [`column_kinds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    BigInt,
    Bool,
    Text,
    Bytes,
    /// Two entities declare the name with different types: typed by the
    /// value's storage class.
    Mixed,
}

/// The declared kind of every column of the store's entities, by name.
fn column_kinds() -> &'static HashMap<&'static str, Kind> {
    static KINDS: OnceLock<HashMap<&'static str, Kind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        use crate::entity::{cron_jobs, leases, workflow_executions, workflow_steps};
        let mut kinds = HashMap::new();
        let mut add = |name: &'static str, ty: &ColumnType| {
            let kind = match ty {
                ColumnType::Integer | ColumnType::SmallInteger | ColumnType::TinyInteger => Kind::Int,
                ColumnType::BigInteger => Kind::BigInt,
                ColumnType::Boolean => Kind::Bool,
                ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => Kind::Bytes,
                _ => Kind::Text,
            };
            let e = kinds.entry(name).or_insert(kind);
            if *e != kind {
                *e = Kind::Mixed;
            }
        };
        for c in workflow_executions::Column::iter() {
            add(c.as_str(), c.def().get_column_type());
        }
        for c in workflow_steps::Column::iter() {
            add(c.as_str(), c.def().get_column_type());
        }
        for c in leases::Column::iter() {
            add(c.as_str(), c.def().get_column_type());
        }
        for c in cron_jobs::Column::iter() {
            add(c.as_str(), c.def().get_column_type());
        }
        kinds
    })
}

/// A stored value as sea-orm's strict conversions expect it for `name`.
/// A value of another storage class than its column's declared kind is an
/// error, as the async driver's type check makes it (a row written by
/// hand or by another program): sea-orm's mock rows would otherwise read
/// it as NULL wherever the field is optional.
fn typed(name: &str, v: rusqlite::types::ValueRef<'_>) -> Result<Value, DbErr> {
    use rusqlite::types::ValueRef as R;
    let kind = column_kinds().get(name).copied();
    let utf8 = |t: &[u8]| String::from_utf8(t.to_vec()).map_err(|_| type_err(format!("column `{name}` is not UTF-8")));
    Ok(match (v, kind) {
        (R::Null, Some(Kind::Int)) => Value::Int(None),
        (R::Null, Some(Kind::BigInt)) => Value::BigInt(None),
        (R::Null, Some(Kind::Bool)) => Value::Bool(None),
        (R::Null, Some(Kind::Bytes)) => Value::Bytes(None),
        (R::Null, _) => Value::String(None),
        (R::Integer(i), Some(Kind::Int)) => Value::Int(Some(
            i32::try_from(i).map_err(|_| type_err(format!("column `{name}`: {i} does not fit a 32-bit integer")))?,
        )),
        (R::Integer(i), Some(Kind::Bool)) => Value::Bool(Some(i != 0)),
        (R::Integer(i), Some(Kind::BigInt | Kind::Mixed) | None) => Value::BigInt(Some(i)),
        (R::Text(t) | R::Blob(t), Some(Kind::Bytes)) => Value::Bytes(Some(t.to_vec())),
        (R::Text(t), Some(Kind::Text | Kind::Mixed) | None) => Value::String(Some(utf8(t)?)),
        (R::Blob(b), Some(Kind::Mixed) | None) => Value::Bytes(Some(b.to_vec())),
        (R::Real(f), Some(Kind::Mixed) | None) => Value::Double(Some(f)),
        (other, Some(kind)) => {
            return Err(type_err(format!("column `{name}` holds {:?} where {kind:?} is declared", other.data_type())));
        }
    })
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

/// A stored value that does not convert to its column's type.
fn type_err(text: String) -> DbErr {
    DbErr::Type(text)
}

fn conn_err(e: rusqlite::Error) -> DbErr {
    DbErr::Conn(runtime_err(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_columns_get_their_declared_kinds() {
        let k = column_kinds();
        assert_eq!(k.get("attempts"), Some(&Kind::Int));
        assert_eq!(k.get("fencing_token"), Some(&Kind::BigInt));
        assert_eq!(k.get("cancel_requested"), Some(&Kind::Bool));
        assert_eq!(k.get("output_data"), Some(&Kind::Bytes));
        assert_eq!(k.get("error_message"), Some(&Kind::Text));
        // TEXT in runs, BIGINT in steps.
        assert_eq!(k.get("id"), Some(&Kind::Mixed));
    }

    #[test]
    fn values_are_typed_as_sea_orm_reads_them() {
        use rusqlite::types::ValueRef as R;
        assert_eq!(typed("attempts", R::Integer(3)).ok(), Some(Value::Int(Some(3))));
        assert!(matches!(typed("attempts", R::Integer(1 << 40)), Err(DbErr::Type(_))));
        assert_eq!(typed("fencing_token", R::Integer(3)).ok(), Some(Value::BigInt(Some(3))));
        assert_eq!(typed("workflow_version", R::Null).ok(), Some(Value::Int(None)));
        assert_eq!(typed("output_data", R::Null).ok(), Some(Value::Bytes(None)));
        assert_eq!(typed("cancel_requested", R::Integer(1)).ok(), Some(Value::Bool(Some(true))));
        assert_eq!(typed("id", R::Text(b"r1")).ok(), Some(Value::String(Some("r1".into()))));
        assert_eq!(typed("id", R::Integer(7)).ok(), Some(Value::BigInt(Some(7))));
        assert!(matches!(typed("status", R::Text(&[0xff, 0xfe])), Err(DbErr::Type(_))));
        // Another storage class than declared: an error, never a NULL.
        assert!(matches!(typed("deadline_at", R::Text(b"soon")), Err(DbErr::Type(_))));
        assert!(matches!(typed("workflow_version", R::Real(1.5)), Err(DbErr::Type(_))));
        assert!(matches!(typed("output_data", R::Integer(5)), Err(DbErr::Type(_))));
        assert!(matches!(typed("status", R::Blob(b"running")), Err(DbErr::Type(_))));
        assert_eq!(typed("output_data", R::Text(b"x")).ok(), Some(Value::Bytes(Some(b"x".to_vec()))));
    }
}
