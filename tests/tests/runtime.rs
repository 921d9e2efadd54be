//! Runtime tests: replay, fencing, liveness, retries, durable time,
//! cancellation, timeouts, codecs and namespaces, on SQLite and PostgreSQL.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, Execution, RunHandle, StepStatus};
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::flow::{Act, Flow, Plan, Probe, StepPlan};
use hydra_tests::{TestDb, both_backends};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
const WAIT: Duration = Duration::from_secs(30);

async fn engine(db: &TestDb, clock: &Clock) -> Engine {
    Engine::builder().store(db.store().await).namespace("rt").clock(clock.clone()).build().await.unwrap()
}

fn worker_for(engine: &Engine, flow: Flow) -> hydra_runtime::WorkerBuilder {
    Worker::builder(engine)
        .register(flow)
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(30))
}

async fn until_ended(engine: &Engine, id: &ExecutionId) -> Execution {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = engine.get(id).await.unwrap().unwrap();
            if e.status.is_terminal() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {id} did not end"))
}

async fn until_status(engine: &Engine, id: &ExecutionId, status: ExecutionStatus) -> Execution {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = engine.get(id).await.unwrap().unwrap();
            if e.status == status {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {id} never reached {status}"))
}

async fn until<F: FnMut() -> bool>(what: &str, mut f: F) {
    tokio::time::timeout(WAIT, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn start(engine: &Engine, plan: Plan) -> RunHandle<Vec<String>> {
    engine.start::<Flow>(plan).await.unwrap()
}

fn ok(id: &str) -> StepPlan {
    StepPlan::new(id, Act::Ok)
}

/// A workflow with default options: it must survive a worker crash.
#[derive(Clone)]
struct Defaults(Arc<Probe>);

impl Workflow for Defaults {
    const NAME: &'static str = "defaults";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let probe = Arc::clone(&self.0);
        Ok(ctx
            .step("wait", move |_s| {
                let probe = Arc::clone(&probe);
                async move {
                    probe.began("wait");
                    probe.wait_gate("g").await;
                    Ok::<_, StepError>("done".to_owned())
                }
            })
            .await?)
    }
}

/// Two steps at once: `slow` (position 0) waits on gate `g`, `quick`
/// (position 1) finishes first. Returns the attempt `slow` ended on.
#[derive(Clone)]
struct Pair(Arc<Probe>);

impl Workflow for Pair {
    const NAME: &'static str = "pair";
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        let probe = Arc::clone(&self.0);
        let slow = ctx.step_with(StepOptions::new("slow").retry(RetryPolicy::attempts(5)), move |s| {
            let probe = Arc::clone(&probe);
            async move {
                probe.wait_gate("g").await;
                Ok::<_, StepError>(s.attempt())
            }
        });
        let quick = ctx.step("quick", |_| async { Ok::<_, StepError>(0u32) });
        let (slow, quick) = tokio::join!(biased; slow, quick);
        Ok(slow? + quick?)
    }
}

both_backends! {
    async fn a_workflow_with_default_options_survives_a_worker_crash(db: TestDb) {
        let clock = Clock::manual(T0);
        let e1 = engine(&db, &clock).await;
        let probe = Arc::new(Probe::default());
        let w1 = Worker::builder(&e1).register(Defaults(Arc::clone(&probe))).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        let h = e1.start::<Defaults>(()).await.unwrap();
        // Mid-step (a run started straight to the worker is `running` from
        // its insert, before the worker took it: dropped then, the worker
        // would hand it back, and no attempt would be lost).
        until("the step's body to begin", || probe.bodies("wait") >= 1).await;
        drop(w1); // the worker dies mid-step
        clock.advance(Duration::from_secs(31));
        probe.open("g");
        let e2 = engine(&db, &clock).await;
        let w2 = Worker::builder(&e2).register(Defaults(Arc::clone(&probe))).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        let done = until_ended(&e2, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
        assert_eq!(done.attempts, 2, "the crash counted as an attempt, within the default limit");
        w2.shutdown(Duration::from_secs(1)).await;
    }

    async fn a_worker_that_cannot_renew_stops_the_run_before_its_lease_expires(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow)
            .heartbeat_interval(Duration::from_millis(300))
            .lease_ttl(Duration::from_millis(1_500))
            .start()
            .await
            .unwrap();
        let h = start(&e, vec![StepPlan::new("hold", Act::WaitForCancel).attempts(1)]).await;
        until("the step to start", || probe.bodies("hold") == 1).await;
        // Another connection takes the database (SQLite) or the table
        // (PostgreSQL): from now on no renewal can succeed.
        let locker = db.store_with(|o| o.max_connections(1)).await;
        let conn = locker.connection();
        let postgres = conn.get_database_backend() == hydra_store::sea_orm::DbBackend::Postgres;
        if postgres {
            conn.execute_unprepared("BEGIN").await.unwrap();
            conn.execute_unprepared("LOCK TABLE workflow_executions IN ACCESS EXCLUSIVE MODE").await.unwrap();
        } else {
            conn.execute_unprepared("BEGIN EXCLUSIVE").await.unwrap();
        }
        // The true expiry: read under the lock, nothing can move it now.
        let q = format!("SELECT due_at FROM workflow_executions WHERE id = '{}'", h.id());
        let expiry: i64 = conn
            .query_one_raw(Statement::from_string(conn.get_database_backend(), q))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        until("the worker to stop the run", || probe.cancelled_at.lock().unwrap().is_some()).await;
        let stopped_at = probe.cancelled_at.lock().unwrap().unwrap();
        conn.execute_unprepared("COMMIT").await.unwrap();
        assert!(stopped_at < expiry, "stopped at {stopped_at}, but the lease expired at {expiry}");
        until("the worker to let go", || w.active_runs() == 0).await;
        w.shutdown(Duration::from_secs(1)).await;
    }

    async fn one_step_executes_exactly_once(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![ok("charge")]).await;
        let out = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        assert_eq!(out, vec![format!("{}/charge", h.id())], "the idempotency key is {{execution}}/{{step}}");
        assert_eq!(probe.bodies("charge"), 1);
        let steps = e.steps(h.id()).await.unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!((steps[0].status, steps[0].attempts), (StepStatus::Completed, 1));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn checkpointed_steps_do_not_rerun_after_a_restart(db: TestDb) {
        let clock = Clock::manual(T0);
        let e1 = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w1 = worker_for(&e1, flow.clone()).start().await.unwrap();
        let h = start(&e1, vec![ok("one"), ok("two"), StepPlan::new("three", Act::Gate("g".into()))]).await;
        until("the third step to start", || probe.bodies("three") == 1).await;
        // The worker process "dies": its tasks are dropped, nothing is written.
        drop(w1);
        drop(e1);
        // A new engine and worker on the same database, after the lease expired.
        clock.advance(Duration::from_secs(31));
        probe.open("g");
        let e2 = engine(&db, &clock).await;
        let w2 = worker_for(&e2, flow).start().await.unwrap();
        let done = until_ended(&e2, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
        assert_eq!((probe.bodies("one"), probe.bodies("two")), (1, 1), "recorded steps were not re-run");
        assert_eq!(probe.bodies("three"), 2, "only the step in flight at the crash ran again");
        let three = e2.steps(h.id()).await.unwrap().into_iter().find(|s| s.step_name == "three").unwrap();
        assert_eq!(three.attempts, 2, "the crashed attempt counts");
        assert_eq!(done.attempts, 2, "the takeover began a new workflow attempt");
        w2.shutdown(Duration::from_secs(5)).await;
    }

    async fn concurrent_steps_keep_each_attempt_counted_across_a_crash(db: TestDb) {
        let clock = Clock::manual(T0);
        let probe = Arc::new(Probe::default());
        let e1 = engine(&db, &clock).await;
        let w1 = Worker::builder(&e1).register(Pair(Arc::clone(&probe))).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        let h = e1.start::<Pair>(()).await.unwrap();
        // `quick` is recorded while `slow` still runs its first attempt.
        let deadline = tokio::time::Instant::now() + WAIT;
        while !e1.steps(h.id()).await.unwrap().iter().any(|s| s.step_name == "quick" && s.status == StepStatus::Completed) {
            assert!(tokio::time::Instant::now() < deadline, "quick was never recorded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(w1); // the worker dies in `slow`
        clock.advance(Duration::from_secs(31));
        probe.open("g");
        let e2 = engine(&db, &clock).await;
        let w2 = Worker::builder(&e2).register(Pair(Arc::clone(&probe))).poll_interval(Duration::from_millis(50)).start().await.unwrap();
        let out = tokio::time::timeout(WAIT, e2.handle::<u32>(h.id().clone()).result()).await.unwrap().unwrap();
        assert_eq!(out, 2, "the attempt that died in `slow` counts, though `quick` finished meanwhile");
        let slow = e2.steps(h.id()).await.unwrap().into_iter().find(|s| s.step_name == "slow").unwrap();
        assert_eq!((slow.status, slow.attempts), (StepStatus::Completed, 2));
        w2.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_row_records_when_its_attempt_began(db: TestDb) {
        // On a manual clock the claim, each body's start and each end fall
        // at different instants, so only the body's start matches.
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("first", Act::Gate("a".into())), StepPlan::new("slow", Act::Gate("b".into()))]).await;
        until("the first body", || probe.bodies("first") == 1).await;
        clock.advance(Duration::from_secs(5));
        probe.open("a");
        until("the second body", || probe.bodies("slow") == 1).await;
        clock.advance(Duration::from_secs(7));
        probe.open("b");
        tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        let steps = e.steps(h.id()).await.unwrap();
        let at = |name: &str| {
            let s = steps.iter().find(|s| s.step_name == name).unwrap();
            (s.started_at, s.completed_at.unwrap())
        };
        assert_eq!(at("first"), (T0, T0 + 5_000), "the first step began at the claim's instant, ended 5 s on");
        assert_eq!(at("slow"), (T0 + 5_000, T0 + 12_000), "the second began when the first ended, not at the claim");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_whose_worker_keeps_dying_runs_at_most_max_attempts_times(db: TestDb) {
        let clock = Clock::manual(T0);
        let (flow, probe) = Flow::new();
        let e = engine(&db, &clock).await;
        let h = start(&e, vec![ok("before"), StepPlan::new("fragile", Act::Gate("never".into())).attempts(2)]).await;
        // Two workers die in the body of `fragile`, one after the other.
        for round in 1..=2 {
            let e = engine(&db, &clock).await;
            let w = worker_for(&e, flow.clone()).start().await.unwrap();
            until("the step to start", || probe.bodies("fragile") == round).await;
            drop(w);
            drop(e);
            clock.advance(Duration::from_secs(31));
        }
        let e3 = engine(&db, &clock).await;
        let w3 = worker_for(&e3, flow).start().await.unwrap();
        let done = until_ended(&e3, h.id()).await;
        assert_eq!(probe.bodies("fragile"), 2, "no body beyond the step's two attempts");
        assert_eq!(probe.bodies("before"), 1);
        let fragile = e3.steps(h.id()).await.unwrap().into_iter().find(|s| s.step_name == "fragile").unwrap();
        assert_eq!((fragile.status, fragile.attempts), (StepStatus::Failed, 2), "{:?}", fragile.error);
        assert!(fragile.error.as_deref().unwrap_or_default().contains("ran out of attempts"), "{:?}", fragile.error);
        assert_eq!(done.status, ExecutionStatus::Failed);
        w3.shutdown(Duration::from_secs(5)).await;
    }

    async fn two_workers_one_run_body_runs_once(db: TestDb) {
        let clock = Clock::system();
        let e1 = engine(&db, &clock).await;
        let e2 = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w1 = worker_for(&e1, flow.clone()).start().await.unwrap();
        let w2 = worker_for(&e2, flow).start().await.unwrap();
        let mut handles = Vec::new();
        for i in 0..20 {
            let e = if i % 2 == 0 { &e1 } else { &e2 };
            handles.push(start(e, vec![ok("a"), ok("b")]).await);
        }
        for h in &handles {
            assert_eq!(until_ended(&e1, h.id()).await.status, ExecutionStatus::Completed);
        }
        assert_eq!((probe.bodies("a"), probe.bodies("b")), (20, 20), "each body ran once per run");
        w1.shutdown(Duration::from_secs(5)).await;
        w2.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_stalled_worker_is_taken_over_and_its_writes_are_rejected(db: TestDb) {
        let clock = Clock::manual(T0);
        let ea = engine(&db, &clock).await;
        let eb = engine(&db, &clock).await;
        let (flow_a, probe_a) = Flow::new();
        *probe_a.tag.lock().unwrap() = "A".into();
        // A's heartbeats are far apart, so A is still mid-step when B takes
        // over; with one slot, the stalled A cannot claim anything itself.
        let wa = worker_for(&ea, flow_a)
            .concurrency(1)
            .heartbeat_interval(Duration::from_secs(10))
            .lease_ttl(Duration::from_secs(30))
            .start()
            .await
            .unwrap();
        let h = start(&ea, vec![StepPlan::new("slow", Act::Gate("a".into())), ok("after")]).await;
        until("A to start the step", || probe_a.bodies("slow") == 1).await;
        let token_a = ea.get(h.id()).await.unwrap().unwrap().fencing_token;
        // A stalls past its lease; B claims the run and finishes it.
        clock.advance(Duration::from_secs(31));
        let (flow_b, probe_b) = Flow::new();
        *probe_b.tag.lock().unwrap() = "B".into();
        probe_b.open("a");
        let wb = worker_for(&eb, flow_b).start().await.unwrap();
        let done = until_ended(&eb, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert!(done.fencing_token > token_a);
        // A wakes up and tries to record its result under the old token.
        probe_a.open("a");
        until("A to give up the run", || wa.active_runs() == 0).await;
        let steps = eb.steps(h.id()).await.unwrap();
        assert_eq!(steps.len(), 2, "one row per step");
        let slow = &steps[0];
        assert_eq!(slow.fencing_token, done.fencing_token, "the result was written under B's token");
        let out: Vec<String> = h.result().await.unwrap();
        assert_eq!(out[0], "B", "A's late result was rejected; B's stands");
        assert_eq!(probe_a.bodies("after"), 0, "A wrote and ran nothing after losing the lease");
        wa.shutdown(Duration::from_secs(1)).await;
        wb.shutdown(Duration::from_secs(1)).await;
    }

    async fn heartbeats_move_the_lease_expiry(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("hold", Act::Gate("g".into()))]).await;
        until("the step to start", || probe.bodies("hold") == 1).await;
        let first = e.get(h.id()).await.unwrap().unwrap().lease_expires_at().unwrap();
        let e2 = e.clone();
        let id = h.id().clone();
        tokio::time::timeout(WAIT, async move {
            loop {
                let now = e2.get(&id).await.unwrap().unwrap().lease_expires_at().unwrap();
                if now > first {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a heartbeat moved expires_at forward");
        probe.open("g");
        until_ended(&e, h.id()).await;
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn max_attempts_fail_the_run_after_exactly_n_attempts(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("flaky", Act::AlwaysFail).attempts(4)]).await;
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        assert_eq!(probe.bodies("flaky"), 4);
        let s = &e.steps(h.id()).await.unwrap()[0];
        assert_eq!((s.status, s.attempts), (StepStatus::Failed, 4));
        assert!(done.error.as_deref().unwrap().contains("after 4 attempts"), "{:?}", done.error);
        assert_eq!(done.attempts, 1, "a step that ran out of attempts fails the run without a workflow retry");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn transient_failures_are_retried_until_success(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("flaky", Act::FailTimes(2)).attempts(5)]).await;
        assert_eq!(until_ended(&e, h.id()).await.status, ExecutionStatus::Completed);
        assert_eq!(probe.bodies("flaky"), 3);
        assert_eq!(e.steps(h.id()).await.unwrap()[0].attempts, 3);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn permanent_errors_are_not_retried(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("charge", Act::Permanent).attempts(5)]).await;
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        assert_eq!(done.error.as_deref(), Some("card declined"));
        assert_eq!(probe.bodies("charge"), 1);
        assert_eq!(done.attempts, 1, "a permanent step error is not retried at workflow level either");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_workflow_retry_reruns_failed_steps_but_not_recorded_ones(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![ok("before"), StepPlan::new("x", Act::FailWorkflowOnFirstAttempt), ok("after")]).await;
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
        assert_eq!(done.attempts, 2);
        assert_eq!((probe.bodies("before"), probe.bodies("after")), (1, 1));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn long_step_backoff_parks_the_run_durably(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("slow-retry", Act::FailTimes(1)).backoff_ms(20_000)]).await;
        let parked = until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        assert_eq!(parked.due_at, Some(T0 + 20_000), "the backoff is a stored wake-up time");
        assert_eq!(parked.lease_owner, None, "the worker was released");
        // The row is visible as parked before the worker has the commit's
        // answer and frees the slot: it must free it without the clock.
        until("the worker to free the run's slot", || w.active_runs() == 0).await;
        clock.advance(Duration::from_secs(21));
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert_eq!(probe.bodies("slow-retry"), 2);
        assert_eq!(done.attempts, 1, "a step backoff is not a workflow attempt");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_sleeping_run_holds_no_worker_slot_and_wakes_on_the_clock(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).concurrency(1).start().await.unwrap();
        let sleeper = start(&e, vec![ok("submit"), StepPlan::new("nap", Act::Sleep(48 * 3600 * 1000)), ok("check")]).await;
        let parked = until_status(&e, sleeper.id(), ExecutionStatus::Sleeping).await;
        assert_eq!(parked.due_at, Some(T0 + 48 * 3600 * 1000));
        // With one slot, another run still completes while the first sleeps.
        let other = start(&e, vec![ok("other")]).await;
        assert_eq!(until_ended(&e, other.id()).await.status, ExecutionStatus::Completed);
        assert_eq!(e.get(sleeper.id()).await.unwrap().unwrap().status, ExecutionStatus::Sleeping);
        assert_eq!(probe.bodies("check"), 0);
        clock.advance(Duration::from_secs(48 * 3600));
        let done = until_ended(&e, sleeper.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert_eq!((probe.bodies("submit"), probe.bodies("check")), (1, 1));
        assert_eq!(done.attempts, 1, "waking is not a new attempt");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn repeated_steps_and_sleeps_get_distinct_ids(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![ok("x"), StepPlan::new("s", Act::Sleep(1_000)), ok("x"), StepPlan::new("s", Act::Sleep(1_000)), ok("x")]).await;
        until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        clock.advance(Duration::from_secs(1));
        until("the second sleep", || probe.bodies("x") == 2).await;
        until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        clock.advance(Duration::from_secs(1));
        let out = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        let ids: Vec<String> = e.steps(h.id()).await.unwrap().into_iter().map(|s| s.step_id.to_string()).collect();
        assert_eq!(ids, ["x", "hydra.sleep", "x#2", "hydra.sleep#2", "x#3"]);
        assert_eq!(out, [format!("{}/x", h.id()), format!("{}/x#2", h.id()), format!("{}/x#3", h.id())]);
        assert_eq!(probe.bodies("x"), 3);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_different_step_at_a_recorded_position_is_non_determinism(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("_", Act::Switch("reserve".into(), "allocate".into())), StepPlan::new("s", Act::Sleep(1_000))]).await;
        until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        // A deploy changes the code: position 0 is now a different step.
        probe.switch.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(2));
        // Suspended (the default), not failed: it waits for code that replays it.
        let done = until_status(&e, h.id(), ExecutionStatus::Suspended).await;
        let err = done.error.unwrap();
        assert!(err.contains("non-determinism") && err.contains("`reserve`") && err.contains("`allocate`"), "{err}");
        assert_eq!(probe.bodies("allocate"), 0, "the new step never ran on the old history");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn an_output_that_cannot_be_encoded_fails_the_step_without_a_rerun(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("bad", Act::Unencodable).attempts(5)]).await;
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        let err = done.error.unwrap();
        assert!(err.contains("could not encode the output of step `bad`") && err.contains("refuses"), "{err}");
        assert_eq!(probe.bodies("bad"), 1, "the body's effect happened once and was not repeated");
        assert_eq!(e.steps(h.id()).await.unwrap()[0].status, StepStatus::Failed);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_stored_output_that_no_longer_decodes_names_execution_and_step(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, _probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![ok("pay"), StepPlan::new("s", Act::Sleep(1_000))]).await;
        until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        corrupt(&e, "UPDATE workflow_steps SET output_data = ? WHERE execution_id = ? AND step_id = 'pay'", h.id()).await;
        clock.advance(Duration::from_secs(2));
        // This code cannot read its history: suspended (as for a divergence),
        // for other code or an operator, not failed for good.
        let done = until_status(&e, h.id(), ExecutionStatus::Suspended).await;
        let err = done.error.unwrap();
        assert!(err.contains(h.id().as_str()) && err.contains("step `pay`") && err.contains("decode"), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_poisoned_input_fails_its_run_and_the_worker_serves_others(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, _probe) = Flow::new();
        // Create the run before any worker exists, then corrupt its input.
        let h = start(&e, vec![ok("a")]).await;
        corrupt(&e, "UPDATE workflow_executions SET input_data = ? WHERE id = ?", h.id()).await;
        let w = worker_for(&e, flow).start().await.unwrap();
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        let err = done.error.unwrap();
        assert!(err.contains("decode the input") && err.contains(h.id().as_str()), "{err}");
        let next = start(&e, vec![ok("b")]).await;
        assert_eq!(until_ended(&e, next.id()).await.status, ExecutionStatus::Completed);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn cancel_stops_a_running_run_at_its_next_checkpoint(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("wait", Act::WaitForCancel).attempts(5), ok("never")]).await;
        until("the step to start", || probe.bodies("wait") == 1).await;
        assert_eq!(h.cancel().await.unwrap(), hydra_runtime::CancelOutcome::Requested);
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Cancelled);
        assert_eq!(probe.bodies("never"), 0);
        let err = h.result().await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn cancel_ends_a_sleeping_run_through_a_worker_at_once(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("s", Act::Sleep(3_600_000)), ok("after")]).await;
        until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        // It ran: a worker ends it (running its compensations), now, not
        // when the sleep ends.
        assert_eq!(h.cancel().await.unwrap(), hydra_runtime::CancelOutcome::Requested);
        assert_eq!(until_ended(&e, h.id()).await.status, ExecutionStatus::Cancelled);
        clock.advance(Duration::from_secs(7200));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(e.get(h.id()).await.unwrap().unwrap().status, ExecutionStatus::Cancelled);
        assert_eq!(probe.bodies("after"), 0);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_past_its_deadline_times_out(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = e
            .start_with::<Flow>(vec![StepPlan::new("s", Act::Sleep(48 * 3600 * 1000)), ok("after")], StartOptions::new().timeout(Duration::from_secs(3600)))
            .await
            .unwrap();
        let parked = until_status(&e, h.id(), ExecutionStatus::Sleeping).await;
        assert_eq!(parked.due_at, Some(T0 + 3_600_000), "a sleep past the deadline wakes at the deadline");
        clock.advance(Duration::from_secs(3601));
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::TimedOut);
        assert_eq!(probe.bodies("after"), 0);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_timeout_bounds_each_attempt(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("slow", Act::Busy(60_000)).timeout_ms(50).attempts(2)]).await;
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        assert!(done.error.as_deref().unwrap().contains("timed out"), "{:?}", done.error);
        assert_eq!(probe.bodies("slow"), 2);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_panicking_step_fails_cleanly_and_the_worker_lives_on(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, _probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![StepPlan::new("boom", Act::Panic)]).await;
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        assert!(done.error.as_deref().unwrap().contains("panicked on purpose"), "{:?}", done.error);
        let h2 = start(&e, vec![StepPlan::new("wf", Act::WorkflowPanic)]).await;
        let done = until_ended(&e, h2.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed);
        assert!(done.error.as_deref().unwrap().contains("workflow panicked"), "{:?}", done.error);
        let h3 = start(&e, vec![ok("fine")]).await;
        assert_eq!(until_ended(&e, h3.id()).await.status, ExecutionStatus::Completed);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn namespaces_isolate_workers_and_engines(db: TestDb) {
        let clock = Clock::system();
        let store = db.store().await;
        let a = Engine::builder().store(store.clone()).namespace("a").clock(clock.clone()).build().await.unwrap();
        let b = Engine::builder().store(store).namespace("b").clock(clock.clone()).build().await.unwrap();
        let (flow, probe) = Flow::new();
        let w = worker_for(&a, flow).start().await.unwrap();
        let theirs = start(&b, vec![ok("b-step")]).await;
        let mine = start(&a, vec![ok("a-step")]).await;
        assert_eq!(until_ended(&a, mine.id()).await.status, ExecutionStatus::Completed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.get(theirs.id()).await.unwrap().unwrap().status, ExecutionStatus::Pending, "a's worker never claimed b's run");
        assert_eq!(probe.bodies("b-step"), 0);
        assert!(a.get(theirs.id()).await.unwrap().is_none(), "a's engine cannot read b's run");
        assert!(matches!(a.cancel(theirs.id()).await, Err(Error::NotFound(_))), "nor cancel it");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn the_same_idempotency_key_starts_one_run(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let opts = StartOptions::new().idempotency_key("order-7");
        let h1 = e.start_with::<Flow>(vec![ok("a")], opts.clone()).await.unwrap();
        let h2 = e.start_with::<Flow>(vec![ok("b")], opts).await.unwrap();
        assert_eq!(h1.id(), h2.id());
        assert_eq!(e.list(hydra_runtime::ExecutionFilter::new("ignored")).await.unwrap().len(), 1);
    }

    async fn graceful_shutdown_releases_leases_for_another_worker(db: TestDb) {
        let clock = Clock::system();
        let e = engine(&db, &clock).await;
        let (flow, probe) = Flow::new();
        let w1 = worker_for(&e, flow.clone()).start().await.unwrap();
        let h = start(&e, vec![ok("first"), StepPlan::new("second", Act::Gate("g".into()))]).await;
        until("the second step", || probe.bodies("second") == 1).await;
        w1.shutdown(Duration::from_millis(100)).await;
        let parked = e.get(h.id()).await.unwrap().unwrap();
        assert_eq!((parked.status, parked.lease_owner), (ExecutionStatus::Sleeping, None), "the lease was handed back");
        probe.open("g");
        let w2 = worker_for(&e, flow).start().await.unwrap();
        let done = until_ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Completed);
        assert_eq!(done.attempts, 1, "a graceful hand-over is not an attempt");
        assert_eq!(probe.bodies("first"), 1);
        w2.shutdown(Duration::from_secs(5)).await;
    }

    async fn runs_complete_with_group_commit_turned_off(db: TestDb) {
        let clock = Clock::system();
        let e = Engine::builder().store(db.store().await).namespace("rt").clock(clock.clone()).group_commit(false).build().await.unwrap();
        let (flow, probe) = Flow::new();
        let w = worker_for(&e, flow).start().await.unwrap();
        let h = start(&e, vec![ok("one"), StepPlan::new("flaky", Act::FailTimes(1)).attempts(3), ok("two")]).await;
        let out = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!((probe.bodies("one"), probe.bodies("flaky"), probe.bodies("two")), (1, 2, 1));
        let flaky = e.steps(h.id()).await.unwrap().into_iter().find(|s| s.step_name == "flaky").unwrap();
        assert_eq!((flaky.status, flaky.attempts), (StepStatus::Completed, 2));
        w.shutdown(Duration::from_secs(5)).await;
    }

}

