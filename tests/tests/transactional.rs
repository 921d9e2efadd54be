//! Transactional steps: the body's writes commit with the step's checkpoint
//! or not at all. (The SIGKILL cases are in `faults.rs`.)

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, StepStatus};
use hydra_store::sea_orm::{ConnectionTrait, DbBackend, Statement};
use hydra_tests::fault::create_ledger;
use hydra_tests::{DbKind, TestDb, both_backends};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);

/// Writes a ledger row, then fails on the first `fail` attempts, or waits
/// for `gate` (first attempt only).
#[derive(Clone)]
struct Ledger {
    fail: u32,
    gate: Option<Arc<Notify>>,
    entered: Arc<AtomicU32>,
}

impl Workflow for Ledger {
    const NAME: &'static str = "ledger";
    type Input = u32;
    type Output = String;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().retry(RetryPolicy::attempts(5))
    }

    async fn run(&self, ctx: WorkflowContext, amount: u32) -> Result<String, WorkflowError> {
        let me = self.clone();
        let options = StepOptions::new("post").retry(RetryPolicy::attempts(5).initial(Duration::from_millis(1)));
        Ok(ctx
            .transactional_step(options, move |tx, s| {
                let me = me.clone();
                async move {
                    let backend = tx.get_database_backend();
                    let sql = match backend {
                        DbBackend::Postgres => "INSERT INTO ledger (execution_id, pid) VALUES ($1, $2)",
                        _ => "INSERT INTO ledger (execution_id, pid) VALUES (?, ?)",
                    };
                    tx.execute_raw(Statement::from_sql_and_values(
                        backend,
                        sql,
                        [s.execution_id().as_str().into(), i64::from(amount).into()],
                    ))
                    .await?;
                    me.entered.fetch_add(1, Ordering::SeqCst);
                    if s.attempt() <= me.fail {
                        return Err(StepError::retryable("the bank said no, this time"));
                    }
                    if let (Some(g), 1) = (&me.gate, s.attempt()) {
                        g.notified().await;
                    }
                    Ok(format!("posted {amount} on attempt {}", s.attempt()))
                }
            })
            .await?)
    }
}

async fn ledger_rows(e: &Engine) -> i64 {
    let c = e.connection();
    let r = c.query_one_raw(Statement::from_string(c.get_database_backend(), "SELECT COUNT(*) FROM ledger")).await;
    r.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
}

async fn setup(db: &TestDb, clock: &Clock) -> Engine {
    let e = Engine::builder().store(db.store().await).namespace("tx").clock(clock.clone()).build().await.unwrap();
    create_ledger(e.connection()).await;
    e
}

fn worker(e: &Engine, wf: Ledger) -> hydra_runtime::WorkerBuilder {
    Worker::builder(e)
        .register(wf)
        .poll_interval(Duration::from_millis(20))
        .heartbeat_interval(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(30))
}

both_backends! {
    async fn a_failing_transactional_step_rolls_its_writes_back(db: TestDb) {
        let e = setup(&db, &Clock::system()).await;
        let entered = Arc::new(AtomicU32::new(0));
        let w = worker(&e, Ledger { fail: 2, gate: None, entered: Arc::clone(&entered) }).start().await.unwrap();
        let h = e.start::<Ledger>(7).await.unwrap();
        let out = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        assert_eq!(out, "posted 7 on attempt 3");
        assert_eq!(entered.load(Ordering::SeqCst), 3, "three bodies wrote a row");
        assert_eq!(ledger_rows(&e).await, 1, "only the committed attempt's row exists");
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn a_run_stopped_before_the_commit_leaves_no_effect(db: TestDb) {
        let e = setup(&db, &Clock::system()).await;
        let entered = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(Notify::new());
        let w = worker(&e, Ledger { fail: 0, gate: Some(Arc::clone(&gate)), entered: Arc::clone(&entered) })
            .start()
            .await
            .unwrap();
        let h = e.start::<Ledger>(9).await.unwrap();
        tokio::time::timeout(WAIT, async {
            while entered.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // The worker stops while the body waits between its write and the commit.
        w.shutdown(Duration::ZERO).await;
        assert_eq!(ledger_rows(&e).await, 0, "the uncommitted write was rolled back");
        let w = worker(&e, Ledger { fail: 0, gate: None, entered: Arc::clone(&entered) }).start().await.unwrap();
        let out = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        assert_eq!(out, "posted 9 on attempt 2");
        assert_eq!(ledger_rows(&e).await, 1);
        let step = &e.steps(h.id()).await.unwrap()[0];
        assert_eq!((step.status, step.attempts), (StepStatus::Completed, 2));
        w.shutdown(Duration::from_secs(1)).await;
    }
}

/// PostgreSQL: another worker takes the run over while the body waits
/// before its commit; the commit's fencing check fails and rolls it back.
/// (On SQLite the step transaction holds the database's write lock, so no
/// other worker can claim the run until it ends.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_lease_lost_before_the_commit_rolls_the_transaction_back() {
    let db = TestDb::new(DbKind::Postgres).await;
    let clock = Clock::manual(1_700_000_000_000);
    let ea = setup(&db, &clock).await;
    let eb = setup(&db, &clock).await;
    let entered = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(Notify::new());
    let wa = worker(&ea, Ledger { fail: 0, gate: Some(Arc::clone(&gate)), entered: Arc::clone(&entered) })
        .concurrency(1)
        .heartbeat_interval(Duration::from_secs(10))
        .start()
        .await
        .unwrap();
    let h = ea.start::<Ledger>(5).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    clock.advance(Duration::from_secs(31));
    let wb = worker(&eb, Ledger { fail: 0, gate: None, entered: Arc::clone(&entered) }).start().await.unwrap();
    let out: String = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
    assert_eq!(out, "posted 5 on attempt 2", "B posted");
    gate.notify_waiters();
    tokio::time::timeout(WAIT, async {
        while wa.active_runs() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(ledger_rows(&eb).await, 1, "A's write was rolled back by the failed fencing check");
    let step = &eb.steps(h.id()).await.unwrap()[0];
    assert_eq!(step.output.as_ref().map(|_| ()), Some(()));
    wa.shutdown(Duration::from_secs(1)).await;
    wb.shutdown(Duration::from_secs(1)).await;
}
