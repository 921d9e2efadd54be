//! What stops a run: the one enum of how a run's workflow future ends
//! ([`RunEnd`]), the first stop that wins (`halt`, `interrupt`), and the
//! checkpoint gate every new durable call passes (cancel, deadline, drain).

use super::run::RunState;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;

/// How a run's workflow future stopped, whoever stopped it: the body
/// returned (an output, an error, a panic); the run stopped itself or was
/// stopped (parked, refused, cancelled, timed out, a lease lost, a drain);
/// or, after its compensations, how it ends. One enum from the body to the
/// worker's last write (`worker/drive.rs`); the store's
/// [`hydra_store::Terminal`] is the end it writes, and
/// [`super::compensate::EndCause`] the cause a compensation marker records.
#[derive(Clone, Debug)]
pub(crate) enum RunEnd {
    /// The body returned this encoded output.
    Output(Vec<u8>),
    /// The body's output cannot be stored (the message: it did not encode,
    /// or is over the payload limit).
    OutputRefused(String),
    /// The body returned this error.
    Failed(Arc<crate::error::WorkflowError>),
    /// The body panicked (its message).
    Panicked(String),
    /// Parked until `until` (already written); the worker may poke its poll
    /// loop then.
    Suspended { until: i64 },
    /// End the run failed with this message.
    Fail(String),
    /// End the run cancelled.
    Cancel,
    /// End the run timed out.
    TimeOut(String),
    /// End the run for this cause: set before the run was driven (cancel
    /// requested, deadline passed, out of attempts) or found recorded (a
    /// compensation under way); its compensations run first.
    End(super::compensate::EndCause),
    /// Suspend the run: its code does not replay its history (the message
    /// names both steps and the position).
    Suspend(String),
    /// A write of a durable call failed in the database for a reason that
    /// is not transient and not a refusal of Hydra's (a statement timeout,
    /// a full disk, a trigger): the message. The body's attempt fails as if
    /// it had returned that error (retried by the workflow's policy,
    /// compensated at the last); in a compensation, the run is handed back
    /// to go on compensating after a backoff.
    StoreFailed(String),
    /// Stop without writing: the lease is gone.
    LeaseLost,
    /// Stop and hand the lease back (worker shutting down).
    Release,
    /// Compensated (or nothing to compensate): end the run so.
    Ended(hydra_store::Terminal),
}

impl RunEnd {
    /// Whether the body returned (rather than being stopped).
    pub(crate) fn returned(&self) -> bool {
        matches!(self, RunEnd::Output(_) | RunEnd::OutputRefused(_) | RunEnd::Failed(_) | RunEnd::Panicked(_))
    }
}

impl RunState {
    /// Why the run was stopped (lease lost, cancelled, parked, …), if it was.
    pub(crate) fn current_interrupt(&self) -> Option<RunEnd> {
        self.stops.interrupt.borrow().clone()
    }

    /// Signals the worker (first signal wins) and never returns.
    pub(crate) async fn halt(&self, why: RunEnd) -> Infallible {
        if matches!(why, RunEnd::Suspended { .. }) {
            crate::metrics::parked(&self.lease.namespace, &self.workflow_name);
        }
        self.raise(why);
        std::future::pending::<Infallible>().await
    }

    /// Clears the interrupt (the body's stop), for the compensation phase,
    /// keeping a drain; returns a receiver of the next one.
    pub(crate) fn reset_interrupt(&self) -> watch::Receiver<Option<RunEnd>> {
        self.stops.interrupt.send_replace(None);
        if self.stops.draining.load(std::sync::atomic::Ordering::SeqCst) {
            self.raise(RunEnd::Release);
        }
        self.stops.interrupt.subscribe()
    }

    /// A cancel was accepted for the run: its step bodies are told (their
    /// token is cancelled) and it stops at its next durable call, where its
    /// compensations run (they run on a token of their own and go on).
    pub(crate) fn hear_cancel(&self) {
        self.stops.cancel_requested.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stops.cancel.cancel();
    }

    /// Raises an interrupt from outside the workflow (heartbeat, shutdown).
    pub(crate) fn interrupt(&self, why: RunEnd) {
        self.raise(why);
    }

