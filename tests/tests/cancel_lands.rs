//! A cancel always lands (guarantee 18): a cancel answered `Requested`
//! ends the run `cancelled`, compensated, even when its body returns
//! before it hears of it; a run whose end committed first answers
//! `AlreadyEnded`; never both. The worker holding the run hears the cancel
//! at once, from its own engine and from another process, long before its
//! next lease renewal. A parent that ended on its own leaves its children
//! running when it is cancelled afterwards.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{CancelOutcome, Compensation, Execution};
use hydra_store::{Checkpoint, ClaimRequest, NewExecution, StoreError, Terminal, Transition, WorkerId};
use hydra_tests::flow::Probe;
use hydra_tests::{TestDb, both_backends};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Far longer than any wait of these tests: a cancel heard only at a
/// renewal would come too late.
const HEARTBEAT: Duration = Duration::from_secs(120);

async fn engine(db: &TestDb) -> Engine {
    Engine::builder().store(db.store().await).namespace("lands").build().await.unwrap()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
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

/// What the runs of a test saw.
#[derive(Default)]
struct Seen {
    /// Charge bodies entered.
    entered: AtomicU32,
    /// Charge bodies that saw the cancel while they ran.
    heard: AtomicU32,
    /// Refunds run.
    refunds: AtomicU32,
}

/// Charges (a step that waits for gate `input`, or for the cancel), books
/// its refund, optionally waits for signal `go`, and returns.
#[derive(Clone)]
struct Pay {
    probe: Arc<Probe>,
    seen: Arc<Seen>,
}

impl Workflow for Pay {
    const NAME: &'static str = "pay";
    /// The gate the charge waits for, and whether the run then waits for
    /// signal `go`.
    type Input = (String, bool);
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, (gate, wait): (String, bool)) -> Result<(), WorkflowError> {
        let (probe, seen) = (Arc::clone(&self.probe), Arc::clone(&self.seen));
        ctx.step("charge", move |s| {
            let (probe, seen, gate) = (Arc::clone(&probe), Arc::clone(&seen), gate.clone());
            async move {
                seen.entered.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    () = s.cancelled() => {
                        seen.heard.fetch_add(1, Ordering::SeqCst);
                    }
                    () = probe.wait_gate(&gate) => {}
                }
                Ok::<_, StepError>(())
            }
        })
        .await?;
        let seen = Arc::clone(&self.seen);
        ctx.compensate(Compensation::new("refund", move |ctx| async move {
            ctx.step("refund", move |_| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.refunds.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, StepError>(())
                }
            })
            .await?;
            Ok(())
        }));
        if wait {
            let () = ctx.recv("go").await?;
        }
        Ok(())
    }
}

async fn worker(engine: &Engine, probe: &Arc<Probe>, seen: &Arc<Seen>) -> Worker {
    Worker::builder(engine)
        .register(Pay { probe: Arc::clone(probe), seen: Arc::clone(seen) })
        .concurrency(64)
        .poll_interval(Duration::from_millis(20))
        .heartbeat_interval(HEARTBEAT)
        .lease_ttl(HEARTBEAT * 3)
        .start()
        .await
        .unwrap()
}

/// A run cancelled while its charge waits: its body hears it before any
/// renewal, and it ends cancelled, refunded once.
async fn heard_at_once(db: &TestDb, from_another_process: bool) {
    let e1 = engine(db).await;
    let e2 = engine(db).await;
    let (probe, seen) = (Arc::new(Probe::default()), Arc::new(Seen::default()));
    let w = worker(&e1, &probe, &seen).await;
    let h = e1.start::<Pay>(("never".into(), false)).await.unwrap();
    until("the charge to begin", || seen.entered.load(Ordering::SeqCst) == 1).await;
    let canceller = if from_another_process { &e2 } else { &e1 };
    assert_eq!(canceller.cancel(h.id()).await.unwrap(), CancelOutcome::Requested);
    until("the charge's body to hear the cancel (not at a renewal, minutes away)", || {
        seen.heard.load(Ordering::SeqCst) == 1
    })
    .await;
    let done = until_ended(&e1, h.id()).await;
    assert_eq!(done.status, ExecutionStatus::Cancelled, "{:?}", done.error);
    assert_eq!(seen.refunds.load(Ordering::SeqCst), 1);
    w.shutdown(Duration::from_secs(5)).await;
}

