//! Steps: the stored step row, a run's open step, and what recording a step
//! attempt or a step result takes.

use super::row::string_enum;
use crate::error::StoreError;
use crate::ids::{ExecutionId, FencingToken, StepId};

string_enum!(
    /// What a step row records.
    StepKind, "workflow_steps" {
        /// A step body (user code).
        Step = "step",
        /// A durable sleep.
        Sleep = "sleep",
        /// A receive of a signal (its output: the signal received, or none
        /// if the wait timed out).
        Signal = "signal",
        /// A published event (its value is in `workflow_events`).
        Event = "event",
    }
);

string_enum!(
    /// Where a step is.
    StepStatus, "workflow_steps" {
        /// An attempt was recorded and its body may be running.
        Running = "running",
        /// Finished with an output; replay returns it.
        Completed = "completed",
        /// Finished with an error that ended the step (permanent or out of attempts).
        Failed = "failed",
    }
);

/// The attempts counted for the step a run has reached but not recorded.
///
/// Every claim adds one attempt here before the run's code resumes, and
/// every step result moves it on (to the next position with one attempt
/// counted, or to the same position for a retry). So the worker holding
/// the lease finds the attempt it is about to begin already durable, and
/// a step body needs no write before it runs; a worker that dies in the
/// body leaves the attempt counted. Writes that hand the run back set the
/// count to the attempts that really began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenStep {
    /// The position of the step (0 for the first).
    pub position: u32,
    /// Attempts of that step counted (begun, or reserved for the current
    /// lease holder).
    pub attempts: u32,
}

impl OpenStep {
    /// Attempts `attempts` counted at `position`.
    pub fn new(position: u32, attempts: u32) -> Self {
        OpenStep { position, attempts }
    }
}

/// One recorded step of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The run.
    pub execution_id: ExecutionId,
    /// The step's stable ID (with occurrence suffix).
    pub step_id: StepId,
    /// The step's base name.
    pub step_name: String,
    /// Its position in the run's sequence of step calls (0-based).
    pub position: u32,
    /// Body or sleep.
    pub kind: StepKind,
    /// Where it is.
    pub status: StepStatus,
    /// Attempts begun (a crashed attempt counts).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The encoded output, once completed.
    pub output: Option<Vec<u8>>,
    /// The error that ended the step, or of the last failed attempt.
    pub error: Option<String>,
    /// When its first attempt began.
    pub started_at: i64,
    /// When it finished.
    pub completed_at: Option<i64>,
    /// For sleeps, and steps waiting out a retry backoff: the wake-up time.
    pub wake_at: Option<i64>,
    /// The fencing token under which it was last written.
    pub fencing_token: FencingToken,
}

impl Step {
    /// A step as a history export carries it, built without a database (for
    /// replay verification).
    #[allow(clippy::too_many_arguments)]
    pub fn recorded(
        execution_id: ExecutionId,
        step_id: StepId,
        step_name: String,
        position: u32,
        kind: StepKind,
        status: StepStatus,
        output: Option<Vec<u8>>,
        error: Option<String>,
        wake_at: Option<i64>,
    ) -> Step {
        Step {
            execution_id,
            step_id,
            step_name,
            position,
            kind,
            status,
            attempts: 1,
            max_attempts: 1,
            output,
            error,
            started_at: 0,
            completed_at: None,
            wake_at,
            fencing_token: FencingToken(1),
        }
    }

    /// A completed step as replay reads it, built without a database (for
    /// benchmarks). Not a stable API.
    #[doc(hidden)]
    pub fn completed(execution_id: ExecutionId, step_id: StepId, position: u32, output: Vec<u8>) -> Step {
        Step {
            execution_id,
            step_name: step_id.base().to_owned(),
            step_id,
            position,
            kind: StepKind::Step,
            status: StepStatus::Completed,
            attempts: 1,
            max_attempts: 1,
            output: Some(output),
            error: None,
            started_at: 0,
            completed_at: Some(0),
            wake_at: None,
            fencing_token: FencingToken(1),
        }
    }
}

/// Recording the start of a step attempt.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StepAttempt {
    /// The step's ID.
    pub step_id: StepId,
    /// The step's base name.
    pub step_name: String,
    /// Its position in the run.
    pub position: u32,
    /// Body or sleep.
    pub kind: StepKind,
    /// Attempts allowed.
    pub max_attempts: u32,
}

impl StepAttempt {
    /// The attempt of step `step_id` (base name `step_name`) at `position`.
    pub fn new(
        step_id: StepId,
        step_name: impl Into<String>,
        position: u32,
        kind: StepKind,
        max_attempts: u32,
    ) -> Self {
        StepAttempt { step_id, step_name: step_name.into(), position, kind, max_attempts }
    }
}

/// How a step ended (or how its latest attempt failed).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StepOutcome {
    /// The step finished with this encoded output.
    Completed(Vec<u8>),
    /// The step ended with this error (no more attempts).
    Failed(String),
    /// The step ended with this error message and a typed error, encoded
    /// (stored as the row's output).
    FailedWith(String, Vec<u8>),
    /// This attempt failed; the step will be retried (the row stays running).
    AttemptFailed(String),
    /// Waiting (a receive that parked the run): the row stays running.
    Waiting,
    /// Finished without an output (a receive whose wait timed out).
    TimedOut,
}

/// Recording a step's result.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step's ID.
    pub step_id: StepId,
    /// The step's base name.
    pub step_name: String,
    /// Its position in the run.
    pub position: u32,
    /// Body or sleep.
    pub kind: StepKind,
    /// Attempts allowed (used when no attempt row exists yet).
    pub max_attempts: u32,
    /// The attempt that produced this outcome (from 1). The row keeps the
    /// higher of this and the attempts it already counts.
    pub attempt: u32,
    /// How it ended.
    pub outcome: StepOutcome,
    /// For sleeps: when to wake.
    pub wake_at: Option<i64>,
    /// When the attempt began (default: when the record is written). A row
    /// that exists already keeps its own.
    pub started_at: Option<i64>,
}

impl StepRecord {
    /// The result of step `step_id` (base name `step_name`) at `position`.
    pub fn new(
        step_id: StepId,
        step_name: impl Into<String>,
        position: u32,
        kind: StepKind,
        max_attempts: u32,
        outcome: StepOutcome,
    ) -> Self {
        StepRecord {
            step_id,
            step_name: step_name.into(),
            position,
            kind,
            max_attempts,
            attempt: 1,
            outcome,
            wake_at: None,
            started_at: None,
        }
    }

    /// Sets when the attempt began.
    pub fn started_at(mut self, at_ms: i64) -> Self {
        self.started_at = Some(at_ms);
        self
    }

    /// Sets the attempt that produced the outcome (default 1).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the wake-up time (sleeps).
    pub fn wake_at(mut self, at: i64) -> Self {
        self.wake_at = Some(at);
        self
    }
}