    /// Records the first interrupt (later ones are ignored) and, unless the
    /// run merely parked, cancels its step bodies.
    fn raise(&self, why: RunEnd) {
        // A stop, not a body's return or a run's settled end: those travel
        // by the workflow future's output, never by the interrupt.
        debug_assert!(!why.returned() && !matches!(why, RunEnd::Ended(_)), "raised a non-stop: {why:?}");
        self.stops.interrupt.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(why);
                true
            } else {
                false
            }
        });
        if !matches!(self.stops.interrupt.borrow().as_ref(), Some(RunEnd::Suspended { .. })) {
            self.stops.cancel.cancel();
            if self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
                self.undo.undo_cancel.cancel();
            }
        }
    }

    /// Stops the body because the run passed its deadline, unless its
    /// compensations have begun (they run past the deadline: it is why they
    /// run) or it was stopped already. The check and the stop are one step
    /// under the interrupt's lock, which compensation's start also takes,
    /// so a deadline seen just before compensations begin cannot cancel them.
    pub(crate) fn interrupt_past_deadline(&self, why: RunEnd) {
        let raised = self.stops.interrupt.send_if_modified(|slot| {
            if slot.is_none() && !self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
                *slot = Some(why);
                true
            } else {
                false
            }
        });
        if raised {
            self.stops.cancel.cancel();
        }
    }

    /// Checks that apply at every checkpoint: cancellation, deadline, drain.
    pub(super) async fn checkpoint_gate(&self) {
        if self.replay.verifying.load(std::sync::atomic::Ordering::SeqCst) {
            // The end of the recorded history: it replayed this far.
            match self.halt(RunEnd::Release).await {}
        }
        let compensating = self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst);
        if !compensating {
            let stop = self.stops.stop.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(cause) = stop {
                match self.halt(RunEnd::End(cause)).await {}
            }
        }
        if !compensating && self.stops.cancel_requested.load(std::sync::atomic::Ordering::SeqCst) {
            match self.halt(RunEnd::Cancel).await {}
        }
        if let Some(d) = self.deadline_at
            && !compensating
            && self.now() >= d
        {
            match self.halt(RunEnd::TimeOut("the run passed its deadline".into())).await {}
        }
        if self.stops.draining.load(std::sync::atomic::Ordering::SeqCst) {
            match self.halt(RunEnd::Release).await {}
        }
    }

    /// This code does not replay the run (`message` says why): suspended
    /// or failed, by the workflow's [`crate::OnNondeterminism`].
    pub(super) async fn refuse(&self, message: String) -> Infallible {
        match self.policy.on_nondeterminism {
            crate::workflow::OnNondeterminism::Suspend => self.halt(RunEnd::Suspend(message)).await,
            _ => self.fail_run(message).await,
        }
    }

    /// A durable call's write failed (`e`, past the retries of transient
    /// failures in [`RunState::write`]; `message` says what of the run was
    /// not written): a failure of the database's ends the attempt as
    /// [`RunEnd::StoreFailed`], anything else Hydra refused fails the run.
    pub(super) async fn write_failed(
        &self,
        e: hydra_store::StoreError,
        message: impl FnOnce(&hydra_store::StoreError) -> String,
    ) -> Infallible {
        let message = message(&e);
        if let hydra_store::StoreError::Moved { to } = &e {
            // The database was moved: nothing more is written here, and
            // nothing of the run runs (it lives in the new database).
            tracing::error!(execution_id = %self.lease.execution_id, moved_to = %to, "{message}");
            return self.halt(RunEnd::LeaseLost).await;
        }
        if matches!(e, hydra_store::StoreError::Database(_)) {
            tracing::error!(execution_id = %self.lease.execution_id, "{message}");
            return self.halt(RunEnd::StoreFailed(message)).await;
        }
        self.fail_run(message).await
    }

    pub(super) async fn fail_run(&self, message: String) -> Infallible {
        tracing::error!(execution_id = %self.lease.execution_id, "{message}");
        self.halt(RunEnd::Fail(message)).await
    }
}
