//! The writer's transaction bookkeeping, on real SQLite files: failures of
//! `BEGIN` and `COMMIT` are answered where they happen, nothing of a failed
//! transaction stays, and a failure never leaks into the next job.

use super::SyncConn;
use crate::sql::{Db, Direct, Txn};
use sea_orm::{DbErr, RuntimeErr, Statement};
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

fn connect(path: &std::path::Path, busy: Duration) -> (Arc<SyncConn>, Arc<dyn Direct>) {
    let conn = Arc::new(SyncConn::open(path, busy, "NORMAL").expect("open"));
    let direct: Arc<dyn Direct> = Arc::clone(&conn) as Arc<dyn Direct>;
    (conn, direct)
}

fn begin(direct: &Arc<dyn Direct>) -> Result<Txn, DbErr> {
    Txn::begin_direct(direct)
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

fn sql(text: &str) -> Statement {
    Statement::from_string(sea_orm::DbBackend::Sqlite, text)
}

#[tokio::test]
async fn a_commit_that_fails_is_reported_and_leaves_nothing() {
    let path = fresh_file("commit");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    // Accepted now, refused at COMMIT (no such parent).
    txn.db().batch("INSERT INTO child (id, parent_id) VALUES (1, 42)").await.expect("insert child");
    // The COMMIT's failure is its answer: SQLITE_CONSTRAINT_FOREIGNKEY.
    let failure = txn.commit().await.expect_err("the failed COMMIT is reported");
    assert_eq!(code(&failure).as_deref(), Some("787"), "{failure}");
    assert!(conn.end_job().is_none(), "answered in place, not left for the job's end");
    assert_eq!((count(&path, "t"), count(&path, "child")), (0, 0), "nothing of the failed transaction stays");
    // The next job starts clean.
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (2)").await.expect("insert");
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
    let failure = begin(&db).expect_err("the busy BEGIN is the answer");
    assert_eq!(code(&failure).as_deref(), Some("5"), "{failure}");
    assert!(crate::error::is_transient(&failure), "a busy BEGIN stays retryable: {failure}");
    // No transaction to run statements in: none ran.
    blocker.execute_batch("ROLLBACK").expect("unlock");
    assert!(conn.end_job().is_none());
    assert_eq!(count(&path, "t"), 0, "no statement of the failed transaction ran");
    // The next job starts clean.
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (3)").await.expect("insert");
    txn.commit().await.expect("commit");
    assert!(conn.end_job().is_none());
    assert_eq!(count(&path, "t"), 1);
}

#[tokio::test]
async fn savepoints_roll_back_alone_and_a_dropped_transaction_rolls_back() {
    let path = fresh_file("savepoint");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    let sp = txn.savepoint().await.expect("savepoint");
    sp.db().batch("INSERT INTO t (v) VALUES (2)").await.expect("insert");
    sp.rollback().await.expect("rollback to the savepoint");
    let sp = txn.savepoint().await.expect("savepoint");
    sp.db().batch("INSERT INTO t (v) VALUES (3)").await.expect("insert");
    sp.commit().await.expect("release");
    txn.commit().await.expect("commit");
    assert!(conn.end_job().is_none());
    let c = rusqlite::Connection::open(&*path).expect("open");
    let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").expect("prepare");
    let values: Vec<i64> = stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect();
    assert_eq!(values, vec![1, 3], "the rolled-back savepoint's row alone is gone");
    // Dropped without commit: rolled back, and the connection is free again.
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (4)").await.expect("insert");
    drop(txn);
    assert!(conn.end_job().is_none());
    assert_eq!(count(&path, "t"), 2);
}

#[tokio::test]
async fn the_writers_errors_keep_their_kind() {
    let path = fresh_file("errors");
    let (conn, direct) = connect(&path, Duration::from_secs(1));
    let db = Db::Direct(direct.as_ref());
    db.batch("CREATE UNIQUE INDEX t_v ON t (v)").await.expect("index");
    db.batch("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    let dup = db.exec(sql("INSERT INTO t (v) VALUES (1)")).await.expect_err("a duplicate");
    assert!(crate::error::is_unique_violation(&dup), "recognised as a unique violation: {dup}");
    assert!(!crate::error::is_transient(&dup));
    let short = Statement::from_sql_and_values(
        sea_orm::DbBackend::Sqlite,
        "INSERT INTO child (id) VALUES (?)",
        Vec::<sea_orm::Value>::new(),
    );
    assert!(db.exec(short).await.is_err(), "a missing value is an error, not a NULL");
    let bad = db.exec(sql("INSERT INTO nowhere (v) VALUES (1)")).await.expect_err("no such table");
    assert!(!crate::error::is_unique_violation(&bad) && !crate::error::is_transient(&bad), "{bad}");
    assert!(conn.end_job().is_none(), "statement errors are answers, not transaction failures");
}

#[tokio::test]
async fn after_sqlite_rolls_a_transaction_back_itself_nothing_more_runs_in_it() {
    let path = fresh_file("autorollback");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    // What SQLite does by itself on a full disk or an I/O error.
    txn.db().batch("ROLLBACK").await.expect("rolled back");
    let next = txn.db().batch("INSERT INTO t (v) VALUES (2)").await;
    assert!(next.is_err(), "a statement outside its transaction would commit alone: {next:?}");
    assert!(txn.commit().await.is_err(), "the commit of a transaction SQLite ended is refused");
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
    // In a transaction: the COMMIT rolls back, and says so.
    let flag = Arc::new(AtomicBool::new(false));
    conn.start_job(Arc::clone(&flag));
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    flag.store(true, Ordering::Release);
    let refused = txn.commit().await.expect_err("the commit that did not happen is known");
    assert!(refused.to_string().contains("stopped waiting"), "{refused}");
    assert!(conn.end_job().is_some(), "the job failed");
    // Outside a transaction: the statement's own transaction rolls back.
    let flag = Arc::new(AtomicBool::new(false));
    conn.start_job(Arc::clone(&flag));
    flag.store(true, Ordering::Release);
    assert!(Db::Direct(db.as_ref()).exec(sql("INSERT INTO t (v) VALUES (2)")).await.is_err());
    assert!(conn.end_job().is_some());
    assert_eq!(count(&path, "t"), 0, "nothing committed for callers that left");
    // Left before the job began: it does not even ask for the write lock
    // (which another connection holds: asking would end in "busy").
    let blocker = rusqlite::Connection::open(&*path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let (conn, db) = connect(&path, Duration::from_millis(100));
    let flag = Arc::new(AtomicBool::new(true));
    conn.start_job(flag);
    let failure = begin(&db).expect_err("the job failed");
    assert!(code(&failure).is_none() && failure.to_string().contains("stopped waiting"), "not the lock: {failure}");
    assert!(conn.end_job().is_some());
}

#[tokio::test]
async fn a_read_outside_a_transaction_does_not_wait_for_the_write_lock() {
    let path = fresh_file("read");
    let (conn, db) = connect(&path, Duration::from_millis(20));
    let blocker = rusqlite::Connection::open(&*path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (1);").expect("lock");
    let row =
        Db::Direct(db.as_ref()).one(sql("SELECT COUNT(*) AS n FROM t")).await.expect("a read needs no write lock");
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
    let text = "SELECT due FROM q WHERE ns = ? AND due IS NOT NULL AND due <= ? ORDER BY due LIMIT ?";
    for (i, ns) in ["a", "b", "a", "a", "b"].into_iter().enumerate() {
        let stmt = Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            text,
            [ns.into(), (i as i64 + 1).into(), (i as i64 + 1).into()],
        );
        Db::Direct(db.as_ref()).all(stmt).await.expect("the query");
        assert!(conn.end_job().is_none());
    }
    assert_eq!(conn.recompiled(text), 0, "the statement was compiled anew for new values");
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
        let text = format!(
            "INSERT INTO t (v) SELECT {i} FROM (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) SELECT x FROM n)"
        );
        Db::Direct(db.as_ref()).exec(sql(&text)).await.expect("insert");
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

#[tokio::test]
async fn rows_read_through_the_writer_equal_rows_read_through_the_pool() {
    // One run row with a distinct value in every column, then one with
    // every nullable column NULL: the writer's rows (read by the model's
    // declared types) and the pool's (sea-orm's conversions) must agree.
    use crate::entity::workflow_executions as exec;
    use sea_orm::{EntityTrait, QueryTrait};
    let dir = std::env::temp_dir().join(format!("hydra-writer-parity-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("runs.db");
    let _ = std::fs::remove_file(&file);
    let store = crate::Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.expect("store");
    store
        .connection()
        .execute_unprepared(
            "INSERT INTO workflow_executions (id, namespace, workflow_name, status, input_data, output_data, \
             error_message, max_attempts, attempts, idempotency_key, trigger_type, trigger_source, created_at, \
             started_at, updated_at, completed_at, due_at, deadline_at, lease_owner, fencing_token, \
             cancel_requested, open_position, open_attempts, signal_wait, parent_id, cancel_with_parent, \
             error_data, workflow_version, suspended_code) VALUES \
             ('full', 'ns', 'wf', 'running', X'01', X'0203', 'err', 3, 2, 'key', 'api', 'src', 10, 11, 12, 13, \
              14, 15, 'w', 16, 1, 4, 5, 1, 'parent', 1, X'04', 7, 99), \
             ('bare', 'ns', 'wf', 'pending', X'', NULL, NULL, 1, 0, NULL, 'api', NULL, 20, NULL, 21, NULL, \
              NULL, NULL, NULL, 0, 0, 0, 0, 0, NULL, 0, NULL, NULL, NULL)",
        )
        .await
        .expect("rows");
    use sea_orm::ConnectionTrait;
    let (_conn, direct) = connect(&file, Duration::from_secs(1));
    for id in ["full", "bare"] {
        let query = exec::Entity::find_by_id(id).build(sea_orm::DbBackend::Sqlite);
        let pool: exec::Model =
            Db::Pool(store.connection()).one(query.clone()).await.expect("q").expect("row").to().expect("pool");
        let orm = exec::Entity::find_by_id(id).one(store.connection()).await.expect("q").expect("row");
        let writer: exec::Model =
            Db::Direct(direct.as_ref()).one(query).await.expect("q").expect("row").to().expect("writer");
        assert_eq!(pool, orm, "the struct literal reads what sea-orm's derive reads");
        assert_eq!(writer, orm, "the writer reads what the pool reads");
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_transaction_a_job_leaves_open_is_rolled_back_before_the_next_job() {
    use std::sync::atomic::AtomicBool;
    let path = fresh_file("left-open");
    let (conn, db) = connect(&path, Duration::from_secs(1));
    // A job that leaves its transaction open (its handle leaked, not
    // dropped: no rollback of its own).
    conn.start_job(Arc::new(AtomicBool::new(false)));
    let txn = begin(&db).expect("begin");
    txn.db().batch("INSERT INTO t (v) VALUES (1)").await.expect("insert");
    std::mem::forget(txn);
    conn.end_job();
    // The next job begins afresh, and its commit carries only its own row.
    conn.start_job(Arc::new(AtomicBool::new(false)));
    let txn = begin(&db).expect("the next job begins: nothing is left open");
    txn.db().batch("INSERT INTO t (v) VALUES (2)").await.expect("insert");
    txn.commit().await.expect("commit");
    assert!(conn.end_job().is_none());
    let c = rusqlite::Connection::open(&*path).expect("open");
    let rows: Vec<i64> = c
        .prepare("SELECT v FROM t ORDER BY v")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows, [2], "the left-open job's row was committed by the next job");
}
