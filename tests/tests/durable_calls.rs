//! Every durable call has one shape (`hydra-runtime/src/context/call.rs`):
//! it takes its place in the run before it awaits anything, so calls
//! joined in one future keep the order of the source, on the first run
//! and on every replay; a call that parks the run while a sibling holds
//! the open step leaves the sibling's attempt counted; and a call parks the
//! run only once no sibling step's body is in flight, so no body runs
//! twice without a crash (guarantee 4).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, Execution};
use hydra_tests::flow::Probe;
use hydra_tests::{TestDb, both_backends};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
const WAIT: Duration = Duration::from_secs(30);

async fn engine(db: &TestDb, clock: &Clock) -> Engine {
    Engine::builder().store(db.store().await).namespace("calls").clock(clock.clone()).build().await.unwrap()
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

/// An event, a search attribute and a step joined, then a sleep: the wake
/// replays the join from the history.
#[derive(Clone)]
struct Joined(Arc<AtomicU32>);

impl Workflow for Joined {
    const NAME: &'static str = "joined";
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        let bodies = Arc::clone(&self.0);
        let event = ctx.set_event("e", &1u32);
        let search = ctx.set_search_attribute("k", "v");
        let step = ctx.step("s", move |_| {
            let bodies = Arc::clone(&bodies);
            async move {
                bodies.fetch_add(1, Ordering::SeqCst);
                Ok::<_, StepError>(7u32)
            }
        });
        let (event, search, step) = tokio::join!(biased; event, search, step);
        event?;
        search?;
        let v = step?;
        ctx.sleep(Duration::from_secs(10)).await;
        Ok(v)
    }
}

/// Two steps at once: `slow` (position 0) waits on gate `g`; `flaky`
/// (position 1) fails its first attempt with a backoff too long to wait
/// in process, so it parks the run, once `slow`'s body is recorded.
#[derive(Clone)]
struct ParkBeside {
    probe: Arc<Probe>,
    flaky: Arc<AtomicU32>,
}

impl Workflow for ParkBeside {
    const NAME: &'static str = "park_beside";
    type Input = ();
    type Output = (u32, u32);

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(u32, u32), WorkflowError> {
        let probe = Arc::clone(&self.probe);
        let slow = ctx.step_with(StepOptions::new("slow").retry(RetryPolicy::attempts(5)), move |s| {
            let probe = Arc::clone(&probe);
            async move {
                probe.wait_gate("g").await;
                Ok::<_, StepError>(s.attempt())
            }
        });
        let calls = Arc::clone(&self.flaky);
        let retry = RetryPolicy::attempts(5).initial(Duration::from_secs(20)).jitter(0.0);
        let flaky = ctx.step_with(StepOptions::new("flaky").retry(retry), move |s| {
            let calls = Arc::clone(&calls);
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(StepError::retryable("the first attempt fails"));
                }
                Ok::<_, StepError>(s.attempt())
            }
        });
        let (slow, flaky) = tokio::join!(biased; slow, flaky);
        Ok((slow?, flaky?))
    }
}

/// An email sent while the run waits for approval, joined: the wait finds
/// no signal and would park while the email's body is still running.
#[derive(Clone)]
struct EmailAndApproval {
    probe: Arc<Probe>,
    bodies: Arc<AtomicU32>,
}

impl Workflow for EmailAndApproval {
    const NAME: &'static str = "email_and_approval";
    type Input = ();
    type Output = bool;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<bool, WorkflowError> {
        let (probe, bodies) = (Arc::clone(&self.probe), Arc::clone(&self.bodies));
        let email = ctx.step_with(StepOptions::new("email").retry(RetryPolicy::attempts(1)), move |_| {
            let (probe, bodies) = (Arc::clone(&probe), Arc::clone(&bodies));
            async move {
                bodies.fetch_add(1, Ordering::SeqCst);
                probe.wait_gate("sent").await;
                Ok::<_, StepError>(())
            }
        });
        let approval = ctx.recv::<bool>("approval");
        let (email, approval) = tokio::join!(email, approval);
        email?;
        Ok(approval?)
    }
}

/// The wait first, then the email, joined: the wait finds nothing and
/// parks while the email's attempt is being admitted.
#[derive(Clone)]
struct ApprovalThenEmail {
    probe: Arc<Probe>,
    bodies: Arc<AtomicU32>,
}

