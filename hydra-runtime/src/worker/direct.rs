//! Runs claimed at their start: a start whose engine has a worker of the
//! workflow with a free slot creates the run already under that worker's
//! lease (the claim is part of the statement that inserts it) and hands it
//! over to the worker in this process, so the run costs no claim write and
//! waits for no poll or wake-up.
//!
//! Fairness: a start takes a slot directly only when the worker's last
//! claim took fewer runs than it asked for (nothing more was due) and left
//! a slot free, and no claim is in flight; a start that takes the last
//! free slot clears that state. Otherwise the start is queued as usual and
//! the worker claims in due order, so a backlog the worker knows of is not
//! overtaken. A run that becomes due meanwhile is claimed in due order by
//! the claim its wake-up sends (a start or a timer here, a signal, a
//! freed slot, `LISTEN` or the commit watcher for other processes); what
//! wakes nothing (an expired lease of a dead worker, a sleep longer than
//! the wake-up horizon) is found by the next poll, and direct starts may
//! run before it until then.
//!
//! The insert and the hand-over run on a task of their own, so a caller
//! that stops waiting for its start (a timeout, a dropped request) cannot
//! leave a run leased to a worker that never heard of it.

use super::Shared;
use super::drive::{drive, hand_back};
use crate::clock::duration_ms;
use crate::engine::{Engine, LocalWorker, Reservation};
use hydra_store::{ClaimedExecution, Created, Execution, Lease, NewExecution, StartClaim, StoreError};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

/// A worker as its engine knows it (see [`LocalWorker`]), held weakly.
#[derive(Clone)]
pub(crate) struct Taker(Weak<Shared>);

impl std::fmt::Debug for Taker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.0.upgrade().map(|s| s.id.to_string());
        f.debug_tuple("Taker").field(&id).finish()
    }
}

impl Taker {
    pub(super) fn new(shared: &Arc<Shared>) -> Taker {
        Taker(Arc::downgrade(shared))
    }
}

impl LocalWorker for Taker {
    fn is_gone(&self) -> bool {
        self.0.strong_count() == 0
    }

    fn hear_cancel(&self, id: &hydra_store::ExecutionId) {
        if let Some(s) = self.0.upgrade() {
            super::cancels::hear_cancel(&s, id);
        }
    }

    /// A free slot of this worker for a new run of `name` at `version`, if
    /// the worker runs that workflow and version, is claiming, and has no
    /// due run waiting (see the module docs).
    fn reserve(&self, name: &str, version: Option<u32>) -> Option<Box<dyn Reservation>> {
        let s = self.0.upgrade()?;
        if s.stop_claiming.is_cancelled() {
            return None;
        }
        if !s.admission.admits(name, version) {
            return None;
        }
        if !s.drained.load(Ordering::Acquire) {
            return None;
        }
        let permit = Arc::clone(&s.slots).try_acquire_owned().ok()?;
        if s.slots.available_permits() == 0 {
            // Full: what becomes due meanwhile may find no slot and wake no
            // claim (the commit watcher claims only with a free slot), so
            // the next slot to free claims first.
            s.drained.store(false, Ordering::SeqCst);
        }
        Some(Box::new(Reserved { shared: s, permit: Some(permit), sent: tokio::time::Instant::now() }))
    }
}

impl Reservation for Reserved {
    fn create(
        self: Box<Self>,
        engine: &Engine,
        new: NewExecution,
    ) -> futures_util::future::BoxFuture<'_, Result<Created, StoreError>> {
        let engine = engine.clone();
        Box::pin(async move { create_claimed(&engine, *self, new).await })
    }
}

