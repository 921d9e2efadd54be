//! Domain types the store accepts and returns. Rows are converted into these
//! before they leave the crate, so callers never see raw status strings.

use crate::entity::{workflow_executions, workflow_steps};
use crate::error::StoreError;
use crate::ids::{ExecutionId, FencingToken, StepId, WorkerId};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $table:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The value as stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stored value.
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::CorruptRow {
                        table: $table,
                        reason: format!("unknown {} `{other}`", stringify!($name)),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a run is in its life.
    ExecutionStatus, "workflow_executions" {
        /// Waiting for its next attempt to be claimed (first attempt or a workflow retry).
        Pending = "pending",
        /// Claimed by a worker that holds its lease.
        Running = "running",
        /// Parked inside an attempt until `due_at`: durable sleep, step retry
        /// backoff, or released by a worker that shut down.
        Sleeping = "sleeping",
        /// Finished with an output.
        Completed = "completed",
        /// Finished with an error.
        Failed = "failed",
        /// Cancelled on request.
        Cancelled = "cancelled",
        /// Ran past its deadline.
        TimedOut = "timed_out",
    }
);

impl ExecutionStatus {
    /// True for the four end states.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Failed
                | ExecutionStatus::Cancelled
                | ExecutionStatus::TimedOut
        )
    }
}

string_enum!(
    /// What started a run.
    TriggerType, "workflow_executions" {
        /// Started through the API (`start`).
        Api = "api",
        /// Started by a cron schedule.
        Cron = "cron",
    }
);

string_enum!(
    /// What a step row records.
    StepKind, "workflow_steps" {
        /// A step body (user code).
        Step = "step",
        /// A durable sleep.
        Sleep = "sleep",
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

/// A run as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Execution {
    /// Its ID.
    pub id: ExecutionId,
    /// The namespace it belongs to.
    pub namespace: String,
    /// The registered workflow name.
    pub workflow_name: String,
    /// Where it is.
    pub status: ExecutionStatus,
    /// The encoded input.
    pub input: Vec<u8>,
    /// The encoded output, once completed.
    pub output: Option<Vec<u8>>,
    /// The last error, if any.
    pub error: Option<String>,
    /// Workflow attempts allowed.
    pub max_attempts: u32,
    /// Workflow attempts begun so far (a crashed attempt counts).
    pub attempts: u32,
    /// The caller's idempotency key, unique per (namespace, workflow).
    pub idempotency_key: Option<String>,
    /// What started it.
    pub trigger_type: TriggerType,
    /// Which schedule or caller started it.
    pub trigger_source: Option<String>,
    /// When it was created (engine clock, ms).
    pub created_at: i64,
    /// When a worker first claimed it.
    pub started_at: Option<i64>,
    /// When it last changed.
    pub updated_at: i64,
    /// When it ended.
    pub completed_at: Option<i64>,
    /// Pending/sleeping: when it may be claimed. Running: when its lease
    /// expires. Terminal: `None`.
    pub due_at: Option<i64>,
    /// When the whole run times out, if it has a timeout.
    pub deadline_at: Option<i64>,
    /// The worker holding its lease while running.
    pub lease_owner: Option<WorkerId>,
    /// The fencing token of the latest claim.
    pub fencing_token: FencingToken,
    /// A cancel was requested while it was running.
    pub cancel_requested: bool,
    /// The run's open step: the first position without a result and the
    /// attempts of it counted so far (see [`OpenStep`]).
    pub open_step: OpenStep,
}

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

impl Execution {
    /// When the current lease expires (running runs only).
    pub fn lease_expires_at(&self) -> Option<i64> {
        if self.status == ExecutionStatus::Running { self.due_at } else { None }
    }
}

impl TryFrom<workflow_executions::Model> for Execution {
    type Error = StoreError;
    fn try_from(m: workflow_executions::Model) -> Result<Self, StoreError> {
        Ok(Execution {
            id: ExecutionId::from_string(m.id),
            namespace: m.namespace,
            workflow_name: m.workflow_name,
            status: ExecutionStatus::parse(&m.status)?,
            input: m.input_data,
            output: m.output_data,
            error: m.error_message,
            max_attempts: to_u32(m.max_attempts),
            attempts: to_u32(m.attempts),
            idempotency_key: m.idempotency_key,
            trigger_type: TriggerType::parse(&m.trigger_type)?,
            trigger_source: m.trigger_source,
            created_at: m.created_at,
            started_at: m.started_at,
            updated_at: m.updated_at,
            completed_at: m.completed_at,
            due_at: m.due_at,
            deadline_at: m.deadline_at,
            lease_owner: m.lease_owner.map(WorkerId::from_string),
            fencing_token: FencingToken(m.fencing_token),
            cancel_requested: m.cancel_requested,
            open_step: OpenStep { position: to_u32(m.open_position), attempts: to_u32(m.open_attempts) },
        })
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

impl TryFrom<workflow_steps::Model> for Step {
    type Error = StoreError;
    fn try_from(m: workflow_steps::Model) -> Result<Self, StoreError> {
        Ok(Step {
            execution_id: ExecutionId::from_string(m.execution_id),
            step_id: StepId::from_string(m.step_id),
            step_name: m.step_name,
            position: to_u32(m.position),
            kind: StepKind::parse(&m.kind)?,
            status: StepStatus::parse(&m.status)?,
            attempts: to_u32(m.attempts),
            max_attempts: to_u32(m.max_attempts),
            output: m.output_data,
            error: m.error_message,
            started_at: m.started_at,
            completed_at: m.completed_at,
            wake_at: m.wake_at,
            fencing_token: FencingToken(m.fencing_token),
        })
    }
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Proof of a claim: the execution, the worker and the fencing token.
/// Every write on behalf of a claimed run presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The namespace of the run.
    pub namespace: String,
    /// The run.
    pub execution_id: ExecutionId,
    /// The claiming worker.
    pub worker_id: WorkerId,
    /// The token of this claim.
    pub token: FencingToken,
}

/// A run just claimed by a worker.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClaimedExecution {
    /// The run, as it is now (status running, lease held).
    pub execution: Execution,
    /// The proof to present on every write.
    pub lease: Lease,
}

/// A request to create a run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewExecution {
    /// The ID to give it.
    pub id: ExecutionId,
    /// Its namespace.
    pub namespace: String,
    /// The workflow to run.
    pub workflow_name: String,
    /// The encoded input.
    pub input: Vec<u8>,
    /// Workflow attempts allowed (at least 1).
    pub max_attempts: u32,
    /// An idempotency key: a second create with the same key in the same
    /// (namespace, workflow) returns the first run.
    pub idempotency_key: Option<String>,
    /// What started it.
    pub trigger_type: TriggerType,
    /// Which schedule or caller started it.
    pub trigger_source: Option<String>,
    /// Now, on the engine clock (ms).
    pub now: i64,
    /// When it may first be claimed (usually `now`).
    pub due_at: i64,
    /// When the whole run times out.
    pub deadline_at: Option<i64>,
}

impl NewExecution {
    /// A run of `workflow_name` in `namespace`, due now, one attempt, started by the API.
    pub fn new(
        id: ExecutionId,
        namespace: impl Into<String>,
        workflow_name: impl Into<String>,
        input: Vec<u8>,
        now: i64,
    ) -> Self {
        NewExecution {
            id,
            namespace: namespace.into(),
            workflow_name: workflow_name.into(),
            input,
            max_attempts: 1,
            idempotency_key: None,
            trigger_type: TriggerType::Api,
            trigger_source: None,
            now,
            due_at: now,
            deadline_at: None,
        }
    }
}

/// What [`crate::Store::create_execution`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Created {
    /// A new run was inserted.
    New(Execution),
    /// A run with the same idempotency key already existed; it is returned
    /// unchanged and nothing was inserted.
    Existing(Execution),
}

