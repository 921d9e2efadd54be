//! How a run that ends badly ends: its compensations first (for the
//! cause decided: a failure, a cancel, a deadline, or the cause a recorded
//! compensation marker keeps), then the terminal it is written with.

use crate::context::{EndCause, RunEnd, RunState, WorkflowContext, panic_message};
use crate::workflow::ErasedWorkflow;
use futures_util::FutureExt;
use hydra_store::{Execution, Terminal};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// If `outcome` ends the run other than with an output and the body
/// registered compensations, runs them (under the same lease and guard)
/// and returns the run's end; otherwise returns `outcome` as it is.
pub(super) async fn compensate_if_ending(
    workflow: &dyn ErasedWorkflow,
    execution: &Execution,
    run: &Arc<RunState>,
    outcome: RunEnd,
) -> RunEnd {
    // Not ending here; or Hydra refused the code (non-determinism, a record
    // that does not decode, a step ID clash): then the run ends failed
    // without compensating, since the code that would compensate is not the
    // code that ran.
    if matches!(
        outcome,
        RunEnd::LeaseLost | RunEnd::Release | RunEnd::Suspended { .. } | RunEnd::Fail(_) | RunEnd::Suspend(_)
    ) {
        return outcome;
    }
    let ctx = WorkflowContext { run: Arc::clone(run) };
    let cancelled = run.stops.cancel_requested.load(std::sync::atomic::Ordering::SeqCst);
    let stop = run.stops.stop.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Once a worker began compensating (the marker is recorded), the run
    // finishes compensating, for the recorded cause, whatever this replay
    // of its body returned; likewise a run to be stopped (cancelled, timed
    // out, out of attempts) ends so even if its body returned first.
    let decided = match run.recorded_marker() {
        Some((_, bytes)) => Some(crate::context::recorded_cause(&ctx, bytes.as_deref())),
        None => stop,
    };
    let cause = match (&outcome, decided) {
        (_, Some(c)) => c,
        (RunEnd::End(c), None) => c.clone(),
        (RunEnd::Cancel, None) => EndCause::Cancelled,
        (RunEnd::TimeOut(m), None) => EndCause::TimedOut(m.clone()),
        (end_, None) if end_.returned() && cancelled => EndCause::Cancelled,
        (RunEnd::Failed(e), None) => match final_failure(workflow, execution, e) {
            Some(message) => match failure_terminal(run, message, e) {
                Terminal::FailedWith(m, typed) => EndCause::Failed(m, Some(typed)),
                other => EndCause::Failed(terminal_message(&other), None),
            },
            None => return outcome,
        },
        (RunEnd::OutputRefused(message), None) => EndCause::Failed(message.clone(), None),
        (RunEnd::Panicked(panic), None) => EndCause::Failed(format!("workflow panicked: {panic}"), None),
        _ => return outcome,
    };
    if !ctx.has_compensations() {
        return RunEnd::Ended(cause.terminal(""));
    }
    tracing::info!(?cause, "running compensations");
    let mut interrupts = crate::context::begin_compensation(&ctx);
    let work = AssertUnwindSafe(crate::context::run_compensations(ctx, cause)).catch_unwind();
    tokio::select! {
        biased;
        i = interrupts.wait_for(Option::is_some) => match i {
            // Hydra refused something in a compensation (a record that
            // does not decode, a step ID clash): the run ends visibly so.
            Ok(v) => match v.clone() {
                Some(RunEnd::Fail(m)) => RunEnd::Ended(Terminal::CompensationFailed(m)),
                Some(other) => other,
                None => RunEnd::LeaseLost,
            },
            Err(_) => RunEnd::LeaseLost,
        },
        r = work => match r {
            Ok(terminal) => RunEnd::Ended(terminal),
            Err(p) => RunEnd::Ended(Terminal::CompensationFailed(format!("compensation panicked: {}", panic_message(&p)))),
        },
    }
}

/// A final workflow failure's end: with its typed error when it carries
/// one that encodes (else a note on why it is missing).
pub(super) fn failure_terminal(run: &RunState, message: String, e: &crate::WorkflowError) -> Terminal {
    match e.typed_error().map(|t| {
        t.encode(&run.env.codecs, run.env.codec)
            .and_then(|b| run.env.fits(|| "its typed error".into(), b.len()).map(|()| b))
    }) {
        Some(Ok(bytes)) => Terminal::FailedWith(message, bytes),
        Some(Err(reason)) => Terminal::Failed(format!("{message} (its typed error was not stored: {reason})")),
        None => Terminal::Failed(message),
    }
}

pub(super) fn terminal_message(t: &Terminal) -> String {
    match t {
        Terminal::Failed(m)
        | Terminal::FailedWith(m, _)
        | Terminal::Cancelled(m)
        | Terminal::TimedOut(m)
        | Terminal::CompensationFailed(m) => m.clone(),
        _ => String::new(),
    }
}

/// The message a failed workflow attempt ends the run with, or `None` if
/// the workflow's retry policy runs it again.
pub(super) fn final_failure(
    workflow: &dyn ErasedWorkflow,
    execution: &Execution,
    e: &crate::WorkflowError,
) -> Option<String> {
    let _ = workflow;
    let attempts = execution.attempts.max(1);
    if e.is_permanent() {
        Some(e.full_message())
    } else if attempts >= execution.max_attempts {
        Some(e.full_message_noting(&format!(" (after {attempts} workflow attempts)")))
    } else {
        None
    }
}
