//! [`WorkflowContext`]: checkpointed replay of steps, attempts, retries,
//! durable sleep; and [`StepContext`], what a step body sees.
//!
//! A run's workflow function runs again from the top every time the run is
//! claimed. Each step call takes the next position in the run; the step ID
//! is formed by [`StepId::new`] from the base ID and the call's occurrence
//! number. If the history records that position, the call is answered from
//! it (or, if the history names a different step there, the run fails with
//! a non-determinism error). Otherwise the attempt is counted durably
//! before the body runs, usually already (by the claim, or by the previous
//! step's result, on the run's open step: see [`hydra_store::OpenStep`]),
//! else by a write of its own; the result is recorded, under the lease's
//! fencing token, before it is handed back to the workflow.
//!
//! When the run must stop (sleep, durable backoff, cancel, timeout, lost
//! lease, non-determinism), the step call never returns: it signals the
//! worker, which drops the workflow future.

use crate::clock::{Clock, duration_ms};
use crate::codec::Codec;
use crate::error::{Error, StepError};
use crate::retry::RetryPolicy;
use futures_util::FutureExt;
use hydra_store::{
    Checkpoint, ExecutionId, Lease, OpenStep, Step, StepAttempt, StepId, StepKind, StepOutcome, StepRecord, StepStatus,
    Store, StoreError, Transition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The base ID of durable sleeps in the step history.
pub(crate) const SLEEP_STEP: &str = "hydra.sleep";

/// Options of one step call. The `#[step]` macro builds these from its
/// attributes; without macros, pass them to [`WorkflowContext::step_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StepOptions {
    /// The step's base ID.
    pub id: Cow<'static, str>,
    /// Its retry policy (default: [`RetryPolicy::default`], 3 attempts).
    pub retry: RetryPolicy,
    /// A bound on each attempt's run time (default: none).
    pub timeout: Option<Duration>,
}

impl StepOptions {
    /// Options for step `id` with the default retry policy and no timeout.
    pub fn new(id: impl Into<Cow<'static, str>>) -> Self {
        StepOptions { id: id.into(), retry: RetryPolicy::default(), timeout: None }
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a step body sees.
#[derive(Clone, Debug)]
pub struct StepContext {
    execution_id: ExecutionId,
    step_id: StepId,
    attempt: u32,
    cancel: CancellationToken,
}

impl StepContext {
    /// The attempt number, from 1. A crashed attempt counts.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key that is the same on every attempt of this step in this run:
    /// `{execution}/{step}`. Pass it to external services as their
    /// idempotency key, so a body that runs again (after a crash between its
    /// effect and its checkpoint) does not repeat the effect there.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.execution_id, self.step_id)
    }

    /// The run.
    pub fn execution_id(&self) -> &ExecutionId {
        &self.execution_id
    }

    /// This step's ID.
    pub fn step_id(&self) -> &StepId {
        &self.step_id
    }

    /// True once the run was cancelled, its lease lost, or its worker is
    /// shutting down; a long body should stop early.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when [`StepContext::is_cancelled`] becomes true.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// The database transaction a transactional step's body writes through.
///
/// It dereferences to sea-orm's `DatabaseTransaction`, so entity and raw
/// statements run on it (`Entity::insert(row).exec(&*tx)`,
/// `tx.execute_unprepared(…)`). The engine writes the step's checkpoint in
/// this same transaction and commits once; do not commit or keep it.
#[derive(Clone)]
pub struct StepTransaction {
    inner: Arc<hydra_store::sea_orm::DatabaseTransaction>,
}

impl std::fmt::Debug for StepTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepTransaction")
    }
}

impl std::ops::Deref for StepTransaction {
    type Target = hydra_store::sea_orm::DatabaseTransaction;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

/// Why a run stopped before its workflow function returned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Interrupt {
    /// Parked until `until` (already written); the worker may poke its poll
    /// loop then.
    Suspended { until: i64 },
    /// End the run failed with this message.
    Fail(String),
    /// End the run cancelled.
    Cancel,
    /// End the run timed out.
    TimeOut(String),
    /// Stop without writing: the lease is gone.
    LeaseLost,
    /// Stop and hand the lease back (worker shutting down).
    Release,
}

struct Cursor {
    next_position: u32,
    occurrences: HashMap<String, u32>,
}

