//! Error types: the engine's [`Error`], and the [`StepError`] and
//! [`WorkflowError`] that user code returns.

use hydra_store::{ExecutionId, ExecutionStatus, StepId, StoreError};
use std::fmt;

/// Everything an engine or worker call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (connection, SQL, lease loss).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded.
    #[error("could not encode {what}: {reason}")]
    Encode {
        /// What was being encoded (input, output, step output).
        what: String,
        /// The codec's message.
        reason: String,
    },
    /// A stored payload could not be decoded (code changed, bytes corrupted).
    #[error("could not decode {what} of execution {execution}: {reason}")]
    Decode {
        /// The execution.
        execution: ExecutionId,
        /// What failed to decode (input, output, or `step <id>`).
        what: String,
        /// The codec's message.
        reason: String,
    },
    /// The code called a different step at a position the history records.
    #[error(
        "non-determinism in execution {execution}: position {position} is recorded as step `{recorded}`, \
         but the code now calls `{called}`"
    )]
    NonDeterminism {
        /// The execution.
        execution: ExecutionId,
        /// The position in the run's step sequence.
        position: u32,
        /// The step the history records there.
        recorded: StepId,
        /// The step the code called.
        called: StepId,
    },
    /// No workflow of this name is registered.
    #[error("unknown workflow `{0}`")]
    UnknownWorkflow(String),
    /// No such execution in this namespace.
    #[error("execution {0} not found")]
    NotFound(ExecutionId),

    /// The awakeable was already completed or rejected: a token settles once.
    #[error("awakeable `{0}` was already completed or rejected")]
    AwakeableSettled(String),

    /// A bounded wait for a run's end ran out; the run goes on.
    #[error("execution {execution} had not ended after {waited:?}")]
    WaitTimedOut {
        /// The run.
        execution: ExecutionId,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// The run ended without an output.
    #[error("execution {execution} ended {status}: {message}")]
    RunEnded {
        /// The execution.
        execution: ExecutionId,
        /// How it ended.
        status: ExecutionStatus,
        /// Its error message.
        message: String,
    },
    /// A cron expression or time zone does not parse.
    #[error("invalid cron schedule `{spec}`: {reason}")]
    InvalidCron {
        /// The expression.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// No cron schedule of this name in this namespace.
    #[error("cron schedule `{0}` not found")]
    CronNotFound(String),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input is too large to store.
    #[error("{what} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// True when the caller's lease is gone and it must stop the run.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_lease_lost())
    }

    /// True when the same call may succeed later (transient database trouble).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_retryable())
    }
}

/// The error a step body returns.
///
/// Any `std::error::Error` converts into a *retryable* `StepError` with `?`;
/// use [`StepError::permanent`] for failures that must not be retried (a
/// declined card, a validation error).
pub struct StepError {
    message: String,
    permanent: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StepError {
    /// A failure worth retrying.
    pub fn retryable(message: impl fmt::Display) -> Self {
        StepError { message: message.to_string(), permanent: false, source: None }
    }

    /// A failure that no retry will fix: the step fails at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        StepError { message: message.to_string(), permanent: true, source: None }
    }

    /// Whether this failure must not be retried.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, when the step returned one with `?`.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    /// Makes this error permanent.
    pub fn into_permanent(mut self) -> Self {
        self.permanent = true;
        self
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for StepError {
    fn from(e: E) -> Self {
        StepError { message: e.to_string(), permanent: false, source: Some(Box::new(e)) }
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError").field("message", &self.message).field("permanent", &self.permanent).finish()
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The error a workflow function returns.
///
/// Step errors and any `std::error::Error` convert into it with `?`. A
/// workflow error is retried by the workflow's retry policy unless it is
/// permanent (a permanent step error stays permanent).
pub struct WorkflowError {
    message: String,
    permanent: bool,
}

impl WorkflowError {
    /// A failure worth retrying (the whole workflow runs again; recorded
    /// steps are not re-run).
    pub fn retryable(message: impl fmt::Display) -> Self {
        WorkflowError { message: message.to_string(), permanent: false }
    }

    /// A failure that ends the run at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        WorkflowError { message: message.to_string(), permanent: true }
    }

    /// Whether this failure must not be retried.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StepError> for WorkflowError {
    fn from(e: StepError) -> Self {
        WorkflowError { message: e.message, permanent: e.permanent }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkflowError {
    fn from(e: E) -> Self {
        WorkflowError { message: e.to_string(), permanent: false }
    }
}

impl fmt::Debug for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowError").field("message", &self.message).field("permanent", &self.permanent).finish()
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
