//! Error types: the engine's [`Error`], and the [`StepError`] and
//! [`WorkflowError`] that user code returns.

use crate::codec::CodecRegistry;
use hydra_store::{ExecutionId, ExecutionStatus, StepId, StoreError};
use std::fmt;

/// Everything an engine or worker call can fail with. One situation has
/// one variant, whichever call meets it: an unknown run is always
/// [`Error::NotFound`], an ended run [`Error::RunEnded`], an operation that
/// does not apply [`Error::Refused`], a bad URL or setting [`Error::Config`];
/// [`Error::Store`] is left for the database itself failing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed: the connection, a statement, a lost lease, a
    /// row this version cannot read, a database sealed by a move.
    #[error(transparent)]
    Store(StoreError),
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

    /// No run drew this awakeable token: it names a run that exists, but
    /// that run never issued it (a forged, mistyped or altered token).
    #[error("awakeable `{0}` was never issued by its run")]
    UnknownAwakeable(String),

    /// A bounded wait for a run's end ran out; the run goes on.
    #[error("execution {execution} had not ended after {waited:?}")]
    WaitTimedOut {
        /// The run.
        execution: ExecutionId,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// The run has ended, and what was asked needs it not to have: its
    /// result, when it ended without an output (the message is its error);
    /// a signal or an awakeable's settlement, whatever its end (the
    /// message says what was refused).
    #[error("execution {execution} ended {status}: {message}")]
    RunEnded {
        /// The execution.
        execution: ExecutionId,
        /// How it ended.
        status: ExecutionStatus,
        /// Its error message, or what was refused.
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
    /// An operation that does not apply to the run as it is (a retry of a
    /// running run, a fork past its history, a move into a database in
    /// use); nothing was changed. The text says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// A payload is too large to store: above the engine's one limit for
    /// every stored payload (inputs, outputs, signals, events, typed errors).
    #[error("{what} is {size} bytes, above the payload limit of {limit} bytes (`EngineBuilder::max_payload_bytes`)")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// A store error as the API reports it: the situations a caller matches get
/// their own variants (see [`Error`]); the database's own failures stay
/// [`Error::Store`].
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ExecutionNotFound { execution, .. } => Error::NotFound(execution),
            StoreError::RunEnded { execution, status } => {
                Error::RunEnded { execution, status, message: "it takes no more signals".into() }
            }
            StoreError::Refused { reason, .. } | StoreError::MoveRefused(reason) => Error::Refused(reason),
            e @ (StoreError::InvalidUrl { .. } | StoreError::UnsupportedScheme { .. }) => Error::Config(e.to_string()),
            e => Error::Store(e),
        }
    }
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
    /// The messages of the source's own sources, outermost first.
    causes: Vec<String>,
    typed: Option<TypedError>,
}

/// A user-defined error value carried by a [`StepError`] or
/// [`WorkflowError`] ([`StepError::typed`]).
#[derive(Clone)]
pub(crate) enum TypedError {
    /// As the code made it, not yet encoded; `check` decodes an encoding of
    /// it back to its own type (a value that would not read back is
    /// refused when it is recorded, as outputs are).
    Value {
        value: std::sync::Arc<dyn erased_serde::Serialize + Send + Sync>,
        check: fn(&CodecRegistry, &[u8]) -> Result<(), String>,
    },
    /// As recorded (tagged by its codec).
    Encoded { bytes: Vec<u8>, codecs: CodecRegistry },
}

fn reads_back<E: serde::de::DeserializeOwned>(codecs: &CodecRegistry, bytes: &[u8]) -> Result<(), String> {
    codecs.decode::<E>(bytes).map(|_| ())
}

impl TypedError {
    fn of<E>(e: E) -> TypedError
    where
        E: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        TypedError::Value { value: std::sync::Arc::new(e), check: reads_back::<E> }
    }

    /// Its encoding by `codec`, checked to read back.
    pub(crate) fn encode(&self, codecs: &CodecRegistry, codec: crate::Codec) -> Result<Vec<u8>, String> {
        match self {
            TypedError::Encoded { bytes, .. } => Ok(bytes.clone()),
            TypedError::Value { value, check } => {
                let bytes = codecs.encode(codec, &**value)?;
                check(codecs, &bytes).map_err(|e| format!("it does not read back: {e}"))?;
                Ok(bytes)
            }
        }
    }

    fn decode<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        match self {
            TypedError::Encoded { bytes, codecs } => codecs.decode(bytes).ok(),
            TypedError::Value { value, .. } => {
                let codecs = CodecRegistry::builtin();
                let bytes = codecs.encode(crate::Codec::Json, &**value).ok()?;
                codecs.decode(&bytes).ok()
            }
        }
    }
}

/// The messages of `e`'s sources, outermost first.
fn causes_of(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(s) = next {
        out.push(storable(s.to_string()));
        next = s.source();
        if out.len() >= 32 {
            break;
        }
    }
    out
}

