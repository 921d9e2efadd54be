//! An operator's hands on runs, each also a command of the `hydra` tool:
//! a run's story, a page at a time ([`Engine::run_detail`]), retry and fork of a run,
//! search attributes, retention ([`Engine::prune`], [`Retention`]), cron
//! triggers, counts by status, and moving the database
//! ([`Engine::move_into`]).
//!
//! Retry and fork are single transactions that lock the run's row and
//! write only if its status and fencing token are still what they read: a
//! repair never races a live worker (a running run is refused). A prune
//! deletes only runs that have ended, checked by the delete itself. A move
//! holds the source's writers out for the whole copy (and refuses to start
//! while a lease is live).

use super::Engine;
use crate::clock::duration_ms;
use crate::error::Error;
use hydra_store::{Execution, ExecutionId, ExecutionStatus, ForkRequest, MoveReport, Pruned, StatusCount, Store};
use std::time::Duration;

/// How long finished runs are kept ([`crate::EngineBuilder::retention`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Runs that ended longer ago than this are deleted.
    pub keep: Duration,
    /// Only runs that ended in one of these states (empty: every end state).
    pub statuses: Vec<ExecutionStatus>,
    /// Runs deleted per transaction (default 500, at least 1, at most
    /// 5,000): small batches keep the write lock short, so claims and steps
    /// go on during a prune.
    pub batch: u32,
    /// The least pause between two batches (default 10 ms). The pause is
    /// also at least twice as long as the last batch took, so a prune holds
    /// the database's write lock at most a third of the time.
    pub pause: Duration,
}

impl Retention {
    /// Keep finished runs for `keep`.
    pub fn keep(keep: Duration) -> Self {
        Retention { keep, statuses: Vec::new(), batch: 500, pause: Duration::from_millis(10) }
    }

    /// Only delete runs that ended in one of `statuses`.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = ExecutionStatus>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Runs per batch (1 to 5,000).
    pub fn batch(mut self, batch: u32) -> Self {
        self.batch = batch.clamp(1, 5_000);
        self
    }

    /// The pause between batches.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

impl Engine {
    /// Run `id` with a page of its steps, children, signals and events and
    /// its search attributes, within the default [`crate::ShowLimits`] (500
    /// rows of each, payloads up to 4 KiB; see [`crate::runs::Runs::detail_within`]).
    /// [`Error::NotFound`] if this namespace has no such run.
    pub async fn run_detail(&self, id: &ExecutionId) -> Result<crate::runs::RunDetail, Error> {
        self.runs().detail(id).await
    }

    /// Retries an ended run: a `failed`, `timed_out` or `cancelled` run
    /// goes on from its last recorded step with fresh attempts (the run's
    /// and the step's); its recorded steps stay, and the failed step that
    /// ended it runs again. A deadline that has passed is dropped. Children
    /// that were cancelled with it stay cancelled.
    ///
    /// [`Error::Refused`] for a run that has not ended, a `suspended` run
    /// (it waits for code that replays it), a run whose compensations
    /// ran (fork it from before the failure instead) and a run forked past
    /// position 0 (the fork owns its steps); [`Error::NotFound`]
    /// for an unknown run.
    pub async fn retry(&self, id: &ExecutionId) -> Result<Execution, Error> {
        let now = self.clock().now_ms();
        let e = self.inner.store.retry_run(self.namespace(), id, now).await?;
        tracing::info!(execution_id = %id, workflow = %e.workflow_name, "run retried by an operator");
        self.inner.work.send_modify(|n| *n = n.wrapping_add(1));
        Ok(e)
    }

    /// Forks run `id`: a new run of the same workflow (and version) whose
    /// history keeps the origin's steps at positions below `from_position`
    /// and runs the rest, with `input` (encoded, as by
    /// [`Engine::codecs`]) or the origin's input. The fork records trigger
    /// [`TriggerType::Fork`](crate::TriggerType::Fork) with the origin's ID as its source; the origin
    /// is not touched. The origin's search attributes are copied; its
    /// events, signals and children are not.
    ///
    /// A changed input replays the kept steps as they were recorded: a
    /// workflow whose calls depend on the input may then not replay
    /// (its run is suspended as non-deterministic, as after a deploy).
    /// [`Error::Refused`] for a position past the recorded history, a kept
    /// step without a result; for a run whose compensations ran, any
    /// position but 0; a kept child start whose end the kept history does
    /// not take (the child tells the origin); a kept awakeable (its
    /// token names the origin).
    ///
    /// A fork from a position past 0 takes the kept steps over, with their
    /// compensations: one charge must not be refunded by two runs. So the
    /// origin must have ended (a running or suspended run can still fail
    /// and compensate them); once forked past 0 it can no longer be retried
    /// or forked past 0 again (fork the fork instead: it keeps the same
    /// steps).
    pub async fn fork(&self, id: &ExecutionId, from_position: u32, input: Option<Vec<u8>>) -> Result<Execution, Error> {
        let origin = self.get(id).await?.ok_or_else(|| Error::NotFound(id.clone()))?;
        let rules = self.rules();
        let defaults = crate::WorkflowOptions::default();
        let mut options = super::StartOptions::new().max_attempts(origin.max_attempts);
        options.workflow_version = origin.workflow_version;
        let input_stored = input.is_none();
        let run = crate::new_run::NewRun {
            name: &origin.workflow_name,
            input: input.unwrap_or(origin.input),
            input_stored,
            version: origin.workflow_version,
            defaults: &defaults,
            options,
            origin: crate::new_run::Origin::Fork { origin: id.clone(), id: ExecutionId::generate(rules.now) },
        }
        .build(rules)?;
        let e = self.inner.store.fork_run(&ForkRequest::new(id.clone(), from_position, run)).await?;
        tracing::info!(execution_id = %e.id, origin = %id, from_position, "run forked by an operator");
        crate::new_run::started(&e, false);
        self.inner.work.send_modify(|n| *n = n.wrapping_add(1));
        Ok(e)
    }

