//! Claims and leases: what a claim asks for, the lease that proves it, what
//! a renewal sees, and worker liveness rows.

use super::Admission;
use super::execution::Execution;
use crate::ids::{ExecutionId, FencingToken, WorkerId};

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

impl ClaimedExecution {
    /// `execution`, claimed under `lease`.
    pub fn new(execution: Execution, lease: Lease) -> Self {
        ClaimedExecution { execution, lease }
    }
}

/// A claim of due runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// Only this namespace's runs.
    pub namespace: String,
    /// Only the runs the worker may take (see [`Admission`]).
    pub admission: Admission,
    /// The claiming worker.
    pub worker_id: WorkerId,
    /// Now, on the engine clock (ms).
    pub now: i64,
    /// How long the lease lasts without renewal (ms).
    pub lease_ttl_ms: i64,
    /// At most this many runs.
    pub limit: u32,
}

impl ClaimRequest {
    /// A claim of up to `limit` due runs of `workflow_names` (any version)
    /// in `namespace` by `worker_id`, with leases of `lease_ttl_ms`.
    pub fn new(
        namespace: impl Into<String>,
        workflow_names: Vec<String>,
        worker_id: WorkerId,
        now: i64,
        lease_ttl_ms: i64,
        limit: u32,
    ) -> Self {
        ClaimRequest {
            namespace: namespace.into(),
            admission: Admission::new(workflow_names),
            worker_id,
            now,
            lease_ttl_ms,
            limit,
        }
    }
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
    /// What it registers, as it recorded it (`None`: not recorded, a worker
    /// of an older version).
    pub registrations: Option<String>,
}