/// A start in the worker's own engine wakes it at once. On an in-memory
/// database (no commit watcher, no `LISTEN`), with starts that are never
/// claimed by the start itself (`start_many`), and the worker's first claim
/// done and an hour to the next poll, only the in-process wake-up is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_start_wakes_an_idle_worker_without_waiting_for_a_poll() {
    let e = Engine::builder().database_url("sqlite::memory:").build().await.unwrap();
    let (flow, _probe) = Flow::new();
    let w = worker_for(&e, flow).poll_interval(Duration::from_secs(3600)).start().await.unwrap();
    tokio::time::timeout(WAIT, w.__until_drained(Duration::from_millis(150))).await.expect("the first claim");
    let h = e.start_many::<Flow>([(vec![ok("quick")], StartOptions::new())]).await.remove(0).unwrap();
    let out = tokio::time::timeout(WAIT, h.result()).await.expect("woken without a poll").unwrap();
    assert_eq!(out.len(), 1);
    w.shutdown(Duration::from_secs(5)).await;
}

/// Overwrites one payload column of a run with bytes no codec accepts.
async fn corrupt(e: &Engine, sql: &str, id: &ExecutionId) {
    let conn = e.connection();
    let backend = conn.get_database_backend();
    let sql = match backend {
        hydra_store::sea_orm::DbBackend::Postgres => sql.replacen('?', "$1", 1).replacen('?', "$2", 1),
        _ => sql.to_owned(),
    };
    let poison: Vec<u8> = vec![1, 0xff, 0xfe, 0xfd];
    let r = conn
        .execute_raw(Statement::from_sql_and_values(backend, sql, [poison.into(), id.as_str().into()]))
        .await
        .unwrap();
    assert_eq!(r.rows_affected(), 1);
}

