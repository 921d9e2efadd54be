//! Signals: buffered before the wait, delivered once each and in order,
//! deduplicated by key, parked runs woken, timeouts recorded, and replays
//! that wait for another signal caught as non-determinism.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, Execution, SignalOptions, SignalSent};
use hydra_tests::{TestDb, both_backends};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const T0: i64 = 1_700_000_000_000;

/// One wait of the scripted workflow.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Wait {
    /// `recv::<u32>(name)`.
    Recv(String),
    /// `recv_timeout::<u32>(name, ms)`.
    Within(String, u64),
    /// `recv` of the name the switch picks (first if off, second if on).
    Switch(String, String),
}

/// Runs its waits in order and returns what each received.
#[derive(Clone, Default)]
struct Waits {
    switch: Arc<AtomicBool>,
}

impl Workflow for Waits {
    const NAME: &'static str = "waits";
    type Input = Vec<Wait>;
    type Output = Vec<Option<u32>>;

    async fn run(&self, ctx: WorkflowContext, waits: Vec<Wait>) -> Result<Vec<Option<u32>>, WorkflowError> {
        let mut got = Vec::with_capacity(waits.len());
        for w in waits {
            got.push(match w {
                Wait::Recv(name) => Some(ctx.recv::<u32>(&name).await?),
                Wait::Within(name, ms) => ctx.recv_timeout::<u32>(&name, Duration::from_millis(ms)).await?,
                Wait::Switch(a, b) => {
                    let name = if self.switch.load(Ordering::SeqCst) { b } else { a };
                    Some(ctx.recv::<u32>(&name).await?)
                }
            });
        }
        Ok(got)
    }
}

/// "Approve or reject within the window, else escalate", then a durable
/// sleep (so the run replays past the select).
struct Choose;

impl Workflow for Choose {
    const NAME: &'static str = "choose";
    type Input = u64;
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, window_ms: u64) -> Result<String, WorkflowError> {
        let picked = ctx.select(&["approve", "reject"], Some(Duration::from_millis(window_ms))).await?;
        let out = match picked {
            Some(s) if s.name() == "approve" => format!("approved by {}", s.decode::<String>()?),
            Some(s) => format!("rejected: {}", s.decode::<String>()?),
            None => "escalated".to_owned(),
        };
        ctx.sleep(Duration::from_millis(20)).await;
        Ok(out)
    }
}

/// Runs whose `work` step has begun, and runs whose `work` may end (the
/// test opens it once its cancel was accepted).
static IN_WORK: Mutex<Vec<String>> = Mutex::new(Vec::new());
static WORK_OPEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A step that ends when the test says (the window for a cancel the run
/// does not see), then a wait with no end: signal `never` (input `true`) or
/// an hour's sleep.
struct WorkThenWait;

impl Workflow for WorkThenWait {
    const NAME: &'static str = "work-then-wait";
    type Input = bool;
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, signal: bool) -> Result<u32, WorkflowError> {
        ctx.step("work", |s| async move {
            let id = s.execution_id().to_string();
            IN_WORK.lock().unwrap().push(id.clone());
            let give_up = std::time::Instant::now() + WAIT;
            while !WORK_OPEN.lock().unwrap().contains(&id) && std::time::Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, StepError>(())
        })
        .await?;
        if signal {
            return Ok(ctx.recv::<u32>("never").await?);
        }
        ctx.sleep(Duration::from_secs(3600)).await;
        Ok(0)
    }
}

/// A select of one name within an hour, then a sleep (so it is replayed).
struct SelectOne;

impl Workflow for SelectOne {
    const NAME: &'static str = "select-one";
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        let got = ctx.select(&["go"], Some(Duration::from_secs(3600))).await?;
        let n = got.map(|s| s.decode::<u32>()).transpose()?.unwrap_or(0);
        ctx.sleep(Duration::from_millis(10)).await;
        Ok(n)
    }
}

async fn engine(db: &TestDb, clock: &Clock) -> Engine {
    Engine::builder().store(db.store().await).namespace("signals").clock(clock.clone()).build().await.unwrap()
}

fn worker(engine: &Engine, flow: Waits) -> hydra_runtime::WorkerBuilder {
    Worker::builder(engine)
        .register(flow)
        .concurrency(1)
        .poll_interval(Duration::from_millis(20))
        .heartbeat_interval(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(30))
}

