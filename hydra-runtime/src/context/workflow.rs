//! [`WorkflowContext`]: the handle a workflow function runs steps through.

use super::run::RunState;
use super::step::{StepContext, StepOptions, StepTransaction};
use crate::error::StepError;
use hydra_store::{ExecutionId, StepId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// The handle a workflow function uses to run steps and sleep. Cheap to
/// clone; every clone belongs to the same run.
#[derive(Clone, Debug)]
pub struct WorkflowContext {
    pub(crate) run: Arc<RunState>,
}

impl WorkflowContext {
    /// The run's ID.
    pub fn execution_id(&self) -> &ExecutionId {
        &self.run.lease.execution_id
    }

    /// The workflow's registered name.
    pub fn workflow_name(&self) -> &str {
        &self.run.workflow_name
    }

    /// The workflow attempt (from 1).
    pub fn attempt(&self) -> u32 {
        self.run.attempt
    }

    /// The run's namespace.
    pub fn namespace(&self) -> &str {
        &self.run.lease.namespace
    }

    /// Runs step `id` with default options. See [`WorkflowContext::step_with`].
    pub async fn step<T, F, Fut>(&self, id: &'static str, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        self.step_with(StepOptions::new(id), body).await
    }

    /// Runs a step: answered from the history if recorded; otherwise its
    /// attempt is counted durably (usually already, by the claim or by the
    /// previous step's result, so no write precedes the body), the body runs
    /// (retried by `options.retry`), and the result is recorded before it
    /// is returned.
    ///
    /// The body may run more than once only when a worker died (or lost its
    /// lease) after the body finished and before its result was recorded;
    /// use [`StepContext::idempotency_key`] for external effects.
    ///
    /// A step ID that breaks the rules of step IDs, or begins with a prefix
    /// of Hydra's own records (`hydra.`, `signal:`, `select:`, `event:`,
    /// `search:`; see [`hydra_store::reserved`]), fails the run with a clear
    /// error (`#[step(id = ...)]` refuses them at compile time); a step a
    /// run recorded under such an ID before this rule still replays.
    pub async fn step_with<T, F, Fut>(&self, options: StepOptions, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        // A step a run recorded under this ID before the rule (a history
        // written by an earlier version) still replays; only new records
        // are refused.
        let recorded_as_such =
            self.run.recorded(self.run.peek_position()).is_some_and(|r| r.step_id.base() == options.id);
        if !recorded_as_such && let Err(why) = hydra_store::reserved::step::check_user(&options.id) {
            match self.run.fail_run(format!("invalid step ID: {why}")).await {}
        }
        self.own_step_with(options, body).await
    }

    /// [`WorkflowContext::step_with`] for Hydra's own marker steps, whose
    /// IDs take the reserved prefixes.
    pub(crate) async fn own_step_with<T, F, Fut>(&self, options: StepOptions, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = &*self.run;
        if let Err(why) = StepId::validate_base(&options.id) {
            match run.fail_run(format!("invalid step ID: {why}")).await {}
        }
        if let Some(owner) = run.unclaimed_use_of_owned_id(&options.id) {
            let message = format!(
                "duplicate step ID `{}` in workflow `{}`: `{owner}` and a step called without `#[step]` \
                 (`ctx.step`, `ctx.step_with`) are different steps with the same ID in one run, so their records \
                 would be mistaken for each other's; give one of them a different ID",
                options.id, run.workflow_name
            );
            match run.fail_run(message).await {}
        }
        let slot = self.slot(&options.id);
        let span = tracing::info_span!(
            "step",
            namespace = %run.lease.namespace,
            workflow = %run.workflow_name,
            execution_id = %run.lease.execution_id,
            step_id = %slot.step_id,
            attempt = tracing::field::Empty,
        );
        self.run_step(options, body, slot).instrument(span).await
    }

    /// Runs a transactional step: its body gets a [`StepTransaction`] on the
    /// engine's database; on success the step's checkpoint is written in
    /// that transaction, under the fencing check, and committed with the
    /// body's writes. If the body fails, times out, or the worker dies or
    /// loses its lease before the commit, the body's writes are rolled back
    /// and the step runs again (retries and timeouts apply as for any step).
    /// For data in the same database the effect is exactly once.
    pub async fn transactional_step<T, F, Fut>(&self, options: StepOptions, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepTransaction, StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = Arc::clone(&self.run);
        let body = Arc::new(Mutex::new(body));
        self.step_with(options, move |s: StepContext| {
            let run = Arc::clone(&run);
            let body = Arc::clone(&body);
            async move {
                let step_id = s.step_id.clone();
                let txn = match run.env.store.begin_step_transaction().await {
                    Ok(t) => Arc::new(t),
                    Err(e) => return Err(StepError::retryable(format!("could not begin the step transaction: {e}"))),
                };
                let tx = StepTransaction { inner: Arc::clone(&txn) };
                // The user's future is created under the lock, never awaited under it.
                let attempt = {
                    let mut body = body.lock().unwrap_or_else(|p| p.into_inner());
                    (*body)(tx, s)
                };
                let result = attempt.await;
                if result.is_ok() {
                    run.pending_tx.lock().unwrap_or_else(|p| p.into_inner()).insert(step_id, txn);
                } else if let Ok(t) = Arc::try_unwrap(txn) {
                    let _ = t.rollback().await;
                }
                result
            }
        })
        .await
    }
}
