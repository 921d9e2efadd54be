//! Driving one claimed run: from the claim to its end, its park, or its
//! stop; hand-backs of runs never started; fenced end writes retried
//! through transient failures.

use super::ending::{compensate_if_ending, failure_terminal, final_failure, terminal_message};
use super::{ActiveRun, Shared};
use crate::clock::duration_ms;
use crate::context::{EndCause, RunEnd, RunSetup, RunState, WorkflowContext, panic_message};
use crate::engine::Engine;
use crate::error::Error;
use crate::workflow::ErasedWorkflow;
use futures_util::FutureExt;
use hydra_store::{ClaimedExecution, Execution, Lease, OpenStep, StoreError, Terminal, Transition};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// Drives one claimed run until it ends, parks, or is stopped.
pub(super) async fn drive(
    s: Arc<Shared>,
    claimed: ClaimedExecution,
    permit: OwnedSemaphorePermit,
    claim_sent: tokio::time::Instant,
) {
    let ClaimedExecution { execution, lease, .. } = claimed;
    let span = tracing::info_span!(
        "workflow_run",
        namespace = %execution.namespace,
        workflow = %execution.workflow_name,
        execution_id = %execution.id,
        attempt = execution.attempts,
    );
    drive_inner(&s, execution, lease, claim_sent).instrument(span).await;
    drop(permit);
    // Claims with the freed slot: the run's end may itself have made runs
    // due (its parent, its cancelled children), and a run made due while
    // every slot was taken woke no claim.
    s.wake.notify_one();
}

/// The states of a claimed run, in order: admitted, registered (renewed
/// and guarded from here on), history loaded, run, settled.
async fn drive_inner(s: &Arc<Shared>, execution: Execution, lease: Lease, claim_sent: tokio::time::Instant) {
    tracing::debug!(token = lease.token.get(), expires_at = ?execution.lease_expires_at(), "lease acquired");
    let Some((workflow, stop)) = admit(s, &execution, &lease).await else { return };
    let (run, interrupts) = new_run(s, &*workflow, &execution, &lease);
    *run.stops.stop.lock().unwrap_or_else(|p| p.into_inner()) = stop;
    // From here the heartbeat renews the lease and the guard stops the run
    // before it can expire, also while the history loads: no body may start
    // on a lease that expired meanwhile.
    let registration = register(s, &execution, &run, claim_sent);
    match load_history(s, &run, &lease).await {
        Ok(history) => {
            run.set_history(history);
            if let Some(body) = run_workflow(s, &*workflow, &execution, &lease, &run, interrupts).await {
                finish(s, &*workflow, &execution, &lease, &run, body).await;
            }
        }
        Err(Some(interrupt)) => {
            settle(s, &*workflow, &execution, &lease, &run, interrupt, false).await;
        }
        Err(None) => {}
    }
    // Nothing more runs for this claim. (The registration lived through
    // the last write, which hands the lease back: see `settle`.)
    drop(registration);
}