/// This lease holder's view of the run's open step (see
/// [`hydra_store::OpenStep`]); it changes only with writes under the lease.
#[derive(Clone, Copy, Debug)]
struct Open {
    position: u32,
    /// Attempts counted in the database, including one reserved for us
    /// unless `begun`.
    attempts: u32,
    /// Whether the last counted attempt has begun running.
    begun: bool,
}

pub(crate) struct RunState {
    committer: Option<crate::commit::Committer>,
    pub(crate) store: Store,
    pub(crate) codec: Codec,
    pub(crate) clock: Clock,
    pub(crate) lease: Lease,
    pub(crate) workflow_name: String,
    pub(crate) attempt: u32,
    pub(crate) deadline_at: Option<i64>,
    history: HashMap<u32, Step>,
    cursor: Mutex<Cursor>,
    open: Mutex<Open>,
    /// Cancelled when the run was cancelled, its lease lost, or the worker drains.
    pub(crate) cancel: CancellationToken,
    pub(crate) cancel_requested: std::sync::atomic::AtomicBool,
    pub(crate) draining: std::sync::atomic::AtomicBool,
    interrupt: watch::Sender<Option<Interrupt>>,
    /// Transactions of transactional steps whose bodies succeeded, waiting
    /// for their checkpoint to be written into them.
    pending_tx: Mutex<HashMap<StepId, Arc<hydra_store::sea_orm::DatabaseTransaction>>>,
    /// Backoffs up to this long are waited out in process; longer ones park
    /// the run durably.
    pub(crate) inline_backoff: Duration,
    /// How long a checkpoint write is retried through transient database
    /// errors before the run is given up locally.
    pub(crate) write_patience: Duration,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState").field("lease", &self.lease).field("workflow", &self.workflow_name).finish()
    }
}

pub(crate) struct RunSetup {
    pub(crate) committer: Option<crate::commit::Committer>,
    pub(crate) store: Store,
    pub(crate) codec: Codec,
    pub(crate) clock: Clock,
    pub(crate) lease: Lease,
    pub(crate) workflow_name: String,
    pub(crate) attempt: u32,
    pub(crate) deadline_at: Option<i64>,
    pub(crate) history: Vec<Step>,
    pub(crate) open_step: OpenStep,
    pub(crate) inline_backoff: Duration,
    pub(crate) write_patience: Duration,
}

impl RunState {
    pub(crate) fn new(s: RunSetup) -> (Arc<RunState>, watch::Receiver<Option<Interrupt>>) {
        let (tx, rx) = watch::channel(None);
        let state = RunState {
            committer: s.committer,
            store: s.store,
            codec: s.codec,
            clock: s.clock,
            lease: s.lease,
            workflow_name: s.workflow_name,
            attempt: s.attempt,
            deadline_at: s.deadline_at,
            history: s.history.into_iter().map(|st| (st.position, st)).collect(),
            cursor: Mutex::new(Cursor { next_position: 0, occurrences: HashMap::new() }),
            open: Mutex::new(Open { position: s.open_step.position, attempts: s.open_step.attempts, begun: false }),
            cancel: CancellationToken::new(),
            cancel_requested: false.into(),
            draining: false.into(),
            interrupt: tx,
            pending_tx: Mutex::new(HashMap::new()),
            inline_backoff: s.inline_backoff,
            write_patience: s.write_patience,
        };
        (Arc::new(state), rx)
    }

    /// Signals the worker (first signal wins) and never returns.
    pub(crate) async fn halt(&self, why: Interrupt) -> Infallible {
        if matches!(why, Interrupt::Suspended { .. }) {
            crate::metrics::parked(&self.lease.namespace, &self.workflow_name);
        }
        self.raise(why);
        std::future::pending::<Infallible>().await
    }

    /// Raises an interrupt from outside the workflow (heartbeat, shutdown).
    pub(crate) fn interrupt(&self, why: Interrupt) {
        self.raise(why);
    }

