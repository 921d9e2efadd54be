//! Building a [`Worker`]: settings, workflow registration, validation,
//! and starting its loops.

use super::{Shared, Worker, claim, cron_ticks, lease};
use crate::clock::duration_ms;
use crate::engine::Engine;
use crate::error::Error;
use crate::workflow::{ErasedWorkflow, Registered, Workflow};
use hydra_store::WorkerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Worker settings; see [`WorkerBuilder`] for defaults.
#[derive(Clone, Debug)]
pub(super) struct WorkerConfig {
    pub(super) concurrency: usize,
    pub(super) poll_interval: Duration,
    pub(super) heartbeat_interval: Duration,
    pub(super) lease_ttl: Duration,
    pub(super) claim_batch: u32,
    pub(super) inline_backoff: Duration,
    /// Test hook: a pause before a resumed run's history is read.
    pub(super) history_delay: Option<Duration>,
    /// Test hook: a pause between a claim's answer and its use.
    pub(super) claim_delay: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 32,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            claim_batch: 32,
            inline_backoff: Duration::from_secs(2),
            history_delay: None,
            claim_delay: None,
        }
    }
}

/// Builds and starts a [`Worker`].
#[must_use]
pub struct WorkerBuilder {
    engine: Engine,
    id: Option<WorkerId>,
    registry: HashMap<String, Arc<dyn ErasedWorkflow>>,
    duplicate: Option<String>,
    handler_schedules: Vec<crate::cron::CronSchedule>,
    state: crate::state::StateMap,
    config: WorkerConfig,
}

impl WorkerBuilder {
    pub(super) fn new(engine: &Engine) -> Self {
        WorkerBuilder {
            engine: engine.clone(),
            id: None,
            registry: HashMap::new(),
            duplicate: None,
            handler_schedules: Vec::new(),
            state: crate::state::StateMap::default(),
            config: WorkerConfig::default(),
        }
    }
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.registry.keys().collect();
        names.sort();
        f.debug_struct("WorkerBuilder").field("workflows", &names).field("config", &self.config).finish()
    }
}

impl WorkerBuilder {
    /// Registers a workflow. Registering two workflows with one name is an
    /// error at [`WorkerBuilder::start`].
    pub fn register<W: Workflow>(mut self, workflow: W) -> Self {
        if self.registry.insert(W::NAME.to_owned(), Arc::new(Registered(Arc::new(workflow)))).is_some() {
            self.duplicate = Some(W::NAME.to_owned());
        }
        self
    }

