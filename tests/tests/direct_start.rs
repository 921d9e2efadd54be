//! Runs claimed by their start (`worker/direct.rs`): with a free slot on a
//! worker of this engine and nothing else due, the statement that creates
//! a run also claims it for that worker, and the run is driven at once;
//! a start never overtakes runs already due, never leaks a slot, and a run
//! so claimed is as fenced and as recoverable as any claimed run.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Codec, Execution, StartOptions};
use hydra_tests::{TestDb, both_backends};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const NS: &str = "direct";
const WAIT: Duration = Duration::from_secs(30);

/// Step bodies wait here for a permit the test hands out.
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

/// Two attempts: a takeover may begin the second.
#[step(retry(max_attempts = 2))]
async fn pass(gate: State<Gate>, i: u32) -> Result<u32, StepError> {
    gate.0.acquire().await.map_err(|e| StepError::permanent(e.to_string()))?.forget();
    Ok(i)
}

/// The child of [`parent`].
#[workflow(name = "direct-child")]
async fn child(ctx: WorkflowContext, i: u32) -> Result<u32, WorkflowError> {
    Ok(pass(&ctx, i).await?)
}

/// Waits for one child's end.
#[workflow(name = "direct-parent")]
async fn parent(ctx: WorkflowContext, i: u32) -> Result<u32, WorkflowError> {
    Ok(ctx.child::<child>(i).await? + 1)
}

#[workflow(name = "direct-gated")]
async fn gated(ctx: WorkflowContext, i: u32) -> Result<u32, WorkflowError> {
    Ok(pass(&ctx, i).await?)
}

async fn engine(db: &TestDb) -> Engine {
    Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap()
}

/// A worker of [`gated`] with `gate`, to be configured.
fn builder(engine: &Engine, gate: &Gate) -> hydra_runtime::WorkerBuilder {
    Worker::builder(engine).register(gated).state(gate.clone())
}

async fn worker(engine: &Engine, gate: &Gate, concurrency: usize, batch: u32) -> Worker {
    builder(engine, gate)
        .concurrency(concurrency)
        .claim_batch(batch)
        // Polls and heartbeats far apart: no claim of their own is in
        // flight when a test starts a run (a claim in flight keeps starts
        // from taking slots directly).
        .poll_interval(Duration::from_secs(10))
        .heartbeat_interval(Duration::from_secs(5))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap()
}

async fn start(engine: &Engine, i: u32, options: StartOptions) -> Execution {
    engine
        .start_encoded("direct-gated", Codec::Json.encode(&i).unwrap(), WorkflowOptions::default(), options)
        .await
        .unwrap()
}