    /// Records the first interrupt (later ones are ignored) and, unless the
    /// run merely parked, cancels its step bodies.
    fn raise(&self, why: Interrupt) {
        self.interrupt.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(why);
                true
            } else {
                false
            }
        });
        if !matches!(self.interrupt.borrow().as_ref(), Some(Interrupt::Suspended { .. })) {
            self.cancel.cancel();
        }
    }

    fn next_step_id(&self, base: &str) -> (u32, StepId) {
        let mut c = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let position = c.next_position;
        c.next_position += 1;
        // Look up before inserting: no allocation for a name seen before.
        let n = match c.occurrences.get_mut(base) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                c.occurrences.insert(base.to_owned(), 1);
                1
            }
        };
        (position, StepId::new(base, n))
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn open_state(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attempt already counted for the step at `position`, if one is
    /// reserved for this lease holder and not begun. `prior` is the count
    /// on the step's row, if it has one.
    fn reserved_attempt(&self, position: u32, prior: u32) -> Option<u32> {
        let o = self.open_state();
        (o.position == position && !o.begun && o.attempts > prior).then_some(o.attempts)
    }

    /// Notes that `attempt` of the step at `position` began. An attempt
    /// counted on the step's own row (not at the open position) leaves the
    /// open step as it is.
    fn begin_attempt(&self, position: u32, attempt: u32) {
        let mut o = self.open_state();
        if o.position == position {
            o.attempts = o.attempts.max(attempt);
            o.begun = true;
        }
    }

    /// Parks the run until `until`, handing back any reserved attempt.
    async fn park(&self, until: i64) -> Result<(), StoreError> {
        self.write("park", || {
            let cp = Checkpoint::transition(Transition::Sleep { until }).open(self.open_to_hand_back());
            self.store.checkpoint(&self.lease, cp, self.now())
        })
        .await
    }

    /// The open step to leave behind when the lease is handed back: an
    /// attempt reserved for us that never began is taken back.
    pub(crate) fn open_to_hand_back(&self) -> OpenStep {
        let o = *self.open_state();
        OpenStep::new(o.position, if o.begun { o.attempts } else { o.attempts.saturating_sub(1) })
    }

    /// The run's wake-up for `until`, brought forward to its deadline.
    fn park_until(&self, until: i64) -> i64 {
        self.deadline_at.map_or(until, |d| until.min(d))
    }

    /// Checks that apply at every checkpoint: cancellation, deadline, drain.
    async fn checkpoint_gate(&self) {
        if self.cancel_requested.load(std::sync::atomic::Ordering::SeqCst) {
            match self.halt(Interrupt::Cancel).await {}
        }
        if let Some(d) = self.deadline_at
            && self.now() >= d
        {
            match self.halt(Interrupt::TimeOut("the run passed its deadline".into())).await {}
        }
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            match self.halt(Interrupt::Release).await {}
        }
    }

    /// Runs a store write, retrying transient failures for a while. A lost
    /// lease halts the run; any other failure ends it failed.
    async fn write<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let give_up = tokio::time::Instant::now() + self.write_patience;
        let mut pause = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_lease_lost() => {
                    tracing::warn!(execution_id = %self.lease.execution_id, "lease lost during {what}; stopping this run");
                    match self.halt(Interrupt::LeaseLost).await {}
                }
                Err(e) if e.is_retryable() && tokio::time::Instant::now() + pause < give_up => {
                    tracing::warn!(execution_id = %self.lease.execution_id, error = %e, "transient failure during {what}; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.is_retryable() => {
                    // The database stayed unreachable: stop locally and let the
                    // lease expire, so a healthy worker resumes the run.
                    tracing::error!(execution_id = %self.lease.execution_id, error = %e, "giving up on {what}");
                    match self.halt(Interrupt::LeaseLost).await {}
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records a step outcome. If an earlier try of this same write committed
    /// but its reply was lost, the retry finds the result already recorded
    /// under this lease's token and counts that as success.
    /// Records a step outcome and moves the open step to `open`, if the
    /// open step is this step (as the store does: see `open_set`).
    async fn record(&self, rec: StepRecord, transition: Transition, open: OpenStep) -> Result<(), StoreError> {
        let at = rec.position;
        let r = self.record_inner(rec, transition, open).await;
        if r.is_ok() {
            let mut o = self.open_state();
            if o.position == at {
                *o = Open { position: open.position, attempts: open.attempts, begun: false };
            }
        }
        r
    }

    async fn record_inner(&self, rec: StepRecord, transition: Transition, open: OpenStep) -> Result<(), StoreError> {
        let pending = self.pending_tx.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.step_id);
        if let Some(txn) = pending {
            let Ok(txn) = Arc::try_unwrap(txn) else {
                return Err(StoreError::Database(hydra_store::sea_orm::DbErr::Custom(format!(
                    "the transaction of step `{}` is still held by its body",
                    rec.step_id
                ))));
            };
            if matches!(rec.outcome, StepOutcome::Completed(_)) && matches!(transition, Transition::Continue) {
                return match self.store.commit_step_transaction(txn, &self.lease, rec, Some(open), self.now()).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_lease_lost() => match self.halt(Interrupt::LeaseLost).await {},
                    Err(e) => {
                        // The commit may or may not have happened; the recorded
                        // history decides on the next claim. Hand the run back.
                        tracing::warn!(execution_id = %self.lease.execution_id, error = %e, "transactional step commit failed");
                        match self.halt(Interrupt::Release).await {}
                    }
                };
            }
            // Not a success (for example the output did not encode): nothing
            // the body wrote may survive.
            txn.rollback().await?;
        }
        let result = self
            .write("checkpoint", || async {
                let cp = Checkpoint::step_and(rec.clone(), transition.clone()).open(open);
                let op = hydra_store::BatchOp::Checkpoint(self.lease.clone(), cp);
                crate::commit::write(self.committer.as_ref(), &self.store, op, self.now()).await.map(|_| ())
            })
            .await;
        match result {
            Err(StoreError::StepAlreadyRecorded { .. }) => {
                let ours = self
                    .store
                    .step(&self.lease.namespace, &self.lease.execution_id, &rec.step_id)
                    .await?
                    .is_some_and(|s| s.fencing_token == self.lease.token && s.status != StepStatus::Running);
                if ours { Ok(()) } else { result }
            }
            other => other,
        }
    }

    async fn fail_run(&self, message: String) -> Infallible {
        tracing::error!(execution_id = %self.lease.execution_id, "{message}");
        self.halt(Interrupt::Fail(message)).await
    }
}

