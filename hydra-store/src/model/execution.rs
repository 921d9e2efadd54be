//! Runs: their status, the stored run, creating one, listing them, how one
//! ends and what a cancel did.

use super::row::string_enum;
use super::step::OpenStep;
use crate::error::StoreError;
use crate::ids::{ExecutionId, FencingToken, WorkerId};

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
        /// Stopped because its code no longer replays its history
        /// (non-determinism; its error names both steps): it waits, without
        /// a lease or a due time, until a worker with other code takes it
        /// up again, or an operator ends it.
        Suspended = "suspended",
        /// Failed, cancelled or timed out, and then some of its
        /// compensations failed too (its error names them).
        CompensationFailed = "compensation_failed",
    }
);

impl ExecutionStatus {
    /// True for the end states.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Failed
                | ExecutionStatus::Cancelled
                | ExecutionStatus::TimedOut
                | ExecutionStatus::CompensationFailed
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
        /// Started by another run's workflow, as its child.
        Child = "child",
        /// A fork of another run (its source: the origin's ID), made by an
        /// operator: it kept part of the origin's history.
        Fork = "fork",
        /// A trigger this version does not know (written by a newer
        /// version): informational only, so such a run still runs here.
        Other = "other",
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
    /// The run that started this one as its child, if any.
    pub parent_id: Option<ExecutionId>,
    /// Whether cancelling its parent cancels it (children only; the
    /// default, unless the start overrode it).
    pub cancel_with_parent: bool,
    /// The workflow's typed error, encoded, if it failed with one.
    pub error_data: Option<Vec<u8>>,
    /// The version of the workflow's code that started it (`None`:
    /// unversioned, any worker of the workflow may run it).
    pub workflow_version: Option<u32>,
    /// Suspended: the fingerprint of the code that could not replay it.
    pub suspended_code: Option<i64>,
}

impl Execution {
    /// When the current lease expires (running runs only).
    pub fn lease_expires_at(&self) -> Option<i64> {
        if self.status == ExecutionStatus::Running { self.due_at } else { None }
    }
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
    /// The run that started it as its child (told when it ends).
    pub parent_id: Option<ExecutionId>,
    /// Whether cancelling the parent cancels it (default `true`).
    pub cancel_with_parent: bool,
    /// The version of the workflow's code starting it (`None`: any).
    pub workflow_version: Option<u32>,
    /// User search attributes (name, value), written with the run.
    pub search_attributes: Vec<(String, String)>,
    /// Claimed at its creation: the run is inserted `running` under a first
    /// lease held by this worker (see [`StartClaim`]), in the same statement
    /// that creates it. The row's `due_at` is then the lease's expiry; this
    /// request's `due_at` is not used.
    pub claim: Option<StartClaim>,
}

/// A claim made by the statement that creates a run: a worker of the
/// starting process with a free slot takes the new run at once, so the run
/// costs no claim of its own and waits for no poll. The row is what a
/// claim of the pending run would have left: `running`, fencing token 1,
/// the worker as lease owner, the lease until `now + lease_ttl_ms`, its
/// first attempt and its first step's first attempt counted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartClaim {
    /// The worker taking the run.
    pub worker_id: WorkerId,
    /// How long its lease lasts without renewal (ms).
    pub lease_ttl_ms: i64,
}

impl StartClaim {
    /// A claim by `worker_id` with a lease of `lease_ttl_ms`.
    pub fn new(worker_id: WorkerId, lease_ttl_ms: i64) -> Self {
        StartClaim { worker_id, lease_ttl_ms }
    }
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
            parent_id: None,
            cancel_with_parent: true,
            workflow_version: None,
            search_attributes: Vec::new(),
            claim: None,
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

/// How a run ends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Terminal {
    /// With this encoded output.
    Completed(Vec<u8>),
    /// With this error.
    Failed(String),
    /// With this error message and the workflow's typed error, encoded.
    FailedWith(String, Vec<u8>),
    /// Cancelled (with a reason).
    Cancelled(String),
    /// Past its deadline (with a description).
    TimedOut(String),
    /// Its compensations did not all succeed (the message names them).
    CompensationFailed(String),
}

impl Terminal {
    pub(crate) fn status(&self) -> ExecutionStatus {
        match self {
            Terminal::Completed(_) => ExecutionStatus::Completed,
            Terminal::Failed(_) | Terminal::FailedWith(..) => ExecutionStatus::Failed,
            Terminal::CompensationFailed(_) => ExecutionStatus::CompensationFailed,
            Terminal::Cancelled(_) => ExecutionStatus::Cancelled,
            Terminal::TimedOut(_) => ExecutionStatus::TimedOut,
        }
    }
}

/// What [`crate::Store::request_cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The run had never run; it is now cancelled.
    Cancelled,
    /// The run has run: a worker stops it (running: at its next
    /// checkpoint; parked: at once), runs its compensations and ends it.
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
    /// Only runs created before this time.
    pub created_before: Option<i64>,
    /// Only runs created at or after this time.
    pub created_since: Option<i64>,
    /// Only the run(s) with this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only runs carrying every one of these search attributes (name, value).
    pub search: Vec<(String, String)>,
    /// The next page: only runs listed after this one (its creation time
    /// and ID, as the last run of the previous page had them).
    pub after: Option<(i64, ExecutionId)>,
    /// At most this many.
    pub limit: u64,
    /// Leave the payloads in the database: each run comes back with an
    /// empty input and, where it has an output, an empty one (for lists
    /// that show neither; a payload may be megabytes).
    pub without_payloads: bool,
}

impl ExecutionFilter {
    /// The newest 100 runs of a namespace.
    pub fn new(namespace: impl Into<String>) -> Self {
        ExecutionFilter {
            namespace: namespace.into(),
            workflow_name: None,
            status: None,
            created_before: None,
            created_since: None,
            idempotency_key: None,
            search: Vec::new(),
            after: None,
            limit: 100,
            without_payloads: false,
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

    /// Only runs created at or after `t` (ms).
    pub fn created_since(mut self, t: i64) -> Self {
        self.created_since = Some(t);
        self
    }

    /// Only the run(s) started with idempotency key `key` (one per workflow).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Only runs whose search attribute `name` is `value` (several calls: all of them).
    pub fn search(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.search.push((name.into(), value.into()));
        self
    }

    /// The page after `last`, the last run of the previous page.
    pub fn after(mut self, last: &Execution) -> Self {
        self.after = Some((last.created_at, last.id.clone()));
        self
    }

    /// Runs without their payloads (see [`ExecutionFilter::without_payloads`]).
    pub fn without_payloads(mut self) -> Self {
        self.without_payloads = true;
        self
    }
}
