//! Compensation (sagas) and worker state: a failure at each position runs
//! exactly the compensations registered before it, newest first; a cancel
//! during a step, a sleep or a signal wait runs them too, as does a
//! timeout; a compensation that fails ends the run `compensation_failed`
//! (the others still run); steps take the worker's state, and a worker
//! without a state its workflows need refuses to start.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{CancelOutcome, Compensation, Execution};
use hydra_tests::{TestDb, both_backends};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Runs whose first pass failed already (`Plan::fail_once_after`).
static FAILED_ONCE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn first_failure(id: &ExecutionId) -> bool {
    let mut seen = FAILED_ONCE.lock().unwrap();
    let first = !seen.contains(&id.to_string());
    if first {
        seen.push(id.to_string());
    }
    first
}

/// The runs whose body saw `ctx.is_cancelled()` after the `Work` step
/// (by run: test instances run at once).
static SAW_CANCEL: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// What the steps did, in order (the worker's state).
#[derive(Default)]
struct Ledger(Mutex<Vec<String>>);

impl Ledger {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What the trip does after its bookings.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Then {
    Done,
    /// A step of this many ms (cancelled while it runs).
    Work(u64),
    /// A durable sleep of an hour.
    Sleep,
    /// A wait for signal `go`.
    Wait,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    bookings: u32,
    /// The booking that fails for good, if any.
    fail_at: Option<u32>,
    /// The undo that fails for good, if any.
    undo_fails: Option<u32>,
    /// Undos fail their first attempt and retry after a backoff that parks
    /// the run.
    undo_parks: bool,
    /// The first pass of the body fails for good after this booking; a
    /// replay goes on past it (as code that changed would).
    fail_once_after: Option<u32>,
    /// A replay calls a step the first pass did not (a deploy that changed
    /// the code): non-determinism.
    diverge: bool,
    then: Then,
}

#[step(retry(max_attempts = 1))]
async fn book(ledger: State<Ledger>, i: u32, fail: bool) -> Result<u32, StepError> {
    if fail {
        return Err(StepError::permanent(format!("booking {i} refused")));
    }
    ledger.push(format!("book {i}"));
    Ok(i)
}

#[step(retry(max_attempts = 2, initial = "1ms"))]
async fn unbook(ledger: State<Ledger>, i: u32, fail: bool) -> Result<(), StepError> {
    if fail {
        return Err(StepError::permanent(format!("undo {i} refused")));
    }
    ledger.push(format!("unbook {i}"));
    Ok(())
}

/// An undo whose first attempt fails; its retry is 300 ms later (the worker
/// parks the run for it).
#[step(id = "unbook-later", retry(max_attempts = 3, initial = "300ms", max = "300ms", jitter = 0.0))]
async fn unbook_later(s: StepContext, ledger: State<Ledger>, i: u32) -> Result<(), StepError> {
    if s.attempt() == 1 {
        return Err(StepError::retryable(format!("undo {i}: try again")));
    }
    ledger.push(format!("unbook {i}"));
    Ok(())
}

#[step(retry(max_attempts = 1))]
async fn work(s: StepContext, ms: u64) -> Result<(), StepError> {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        _ = s.cancelled() => {}
    }
    Ok(())
}

#[workflow(timeout = "1h")]
async fn trip(ctx: WorkflowContext, plan: Plan) -> Result<u32, WorkflowError> {
    for i in 0..plan.bookings {
        book(&ctx, i, plan.fail_at == Some(i)).await?;
        if plan.undo_parks {
            ctx.compensate(unbook_later::later(i));
        } else {
            ctx.compensate(unbook::later(i, plan.undo_fails == Some(i)));
        }
        if plan.fail_once_after == Some(i) && first_failure(ctx.execution_id()) {
            return Err(WorkflowError::permanent("the first pass fails"));
        }
    }
    if plan.diverge && !first_failure(ctx.execution_id()) {
        book(&ctx, 99, false).await?;
    }
    match plan.then {
        Then::Done => {}
        Then::Work(ms) => {
            work(&ctx, ms).await?;
            // The cancel reached the step (its body stopped early): the
            // body sees it here, between steps.
            if ctx.is_cancelled() {
                SAW_CANCEL.lock().unwrap().push(ctx.execution_id().to_string());
            }
        }
        Then::Sleep => ctx.sleep(Duration::from_secs(3600)).await,
        Then::Wait => {
            ctx.recv::<u32>("go").await?;
        }
    }
    Ok(plan.bookings)
}