/// The handle a workflow function uses to run steps and sleep. Cheap to
/// clone; every clone belongs to the same run.
#[derive(Clone, Debug)]
pub struct WorkflowContext {
    pub(crate) run: Arc<RunState>,
}

impl WorkflowContext {
    /// The run's ID.
    pub fn execution_id(&self) -> &ExecutionId {
        &self.run.lease.execution_id
    }

    /// The workflow's registered name.
    pub fn workflow_name(&self) -> &str {
        &self.run.workflow_name
    }

    /// The workflow attempt (from 1).
    pub fn attempt(&self) -> u32 {
        self.run.attempt
    }

    /// The run's namespace.
    pub fn namespace(&self) -> &str {
        &self.run.lease.namespace
    }

    /// Runs step `id` with default options. See [`WorkflowContext::step_with`].
    pub async fn step<T, F, Fut>(&self, id: &'static str, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        self.step_with(StepOptions::new(id), body).await
    }

    /// Runs a step: answered from the history if recorded; otherwise its
    /// attempt is counted durably (usually already, by the claim or by the
    /// previous step's result, so no write precedes the body), the body runs
    /// (retried by `options.retry`), and the result is recorded before it
    /// is returned.
    ///
    /// The body may run more than once only when a worker died (or lost its
    /// lease) after the body finished and before its result was recorded;
    /// use [`StepContext::idempotency_key`] for external effects.
    pub async fn step_with<T, F, Fut>(&self, options: StepOptions, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = &*self.run;
        if let Err(why) = StepId::validate_base(&options.id) {
            match run.fail_run(format!("invalid step ID: {why}")).await {}
        }
        let (position, step_id) = run.next_step_id(&options.id);
        let span = tracing::info_span!(
            "step",
            namespace = %run.lease.namespace,
            workflow = %run.workflow_name,
            execution_id = %run.lease.execution_id,
            step_id = %step_id,
            attempt = tracing::field::Empty,
        );
        self.run_step(options, body, position, step_id).instrument(span).await
    }

