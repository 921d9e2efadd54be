//! Child workflows: a run starts a run of another workflow and awaits its
//! result durably. The child's ID derives from the parent's ID and the
//! start's step ID (so from its position in the parent), and the start is a
//! recorded step whose body inserts the child under that ID as its
//! idempotency key: a replay, or a crash between the insert and its record,
//! never starts a second child. The parent parks while it waits; the
//! child's end reaches it as a signal written in the commit that ends the
//! child.
//!
//! Cancel policy: cancelling the parent ([`crate::Engine::cancel`]) cancels
//! its running children, and theirs, unless a start said otherwise
//! ([`ChildOptions::cancel_with_parent`]). A parent that ends on its own
//! (completes without awaiting a child, fails, times out) leaves its
//! children running; their ends are then recorded for no one. A detached
//! start links nothing: no parent, not awaited, not cancelled.

use super::WorkflowContext;
use crate::error::StepError;
use crate::workflow::Workflow;
use hydra_store::ExecutionId;
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

    /// The name that stands for this child's end among the names given to
    /// [`WorkflowContext::select`]; take its result with
    /// [`crate::Selected::child`].
    pub fn select_name(&self) -> String {
        hydra_store::reserved::signal::child(&self.id)
    }
}

/// A child's end as the parent received it: its output, or a permanent
/// error naming how it ended.
pub(crate) fn child_result<O: serde::de::DeserializeOwned>(
    codecs: &crate::codec::CodecRegistry,
    parent: &ExecutionId,
    child: &ExecutionId,
    bytes: &[u8],
) -> Result<O, StepError> {
    if let Some((&hydra_store::reserved::payload_tag::CHILD_END, rest)) = bytes.split_first() {
        let text = String::from_utf8_lossy(rest);
        let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
        return Err(StepError::permanent(format!("child run {child} ended {status}: {message}")));
    }
    codecs.decode::<O>(bytes).map_err(|reason| {
        let e = crate::Error::Decode {
            execution: parent.clone(),
            what: format!("the result of child run {child}"),
            reason,
        };
        StepError::permanent(e.to_string())
    })
}

/// Options of a child start ([`WorkflowContext::start_child_with`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChildOptions {
    /// Whether cancelling the parent cancels this child (default `true`).
    pub cancel_with_parent: bool,
}

impl Default for ChildOptions {
    fn default() -> Self {
        ChildOptions { cancel_with_parent: true }
    }
}

impl ChildOptions {
    /// The defaults: the child is cancelled with its parent.
    pub fn new() -> Self {
        ChildOptions::default()
    }

    /// `false`: cancelling the parent leaves this child running (it is
    /// still the parent's child: listed, and awaited if the parent awaits).
    pub fn cancel_with_parent(mut self, yes: bool) -> Self {
        self.cancel_with_parent = yes;
        self
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

    /// [`WorkflowContext::child`] with options (the cancel policy).
    pub async fn child_with<W: Workflow>(
        &self,
        input: W::Input,
        options: ChildOptions,
    ) -> Result<W::Output, StepError> {
        let handle = self.start_child_with::<W>(input, options).await?;
        self.await_child(&handle).await
    }

    /// Starts a run of `W` as this run's child, once (see the module
    /// documentation), and returns its handle without waiting.
    pub async fn start_child<W: Workflow>(&self, input: W::Input) -> Result<ChildHandle<W::Output>, StepError> {
        self.start_child_with::<W>(input, ChildOptions::default()).await
    }

    /// [`WorkflowContext::start_child`] with options (the cancel policy).
    pub async fn start_child_with<W: Workflow>(
        &self,
        input: W::Input,
        options: ChildOptions,
    ) -> Result<ChildHandle<W::Output>, StepError> {
        let id = self.start_run::<W>(input, Some(options)).await?;
        Ok(ChildHandle { id, _output: PhantomData })
    }

    /// Starts a run of `W`, once, with no link to this run: it is not
    /// awaited and not cancelled with this run. Returns its ID.
    pub async fn start_detached<W: Workflow>(&self, input: W::Input) -> Result<ExecutionId, StepError> {
        self.start_run::<W>(input, None).await
    }

    /// Waits for a child's result (the run is parked meanwhile).
    pub async fn await_child<O: serde::de::DeserializeOwned>(&self, child: &ChildHandle<O>) -> Result<O, StepError> {
        let name = hydra_store::reserved::signal::child(&child.id);
        let bytes = self.recv_raw_payload(&name).await;
        child_result(&self.run.env.codecs, &self.run.lease.execution_id, &child.id, &bytes)
    }

    /// Starts a child (`link` set) or a detached run (`None`).
    async fn start_run<W: Workflow>(
        &self,
        input: W::Input,
        link: Option<ChildOptions>,
    ) -> Result<ExecutionId, StepError> {
        let linked = link.is_some();
        let cancel_with_parent = link.is_none_or(|o| o.cancel_with_parent);
        let run = std::sync::Arc::clone(&self.run);
        let bytes = crate::new_run::encode_input::<W>(&run.env.codecs, run.env.codec, &input, || {
            format!("the input of child `{}`", W::NAME)
        })
        .map_err(|e| StepError::permanent(e.to_string()))?;
        let base = hydra_store::reserved::step::child(W::NAME, linked);
        let started: String = self
            .own_step_with(super::StepOptions::new(base), move |s| {
                let run = std::sync::Arc::clone(&run);
                let bytes = bytes.clone();
                async move {
                    let id = child_id(s.execution_id(), s.step_id());
                    let defaults = W::options();
                    let rules = crate::new_run::Rules {
                        namespace: &run.lease.namespace,
                        max_payload_bytes: run.env.max_payload_bytes,
                        now: run.env.clock.now_ms(),
                    };
                    let new = crate::new_run::NewRun {
                        name: W::NAME,
                        input: bytes,
                        input_stored: false,
                        version: Some(W::VERSION),
                        defaults: &defaults,
                        options: crate::new_run::StartOptions::default(),
                        origin: crate::new_run::Origin::Child {
                            id: id.clone(),
                            parent: run.lease.execution_id.clone(),
                            linked,
                            cancel_with_parent,
                        },
                    }
                    .build(rules)
                    .map_err(|e| StepError::permanent(format!("could not start the child run: {e}")))?;
                    let created = run
                        .env
                        .store
                        .create_execution(new)
                        .await
                        .map_err(|e| StepError::retryable(format!("could not start the child run: {e}")))?;
                    if let hydra_store::Created::New(e) = &created {
                        crate::new_run::started(e, false);
                        crate::metrics::child_started(&run.lease.namespace, &run.workflow_name, W::NAME);
                        tracing::info!(child = %id, child_workflow = W::NAME, linked, "started a child run");
                    }
                    if let Some(work) = &run.env.work {
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
        // The same in every build and process: a replay elsewhere after a
        // deploy must find the child it started, not start a second one.
        assert_eq!(child_id(&parent, &first).as_str(), "14b651f9-7d30-5557-bba6-433f44094909");
    }
}
