//! Patches: changing a workflow's code while runs are in flight.
//! `if ctx.patched("add-fraud-check").await { … new code … } else { … old
//! code … }`: a run that reaches that point on the new code records a
//! marker there and takes the new branch, on every replay; a run whose
//! history already has something else at that point (recorded by the old
//! code) takes the old branch, and the call takes no position, so its
//! history replays as it was. Once no run that took the old branch is
//! left, delete the old branch and replace `patched` with
//! `deprecate_patch` (runs that recorded the marker skip it); later still,
//! delete that too.

use super::WorkflowContext;

use crate::error::StepError;
use hydra_store::StepId;

/// The prefix of a patch marker's step ID: `hydra.patch:{id}`.
const PATCH_PREFIX: &str = hydra_store::reserved::step::PATCH;

impl WorkflowContext {
    /// Whether this run takes the new code at patch `id` (see the module
    /// documentation): `true` for runs that reach this point on this code,
    /// also on replays; `false` for runs whose history has something else
    /// here (recorded before the patch). An invalid ID fails the run.
    pub async fn patched(&self, id: &str) -> bool {
        let base = self.patch_base(id).await;
        let run = &*self.run;
        match run.recorded(run.peek_position()) {
            Some(rec) if rec.step_id.base() == base => {
                // Its marker, recorded: the call takes its place, no write.
                self.slot(&base);
                true
            }
            // Recorded by the code before the patch: the old branch.
            Some(_) => false,
            // This run is here for the first time: on this code.
            None => {
                let options = super::StepOptions::new(base).retry(super::marker_retry());
                let marked: Result<bool, StepError> = self.own_step_with(options, |_s| async { Ok(true) }).await;
                match marked {
                    Ok(b) => b,
                    Err(e) => match run.fail_run(format!("could not record patch `{id}`: {e}")).await {},
                }
            }
        }
    }

    /// For a patch whose old branch is gone: a run that recorded its marker
    /// here skips it; any other run records nothing. (Runs that took the old
    /// branch must have ended before.)
    pub async fn deprecate_patch(&self, id: &str) {
        let base = self.patch_base(id).await;
        let run = &*self.run;
        if run.recorded(run.peek_position()).is_some_and(|rec| rec.step_id.base() == base) {
            self.slot(&base);
        }
    }

    async fn patch_base(&self, id: &str) -> String {
        let base = format!("{PATCH_PREFIX}{id}");
        if let Err(why) = StepId::validate_base(&base) {
            match self.run.fail_run(format!("invalid patch ID: {}", why.replace("step ID", "patch ID"))).await {}
        }
        base
    }
}
