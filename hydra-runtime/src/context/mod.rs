//! The workflow's side of a run: checkpointed replay of steps, attempts,
//! retries and durable sleep ([`WorkflowContext`]), and what a step body
//! sees ([`StepContext`]).
//!
//! A run's workflow function runs again from the top every time the run is
//! claimed. Each step call takes the next position in the run; the step ID
//! is formed by [`StepId::new`](hydra_store::StepId::new) from the base ID
//! and the call's occurrence number. If the history records that position,
//! the call is answered from it (or, if the history names a different step
//! there, the run fails with a non-determinism error). Otherwise the attempt
//! is counted durably before the body runs, usually already (by the claim,
//! or by the previous step's result, on the run's open step: see
//! [`hydra_store::OpenStep`]), else by a write of its own; the result is
//! recorded, under the lease's fencing token, before it is handed back to
//! the workflow.
//!
//! When the run must stop (sleep, durable backoff, cancel, timeout, lost
//! lease, non-determinism), the step call never returns: it signals the
//! worker, which drops the workflow future.
//!
//! Rooms:
//! - `run`: the run's state under one lease (history, cursor, open step);
//! - `stop`: how a run stops (`RunEnd`; the first stop wins) and the
//!   checkpoint gate every new durable call passes;
//! - `fenced`: the run's fenced writes, retried through transient failures;
//! - `hand_back`: the run's own parks counted, so a lease it gave back is
//!   not taken for a lost one;
//! - `call`: the one shape of a durable call (its slot, its meeting with
//!   the history, its write);
//! - `workflow`: [`WorkflowContext`] and its step entry points;
//! - `execute`: one step call, from the history or through its attempts;
//! - `sleep`: durable sleep;
//! - `signal`: receiving signals (buffered, once each, in order; parked waits);
//! - `event`: publishing events (durable key/values clients read);
//! - `search`: search attributes;
//! - `awakeable`: completion tokens for external systems;
//! - `child`: child workflows, started once, awaited durably;
//! - `patch`: patches, so new code and old runs agree;
//! - `compensate`: sagas' compensations, run once each, newest first;
//! - `step`: [`StepContext`], [`StepOptions`], [`StepTransaction`].

mod awakeable;
mod call;
mod child;
mod compensate;
mod event;
mod execute;
mod fenced;
mod hand_back;
mod patch;
mod run;
mod search;
mod signal;
mod sleep;
mod step;
mod stop;
mod workflow;

pub use awakeable::Awakeable;
pub(crate) use awakeable::{Settled, parse_token};
pub use child::{ChildHandle, ChildOptions};
pub use compensate::Compensation;
pub(crate) use compensate::{
    COMPENSATE_STEP, EndCause, begin as begin_compensation, recorded_cause, run_compensations,
};
pub(crate) use run::{RunSetup, RunState};
pub use signal::Selected;
pub(crate) use signal::validate_signal_name;
pub use step::{StepContext, StepOptions, StepTransaction};
pub(crate) use stop::RunEnd;
pub use workflow::WorkflowContext;

use crate::clock::Clock;
use crate::codec::Codec;
use hydra_store::{Lease, OpenStep, Step, Store};
use std::time::Duration;

/// The base ID of durable sleeps in the step history.
pub(crate) const SLEEP_STEP: &str = hydra_store::reserved::step::SLEEP;

/// A context that answers steps from `history` and writes nothing while
/// they are recorded (see [`crate::__private::replay_context`]). `None` for
/// an empty history.
pub(crate) fn replay_context(store: Store, codec: Codec, history: Vec<Step>) -> Option<WorkflowContext> {
    let first = history.first()?;
    let lease = Lease {
        namespace: "replay".into(),
        execution_id: first.execution_id.clone(),
        worker_id: hydra_store::WorkerId::from_string("replay"),
        token: first.fencing_token,
    };
    let (run, _interrupts) = RunState::new(RunSetup {
        committer: None,
        work: None,
        store,
        codec,
        codecs: crate::codec::CodecRegistry::builtin(),
        max_payload_bytes: crate::DEFAULT_MAX_PAYLOAD_BYTES,
        clock: Clock::system(),
        lease,
        workflow_name: "replay".into(),
        attempt: 1,
        deadline_at: None,
        history: Some(history),
        open_step: OpenStep::default(),
        inline_backoff: Duration::ZERO,
        write_patience: Duration::ZERO,
        state: Default::default(),
        on_nondeterminism: crate::workflow::OnNondeterminism::Fail,
    });
    Some(WorkflowContext { run })
}

/// The retry policy of Hydra's marker steps (see
/// [`crate::describe::MARKER_ATTEMPTS`]).
fn marker_retry() -> crate::RetryPolicy {
    crate::RetryPolicy::attempts(crate::describe::MARKER_ATTEMPTS)
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
