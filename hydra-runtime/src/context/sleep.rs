//! Durable sleep: the wake-up time is recorded as a step and the worker is
//! released; a sleeping run costs a row, not memory.

use super::call::{Entered, Replayed};
use super::{SLEEP_STEP, WorkflowContext};
use crate::clock::duration_ms;
use hydra_store::{OpenStep, Step, StepKind, StepOutcome, StepRecord, Transition};
use std::time::Duration;

impl WorkflowContext {
    /// Sleeps durably for `duration`: the wake-up time is recorded as a step
    /// and the worker is released; the run resumes after it. On replay the
    /// recorded wake-up time is used, so a resumed run does not sleep again.
    pub async fn sleep(&self, duration: Duration) {
        let wake = self.run.now().saturating_add(duration_ms(duration));
        self.sleep_inner(wake).await
    }

    /// Sleeps durably until `wake_at_ms` on the engine clock.
    pub async fn sleep_until(&self, wake_at_ms: i64) {
        self.sleep_inner(wake_at_ms).await
    }

    async fn sleep_inner(&self, requested_wake: i64) {
        let run = &*self.run;
        let slot = self.slot(SLEEP_STEP);
        // The recorded wake-up holds on replay: a resumed run does not sleep again.
        let recorded_wake = |rec: &Step| rec.wake_at.unwrap_or(requested_wake);
        let read = |rec: &Step| if run.now() >= recorded_wake(rec) { Replayed::Answer(()) } else { Replayed::Resume };
        let (wake, recorded) = match self.enter(&slot, StepKind::Sleep, read).await {
            Entered::Answered(()) => return,
            Entered::Resumed(rec) => (recorded_wake(rec), true),
            Entered::New => (requested_wake, false),
        };
        run.checkpoint_gate().await;
        let until = run.park_until(wake);
        let parked = if recorded {
            // Woken early (a cancel, a release): parked again, no record.
            run.park(until).await.map_err(|e| (e, "could not park the run"))
        } else {
            let rec = StepRecord::new(
                slot.step_id.clone(),
                SLEEP_STEP,
                slot.position,
                StepKind::Sleep,
                1,
                StepOutcome::Completed(Vec::new()),
            )
            .wake_at(wake);
            // The claim that wakes the run counts the next step's first attempt.
            let open = OpenStep::new(slot.position.saturating_add(1), 0);
            run.record(rec, Transition::Sleep { until }, open).await.map_err(|e| (e, "could not record a sleep"))
        };
        if let Err((e, what)) = parked {
            match run.write_failed(e, |e| format!("{what}: {e}")).await {}
        }
        tracing::debug!(wake_at = wake, "sleeping durably");
        match self.parked(until).await {}
    }
}