impl Created {
    /// The run, new or existing.
    pub fn execution(&self) -> &Execution {
        match self {
            Created::New(e) | Created::Existing(e) => e,
        }
    }

    /// The run, new or existing.
    pub fn into_execution(self) -> Execution {
        match self {
            Created::New(e) | Created::Existing(e) => e,
        }
    }
}

/// A claim of due runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// Only this namespace's runs.
    pub namespace: String,
    /// Only runs of these workflows (those the worker has registered).
    pub workflow_names: Vec<String>,
    /// The claiming worker.
    pub worker_id: WorkerId,
    /// Now, on the engine clock (ms).
    pub now: i64,
    /// How long the lease lasts without renewal (ms).
    pub lease_ttl_ms: i64,
    /// At most this many runs.
    pub limit: u32,
}

/// The state of a run seen by a successful lease renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Renewed {
    /// The new expiry (ms).
    pub expires_at: i64,
    /// A cancel was requested; the holder should stop at its next checkpoint.
    pub cancel_requested: bool,
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

/// How a step ended (or how its latest attempt failed).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StepOutcome {
    /// The step finished with this encoded output.
    Completed(Vec<u8>),
    /// The step ended with this error (no more attempts).
    Failed(String),
    /// This attempt failed; the step will be retried (the row stays running).
    AttemptFailed(String),
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

/// How a run ends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Terminal {
    /// With this encoded output.
    Completed(Vec<u8>),
    /// With this error.
    Failed(String),
    /// Cancelled (with a reason).
    Cancelled(String),
    /// Past its deadline (with a description).
    TimedOut(String),
}

