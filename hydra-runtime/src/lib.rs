//! Hydra: a durable workflow engine for Rust.
//!
//! Write workflows as ordinary `async fn`s whose steps are checkpointed in a
//! SQL database (SQLite by default, PostgreSQL by URL). A crashed worker's
//! runs are resumed by another worker where they stopped; recorded steps are
//! never re-run; failed steps are retried by policy; sleeps are durable.
//!
//! ```no_run
//! use hydra_runtime::prelude::*;
//! use std::time::Duration;
//!
//! struct Order;
//! impl Workflow for Order {
//!     const NAME: &'static str = "order";
//!     type Input = u64;
//!     type Output = String;
//!     async fn run(&self, ctx: WorkflowContext, amount: u64) -> Result<String, WorkflowError> {
//!         let payment: String = ctx
//!             .step("charge-card", |s| async move { Ok::<_, StepError>(format!("pay-{amount}-{}", s.idempotency_key())) })
//!             .await?;
//!         ctx.sleep(Duration::from_secs(3600)).await;
//!         Ok(payment)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), hydra_runtime::Error> {
//! let engine = Engine::builder().database_url("sqlite://hydra.db?mode=rwc").namespace("prod").build().await?;
//! let worker = Worker::builder(&engine).register(Order).concurrency(32).start().await?;
//! let handle = engine.start::<Order>(42).await?;
//! let receipt: String = handle.result().await?;
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

//! # Where things live
//!
//! | module | what it owns |
//! | --- | --- |
//! | `engine` | [`Engine`] and [`EngineBuilder`] (the hub; attachments such as the web console): cancelling runs; `start` (starting runs, one or many per commit); `local_workers` (the workers of this process as the engine knows them: they take runs at their start and hear cancels); `handle` ([`RunHandle`]); `messages` (signals, awakeables, events); `repair` and `operate` (an operator's hands) |
//! | `new_run` | one road into the run table: every new run built with every check ([`StartOptions`]) |
//! | [`runs`] | the read model: runs and their whole story, schedules, workers, counts; what the CLI and the console read |
//! | `worker` | [`Worker`]: `builder` (settings, start), `claim` (poll and `LISTEN` loops, batch claims), `lease` (heartbeat and lease guard), `cancels` (cancels heard at once), `direct` (runs taken at their start), `drive` (one claimed run, claim to end), `cron_ticks`, `shutdown` |
//! | `context` | the workflow's side of a run: `run` (replay state, open step), `stop` (how a run stops, the checkpoint gate), `fenced` (fenced writes), `call` (the one shape of a durable call), `workflow` ([`WorkflowContext`]), `execute` (one step call and its attempts), `sleep` (durable sleep), `signal` (receiving signals), `event` (publishing events), `awakeable` (completion tokens), `child` (child workflows), `compensate` (sagas: [`Compensation`]), `step` ([`StepContext`]) |
//! | `commit` | the group committer: many runs' writes in one transaction, results after commit |
//! | `workflow` | the [`Workflow`] trait and the type-erased form a worker runs |
//! | `client` | typed inspection: [`WorkflowClient`], [`WorkflowRun`] |
//! | [`codec`] | payload codecs and their tags: JSON (default), bincode, custom codecs ([`CustomCodec`]), verified encoding, bounded decoding |
//! | `retry` | [`RetryPolicy`]: bounded attempts, capped exponential backoff |
//! | [`verify`] | replay verification: histories exported from a database or a file, replayed against this build's code with no side effects |
//! | `state` | [`State`]: application state (clients, pools) given to a worker and taken by steps; a workflow's needs checked when the worker starts |
//! | `cron` | [`CronSchedule`]: one run per tick across all workers |
//! | `clock` | the engine's one source of time ([`Clock`]) |
//! | `metrics` | metric names and where they are recorded; the Prometheus endpoint |
//! | `error` | [`Error`], [`StepError`], [`WorkflowError`] |
//! | [`unstable`] | the store under the engine, for Hydra's own tests and tools: not a stable API |
//!
//! `docs/ARCHITECTURE.md` in the repository is the map of the whole house.
//!
//! # Cargo features
//!
//! - `tls` (default): TLS (rustls) for PostgreSQL URLs. Without it,
//!   `sslmode=require`, `verify-ca` and `verify-full` are refused at
//!   connect, and the default `sslmode=prefer` connects unencrypted.

// The README's examples compile against this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

mod client;
mod clock;
pub mod codec;
mod commit;
mod context;
mod cron;
pub mod describe;
mod engine;
mod error;
pub mod metrics;
mod new_run;
mod retry;
pub mod runs;
mod state;
pub mod unstable;
pub mod verify;
mod worker;
mod workflow;

pub use client::{SignalName, WorkflowClient, WorkflowRun};
pub use clock::Clock;
pub use codec::{Bincode, Codec, CodecRegistry, CustomCodec, FIRST_CUSTOM_TAG, Json, PayloadCodec};
pub use context::{
    Awakeable, ChildHandle, ChildOptions, Compensation, Selected, StepContext, StepOptions, StepTransaction,
    WorkflowContext,
};
pub use cron::{CronSchedule, MissedTicks, SKIP_GRACE_MS};
pub use engine::{
    Attachment, AwakeableState, DEFAULT_DATABASE_URL, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_NAMESPACE, Engine,
    EngineBuilder, Retention, RunFailed, RunHandle, SignalOptions, StartOptions,
};
/// erased-serde, as [`CustomCodec`] uses it: implement custom codecs against this re-export.
pub use erased_serde;
pub use error::{Error, StepError, WorkflowError};
pub use hydra_macros::{step, workflow, workflow_helper};
pub use hydra_store::CronJob;
pub use hydra_store::SignalSent;
/// sea-orm, as used by the store: for transactional steps and your own tables.
pub use hydra_store::sea_orm;
pub use hydra_store::{
    Backend, CancelOutcome, Durability, Execution, ExecutionFilter, ExecutionId, ExecutionStatus, Step as RecordedStep,
    StepId, StepKind, StepStatus, StoreError, StoreOptions, TriggerType, WorkerId,
};
pub use retry::RetryPolicy;
pub use runs::{RunDetail, ShowLimits, Unclaimable};
pub use state::{State, StateNeed};
pub use worker::{Worker, WorkerBuilder};
pub use workflow::{OnNondeterminism, Payload, Step, StepOf, Workflow, WorkflowOptions};

/// Items the macros' generated code refers to. Not a stable API: names and
/// signatures may change in any release.
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;

/// Everything a workflow author needs: `use hydra_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Codec, Engine, Error, ExecutionId, ExecutionStatus, RetryPolicy, StartOptions, State, StepContext, StepError,
        StepOptions, StepTransaction, Worker, Workflow, WorkflowContext, WorkflowError, WorkflowOptions, step,
        workflow, workflow_helper,
    };
}
