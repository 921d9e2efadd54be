//! Durable sleep: the wake-up time is recorded as a step and the worker is
//! released; a sleeping run costs a row, not memory.

use super::run::Interrupt;
use super::{SLEEP_STEP, WorkflowContext};
use crate::clock::duration_ms;
use hydra_store::{OpenStep, StepKind, StepOutcome, StepRecord, Transition};
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
        let (position, step_id) = run.next_step_id(SLEEP_STEP);
        let recorded = run.recorded(position);
        let wake = match recorded {
            Some(rec) => {
                self.check_recorded(rec, position, &step_id, StepKind::Sleep).await;
                rec.wake_at.unwrap_or(requested_wake)
            }
            None => requested_wake,
        };
        if recorded.is_some() && run.now() >= wake {
            return;
        }
        run.checkpoint_gate().await;
        let until = run.park_until(wake);
        if recorded.is_none() {
            let rec =
                StepRecord::new(step_id, SLEEP_STEP, position, StepKind::Sleep, 1, StepOutcome::Completed(Vec::new()))
                    .wake_at(wake);
            // The claim that wakes the run counts the next step's first attempt.
            if let Err(e) =
                run.record(rec, Transition::Sleep { until }, OpenStep::new(position.saturating_add(1), 0)).await
            {
                match run.fail_run(format!("could not record a sleep: {e}")).await {}
            }
        } else {
            if let Err(e) = run.park(until).await {
                match run.fail_run(format!("could not park the run: {e}")).await {}
            }
        }
        tracing::debug!(wake_at = wake, "sleeping durably");
        match run.halt(Interrupt::Suspended { until }).await {}
    }
}