/// Many runs, each cancelled while, or just after, it finishes: for each,
/// the cancel's answer and the run's end agree.
async fn cancels_race_ends(db: &TestDb, from_another_process: bool, signal: bool) {
    const RUNS: u32 = 24;
    let e1 = engine(db).await;
    let e2 = engine(db).await;
    let (probe, seen) = (Arc::new(Probe::default()), Arc::new(Seen::default()));
    let w = worker(&e1, &probe, &seen).await;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let gate = format!("g{i}");
        runs.push((gate.clone(), e1.start::<Pay>((gate, signal)).await.unwrap()));
    }
    until("every charge to begin", || seen.entered.load(Ordering::SeqCst) == RUNS).await;
    let canceller = if from_another_process { e2.clone() } else { e1.clone() };
    let mut answers = Vec::new();
    for (i, (gate, h)) in runs.iter().enumerate() {
        // The run finishes (its gate opens, or its signal comes) and the
        // cancel is sent at once, or a little later, racing its end.
        if signal {
            probe.open(gate);
            let sender = e1.clone();
            let id = h.id().clone();
            let send = tokio::spawn(async move { sender.signal(&id, "go", &()).await.unwrap() });
            if i % 3 == 1 {
                tokio::time::sleep(Duration::from_micros(300 * i as u64)).await;
            }
            answers.push(canceller.cancel(h.id()).await.unwrap());
            send.await.unwrap();
        } else {
            probe.open(gate);
            if i % 3 == 1 {
                tokio::time::sleep(Duration::from_micros(300 * i as u64)).await;
            }
            answers.push(canceller.cancel(h.id()).await.unwrap());
        }
    }
    let mut cancelled = 0;
    for ((_, h), answer) in runs.iter().zip(&answers) {
        let done = until_ended(&e1, h.id()).await;
        match answer {
            CancelOutcome::Requested | CancelOutcome::Cancelled => {
                cancelled += 1;
                assert_eq!(
                    done.status,
                    ExecutionStatus::Cancelled,
                    "the cancel answered {answer:?}, the run ended {} ({:?})",
                    done.status,
                    done.error
                );
            }
            CancelOutcome::AlreadyEnded(status) => {
                assert_eq!(done.status, *status);
                assert_eq!(done.status, ExecutionStatus::Completed);
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // Every cancelled run was charged, so each is refunded exactly once;
    // a completed one never.
    assert_eq!(seen.refunds.load(Ordering::SeqCst), cancelled, "refunds vs cancelled runs");
    w.shutdown(Duration::from_secs(5)).await;
}

/// A child that waits for a signal that never comes.
#[derive(Clone)]
struct Waits;

impl Workflow for Waits {
    const NAME: &'static str = "waits";
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        let () = ctx.recv("never").await?;
        Ok(())
    }
}

/// Starts a `Waits` child and ends without waiting for it.
#[derive(Clone)]
struct Leaves;

impl Workflow for Leaves {
    const NAME: &'static str = "leaves";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        let child = ctx.start_child::<Waits>(()).await?;
        Ok(child.id().to_string())
    }
}

