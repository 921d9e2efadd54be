//! What a step body sees: [`StepContext`], the options of a step call
//! ([`StepOptions`]) and a transactional step's [`StepTransaction`].

use crate::retry::RetryPolicy;
use hydra_store::{ExecutionId, StepId};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Options of one step call. The `#[step]` macro builds these from its
/// attributes; without macros, pass them to
/// [`WorkflowContext::step_with`](super::WorkflowContext::step_with).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StepOptions {
    /// The step's base ID.
    pub id: Cow<'static, str>,
    /// Its retry policy (default: [`RetryPolicy::default`], 3 attempts).
    pub retry: RetryPolicy,
    /// A bound on each attempt's run time (default: none).
    pub timeout: Option<Duration>,
    /// The codec of its output, for Hydra's own records that any engine
    /// must read (an awakeable's token); the run's otherwise.
    pub(crate) codec: Option<crate::codec::Codec>,
}

impl StepOptions {
    /// Options for step `id` with the default retry policy and no timeout.
    pub fn new(id: impl Into<Cow<'static, str>>) -> Self {
        StepOptions { id: id.into(), retry: RetryPolicy::default(), timeout: None, codec: None }
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a step body sees.
#[derive(Clone, Debug)]
pub struct StepContext {
    pub(super) execution_id: ExecutionId,
    pub(super) step_id: StepId,
    pub(super) attempt: u32,
    pub(super) cancel: CancellationToken,
    pub(super) state: Arc<crate::state::StateMap>,
}

impl StepContext {
    /// The attempt number, from 1. A crashed attempt counts.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key that is the same on every attempt of this step in this run:
    /// `{execution}/{step}`. Pass it to external services as their
    /// idempotency key, so a body that runs again (after a crash between its
    /// effect and its checkpoint) does not repeat the effect there.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.execution_id, self.step_id)
    }

    /// The run.
    pub fn execution_id(&self) -> &ExecutionId {
        &self.execution_id
    }

    /// This step's ID.
    pub fn step_id(&self) -> &StepId {
        &self.step_id
    }

    /// True once the run was cancelled, its lease lost, or its worker is
    /// shutting down; a long body should stop early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The worker's state of type `T` ([`crate::WorkerBuilder::state`]);
    /// a permanent error naming the type if the worker has none.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<crate::State<T>, crate::StepError> {
        self.state.get::<T>()
    }

    /// Completes when [`StepContext::is_cancelled`] becomes true.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// The database transaction a transactional step's body writes through.
///
/// It dereferences to sea-orm's `DatabaseTransaction`, so entity and raw
/// statements run on it (`Entity::insert(row).exec(&*tx)`,
/// `tx.execute_unprepared(…)`). The engine writes the step's checkpoint in
/// this same transaction and commits once; do not commit or keep it.
#[derive(Clone)]
pub struct StepTransaction {
    pub(super) inner: Arc<hydra_store::sea_orm::DatabaseTransaction>,
}

impl std::fmt::Debug for StepTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepTransaction")
    }
}

impl std::ops::Deref for StepTransaction {
    type Target = hydra_store::sea_orm::DatabaseTransaction;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}
