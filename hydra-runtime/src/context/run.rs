//! The run's state under one lease: its recorded history, the cursor that
//! gives each call its position and step ID, this holder's view of the open
//! step, the interrupt that stops the run, and the fenced writes (retried
//! through transient failures) that every step, sleep and park goes through.

use crate::clock::Clock;
use crate::codec::{Codec, CodecRegistry};
use hydra_store::{
    Checkpoint, Lease, OpenStep, Step, StepId, StepOutcome, StepRecord, StepStatus, Store, StoreError, Transition,
};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a run's workflow future stopped, whoever stopped it: the body
/// returned (an output, an error, a panic); the run stopped itself or was
/// stopped (parked, refused, cancelled, timed out, a lease lost, a drain);
/// or, after its compensations, how it ends. One enum from the body to the
/// worker's last write (`worker/drive.rs`); the store's
/// [`hydra_store::Terminal`] is the end it writes, and
/// [`super::compensate::EndCause`] the cause a compensation marker records.
#[derive(Clone, Debug)]
pub(crate) enum RunEnd {
    /// The body returned this encoded output.
    Output(Vec<u8>),
    /// The body's output could not be encoded (why).
    OutputNotEncoded(String),
    /// The body returned this error.
    Failed(Arc<crate::error::WorkflowError>),
    /// The body panicked (its message).
    Panicked(String),
    /// Parked until `until` (already written); the worker may poke its poll
    /// loop then.
    Suspended { until: i64 },
    /// End the run failed with this message.
    Fail(String),
    /// End the run cancelled.
    Cancel,
    /// End the run timed out.
    TimeOut(String),
    /// End the run for this cause: set before the run was driven (cancel
    /// requested, deadline passed, out of attempts) or found recorded (a
    /// compensation under way); its compensations run first.
    End(super::compensate::EndCause),
    /// Suspend the run: its code does not replay its history (the message
    /// names both steps and the position).
    Suspend(String),
    /// Stop without writing: the lease is gone.
    LeaseLost,
    /// Stop and hand the lease back (worker shutting down).
    Release,
    /// Compensated (or nothing to compensate): end the run so.
    Ended(hydra_store::Terminal),
}

impl RunEnd {
    /// Whether the body returned (rather than being stopped).
    pub(crate) fn returned(&self) -> bool {
        matches!(self, RunEnd::Output(_) | RunEnd::OutputNotEncoded(_) | RunEnd::Failed(_) | RunEnd::Panicked(_))
    }
}

struct Cursor {
    next_position: u32,
    occurrences: HashMap<String, Uses>,
    /// Set by [`RunState::claim_step_id`] for the `#[step]` call that takes
    /// the next ID (claim and ID are taken in one poll, with no await
    /// between), so a step call without it is known to be hand-written.
    claimed: bool,
}