both_backends! {
    async fn a_cancel_from_another_process_is_heard_by_the_running_body_at_once(db: TestDb) {
        heard_at_once(&db, true).await;
    }

    async fn a_cancel_from_the_workers_own_engine_is_heard_by_the_running_body_at_once(db: TestDb) {
        heard_at_once(&db, false).await;
    }

    async fn a_cancel_racing_a_runs_completion_is_never_dropped_in_process(db: TestDb) {
        cancels_race_ends(&db, false, false).await;
    }

    async fn a_cancel_racing_a_runs_completion_is_never_dropped_from_another_process(db: TestDb) {
        cancels_race_ends(&db, true, false).await;
    }

    async fn a_cancel_racing_a_signal_that_completes_the_run_is_never_dropped(db: TestDb) {
        cancels_race_ends(&db, true, true).await;
    }

    async fn an_end_written_after_an_accepted_cancel_is_refused_and_either_wins_never_both(db: TestDb) {
        // The store's side, with no worker: a run's end is conditional on
        // no cancel having been accepted, in one statement.
        let store = db.store().await;
        let other = db.store().await;
        let w = WorkerId::from_string("w");
        let mut both = Vec::new();
        for round in 0..60i64 {
            let id = ExecutionId::generate(1_000 + round);
            store.create_execution(NewExecution::new(id.clone(), "lands", "pay", vec![1], 1_000)).await.unwrap();
            let req = ClaimRequest::new("lands", vec!["pay".to_owned()], w.clone(), 1_000, 3_600_000, 1);
            let lease = store.claim(&req).await.unwrap().pop().unwrap().lease;
            let end = Checkpoint::transition(Transition::Finish(Terminal::Completed(vec![2]))).unless_cancel_requested();
            let (ended, cancelled) = if round == 0 {
                // In order: the cancel first, then the end.
                let c = other.request_cancel("lands", &id, 2_000).await.unwrap();
                (store.checkpoint(&lease, end, 2_000).await, c)
            } else {
                let (ended, c) =
                    tokio::join!(store.checkpoint(&lease, end, 2_000), other.request_cancel("lands", &id, 2_000));
                (ended, c.unwrap())
            };
            let row = store.get_execution("lands", &id).await.unwrap().unwrap();
            match (&ended, &cancelled) {
                (Ok(()), CancelOutcome::AlreadyEnded(_)) => assert_eq!(row.status, ExecutionStatus::Completed),
                (Err(StoreError::CancelRequested { .. }), CancelOutcome::Requested) => {
                    assert_eq!(row.status, ExecutionStatus::Running, "a refused end wrote nothing");
                    assert!(row.cancel_requested);
                }
                _ => both.push((round, format!("{ended:?}"), cancelled, row.status)),
            }
        }
        assert!(both.is_empty(), "the end and the cancel both won: {both:?}");
    }

    async fn a_run_parked_after_an_accepted_cancel_it_never_heard_is_due_at_once(db: TestDb) {
        // The store's side, with no worker: whatever channel should have
        // told the run of the cancel (its engine, a notification, a
        // heartbeat) failed, and the run parks for an hour. The park itself
        // makes it due now, so its next claim ends it cancelled; a retry's
        // park likewise.
        let store = db.store().await;
        let other = db.store().await;
        let w = WorkerId::from_string("w");
        let hour = 3_600_000;
        for (round, park) in [
            Transition::Sleep { until: 2_000 + hour },
            Transition::Retry { at: 2_000 + hour, error: "again".into() },
        ]
        .into_iter()
        .enumerate()
        {
            let id = ExecutionId::generate(1_000 + round as i64);
            store.create_execution(NewExecution::new(id.clone(), "lands", "pay", vec![1], 1_000)).await.unwrap();
            let req = ClaimRequest::new("lands", vec!["pay".to_owned()], w.clone(), 1_000, hour, 1);
            let lease = store.claim(&req).await.unwrap().pop().unwrap().lease;
            assert_eq!(other.request_cancel("lands", &id, 1_500).await.unwrap(), CancelOutcome::Requested);
            store.checkpoint(&lease, Checkpoint::transition(park.clone()), 2_000).await.unwrap();
            let row = store.get_execution("lands", &id).await.unwrap().unwrap();
            assert_eq!(row.due_at, Some(2_000), "{park:?} with a cancel accepted is due at once");
            let req = ClaimRequest::new("lands", vec!["pay".to_owned()], w.clone(), 2_000, hour, 1);
            let again = store.claim(&req).await.unwrap();
            assert_eq!(again.len(), 1, "{park:?}: the next claim takes it up to end it");
            assert!(again[0].execution.cancel_requested);
        }
    }

    async fn cancelling_a_parent_that_ended_on_its_own_leaves_its_children_running(db: TestDb) {
        let e = engine(&db).await;
        let w = Worker::builder(&e)
            .register(Leaves)
            .register(Waits)
            .poll_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        let h = e.start::<Leaves>(()).await.unwrap();
        let child = ExecutionId::from_string(tokio::time::timeout(WAIT, h.result()).await.unwrap().unwrap());
        let answer = e.cancel(h.id()).await.unwrap();
        assert_eq!(answer, CancelOutcome::AlreadyEnded(ExecutionStatus::Completed));
        let child = e.get(&child).await.unwrap().unwrap();
        assert!(!child.status.is_terminal() && !child.cancel_requested, "the child was cancelled: {child:?}");
        w.shutdown(Duration::from_secs(5)).await;
    }
}