/// What the body's end means for the run: its compensations if it is
/// ending badly, then its last write. Every end but a cancel's is written
/// only if no cancel was accepted first (the write is conditional on it);
/// if one was, the run hears it now and ends cancelled, after its
/// compensations (run now, or already run for the end it was making): an
/// accepted cancel is never dropped.
async fn finish(
    s: &Arc<Shared>,
    workflow: &dyn ErasedWorkflow,
    execution: &Execution,
    lease: &Lease,
    run: &Arc<RunState>,
    body: RunEnd,
) {
    // A write the database failed (not a refusal of Hydra's) fails the
    // body's attempt as if it had returned the error: retried by the
    // workflow's policy, its compensations run at the last attempt.
    let body = match body {
        RunEnd::StoreFailed(m) => RunEnd::Failed(Arc::new(crate::WorkflowError::retryable(m))),
        other => other,
    };
    let outcome = compensate_if_ending(workflow, execution, run, body.clone()).await;
    let compensated = run.undo.compensating.load(std::sync::atomic::Ordering::SeqCst);
    // Every end but a cancel's is written only if no cancel was accepted
    // meanwhile: a cancel answered `Requested` ends the run cancelled.
    let guarded = body.returned() || compensated;
    if settle(s, workflow, execution, lease, run, outcome.clone(), guarded).await != Settled::CancelFirst {
        return;
    }
    tracing::info!("a cancel was accepted before the run's end; ending it cancelled");
    run.hear_cancel();
    if compensated {
        // Its compensations ran already (for the failure, the deadline):
        // they are what a cancel runs. It ends cancelled, saying how it was
        // ending.
        let was = match &outcome {
            RunEnd::Ended(t) => terminal_message(t),
            _ => String::new(),
        };
        let terminal = Terminal::Cancelled(format!("cancelled while it was ending: {was}"));
        end(s, execution, lease, Some(run), terminal, false).await;
        return;
    }
    let outcome = compensate_if_ending(workflow, execution, run, body).await;
    settle(s, workflow, execution, lease, run, outcome, false).await;
}

/// How [`settle`] went.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Written (or nothing to write, or the lease is gone).
    Done,
    /// The end was refused: a cancel was accepted for the run first.
    CancelFirst,
}

/// The workflow to run, and why it is to end if it is (cancelled, past
/// its deadline, out of attempts): then the body only replays. `None` if
/// the run was handed back, or ended before any of its code ever ran.
async fn admit(
    s: &Arc<Shared>,
    execution: &Execution,
    lease: &Lease,
) -> Option<(Arc<dyn ErasedWorkflow>, Option<EndCause>)> {
    let now = s.engine.clock().now_ms();
    let Some(workflow) = s.registry.get(execution.workflow_name.as_str()).cloned() else {
        // Not ours (claims filter by name, so only on a race with a rename).
        let _ = hand_back(&s.engine, execution, lease).await;
        return None;
    };
    let cause = if execution.cancel_requested {
        Some(EndCause::Cancelled)
    } else if execution.deadline_at.is_some_and(|d| now >= d) {
        Some(EndCause::TimedOut("the run passed its deadline".into()))
    } else if execution.attempts > execution.max_attempts {
        Some(EndCause::Failed(
            format!(
                "out of attempts: {} of {} allowed began; the last one never finished (its worker died or lost its \
                 lease)",
                execution.attempts, execution.max_attempts
            ),
            None,
        ))
    } else {
        None
    };
    match cause {
        // Never driven before (its first claim): no step ran, nothing to
        // compensate; it ends here.
        Some(cause) if lease.token.get() == 1 => {
            end(s, execution, lease, None, cause.terminal(""), false).await;
            None
        }
        // It may have registered compensations: the body replays up to its
        // first new durable call, stops there, and they run.
        cause => Some((workflow, cause)),
    }
}

/// The run's state under this claim, without its history yet.
fn new_run(
    s: &Arc<Shared>,
    workflow: &dyn ErasedWorkflow,
    execution: &Execution,
    lease: &Lease,
) -> (Arc<RunState>, tokio::sync::watch::Receiver<Option<RunEnd>>) {
    let engine = &s.engine;
    RunState::new(RunSetup {
        committer: engine.inner.committer.clone(),
        work: Some(engine.inner.work.clone()),
        store: engine.inner.store.clone(),
        codec: workflow.options().codec.unwrap_or(engine.codec()),
        codecs: engine.codecs().clone(),
        max_payload_bytes: engine.inner.max_payload_bytes,
        clock: engine.clock().clone(),
        lease: lease.clone(),
        workflow_name: execution.workflow_name.clone(),
        attempt: execution.attempts,
        deadline_at: execution.deadline_at,
        history: None,
        open_step: execution.open_step,
        inline_backoff: s.config.inline_backoff,
        write_patience: s.config.lease_ttl.saturating_sub(s.config.heartbeat_interval.saturating_mul(2)),
        state: Arc::clone(&s.state),
        on_nondeterminism: workflow.options().on_nondeterminism,
    })
}