    /// The search attributes of run `id`, by name.
    pub async fn search_attributes(&self, id: &ExecutionId) -> Result<Vec<(String, String)>, Error> {
        Ok(self.inner.store.search_attributes(self.namespace(), id).await?)
    }

    /// Deletes the runs of this namespace that ended longer than
    /// `retention.keep` ago (with their steps, signals, events and search
    /// attributes), in batches of `retention.batch` with a pause between
    /// them (`retention.pause`, and at least twice what the batch took),
    /// until a batch finds nothing; returns what was deleted. Runs that
    /// other transactions hold (a retry, say) are left for a later prune. Runs that have not ended
    /// are never deleted.
    pub async fn prune(&self, retention: &Retention) -> Result<Pruned, Error> {
        let cutoff = self.prune_cutoff(retention)?;
        let mut total = Pruned::default();
        loop {
            let size = retention.batch.clamp(1, 5_000);
            let started = std::time::Instant::now();
            let batch = self.inner.store.prune_batch(self.namespace(), cutoff, &retention.statuses, size).await?;
            let took = started.elapsed();
            total.add(batch);
            // Only an empty batch ends it: on PostgreSQL a batch skips runs
            // that other transactions hold, and may come back short.
            if batch.runs == 0 {
                break;
            }
            tokio::time::sleep(retention.pause.max(took.saturating_mul(2))).await;
        }
        if total.runs > 0 {
            tracing::info!(runs = total.runs, steps = total.steps, "pruned finished runs");
        }
        Ok(total)
    }

    /// What [`Engine::prune`] would delete now, deleting nothing.
    pub async fn prune_dry_run(&self, retention: &Retention) -> Result<Pruned, Error> {
        let cutoff = self.prune_cutoff(retention)?;
        Ok(self.inner.store.prune_count(self.namespace(), cutoff, &retention.statuses).await?)
    }

    fn prune_cutoff(&self, retention: &Retention) -> Result<i64, Error> {
        let keep = duration_ms(retention.keep);
        if keep == i64::MAX {
            return Err(Error::Config(format!("retention period {:?} is too long", retention.keep)));
        }
        Ok(self.clock().now_ms().saturating_sub(keep))
    }

    /// The runs of this namespace counted by workflow and status.
    pub async fn status_counts(&self) -> Result<Vec<StatusCount>, Error> {
        Ok(self.inner.store.status_counts(self.namespace()).await?)
    }

    /// The namespaces of this database that hold runs (any namespace, not
    /// only this engine's), in order, at most `limit`. Whoever holds the
    /// engine learns every namespace's name: a service that hands tenants
    /// an engine each should not pass this on.
    pub async fn namespaces(&self, limit: u32) -> Result<Vec<String>, Error> {
        Ok(self.inner.store.namespaces(limit).await?)
    }

    /// The pending run due first (its ID and due time), if any.
    pub async fn oldest_pending(&self) -> Result<Option<(ExecutionId, i64)>, Error> {
        Ok(self.inner.store.oldest_pending(self.namespace()).await?)
    }

    /// Copies this engine's whole database (every namespace) into the
    /// empty database at `target_url` (opened, and migrated, here): runs in
    /// every state, steps, signals, events, search attributes and cron
    /// schedules, checked by row counts and checksums (see
    /// [`crate::runs::MoveReport`]). Refused while any lease in this
    /// database is live: stop every worker first. Runs that were pending,
    /// sleeping or waiting go on with the workers of the target. Once the
    /// copy is committed this database is sealed: it refuses every write
    /// ([`hydra_store::StoreError::Moved`], naming the target) and no engine
    /// opens it again.
    pub async fn move_to(&self, target_url: &str) -> Result<MoveReport, Error> {
        let target = Store::connect(target_url).await?;
        let report = self.move_into(&target, &hydra_store::redact_url(target_url)).await;
        let _ = target.close().await;
        report
    }

    /// [`Engine::move_to`] into an open store.
    pub(crate) async fn move_into(&self, target: &Store, target_name: &str) -> Result<MoveReport, Error> {
        let now = self.clock().now_ms();
        Ok(self.inner.store.move_into(target, target_name, now).await?)
    }
}