/// The calls of one base step ID in this run so far, and the `#[step]`
/// function that owns the ID (its Rust path), once one claimed it.
struct Uses {
    calls: u32,
    owner: Option<&'static str>,
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

/// A run under one lease, by concern: which run it is (its lease,
/// workflow, attempt, deadline), what it works with (`env`), its policy,
/// its replay (history, cursor, divergence), this holder's view of its
/// open step, what stops it (`stops`), its compensations (`undo`), and
/// what its steps hand over (transactions, one-shot signals taken).
pub(crate) struct RunState {
    pub(crate) lease: Lease,
    pub(crate) workflow_name: String,
    /// The workflow attempt (from 1).
    pub(crate) attempt: u32,
    pub(crate) deadline_at: Option<i64>,
    pub(crate) env: RunEnv,
    pub(crate) policy: RunPolicy,
    pub(crate) replay: Replay,
    open: Mutex<Open>,
    pub(crate) stops: Stops,
    pub(crate) undo: Undo,
    /// Transactions of transactional steps whose bodies succeeded, waiting
    /// for their checkpoint to be written into them.
    pub(super) pending_tx: Mutex<HashMap<StepId, Arc<hydra_store::sea_orm::DatabaseTransaction>>>,
    /// Signals sent once that this run took (a child's end, an awakeable's
    /// settlement), by name, with the receive that took them: a second wait
    /// for one answers from here instead of parking for ever. Rebuilt by
    /// replay in the same order.
    pub(super) taken: Mutex<HashMap<String, (StepId, Vec<u8>)>>,
}

/// What a run works with: the engine's services, for this run.
pub(crate) struct RunEnv {
    pub(crate) committer: Option<crate::commit::Committer>,
    /// Pokes this process's workers (a child run was started).
    pub(crate) work: Option<watch::Sender<u64>>,
    pub(crate) store: Store,
    /// The codec of this run's new payloads.
    pub(crate) codec: Codec,
    /// The engine's codecs: stored payloads decode through them by tag.
    pub(crate) codecs: CodecRegistry,
    /// The largest encoded input of a run it starts (a child).
    pub(crate) max_payload_bytes: usize,
    pub(crate) clock: Clock,
    /// The worker's state, for step bodies.
    pub(crate) state: Arc<crate::state::StateMap>,
}

/// How a run behaves where its worker decides.
pub(crate) struct RunPolicy {
    /// Backoffs up to this long are waited out in process; longer ones park
    /// the run durably.
    pub(crate) inline_backoff: Duration,
    /// How long a checkpoint write is retried through transient database
    /// errors before the run is given up locally.
    pub(crate) write_patience: Duration,
    /// What non-determinism does to this run.
    pub(crate) on_nondeterminism: crate::workflow::OnNondeterminism,
}

/// The run's replay: its recorded history and the cursor that gives each
/// call its position.
pub(crate) struct Replay {
    /// The recorded steps by position: set once, before the workflow code
    /// runs (the run is already heartbeated while it is read).
    history: std::sync::OnceLock<HashMap<u32, Step>>,
    /// The highest recorded position (see `replaying`).
    last_recorded: std::sync::OnceLock<Option<u32>>,
    cursor: Mutex<Cursor>,
    /// The first divergence a replay met: position, recorded step, called
    /// step (for the replay verifier).
    pub(crate) divergence: Mutex<Option<(u32, StepId, StepId)>>,
    /// A replay verification: the run stops where its history ends, before
    /// anything is written.
    pub(crate) verifying: std::sync::atomic::AtomicBool,
}

/// What stops a run, and how it learns of it.
pub(crate) struct Stops {
    /// Cancelled when the run was cancelled, its lease lost, or the worker drains.
    pub(crate) cancel: CancellationToken,
    /// Why the run is to end, decided before it was driven: the body
    /// replays up to its first new durable call and stops there.
    pub(crate) stop: Mutex<Option<super::compensate::EndCause>>,
    pub(crate) cancel_requested: std::sync::atomic::AtomicBool,
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// This run's own writes that hand its lease back (parks), in flight or
    /// done: a renewal that finds the lease gone while one is counted sees
    /// the run's own doing, not a lost lease. A write that fails, finds it
    /// need not park, or is dropped part-way leaves the count as it was; a
    /// lease really lost is then reported by the heartbeat or the write.
    pub(crate) handing_back: std::sync::atomic::AtomicUsize,
    /// The first stop (see [`RunEnd`]), watched by the worker.
    interrupt: watch::Sender<Option<RunEnd>>,
}

/// The run's compensations (sagas).
pub(crate) struct Undo {
    /// The step bodies' token while compensations run (a cancel of the run
    /// does not stop its compensations; a lost lease or a drain does).
    pub(crate) undo_cancel: CancellationToken,
    /// Compensations registered by the body, in order.
    pub(crate) compensations: Mutex<Vec<super::compensate::Compensation>>,
    /// Set once the run's compensations run: the gate lets their steps
    /// through a cancel or a passed deadline.
    pub(crate) compensating: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState").field("lease", &self.lease).field("workflow", &self.workflow_name).finish()
    }
}