impl Workflow for ApprovalThenEmail {
    const NAME: &'static str = "approval_then_email";
    type Input = ();
    type Output = bool;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<bool, WorkflowError> {
        let (probe, bodies) = (Arc::clone(&self.probe), Arc::clone(&self.bodies));
        let approval = ctx.recv::<bool>("approval");
        let email = ctx.step_with(StepOptions::new("email").retry(RetryPolicy::attempts(1)), move |_| {
            let (probe, bodies) = (Arc::clone(&probe), Arc::clone(&bodies));
            async move {
                bodies.fetch_add(1, Ordering::SeqCst);
                probe.wait_gate("sent").await;
                Ok::<_, StepError>(())
            }
        });
        let (approval, email) = tokio::join!(approval, email);
        email?;
        Ok(approval?)
    }
}

/// A step that runs until the wait beside it took its signal (a "stop
/// this with a signal" pattern): the signal is there already.
#[derive(Clone)]
struct StopWithSignal(Arc<Probe>);

impl Workflow for StopWithSignal {
    const NAME: &'static str = "stop_with_signal";
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        let probe = Arc::clone(&self.0);
        let work = ctx.step("work", move |_| {
            let probe = Arc::clone(&probe);
            async move {
                probe.wait_gate("stop").await;
                Ok::<_, StepError>(())
            }
        });
        let stop = async {
            let v = ctx.recv::<u32>("stop").await;
            self.0.open("stop");
            v
        };
        let (work, stop) = tokio::join!(work, stop);
        work?;
        Ok(stop?)
    }
}

/// A sleep inside a step's body: it would wait for that body for ever.
struct SleepInBody;

impl Workflow for SleepInBody {
    const NAME: &'static str = "sleep_in_body";
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        let inner = ctx.clone();
        ctx.step("outer", move |_| {
            let inner = inner.clone();
            async move {
                inner.sleep(Duration::from_secs(1)).await;
                Ok::<_, StepError>(())
            }
        })
        .await?;
        Ok(())
    }
}

