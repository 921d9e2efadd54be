//! [`Worker`]: claims due runs of its registered workflows, drives them,
//! heartbeats their leases, and shuts down gracefully.
//!
//! Defaults (see [`WorkerBuilder`]): concurrency 32, poll interval 1 s,
//! heartbeat every 5 s, lease TTL 30 s, claims in batches of up to 32.
//! A run started by an engine in the same process wakes an idle worker at
//! once; runs started elsewhere are found by the next poll.

use crate::clock::duration_ms;
use crate::context::{Interrupt, RunSetup, RunState, WorkflowContext, panic_message};
use crate::engine::Engine;
use crate::error::Error;
use crate::workflow::{ErasedWorkflow, Registered, Returned, Workflow};
use futures_util::FutureExt;
use hydra_store::{
    ClaimRequest, ClaimedExecution, Execution, ExecutionId, Lease, OpenStep, StoreError, Terminal, Transition, WorkerId,
};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Worker settings; see [`WorkerBuilder`] for defaults.
#[derive(Clone, Debug)]
struct WorkerConfig {
    concurrency: usize,
    poll_interval: Duration,
    heartbeat_interval: Duration,
    lease_ttl: Duration,
    claim_batch: u32,
    inline_backoff: Duration,
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
    config: WorkerConfig,
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

    /// A fixed worker ID (default: random).
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
        if c.concurrency == 0 || c.claim_batch == 0 {
            return Err(Error::Config("concurrency and claim_batch must be at least 1".into()));
        }
        if c.poll_interval.is_zero() || c.heartbeat_interval.is_zero() {
            return Err(Error::Config("poll_interval and heartbeat_interval must be above zero".into()));
        }
        if c.heartbeat_interval * 3 > c.lease_ttl {
            return Err(Error::Config(format!(
                "heartbeat_interval ({:?}) must be at most a third of lease_ttl ({:?}) so leases are renewed well \
                 before they expire",
                c.heartbeat_interval, c.lease_ttl
            )));
        }
        {
            let mut known = self.engine.inner.known.lock().unwrap_or_else(|p| p.into_inner());
            known.extend(self.registry.keys().cloned());
        }
        for schedule in self.handler_schedules {
            self.engine.register_cron(schedule).await?;
        }
        let id = self.id.unwrap_or_else(WorkerId::generate);
        let mut names: Vec<String> = self.registry.keys().cloned().collect();
        names.sort();
        let shared = Arc::new(Shared {
            engine: self.engine,
            id,
            registry: self.registry,
            names,
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            config: self.config,
            active: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            stop_claiming: CancellationToken::new(),
            stop_all: CancellationToken::new(),
            runs: Mutex::new(JoinSet::new()),
        });
        let now = shared.engine.clock().now_ms();
        if let Err(e) = shared
            .engine
            .store()
            .heartbeat_worker(shared.engine.namespace(), &shared.id, now, duration_ms(shared.config.lease_ttl))
            .await
        {
            tracing::warn!(error = %e, "could not register worker liveness");
        }
        tracing::info!(worker_id = %shared.id, namespace = shared.engine.namespace(), workflows = ?shared.names, "worker started");
        crate::metrics::concurrency(shared.engine.namespace(), shared.id.as_str(), shared.config.concurrency);
        crate::metrics::active(shared.engine.namespace(), shared.id.as_str(), 0);
        let poll = tokio::spawn(poll_loop(Arc::clone(&shared)));
        let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&shared)));
        tokio::spawn(lease_guard_loop(Arc::clone(&shared)));
        tokio::spawn(listen_loop(Arc::clone(&shared)));
        let cron = tokio::spawn(cron_loop(Arc::clone(&shared)));
        Ok(Worker { shared, poll: Some(poll), heartbeat: Some(heartbeat), cron: Some(cron) })
    }
}

struct ActiveRun {
    run: Arc<RunState>,
    renewed_at: tokio::time::Instant,
}

struct Shared {
    engine: Engine,
    id: WorkerId,
    registry: HashMap<String, Arc<dyn ErasedWorkflow>>,
    names: Vec<String>,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    active: Mutex<HashMap<ExecutionId, ActiveRun>>,
    /// Pokes the poll loop: a slot freed, or a parked run is due.
    wake: Notify,
    stop_claiming: CancellationToken,
    stop_all: CancellationToken,
    runs: Mutex<JoinSet<()>>,
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
        f.debug_struct("Worker").field("id", &self.shared.id).field("workflows", &self.shared.names).finish()
    }
}