pub(crate) struct RunSetup {
    pub(crate) committer: Option<crate::commit::Committer>,
    /// Pokes this process's workers (a child run was started).
    pub(crate) work: Option<watch::Sender<u64>>,
    pub(crate) store: Store,
    pub(crate) codec: Codec,
    pub(crate) codecs: CodecRegistry,
    pub(crate) max_payload_bytes: usize,
    pub(crate) clock: Clock,
    pub(crate) lease: Lease,
    pub(crate) workflow_name: String,
    pub(crate) attempt: u32,
    pub(crate) deadline_at: Option<i64>,
    /// The recorded steps, if already read; otherwise [`RunState::set_history`]
    /// before the workflow runs.
    pub(crate) history: Option<Vec<Step>>,
    pub(crate) open_step: OpenStep,
    pub(crate) inline_backoff: Duration,
    pub(crate) write_patience: Duration,
    /// The worker's state, for step bodies.
    pub(crate) state: Arc<crate::state::StateMap>,
    /// What non-determinism does to this run.
    pub(crate) on_nondeterminism: crate::workflow::OnNondeterminism,
}

impl RunState {
    pub(crate) fn new(s: RunSetup) -> (Arc<RunState>, watch::Receiver<Option<RunEnd>>) {
        let (tx, rx) = watch::channel(None);
        let state = RunState {
            lease: s.lease,
            workflow_name: s.workflow_name,
            attempt: s.attempt,
            deadline_at: s.deadline_at,
            env: RunEnv {
                committer: s.committer,
                work: s.work,
                store: s.store,
                codec: s.codec,
                codecs: s.codecs,
                max_payload_bytes: s.max_payload_bytes,
                clock: s.clock,
                state: s.state,
            },
            policy: RunPolicy {
                inline_backoff: s.inline_backoff,
                write_patience: s.write_patience,
                on_nondeterminism: s.on_nondeterminism,
            },
            replay: Replay {
                history: s.history.map_or_else(std::sync::OnceLock::new, |h| {
                    h.into_iter().map(|st| (st.position, st)).collect::<HashMap<_, _>>().into()
                }),
                last_recorded: std::sync::OnceLock::new(),
                cursor: Mutex::new(Cursor { next_position: 0, occurrences: HashMap::new(), claimed: false }),
                divergence: Mutex::new(None),
                verifying: false.into(),
            },
            open: Mutex::new(Open { position: s.open_step.position, attempts: s.open_step.attempts, begun: false }),
            stops: Stops {
                cancel: CancellationToken::new(),
                stop: Mutex::new(None),
                cancel_requested: false.into(),
                draining: false.into(),
                handing_back: 0.into(),
                interrupt: tx,
            },
            undo: Undo {
                undo_cancel: CancellationToken::new(),
                compensations: Mutex::new(Vec::new()),
                compensating: false.into(),
            },
            pending_tx: Mutex::new(HashMap::new()),
            taken: Mutex::new(HashMap::new()),
        };
        (Arc::new(state), rx)
    }

    /// Sets the recorded steps (once; later calls are ignored).
    pub(crate) fn set_history(&self, history: Vec<Step>) {
        let _ = self.replay.history.set(history.into_iter().map(|st| (st.position, st)).collect());
    }

    /// The step recorded at `position`, if any.
    pub(crate) fn recorded(&self, position: u32) -> Option<&Step> {
        self.replay.history.get().and_then(|h| h.get(&position))
    }

    /// Mirrors a write that moved the open step from `at` to `to` (if it
    /// was at `at`), as [`RunState::record`] does for step results.
    pub(super) fn moved_open(&self, at: u32, to: OpenStep) {
        let mut o = self.open_state();
        if o.position == at {
            *o = Open { position: to.position, attempts: to.attempts, begun: false };
        }
    }

