//! Typed inspection of runs: [`WorkflowClient`] and [`WorkflowRun`].

use crate::engine::{Engine, RunHandle, SignalOptions};
use crate::error::Error;
use crate::workflow::{StepOf, Workflow};
use hydra_store::{Execution, ExecutionFilter, ExecutionId, ExecutionStatus, SignalSent, StepId, StepStatus};
use std::marker::PhantomData;

/// A signal of workflow `W` whose payload is a `T`: the typed name
/// [`WorkflowClient::signal`] takes. `#[workflow]` generates one per receive
/// with a literal name and a written type (`ctx.recv::<Decision>("decision")`
/// gives `approval::SIGNAL_DECISION`); a hand-written workflow declares its
/// own with [`SignalName::new`].
pub struct SignalName<W, T> {
    name: &'static str,
    _types: PhantomData<fn() -> (W, T)>,
}

impl<W, T> SignalName<W, T> {
    /// The signal `name` of `W`, carrying a `T`.
    pub const fn new(name: &'static str) -> Self {
        SignalName { name, _types: PhantomData }
    }

    /// The name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<W, T> Clone for SignalName<W, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W, T> Copy for SignalName<W, T> {}

impl<W, T> std::fmt::Debug for SignalName<W, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignalName({:?})", self.name)
    }
}

/// Reads runs of one workflow with their types: `order_processing::client(&engine)`.
#[derive(Debug)]
pub struct WorkflowClient<W> {
    engine: Engine,
    _workflow: PhantomData<fn() -> W>,
}

impl<W> Clone for WorkflowClient<W> {
    fn clone(&self) -> Self {
        WorkflowClient { engine: self.engine.clone(), _workflow: PhantomData }
    }
}

impl<W: Workflow> WorkflowClient<W> {
    /// A client on `engine` for workflow `W`.
    pub fn new(engine: &Engine) -> Self {
        WorkflowClient { engine: engine.clone(), _workflow: PhantomData }
    }

    /// A run of `W` with its recorded steps, or `None` if there is no such
    /// run of this workflow in the engine's namespace.
    pub async fn get(&self, id: &ExecutionId) -> Result<Option<WorkflowRun<W>>, Error> {
        let Some(execution) = self.engine.get(id).await? else { return Ok(None) };
        if execution.workflow_name != W::NAME {
            return Ok(None);
        }
        let steps = self.engine.steps(id).await?;
        Ok(Some(WorkflowRun { execution, steps, codecs: self.engine.codecs().clone(), _workflow: PhantomData }))
    }

    /// The newest `limit` runs of `W`.
    pub async fn list(&self, limit: u64) -> Result<Vec<Execution>, Error> {
        self.list_filtered(ExecutionFilter::new(self.engine.namespace()).limit(limit)).await
    }

    /// Runs of `W` matching `filter` (its workflow is replaced by `W`'s).
    pub async fn list_filtered(&self, filter: ExecutionFilter) -> Result<Vec<Execution>, Error> {
        self.engine.list(filter.workflow(W::NAME)).await
    }

    /// A typed handle on a run of `W`.
    pub fn handle(&self, id: ExecutionId) -> RunHandle<W::Output> {
        self.engine.handle(id)
    }

    /// Sends `signal` with `value` to run `id` of `W` (as
    /// [`Engine::signal`]); the payload type is the one the workflow
    /// receives, checked by the compiler. A run that is not one of `W`'s is
    /// [`Error::NotFound`].
    pub async fn signal<T>(&self, id: &ExecutionId, signal: SignalName<W, T>, value: &T) -> Result<SignalSent, Error>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.signal_with(id, signal, value, SignalOptions::new()).await
    }

    /// [`WorkflowClient::signal`] with options (an idempotency key).
    pub async fn signal_with<T>(
        &self,
        id: &ExecutionId,
        signal: SignalName<W, T>,
        value: &T,
        options: SignalOptions,
    ) -> Result<SignalSent, Error>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        match self.engine.get(id).await? {
            Some(run) if run.workflow_name == W::NAME => {}
            _ => return Err(Error::NotFound(id.clone())),
        }
        self.engine.signal_with(id, signal.name, value, options).await
    }

    /// The current value of event `key` of run `id` (as [`Engine::event`]).
    pub async fn event<T: serde::de::DeserializeOwned>(&self, id: &ExecutionId, key: &str) -> Result<Option<T>, Error> {
        self.engine.event(id, key).await
    }

    /// Waits up to `timeout` for event `key` of run `id` (as
    /// [`Engine::wait_event`]).
    pub async fn wait_event<T: serde::de::DeserializeOwned>(
        &self,
        id: &ExecutionId,
        key: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<T>, Error> {
        self.engine.wait_event(id, key, timeout).await
    }
}

/// One run of `W` with its recorded steps, read at one moment.
#[derive(Debug)]
pub struct WorkflowRun<W> {
    execution: Execution,
    steps: Vec<hydra_store::Step>,
    /// The engine's codecs, which decode the stored payloads.
    codecs: crate::codec::CodecRegistry,
    _workflow: PhantomData<fn() -> W>,
}

impl<W: Workflow> WorkflowRun<W> {
    /// The run's row: status, attempts, timings, error.
    pub fn execution(&self) -> &Execution {
        &self.execution
    }

    /// Its ID.
    pub fn id(&self) -> &ExecutionId {
        &self.execution.id
    }

    /// Where it is.
    pub fn status(&self) -> ExecutionStatus {
        self.execution.status
    }

    /// Its recorded steps in call order.
    pub fn steps(&self) -> &[hydra_store::Step] {
        &self.steps
    }

    /// The output, once completed.
    pub fn output(&self) -> Result<Option<W::Output>, Error> {
        if self.execution.status != ExecutionStatus::Completed {
            return Ok(None);
        }
        crate::engine::decode_result(&self.codecs, &self.execution).map(Some)
    }

    /// The workflow's typed error as `E`, if the run failed with one
    /// ([`crate::StepError::typed`], [`crate::WorkflowError::typed`]); a
    /// stored error that does not decode as `E` is [`Error::Decode`].
    pub fn error<E: serde::de::DeserializeOwned>(&self) -> Result<Option<E>, Error> {
        let Some(bytes) = self.execution.error_data.as_deref() else { return Ok(None) };
        self.codecs.decode(bytes).map(Some).map_err(|reason| Error::Decode {
            execution: self.execution.id.clone(),
            what: format!("its typed error as `{}`", std::any::type_name::<E>()),
            reason,
        })
    }

    /// The output of the first call of step `S`, once it completed.
    pub fn step<S: StepOf<W>>(&self) -> Result<Option<S::Output>, Error> {
        self.step_occurrence::<S>(1)
    }

    /// The output of the `n`-th call (from 1) of step `S`, once it completed.
    pub fn step_occurrence<S: StepOf<W>>(&self, n: u32) -> Result<Option<S::Output>, Error> {
        let id = StepId::new(S::ID, n);
        let Some(s) = self.steps.iter().find(|s| s.step_id == id) else { return Ok(None) };
        if s.status != StepStatus::Completed {
            return Ok(None);
        }
        self.codecs.decode(s.output.as_deref().unwrap_or_default()).map(Some).map_err(|reason| Error::Decode {
            execution: self.execution.id.clone(),
            what: format!("the stored output of step `{id}`"),
            reason,
        })
    }
}