impl Terminal {
    pub(crate) fn status(&self) -> ExecutionStatus {
        match self {
            Terminal::Completed(_) => ExecutionStatus::Completed,
            Terminal::Failed(_) => ExecutionStatus::Failed,
            Terminal::Cancelled(_) => ExecutionStatus::Cancelled,
            Terminal::TimedOut(_) => ExecutionStatus::TimedOut,
        }
    }
}

/// What [`crate::Store::request_cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The run was not running; it is now cancelled.
    Cancelled,
    /// The run is running; its worker will stop it at its next checkpoint.
    Requested,
    /// The run had already ended with this status.
    AlreadyEnded(ExecutionStatus),
}

/// Which runs [`crate::Store::list_executions`] returns, newest first.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExecutionFilter {
    /// The namespace.
    pub namespace: String,
    /// Only this workflow.
    pub workflow_name: Option<String>,
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Only runs created before this time (for paging).
    pub created_before: Option<i64>,
    /// At most this many.
    pub limit: u64,
}

impl ExecutionFilter {
    /// The newest 100 runs of a namespace.
    pub fn new(namespace: impl Into<String>) -> Self {
        ExecutionFilter {
            namespace: namespace.into(),
            workflow_name: None,
            status: None,
            created_before: None,
            limit: 100,
        }
    }

    /// Only runs of `workflow`.
    pub fn workflow(mut self, workflow: impl Into<String>) -> Self {
        self.workflow_name = Some(workflow.into());
        self
    }

    /// Only runs with `status`.
    pub fn status(mut self, status: ExecutionStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// At most `limit` runs.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Only runs created before `t` (ms).
    pub fn created_before(mut self, t: i64) -> Self {
        self.created_before = Some(t);
        self
    }
}

/// A live worker, from the `leases` table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerLease {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its namespace.
    pub namespace: String,
    /// When it first registered.
    pub acquired_at: i64,
    /// Its last heartbeat.
    pub heartbeat_at: i64,
    /// When it is presumed dead without another heartbeat.
    pub expires_at: i64,
}

impl ClaimRequest {
    /// A claim of up to `limit` due runs of `workflow_names` in `namespace`
    /// by `worker_id`, with leases of `lease_ttl_ms`.
    pub fn new(
        namespace: impl Into<String>,
        workflow_names: Vec<String>,
        worker_id: WorkerId,
        now: i64,
        lease_ttl_ms: i64,
        limit: u32,
    ) -> Self {
        ClaimRequest { namespace: namespace.into(), workflow_names, worker_id, now, lease_ttl_ms, limit }
    }
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

/// A cron schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CronJob {
    /// Row ID.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Schedule name, unique per namespace.
    pub name: String,
    /// The cron expression.
    pub spec: String,
    /// IANA time zone of the expression.
    pub timezone: String,
    /// The workflow each tick starts.
    pub workflow_name: String,
    /// The encoded input given to each run.
    pub input: Vec<u8>,
    /// What to do about ticks missed while no worker ran (`run_once` or `skip`).
    pub missed_policy: String,
    /// Paused schedules fire nothing.
    pub enabled: bool,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// The next tick (ms).
    pub next_run_at: i64,
    /// The last tick fired (ms).
    pub last_tick_at: Option<i64>,
}

impl From<crate::entity::cron_jobs::Model> for CronJob {
    fn from(m: crate::entity::cron_jobs::Model) -> Self {
        CronJob {
            id: m.id,
            namespace: m.namespace,
            name: m.name,
            spec: m.cron_spec,
            timezone: m.timezone,
            workflow_name: m.workflow_name.unwrap_or_default(),
            input: m.input_data.unwrap_or_default(),
            missed_policy: m.missed_policy,
            enabled: m.enabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
            next_run_at: m.next_run_at,
            last_tick_at: m.last_tick_at,
        }
    }
}

/// A schedule to create or update.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CronUpsert {
    /// Namespace.
    pub namespace: String,
    /// Schedule name.
    pub name: String,
    /// The cron expression.
    pub spec: String,
    /// Its time zone.
    pub timezone: String,
    /// The workflow to start.
    pub workflow_name: String,
    /// The encoded input.
    pub input: Vec<u8>,
    /// Missed-tick policy.
    pub missed_policy: String,
    /// The next tick computed from now, used when the schedule is new or
    /// its expression or time zone changed.
    pub next_run_at: i64,
    /// Now (ms).
    pub now: i64,
}

impl CronUpsert {
    /// A schedule `name` in `namespace`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        spec: impl Into<String>,
        timezone: impl Into<String>,
        workflow_name: impl Into<String>,
        input: Vec<u8>,
        missed_policy: impl Into<String>,
        next_run_at: i64,
        now: i64,
    ) -> Self {
        CronUpsert {
            namespace: namespace.into(),
            name: name.into(),
            spec: spec.into(),
            timezone: timezone.into(),
            workflow_name: workflow_name.into(),
            input,
            missed_policy: missed_policy.into(),
            next_run_at,
            now,
        }
    }
}
