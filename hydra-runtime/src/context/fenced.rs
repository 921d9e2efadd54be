//! The fenced writes every step, sleep and park goes through: retried
//! through transient failures for a while, a lost lease halting the run,
//! and a write whose reply was lost found committed under this lease's
//! token counted as done.

use super::run::RunState;
use super::stop::RunEnd;
use hydra_store::{Checkpoint, OpenStep, StepOutcome, StepRecord, StepStatus, StoreError, Transition};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

impl RunState {
    /// Parks the run until `until`, handing back any reserved attempt.
    pub(super) async fn park(&self, until: i64) -> Result<(), StoreError> {
        let _gate = self.park_gate().await;
        let write = self.write("park", || {
            let cp = Checkpoint::transition(Transition::Sleep { until }).open(self.open_to_hand_back());
            self.env.store.checkpoint(&self.lease, cp, self.now())
        });
        self.parking_write(write, |_| true).await
    }

    /// Runs `write`, which hands the lease back when it succeeds and
    /// `parked` says so of its result (see `handing_back`).
    pub(crate) async fn parking_write<T, E>(
        &self,
        write: impl Future<Output = Result<T, E>>,
        parked: impl FnOnce(&T) -> bool,
    ) -> Result<T, E> {
        let guard = super::hand_back::HandBack::new(&self.stops.handing_back);
        let r = write.await;
        if r.as_ref().is_ok_and(parked) {
            guard.keep();
        }
        r
    }

    /// Runs a store write, retrying transient failures for a while. A lost
    /// lease halts the run; any other failure ends it failed.
    pub(super) async fn write<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let give_up = crate::clock::instant_after(self.policy.write_patience);
        let mut pause = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_lease_lost() => {
                    tracing::warn!(execution_id = %self.lease.execution_id, "lease lost during {what}; stopping this run");
                    match self.halt(RunEnd::LeaseLost).await {}
                }
                Err(e) if e.is_retryable() && crate::clock::instant_after(pause) < give_up => {
                    tracing::warn!(execution_id = %self.lease.execution_id, error = %e, "transient failure during {what}; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.is_retryable() => {
                    // The database stayed unreachable: stop locally and let the
                    // lease expire, so a healthy worker resumes the run.
                    tracing::error!(execution_id = %self.lease.execution_id, error = %e, "giving up on {what}");
                    match self.halt(RunEnd::LeaseLost).await {}
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records a step outcome and moves the open step to `open`, if the
    /// open step is this step (as the store does: see `open_set`).
    pub(super) async fn record(
        &self,
        rec: StepRecord,
        transition: Transition,
        open: OpenStep,
    ) -> Result<(), StoreError> {
        let _gate = match transition {
            Transition::Continue => None,
            _ => Some(self.park_gate().await),
        };
        self.record_moving(rec, transition, open).await
    }

    /// [`RunState::record`] under a park gate the caller holds, if any.
    async fn record_moving(&self, rec: StepRecord, transition: Transition, open: OpenStep) -> Result<(), StoreError> {
        let at = rec.position;
        let r = self.record_inner(rec, transition, open, None).await;
        if r.is_ok() {
            self.moved_open(at, open);
        }
        r
    }

    /// Records a step outcome that parks the run. If the step is not the
    /// open step, the open step is handed back as this holder sees it
    /// ([`RunState::open_to_hand_back`]: a claim reserved an attempt for it
    /// that did not begin), but only if it is still what this holder saw: a
    /// sibling step's result committed meanwhile is not undone.
    pub(super) async fn record_parking(&self, rec: StepRecord, until: i64, attempt: u32) -> Result<(), StoreError> {
        let transition = Transition::Sleep { until };
        let _gate = self.park_gate().await;
        let seen = self.open_seen();
        if seen.position == rec.position {
            // The claim that wakes the run counts the step's next attempt.
            let open = OpenStep::new(rec.position, attempt);
            return self.record_moving(rec, transition, open).await;
        }
        let open = self.open_to_hand_back();
        self.record_inner(rec, transition, open, Some(seen)).await
    }

    /// Writes a step's record (into its transaction, for a transactional
    /// step). If an earlier try of this same write committed but its reply
    /// was lost, the retry finds the result already recorded under this
    /// lease's token and counts that as success.
    async fn record_inner(
        &self,
        rec: StepRecord,
        transition: Transition,
        open: OpenStep,
        seen: Option<OpenStep>,
    ) -> Result<(), StoreError> {
        let pending = self.pending_tx.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.step_id);
        if let Some(txn) = pending {
            let Ok(txn) = Arc::try_unwrap(txn) else {
                return Err(StoreError::Database(hydra_store::sea_orm::DbErr::Custom(format!(
                    "the transaction of step `{}` is still held by its body",
                    rec.step_id
                ))));
            };
            if matches!(rec.outcome, StepOutcome::Completed(_)) && matches!(transition, Transition::Continue) {
                return match self.env.store.commit_step_transaction(txn, &self.lease, rec, Some(open), self.now()).await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_lease_lost() => match self.halt(RunEnd::LeaseLost).await {},
                    Err(e) => {
                        // The commit may or may not have happened; the recorded
                        // history decides on the next claim. Hand the run back.
                        tracing::warn!(execution_id = %self.lease.execution_id, error = %e, "transactional step commit failed");
                        match self.halt(RunEnd::Release).await {}
                    }
                };
            }
            // Not a success (for example the output did not encode): nothing
            // the body wrote may survive.
            txn.rollback().await?;
        }
        let parks = !matches!(transition, Transition::Continue);
        let write = self.write("checkpoint", || async {
            let cp = Checkpoint::step_and(rec.clone(), transition.clone());
            let cp = match seen {
                Some(seen) => cp.open_if_unchanged(seen, open),
                None => cp.open(open),
            };
            let op = hydra_store::BatchOp::Checkpoint(self.lease.clone(), cp);
            crate::commit::write(self.env.committer.as_ref(), &self.env.store, op, self.now()).await.map(|_| ())
        });
        let result = if parks { self.parking_write(write, |_| true).await } else { write.await };
        match result {
            Err(StoreError::StepAlreadyRecorded { .. }) => {
                let ours = self
                    .env
                    .store
                    .step(&self.lease.namespace, &self.lease.execution_id, &rec.step_id)
                    .await?
                    .is_some_and(|s| s.fencing_token == self.lease.token && s.status != StepStatus::Running);
                if ours {
                    // An earlier try committed: the lease is handed back.
                    if parks {
                        self.stops.handing_back.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(())
                } else {
                    result
                }
            }
            other => other,
        }
    }
}