/// Creates `new` claimed for `reserved`'s worker and hands it over, on a
/// task of its own: once sent, the insert is followed by the hand-over (or,
/// after an error, by a give-back) even if the caller stops waiting.
async fn create_claimed(engine: &Engine, reserved: Reserved, mut new: NewExecution) -> Result<Created, StoreError> {
    new.claim = Some(reserved.claim());
    let engine = engine.clone();
    // On the worker's runtime, like the runs it claims: a start made from
    // another (shorter-lived) runtime cannot take the run down with it.
    let runtime = reserved.shared.runtime.clone();
    let task = runtime.spawn(
        async move {
            let (namespace, id) = (new.namespace.clone(), new.id.clone());
            match engine.inner.store.create_execution(new).await {
                Ok(created) => {
                    if let Created::New(e) = &created {
                        crate::new_run::started(e, true);
                        reserved.hand_over(e.clone()).await;
                    }
                    Ok(created)
                }
                Err(e) => {
                    // It may have been created (a lost commit reply): then
                    // it is given back rather than left leased to nobody.
                    reserved.give_back(&namespace, &id).await;
                    Err(e)
                }
            }
        }
        .in_current_span(),
    );
    match task.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Transient("the runtime shut down while the run was being started".into())),
    }
}

/// A slot reserved for a run being started; dropping it frees the slot.
pub(crate) struct Reserved {
    shared: Arc<Shared>,
    /// Taken by the hand-over; a slot given back unused wakes a claim (see
    /// the `Drop`).
    permit: Option<OwnedSemaphorePermit>,
    /// The lease's local clock starts before the insert is sent.
    sent: tokio::time::Instant,
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved").field("worker", &self.shared.id).finish()
    }
}

impl Reserved {
    /// The claim the start's insert makes for this worker.
    pub(crate) fn claim(&self) -> StartClaim {
        StartClaim::new(self.shared.id.clone(), duration_ms(self.shared.config.lease_ttl))
    }

    /// Drives `execution`, just created under [`Reserved::claim`], on the
    /// worker; hands it back (due at once, for any worker) if the worker
    /// stopped meanwhile.
    pub(crate) async fn hand_over(mut self, execution: Execution) {
        let s = Arc::clone(&self.shared);
        let Some(permit) = self.permit.take() else { return };
        let lease = Lease {
            namespace: execution.namespace.clone(),
            execution_id: execution.id.clone(),
            worker_id: s.id.clone(),
            token: execution.fencing_token,
        };
        let (back_exec, back_lease) = (execution.clone(), lease.clone());
        // As in a claim: either this spawn happens before the worker's Drop
        // takes the lock after cancelling (and Drop aborts it), or it is
        // skipped and the run handed back.
        let spawned = {
            let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
            if s.stop_claiming.is_cancelled() {
                false
            } else {
                crate::metrics::lease_acquired(s.engine.namespace(), s.id.as_str(), &back_exec.workflow_name);
                crate::metrics::queue_time(s.engine.namespace(), &back_exec.workflow_name, 0.0);
                let claimed = ClaimedExecution::new(execution, lease);
                runs.spawn_on(drive(Arc::clone(&s), claimed, permit, self.sent), &s.runtime);
                true
            }
        };
        if !spawned && hand_back(&s.engine, &back_exec, &back_lease).await.is_ok() {
            // Due at once: another worker of this engine may take it.
            s.engine.inner.work.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// After a start whose outcome is unknown (its commit's reply was
    /// lost): gives the run back in case it was created under
    /// [`Reserved::claim`], due at once for any worker and not a new
    /// attempt. If it was not created, the fenced write finds no row and
    /// changes nothing.
    pub(crate) async fn give_back(&self, namespace: &str, id: &hydra_store::ExecutionId) {
        let lease = Lease {
            namespace: namespace.to_owned(),
            execution_id: id.clone(),
            worker_id: self.shared.id.clone(),
            token: hydra_store::FencingToken::FIRST,
        };
        let engine = &self.shared.engine;
        let cp = hydra_store::Checkpoint::transition(hydra_store::Transition::Release)
            .open(hydra_store::OpenStep::new(0, 0));
        match engine.inner.store.checkpoint(&lease, cp, engine.clock().now_ms()).await {
            Ok(()) => engine.inner.work.send_modify(|n| *n = n.wrapping_add(1)),
            Err(e) => tracing::debug!(execution_id = %id, error = %e, "no run to give back after a failed start"),
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            // A slot given back unused (the start found its run already
            // there, or failed): as when a run ends, it claims, so what
            // became due while it was taken is not left for the poll.
            drop(permit);
            self.shared.wake.notify_one();
        }
    }
}
