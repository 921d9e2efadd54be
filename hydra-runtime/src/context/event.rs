//! Publishing events: a durable key/value a run sets while it runs (a
//! status a checkout page shows), read by clients with
//! [`crate::Engine::event`]. Each publication is a step of the history, so
//! a replay does not publish an old value over a newer one.

use super::WorkflowContext;
use super::call::{Entered, Replayed};
use crate::error::{Error, StepError};
use hydra_store::{Step, StepKind, StepOutcome, StepRecord, StepStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The prefix of an event's step ID: `event:{key}`.
const EVENT_STEP_PREFIX: &str = hydra_store::reserved::step::EVENT;

impl WorkflowContext {
    /// Publishes event `key` = `value`, durably, replacing its previous
    /// value; clients read it with [`crate::Engine::event`] while the run
    /// goes on. A value its codec would not read back is a permanent error.
    pub async fn set_event<T: Serialize + DeserializeOwned>(&self, key: &str, value: &T) -> Result<(), StepError> {
        let run = &*self.run;
        if let Err(why) = super::validate_signal_name(key) {
            match run.fail_run(format!("invalid event key: {}", why.replace("signal name", "event key"))).await {}
        }
        let base = format!("{EVENT_STEP_PREFIX}{key}");
        let slot = self.slot(&base);
        let done =
            |rec: &Step| if rec.status == StepStatus::Completed { Replayed::Answer(()) } else { Replayed::Resume };
        if let Entered::Answered(()) = self.enter(&slot, StepKind::Event, done).await {
            return Ok(());
        }
        run.checkpoint_gate().await;
        let bytes = run.env.codecs.encode_checked(run.env.codec, value).map_err(|reason| {
            StepError::permanent(Error::Encode { what: format!("event `{key}`"), reason }.to_string())
        })?;
        run.env.fits(|| format!("event `{key}`"), bytes.len()).map_err(StepError::permanent)?;
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
            "event",
            || run.env.store.set_event(&run.lease, &record, key, &bytes, run.now()),
            |e| format!("could not publish event `{key}`: {e}"),
        )
        .await;
        Ok(())
    }
}
