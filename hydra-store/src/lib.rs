//! Hydra's persistence layer.
//!
//! The [`Store`] holds every SQL statement the runtime needs, for SQLite
//! (a WAL-mode file, zero set-up) and PostgreSQL, and nothing else: it
//! applies writes atomically and reports what happened; deciding what to do
//! about it (retry, back off, stop a run) is the runtime's job.
//!
//! Cargo feature `tls` (default): TLS (rustls) for PostgreSQL URLs; without
//! it, `sslmode=require` and up are refused at connect and the default
//! `sslmode=prefer` connects unencrypted.
//!
//! Guarantees enforced here (and the file that enforces each):
//! - a claim is one atomic statement that hands each due run to one worker
//!   and raises its fencing token (`store/claim.rs`);
//! - every write on behalf of a claimed run is conditional on that token and
//!   fails with [`StoreError::LeaseLost`] once another claim moved it on
//!   (`store/fence.rs`);
//! - `(execution_id, step_id)` is unique in the schema, and a recorded step
//!   result is never overwritten (`store/step_write.rs`);
//! - an idempotency key yields one run per (namespace, workflow)
//!   (`store/runs.rs`);
//! - every query is scoped to one namespace.
//!
//! Where things live:
//! - `connect.rs`: opening a database by URL, with bounded connect time, and migrating it;
//! - `store/mod.rs`: the [`Store`] handle: connecting, the SQLite write gate, commit counting;
//! - `store/fence.rs`: the fencing condition every write on behalf of a claimed run carries;
//! - `store/runs.rs`: creating, reading, listing and cancelling runs;
//! - `store/claim.rs`: claiming due runs;
//! - `store/lease.rs`: renewing leases and reclaiming expired ones;
//! - `store/step_write.rs`: the step-row statements (an attempt, an outcome);
//! - `store/checkpoint.rs`: [`Checkpoint`]s: fenced run transitions, with or without a step result;
//! - `store/batch.rs`: group commit ([`Store::apply_batch`]); `store/batch_steps.rs`:
//!   the step results of many runs written together (SQLite: two multi-row
//!   statements; PostgreSQL: the runs locked in ID order, then one statement
//!   of arrays);
//! - `store/cron.rs`: cron schedules;
//! - `store/workers.rs`: worker liveness rows;
//! - `store/repair.rs`: retry and fork of a run; `store/search.rs`: search attributes;
//! - `store/prune.rs`: retention; `store/copy.rs`: moving a database into another;
//! - `writer/`: SQLite's writer thread: group commits and starts of a SQLite file run as one
//!   job each on a synchronous connection of their own (see [`StoreOptions::writer_thread`]),
//!   whose WAL is checkpointed by a second thread (`writer/checkpoint.rs`);
//! - `listen.rs`: PostgreSQL wake-ups ([`RunListener`]); `watch.rs`: SQLite wake-ups across
//!   processes ([`CommitWatcher`], `PRAGMA data_version`);
//! - `model/`: the domain types (`execution.rs`, `step.rs`, `lease.rs`, `cron.rs`), and
//!   `model/row.rs`, the one place database rows are converted to them;
//! - [`entity`]: the sea-orm entities, one per table;
//! - `error.rs`: [`StoreError`]; `ids.rs`: identifier newtypes such as [`ExecutionId`].
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
mod watch;
mod writer;

pub use connect::{Backend, StoreOptions};
pub use error::StoreError;
pub use ids::{ExecutionId, FencingToken, StepId, WorkerId};
pub use listen::{ENDED_CHANNEL, Notice, RUNS_CHANNEL, RunListener};
pub use model::{
    CancelOutcome, ClaimRequest, ClaimedExecution, Created, CronJob, CronUpsert, Execution, ExecutionFilter,
    ExecutionStatus, Lease, NewExecution, OpenStep, Renewed, StartClaim, Step, StepAttempt, StepKind, StepOutcome,
    StepRecord, StepStatus, Terminal, TriggerType, WorkerLease,
};
pub use store::{
    BatchOp, BatchValue, COMPENSATION_MARKER, Checkpoint, DueRuns, EndedBucket, EventRow, EventValue, ForkRequest,
    MAX_SEARCH_NAME_BYTES, MAX_SEARCH_VALUE_BYTES, MoveReport, MovedTable, NewSignal, Pruned, Receive, Received,
    SignalRow, SignalSent, StatusCount, Store, Transition, check_search_attribute, child_outcome_payload,
    child_signal_name,
};
pub use watch::{COMMIT_WATCH_INTERVAL, CommitWatcher};

/// Re-exported so that transactional code can name the connection types.
pub use sea_orm;
