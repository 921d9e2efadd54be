//! The run's state under one lease: its recorded history, the cursor that
//! gives each call its position and step ID, and this holder's view of the
//! open step. What stops a run is in `stop.rs`; its fenced writes in
//! `fenced.rs`.

use super::stop::RunEnd;
use crate::clock::Clock;
use crate::codec::{Codec, CodecRegistry};
use hydra_store::{Lease, OpenStep, Step, StepId, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    /// Step calls in flight, from their attempt's admission until their
    /// result is recorded, and a park being written: the two exclude each
    /// other (see [`RunState::park_gate`] and [`RunState::body_begins`]).
    bodies: Bodies,
    /// Transactions of transactional steps whose bodies succeeded, waiting
    /// for their checkpoint to be written into them.
    pub(super) pending_tx: Mutex<HashMap<StepId, Arc<hydra_store::sea_orm::DatabaseTransaction>>>,
    /// Signals sent once that this run took (a child's end, an awakeable's
    /// settlement), by name, with the receive that took them: a second wait
    /// for one answers from here instead of parking for ever. Rebuilt by
    /// replay in the same order.
    pub(super) taken: Mutex<HashMap<String, (StepId, Vec<u8>)>>,
}

/// Step bodies of a run in flight, and a park about to be written: the
/// two exclude each other (see [`RunState::body_begins`] and
/// [`RunState::park_gate`]).
#[derive(Default)]
struct Bodies {
    count: std::sync::atomic::AtomicUsize,
    parking: std::sync::atomic::AtomicBool,
    /// Told when the count falls to 0, and when a park's gate is given
    /// back (parkers wait here).
    no_bodies: tokio::sync::Notify,
    /// Told when `parking` is cleared (bodies wait here).
    no_parking: tokio::sync::Notify,
}

/// A step call in flight, from the admission of its attempt until its
/// result is recorded (dropped then, or when the call is dropped).
pub(super) struct BodyInFlight<'a>(&'a Bodies);

impl Drop for BodyInFlight<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.no_bodies.notify_waiters();
        }
    }
}

/// The right to write a park: held from when no body is in flight until
/// the write is answered (a park that committed drops the workflow
/// future, and this with it).
pub(super) struct ParkGate<'a>(&'a Bodies);

impl Drop for ParkGate<'_> {
    fn drop(&mut self) {
        self.0.parking.store(false, std::sync::atomic::Ordering::SeqCst);
        self.0.no_parking.notify_waiters();
        self.0.no_bodies.notify_waiters();
    }
}

tokio::task_local! {
    /// Set while a step's body runs: the run it belongs to. A durable call
    /// that parks from inside a body would wait for that body for ever.
    pub(super) static IN_STEP_BODY: hydra_store::ExecutionId;
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
    /// The largest payload it stores: a child's input, a step's output, an
    /// event, its own output, a typed error.
    pub(crate) max_payload_bytes: usize,
    pub(crate) clock: Clock,
    /// The worker's state, for step bodies.
    pub(crate) state: Arc<crate::state::StateMap>,
}

impl RunEnv {
    /// `Ok` if a payload of `size` bytes fits the engine's payload limit;
    /// otherwise the error that names `what` and the limit.
    pub(crate) fn fits(&self, what: impl FnOnce() -> String, size: usize) -> Result<(), String> {
        if size <= self.max_payload_bytes {
            return Ok(());
        }
        Err(crate::error::Error::TooLarge { what: what(), size, limit: self.max_payload_bytes }.to_string())
    }
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
    pub(super) interrupt: watch::Sender<Option<RunEnd>>,
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
            bodies: Bodies::default(),
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

    /// When a wait without a deadline of its own is due: at the run's
    /// deadline, unless the run compensates (past its deadline, a wait in a
    /// compensation would be due at once, and claimed, replayed and parked
    /// again in a loop; it waits for what it waits for).
    pub(super) fn deadline_wake(&self) -> Option<i64> {
        if self.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        self.deadline_at
    }

    /// Notes a step call beginning its attempt (before the attempt is
    /// counted and the body runs); it counts until the guard is dropped. It
    /// waits while a park is being written: that park drops the workflow
    /// future, and a body begun meanwhile would run again after the
    /// wake-up.
    pub(super) async fn body_begins(&self) -> BodyInFlight<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        let b = &self.bodies;
        loop {
            // Registered before the check: a gate given back after it wakes us.
            let free = b.no_parking.notified();
            if !b.parking.load(SeqCst) {
                b.count.fetch_add(1, SeqCst);
                if !b.parking.load(SeqCst) {
                    return BodyInFlight(b);
                }
                // A park began at the same moment: it goes first.
                if b.count.fetch_sub(1, SeqCst) == 1 {
                    b.no_bodies.notify_waiters();
                }
            }
            free.await;
        }
    }

    /// Waits until no step body of the run is in flight, and keeps new ones
    /// from beginning until the returned gate is dropped (after the park's
    /// write was answered). A park hands the lease back and drops the
    /// workflow future, with every call joined in it: a sibling step whose
    /// body is running (or whose result is not recorded yet) would run
    /// again after the wake-up, without any crash. So a call parks only
    /// once its siblings' bodies have finished and their results are
    /// recorded, and no body begins while it parks. A park from inside a
    /// step's own body (a durable call that parks, made in a body) would
    /// wait for itself: the run fails, saying so.
    pub(super) async fn park_gate(&self) -> ParkGate<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        if IN_STEP_BODY.try_with(|id| *id == self.lease.execution_id).unwrap_or(false) {
            let msg = "a durable call that parks the run (a sleep, a wait for a signal, a child or an awakeable, a \
                       durable retry) was made inside a step's body: make it in the workflow, between steps";
            match self.fail_run(msg.to_owned()).await {}
        }
        let b = &self.bodies;
        loop {
            // Registered before the check: a body ending (or another park's
            // gate given back) after it wakes us; our own step back below
            // tells only the bodies, so this never wakes itself.
            let settled = b.no_bodies.notified();
            if b.parking.compare_exchange(false, true, SeqCst, SeqCst).is_ok() {
                if b.count.load(SeqCst) == 0 {
                    return ParkGate(b);
                }
                b.parking.store(false, SeqCst);
                b.no_parking.notify_waiters();
            }
            settled.await;
        }
    }

    /// Whether a sibling step call is in flight (a receive then first takes
    /// what is there without parking).
    pub(super) fn bodies_in_flight(&self) -> bool {
        self.bodies.count.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// The open step as this holder sees it.
    pub(super) fn open_seen(&self) -> OpenStep {
        let o = *self.open_state();
        OpenStep::new(o.position, o.attempts)
    }
}
