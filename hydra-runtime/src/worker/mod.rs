//! [`Worker`]: claims due runs of its registered workflows, drives them,
//! heartbeats their leases, and shuts down gracefully.
//!
//! Defaults (see [`WorkerBuilder`]): concurrency 32, poll interval 1 s,
//! heartbeat every 5 s, lease TTL 30 s, claims in batches of up to 32.
//! A run started through an engine is claimed by the start itself when a
//! worker of that engine has a free slot and no backlog
//! (`direct`), and otherwise wakes an idle worker at once; runs started
//! elsewhere wake it through `LISTEN` on PostgreSQL and the commit watcher
//! on a SQLite file, and the poll finds the rest.
//!
//! Rooms:
//! - `builder`: settings, registration, validation and start;
//! - `claim`: the poll loop, the `LISTEN` loop and batch claims;
//! - `lease`: heartbeats (lease renewal) and the lease guard that stops a
//!   run before its lease can expire;
//! - `direct`: runs claimed by the start that creates them;
//! - `drive`: driving one claimed run from claim to end, park or stop;
//! - `cron_ticks`: firing due cron ticks;
//! - `shutdown`: graceful shutdown and drop.

mod builder;
mod cancels;
mod claim;
mod cron_ticks;
mod direct;
mod drive;
mod ending;
mod lease;
mod shutdown;
pub(crate) mod upkeep;

pub use builder::WorkerBuilder;
use direct::Taker;

use crate::context::RunState;
use crate::engine::Engine;
use crate::workflow::ErasedWorkflow;
use builder::WorkerConfig;
use hydra_store::{ExecutionId, WorkerId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

struct ActiveRun {
    run: Arc<RunState>,
    renewed_at: tokio::time::Instant,
}

struct Shared {
    engine: Engine,
    id: WorkerId,
    registry: HashMap<String, Arc<dyn ErasedWorkflow>>,
    /// The state its steps receive.
    state: Arc<crate::state::StateMap>,
    /// The runs it takes: its workflows, at the versions it replays (the
    /// rule of its claims and of the starts it takes directly).
    admission: hydra_store::Admission,
    /// What it registers, as its liveness row records it.
    registrations: String,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    active: Mutex<HashMap<ExecutionId, ActiveRun>>,
    /// Pokes the poll loop: a slot freed, or a parked run is due.
    wake: Notify,
    /// The last claim took fewer runs than it asked for (nothing more was
    /// due) and left a slot free, no claim is in flight, and no start has
    /// taken the last free slot since: a start may hand its run straight to
    /// this worker (see `direct`).
    drained: std::sync::atomic::AtomicBool,
    stop_claiming: CancellationToken,
    stop_all: CancellationToken,
    runs: Mutex<JoinSet<()>>,
    /// The runtime the worker started on, where its runs are driven.
    runtime: tokio::runtime::Handle,
}

impl Shared {
    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, ActiveRun>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running worker. Stop it with [`Worker::shutdown`]; dropping it stops
/// claiming and abandons its runs (their leases expire and another worker
/// resumes them).
pub struct Worker {
    shared: Arc<Shared>,
    poll: Option<tokio::task::JoinHandle<()>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    cron: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.id)
            .field("workflows", &self.shared.admission.workflow_names)
            .finish()
    }
}

impl Worker {
    /// A builder for a worker of `engine`.
    pub fn builder(engine: &Engine) -> WorkerBuilder {
        WorkerBuilder::new(engine)
    }

    /// This worker's ID.
    pub fn id(&self) -> &WorkerId {
        &self.shared.id
    }

    /// Test hook, not a stable API: waits until a start may take a free
    /// slot of this worker directly (its last claim found nothing more
    /// due, and no claim is in flight), and has been able to for `stable`.
    #[doc(hidden)]
    pub async fn __until_drained(&self, stable: std::time::Duration) {
        let mut since = tokio::time::Instant::now();
        loop {
            if !self.shared.drained.load(std::sync::atomic::Ordering::Acquire) {
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= stable {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// How many runs it is executing now.
    pub fn active_runs(&self) -> usize {
        self.shared.active().len()
    }
}
