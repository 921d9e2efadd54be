//! The read model: what an operator (or an application) sees of one
//! namespace: runs and their whole story, cron schedules, live workers,
//! counts by status, ends per minute, runs nobody can run. The `hydra` CLI
//! and the web console read through it, never the store. Get one from
//! [`Engine::runs`](crate::Engine::runs); it is cheap to clone.
//!
//! It sits below the engine: it holds the engine's store, namespace and
//! clock, not the engine. Writes (cancel, retry, fork, signals, schedules,
//! prunes) stay on [`Engine`](crate::Engine).

mod detail;
mod workers;

pub use detail::RunDetail;
pub use hydra_store::{
    EndedBucket, EventRow, MoveReport, MovedTable, Page, Pruned, ShowLimits, Shown, SignalRow, StatusCount,
};
pub use workers::{LiveWorker, Registration, Unclaimable, Workers};

use crate::clock::Clock;
use crate::error::Error;
use hydra_store::{CronJob, Execution, ExecutionFilter, ExecutionId, Step, Store};

/// The read model of one namespace (see the module docs).
#[derive(Clone, Debug)]
pub struct Runs {
    store: Store,
    namespace: String,
    clock: Clock,
}

impl Runs {
    pub(crate) fn new(store: Store, namespace: String, clock: Clock) -> Self {
        Runs { store, namespace, clock }
    }

    /// The namespace it reads.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Now, on the engine's clock (ms since the Unix epoch).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A run of this namespace.
    pub async fn get(&self, id: &ExecutionId) -> Result<Option<Execution>, Error> {
        Ok(self.store.get_execution(&self.namespace, id).await?)
    }

    /// Runs of this namespace, newest first (`filter`'s namespace is
    /// replaced by this one).
    pub async fn list(&self, filter: ExecutionFilter) -> Result<Vec<Execution>, Error> {
        let mut f = filter;
        f.namespace = self.namespace.clone();
        Ok(self.store.list_executions(&f).await?)
    }

    /// The recorded steps of a run, in call order.
    ///
    /// Once the run has ended, a step or a wait still open reads as
    /// failed, with the reason ([`Step::closed_by`]): it will never finish.
    pub async fn steps(&self, id: &ExecutionId) -> Result<Vec<Step>, Error> {
        let steps = self.store.steps(&self.namespace, id).await?;
        let Some(run) = self.get(id).await? else { return Ok(steps) };
        Ok(steps.into_iter().map(|s| s.closed_by(run.status, run.completed_at)).collect())
    }

    /// The runs that run `id` started as its children, oldest first.
    pub async fn children(&self, id: &ExecutionId) -> Result<Vec<Execution>, Error> {
        Ok(self.store.children(&self.namespace, id).await?)
    }

    /// The search attributes of run `id`, by name.
    pub async fn search_attributes(&self, id: &ExecutionId) -> Result<Vec<(String, String)>, Error> {
        Ok(self.store.search_attributes(&self.namespace, id).await?)
    }

    /// Run `id` with a page of its steps, children, signals and events
    /// and its search attributes, read within the default [`ShowLimits`]
    /// (500 rows each, payloads up to 4 KiB). [`Error::NotFound`] if this
    /// namespace has no such run.
    pub async fn detail(&self, id: &ExecutionId) -> Result<RunDetail, Error> {
        self.detail_within(id, ShowLimits::default()).await
    }

    /// [`Runs::detail`] within `limits`: the page of steps from a position,
    /// how many rows of each table, payloads up to what size.
    pub async fn detail_within(&self, id: &ExecutionId, limits: ShowLimits) -> Result<RunDetail, Error> {
        detail::read(&self.store, &self.namespace, id, limits).await
    }

    /// Every cron schedule of this namespace.
    pub async fn crons(&self) -> Result<Vec<CronJob>, Error> {
        Ok(self.store.list_crons(&self.namespace).await?)
    }

    /// One cron schedule by name.
    pub async fn cron(&self, name: &str) -> Result<Option<CronJob>, Error> {
        Ok(self.store.cron(&self.namespace, name).await?)
    }

    /// The runs of this namespace counted by workflow and status.
    pub async fn status_counts(&self) -> Result<Vec<StatusCount>, Error> {
        Ok(self.store.status_counts(&self.namespace).await?)
    }

    /// The pending run due first (its ID and due time), if any.
    pub async fn oldest_pending(&self) -> Result<Option<(ExecutionId, i64)>, Error> {
        Ok(self.store.oldest_pending(&self.namespace).await?)
    }

    /// Runs that ended since `since` (ms), counted by status per bucket of
    /// `width` ms.
    pub async fn ended_per_bucket(&self, since: i64, width: i64) -> Result<Vec<EndedBucket>, Error> {
        Ok(self.store.ended_by_bucket(&self.namespace, since, width).await?)
    }

    /// The live workers of this namespace with the runs each holds, and the
    /// runs still held by workers that are gone.
    pub async fn workers(&self) -> Result<Workers, Error> {
        workers::read(&self.store, &self.namespace, self.now_ms()).await
    }

    /// Runs that are due but that no live worker of this namespace
    /// registers (its workflow, or that version of it): how many, and how
    /// long the oldest has waited.
    pub async fn unclaimable(&self) -> Result<Vec<Unclaimable>, Error> {
        workers::unclaimable(&self.store, &self.namespace, self.now_ms()).await
    }
}