/// Makes the run active: its lease is renewed by the heartbeat and watched
/// by the guard, counting from when the claim was sent.
fn register<'a>(
    s: &'a Arc<Shared>,
    execution: &Execution,
    run: &Arc<RunState>,
    claim_sent: tokio::time::Instant,
) -> Registration<'a> {
    let stale = s.active().insert(execution.id.clone(), ActiveRun { run: Arc::clone(run), renewed_at: claim_sent });
    crate::metrics::active(s.engine.namespace(), s.id.as_str(), s.active().len());
    if let Some(old) = stale {
        // This worker re-claimed a run it was still driving under an older
        // token (its own lease expired): that drive's writes are fenced off
        // already; stop it.
        old.run.interrupt(RunEnd::LeaseLost);
    }
    Registration { s, id: execution.id.clone(), token: run.lease.token }
}

/// A run's registration with the heartbeat and the guard. Dropping it
/// ends the registration (unless a newer claim of the run replaced it), on
/// every way out of the drive, a panic included: no run stays renewed for
/// ever by a drive that is gone.
struct Registration<'a> {
    s: &'a Arc<Shared>,
    id: hydra_store::ExecutionId,
    token: hydra_store::FencingToken,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut active = self.s.active();
        if active.get(&self.id).is_some_and(|a| a.run.lease.token == self.token) {
            active.remove(&self.id);
        }
        crate::metrics::active(self.s.engine.namespace(), self.s.id.as_str(), active.len());
    }
}

/// The run's recorded steps, retried through transient failures. `Err`
/// with the interrupt if the run was stopped meanwhile (its lease could
/// not be renewed, the worker is stopping), `Err(None)` if the history
/// cannot be read (the lease is left to expire).
async fn load_history(
    s: &Arc<Shared>,
    run: &RunState,
    lease: &Lease,
) -> Result<Vec<hydra_store::Step>, Option<RunEnd>> {
    // The first claim of a run (token 1) cannot have a history: every step
    // write needs a lease. Skip the query.
    if lease.token == hydra_store::FencingToken::FIRST {
        return Ok(Vec::new());
    }
    loop {
        if let Some(i) = run.current_interrupt() {
            return Err(Some(i));
        }
        match s.engine.inner.store.steps(&lease.namespace, &lease.execution_id).await {
            Ok(h) => {
                if let Some(delay) = s.config.history_delay {
                    // The test hook: an answer that arrives late.
                    tokio::time::sleep(delay).await;
                }
                return match run.current_interrupt() {
                    Some(i) => Err(Some(i)),
                    None => Ok(h),
                };
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "could not load history; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.stop_all.is_cancelled() {
                    return Err(Some(RunEnd::LeaseLost));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not load history; leaving the run to expire");
                return Err(None);
            }
        }
    }
}

/// Runs the workflow future under the lease until it returns or is
/// interrupted (an interrupt raised before it starts wins: no step body
/// runs then). `None` if its input did not decode (the run is ended
/// failed).
async fn run_workflow(
    s: &Arc<Shared>,
    workflow: &dyn ErasedWorkflow,
    execution: &Execution,
    lease: &Lease,
    run: &Arc<RunState>,
    mut interrupts: tokio::sync::watch::Receiver<Option<RunEnd>>,
) -> Option<RunEnd> {
    let ctx = WorkflowContext { run: Arc::clone(run) };
    // Decoding the input runs user code (a custom codec, a Deserialize
    // impl): a panic there fails the run, like one in the workflow.
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| workflow.start(ctx, &execution.input)));
    let future = match started {
        Ok(Ok(f)) => f,
        // An input that does not decode fails the run (hostile or malformed
        // bytes from a starter; no deploy of this workflow's code makes them
        // readable by waiting).
        Ok(Err(reason)) => {
            let e = Error::Decode { execution: execution.id.clone(), what: "the input".into(), reason };
            end(s, execution, lease, Some(run), Terminal::Failed(e.to_string()), false).await;
            return None;
        }
        Err(panic) => {
            let reason = format!("decoding panicked: {}", panic_message(&panic));
            let e = Error::Decode { execution: execution.id.clone(), what: "the input".into(), reason };
            end(s, execution, lease, Some(run), Terminal::Failed(e.to_string()), false).await;
            return None;
        }
    };
    let outcome = tokio::select! {
        biased;
        i = interrupts.wait_for(Option::is_some) => match i {
            Ok(v) => v.clone().unwrap_or(RunEnd::LeaseLost),
            Err(_) => RunEnd::LeaseLost,
        },
        r = AssertUnwindSafe(future).catch_unwind() => r.unwrap_or_else(|p| RunEnd::Panicked(panic_message(&p))),
    };
    Some(outcome)
}