async fn until<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    tokio::time::timeout(WAIT, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn until_ended(engine: &Engine, id: &ExecutionId) -> Execution {
    let mut last = None;
    until("the run to end", async || {
        let e = engine.get(id).await.unwrap().unwrap();
        let done = e.status.is_terminal();
        last = Some(e);
        done
    })
    .await;
    last.unwrap()
}

/// Until a start may take a slot of `worker` directly: a probe run has
/// ended, the claims its end woke (its freed slot; SQLite's commit watcher
/// a moment later) have answered, and the last found nothing more due.
async fn settled(engine: &Engine, worker: &Worker) {
    let probe = start(engine, 0, StartOptions::new()).await;
    until_ended(engine, &probe.id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(WAIT, worker.__until_drained(Duration::from_millis(150)))
        .await
        .expect("the worker's claims to settle");
}

both_backends! {
    async fn a_start_with_a_free_slot_here_creates_its_run_claimed_by_that_worker(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(1_000)));
        let w = worker(&e, &gate, 4, 4).await;
        settled(&e, &w).await;
        for i in 1..=3 {
            settled(&e, &w).await;
            let run = start(&e, i, StartOptions::new()).await;
            // What the start's own statement wrote: the run is already
            // running under this worker's first lease, its first attempt
            // counted, and it took one commit.
            assert_eq!(run.status, ExecutionStatus::Running, "run {i} claimed by its start");
            assert_eq!(run.lease_owner.as_ref(), Some(w.id()));
            assert_eq!(run.fencing_token.get(), 1);
            assert_eq!((run.attempts, run.open_step.attempts), (1, 1));
            assert_eq!(run.started_at, Some(run.created_at));
            let ended = until_ended(&e, &run.id).await;
            assert_eq!(ended.status, ExecutionStatus::Completed);
            assert_eq!(ended.attempts, 1, "driven once, by the worker it was claimed for");
            let steps = e.steps(&run.id).await.unwrap();
            assert_eq!(steps.len(), 1);
            assert_eq!(steps[0].attempts, 1, "its step ran once");
        }
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_delayed_start_a_start_without_a_worker_and_one_of_another_version_are_queued(db: TestDb) {
        let e = engine(&db).await;
        // No worker yet: queued.
        let early = start(&e, 1, StartOptions::new()).await;
        assert_eq!(early.status, ExecutionStatus::Pending);
        let gate = Gate(Arc::new(Semaphore::new(1_000)));
        // Polls often: a delayed run is found by a poll.
        let w = builder(&e, &gate)
            .poll_interval(Duration::from_millis(100))
            .start()
            .await
            .unwrap();
        until_ended(&e, &early.id).await;
        settled(&e, &w).await;
        let later = start(&e, 2, StartOptions::new().delay(Duration::from_millis(300))).await;
        assert_eq!(later.status, ExecutionStatus::Pending, "a delayed start waits for its time");
        let mut v7 = StartOptions::new();
        v7.workflow_version = Some(7);
        let newer = start(&e, 3, v7).await;
        assert_eq!(newer.status, ExecutionStatus::Pending, "version 7 is not this worker's to run");
        assert_eq!(until_ended(&e, &later.id).await.status, ExecutionStatus::Completed);
        w.shutdown(Duration::from_secs(5)).await;
        assert_eq!(e.get(&newer.id).await.unwrap().unwrap().status, ExecutionStatus::Pending);
    }

    async fn a_start_does_not_overtake_runs_already_due(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(0)));
        // A backlog larger than the worker: claims of one run each, so each
        // claim is full and the worker knows more may be due.
        let mut backlog = Vec::new();
        for i in 0..8 {
            backlog.push(start(&e, 100 + i, StartOptions::new()).await);
        }
        // Each claim's answer is used 300 ms late: a slot stays free that
        // long after a run ends, while the claim it woke is in flight.
        let w = builder(&e, &gate)
            .concurrency(3)
            .claim_batch(1)
            .poll_interval(Duration::from_millis(200))
            .heartbeat_interval(Duration::from_millis(100))
            .lease_ttl(Duration::from_secs(30))
            .__claim_delay(Duration::from_millis(300))
            .start()
            .await
            .unwrap();
        until("three runs in their step", async || w.active_runs() == 3).await;
        for round in 0..4 {
            // One run ends; its slot is free until the claim it woke takes
            // the next run of the backlog. A start meanwhile is queued.
            gate.0.add_permits(1);
            until("a run to end", async || completed(&e).await == round as usize + 1).await;
            let run = start(&e, 200 + round, StartOptions::new()).await;
            assert_eq!(run.status, ExecutionStatus::Pending, "round {round}: the start overtook the backlog");
            until("the backlog run to take the slot", async || w.active_runs() == 3).await;
        }
        gate.0.add_permits(1_000);
        let mut started = Vec::new();
        for b in &backlog {
            started.push(until_ended(&e, &b.id).await.started_at.unwrap());
        }
        w.shutdown(Duration::from_secs(5)).await;
        let last_backlog = started.into_iter().max().unwrap();
        let first_later = e
            .list(hydra_runtime::ExecutionFilter::new(NS))
            .await
            .unwrap()
            .into_iter()
            .filter(|r| !backlog.iter().any(|b| b.id == r.id))
            .filter_map(|r| r.started_at)
            .min()
            .unwrap();
        assert!(first_later >= last_backlog, "a later start ran before the backlog's last run");
    }

    async fn a_start_that_finds_its_idempotency_key_taken_gives_its_slot_back(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(1_000)));
        let w = worker(&e, &gate, 1, 1).await;
        settled(&e, &w).await;
        let first = start(&e, 1, StartOptions::new().idempotency_key("k")).await;
        assert_eq!(first.status, ExecutionStatus::Running);
        until_ended(&e, &first.id).await;
        for _ in 0..3 {
            let again = start(&e, 1, StartOptions::new().idempotency_key("k")).await;
            assert_eq!(again.id, first.id, "the same run");
        }
        // The one slot is free again: a new run is claimed by its start.
        settled(&e, &w).await;
        let other = start(&e, 2, StartOptions::new()).await;
        assert_eq!(other.status, ExecutionStatus::Running, "the slot was leaked by the repeated starts");
        assert_eq!(until_ended(&e, &other.id).await.status, ExecutionStatus::Completed);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_claimed_by_its_start_is_taken_over_under_a_new_token_when_its_worker_dies(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(0)));
        let w = builder(&e, &gate)
            .concurrency(2)
            // Few claims of its own: none in flight when the run starts.
            .poll_interval(Duration::from_secs(10))
            .heartbeat_interval(Duration::from_secs(1))
            .lease_ttl(Duration::from_secs(3))
            .start()
            .await
            .unwrap();
        settled_with(&e, &w, &gate).await;
        let run = start(&e, 9, StartOptions::new().max_attempts(3)).await;
        assert_eq!(run.status, ExecutionStatus::Running);
        until("its step to begin", async || w.active_runs() == 1).await;
        // The worker dies (dropped: claims stop, runs abandoned, no release).
        drop(w);
        let other = Gate(Arc::new(Semaphore::new(1_000)));
        let w2 = worker_with_ttl(&e, &other).await;
        let ended = until_ended(&e, &run.id).await;
        assert_eq!(ended.status, ExecutionStatus::Completed, "{:?}", ended.error);
        assert_eq!(ended.attempts, 2, "the start's claim began attempt 1, the takeover attempt 2");
        assert!(ended.fencing_token.get() >= 2, "taken over under a new token");
        // The start's claim counted the first attempt of the step, the
        // takeover the second: both durable, the step recorded once.
        let steps = e.steps(&run.id).await.unwrap();
        assert_eq!(steps.len(), 1, "one recorded step");
        assert_eq!(steps[0].attempts, 2, "the attempt the dead worker began is counted");
        gate.0.add_permits(1_000);
        w2.shutdown(Duration::from_secs(5)).await;
    }
    async fn a_start_whose_caller_stops_waiting_still_leaves_a_run_that_runs(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(1_000)));
        let w = worker(&e, &gate, 64, 64).await;
        settled(&e, &w).await;
        // Callers that give up part-way (a timeout, a dropped request):
        // whatever run their start created must run now, not sit leased to
        // a worker that never heard of it until the lease expires (30 s).
        for i in 0..200u32 {
            let give_up = Duration::from_micros(u64::from(i % 40) * 50);
            let _ = tokio::time::timeout(give_up, start(&e, i, StartOptions::new())).await;
        }
        // The starts given up on may still be inserting: until the count of
        // runs stops changing.
        let mut seen = usize::MAX;
        let runs = loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let runs = e.list(hydra_runtime::ExecutionFilter::new(NS).limit(1_000)).await.unwrap();
            if runs.len() == seen {
                break runs;
            }
            seen = runs.len();
        };
        assert!(runs.len() > 1, "some starts got through");
        // Far sooner than the 30 s lease a run left to nobody would wait for.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for r in &runs {
            loop {
                let now = e.get(&r.id).await.unwrap().unwrap();
                if now.status == ExecutionStatus::Completed {
                    assert_eq!(now.attempts, 1, "run {} began more than one attempt", r.id);
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "run {} is stuck {:?}", r.id, now.status);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_start_does_not_take_a_slot_a_claim_in_flight_counts_on(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(0)));
        let w = builder(&e, &gate)
            .concurrency(2)
            .claim_batch(2)
            .poll_interval(Duration::from_secs(10))
            .heartbeat_interval(Duration::from_secs(5))
            .lease_ttl(Duration::from_secs(30))
            .__claim_delay(Duration::from_millis(1_500))
            .start()
            .await
            .unwrap();
        settled_with(&e, &w, &gate).await;
        // Two runs started by another process: its commit (SQLite's commit
        // watcher) or its NOTIFY (PostgreSQL) wakes a claim that takes both.
        let other = Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap();
        let a = start(&other, 1, StartOptions::new()).await;
        let b = start(&other, 2, StartOptions::new()).await;
        // Both claimed (committed), the claim's answer not yet used.
        until("a claim to take both", async || {
            let sa = e.get(&a.id).await.unwrap().unwrap().status;
            let sb = e.get(&b.id).await.unwrap().unwrap().status;
            sa == ExecutionStatus::Running && sb == ExecutionStatus::Running
        })
        .await;
        let y = start(&e, 3, StartOptions::new()).await;
        assert_eq!(y.status, ExecutionStatus::Pending, "the start took a slot the claim in flight counts on");
        gate.0.add_permits(1_000);
        let (ea, eb, ey) = (until_ended(&e, &a.id).await, until_ended(&e, &b.id).await, until_ended(&e, &y.id).await);
        assert_eq!((ea.attempts, eb.attempts), (1, 1));
        assert!(ea.started_at <= ey.started_at && eb.started_at <= ey.started_at);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_started_elsewhere_while_every_slot_was_taken_is_claimed_when_one_frees(db: TestDb) {
        let e = engine(&db).await;
        let gate = Gate(Arc::new(Semaphore::new(1)));
        // Polls far apart: only a wake-up can claim in time.
        let w = builder(&e, &gate)
            .concurrency(2)
            .poll_interval(Duration::from_secs(20))
            .heartbeat_interval(Duration::from_secs(5))
            .lease_ttl(Duration::from_secs(30))
            .start()
            .await
            .unwrap();
        settled(&e, &w).await;
        let a = start(&e, 1, StartOptions::new()).await;
        // The claim a's commit may wake (SQLite's commit watcher) answers.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::time::timeout(WAIT, w.__until_drained(Duration::from_millis(150))).await.unwrap();
        let b = start(&e, 2, StartOptions::new()).await;
        assert_eq!((a.status, b.status), (ExecutionStatus::Running, ExecutionStatus::Running));
        // Another process (an engine with a pool of its own) starts X
        // while both slots are taken.
        let other = Engine::builder().store(db.store().await).namespace(NS).build().await.unwrap();
        let x = start(&other, 3, StartOptions::new()).await;
        // Its NOTIFY (PostgreSQL) reaches a worker with no free slot.
        tokio::time::sleep(Duration::from_millis(300)).await;
        gate.0.add_permits(1_000);
        until_ended(&e, &a.id).await;
        until_ended(&e, &b.id).await;
        // X is claimed by the slot that freed, not at the next poll.
        let ex = tokio::time::timeout(Duration::from_secs(5), until_ended(&e, &x.id))
            .await
            .expect("the run started elsewhere waited for the poll");
        assert_eq!(ex.status, ExecutionStatus::Completed);
        w.shutdown(Duration::from_secs(5)).await;
    }
}

