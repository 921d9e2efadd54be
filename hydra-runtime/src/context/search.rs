//! Search attributes set by a workflow: text values under names of the
//! user's (`order_id`, `customer_id`) by which operators find runs
//! ([`hydra_store::ExecutionFilter::search`], `hydra runs list --search`).
//! Each setting is a step of the history, so a replay does not set it again.

use super::WorkflowContext;
use crate::error::StepError;
use hydra_store::{OpenStep, StepKind, StepOutcome, StepRecord, StepStatus};

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
        let (position, step_id) = run.next_step_id(&base);
        if let Some(rec) = run.recorded(position) {
            self.check_recorded(rec, position, &step_id, StepKind::Event).await;
            if rec.status == StepStatus::Completed {
                return Ok(());
            }
        }
        run.checkpoint_gate().await;
        let record = StepRecord::new(step_id, base, position, StepKind::Event, 1, StepOutcome::Completed(Vec::new()));
        let next = OpenStep::new(position.saturating_add(1), 1);
        let written = run
            .write("search attribute", || run.store.set_search_attribute(&run.lease, &record, name, value, run.now()))
            .await;
        match written {
            Ok(()) => {
                run.moved_open(position, next);
                Ok(())
            }
            Err(e) => match run.fail_run(format!("could not set search attribute `{name}`: {e}")).await {},
        }
    }
}
