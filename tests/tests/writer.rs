//! SQLite's writer thread (hydra-store/src/writer): group commits and starts
//! of a SQLite file run on one thread with a synchronous connection. These
//! tests hold it to what the pool path guaranteed: a caller that stops
//! waiting leaves nothing, a busy database is a retryable error that
//! passes, a row of the wrong type is an error and never a silent NULL, and
//! the pool path (the option off) still works.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::sea_orm::{
    ConnectionTrait, DatabaseTransaction, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use hydra_store::{
    BatchOp, BatchValue, Checkpoint, ClaimRequest, ExecutionId, ExecutionStatus, NewExecution, OpenStep, StepId,
    StepKind, StepOutcome, StepRecord, Store, WorkerId,
};
use hydra_tests::TestDb;
use std::time::Duration;

const NS: &str = "test";
const WF: &str = "wf";
const TTL: i64 = 30_000;

fn claim_req(worker: &WorkerId, now: i64) -> ClaimRequest {
    ClaimRequest::new(NS, vec![WF.to_owned()], worker.clone(), now, TTL, 10)
}

/// Another connection's write transaction: holds the file's write lock
/// until it is dropped.
async fn hold_write_lock(other: &Store) -> DatabaseTransaction {
    let options =
        TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() };
    other.connection().begin_with_options(options).await.unwrap()
}

async fn exec(store: &Store, sql: String) {
    let c = store.connection();
    c.execute_raw(Statement::from_string(c.get_database_backend(), sql)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_caller_that_stops_waiting_before_the_commit_leaves_nothing() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let other = db.store().await;
    assert!(store.__writer_thread(), "a SQLite file's store writes on its writer thread");
    let (alone, batched) = (ExecutionId::generate(0), ExecutionId::generate(0));
    // A start, then a group commit, each waiting for the lock; their callers
    // give up first. Once the lock is free they get it, and must not commit.
    let lock = hold_write_lock(&other).await;
    let new = NewExecution::new(alone.clone(), NS, WF, vec![1], 0);
    let r = tokio::time::timeout(Duration::from_millis(200), store.create_execution(new)).await;
    assert!(r.is_err(), "the start waited for the lock: {r:?}");
    lock.rollback().await.unwrap();
    // Queued behind the abandoned start on the write gate: it ran by now.
    store.create_execution(NewExecution::new(ExecutionId::generate(0), NS, WF, vec![1], 0)).await.unwrap();
    let lock = hold_write_lock(&other).await;
    let op = BatchOp::Create(Box::new(NewExecution::new(batched.clone(), NS, WF, vec![1], 0)));
    let r = tokio::time::timeout(Duration::from_millis(200), store.apply_batch(&[op], 0)).await;
    assert!(r.is_err(), "the batch waited for the lock: {r:?}");
    lock.rollback().await.unwrap();
    // The writer goes on; this batch runs after the abandoned one.
    let op = BatchOp::Create(Box::new(NewExecution::new(ExecutionId::generate(0), NS, WF, vec![1], 0)));
    let results = store.apply_batch(&[op], 0).await.unwrap();
    assert!(matches!(results[0], Ok(BatchValue::Created(_))), "{results:?}");
    for id in [&alone, &batched] {
        assert!(store.get_execution(NS, id).await.unwrap().is_none(), "{id} was created for a caller that left");
    }
    assert_eq!(store.list_executions(&hydra_store::ExecutionFilter::new(NS)).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_busy_database_fails_a_group_commit_as_retryable_and_the_next_one_commits() {
    let db = TestDb::sqlite();
    let store = db.store_with(|o| o.busy_timeout(Duration::from_millis(100))).await;
    let other = db.store().await;
    let id = ExecutionId::generate(0);
    store.create_execution(NewExecution::new(id.clone(), NS, WF, vec![1], 0)).await.unwrap();
    let lease = store.claim(&claim_req(&WorkerId::generate(), 1)).await.unwrap().remove(0).lease;
    let record = StepRecord::new(StepId::new("s", 1), "s", 0, StepKind::Step, 3, StepOutcome::Completed(vec![7]));
    let op = BatchOp::Checkpoint(lease, Checkpoint::step(record).open(OpenStep::new(1, 1)));
    let lock = hold_write_lock(&other).await;
    let err = store.apply_batch(std::slice::from_ref(&op), 2).await.expect_err("the lock is held");
    assert!(err.is_retryable(), "busy is retryable: {err}");
    lock.rollback().await.unwrap();
    assert!(store.steps(NS, &id).await.unwrap().is_empty(), "the failed commit wrote nothing");
    let results = store.apply_batch(&[op], 3).await.expect("the next group commit");
    assert!(matches!(results[0], Ok(BatchValue::Checkpoint)), "{results:?}");
    assert_eq!(store.steps(NS, &id).await.unwrap()[0].output, Some(vec![7]));
}

/// A value of another type than its column's, written by hand: the
/// writer's connection reads it as an error (never as NULL), and the claim
/// fails that run alone, as the pool's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_group_commit_claim_fails_a_run_whose_optional_column_holds_the_wrong_type() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let good = ExecutionId::generate(0);
    let bad = ExecutionId::generate(0);
    for id in [&good, &bad] {
        store.create_execution(NewExecution::new(id.clone(), NS, WF, vec![1], 0)).await.unwrap();
    }
    exec(&store, format!("UPDATE workflow_executions SET deadline_at = 'soon' WHERE id = '{bad}'")).await;
    let results = store.apply_batch(&[BatchOp::Claim(claim_req(&WorkerId::generate(), 10))], 10).await.unwrap();
    let Ok(BatchValue::Claimed(claimed)) = &results[0] else { panic!("{results:?}") };
    let ids: Vec<_> = claimed.iter().map(|c| c.execution.id.clone()).collect();
    assert_eq!(ids, vec![good], "the unreadable run is not handed out (with its deadline dropped)");
    let run = store.get_execution(NS, &bad).await;
    // The run's row still holds the bad value: read it raw.
    let c = store.connection();
    let q = format!("SELECT status, error_message FROM workflow_executions WHERE id = '{bad}'");
    let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap().unwrap();
    assert_eq!(row.try_get::<String>("", "status").unwrap(), "failed", "{run:?}");
    assert!(row.try_get::<String>("", "error_message").unwrap().contains("cannot be read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commits_and_starts_work_with_the_writer_thread_off() {
    let db = TestDb::sqlite();
    let store = db.store_with(|o| o.writer_thread(false)).await;
    assert!(!store.__writer_thread());
    let id = ExecutionId::generate(0);
    store.create_execution(NewExecution::new(id.clone(), NS, WF, vec![1], 0)).await.unwrap();
    let results = store.apply_batch(&[BatchOp::Claim(claim_req(&WorkerId::generate(), 1))], 1).await.unwrap();
    let Ok(BatchValue::Claimed(claimed)) = &results[0] else { panic!("{results:?}") };
    let lease = claimed[0].lease.clone();
    let record = StepRecord::new(StepId::new("s", 1), "s", 0, StepKind::Step, 3, StepOutcome::Completed(vec![7]));
    let done = Checkpoint::step_and(record, hydra_store::Transition::Finish(hydra_store::Terminal::Completed(vec![9])));
    let results = store.apply_batch(&[BatchOp::Checkpoint(lease, done)], 2).await.unwrap();
    assert!(matches!(results[0], Ok(BatchValue::Checkpoint)), "{results:?}");
    let run = store.get_execution(NS, &id).await.unwrap().unwrap();
    assert_eq!((run.status, run.output), (ExecutionStatus::Completed, Some(vec![9])));
}
