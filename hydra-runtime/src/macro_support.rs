//! What the macros' generated code refers to (`hydra_runtime::__private`):
//! re-exports, and thin entry points into the runtime. Not a stable API.

pub use crate::state::{StateNeed, StateParam, needs_of};
/// What `Workflow::required_state` returns.
pub type StateNeeds = Vec<StateNeed>;
pub use crate::workflow::{
    CallTree, CalledBy, Callee, StepIdClash, fingerprint, fingerprint_calls, step_id_clash, str_eq,
};
pub use crate::{
    Compensation, Engine, Error, RetryPolicy, RunHandle, SignalName, StartOptions, Step, StepError, StepOf,
    StepOptions, StepTransaction, Workflow, WorkflowClient, WorkflowContext, WorkflowError, WorkflowOptions,
};

/// The run-time half of the duplicate step ID check, called by every
/// `#[step]` before its step: fails the run if a different step
/// function (`function`, its Rust path), or a step called without
/// `#[step]`, used the base ID `id` earlier in this run.
pub async fn claim_step_id(ctx: &WorkflowContext, id: &str, function: &'static str) {
    ctx.run.claim_step_id(id, function).await;
}

/// Converts a step body's error (a function, so that user crates see no
/// `useless_conversion` lint when the error already is a `StepError`).
pub fn into_step_error<E: Into<StepError>>(e: E) -> StepError {
    e.into()
}

/// Converts a workflow body's error.
pub fn into_workflow_error<E: Into<WorkflowError>>(e: E) -> WorkflowError {
    e.into()
}

/// A context whose steps are answered from `history` (completed steps,
/// as [`crate::RecordedStep::completed`] builds them), for the CPU
/// benchmark of replay; a step beyond the history would write through
/// `store` under a lease it does not hold, and fail. `None` for an
/// empty history.
pub fn replay_context(
    store: hydra_store::Store,
    codec: crate::Codec,
    history: Vec<crate::RecordedStep>,
) -> Option<WorkflowContext> {
    crate::context::replay_context(store, codec, history)
}