both_backends! {
    async fn a_wait_joined_before_a_step_does_not_park_while_the_step_begins(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine = engine(&db, &clock).await;
        let probe = Arc::new(Probe::default());
        let bodies = Arc::new(AtomicU32::new(0));
        let worker = Worker::builder(&engine)
            .register(ApprovalThenEmail { probe: Arc::clone(&probe), bodies: Arc::clone(&bodies) })
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        probe.open("sent");
        let h = engine.start::<ApprovalThenEmail>(()).await.unwrap();
        until_status(&engine, h.id(), ExecutionStatus::Sleeping).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        engine.signal(h.id(), "approval", &true).await.unwrap();
        assert!(tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap());
        assert_eq!(bodies.load(Ordering::SeqCst), 1, "the email was sent twice");
        worker.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_buffered_signal_reaches_a_wait_joined_beside_a_running_step(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine = engine(&db, &clock).await;
        let probe = Arc::new(Probe::default());
        let h = engine.start::<StopWithSignal>(()).await.unwrap();
        engine.signal(h.id(), "stop", &5u32).await.unwrap();
        let worker = Worker::builder(&engine)
            .register(StopWithSignal(Arc::clone(&probe)))
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let out = tokio::time::timeout(WAIT, h.result()).await.expect("the run waited for itself").unwrap();
        assert_eq!(out, 5);
        worker.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_durable_call_that_parks_inside_a_step_body_fails_the_run_saying_so(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine = engine(&db, &clock).await;
        let worker = Worker::builder(&engine)
            .register(SleepInBody)
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let h = engine.start::<SleepInBody>(()).await.unwrap();
        let err = tokio::time::timeout(WAIT, h.result()).await.expect("the run waited for itself").unwrap_err();
        assert!(err.to_string().contains("inside a step's body"), "{err}");
        worker.shutdown(Duration::from_secs(5)).await;
    }

    async fn calls_joined_in_one_future_take_the_positions_of_the_source_order_and_replay_them(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine = engine(&db, &clock).await;
        let bodies = Arc::new(AtomicU32::new(0));
        let worker = Worker::builder(&engine)
            .register(Joined(Arc::clone(&bodies)))
            .poll_interval(Duration::from_millis(50))
            .start()
            .await
            .unwrap();
        let h = engine.start::<Joined>(()).await.unwrap();
        let id = h.id().clone();
        until_status(&engine, &id, ExecutionStatus::Sleeping).await;
        let bases = |steps: &[hydra_runtime::RecordedStep]| {
            let mut by_position: Vec<(u32, String)> =
                steps.iter().map(|s| (s.position, s.step_id.base().to_owned())).collect();
            by_position.sort();
            by_position.into_iter().map(|(_, b)| b).collect::<Vec<_>>()
        };
        let first = bases(&engine.steps(&id).await.unwrap());
        assert_eq!(first[..3], ["event:e", "search:k", "s"], "the joined calls took positions out of source order");
        assert_eq!(first.len(), 4, "one sleep after the join: {first:?}");
        // The wake replays the join from the history: same positions, no
        // new record, the step's body not run again.
        clock.advance(Duration::from_secs(11));
        let out = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        assert_eq!(out, 7);
        assert_eq!(bases(&engine.steps(&id).await.unwrap()), first, "the replay recorded something new");
        assert_eq!(bodies.load(Ordering::SeqCst), 1, "a replayed step's body ran again");
        worker.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_that_parks_the_run_beside_a_running_sibling_waits_for_its_body_and_counts_both(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine = engine(&db, &clock).await;
        let probe = Arc::new(Probe::default());
        let flaky = Arc::new(AtomicU32::new(0));
        let wf = ParkBeside { probe: Arc::clone(&probe), flaky: Arc::clone(&flaky) };
        let worker = Worker::builder(&engine)
            .register(wf)
            .poll_interval(Duration::from_millis(50))
            .inline_backoff(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        let h = engine.start::<ParkBeside>(()).await.unwrap();
        let id = h.id().clone();
        // `flaky` failed once and would park the run for its 20 s backoff
        // while `slow` is still running: the park waits for `slow`.
        tokio::time::timeout(WAIT, async {
            while flaky.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(engine.get(&id).await.unwrap().unwrap().status, ExecutionStatus::Running, "parked beside a body");
        probe.open("g");
        until_status(&engine, &id, ExecutionStatus::Sleeping).await;
        clock.advance(Duration::from_secs(21));
        let (slow, flaky_attempt) = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        // `slow` ran once, its result recorded before the park; `flaky`'s
        // failed attempt stays counted, so it succeeds on its second.
        assert_eq!(slow, 1, "slow's body ran again after the park");
        assert_eq!(flaky_attempt, 2, "flaky's failed attempt was not counted");
        let steps = engine.steps(&id).await.unwrap();
        let attempts = |base: &str| steps.iter().find(|s| s.step_id.base() == base).map(|s| s.attempts);
        assert_eq!(attempts("slow"), Some(1));
        assert_eq!(attempts("flaky"), Some(2));
        let run = engine.get(&id).await.unwrap().unwrap();
        assert_eq!(run.status, ExecutionStatus::Completed);
        assert_eq!(run.attempts, 1, "a park is not a workflow retry");
        worker.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_wait_beside_a_running_step_parks_only_after_its_body_is_recorded(db: TestDb) {
        let clock = Clock::manual(T0);
        let engine = engine(&db, &clock).await;
        let probe = Arc::new(Probe::default());
        let bodies = Arc::new(AtomicU32::new(0));
        let worker = Worker::builder(&engine)
            .register(EmailAndApproval { probe: Arc::clone(&probe), bodies: Arc::clone(&bodies) })
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let h = engine.start::<EmailAndApproval>(()).await.unwrap();
        tokio::time::timeout(WAIT, async {
            while bodies.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // Time for the wait to park the run, were it allowed to.
        tokio::time::sleep(Duration::from_millis(300)).await;
        probe.open("sent");
        until_status(&engine, h.id(), ExecutionStatus::Sleeping).await;
        engine.signal(h.id(), "approval", &true).await.unwrap();
        let approved = tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap();
        assert!(approved);
        assert_eq!(bodies.load(Ordering::SeqCst), 1, "the email was sent twice without a crash");
        worker.shutdown(Duration::from_secs(5)).await;
    }
}
