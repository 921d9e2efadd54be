//! Hydra's persistence layer.
//!
//! The [`Store`] holds every SQL statement the runtime needs, for SQLite
//! (a WAL-mode file, zero set-up) and PostgreSQL, and nothing else: it
//! applies writes atomically and reports what happened; deciding what to do
//! about it (retry, back off, stop a run) is the runtime's job.
//!
//! Guarantees enforced here:
//! - a claim is one atomic statement that hands each due run to one worker
//!   and raises its fencing token;
//! - every write on behalf of a claimed run is conditional on that token and
//!   fails with [`StoreError::LeaseLost`] once another claim moved it on;
//! - `(execution_id, step_id)` is unique in the schema, and a recorded step
//!   result is never overwritten;
//! - an idempotency key yields one run per (namespace, workflow);
//! - every query is scoped to one namespace.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hydra_store::StoreError> {
//! use hydra_store::{Store, StoreOptions};
//! let store = Store::connect_with(StoreOptions::new("sqlite://hydra.db?mode=rwc")).await?;
//! # Ok(()) }
//! ```

mod connect;
pub mod entity;
mod error;
mod ids;
mod listen;
mod model;
mod store;

pub use connect::{Backend, StoreOptions};
pub use error::StoreError;
pub use ids::{ExecutionId, FencingToken, StepId, WorkerId};
pub use listen::{RUNS_CHANNEL, RunListener};
pub use model::{
    CancelOutcome, ClaimRequest, ClaimedExecution, Created, CronJob, CronUpsert, Execution, ExecutionFilter,
    ExecutionStatus, Lease, NewExecution, OpenStep, Renewed, Step, StepAttempt, StepKind, StepOutcome, StepRecord,
    StepStatus, Terminal, TriggerType, WorkerLease,
};
pub use store::{BatchOp, BatchValue, Checkpoint, Store, Transition};

/// Re-exported so that transactional code can name the connection types.
pub use sea_orm;
