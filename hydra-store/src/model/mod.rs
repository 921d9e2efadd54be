//! Domain types the store accepts and returns. Rows are converted into these
//! before they leave the crate, so callers never see raw status strings.
//!
//! - `execution`: a run, creating and listing runs, how a run ends, cancelling;
//! - `step`: a step row, recording a step attempt or result, the open step;
//! - `admission`: which runs a worker may take (the claim's rule and the direct start's);
//! - `lease`: claims and their proof (the lease), renewals, worker liveness;
//! - `cron`: cron schedules;
//! - `row`: the one place database rows (and their status strings and
//!   integer columns) are converted to and from these types.

mod admission;
mod cron;
mod execution;
mod lease;
mod row;
mod step;
mod step_label;

pub use admission::Admission;
pub use cron::{CronJob, CronUpsert};
pub use execution::{
    CancelOutcome, Created, Execution, ExecutionFilter, ExecutionStatus, NewExecution, StartClaim, Terminal,
    TriggerType,
};
pub use lease::{ClaimRequest, ClaimedExecution, Lease, Renewed, WorkerLease};
pub(crate) use row::to_i32;
pub use step::{OpenStep, Step, StepAttempt, StepKind, StepOutcome, StepRecord, StepStatus};
