//! Search attributes set by a workflow: text values under names of the
//! user's (`order_id`, `customer_id`) by which operators find runs
//! ([`hydra_store::ExecutionFilter::search`], `hydra runs list --search`).
//! Each setting is a step of the history, so a replay does not set it again.

use super::WorkflowContext;
use super::call::{Entered, Replayed};
use crate::error::StepError;
use hydra_store::{Step, StepKind, StepOutcome, StepRecord, StepStatus};

/// The prefix of a setting's step ID: `search:{name}`.
const SEARCH_STEP_PREFIX: &str = hydra_store::reserved::step::SEARCH;

impl WorkflowContext {
    /// Sets search attribute `name` = `value` of this run, durably,
    /// replacing its previous value. A name of 1 to 255 bytes without
    /// control characters and a value of at most
    /// [`hydra_store::MAX_SEARCH_VALUE_BYTES`] bytes; anything else is a
    /// permanent error of the step (the run is not failed by it).
    pub async fn set_search_attribute(&self, name: &str, value: &str) -> Result<(), StepError> {
        let run = &*self.run;
        hydra_store::check_search_attribute(name, value).map_err(StepError::permanent)?;
        let base = format!("{SEARCH_STEP_PREFIX}{name}");
        let slot = self.slot(&base);
        let done =
            |rec: &Step| if rec.status == StepStatus::Completed { Replayed::Answer(()) } else { Replayed::Resume };
        if let Entered::Answered(()) = self.enter(&slot, StepKind::Event, done).await {
            return Ok(());
        }
        run.checkpoint_gate().await;
        let record = StepRecord::new(
            slot.step_id.clone(),
            base,
            slot.position,
            StepKind::Event,
            1,
            StepOutcome::Completed(Vec::new()),
        );
        self.continued(
            &slot,
            "search attribute",
            || run.env.store.set_search_attribute(&run.lease, &record, name, value, run.now()),
            |e| format!("could not set search attribute `{name}`: {e}"),
        )
        .await;
        Ok(())
    }
}