/// Writes what the outcome means for the run: its end, a workflow retry,
/// a release, or nothing (parked already, or the lease is gone). Each of
/// these writes hands the lease back, so it is counted as the run's own
/// doing while the heartbeat still renews the run. With `guarded`, an end
/// other than cancelled or timed out is written only if no cancel was
/// accepted first.
async fn settle(
    s: &Arc<Shared>,
    workflow: &dyn ErasedWorkflow,
    execution: &Execution,
    lease: &Lease,
    run: &RunState,
    outcome: RunEnd,
    guarded: bool,
) -> Settled {
    let end = |terminal: Terminal| end(s, execution, lease, Some(run), terminal, guarded);
    let engine = &s.engine;
    let cancelled = run.stops.cancel_requested.load(std::sync::atomic::Ordering::SeqCst);
    match outcome {
        RunEnd::Suspended { until } => {
            tracing::debug!(until, "run parked; lease released");
            schedule_wake(s, until);
        }
        RunEnd::LeaseLost => {
            crate::metrics::lease_lost(&lease.namespace, &execution.workflow_name);
        }
        RunEnd::Suspend(message) => {
            // A run on its way out (cancelled, past its deadline, out of
            // attempts) ends so: waiting for code that replays it would
            // keep a cancel for ever. No compensation: its code is not the
            // code that ran.
            let stop = run.stops.stop.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let stop = stop.or_else(|| cancelled.then_some(EndCause::Cancelled));
            if let Some(cause) = stop {
                let note = format!(" (not compensated: {message})");
                return end(cause.terminal(&note)).await;
            }
            let (_, _, code) = workflow.version();
            let open = run.open_to_hand_back();
            let write =
                write_retrying(s, || engine.inner.store.suspend(lease, open, &message, code, engine.clock().now_ms()));
            match run.parking_write(write, |_| true).await {
                Ok(()) => {
                    crate::metrics::suspended(&lease.namespace, &execution.workflow_name);
                    tracing::warn!(error = %message, "run suspended: its code does not replay its history");
                }
                // A cancel accepted meanwhile: the run ends cancelled now
                // rather than keep it for ever.
                Err(hydra_store::StoreError::CancelRequested { .. }) => {
                    let note = format!(" (not compensated: {message})");
                    return end(EndCause::Cancelled.terminal(&note)).await;
                }
                Err(_) => {}
            }
        }
        RunEnd::Release => {
            let cp = hydra_store::Checkpoint::transition(Transition::Release).open(run.open_to_hand_back());
            let write = engine.inner.store.checkpoint(lease, cp, engine.clock().now_ms());
            if let Err(e) = run.parking_write(write, |_| true).await {
                tracing::warn!(error = %e, "could not release the lease; it will expire");
            }
        }
        RunEnd::Ended(terminal) => return end(terminal).await,
        RunEnd::End(cause) => return end(cause.terminal("")).await,
        RunEnd::Cancel => return end(Terminal::Cancelled("cancelled".into())).await,
        RunEnd::TimeOut(m) => return end(Terminal::TimedOut(m)).await,
        RunEnd::Fail(m) => return end(Terminal::Failed(m)).await,
        // A body that returned is ended as it returned, under the guard
        // (`finish`): a cancel heard after its compensations were decided
        // refuses that end, and `finish` then runs them. Ending it
        // cancelled here would skip them.
        RunEnd::Output(bytes) => return end(Terminal::Completed(bytes)).await,
        RunEnd::OutputRefused(message) => return end(Terminal::Failed(message)).await,
        RunEnd::Failed(e) => {
            let attempts = execution.attempts.max(1);
            if let Some(msg) = final_failure(workflow, execution, &e) {
                return end(failure_terminal(run, msg, &e)).await;
            }
            let delay = workflow.options().retry.next_delay(attempts);
            let now = engine.clock().now_ms();
            let at = now.saturating_add(duration_ms(delay));
            let at = execution.deadline_at.map_or(at, |d| at.min(d));
            tracing::info!(error = %e, ?delay, "workflow attempt failed; retrying");
            park_for(s, lease, run, Transition::Retry { at, error: e.message().to_owned() }, at).await;
        }
        RunEnd::Panicked(panic) => return end(Terminal::Failed(format!("workflow panicked: {panic}"))).await,
        // A compensation's write failed in the database (a body's is a
        // failed attempt by now, see `finish`): compensations must finish,
        // so the run parks and goes on after a backoff, as the same
        // attempt: nothing recorded is reset, so its replay meets the same
        // cause (its marker, or the failure, cancel or deadline that
        // decided it). At least a second apart, at most the policy's
        // longest backoff; the run's error says why it waits meanwhile.
        RunEnd::StoreFailed(m) => {
            // Each claim raised the token: the backoff grows with the
            // claims, up to the policy's longest.
            let claims = u32::try_from(lease.token.get()).unwrap_or(u32::MAX);
            let delay = workflow.options().retry.next_delay(claims).max(COMPENSATION_BACKOFF_MIN);
            let at = engine.clock().now_ms().saturating_add(duration_ms(delay));
            let error = format!("compensations wait for the database: {m}");
            tracing::error!(error = %m, ?delay, "a write of the run's compensations failed; going on after a backoff");
            crate::metrics::compensation_write_failed(&lease.namespace, &execution.workflow_name);
            park_for(s, lease, run, Transition::Backoff { until: at, error }, at).await;
        }
    }
    Settled::Done
}