impl Worker {
    /// A builder for a worker of `engine`.
    pub fn builder(engine: &Engine) -> WorkerBuilder {
        WorkerBuilder {
            engine: engine.clone(),
            id: None,
            registry: HashMap::new(),
            duplicate: None,
            handler_schedules: Vec::new(),
            config: WorkerConfig::default(),
        }
    }

    /// This worker's ID.
    pub fn id(&self) -> &WorkerId {
        &self.shared.id
    }

    /// How many runs it is executing now.
    pub fn active_runs(&self) -> usize {
        self.shared.active().len()
    }

    /// Stops claiming, lets running executions reach their next checkpoint
    /// (at most `grace`), then releases the leases of any still running so
    /// another worker resumes them at once.
    pub async fn shutdown(mut self, grace: Duration) {
        let s = Arc::clone(&self.shared);
        s.stop_claiming.cancel();
        if let Some(p) = self.poll.take() {
            let _ = p.await;
        }
        if let Some(c) = self.cron.take() {
            let _ = c.await;
        }
        for a in s.active().values() {
            a.run.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !s.active().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for a in s.active().values() {
            a.run.interrupt(Interrupt::Release);
        }
        loop {
            let next = {
                let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
                runs.try_join_next()
            };
            match next {
                Some(_) => continue,
                None if s.active().is_empty() => break,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        s.stop_all.cancel();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.await;
        }
        if let Err(e) = s.engine.store().remove_worker(&s.id).await {
            tracing::warn!(error = %e, "could not remove worker liveness row");
        }
        crate::metrics::concurrency(s.engine.namespace(), s.id.as_str(), 0);
        crate::metrics::active(s.engine.namespace(), s.id.as_str(), 0);
        tracing::info!(worker_id = %s.id, "worker stopped");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stop_claiming.cancel();
        self.shared.stop_all.cancel();
        self.shared.runs.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
    }
}

async fn poll_loop(s: Arc<Shared>) {
    let mut work = s.engine.inner.work.subscribe();
    let mut ticks = s.engine.clock().subscribe();
    loop {
        claim_available(&s).await;
        tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(s.config.poll_interval) => {}
            _ = work.changed() => {}
            _ = ticks.changed() => {}
            _ = s.wake.notified() => {}
        }
    }
}

/// PostgreSQL: claims as soon as a run of this namespace becomes claimable
/// in any process (see [`hydra_store::RunListener`]), not at the next poll.
/// On SQLite it ends at once; polling and in-process wake-ups remain.
async fn listen_loop(s: Arc<Shared>) {
    let mut listener = loop {
        let attempt = tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            l = s.engine.store().listen_for_runs() => l,
        };
        match attempt {
            Ok(Some(l)) => {
                // Anything made claimable before the LISTEN took effect.
                s.wake.notify_one();
                break l;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(worker_id = %s.id, error = %e, "cannot listen for new runs; polling only for now");
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(s.config.poll_interval.max(Duration::from_secs(1))) => {}
                }
            }
        }
    };
    loop {
        let received = tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            n = listener.recv() => n,
        };
        match received {
            Ok(namespace) if namespace == s.engine.namespace() => s.wake.notify_one(),
            Ok(_) => {}
            Err(e) => {
                // Reconnects on the next call; what was sent meanwhile is lost.
                tracing::warn!(worker_id = %s.id, error = %e, "lost the LISTEN connection; reconnecting");
                s.wake.notify_one();
                tokio::select! {
                    _ = s.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

/// Claims as many due runs as there are free slots, batch by batch.
async fn claim_available(s: &Arc<Shared>) {
    loop {
        if s.stop_claiming.is_cancelled() {
            return;
        }
        let free = s.slots.available_permits();
        if free == 0 {
            return;
        }
        let limit = u32::try_from(free).unwrap_or(u32::MAX).min(s.config.claim_batch);
        let req = ClaimRequest::new(
            s.engine.namespace(),
            s.names.clone(),
            s.id.clone(),
            s.engine.clock().now_ms(),
            duration_ms(s.config.lease_ttl),
            limit,
        );
        crate::metrics::poll(s.engine.namespace(), s.id.as_str());
        // The lease's local clock starts before the claim is sent.
        let claim_sent = tokio::time::Instant::now();
        // Through the group committer when there is one: the claim shares a
        // commit with the step writes of running runs.
        let op = hydra_store::BatchOp::Claim(req.clone());
        let claimed = match crate::commit::write(s.engine.inner.committer.as_ref(), s.engine.store(), op, req.now).await
        {
            Ok(hydra_store::BatchValue::Claimed(v)) => Ok(v),
            Ok(other) => Err(crate::commit::unexpected(other)),
            Err(e) => Err(e),
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker_id = %s.id, error = %e, "claim failed");
                return;
            }
        };
        let n = claimed.len();
        for c in claimed {
            if s.stop_claiming.is_cancelled() {
                // Stopped (or dropped) while this claim was in flight: start
                // nothing, hand the run back so another worker resumes it.
                let _ = hand_back(&s.engine, &c.execution, &c.lease).await;
                continue;
            }
            crate::metrics::lease_acquired(s.engine.namespace(), s.id.as_str(), &c.execution.workflow_name);
            if c.execution.started_at == Some(req.now) && c.execution.attempts == 1 {
                let waited = (req.now - c.execution.created_at).max(0) as f64 / 1000.0;
                crate::metrics::queue_time(s.engine.namespace(), &c.execution.workflow_name, waited);
            }
            let Ok(permit) = Arc::clone(&s.slots).try_acquire_owned() else {
                // Cannot happen (only this loop takes permits); give the run back.
                let _ = hand_back(&s.engine, &c.execution, &c.lease).await;
                continue;
            };
            let shared = Arc::clone(s);
            // Checked again under the lock Drop takes after cancelling: either
            // this spawn happens first (and Drop aborts it) or it is skipped.
            let (lease, execution) = (c.lease.clone(), c.execution.clone());
            let spawned = {
                let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
                if s.stop_claiming.is_cancelled() {
                    false
                } else {
                    runs.spawn(drive(shared, c, permit, claim_sent));
                    true
                }
            };
            if !spawned {
                let _ = hand_back(&s.engine, &execution, &lease).await;
            }
        }
        // Reap finished tasks so the set does not grow.
        {
            let mut runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
            while runs.try_join_next().is_some() {}
        }
        if n < limit as usize {
            return;
        }
    }
}

/// Fires due cron ticks. Every worker runs one; the store makes sure each
/// tick fires once.
async fn cron_loop(s: Arc<Shared>) {
    let mut ticks = s.engine.clock().subscribe();
    let every = s.config.poll_interval.min(Duration::from_secs(1));
    let options = |name: &str| s.registry.get(name).map(|w| w.options());
    loop {
        if let Err(e) = crate::cron::fire_due(&s.engine, &options).await {
            tracing::warn!(worker_id = %s.id, error = %e, "cron scheduling failed");
        }
        tokio::select! {
            _ = s.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = ticks.changed() => {}
        }
    }
}

async fn heartbeat_loop(s: Arc<Shared>) {
    let ttl = s.config.lease_ttl;
    let hb = s.config.heartbeat_interval;
    loop {
        tokio::select! {
            _ = s.stop_all.cancelled() => return,
            _ = tokio::time::sleep(hb) => {}
        }
        // Taken before the calls: the database computes the new expiry from
        // `now`, so the local deadline must not start any later.
        let started = tokio::time::Instant::now();
        let now = s.engine.clock().now_ms();
        let ttl_ms = duration_ms(ttl);
        // No call may hold the heartbeat up for longer than one interval.
        let beat =
            tokio::time::timeout(hb, s.engine.store().heartbeat_worker(s.engine.namespace(), &s.id, now, ttl_ms)).await;
        let ok = matches!(beat, Ok(Ok(())));
        crate::metrics::heartbeat(s.engine.namespace(), s.id.as_str(), ok);
        if !ok {
            tracing::warn!(worker_id = %s.id, "worker heartbeat failed or timed out");
        }
        let runs: Vec<(Lease, Arc<RunState>)> =
            s.active().values().map(|a| (a.run.lease.clone(), Arc::clone(&a.run))).collect();
        if runs.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = runs.iter().map(|(l, _)| l.clone()).collect();
        match tokio::time::timeout(hb, s.engine.store().renew_leases(&leases, now, ttl_ms)).await {
            Ok(Ok(results)) => {
                let mut active = s.active();
                for ((lease, run), result) in runs.iter().zip(results) {
                    match result {
                        Ok(r) => {
                            if let Some(a) = active.get_mut(&lease.execution_id)
                                && a.run.lease.token == lease.token
                            {
                                a.renewed_at = started;
                            }
                            if r.cancel_requested {
                                run.cancel_requested.store(true, std::sync::atomic::Ordering::SeqCst);
                                run.cancel.cancel();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(execution_id = %lease.execution_id, error = %e, "lease lost at heartbeat; stopping the run");
                            run.interrupt(Interrupt::LeaseLost);
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(worker_id = %s.id, error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!(worker_id = %s.id, "lease renewal timed out"),
        }
    }
}

/// Stops runs before their leases can expire, and runs past their
/// deadline. Separate from the heartbeat, on its own timer, so that no slow
/// or hung database call can delay it: a run whose lease went
/// `lease_ttl - heartbeat_interval` without a renewal is stopped within half
/// a heartbeat interval more, which is before the lease expires.
async fn lease_guard_loop(s: Arc<Shared>) {
    let hb = s.config.heartbeat_interval;
    let local_limit = s.config.lease_ttl.saturating_sub(hb);
    let every = (hb / 2).max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = s.stop_all.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let real_now = tokio::time::Instant::now();
        let now = s.engine.clock().now_ms();
        for a in s.active().values() {
            if real_now.saturating_duration_since(a.renewed_at) >= local_limit {
                tracing::warn!(execution_id = %a.run.lease.execution_id, "lease not renewed in time; stopping the run before it expires");
                a.run.interrupt(Interrupt::LeaseLost);
            }
            if let Some(d) = a.run.deadline_at
                && now >= d
            {
                a.run.interrupt(Interrupt::TimeOut("the run passed its deadline".into()));
            }
        }
    }
}

/// Drives one claimed run until it ends, parks, or is stopped.
async fn drive(
    s: Arc<Shared>,
    claimed: ClaimedExecution,
    permit: OwnedSemaphorePermit,
    claim_sent: tokio::time::Instant,
) {
    let ClaimedExecution { execution, lease, .. } = claimed;
    let span = tracing::info_span!(
        "workflow_run",
        namespace = %execution.namespace,
        workflow = %execution.workflow_name,
        execution_id = %execution.id,
        attempt = execution.attempts,
    );
    drive_inner(&s, execution, lease, claim_sent).instrument(span).await;
    drop(permit);
    s.wake.notify_one();
}

async fn drive_inner(s: &Arc<Shared>, execution: Execution, lease: Lease, claim_sent: tokio::time::Instant) {
    let engine = &s.engine;
    let now = engine.clock().now_ms();
    tracing::debug!(token = lease.token.get(), expires_at = ?execution.lease_expires_at(), "lease acquired");
    let Some(workflow) = s.registry.get(execution.workflow_name.as_str()).cloned() else {
        // Not ours (claims filter by name, so only on a race with a rename).
        let _ = hand_back(engine, &execution, &lease).await;
        return;
    };
    if execution.cancel_requested {
        return end(s, &execution, &lease, Terminal::Cancelled("cancelled".into())).await;
    }
    if execution.deadline_at.is_some_and(|d| now >= d) {
        return end(s, &execution, &lease, Terminal::TimedOut("the run passed its deadline".into())).await;
    }
    if execution.attempts > execution.max_attempts {
        let msg = format!(
            "out of attempts: {} of {} allowed began; the last one never finished (its worker died or lost its lease)",
            execution.attempts, execution.max_attempts
        );
        return end(s, &execution, &lease, Terminal::Failed(msg)).await;
    }
    // The first claim of a run (token 1) cannot have a history: every step
    // write needs a lease. Skip the query.
    let history = loop {
        if lease.token.get() == 1 {
            break Vec::new();
        }
        match engine.store().steps(&lease.namespace, &lease.execution_id).await {
            Ok(h) => break h,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "could not load history; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.stop_all.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not load history; leaving the run to expire");
                return;
            }
        }
    };
    let (run, mut interrupts) = RunState::new(RunSetup {
        committer: engine.inner.committer.clone(),
        store: engine.store().clone(),
        codec: engine.codec(),
        clock: engine.clock().clone(),
        lease: lease.clone(),
        workflow_name: execution.workflow_name.clone(),
        attempt: execution.attempts,
        deadline_at: execution.deadline_at,
        history,
        open_step: execution.open_step,
        inline_backoff: s.config.inline_backoff,
        write_patience: s.config.lease_ttl.saturating_sub(s.config.heartbeat_interval * 2),
    });
    let ctx = WorkflowContext { run: Arc::clone(&run) };
    let future = match workflow.start(ctx, &execution.input, engine.codec()) {
        Ok(f) => f,
        Err(reason) => {
            let e = Error::Decode { execution: execution.id.clone(), what: "the input".into(), reason };
            return end(s, &execution, &lease, Terminal::Failed(e.to_string())).await;
        }
    };
    let stale = s.active().insert(execution.id.clone(), ActiveRun { run: Arc::clone(&run), renewed_at: claim_sent });
    crate::metrics::active(engine.namespace(), s.id.as_str(), s.active().len());
    if let Some(old) = stale {
        // This worker re-claimed a run it was still driving under an older
        // token (its own lease expired): that drive's writes are fenced off
        // already; stop it.
        old.run.interrupt(Interrupt::LeaseLost);
    }
    enum Outcome {
        Returned(Result<Returned, String>),
        Interrupted(Interrupt),
    }
    let outcome = tokio::select! {
        biased;
        i = interrupts.wait_for(Option::is_some) => match i {
            Ok(v) => Outcome::Interrupted(v.clone().unwrap_or(Interrupt::LeaseLost)),
            Err(_) => Outcome::Interrupted(Interrupt::LeaseLost),
        },
        r = AssertUnwindSafe(future).catch_unwind() => Outcome::Returned(r.map_err(|p| panic_message(&p))),
    };
    // The workflow future is dropped here: nothing more runs for this claim.
    {
        let mut active = s.active();
        if active.get(&execution.id).is_some_and(|a| a.run.lease.token == lease.token) {
            active.remove(&execution.id);
        }
        crate::metrics::active(engine.namespace(), s.id.as_str(), active.len());
    }
    let cancelled = run.cancel_requested.load(std::sync::atomic::Ordering::SeqCst);
    match outcome {
        Outcome::Interrupted(Interrupt::Suspended { until }) => {
            tracing::debug!(until, "run parked; lease released");
            schedule_wake(s, until);
        }
        Outcome::Interrupted(Interrupt::LeaseLost) => {
            crate::metrics::lease_lost(&lease.namespace, &execution.workflow_name);
        }
        Outcome::Interrupted(Interrupt::Release) => {
            let cp = hydra_store::Checkpoint::transition(Transition::Release).open(run.open_to_hand_back());
            if let Err(e) = engine.store().checkpoint(&lease, cp, engine.clock().now_ms()).await {
                tracing::warn!(error = %e, "could not release the lease; it will expire");
            }
        }
        Outcome::Interrupted(Interrupt::Cancel) => {
            end(s, &execution, &lease, Terminal::Cancelled("cancelled".into())).await
        }
        Outcome::Interrupted(Interrupt::TimeOut(m)) => end(s, &execution, &lease, Terminal::TimedOut(m)).await,
        Outcome::Interrupted(Interrupt::Fail(m)) => end(s, &execution, &lease, Terminal::Failed(m)).await,
        Outcome::Returned(_) if cancelled => end(s, &execution, &lease, Terminal::Cancelled("cancelled".into())).await,
        Outcome::Returned(Ok(Returned::Output(bytes))) => end(s, &execution, &lease, Terminal::Completed(bytes)).await,
        Outcome::Returned(Ok(Returned::EncodeFailed(reason))) => {
            let e = Error::Encode { what: format!("the output of `{}`", execution.workflow_name), reason };
            end(s, &execution, &lease, Terminal::Failed(e.to_string())).await
        }
        Outcome::Returned(Ok(Returned::Failed(e))) => {
            let attempts = execution.attempts.max(1);
            if e.is_permanent() || attempts >= execution.max_attempts {
                let msg = if e.is_permanent() {
                    e.message().to_owned()
                } else {
                    format!("{} (after {attempts} workflow attempts)", e.message())
                };
                end(s, &execution, &lease, Terminal::Failed(msg)).await
            } else {
                let delay = workflow.options().retry.next_delay(attempts);
                let now = engine.clock().now_ms();
                let at = now.saturating_add(duration_ms(delay));
                let at = execution.deadline_at.map_or(at, |d| at.min(d));
                tracing::info!(error = %e, ?delay, "workflow attempt failed; retrying");
                let r = write_retrying(s, || {
                    engine.store().checkpoint(
                        &lease,
                        hydra_store::Checkpoint::transition(Transition::Retry { at, error: e.message().to_owned() })
                            .open(run.open_to_hand_back()),
                        engine.clock().now_ms(),
                    )
                })
                .await;
                if r.is_ok() {
                    schedule_wake(s, at);
                }
            }
        }
        Outcome::Returned(Err(panic)) => {
            end(s, &execution, &lease, Terminal::Failed(format!("workflow panicked: {panic}"))).await
        }
    }
}

/// Hands back a run this claim never started. The claim counted an
/// attempt of the run's open step; none began, so it is taken back.
async fn hand_back(engine: &Engine, execution: &Execution, lease: &Lease) -> Result<(), StoreError> {
    let open = execution.open_step;
    let cp = hydra_store::Checkpoint::transition(Transition::Release)
        .open(OpenStep::new(open.position, open.attempts.saturating_sub(1)));
    engine.store().checkpoint(lease, cp, engine.clock().now_ms()).await
}

/// Writes a run's end, retrying transient failures.
async fn end(s: &Arc<Shared>, execution: &Execution, lease: &Lease, terminal: Terminal) {
    let status = match &terminal {
        Terminal::Completed(out) => {
            crate::metrics::payload(&lease.namespace, &execution.workflow_name, "output", out.len());
            "completed"
        }
        Terminal::Failed(_) => "failed",
        Terminal::Cancelled(_) => "cancelled",
        Terminal::TimedOut(_) => "timed_out",
        _ => "ended",
    };
    let engine = &s.engine;
    let r = write_retrying(s, || async {
        let cp = hydra_store::Checkpoint::transition(Transition::Finish(terminal.clone()));
        let op = hydra_store::BatchOp::Checkpoint(lease.clone(), cp);
        crate::commit::write(engine.inner.committer.as_ref(), engine.store(), op, engine.clock().now_ms())
            .await
            .map(|_| ())
    })
    .await;
    match r {
        Ok(()) => {
            let seconds = (engine.clock().now_ms() - execution.created_at).max(0) as f64 / 1000.0;
            crate::metrics::workflow_ended(&lease.namespace, &execution.workflow_name, status, seconds);
            tracing::info!(execution_id = %lease.execution_id, status, "run ended");
            engine.inner.done.send_modify(|n| *n = n.wrapping_add(1));
        }
        Err(e) if e.is_lease_lost() => crate::metrics::lease_lost(&lease.namespace, &execution.workflow_name),
        Err(_) => {}
    }
}

async fn write_retrying<F, Fut>(s: &Arc<Shared>, mut op: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let give_up = tokio::time::Instant::now() + s.config.lease_ttl;
    let mut pause = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(()) => return Ok(()),
            Err(e)
                if e.is_retryable() && tokio::time::Instant::now() + pause < give_up && !s.stop_all.is_cancelled() =>
            {
                tracing::warn!(error = %e, "transient failure writing a run's state; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                if e.is_lease_lost() {
                    tracing::warn!(error = %e, "lease lost before the run's state was written");
                } else {
                    tracing::error!(error = %e, "could not write a run's state; its lease will expire");
                }
                return Err(e);
            }
        }
    }
}

/// Pokes the poll loop when a parked run becomes due soon; far-off wake-ups
/// are left to polling, so a sleeping run costs a row, not a timer.
fn schedule_wake(s: &Arc<Shared>, until: i64) {
    let clock = s.engine.clock().clone();
    let horizon = duration_ms(s.config.poll_interval.saturating_mul(10)).max(60_000);
    if until - clock.now_ms() > horizon {
        return;
    }
    let shared = Arc::clone(s);
    tokio::spawn(async move {
        tokio::select! {
            _ = clock.sleep_until(until, Duration::from_millis(u64::try_from(horizon).unwrap_or(60_000))) => shared.wake.notify_one(),
            _ = shared.stop_claiming.cancelled() => {}
        }
    });
}
