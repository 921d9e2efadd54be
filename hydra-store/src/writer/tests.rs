//! The writer's transaction bookkeeping, on real SQLite files: failures of
//! `BEGIN` and `COMMIT` (which sea-orm's mock trait cannot report) reach
//! the job's caller, nothing of a failed transaction stays, and a failure
//! never leaks into the next job.

use super::{SyncConn, WriterConn};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseConnectionType, DbErr, MockDatabaseConnection, RuntimeErr,
    TransactionTrait,
};
use std::sync::Arc;
use std::time::Duration;

/// A database file, removed (with its WAL) when dropped.
struct File(std::path::PathBuf);

impl std::ops::Deref for File {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for File {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A fresh database file with a parent table and a child table whose
/// foreign key is checked at `COMMIT`.
fn fresh_file(name: &str) -> File {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("hydra-writer-{}-{name}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).expect("create the file");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE parent (id INTEGER PRIMARY KEY); \
         CREATE TABLE child (id INTEGER PRIMARY KEY, \
           parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED); \
         CREATE TABLE t (v INTEGER NOT NULL);",
    )
    .expect("schema");
    File(path)
}

fn connect(path: &std::path::Path, busy: Duration) -> (Arc<SyncConn>, DatabaseConnection) {
    let conn = Arc::new(SyncConn::open(path, busy).expect("open"));
    let mock = MockDatabaseConnection::new(WriterConn(Arc::clone(&conn)));
    (conn, DatabaseConnection::from(DatabaseConnectionType::MockDatabaseConnection(Arc::new(mock))))
}

fn count(path: &std::path::Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).expect("open");
    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).expect("count")
}

fn code(e: &DbErr) -> Option<String> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sea_orm::sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn a_commit_that_fails_is_reported_and_leaves_nothing() {
    let path = fresh_file("commit");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    // Accepted now, refused at COMMIT (no such parent).
    txn.execute_unprepared("INSERT INTO child (id, parent_id) VALUES (1, 42)").await.expect("insert child");
    // sea-orm's mock commit cannot fail...
    txn.commit().await.expect("sea-orm reports no commit failure");
    // ...so the job's end does: SQLITE_CONSTRAINT_FOREIGNKEY.
    let failure = conn.end_job().expect("the failed COMMIT is reported");
    assert_eq!(code(&failure).as_deref(), Some("787"), "{failure}");
    assert_eq!((count(&path, "t"), count(&path, "child")), (0, 0), "nothing of the failed transaction stays");
    // The next job starts clean.
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (2)").await.expect("insert");
    txn.commit().await.expect("commit");
    assert!(conn.end_job().is_none(), "no failure carried over");
    assert_eq!(count(&path, "t"), 1);
}