#[tokio::test]
async fn start_rejects_oversized_inputs_and_bad_worker_settings() {
    let e = Engine::builder().database_url("sqlite::memory:").max_payload_bytes(64).build().await.unwrap();
    let big = vec![StepPlan::new(&"x".repeat(200), Act::Ok)];
    let err = e.start::<Flow>(big).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 64, .. }), "{err}");
    assert!(e.list(hydra_runtime::ExecutionFilter::new("x")).await.unwrap().is_empty(), "nothing was stored");
    let (flow, _) = Flow::new();
    let err = Worker::builder(&e)
        .register(flow)
        .heartbeat_interval(Duration::from_secs(20))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a third of lease_ttl"), "{err}");
    let err = Worker::builder(&e).start().await.unwrap_err();
    assert!(err.to_string().contains("at least one registered workflow"), "{err}");
    let _ = Arc::new(Probe::default());
}

#[tokio::test]
async fn postgres_a_start_in_another_process_wakes_an_idle_worker_through_listen_notify() {
    let db = TestDb::postgres().await;
    let clock = Clock::system();
    // Two engines with their own pools: the starter stands for another
    // process, so no in-process wake-up reaches the worker.
    let starter = engine(&db, &clock).await;
    let e = engine(&db, &clock).await;
    let (flow, _probe) = Flow::new();
    let w = worker_for(&e, flow).poll_interval(Duration::from_secs(3600)).start().await.unwrap();
    // Past the worker's first claim, and its LISTEN in effect (it claims
    // once more when the LISTEN begins, for what came before): both found
    // nothing, the next poll is an hour away.
    hydra_tests::until_listening(e.connection(), 1).await;
    tokio::time::timeout(WAIT, w.__until_drained(Duration::from_millis(150))).await.expect("the first claims");
    let h = start(&starter, vec![ok("quick")]).await;
    // With an hour between polls, only the notification can run it.
    let out = tokio::time::timeout(WAIT, h.result()).await.expect("woken by NOTIFY without a poll").unwrap();
    assert_eq!(out.len(), 1);
    w.shutdown(Duration::from_secs(5)).await;
}