/// The shortest wait before compensations whose write the database failed
/// go on.
const COMPENSATION_BACKOFF_MIN: Duration = Duration::from_secs(1);

/// Parks the run by `transition` (a new attempt, or a backoff), due at
/// `at`, handing back the attempt its claim reserved. A `Retry` accepted
/// with a cancel is due now instead, and its claim ends the run cancelled
/// (see the statement).
async fn park_for(s: &Arc<Shared>, lease: &Lease, run: &RunState, transition: Transition, at: i64) {
    let engine = &s.engine;
    let write = write_retrying(s, || {
        engine.inner.store.checkpoint(
            lease,
            hydra_store::Checkpoint::transition(transition.clone()).open(run.open_to_hand_back()),
            engine.clock().now_ms(),
        )
    });
    match run.parking_write(write, |_| true).await {
        Ok(()) => schedule_wake(s, at),
        Err(e) => tracing::warn!(error = %e, "could not park the run; its lease will expire"),
    }
}

/// Hands back a run this claim never started. The claim counted an
/// attempt of the run's open step; none began, so it is taken back.
pub(super) async fn hand_back(engine: &Engine, execution: &Execution, lease: &Lease) -> Result<(), StoreError> {
    let open = execution.open_step;
    let cp = hydra_store::Checkpoint::transition(Transition::Release)
        .open(OpenStep::new(open.position, open.attempts.saturating_sub(1)));
    engine.inner.store.checkpoint(lease, cp, engine.clock().now_ms()).await
}

