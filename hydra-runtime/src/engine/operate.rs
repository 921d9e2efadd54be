//! An operator's view and hands: runs nobody can run
//! ([`Engine::unclaimable`]), ending a run by decision ([`Engine::fail`]),
//! and taking a suspended run up again ([`Engine::resume`]).

use super::Engine;
use crate::error::Error;
use crate::runs::Unclaimable;
use hydra_store::{ExecutionId, ExecutionStatus};

impl Engine {
    /// Runs that are due but that no live worker of this namespace
    /// registers (its workflow, or that version of it): how many, and how
    /// long the oldest has waited. Workers also export it as the gauge
    /// `hydra_runs_unclaimable` and log it, every minute.
    pub async fn unclaimable(&self) -> Result<Vec<Unclaimable>, Error> {
        self.runs().unclaimable().await
    }

    /// Ends run `id` at once, `failed` with `reason`, if it is not running
    /// (pending, sleeping, or suspended because its code does not replay
    /// it): an operator's decision; nothing of the run runs (no
    /// compensations), its parent is told, its children are cancelled (as
    /// with [`Engine::cancel`]). A running or ended run is left
    /// as it is: [`Error::Refused`] says which it is.
    pub async fn fail(&self, id: &ExecutionId, reason: &str) -> Result<(), Error> {
        let now = self.inner.clock.now_ms();
        match self.inner.store.fail_now(&self.inner.namespace, id, reason, now).await {
            Ok(Ok(())) => {
                if let Ok(Some(e)) = self.get(id).await {
                    let seconds = now.saturating_sub(e.created_at).max(0) as f64 / 1000.0;
                    crate::metrics::workflow_ended(&e.namespace, &e.workflow_name, "failed", seconds);
                }
                self.inner.done.send_modify(|n| *n = n.wrapping_add(1));
                // Its children go with it, as with a cancel.
                self.cancel_children(id).await
            }
            Ok(Err(status)) => Err(Error::Refused(format!(
                "run {id} is {status}: only a run that is not running (pending, sleeping, suspended) can be failed{}",
                if status == ExecutionStatus::Running { "; cancel it instead" } else { "" }
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes suspended run `id` up again: it is due now, for any worker of
    /// its workflow and version, the code that suspended it included.
    ///
    /// A suspended run resumes by itself when a worker with other code (a
    /// fix) starts: other code, by the fingerprint of the workflow's
    /// function, the steps and helpers it calls. The fingerprint does not see
    /// every change (a payload type's definition, a plain function the
    /// workflow calls): after such a fix, resume the run by hand. If the code
    /// still does not replay it, the run is suspended again. Also for a run
    /// other code took up that no worker of that code claimed (it left):
    /// the code that suspended it may take it then. Any other run is left
    /// as it is: [`Error::Refused`] says what it is.
    pub async fn resume(&self, id: &ExecutionId) -> Result<(), Error> {
        let now = self.inner.clock.now_ms();
        match self.inner.store.resume_now(&self.inner.namespace, id, now).await {
            Ok(Ok(())) => {
                self.inner.work.send_modify(|n| *n = n.wrapping_add(1));
                Ok(())
            }
            Ok(Err(status)) => {
                Err(Error::Refused(format!("run {id} is {status}: only a suspended run can be resumed")))
            }
            Err(e) => Err(e.into()),
        }
    }
}