async fn until(engine: &Engine, id: &ExecutionId, what: &str, done: impl Fn(&Execution) -> bool) -> Execution {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = engine.get(id).await.unwrap().unwrap();
            if done(&e) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {id}: {what}"))
}

/// Parked in a receive: sleeping, no lease, no due time (only a signal wakes it).
fn parked(e: &Execution) -> bool {
    e.status == ExecutionStatus::Sleeping && e.lease_owner.is_none()
}

both_backends! {
    async fn a_signal_sent_before_the_wait_is_buffered_and_delivered_once(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let h = e.start::<Waits>(vec![Wait::Recv("go".into()), Wait::Within("go".into(), 0)]).await.unwrap();
        assert!(matches!(e.signal(h.id(), "go", &7u32).await.unwrap(), SignalSent::Accepted { .. }));
        let w = worker(&e, Waits::default()).start().await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), [Some(7), None], "delivered once, not twice");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_signal_wakes_a_parked_run_that_held_no_worker_slot(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let w = worker(&e, Waits::default()).start().await.unwrap();
        let waiting = e.start::<Waits>(vec![Wait::Recv("approve".into())]).await.unwrap();
        until(&e, waiting.id(), "parks", parked).await;
        // One slot, and the parked run does not hold it: another run goes through.
        let other = e.start::<Waits>(vec![Wait::Within("none".into(), 0)]).await.unwrap();
        assert_eq!(other.result_timeout(WAIT).await.unwrap(), [None]);
        // The other run's slot is given back just after its end is
        // committed; the parked run holds none.
        let freed = tokio::time::timeout(WAIT, async {
            while w.active_runs() != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(freed.is_ok(), "a slot is still held: {} active", w.active_runs());
        e.signal(waiting.id(), "approve", &1u32).await.unwrap();
        assert_eq!(waiting.result_timeout(WAIT).await.unwrap(), [Some(1)]);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_retried_send_with_one_idempotency_key_is_a_no_op(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let h = e.start::<Waits>(vec![Wait::Recv("pay".into()), Wait::Within("pay".into(), 0)]).await.unwrap();
        let key = SignalOptions::new().idempotency_key("webhook-42");
        assert!(matches!(e.signal_with(h.id(), "pay", &5u32, key.clone()).await.unwrap(), SignalSent::Accepted { .. }));
        assert_eq!(e.signal_with(h.id(), "pay", &6u32, key).await.unwrap(), SignalSent::Duplicate);
        let w = worker(&e, Waits::default()).start().await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), [Some(5), None], "the retry delivered nothing");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_thousand_signals_to_one_run_arrive_once_each_in_order(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let w = worker(&e, Waits::default()).start().await.unwrap();
        let h = e.start::<Waits>((0..1_000).map(|_| Wait::Recv("n".into())).collect()).await.unwrap();
        for i in 0..1_000u32 {
            e.signal(h.id(), "n", &i).await.unwrap();
        }
        let got = h.result_timeout(Duration::from_secs(120)).await.unwrap();
        assert_eq!(got, (0..1_000).map(Some).collect::<Vec<_>>());
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_timeout_fires_once_and_a_signal_after_it_stays_buffered(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let w = worker(&e, Waits::default()).start().await.unwrap();
        let plan = vec![Wait::Within("late".into(), 1_000), Wait::Recv("late".into())];
        let h = e.start::<Waits>(plan).await.unwrap();
        until(&e, h.id(), "parks in the timed wait", |r| parked(r) && r.due_at == Some(T0 + 1_000)).await;
        clock.advance(Duration::from_secs(2));
        // Timed out: now parked in the second, untimed receive.
        until(&e, h.id(), "parks in the second wait", |r| parked(r) && r.due_at.is_none()).await;
        e.signal(h.id(), "late", &9u32).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), [None, Some(9)], "the late signal went to the next receive");
        let steps = e.steps(h.id()).await.unwrap();
        assert_eq!(steps.len(), 2, "one record per receive: the timeout recorded once");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_select_takes_the_first_signal_sent_and_replays_the_same_branch(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let h = e.start::<Choose>(60_000).await.unwrap();
        // Sent before the wait: the older one wins; the other stays buffered.
        e.signal(h.id(), "reject", &"over budget".to_owned()).await.unwrap();
        e.signal(h.id(), "approve", &"ana".to_owned()).await.unwrap();
        e.signal(h.id(), "unrelated", &"x".to_owned()).await.unwrap();
        let w = Worker::builder(&e).register(Choose).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "rejected: over budget");
        let steps = e.steps(h.id()).await.unwrap();
        assert_eq!(steps[0].step_name, "signal:reject", "the branch taken is recorded");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_select_that_times_out_escalates_once(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = engine(&db, &clock).await;
        let w = Worker::builder(&e).register(Choose).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        let h = e.start::<Choose>(1_000).await.unwrap();
        until(&e, h.id(), "parks in the select", |r| parked(r) && r.due_at == Some(T0 + 1_000)).await;
        clock.advance(Duration::from_secs(2));
        until(&e, h.id(), "sleeps after the select", |r| parked(r) && r.due_at.is_some_and(|d| d > T0 + 2_000)).await;
        e.signal(h.id(), "approve", &"too late".to_owned()).await.unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "escalated", "the late approval changed nothing");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn signals_to_unknown_or_ended_runs_are_clear_errors(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let nobody = ExecutionId::generate(0);
        assert!(matches!(e.signal(&nobody, "x", &1u32).await.unwrap_err(), Error::NotFound(id) if id == nobody));
        let w = worker(&e, Waits::default()).start().await.unwrap();
        let h = e.start::<Waits>(vec![]).await.unwrap();
        h.result_timeout(WAIT).await.unwrap();
        let err = e.signal(h.id(), "x", &1u32).await.unwrap_err();
        // The same variant a result of an ended run answers, not a store type.
        assert!(matches!(&err, Error::RunEnded { execution, status: ExecutionStatus::Completed, .. } if execution == h.id()), "{err}");
        assert!(err.to_string().contains("takes no more signals"), "{err}");
        assert!(matches!(e.signal(h.id(), "bad name", &1u32).await.unwrap_err(), Error::Config(_)));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_replay_waiting_for_another_signal_is_non_determinism_naming_both(db: TestDb) {
        let e = engine(&db, &Clock::system()).await;
        let flow = Waits::default();
        let w = worker(&e, flow.clone()).start().await.unwrap();
        let h = e.start::<Waits>(vec![Wait::Switch("approve".into(), "reject".into())]).await.unwrap();
        until(&e, h.id(), "parks", parked).await;
        flow.switch.store(true, Ordering::SeqCst);
        e.signal(h.id(), "approve", &1u32).await.unwrap();
        let done = until(&e, h.id(), "is suspended", |r| r.status == ExecutionStatus::Suspended).await;
        let err = done.error.unwrap();
        assert!(err.contains("signal:approve") && err.contains("signal:reject"), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_cancel_accepted_while_a_step_runs_ends_the_run_instead_of_its_wait(db: TestDb) {
        // The cancel is accepted while `work` runs (the step ends only after
        // it), so it is not the cancel of a parked run. The worker hears it
        // from its engine at once; the park's own check, for a cancel no
        // channel delivered, is pinned in `cancel_lands.rs`
        // (`a_run_parked_after_an_accepted_cancel_it_never_heard_…`).
        let e = Engine::builder().store(db.store().await).namespace("signals").build().await.unwrap();
        // Heartbeats (which also carry a cancel to a running run) far apart.
        let w = Worker::builder(&e)
            .register(WorkThenWait)
            .poll_interval(Duration::from_millis(20))
            .heartbeat_interval(Duration::from_secs(20))
            .lease_ttl(Duration::from_secs(60))
            .start()
            .await
            .unwrap();
        for signal in [true, false] {
            let h = e.start::<WorkThenWait>(signal).await.unwrap();
            let id = h.id().to_string();
            until(&e, h.id(), "runs its step", |_| IN_WORK.lock().unwrap().contains(&id)).await;
            // Accepted while the step runs; the step ends only afterwards.
            assert_eq!(e.cancel(h.id()).await.unwrap(), hydra_runtime::CancelOutcome::Requested);
            WORK_OPEN.lock().unwrap().push(id);
            let err = h.result_timeout(WAIT).await.unwrap_err();
            assert!(
                matches!(err, Error::RunEnded { status: ExecutionStatus::Cancelled, .. }),
                "waiting for a signal: {signal}: {err}"
            );
        }
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_select_of_one_name_replays_its_branch(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("signals").build().await.unwrap();
        let w = Worker::builder(&e).register(SelectOne).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        let h = e.start::<SelectOne>(()).await.unwrap();
        until(&e, h.id(), "parks in the select", |r| r.status == ExecutionStatus::Sleeping).await;
        e.signal(h.id(), "go", &5u32).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 5, "the replay after the sleep takes the same branch");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