/// Writes a run's end, retrying transient failures (a write that hands
/// the lease back: see [`settle`]). With `guarded`, an end that is not a
/// cancel's or a deadline's is written only if no cancel was accepted
/// first ([`Settled::CancelFirst`] otherwise, and nothing is written).
async fn end(
    s: &Arc<Shared>,
    execution: &Execution,
    lease: &Lease,
    run: Option<&RunState>,
    terminal: Terminal,
    guarded: bool,
) -> Settled {
    let status = match &terminal {
        Terminal::Completed(out) => {
            crate::metrics::payload(&lease.namespace, &execution.workflow_name, "output", out.len());
            "completed"
        }
        Terminal::Failed(_) | Terminal::FailedWith(..) => "failed",
        Terminal::Cancelled(_) => "cancelled",
        Terminal::TimedOut(_) => "timed_out",
        Terminal::CompensationFailed(_) => "compensation_failed",
        _ => "ended",
    };
    let unless_cancel = guarded && status != "cancelled";
    let engine = &s.engine;
    let write = write_retrying(s, || async {
        let mut cp = hydra_store::Checkpoint::transition(Transition::Finish(terminal.clone()));
        if unless_cancel {
            cp = cp.unless_cancel_requested();
        }
        if execution.parent_id.is_none() {
            cp = cp.without_parent();
        }
        let op = hydra_store::BatchOp::Checkpoint(lease.clone(), cp);
        crate::commit::write(engine.inner.committer.as_ref(), &engine.inner.store, op, engine.clock().now_ms())
            .await
            .map(|_| ())
    });
    let written = match run {
        Some(run) => run.parking_write(write, |_| true).await,
        None => write.await,
    };
    match written {
        Ok(()) => {
            let seconds = engine.clock().now_ms().saturating_sub(execution.created_at).max(0) as f64 / 1000.0;
            crate::metrics::workflow_ended(&lease.namespace, &execution.workflow_name, status, seconds);
            tracing::info!(execution_id = %lease.execution_id, status, "run ended");
            engine.inner.done.send_modify(|n| *n = n.wrapping_add(1));
            if status == "cancelled"
                && let Err(e) = engine.cancel_children(&lease.execution_id).await
            {
                tracing::warn!(error = %e, "could not cancel the children of a cancelled run");
            }
        }
        Err(StoreError::CancelRequested { .. }) => return Settled::CancelFirst,
        Err(e) if e.is_lease_lost() => crate::metrics::lease_lost(&lease.namespace, &execution.workflow_name),
        Err(_) => {}
    }
    Settled::Done
}

async fn write_retrying<F, Fut>(s: &Arc<Shared>, mut op: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let give_up = crate::clock::instant_after(s.config.lease_ttl);
    let mut pause = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(()) => return Ok(()),
            Err(e)
                if e.is_retryable() && crate::clock::instant_after(pause) < give_up && !s.stop_all.is_cancelled() =>
            {
                tracing::warn!(error = %e, "transient failure writing a run's state; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                if e.is_lease_lost() {
                    tracing::warn!(error = %e, "lease lost before the run's state was written");
                } else {
                    tracing::error!(error = %e, "could not write a run's state; its lease will expire");
                }
                return Err(e);
            }
        }
    }
}

/// Pokes the poll loop when a parked run becomes due soon; far-off wake-ups
/// are left to polling, so a sleeping run costs a row, not a timer.
fn schedule_wake(s: &Arc<Shared>, until: i64) {
    let clock = s.engine.clock().clone();
    let horizon = duration_ms(s.config.poll_interval.saturating_mul(10)).max(60_000);
    if until.saturating_sub(clock.now_ms()) > horizon {
        return;
    }
    let shared = Arc::clone(s);
    tokio::spawn(async move {
        tokio::select! {
            _ = clock.sleep_until(until, Duration::from_millis(u64::try_from(horizon).unwrap_or(60_000))) => shared.wake.notify_one(),
            _ = shared.stop_claiming.cancelled() => {}
        }
    });
}