    /// Why the run was stopped (lease lost, cancelled, parked, …), if it was.
    pub(crate) fn current_interrupt(&self) -> Option<RunEnd> {
        self.stops.interrupt.borrow().clone()
    }

    /// Signals the worker (first signal wins) and never returns.
    pub(crate) async fn halt(&self, why: RunEnd) -> Infallible {
        if matches!(why, RunEnd::Suspended { .. }) {
            crate::metrics::parked(&self.lease.namespace, &self.workflow_name);
        }
        self.raise(why);
        std::future::pending::<Infallible>().await
    }

    /// Clears the interrupt (the body's stop), for the compensation phase,
    /// keeping a drain; returns a receiver of the next one.
    pub(crate) fn reset_interrupt(&self) -> watch::Receiver<Option<RunEnd>> {
        self.stops.interrupt.send_replace(None);
        if self.stops.draining.load(std::sync::atomic::Ordering::SeqCst) {
            self.raise(RunEnd::Release);
        }
        self.stops.interrupt.subscribe()
    }

    /// Raises an interrupt from outside the workflow (heartbeat, shutdown).
    pub(crate) fn interrupt(&self, why: RunEnd) {
        self.raise(why);
    }

    /// Records the first interrupt (later ones are ignored) and, unless the
    /// run merely parked, cancels its step bodies.
    fn raise(&self, why: RunEnd) {
        self.stops.interrupt.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(why);
                true
            } else {
                false
            }
        });
        if !matches!(self.stops.interrupt.borrow().as_ref(), Some(RunEnd::Suspended { .. })) {
            self.stops.cancel.cancel();
            if self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
                self.undo.undo_cancel.cancel();
            }
        }
    }

    pub(super) fn next_step_id(&self, base: &str) -> (u32, StepId) {
        let mut c = self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let position = c.next_position;
        c.next_position = c.next_position.saturating_add(1);
        // Look up before inserting: no allocation for a name seen before.
        let n = match c.occurrences.get_mut(base) {
            Some(u) => {
                u.calls += 1;
                u.calls
            }
            None => {
                c.occurrences.insert(base.to_owned(), Uses { calls: 1, owner: None });
                1
            }
        };
        (position, StepId::new(base, n))
    }

    /// Takes back the position and occurrence the call at `position` with
    /// ID `called` took: it stopped at the compensation marker recorded
    /// there, which the compensation phase then reads at that position.
    pub(super) fn unwind_call(&self, position: u32, called: &StepId) {
        let mut c = self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if c.next_position == position.saturating_add(1) {
            c.next_position = position;
            if let Some(u) = c.occurrences.get_mut(called.base()) {
                u.calls = u.calls.saturating_sub(1);
            }
        }
    }

    /// Whether the body is still loading or replaying its history: calls
    /// recorded beyond the next one remain, so the compensations of the
    /// recorded steps may not all be registered yet.
    pub(crate) fn replaying(&self) -> bool {
        let next = self.peek_position();
        // Computed once per history (the guard asks on every tick).
        let last =
            self.replay.history.get().map(|h| *self.replay.last_recorded.get_or_init(|| h.keys().max().copied()));
        match last {
            None => true,
            Some(last) => last.is_some_and(|p| p >= next),
        }
    }

    /// Stops the body because the run passed its deadline, unless its
    /// compensations have begun (they run past the deadline: it is why they
    /// run) or it was stopped already. The check and the stop are one step
    /// under the interrupt's lock, which compensation's start also takes,
    /// so a deadline seen just before compensations begin cannot cancel them.
    pub(crate) fn interrupt_past_deadline(&self, why: RunEnd) {
        let raised = self.stops.interrupt.send_if_modified(|slot| {
            if slot.is_none() && !self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
                *slot = Some(why);
                true
            } else {
                false
            }
        });
        if raised {
            self.stops.cancel.cancel();
        }
    }

    /// The position the next durable call takes.
    pub(crate) fn peek_position(&self) -> u32 {
        self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner()).next_position
    }

    /// Notes the first divergence a replay met.
    pub(super) fn note_divergence(&self, position: u32, recorded: &StepId, called: &StepId) {
        let mut d = self.replay.divergence.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some((position, recorded.clone(), called.clone()));
        }
    }

    /// Moves the cursor to `position` (the compensation phase, to the
    /// recorded marker).
    pub(crate) fn seek(&self, position: u32) {
        self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner()).next_position = position;
    }

    /// The position and recorded cause of this run's compensation marker,
    /// if a worker began compensating it before.
    pub(crate) fn recorded_marker(&self) -> Option<(u32, Option<Vec<u8>>)> {
        let history = self.replay.history.get()?;
        history
            .values()
            .find(|s| s.step_id.base() == super::compensate::COMPENSATE_STEP)
            .map(|s| (s.position, s.output.clone()))
    }

    /// Notes that the `#[step]` function `function` (its Rust path) is
    /// about to call `next_step_id(base)`. If another function, or a step or
    /// sleep called without `#[step]`, used `base` earlier in this run, the
    /// run fails: the two would share one ID sequence, and replay could hand
    /// one's record to the other. One map lookup; allocates only for a base
    /// ID not seen before in the run (as `next_step_id` would).
    pub(crate) async fn claim_step_id(&self, base: &str, function: &'static str) {
        let other = {
            let mut c = self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner());
            match c.occurrences.get_mut(base) {
                None => {
                    c.occurrences.insert(base.to_owned(), Uses { calls: 0, owner: Some(function) });
                    None
                }
                Some(u) => match u.owner {
                    Some(f) if f == function => None,
                    Some(f) => Some(format!("`{f}`")),
                    None => {
                        if u.calls == 0 {
                            u.owner = Some(function);
                            None
                        } else {
                            Some("a step or sleep called without `#[step]` (`ctx.step`, `ctx.step_with`)".to_owned())
                        }
                    }
                },
            }
        };
        if other.is_none() {
            self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner()).claimed = true;
        }
        if let Some(other) = other {
            let message = format!(
                "duplicate step ID `{base}` in workflow `{}`: {other} and `{function}` are different steps with the \
                 same ID in one run, so their records would be mistaken for each other's; give one of them a \
                 different `#[step(id = \"…\")]`",
                self.workflow_name
            );
            match self.fail_run(message).await {}
        }
    }

    /// For a step call about to take an ID: if it is hand-written (no
    /// `#[step]` claimed the ID just before) and a `#[step]` function owns
    /// `base` in this run, that function. The run must then fail, as in
    /// [`RunState::claim_step_id`].
    pub(super) fn unclaimed_use_of_owned_id(&self, base: &str) -> Option<&'static str> {
        let mut c = self.replay.cursor.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::take(&mut c.claimed) {
            return None;
        }
        c.occurrences.get(base).and_then(|u| u.owner)
    }

    pub(super) fn now(&self) -> i64 {
        self.env.clock.now_ms()
    }

    fn open_state(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The attempt already counted for the step at `position`, if one is
    /// reserved for this lease holder and not begun. `prior` is the count
    /// on the step's row, if it has one.
    pub(super) fn reserved_attempt(&self, position: u32, prior: u32) -> Option<u32> {
        let o = self.open_state();
        (o.position == position && !o.begun && o.attempts > prior).then_some(o.attempts)
    }

    /// Notes that `attempt` of the step at `position` began. An attempt
    /// counted on the step's own row (not at the open position) leaves the
    /// open step as it is.
    pub(super) fn begin_attempt(&self, position: u32, attempt: u32) {
        let mut o = self.open_state();
        if o.position == position {
            o.attempts = o.attempts.max(attempt);
            o.begun = true;
        }
    }

    /// Parks the run until `until`, handing back any reserved attempt.
    pub(super) async fn park(&self, until: i64) -> Result<(), StoreError> {
        let write = self.write("park", || {
            let cp = Checkpoint::transition(Transition::Sleep { until }).open(self.open_to_hand_back());
            self.env.store.checkpoint(&self.lease, cp, self.now())
        });
        self.parking_write(write, |_| true).await
    }

    /// Runs `write`, which hands the lease back when it succeeds and
    /// `parked` says so of its result (see `handing_back`).
    pub(super) async fn parking_write<T, E>(
        &self,
        write: impl Future<Output = Result<T, E>>,
        parked: impl FnOnce(&T) -> bool,
    ) -> Result<T, E> {
        let guard = super::hand_back::HandBack::new(&self.stops.handing_back);
        let r = write.await;
        if r.as_ref().is_ok_and(parked) {
            guard.keep();
        }
        r
    }

    /// The open step to leave behind when the lease is handed back: an
    /// attempt reserved for us that never began is taken back.
    pub(crate) fn open_to_hand_back(&self) -> OpenStep {
        let o = *self.open_state();
        OpenStep::new(o.position, if o.begun { o.attempts } else { o.attempts.saturating_sub(1) })
    }

    /// The run's wake-up for `until`, brought forward to its deadline
    /// (not while compensating: the deadline is why it compensates).
    pub(super) fn park_until(&self, until: i64) -> i64 {
        if self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
            return until;
        }
        self.deadline_at.map_or(until, |d| until.min(d))
    }

    /// Checks that apply at every checkpoint: cancellation, deadline, drain.
    pub(super) async fn checkpoint_gate(&self) {
        if self.replay.verifying.load(std::sync::atomic::Ordering::SeqCst) {
            // The end of the recorded history: it replayed this far.
            match self.halt(RunEnd::Release).await {}
        }
        let compensating = self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst);
        if !compensating {
            let stop = self.stops.stop.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(cause) = stop {
                match self.halt(RunEnd::End(cause)).await {}
            }
        }
        if !compensating && self.stops.cancel_requested.load(std::sync::atomic::Ordering::SeqCst) {
            match self.halt(RunEnd::Cancel).await {}
        }
        if let Some(d) = self.deadline_at
            && !compensating
            && self.now() >= d
        {
            match self.halt(RunEnd::TimeOut("the run passed its deadline".into())).await {}
        }
        if self.stops.draining.load(std::sync::atomic::Ordering::SeqCst) {
            match self.halt(RunEnd::Release).await {}
        }
    }

    /// Runs a store write, retrying transient failures for a while. A lost
    /// lease halts the run; any other failure ends it failed.
    pub(super) async fn write<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let give_up = crate::clock::instant_after(self.policy.write_patience);
        let mut pause = Duration::from_millis(50);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_lease_lost() => {
                    tracing::warn!(execution_id = %self.lease.execution_id, "lease lost during {what}; stopping this run");
                    match self.halt(RunEnd::LeaseLost).await {}
                }
                Err(e) if e.is_retryable() && crate::clock::instant_after(pause) < give_up => {
                    tracing::warn!(execution_id = %self.lease.execution_id, error = %e, "transient failure during {what}; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.is_retryable() => {
                    // The database stayed unreachable: stop locally and let the
                    // lease expire, so a healthy worker resumes the run.
                    tracing::error!(execution_id = %self.lease.execution_id, error = %e, "giving up on {what}");
                    match self.halt(RunEnd::LeaseLost).await {}
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
    pub(super) async fn record(
        &self,
        rec: StepRecord,
        transition: Transition,
        open: OpenStep,
    ) -> Result<(), StoreError> {
        let at = rec.position;
        let r = self.record_inner(rec, transition, open, None).await;
        if r.is_ok() {
            let mut o = self.open_state();
            if o.position == at {
                *o = Open { position: open.position, attempts: open.attempts, begun: false };
            }
        }
        r
    }

    /// Records a step outcome that parks the run. If the step is not the
    /// open step, the open step is handed back as this holder sees it
    /// ([`RunState::open_to_hand_back`]: a claim reserved an attempt for it
    /// that did not begin), but only if it is still what this holder saw: a
    /// sibling step's result committed meanwhile is not undone.
    pub(super) async fn record_parking(&self, rec: StepRecord, until: i64, attempt: u32) -> Result<(), StoreError> {
        let transition = Transition::Sleep { until };
        if self.open_state().position == rec.position {
            // The claim that wakes the run counts the step's next attempt.
            let open = OpenStep::new(rec.position, attempt);
            return self.record(rec, transition, open).await;
        }
        let seen = *self.open_state();
        let open = self.open_to_hand_back();
        self.record_inner(rec, transition, open, Some(OpenStep::new(seen.position, seen.attempts))).await
    }

    async fn record_inner(
        &self,
        rec: StepRecord,
        transition: Transition,
        open: OpenStep,
        seen: Option<OpenStep>,
    ) -> Result<(), StoreError> {
        let pending = self.pending_tx.lock().unwrap_or_else(|p| p.into_inner()).remove(&rec.step_id);
        if let Some(txn) = pending {
            let Ok(txn) = Arc::try_unwrap(txn) else {
                return Err(StoreError::Database(hydra_store::sea_orm::DbErr::Custom(format!(
                    "the transaction of step `{}` is still held by its body",
                    rec.step_id
                ))));
            };
            if matches!(rec.outcome, StepOutcome::Completed(_)) && matches!(transition, Transition::Continue) {
                return match self.env.store.commit_step_transaction(txn, &self.lease, rec, Some(open), self.now()).await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_lease_lost() => match self.halt(RunEnd::LeaseLost).await {},
                    Err(e) => {
                        // The commit may or may not have happened; the recorded
                        // history decides on the next claim. Hand the run back.
                        tracing::warn!(execution_id = %self.lease.execution_id, error = %e, "transactional step commit failed");
                        match self.halt(RunEnd::Release).await {}
                    }
                };
            }
            // Not a success (for example the output did not encode): nothing
            // the body wrote may survive.
            txn.rollback().await?;
        }
        let parks = !matches!(transition, Transition::Continue);
        let write = self.write("checkpoint", || async {
            let cp = Checkpoint::step_and(rec.clone(), transition.clone());
            let cp = match seen {
                Some(seen) => cp.open_if_unchanged(seen, open),
                None => cp.open(open),
            };
            let op = hydra_store::BatchOp::Checkpoint(self.lease.clone(), cp);
            crate::commit::write(self.env.committer.as_ref(), &self.env.store, op, self.now()).await.map(|_| ())
        });
        let result = if parks { self.parking_write(write, |_| true).await } else { write.await };
        match result {
            Err(StoreError::StepAlreadyRecorded { .. }) => {
                let ours = self
                    .env
                    .store
                    .step(&self.lease.namespace, &self.lease.execution_id, &rec.step_id)
                    .await?
                    .is_some_and(|s| s.fencing_token == self.lease.token && s.status != StepStatus::Running);
                if ours {
                    // An earlier try committed: the lease is handed back.
                    if parks {
                        self.stops.handing_back.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(())
                } else {
                    result
                }
            }
            other => other,
        }
    }

    /// This code does not replay the run (`message` says why): suspended
    /// or failed, by the workflow's [`crate::OnNondeterminism`].
    pub(super) async fn refuse(&self, message: String) -> Infallible {
        match self.policy.on_nondeterminism {
            crate::workflow::OnNondeterminism::Suspend => self.halt(RunEnd::Suspend(message)).await,
            _ => self.fail_run(message).await,
        }
    }

    pub(super) async fn fail_run(&self, message: String) -> Infallible {
        tracing::error!(execution_id = %self.lease.execution_id, "{message}");
        self.halt(RunEnd::Fail(message)).await
    }
}