    /// Runs a transactional step: its body gets a [`StepTransaction`] on the
    /// engine's database; on success the step's checkpoint is written in
    /// that transaction, under the fencing check, and committed with the
    /// body's writes. If the body fails, times out, or the worker dies or
    /// loses its lease before the commit, the body's writes are rolled back
    /// and the step runs again (retries and timeouts apply as for any step).
    /// For data in the same database the effect is exactly once.
    pub async fn transactional_step<T, F, Fut>(&self, options: StepOptions, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepTransaction, StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = Arc::clone(&self.run);
        let body = Arc::new(Mutex::new(body));
        self.step_with(options, move |s: StepContext| {
            let run = Arc::clone(&run);
            let body = Arc::clone(&body);
            async move {
                let step_id = s.step_id.clone();
                let txn = match run.store.begin_step_transaction().await {
                    Ok(t) => Arc::new(t),
                    Err(e) => return Err(StepError::retryable(format!("could not begin the step transaction: {e}"))),
                };
                let tx = StepTransaction { inner: Arc::clone(&txn) };
                // The user's future is created under the lock, never awaited under it.
                let attempt = {
                    let mut body = body.lock().unwrap_or_else(|p| p.into_inner());
                    (*body)(tx, s)
                };
                let result = attempt.await;
                if result.is_ok() {
                    run.pending_tx.lock().unwrap_or_else(|p| p.into_inner()).insert(step_id, txn);
                } else if let Ok(t) = Arc::try_unwrap(txn) {
                    let _ = t.rollback().await;
                }
                result
            }
        })
        .await
    }

