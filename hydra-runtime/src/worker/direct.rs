//! Runs claimed at their start: a start whose engine has a worker of the
//! workflow with a free slot creates the run already under that worker's
//! lease (the claim is part of the statement that inserts it) and hands it
//! over to the worker in this process, so the run costs no claim write and
//! waits for no poll or wake-up.
//!
//! Fairness: a start takes a slot directly only when the worker's last
//! claim took fewer runs than it asked for (nothing more was due) and no
//! claim was skipped since for want of a free slot. Otherwise the start is
//! queued as usual and the worker claims in due order. So a backlog is
//! never overtaken; a run that becomes due meanwhile (queued here, a timer,
//! a signal, another process) is claimed in due order by the claim its
//! wake-up or the next slot freeing or poll sends, at most that claim's
//! round trip later than it would have been.

use super::Shared;
use super::drive::{drive, hand_back};
use crate::clock::duration_ms;
use hydra_store::{ClaimedExecution, Execution, Lease, StartClaim};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use tokio::sync::OwnedSemaphorePermit;

/// A worker's offer to take runs at their start, held weakly by its engine.
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

    /// Whether the worker is gone (dropped).
    pub(crate) fn is_gone(&self) -> bool {
        self.0.strong_count() == 0
    }

    /// A free slot of this worker for a new run of `name` at `version`, if
    /// the worker runs that workflow and version, is claiming, and has no
    /// due run waiting (see the module docs).
    pub(crate) fn reserve(&self, name: &str, version: Option<u32>) -> Option<Reserved> {
        let s = self.0.upgrade()?;
        if s.stop_claiming.is_cancelled() {
            return None;
        }
        let i = s.names.iter().position(|n| n == name)?;
        if let (Some(v), Some((from, to))) = (version, s.versions.get(i)) {
            if v < *from || v > *to {
                return None;
            }
        }
        if !s.drained.load(Ordering::Acquire) {
            return None;
        }
        let permit = Arc::clone(&s.slots).try_acquire_owned().ok()?;
        Some(Reserved { shared: s, permit, sent: tokio::time::Instant::now() })
    }
}

/// A slot reserved for a run being started; dropping it frees the slot.
pub(crate) struct Reserved {
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
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
    pub(crate) async fn hand_over(self, execution: Execution) {
        let s = self.shared;
        let lease = Lease {
            namespace: execution.namespace.clone(),
            execution_id: execution.id.clone(),
            worker_id: s.id.clone(),
            token: execution.fencing_token,
        };
        crate::metrics::lease_acquired(s.engine.namespace(), s.id.as_str(), &execution.workflow_name);
        crate::metrics::queue_time(s.engine.namespace(), &execution.workflow_name, 0.0);
        let (back_exec, back_lease) = (execution.clone(), lease.clone());
        // As in a claim: either this spawn happens before the worker's Drop
        // takes the lock after cancelling (and Drop aborts it), or it is
        // skipped and the run handed back.
        let spawned = {
            let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
            if s.stop_claiming.is_cancelled() {
                false
            } else {
                let claimed = ClaimedExecution::new(execution, lease);
                runs.spawn(drive(Arc::clone(&s), claimed, self.permit, self.sent));
                true
            }
        };
        if !spawned {
            let _ = hand_back(&s.engine, &back_exec, &back_lease).await;
        }
    }

    /// After a start whose outcome is unknown (its commit's reply was
    /// lost): gives the run back in case it was created under
    /// [`Reserved::claim`], due at once for any worker and not a new
    /// attempt. If it was not created, the fenced write finds no row and
    /// changes nothing.
    pub(crate) async fn give_back(self, namespace: &str, id: &hydra_store::ExecutionId) {
        let lease = Lease {
            namespace: namespace.to_owned(),
            execution_id: id.clone(),
            worker_id: self.shared.id.clone(),
            token: hydra_store::FencingToken::FIRST,
        };
        let engine = &self.shared.engine;
        let cp = hydra_store::Checkpoint::transition(hydra_store::Transition::Release)
            .open(hydra_store::OpenStep::new(0, 0));
        if let Err(e) = engine.store().checkpoint(&lease, cp, engine.clock().now_ms()).await {
            tracing::debug!(execution_id = %id, error = %e, "no run to give back after a failed start");
        }
    }
}