/// An undo with attempts to spare.
#[step(retry(max_attempts = 10, initial = "1ms"))]
async fn release(ledger: State<Ledger>, i: u32) -> Result<(), StepError> {
    ledger.push(format!("release {i}"));
    Ok(())
}

/// A step that fails for good (its body runs once).
#[step(retry(max_attempts = 3))]
async fn decline(ledger: State<Ledger>) -> Result<(), StepError> {
    ledger.push("decline".to_owned());
    Err(StepError::permanent("declined for good"))
}

/// Books `n`, registering each undo, then a step that fails for good
/// (`fail`) or `work`; two workflow attempts.
#[workflow(name = "refused-trip", retry(max_attempts = 2, initial = "1ms"))]
async fn refused_trip(ctx: WorkflowContext, plan: (u32, bool)) -> Result<u32, WorkflowError> {
    let (n, fail) = plan;
    for i in 0..n {
        book(&ctx, i, false).await?;
        ctx.compensate(release::later(i));
    }
    if fail {
        decline(&ctx).await?;
    }
    work(&ctx, 1).await?;
    Ok(n)
}

/// Makes the database refuse every write of step `name`'s rows (a trigger:
/// an error that is neither transient nor one of Hydra's refusals, like a
/// statement timeout or a full disk), or (`on = false`) stop refusing.
async fn refuse_step_rows(db: &TestDb, e: &Engine, name: &str, on: bool) {
    let c = e.connection();
    let sql: Vec<String> = match (db.kind, on) {
        (hydra_tests::DbKind::Sqlite, true) => ["INSERT", "UPDATE"]
            .iter()
            .map(|op| {
                format!(
                    "CREATE TRIGGER refuse_{op} BEFORE {op} ON workflow_steps WHEN NEW.step_name = '{name}' \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            })
            .collect(),
        (hydra_tests::DbKind::Sqlite, false) => {
            vec!["DROP TRIGGER refuse_INSERT".into(), "DROP TRIGGER refuse_UPDATE".into()]
        }
        (hydra_tests::DbKind::Postgres, true) => vec![
            format!(
                "CREATE FUNCTION refuse_step() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
                 IF NEW.step_name = '{name}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $f$"
            ),
            "CREATE TRIGGER refuse_step BEFORE INSERT OR UPDATE ON workflow_steps FOR EACH ROW \
             EXECUTE FUNCTION refuse_step()"
                .into(),
        ],
        (hydra_tests::DbKind::Postgres, false) => vec!["DROP TRIGGER refuse_step ON workflow_steps".into()],
    };
    for statement in sql {
        hydra_runtime::sea_orm::ConnectionTrait::execute_unprepared(c, &statement).await.unwrap();
    }
}

/// A hand-written workflow whose step takes state through its context, and
/// says so.
struct Audit;

impl Workflow for Audit {
    const NAME: &'static str = "audit";
    type Input = ();
    type Output = usize;

    fn required_state() -> Vec<hydra_runtime::StateNeed> {
        vec![hydra_runtime::StateNeed::of::<Ledger>()]
    }

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<usize, WorkflowError> {
        let n = ctx
            .step("count", |s| async move {
                let ledger = s.state::<Ledger>()?;
                Ok::<_, StepError>(ledger.0.lock().map(|l| l.len()).unwrap_or(0))
            })
            .await?;
        ctx.compensate(Compensation::new("never", |_ctx| async { Ok(()) }));
        Ok(n)
    }
}

/// The runs whose [`ApprovedUndo`] compensation began, once per beginning
/// (replays count).
static UNDO_WAITS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn undo_waits(id: &ExecutionId) -> usize {
    UNDO_WAITS.lock().unwrap().iter().filter(|r| **r == id.to_string()).count()
}

/// A run whose compensation waits for signal `undo-ok` (no timeout of its
/// own), and whose body sleeps past the run's deadline.
struct ApprovedUndo;

impl Workflow for ApprovedUndo {
    const NAME: &'static str = "approved-undo";
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        ctx.compensate(Compensation::new("await-approval", |ctx| async move {
            UNDO_WAITS.lock().unwrap().push(ctx.execution_id().to_string());
            ctx.recv::<u32>("undo-ok").await.map_err(|e| StepError::permanent(e.to_string()))?;
            Ok(())
        }));
        ctx.sleep(Duration::from_secs(3600)).await;
        Ok(())
    }
}

/// Runs whose slow undo began, and runs whose slow undo may finish.
static SLOW_UNDO_BEGAN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SLOW_UNDO_GO: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Books, registers an undo that waits until the test lets it finish, then
/// fails for good: the run compensates for its failure.
struct FailsSlowly;

impl Workflow for FailsSlowly {
    const NAME: &'static str = "fails-slowly";
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        ctx.compensate(Compensation::new("slow-undo", |ctx| async move {
            let id = ctx.execution_id().to_string();
            ctx.step("slow-undo", move |_| {
                let id = id.clone();
                async move {
                    SLOW_UNDO_BEGAN.lock().unwrap().push(id.clone());
                    while !SLOW_UNDO_GO.lock().unwrap().contains(&id) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok::<_, StepError>(())
                }
            })
            .await
        }));
        Err(WorkflowError::permanent("out of stock"))
    }
}

async fn setup(db: &TestDb) -> (Engine, Worker, Arc<Ledger>) {
    let e = Engine::builder().store(db.store().await).namespace("sagas").build().await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let w = Worker::builder(&e)
        .register(trip)
        .register(refused_trip)
        .register(Audit)
        .register(ApprovedUndo)
        .register(FailsSlowly)
        .state_arc(Arc::clone(&ledger))
        .inline_backoff(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(20))
        .heartbeat_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    (e, w, ledger)
}

fn plan(bookings: u32, then: Then) -> Plan {
    Plan { bookings, fail_at: None, undo_fails: None, undo_parks: false, fail_once_after: None, diverge: false, then }
}

async fn until(e: &Engine, id: &ExecutionId, what: &str, done: impl Fn(&Execution) -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done(&e.get(id).await.unwrap().unwrap()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

async fn ended(e: &Engine, id: &ExecutionId) -> Execution {
    until(e, id, "the run ends", |r| r.status.is_terminal()).await;
    e.get(id).await.unwrap().unwrap()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Cancels the trip once `ready` holds, and checks it ends cancelled after
/// undoing its three bookings, newest first.
async fn cancelled_trip(db: &TestDb, then: Then, ready: impl Fn(&Execution) -> bool) -> ExecutionId {
    let (e, w, ledger) = setup(db).await;
    let h = trip::start(&e, plan(3, then)).await.unwrap();
    until(&e, h.id(), "the run reaches the point to cancel", ready).await;
    assert_eq!(h.cancel().await.unwrap(), CancelOutcome::Requested);
    let done = ended(&e, h.id()).await;
    assert_eq!(done.status, ExecutionStatus::Cancelled, "{:?}", done.error);
    assert_eq!(done.error.as_deref(), Some("cancelled (compensated: unbook, unbook, unbook)"));
    assert_eq!(ledger.take(), lines(&["book 0", "book 1", "book 2", "unbook 2", "unbook 1", "unbook 0"]));
    w.shutdown(Duration::from_secs(5)).await;
    h.id().clone()
}

both_backends! {
    async fn a_failure_at_each_position_undoes_exactly_what_came_before_it_newest_first(db: TestDb) {
        let (e, w, ledger) = setup(&db).await;
        for fail_at in 0..3u32 {
            let h = trip::start(&e, Plan { fail_at: Some(fail_at), ..plan(3, Then::Done) }).await.unwrap();
            let done = ended(&e, h.id()).await;
            assert_eq!(done.status, ExecutionStatus::Failed);
            let mut expected: Vec<String> = (0..fail_at).map(|i| format!("book {i}")).collect();
            expected.extend((0..fail_at).rev().map(|i| format!("unbook {i}")));
            assert_eq!(ledger.take(), expected, "failing at booking {fail_at}");
            let message = done.error.unwrap();
            assert!(message.starts_with(&format!("booking {fail_at} refused")), "{message}");
            assert_eq!(message.contains("compensated"), fail_at > 0, "{message}");
        }
        // Nothing failed: nothing is undone.
        let h = trip::start(&e, plan(2, Then::Done)).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), 2);
        assert_eq!(ledger.take(), lines(&["book 0", "book 1"]));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_cancel_during_a_step_runs_the_compensations(db: TestDb) {
        let ledger_ready = |r: &Execution| r.status == ExecutionStatus::Running && r.open_step.position >= 3;
        let id = cancelled_trip(&db, Then::Work(60_000), ledger_ready).await;
        assert!(SAW_CANCEL.lock().unwrap().contains(&id.to_string()), "the body saw the cancel between steps");
    }

    async fn a_cancel_during_a_sleep_runs_the_compensations(db: TestDb) {
        cancelled_trip(&db, Then::Sleep, |r| r.status == ExecutionStatus::Sleeping).await;
    }

    async fn a_cancel_during_a_signal_wait_runs_the_compensations(db: TestDb) {
        cancelled_trip(&db, Then::Wait, |r| r.status == ExecutionStatus::Sleeping).await;
    }

    async fn a_failing_compensation_ends_the_run_compensation_failed_and_the_others_still_run(db: TestDb) {
        let (e, w, ledger) = setup(&db).await;
        let h = trip::start(&e, Plan { fail_at: Some(3), undo_fails: Some(1), ..plan(4, Then::Done) }).await.unwrap();
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::CompensationFailed);
        let message = done.error.unwrap();
        assert!(message.starts_with("booking 3 refused; compensation failed: `unbook`: undo 1 refused"), "{message}");
        assert_eq!(ledger.take(), lines(&["book 0", "book 1", "book 2", "unbook 2", "unbook 0"]));
        let err = h.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::CompensationFailed, .. }), "{err}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_timeout_runs_the_compensations(db: TestDb) {
        let (e, w, ledger) = setup(&db).await;
        // Long enough for a loaded machine to claim it first (a run first claimed
        // past its deadline ends without running: nothing to undo). Its
        // failures in CI runs came from the lease guard stopping the run
        // mid-replay, since fixed (see the test below).
        let options = StartOptions::new().timeout(Duration::from_secs(6));
        let h = trip::start_with(&e, plan(2, Then::Sleep), options).await.unwrap();
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::TimedOut, "{:?}", done.error);
        assert!(done.error.as_deref().unwrap_or_default().ends_with("(compensated: unbook, unbook)"), "{:?}", done.error);
        assert_eq!(ledger.take(), lines(&["book 0", "book 1", "unbook 1", "unbook 0"]));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_woken_past_its_deadline_undoes_every_recorded_step_while_the_guard_ticks(db: TestDb) {
        // The lease guard checks deadlines every half heartbeat: here every
        // 0.5 ms, so it looks at the run while its history loads and
        // replays. Stopped there, it would end before the compensations of
        // the steps not yet replayed were registered.
        let e = Engine::builder().store(db.store().await).namespace("sagas-guard").build().await.unwrap();
        let ledger = Arc::new(Ledger::default());
        let w = Worker::builder(&e)
            .register(trip)
            .state_arc(Arc::clone(&ledger))
            .poll_interval(Duration::from_millis(20))
            .heartbeat_interval(Duration::from_millis(1))
            .start()
            .await
            .unwrap();
        let bookings = 40;
        let options = StartOptions::new().timeout(Duration::from_secs(3));
        let h = trip::start_with(&e, plan(bookings, Then::Sleep), options).await.unwrap();
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::TimedOut, "{:?}", done.error);
        let undone = ledger.take().iter().filter(|l| l.starts_with("unbook")).count();
        assert_eq!(undone, bookings as usize, "every booking undone: {:?}", done.error);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn steps_take_the_workers_state_and_a_worker_without_it_refuses_to_start(db: TestDb) {
        let (e, w, ledger) = setup(&db).await;
        ledger.push("seen".into());
        assert_eq!(e.start::<Audit>(()).await.unwrap().result_timeout(WAIT).await.unwrap(), 1, "read through the context");
        w.shutdown(Duration::from_secs(5)).await;
        for refused in [
            Worker::builder(&e).register(trip).start().await,
            Worker::builder(&e).register(Audit).state(5u32).start().await,
        ] {
            let err = refused.expect_err("a worker without the state refuses to start");
            let text = err.to_string();
            assert!(matches!(err, Error::Config(_)), "{text}");
            assert!(text.contains("Ledger") && (text.contains("`trip`") || text.contains("`audit`")), "{text}");
        }
    }

    async fn a_compensation_that_parks_for_its_retry_finishes_after_the_run_is_claimed_again(db: TestDb) {
        // Cancelled during its last step; the body returns right after it.
        // The compensations' first attempts fail and park the run; when it
        // is claimed again its body replays to the end and returns `Ok`:
        // the recorded compensation goes on, and the run ends cancelled,
        // not completed, without being claimed in a loop meanwhile.
        let (e, w, ledger) = setup(&db).await;
        let h = trip::start(&e, Plan { undo_parks: true, ..plan(2, Then::Work(60_000)) }).await.unwrap();
        until(&e, h.id(), "the last step runs", |r| r.status == ExecutionStatus::Running && r.open_step.position >= 2).await;
        assert_eq!(h.cancel().await.unwrap(), CancelOutcome::Requested);
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Cancelled, "{:?}", done.error);
        assert_eq!(done.error.as_deref(), Some("cancelled (compensated: unbook-later, unbook-later)"));
        assert_eq!(ledger.take(), lines(&["book 0", "book 1", "unbook 1", "unbook 0"]));
        assert!(done.fencing_token.get() <= 4, "claimed {} times: no claim loop while parked", done.fencing_token.get());
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_compensation_waiting_past_the_deadline_parks_until_its_signal_without_a_claim_loop(db: TestDb) {
        // The deadline is why the run compensates: a wait in the
        // compensation must not be due at that (past) deadline, or the run
        // is claimed, replayed and parked again in a loop.
        let (e, w, _ledger) = setup(&db).await;
        let h = e.start_with::<ApprovedUndo>((), StartOptions::new().timeout(Duration::from_secs(1))).await.unwrap();
        until(&e, h.id(), "the compensation waits", |r| {
            r.status == ExecutionStatus::Sleeping && undo_waits(h.id()) >= 1
        })
        .await;
        let parked = e.get(h.id()).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = e.get(h.id()).await.unwrap().unwrap();
        assert_eq!(later.status, ExecutionStatus::Sleeping);
        assert_eq!(later.fencing_token, parked.fencing_token, "not claimed again while it waits for its signal");
        let began = undo_waits(h.id());
        assert!(began <= 2, "the compensation began {began} times while parked");
        e.signal(h.id(), "undo-ok", &7u32).await.unwrap();
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::TimedOut, "{:?}", done.error);
        assert!(done.error.as_deref().unwrap_or_default().ends_with("(compensated: await-approval)"), "{:?}", done.error);
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_cancel_accepted_while_a_failing_run_compensates_ends_it_cancelled(db: TestDb) {
        let (e, w, _ledger) = setup(&db).await;
        let h = e.start::<FailsSlowly>(()).await.unwrap();
        let id = h.id().to_string();
        tokio::time::timeout(WAIT, async {
            while !SLOW_UNDO_BEGAN.lock().unwrap().contains(&id) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // The run is still running (compensating): the cancel is accepted.
        assert_eq!(h.cancel().await.unwrap(), CancelOutcome::Requested);
        SLOW_UNDO_GO.lock().unwrap().push(id);
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Cancelled, "{:?}", done.error);
        let error = done.error.unwrap_or_default();
        assert!(error.contains("out of stock") && error.contains("compensated: slow-undo"), "{error}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_run_no_worker_can_run_is_terminated_at_once_without_compensating(db: TestDb) {
        let (e, w, ledger) = setup(&db).await;
        let h = trip::start(&e, plan(1, Then::Sleep)).await.unwrap();
        until(&e, h.id(), "the run sleeps", |r| r.status == ExecutionStatus::Sleeping).await;
        w.shutdown(Duration::from_secs(5)).await;
        // No worker of `trip` is left: a cancel waits for one; terminate does not.
        assert_eq!(h.cancel().await.unwrap(), CancelOutcome::Requested);
        assert_eq!(e.terminate(h.id()).await.unwrap(), CancelOutcome::Cancelled);
        let done = e.get(h.id()).await.unwrap().unwrap();
        assert_eq!((done.status, done.error.as_deref()), (ExecutionStatus::Cancelled, Some("terminated")));
        assert_eq!(ledger.take(), lines(&["book 0"]), "nothing undone");
    }

    async fn a_replay_that_reaches_the_recorded_marker_goes_on_compensating_there(db: TestDb) {
        // The first pass fails after booking 0 (marker at position 1) and
        // its compensation parks; the replay goes further, reaching the
        // marker with a booking call: it stops there and the compensation
        // goes on at the marker's position (no non-determinism).
        let (e, w, ledger) = setup(&db).await;
        let h = trip::start(&e, Plan { undo_parks: true, fail_once_after: Some(0), ..plan(2, Then::Done) }).await.unwrap();
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed, "{:?}", done.error);
        assert_eq!(done.error.as_deref(), Some("the first pass fails (compensated: unbook-later)"));
        assert_eq!(ledger.take(), lines(&["book 0", "unbook 0"]), "booking 1 never ran");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_step_result_the_database_refuses_fails_the_attempt_and_the_last_one_compensates(db: TestDb) {
        // Not the code's fault, unlike non-determinism: the attempt fails
        // as if the body returned the error, and the last one undoes what
        // was booked (it used to end the run failed, undoing nothing).
        let (e, w, ledger) = setup(&db).await;
        refuse_step_rows(&db, &e, "work", true).await;
        let h = refused_trip::start(&e, (2, false)).await.unwrap();
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed, "{:?}", done.error);
        let message = done.error.unwrap_or_default();
        assert!(message.starts_with("could not record the result of step `work`"), "{message}");
        assert!(message.contains("(after 2 workflow attempts)"), "{message}");
        assert!(message.ends_with("(compensated: release, release)"), "{message}");
        assert_eq!(ledger.take(), lines(&["book 0", "book 1", "release 1", "release 0"]));
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn a_compensation_the_database_refuses_to_record_goes_on_once_it_is_written(db: TestDb) {
        // Compensations must finish: the run parks and goes on after a
        // backoff until the database takes the write (it used to end
        // `compensation_failed` at the first refusal). Each try runs the
        // undo's body again (within its step's attempts); nothing recorded
        // is reset, so the step that failed for good never runs again (a
        // new workflow attempt would have reset it).
        let (e, w, ledger) = setup(&db).await;
        refuse_step_rows(&db, &e, "release", true).await;
        let h = refused_trip::start(&e, (2, true)).await.unwrap();
        until(&e, h.id(), "the compensation is tried again", |r| {
            r.fencing_token.get() >= 3 && r.error.as_deref().is_some_and(|m| m.starts_with("compensations wait for the database"))
        })
        .await;
        let waiting = e.get(h.id()).await.unwrap().unwrap();
        assert!(!waiting.status.is_terminal(), "ended while its compensation could not be recorded: {waiting:?}");
        assert_eq!(waiting.attempts, 1, "the same attempt goes on");
        refuse_step_rows(&db, &e, "release", false).await;
        let done = ended(&e, h.id()).await;
        assert_eq!(done.status, ExecutionStatus::Failed, "{:?}", done.error);
        assert_eq!(done.error.as_deref(), Some("declined for good (compensated: release, release)"));
        let seen = ledger.take();
        assert_eq!(seen[..3], lines(&["book 0", "book 1", "decline"]));
        assert_eq!(seen.iter().filter(|l| *l == "decline").count(), 1, "the failed step ran again: {seen:?}");
        assert_eq!(seen[seen.len() - 2..], lines(&["release 1", "release 0"]), "{seen:?}");
        assert!(seen.iter().filter(|l| *l == "release 1").count() >= 3, "{seen:?}");
        assert_eq!(seen.iter().filter(|l| *l == "release 0").count(), 1, "{seen:?}");
        w.shutdown(Duration::from_secs(5)).await;
    }

    async fn non_determinism_suspends_the_run_without_compensating(db: TestDb) {
        // Code that no longer replays the run is not the code to undo it.
        let (e, w, ledger) = setup(&db).await;
        let h = trip::start(&e, Plan { diverge: true, ..plan(2, Then::Wait) }).await.unwrap();
        until(&e, h.id(), "the run waits", |r| r.status == ExecutionStatus::Sleeping).await;
        e.signal(h.id(), "go", &1u32).await.unwrap();
        until(&e, h.id(), "the run is suspended", |r| r.status == ExecutionStatus::Suspended).await;
        let done = e.get(h.id()).await.unwrap().unwrap();
        assert!(done.error.as_deref().unwrap_or_default().contains("non-determinism"), "{:?}", done.error);
        assert_eq!(ledger.take(), lines(&["book 0", "book 1"]), "nothing undone, nothing new booked");
        // An operator ends it: still nothing undone (the code does not replay it).
        e.fail(h.id(), "given up").await.unwrap();
        assert_eq!(ended(&e, h.id()).await.status, ExecutionStatus::Failed);
        assert_eq!(ledger.take(), Vec::<String>::new());
        w.shutdown(Duration::from_secs(5)).await;
    }
}