#[tokio::test]
async fn after_a_failed_begin_no_statement_runs_outside_its_transaction() {
    let path = fresh_file("begin");
    let (conn, db) = connect(&path, Duration::from_millis(20));
    // Another connection holds the write lock: BEGIN IMMEDIATE times out.
    let blocker = rusqlite::Connection::open(&*path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let txn = db.begin().await.expect("sea-orm reports no begin failure");
    // The lock is gone before the statements: run outside the transaction,
    // they would commit one by one.
    blocker.execute_batch("ROLLBACK").expect("unlock");
    let first = txn.execute_unprepared("INSERT INTO t (v) VALUES (1)").await;
    assert_eq!(first.as_ref().err().and_then(code).as_deref(), Some("5"), "the busy BEGIN, as the answer: {first:?}");
    assert!(txn.execute_unprepared("INSERT INTO t (v) VALUES (2)").await.is_err());
    drop(txn);
    let failure = conn.end_job().expect("the failed BEGIN is reported");
    assert!(crate::error::is_transient(&failure), "a busy BEGIN stays retryable: {failure}");
    assert_eq!(count(&path, "t"), 0, "no statement of the failed transaction ran");
    // The next job starts clean.
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (3)").await.expect("insert");
    txn.commit().await.expect("commit");
    assert!(conn.end_job().is_none());
    assert_eq!(count(&path, "t"), 1);
}

#[tokio::test]
async fn savepoints_roll_back_alone_and_a_dropped_transaction_rolls_back() {
    let path = fresh_file("savepoint");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    let sp = txn.begin().await.expect("savepoint");
    sp.execute_unprepared("INSERT INTO t (v) VALUES (2)").await.expect("insert");
    sp.rollback().await.expect("rollback to the savepoint");
    let sp = txn.begin().await.expect("savepoint");
    sp.execute_unprepared("INSERT INTO t (v) VALUES (3)").await.expect("insert");
    sp.commit().await.expect("release");
    txn.commit().await.expect("commit");
    assert!(conn.end_job().is_none());
    let c = rusqlite::Connection::open(&*path).expect("open");
    let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").expect("prepare");
    let values: Vec<i64> = stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect();
    assert_eq!(values, vec![1, 3], "the rolled-back savepoint's row alone is gone");
    // Dropped without commit: rolled back, and the connection is free again.
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (4)").await.expect("insert");
    drop(txn);
    assert!(conn.end_job().is_none());
    assert_eq!(count(&path, "t"), 2);
}

#[tokio::test]
async fn the_writers_errors_keep_their_kind() {
    let path = fresh_file("errors");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    db.execute_unprepared("CREATE UNIQUE INDEX t_v ON t (v)").await.expect("index");
    db.execute_unprepared("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    let dup = db.execute_unprepared("INSERT INTO t (v) VALUES (1)").await.expect_err("a duplicate");
    assert!(crate::error::is_unique_violation(&dup), "recognised as a unique violation: {dup}");
    assert!(!crate::error::is_transient(&dup));
    let short = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Sqlite,
        "INSERT INTO child (id) VALUES (?)",
        Vec::<sea_orm::Value>::new(),
    );
    assert!(db.execute_raw(short).await.is_err(), "a missing value is an error, not a NULL");
    let bad = db.execute_unprepared("INSERT INTO nowhere (v) VALUES (1)").await.expect_err("no such table");
    assert!(!crate::error::is_unique_violation(&bad) && !crate::error::is_transient(&bad), "{bad}");
    assert!(conn.end_job().is_none(), "statement errors are answers, not transaction failures");
}

#[tokio::test]
async fn after_sqlite_rolls_a_transaction_back_itself_nothing_more_runs_in_it() {
    let path = fresh_file("autorollback");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    // What SQLite does by itself on a full disk or an I/O error.
    txn.execute_unprepared("ROLLBACK").await.expect("rolled back");
    let next = txn.execute_unprepared("INSERT INTO t (v) VALUES (2)").await;
    assert!(next.is_err(), "a statement outside its transaction would commit alone: {next:?}");
    txn.commit().await.expect("sea-orm reports no commit failure");
    assert!(conn.end_job().is_some(), "the job failed");
    assert_eq!(count(&path, "t"), 0, "nothing committed");
}

#[test]
fn a_panic_in_the_driver_becomes_an_error() {
    let r: Result<(), DbErr> = super::conn::unwinding("a test", || panic!("driver"));
    assert!(matches!(r, Err(DbErr::Custom(m)) if m.contains("panicked")));
}

#[tokio::test]
async fn a_job_whose_caller_stopped_waiting_commits_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let path = fresh_file("abandoned");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    // In a transaction: the COMMIT rolls back.
    let flag = Arc::new(AtomicBool::new(false));
    conn.start_job(Arc::clone(&flag));
    let txn = db.begin().await.expect("begin");
    txn.execute_unprepared("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    flag.store(true, Ordering::Release);
    txn.commit().await.expect("sea-orm reports no commit failure");
    assert!(conn.take_refused_commit(), "the commit that did not happen is known");
    assert!(conn.end_job().is_some(), "the job failed");
    // Outside a transaction: the statement's own transaction rolls back.
    let flag = Arc::new(AtomicBool::new(false));
    conn.start_job(Arc::clone(&flag));
    flag.store(true, Ordering::Release);
    assert!(db.execute_unprepared("INSERT INTO t (v) VALUES (2)").await.is_err());
    assert!(conn.end_job().is_some());
    assert_eq!(count(&path, "t"), 0, "nothing committed for callers that left");
    // Left before the job began: it does not even ask for the write lock
    // (which another connection holds: asking would end in "busy").
    let blocker = rusqlite::Connection::open(&*path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let (conn, db) = connect(&path, Duration::from_millis(100));
    let flag = Arc::new(AtomicBool::new(true));
    conn.start_job(flag);
    let txn = db.begin().await.expect("begin");
    assert!(txn.execute_unprepared("INSERT INTO t (v) VALUES (3)").await.is_err());
    drop(txn);
    let failure = conn.end_job().expect("the job failed");
    assert!(code(&failure).is_none() && failure.to_string().contains("stopped waiting"), "not the lock: {failure}");
}

#[tokio::test]
async fn a_read_outside_a_transaction_does_not_wait_for_the_write_lock() {
    let path = fresh_file("read");
    let (conn, db) = connect(&path, Duration::from_millis(20));
    let blocker = rusqlite::Connection::open(&*path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (1);").expect("lock");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, "SELECT COUNT(*) AS n FROM t"))
        .await
        .expect("a read needs no write lock");
    assert_eq!(row.expect("a row").try_get::<i64>("", "n").expect("n"), 0, "the committed snapshot");
    assert!(conn.end_job().is_none());
    blocker.execute_batch("ROLLBACK").expect("unlock");
}

#[tokio::test]
async fn a_statement_is_compiled_once_whatever_values_it_is_given() {
    // As the claim: a partial index the plan may use, values compared with
    // its column, a bound LIMIT. Bundled SQLite (STAT4) would recompile
    // such a statement at each new binding, unless plans ignore the values.
    let path = fresh_file("qpsg");
    rusqlite::Connection::open(&*path)
        .expect("open")
        .execute_batch(
            "CREATE TABLE q (ns TEXT NOT NULL, due INTEGER); \
             CREATE INDEX q_due ON q (ns, due) WHERE due IS NOT NULL; \
             INSERT INTO q VALUES ('a', 1), ('a', 2), ('a', NULL), ('b', 3);",
        )
        .expect("schema");
    let (conn, db) = connect(&path, Duration::from_millis(20));
    let sql = "SELECT due FROM q WHERE ns = ? AND due IS NOT NULL AND due <= ? ORDER BY due LIMIT ?";
    for (i, ns) in ["a", "b", "a", "a", "b"].into_iter().enumerate() {
        let stmt = sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            sql,
            [ns.into(), (i as i64 + 1).into(), (i as i64 + 1).into()],
        );
        db.query_all_raw(stmt).await.expect("the query");
        assert!(conn.end_job().is_none());
    }
    assert_eq!(conn.recompiled(sql), 0, "the statement was compiled anew for new values");
}

#[tokio::test]
async fn the_writer_leaves_checkpoints_to_the_checkpoint_thread_which_runs_them() {
    let path = fresh_file("checkpoint");
    let (conn, db) = connect(&path, Duration::from_millis(200));
    conn.checkpoint_elsewhere();
    let before = std::fs::metadata(&*path).expect("file").len();
    // Well past SQLite's automatic checkpoint threshold (1,000 pages).
    let mut due = false;
    for i in 0..300 {
        let sql = format!(
            "INSERT INTO t (v) SELECT {i} FROM (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) SELECT x FROM n)"
        );
        db.execute_unprepared(&sql).await.expect("insert");
        assert!(conn.end_job().is_none());
        due |= super::checkpoint::due();
    }
    assert!(due, "the commits never reported a long log");
    assert_eq!(std::fs::metadata(&*path).expect("file").len(), before, "the writer's commits checkpointed");
    let c = super::checkpoint::Checkpointer::start(&path, Duration::from_millis(200)).expect("start");
    c.poke();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&*path).expect("file").len() == before {
        assert!(std::time::Instant::now() < deadline, "the checkpoint thread never checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count(&path, "t"), 150_000);
}