    /// Gives this worker's steps a value of type `T` (a payment client, a
    /// database pool, settings): a step takes it as a parameter
    /// `State<T>` (or calls [`crate::StepContext::state`]). One value per
    /// type; a second `state` of one type replaces the first. State never
    /// enters a run's history. [`WorkerBuilder::start`] refuses to start if
    /// a registered workflow needs a type not given.
    pub fn state<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.state_arc(Arc::new(value))
    }

    /// [`WorkerBuilder::state`] with a value already shared.
    pub fn state_arc<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.state.insert(value);
        self
    }

    /// Registers a schedule `name` that runs a plain async `handler` at every
    /// tick of `spec` (UTC), exactly once per tick across all workers. Each
    /// handler run is recorded as a run of workflow `hydra.cron.{name}` with
    /// one step; its [`crate::StepContext`] gives a per-tick idempotency key.
    /// Every worker that may run it must register the handler.
    pub fn cron_handler<F, Fut>(mut self, name: &str, spec: &str, handler: F) -> Self
    where
        F: Fn(crate::StepContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::StepError>> + Send + 'static,
    {
        let workflow = crate::cron::handler_workflow_name(name);
        let handler: crate::cron::Handler = Arc::new(move |s| Box::pin(handler(s)));
        if self.registry.insert(workflow.clone(), Arc::new(crate::cron::HandlerWorkflow { handler })).is_some() {
            self.duplicate = Some(workflow.clone());
        }
        self.handler_schedules.push(crate::cron::CronSchedule::workflow_named(name, spec, workflow, ()));
        self
    }

    /// How many runs execute at once (default 32).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// How often to look for due runs when nothing wakes the worker (default 1 s).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.config.poll_interval = d;
        self
    }

    /// How often leases are renewed (default 5 s; must be under a third of the lease TTL).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat_interval = d;
        self
    }

    /// How long a lease lasts without renewal (default 30 s). A worker that
    /// cannot renew stops the run before this runs out.
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.config.lease_ttl = d;
        self
    }

    /// The most runs claimed in one statement (default 32).
    pub fn claim_batch(mut self, n: u32) -> Self {
        self.config.claim_batch = n;
        self
    }

    /// Step retry backoffs up to this long are waited out in process
    /// (holding the run); longer ones park the run durably (default 2 s).
    pub fn inline_backoff(mut self, d: Duration) -> Self {
        self.config.inline_backoff = d;
        self
    }

    /// Test hook, not a stable API: waits `d` before reading the history
    /// of a run claimed with an earlier history (as a slow database would).
    #[doc(hidden)]
    pub fn __history_delay(mut self, d: Duration) -> Self {
        self.config.history_delay = Some(d);
        self
    }

    /// Test hook, not a stable API: waits `d` after each claim answered
    /// before using it (as a slow database would).
    #[doc(hidden)]
    pub fn __claim_delay(mut self, d: Duration) -> Self {
        self.config.claim_delay = Some(d);
        self
    }

    /// A fixed worker ID (default: stable per host and program; see
    /// `HYDRA_WORKER_ID` in the README's worker defaults).
    pub fn worker_id(mut self, id: WorkerId) -> Self {
        self.id = Some(id);
        self
    }

    /// Validates the settings and starts polling.
    pub async fn start(self) -> Result<Worker, Error> {
        let c = &self.config;
        if let Some(name) = self.duplicate {
            return Err(Error::Config(format!("workflow `{name}` registered twice")));
        }
        if self.registry.is_empty() {
            return Err(Error::Config("a worker needs at least one registered workflow".into()));
        }
        if let Some(id) = &self.id
            && (id.as_str().is_empty() || id.as_str().len() > 255)
        {
            return Err(Error::Config(format!("a worker ID must be 1 to 255 bytes, got {} bytes", id.as_str().len())));
        }
        let mut lacking: Vec<(&String, &'static str)> = self
            .registry
            .iter()
            .flat_map(|(name, w)| {
                w.required_state().into_iter().filter(|n| !self.state.contains(n)).map(move |n| (name, n.type_name()))
            })
            .collect();
        lacking.sort();
        if let Some((name, type_name)) = lacking.first() {
            return Err(Error::Config(format!(
                "workflow `{name}` needs state of type `{type_name}` (one of its steps takes `State<{type_name}>`), \
                 which this worker was not given: add `.state(…)` with a `{type_name}` to the worker builder"
            )));
        }
        let mut uncodable: Vec<_> = self
            .registry
            .iter()
            .filter_map(|(name, w)| w.options().codec.filter(|&c| !self.engine.codecs().supports(c)).map(|c| (name, c)))
            .collect();
        uncodable.sort_by_key(|(name, _)| *name);
        if let Some((name, codec)) = uncodable.first() {
            return Err(Error::Config(format!(
                "workflow `{name}` uses codec {codec:?}, which is not registered on this engine \
                 (EngineBuilder::register_codec)"
            )));
        }
        if c.concurrency == 0 || c.claim_batch == 0 {
            return Err(Error::Config("concurrency and claim_batch must be at least 1".into()));
        }
        if c.poll_interval.is_zero() || c.heartbeat_interval.is_zero() {
            return Err(Error::Config("poll_interval and heartbeat_interval must be above zero".into()));
        }
        if c.heartbeat_interval.saturating_mul(3) > c.lease_ttl {
            return Err(Error::Config(format!(
                "heartbeat_interval ({:?}) must be at most a third of lease_ttl ({:?}) so leases are renewed well \
                 before they expire",
                c.heartbeat_interval, c.lease_ttl
            )));
        }
        {
            let mut known = self.engine.inner.known.lock().unwrap_or_else(|p| p.into_inner());
            for (name, w) in &self.registry {
                let version = w.version().0;
                known.insert(name.clone(), crate::engine::Known { version, options: w.options() });
            }
        }
        for schedule in self.handler_schedules {
            self.engine.register_cron(schedule).await?;
        }
        let id = self.id.unwrap_or_else(default_worker_id);
        let mut names: Vec<String> = self.registry.keys().cloned().collect();
        names.sort();
        let (regs, codes): (Vec<crate::runs::Registration>, Vec<i64>) = names
            .iter()
            .filter_map(|n| self.registry.get(n).map(|w| (n, w.version())))
            // Versions are stored as 32-bit integers.
            .map(|(n, (to, from, code))| {
                let cap = |v: u32| v.min(i32::MAX.unsigned_abs());
                (crate::runs::Registration::new(n.clone(), cap(from), cap(to)), code)
            })
            .unzip();
        let versions = regs.iter().map(|r| (r.from, r.to)).collect();
        let admission = hydra_store::Admission::new(names).versions(versions).codes(codes);
        let shared = Arc::new(Shared {
            engine: self.engine,
            id,
            registry: self.registry,
            state: Arc::new(self.state),
            admission,
            registrations: crate::runs::Registration::render(&regs),
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            config: self.config,
            active: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            drained: std::sync::atomic::AtomicBool::new(false),
            stop_claiming: CancellationToken::new(),
            stop_all: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
            runs: Mutex::new(JoinSet::new()),
        });
        let now = shared.engine.clock().now_ms();
        if let Err(e) = shared
            .engine
            .inner
            .store
            .heartbeat_worker_with(
                shared.engine.namespace(),
                &shared.id,
                now,
                duration_ms(shared.config.lease_ttl),
                Some(&shared.registrations),
            )
            .await
        {
            tracing::warn!(error = %e, "could not register worker liveness");
        }
        tracing::info!(worker_id = %shared.id, namespace = shared.engine.namespace(), workflows = ?shared.admission.workflow_names, "worker started");
        crate::metrics::concurrency(shared.engine.namespace(), shared.id.as_str(), shared.config.concurrency);
        crate::metrics::active(shared.engine.namespace(), shared.id.as_str(), 0);
        for name in shared.registry.keys() {
            crate::metrics::workflow_registered(shared.engine.namespace(), name);
        }
        {
            let mut takers = shared.engine.inner.local_workers.lock().unwrap_or_else(|p| p.into_inner());
            takers.retain(|t| !t.is_gone());
            takers.push(Box::new(super::Taker::new(&shared)));
        }
        let poll = tokio::spawn(claim::poll_loop(Arc::clone(&shared)));
        let heartbeat = tokio::spawn(lease::heartbeat_loop(Arc::clone(&shared)));
        tokio::spawn(lease::lease_guard_loop(Arc::clone(&shared)));
        tokio::spawn(claim::listen_loop(Arc::clone(&shared)));
        tokio::spawn(super::cancels::cancel_watch_loop(Arc::clone(&shared)));
        let cron = tokio::spawn(cron_ticks::cron_loop(Arc::clone(&shared)));
        tokio::spawn(super::upkeep::upkeep_loop(Arc::clone(&shared)));
        Ok(Worker { shared, poll: Some(poll), heartbeat: Some(heartbeat), cron: Some(cron) })
    }
}

/// The default worker ID: the same on every start of the same program on
/// the same host, so metrics labels and liveness rows do not churn with
/// restarts. `HYDRA_WORKER_ID` if set, else `{host}-{program}`; the second
/// and later workers of one process get `-2`, `-3`, … appended. Several
/// processes of one program on one host share the base ID: give each its
/// own `HYDRA_WORKER_ID` (or [`WorkerBuilder::worker_id`]) to tell them
/// apart.
fn default_worker_id() -> WorkerId {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = std::env::var("HYDRA_WORKER_ID").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let program = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "hydra".to_owned());
        format!("{host}-{program}")
    });
    match STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => WorkerId::from_string(base),
        n => WorkerId::from_string(format!("{base}-{}", n + 1)),
    }
}
