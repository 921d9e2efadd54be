//! Child workflows: a run starts a run of another workflow and awaits its
//! result durably. The child's ID derives from the parent's ID and the
//! start's step ID (so from its position in the parent), and the start is a
//! recorded step whose body inserts the child under that ID as its
//! idempotency key: a replay, or a crash between the insert and its record,
//! never starts a second child. The parent parks while it waits; the
//! child's end reaches it as a signal written in the commit that ends the
//! child. Cancelling the parent cancels its running children
//! ([`crate::Engine::cancel`]); a detached start links nothing.

use super::WorkflowContext;
use crate::error::StepError;
use crate::workflow::Workflow;
use hydra_store::{ExecutionId, NewExecution, TriggerType};
use std::marker::PhantomData;

/// A child run started with [`WorkflowContext::start_child`]: await it with
/// [`WorkflowContext::await_child`].
#[derive(Debug)]
pub struct ChildHandle<O> {
    id: ExecutionId,
    _output: PhantomData<fn() -> O>,
}

impl<O> Clone for ChildHandle<O> {
    fn clone(&self) -> Self {
        ChildHandle { id: self.id.clone(), _output: PhantomData }
    }
}

impl<O> ChildHandle<O> {
    /// The child run's ID.
    pub fn id(&self) -> &ExecutionId {
        &self.id
    }
}

/// The child ID of the start recorded as `step` in run `parent`.
fn child_id(parent: &ExecutionId, step: &hydra_store::StepId) -> ExecutionId {
    let name = format!("{parent}/{step}");
    ExecutionId::from_string(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string())
}

impl WorkflowContext {
    /// Starts a run of `W` with `input` as this run's child and waits for
    /// its result. The child's failure (or cancellation, or timeout) is a
    /// permanent error naming it.
    pub async fn child<W: Workflow>(&self, input: W::Input) -> Result<W::Output, StepError> {
        let handle = self.start_child::<W>(input).await?;
        self.await_child(&handle).await
    }

    /// Starts a run of `W` as this run's child, once (see the module
    /// documentation), and returns its handle without waiting.
    pub async fn start_child<W: Workflow>(&self, input: W::Input) -> Result<ChildHandle<W::Output>, StepError> {
        let id = self.start_run::<W>(input, true).await?;
        Ok(ChildHandle { id, _output: PhantomData })
    }

    /// Starts a run of `W`, once, with no link to this run: it is not
    /// awaited and not cancelled with this run. Returns its ID.
    pub async fn start_detached<W: Workflow>(&self, input: W::Input) -> Result<ExecutionId, StepError> {
        self.start_run::<W>(input, false).await
    }

    /// Waits for a child's result (the run is parked meanwhile).
    pub async fn await_child<O: serde::de::DeserializeOwned>(&self, child: &ChildHandle<O>) -> Result<O, StepError> {
        let name = hydra_store::child_signal_name(&child.id);
        let bytes = self.recv_raw_payload(&name).await;
        if let Some((&0, rest)) = bytes.split_first() {
            let text = String::from_utf8_lossy(rest);
            let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
            return Err(StepError::permanent(format!("child run {} ended {status}: {message}", child.id)));
        }
        self.run.codecs.decode::<O>(&bytes).map_err(|reason| {
            let e = crate::Error::Decode {
                execution: self.run.lease.execution_id.clone(),
                what: format!("the result of child run {}", child.id),
                reason,
            };
            StepError::permanent(e.to_string())
        })
    }

    async fn start_run<W: Workflow>(&self, input: W::Input, linked: bool) -> Result<ExecutionId, StepError> {
        let run = std::sync::Arc::clone(&self.run);
        let codec = W::options().codec.unwrap_or(run.codec);
        let bytes = run.codecs.encode_checked(codec, &input).map_err(|reason| {
            StepError::permanent(
                crate::Error::Encode { what: format!("the input of child `{}`", W::NAME), reason }.to_string(),
            )
        })?;
        let base = format!("{}:{}", if linked { "hydra.child" } else { "hydra.detached" }, W::NAME);
        let started: String = self
            .step_with(super::StepOptions::new(base), move |s| {
                let run = std::sync::Arc::clone(&run);
                let bytes = bytes.clone();
                async move {
                    let id = child_id(s.execution_id(), s.step_id());
                    let now = run.clock.now_ms();
                    let mut new = NewExecution::new(id.clone(), run.lease.namespace.clone(), W::NAME, bytes, now);
                    let options = W::options();
                    new.max_attempts = options.retry.max_attempts.max(1);
                    new.deadline_at = options.timeout.map(|t| now.saturating_add(crate::clock::duration_ms(t)));
                    // The ID as idempotency key: a second insert finds the first.
                    new.idempotency_key = Some(id.to_string());
                    new.trigger_type = TriggerType::Child;
                    new.trigger_source = Some(run.lease.execution_id.to_string());
                    new.parent_id = linked.then(|| run.lease.execution_id.clone());
                    run.store
                        .create_execution(new)
                        .await
                        .map_err(|e| StepError::retryable(format!("could not start the child run: {e}")))?;
                    if let Some(work) = &run.work {
                        work.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Ok::<_, StepError>(id.to_string())
                }
            })
            .await?;
        Ok(ExecutionId::from_string(started))
    }
}

#[cfg(test)]
mod tests {
    use super::child_id;
    use hydra_store::{ExecutionId, StepId};

    #[test]
    fn a_childs_id_is_a_function_of_its_parent_and_its_start() {
        let parent = ExecutionId::from_string("01a22f84-8c12-75ae-9529-4e894ef38472");
        let first = StepId::new("hydra.child:ship", 1);
        let second = StepId::new("hydra.child:ship", 2);
        assert_eq!(child_id(&parent, &first), child_id(&parent, &first), "a replay derives the same child");
        assert_ne!(child_id(&parent, &first), child_id(&parent, &second), "a second call is a second child");
        let other = ExecutionId::from_string("01a22f84-8c12-75ae-9529-4e894ef38473");
        assert_ne!(child_id(&parent, &first), child_id(&other, &first), "another parent, another child");
        assert!(child_id(&parent, &first).as_str().len() <= 64, "fits the ID column");
    }
}
