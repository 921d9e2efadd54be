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
//! - `backend/`: everything that differs between databases, one folder per
//!   backend behind one trait (`backend/mod.rs`): `backend/sqlite/` (the
//!   write gate, the writer thread `writer/` and its WAL checkpoint thread,
//!   wake-ups by `PRAGMA data_version` in `watch.rs`, multi-row step writes
//!   in `steps.rs`), `backend/postgres/` (`SKIP LOCKED`, wake-ups by
//!   `LISTEN` in `listen.rs`, step writes as arrays in `steps.rs`);
//! - `sql/`: statements on any connection (the pool, a transaction, a
//!   backend's own synchronous connection), rows read by declared types;
//! - `connect.rs`: opening a database by URL, with bounded connect time, and migrating it;
//! - `store/mod.rs`: the [`Store`] handle: connecting, the write gate, commit counting;
//! - `store/fence.rs`: the fencing condition every write on behalf of a claimed run carries;
//! - `store/runs.rs`: creating, reading, listing and cancelling runs;
//! - `store/claim.rs`: claiming due runs;
//! - `store/lease.rs`: renewing leases and reclaiming expired ones;
//! - `store/step_write.rs`: the step-row statements (an attempt, an outcome);
//! - `store/checkpoint.rs`: [`Checkpoint`]s: fenced run transitions, with or without a step result;
//! - `store/batch.rs`: group commit ([`Store::apply_batch`]); the step
//!   results of many runs written together by the backend (SQLite: two
//!   multi-row statements; PostgreSQL: the runs locked in ID order, then
//!   one statement of arrays);
//! - `store/cron.rs`: cron schedules;
//! - `store/workers.rs`: worker liveness rows;
//! - `store/repair.rs`: retry and fork of a run; `store/search.rs`: search attributes;
//! - `store/prune.rs`: retention; `store/copy.rs`: moving a database into another;
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

mod backend;
mod connect;
pub mod entity;
mod error;
mod ids;
mod model;
pub mod reserved;
mod sql;
mod store;

pub use backend::{Backend, WakeUp, WakeUps};
pub use connect::{Durability, StoreOptions, redact_url};
pub use error::StoreError;
pub use ids::{ExecutionId, FencingToken, StepId, WorkerId};
pub use model::{
    Admission, CancelOutcome, ClaimRequest, ClaimedExecution, Created, CronJob, CronUpsert, Execution, ExecutionFilter,
    ExecutionStatus, Lease, NewExecution, OpenStep, Renewed, StartClaim, Step, StepAttempt, StepKind, StepOutcome,
    StepRecord, StepStatus, Terminal, TriggerType, WorkerLease,
};
pub use store::{
    AwakeableDraws, BatchOp, BatchValue, COMPENSATION_MARKER, Checkpoint, DueRuns, EndedBucket, EventRow, EventValue,
    ForkRequest, MAX_SEARCH_NAME_BYTES, MAX_SEARCH_VALUE_BYTES, MoveReport, MovedTable, NewSignal, Page, Pruned,
    Receive, Received, ShowLimits, Shown, SignalRow, SignalSent, StatusCount, Store, Transition,
    check_search_attribute, child_outcome_payload,
};

/// Re-exported so that transactional code can name the connection types.
pub use sea_orm;