    async fn run_step<T, F, Fut>(
        &self,
        options: StepOptions,
        mut body: F,
        position: u32,
        step_id: StepId,
    ) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = &*self.run;
        let policy = options.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut prior_attempts = 0;
        let mut wake_at = None;
        if let Some(rec) = run.history.get(&position) {
            self.check_recorded(rec, position, &step_id, StepKind::Step).await;
            match rec.status {
                StepStatus::Completed => {
                    let bytes = rec.output.as_deref().unwrap_or_default();
                    return match Codec::decode::<T>(bytes) {
                        Ok(v) => {
                            tracing::debug!("step answered from history");
                            crate::metrics::step_cached(&run.lease.namespace, &run.workflow_name, &options.id);
                            Ok(v)
                        }
                        Err(reason) => {
                            let e = Error::Decode {
                                execution: run.lease.execution_id.clone(),
                                what: format!("the stored output of step `{step_id}`"),
                                reason,
                            };
                            match run.fail_run(e.to_string()).await {}
                        }
                    };
                }
                StepStatus::Failed => {
                    return Err(StepError::permanent(rec.error.clone().unwrap_or_else(|| "step failed".into())));
                }
                StepStatus::Running => {
                    prior_attempts = rec.attempts;
                    wake_at = rec.wake_at;
                }
                other => {
                    match run.fail_run(format!("step `{step_id}` has status `{other}`, unknown to this version")).await {}
                }
            }
        }
        let record = |outcome: StepOutcome| {
            StepRecord::new(step_id.clone(), options.id.to_string(), position, StepKind::Step, max_attempts, outcome)
        };
        // A durable backoff from an earlier attempt that has not run out yet.
        if let Some(w) = wake_at
            && run.now() < w
        {
            run.checkpoint_gate().await;
            let until = run.park_until(w);
            if let Err(e) = run.park(until).await {
                match run.fail_run(format!("could not park the run until its retry: {e}")).await {}
            }
            match run.halt(Interrupt::Suspended { until }).await {}
        }
        // After a result, the next position has its first attempt counted.
        let next_step = OpenStep::new(position + 1, 1);
        loop {
            run.checkpoint_gate().await;
            // Usually the attempt is counted already (by the claim or by the
            // previous result): no write before the body.
            let reserved = run.reserved_attempt(position, prior_attempts);
            let began = reserved.map_or(prior_attempts, |a| a - 1);
            if began >= max_attempts {
                let msg = format!(
                    "step `{step_id}` ran out of attempts ({max_attempts}): the last attempt never finished \
                     (its worker died or lost its lease)"
                );
                let rec = record(StepOutcome::Failed(msg.clone())).attempt(began);
                self.finish_step(rec, Transition::Continue, next_step).await;
                return Err(StepError::permanent(msg));
            }
            let attempt = match reserved {
                Some(a) => a,
                None => self.count_attempt(&options, position, &step_id, max_attempts).await,
            };
            run.begin_attempt(position, attempt);
            tracing::Span::current().record("attempt", attempt);
            let sctx = StepContext {
                execution_id: run.lease.execution_id.clone(),
                step_id: step_id.clone(),
                attempt,
                cancel: run.cancel.child_token(),
            };
            let started = std::time::Instant::now();
            let began_at = run.now();
            let fut = AssertUnwindSafe(body(sctx)).catch_unwind();
            let result = match options.timeout {
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => Ok(Err(StepError::retryable(format!("step `{step_id}` timed out after {t:?}")))),
                },
                None => fut.await,
            };
            let result = match result {
                Ok(r) => r,
                Err(panic) => {
                    Err(StepError::permanent(format!("step `{step_id}` panicked: {}", panic_message(&panic))))
                }
            };
            let took = started.elapsed().as_secs_f64();
            let (ns, wf, name) = (&run.lease.namespace, &run.workflow_name, &*options.id);
            match result {
                Ok(value) => match run.codec.encode(&value) {
                    Ok(bytes) => {
                        crate::metrics::step_executed(ns, wf, name, "completed", took);
                        crate::metrics::payload(ns, wf, "step", bytes.len());
                        let rec = record(StepOutcome::Completed(bytes)).attempt(attempt).started_at(began_at);
                        self.finish_step(rec, Transition::Continue, next_step).await;
                        return Ok(value);
                    }
                    Err(reason) => {
                        // The body ran and its effect happened: record a
                        // permanent failure, never a silent re-run.
                        crate::metrics::step_executed(ns, wf, name, "failed", took);
                        let e = Error::Encode { what: format!("the output of step `{step_id}`"), reason };
                        let msg = e.to_string();
                        let rec = record(StepOutcome::Failed(msg.clone())).attempt(attempt).started_at(began_at);
                        self.finish_step(rec, Transition::Continue, next_step).await;
                        return Err(StepError::permanent(msg));
                    }
                },
                Err(e) if e.is_permanent() || attempt >= max_attempts => {
                    let msg = if e.is_permanent() {
                        e.message().to_owned()
                    } else {
                        format!("{} (after {attempt} attempts)", e.message())
                    };
                    tracing::warn!(error = %msg, "step failed");
                    crate::metrics::step_executed(ns, wf, name, "failed", took);
                    let rec = record(StepOutcome::Failed(msg.clone())).attempt(attempt).started_at(began_at);
                    self.finish_step(rec, Transition::Continue, next_step).await;
                    return Err(StepError::permanent(msg));
                }
                Err(e) => {
                    let delay = policy.next_delay(attempt);
                    tracing::info!(error = %e, ?delay, "step attempt failed; retrying");
                    crate::metrics::step_executed(ns, wf, name, "retry", took);
                    crate::metrics::step_retried(ns, wf, name);
                    if delay <= run.inline_backoff {
                        // The retry's attempt is counted with this result.
                        self.finish_step(
                            record(StepOutcome::AttemptFailed(e.message().to_owned()))
                                .attempt(attempt)
                                .started_at(began_at),
                            Transition::Continue,
                            OpenStep::new(position, attempt + 1),
                        )
                        .await;
                        tokio::time::sleep(delay).await;
                        prior_attempts = attempt;
                    } else {
                        let wake = run.now() + duration_ms(delay);
                        let until = run.park_until(wake);
                        let rec = record(StepOutcome::AttemptFailed(e.message().to_owned()))
                            .attempt(attempt)
                            .started_at(began_at)
                            .wake_at(wake);
                        // Parked: the claim that wakes it counts the retry.
                        self.finish_step(rec, Transition::Sleep { until }, OpenStep::new(position, attempt)).await;
                        match run.halt(Interrupt::Suspended { until }).await {}
                    }
                }
            }
        }
    }

    /// Counts an attempt on the step's own row before its body runs: for a
    /// step that is not the run's open step (a step re-run after a workflow
    /// retry, or one whose row counts more attempts than the open step).
    async fn count_attempt(&self, options: &StepOptions, position: u32, step_id: &StepId, max_attempts: u32) -> u32 {
        let run = &*self.run;
        let attempt_row =
            StepAttempt::new(step_id.clone(), options.id.to_string(), position, StepKind::Step, max_attempts);
        let written = run
            .write("step attempt", || async {
                let op = hydra_store::BatchOp::Attempt(run.lease.clone(), attempt_row.clone());
                match crate::commit::write(run.committer.as_ref(), &run.store, op, run.now()).await? {
                    hydra_store::BatchValue::Attempt(n) => Ok(n),
                    other => Err(crate::commit::unexpected(other)),
                }
            })
            .await;
        match written {
            Ok(n) => n,
            Err(StoreError::PositionTaken { .. }) | Err(StoreError::StepAlreadyRecorded { .. }) => {
                // Someone recorded this position after our history was read:
                // only possible if the code is not deterministic.
                match run
                    .fail_run(format!("step `{step_id}` at position {position} conflicts with the recorded history"))
                    .await {}
            }
            Err(e) => match run.fail_run(format!("could not record an attempt of step `{step_id}`: {e}")).await {},
        }
    }

    async fn finish_step(&self, rec: StepRecord, transition: Transition, open: OpenStep) {
        let run = &*self.run;
        let step = rec.step_id.clone();
        if let Err(e) = run.record(rec, transition, open).await {
            match run.fail_run(format!("could not record the result of step `{step}`: {e}")).await {}
        }
    }

    async fn check_recorded(&self, rec: &Step, position: u32, called: &StepId, kind: StepKind) {
        if &rec.step_id != called || rec.kind != kind {
            crate::metrics::nondeterminism(&self.run.lease.namespace, &self.run.workflow_name);
            let e = Error::NonDeterminism {
                execution: self.run.lease.execution_id.clone(),
                position,
                recorded: rec.step_id.clone(),
                called: called.clone(),
            };
            match self.run.fail_run(e.to_string()).await {}
        }
    }

    /// Sleeps durably for `duration`: the wake-up time is recorded as a step
    /// and the worker is released; the run resumes after it. On replay the
    /// recorded wake-up time is used, so a resumed run does not sleep again.
    pub async fn sleep(&self, duration: Duration) {
        let wake = self.run.now().saturating_add(duration_ms(duration));
        self.sleep_inner(wake).await
    }

    /// Sleeps durably until `wake_at_ms` on the engine clock.
    pub async fn sleep_until(&self, wake_at_ms: i64) {
        self.sleep_inner(wake_at_ms).await
    }

    async fn sleep_inner(&self, requested_wake: i64) {
        let run = &*self.run;
        let (position, step_id) = run.next_step_id(SLEEP_STEP);
        let recorded = run.history.get(&position);
        let wake = match recorded {
            Some(rec) => {
                self.check_recorded(rec, position, &step_id, StepKind::Sleep).await;
                rec.wake_at.unwrap_or(requested_wake)
            }
            None => requested_wake,
        };
        if recorded.is_some() && run.now() >= wake {
            return;
        }
        run.checkpoint_gate().await;
        let until = run.park_until(wake);
        if recorded.is_none() {
            let rec =
                StepRecord::new(step_id, SLEEP_STEP, position, StepKind::Sleep, 1, StepOutcome::Completed(Vec::new()))
                    .wake_at(wake);
            // The claim that wakes the run counts the next step's first attempt.
            if let Err(e) = run.record(rec, Transition::Sleep { until }, OpenStep::new(position + 1, 0)).await {
                match run.fail_run(format!("could not record a sleep: {e}")).await {}
            }
        } else {
            if let Err(e) = run.park(until).await {
                match run.fail_run(format!("could not park the run: {e}")).await {}
            }
        }
        tracing::debug!(wake_at = wake, "sleeping durably");
        match run.halt(Interrupt::Suspended { until }).await {}
    }
}

/// A context that answers steps from `history` and writes nothing while
/// they are recorded (see [`crate::__private::replay_context`]). `None` for
/// an empty history.
pub(crate) fn replay_context(store: Store, codec: Codec, history: Vec<Step>) -> Option<WorkflowContext> {
    let first = history.first()?;
    let lease = Lease {
        namespace: "replay".into(),
        execution_id: first.execution_id.clone(),
        worker_id: hydra_store::WorkerId::from_string("replay"),
        token: first.fencing_token,
    };
    let (run, _interrupts) = RunState::new(RunSetup {
        committer: None,
        store,
        codec,
        clock: Clock::system(),
        lease,
        workflow_name: "replay".into(),
        attempt: 1,
        deadline_at: None,
        history,
        open_step: OpenStep::default(),
        inline_backoff: Duration::ZERO,
        write_patience: Duration::ZERO,
    });
    Some(WorkflowContext { run })
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
