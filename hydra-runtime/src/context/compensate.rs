//! Compensation (sagas): after a step succeeds, the workflow registers its
//! undo ([`WorkflowContext::compensate`]). When the run fails for good,
//! times out or is cancelled, its registered compensations run newest
//! first, each a checkpointed step with its own retry policy, before the
//! run ends.
//!
//! How it survives crashes: registrations live in memory and are rebuilt
//! by replay (the body runs again from the top, and registers again as it
//! passes the same points). Before the first compensation a marker step
//! `hydra.compensate` records why the run is ending; a worker that picks
//! the run up later replays the body to the same point (a run to be
//! cancelled or timed out stops at its first new durable call, so no new
//! step body runs), and the compensations already recorded answer from the
//! history: each runs once. A compensation that fails after its retries
//! does not stop the others; the run then ends `compensation_failed`,
//! naming it.

use super::WorkflowContext;

use crate::error::StepError;
use futures_util::future::BoxFuture;
use hydra_store::Terminal;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// The step that marks the start of compensation, recording the cause.
pub(crate) const COMPENSATE_STEP: &str = hydra_store::reserved::step::COMPENSATE;

/// Why a run ends other than with an output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EndCause {
    /// Failed for good, with this message (and the workflow's typed error,
    /// encoded, if it has one).
    Failed(String, Option<Vec<u8>>),
    /// Cancelled on request.
    Cancelled,
    /// Ran past its deadline.
    TimedOut(String),
}

impl EndCause {
    /// The run's end for this cause, `note` added to its message.
    pub(crate) fn terminal(&self, note: &str) -> Terminal {
        match self {
            EndCause::Failed(m, None) => Terminal::Failed(format!("{m}{note}")),
            EndCause::Failed(m, Some(typed)) => Terminal::FailedWith(format!("{m}{note}"), typed.clone()),
            EndCause::Cancelled => Terminal::Cancelled(format!("cancelled{note}")),
            EndCause::TimedOut(m) => Terminal::TimedOut(format!("{m}{note}")),
        }
    }

    fn message(&self) -> String {
        match self {
            EndCause::Failed(m, _) | EndCause::TimedOut(m) => m.clone(),
            EndCause::Cancelled => "cancelled".to_owned(),
        }
    }
}

type Undo = Box<dyn FnOnce(WorkflowContext) -> BoxFuture<'static, Result<(), StepError>> + Send>;

/// An undo registered with [`WorkflowContext::compensate`]: usually a step
/// call, made from the `#[step]` function's `later` (`refund::later(payment)`),
/// or built by hand with [`Compensation::new`].
pub struct Compensation {
    name: String,
    undo: Undo,
}

impl std::fmt::Debug for Compensation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compensation").field("name", &self.name).finish()
    }
}

impl Compensation {
    /// A compensation named `name` (for messages and metrics) that runs
    /// `undo` with the run's context. `undo` should do its work in steps
    /// (each recorded once); code outside steps runs again on replays.
    pub fn new<F, Fut>(name: impl Into<String>, undo: F) -> Self
    where
        F: FnOnce(WorkflowContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        Compensation { name: name.into(), undo: Box::new(move |ctx| Box::pin(undo(ctx))) }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl WorkflowContext {
    /// Registers `compensation` to run if this run fails for good, times
    /// out or is cancelled: registered compensations run newest first,
    /// once each, also across crashes (see the module documentation).
    /// Register right after the step whose effect it undoes succeeds.
    pub fn compensate(&self, compensation: Compensation) {
        let mut list = self.run.undo.compensations.lock().unwrap_or_else(|p| p.into_inner());
        list.push(compensation);
    }

    /// Whether a cancel of this run has been requested and seen (between
    /// steps; a step body sees it as [`crate::StepContext::is_cancelled`]).
    /// The next durable call does not run then: the run stops there, runs
    /// its compensations and ends cancelled. A moment's value, not a
    /// recorded one: base no choice of durable calls on it.
    pub fn is_cancelled(&self) -> bool {
        self.run.stops.cancel_requested.load(Ordering::SeqCst)
            || matches!(*self.run.stops.stop.lock().unwrap_or_else(|p| p.into_inner()), Some(EndCause::Cancelled))
    }

    /// Whether compensations are registered.
    pub(crate) fn has_compensations(&self) -> bool {
        !self.run.undo.compensations.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// The cause recorded with a compensation marker (a run whose marker does
/// not decode is ending as failed).
pub(crate) fn recorded_cause(ctx: &WorkflowContext, bytes: Option<&[u8]>) -> EndCause {
    bytes
        .and_then(|b| ctx.run.env.codecs.decode(b).ok())
        .unwrap_or_else(|| EndCause::Failed("compensating (its recorded cause does not decode)".into(), None))
}

/// Runs the registered compensations of `ctx`'s run for `cause` (or the
/// cause recorded by an earlier worker) and returns how the run ends.
/// The caller has made the run ready ([`begin`]).
pub(crate) async fn run_compensations(ctx: WorkflowContext, cause: EndCause) -> Terminal {
    let run = std::sync::Arc::clone(&ctx.run);
    if let Some((position, _)) = run.recorded_marker() {
        // Begun before: the marker is read where it was recorded, whatever
        // point this replay of the body stopped at.
        run.seek(position);
    }
    let options = super::StepOptions::new(COMPENSATE_STEP).retry(super::marker_retry());
    let recorded = ctx
        .own_step_with(options, move |_s| {
            let cause = cause.clone();
            async move { Ok::<_, StepError>(cause) }
        })
        .await;
    let cause = match recorded {
        Ok(c) => c,
        Err(e) => return Terminal::CompensationFailed(format!("could not record the start of compensation: {e}")),
    };
    let list = std::mem::take(&mut *run.undo.compensations.lock().unwrap_or_else(|p| p.into_inner()));
    let mut done = Vec::with_capacity(list.len());
    let mut failed = Vec::new();
    for c in list.into_iter().rev() {
        let child = WorkflowContext { run: std::sync::Arc::clone(&run) };
        let name = c.name;
        let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe((c.undo)(child))).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(format!("panicked: {}", super::panic_message(&panic))),
        };
        crate::metrics::compensation(&run.lease.namespace, &run.workflow_name, error.is_none());
        match error {
            None => done.push(name),
            Some(e) => {
                tracing::error!(compensation = %name, error = %e, "a compensation failed");
                failed.push(format!("`{name}`: {e}"));
            }
        }
    }
    if failed.is_empty() {
        cause.terminal(&format!(" (compensated: {})", done.join(", ")))
    } else {
        Terminal::CompensationFailed(format!("{}; compensation failed: {}", cause.message(), failed.join("; ")))
    }
}

/// Makes the run ready to compensate: its steps pass the gate (a cancel
/// or passed deadline stopped the body, not its compensations), step
/// bodies get a fresh cancellation token, and a new interrupt can be
/// raised. Returns a receiver of that interrupt.
pub(crate) fn begin(ctx: &WorkflowContext) -> tokio::sync::watch::Receiver<Option<super::RunEnd>> {
    ctx.run.undo.compensating.store(true, Ordering::SeqCst);
    ctx.run.reset_interrupt()
}