async fn completed(engine: &Engine) -> usize {
    let runs = engine.list(hydra_runtime::ExecutionFilter::new(NS)).await.unwrap();
    runs.iter().filter(|r| r.status == ExecutionStatus::Completed).count()
}

async fn settled_with(engine: &Engine, worker: &Worker, gate: &Gate) {
    gate.0.add_permits(1);
    settled(engine, worker).await;
}

async fn worker_with_ttl(engine: &Engine, gate: &Gate) -> Worker {
    builder(engine, gate)
        .concurrency(2)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap()
}

/// An in-memory database has no commit watcher and no `LISTEN`: a parent
/// made due by its child's end is claimed because the child's freed slot
/// claims, not 30 s later at the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_made_due_by_its_childs_end_is_claimed_without_waiting_for_the_poll() {
    let e = Engine::builder().database_url("sqlite::memory:").namespace(NS).build().await.unwrap();
    let gate = Gate(Arc::new(Semaphore::new(1_000)));
    let w = Worker::builder(&e)
        .register(parent)
        .register(child)
        .state(gate)
        .poll_interval(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let h = e.start::<parent>(4).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), h.result()).await.expect("the parent waited for the poll");
    assert_eq!(out.unwrap(), 5);
    w.shutdown(Duration::from_secs(5)).await;
}