/// `message`, then each cause on its own line.
/// An error message as it is stored, the same on every backend and on the
/// first run as on a replay: a NUL (which PostgreSQL's text cannot hold)
/// becomes U+FFFD.
fn storable(message: String) -> String {
    if message.contains('\0') { message.replace('\0', "\u{FFFD}") } else { message }
}

fn with_causes(message: &str, causes: &[String]) -> String {
    let mut text = message.to_owned();
    for c in causes {
        text.push_str("\ncaused by: ");
        text.push_str(c);
    }
    text
}

impl StepError {
    /// A failure worth retrying.
    pub fn retryable(message: impl fmt::Display) -> Self {
        StepError {
            message: storable(message.to_string()),
            permanent: false,
            source: None,
            causes: Vec::new(),
            typed: None,
        }
    }

    /// A failure that no retry will fix: the step fails at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        StepError {
            message: storable(message.to_string()),
            permanent: true,
            source: None,
            causes: Vec::new(),
            typed: None,
        }
    }

    /// A permanent failure carrying `error`, a value of your own error type
    /// (`PaymentError::Declined { code }`): it is recorded with the step
    /// (encoded by the run's codec, checked to read back), returned the same
    /// on replays ([`StepError::typed_as`]), and kept when it becomes the
    /// workflow's error with `?`, so callers read it back typed
    /// ([`crate::RunHandle::result_typed`]). The message is its `Display`.
    pub fn typed<E>(error: E) -> Self
    where
        E: serde::Serialize + serde::de::DeserializeOwned + fmt::Display + Send + Sync + 'static,
    {
        let message = storable(error.to_string());
        StepError { message, permanent: true, source: None, causes: Vec::new(), typed: Some(TypedError::of(error)) }
    }

    /// The typed error this failure carries, as `E`; `None` if it carries
    /// none or it does not decode as `E`.
    pub fn typed_as<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        self.typed.as_ref()?.decode()
    }

    /// The message followed by the messages of its source's causes, one per
    /// line (`caused by: …`): the text recorded with the step.
    pub fn full_message(&self) -> String {
        with_causes(&self.message, &self.causes)
    }

    /// [`StepError::full_message`] with `note` after the message's own line.
    pub(crate) fn full_message_noting(&self, note: &str) -> String {
        with_causes(&format!("{}{note}", self.message), &self.causes)
    }

    pub(crate) fn typed_error(&self) -> Option<&TypedError> {
        self.typed.as_ref()
    }

    /// This error carrying the recorded typed error `bytes`.
    pub(crate) fn with_recorded(mut self, bytes: Vec<u8>, codecs: &CodecRegistry) -> Self {
        self.typed = Some(TypedError::Encoded { bytes, codecs: codecs.clone() });
        self
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
        let causes = causes_of(&e);
        StepError { message: storable(e.to_string()), permanent: false, source: Some(Box::new(e)), causes, typed: None }
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
    causes: Vec<String>,
    typed: Option<TypedError>,
}

impl WorkflowError {
    /// A failure worth retrying (the whole workflow runs again; recorded
    /// steps are not re-run).
    pub fn retryable(message: impl fmt::Display) -> Self {
        WorkflowError { message: storable(message.to_string()), permanent: false, causes: Vec::new(), typed: None }
    }

    /// A failure that ends the run at once.
    pub fn permanent(message: impl fmt::Display) -> Self {
        WorkflowError { message: storable(message.to_string()), permanent: true, causes: Vec::new(), typed: None }
    }

    /// A permanent failure with `error`, a value of your own error type: it
    /// is stored with the run (encoded by the run's codec) and read back
    /// typed with [`crate::RunHandle::result_typed`] or
    /// [`crate::WorkflowRun::error`]. The message is its `Display`.
    pub fn typed<E>(error: E) -> Self
    where
        E: serde::Serialize + serde::de::DeserializeOwned + fmt::Display + Send + Sync + 'static,
    {
        let message = storable(error.to_string());
        WorkflowError { message, permanent: true, causes: Vec::new(), typed: Some(TypedError::of(error)) }
    }

    /// The typed error this failure carries, as `E`, if it carries one that
    /// decodes as `E`.
    pub fn typed_as<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        self.typed.as_ref()?.decode()
    }

    /// The message and its causes, one per line: the text stored with the
    /// run.
    pub fn full_message(&self) -> String {
        with_causes(&self.message, &self.causes)
    }

    /// [`WorkflowError::full_message`] with `note` after the message's own
    /// line.
    pub(crate) fn full_message_noting(&self, note: &str) -> String {
        with_causes(&format!("{}{note}", self.message), &self.causes)
    }

    pub(crate) fn typed_error(&self) -> Option<&TypedError> {
        self.typed.as_ref()
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
        WorkflowError { message: e.message, permanent: e.permanent, causes: e.causes, typed: e.typed }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for WorkflowError {
    fn from(e: E) -> Self {
        WorkflowError { message: storable(e.to_string()), permanent: false, causes: causes_of(&e), typed: None }
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
