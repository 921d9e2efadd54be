//! One step call: answered from the history, or run through its attempts
//! (each counted durably before its body), its result recorded under the
//! fence before it is returned; retries inline or parked durably.
//!
//! Once its place is taken (`context/call.rs`), a step call is a small
//! state machine ([`StepState`]), one function per state: a durable
//! backoff not yet over parks the run again; before each attempt the gate
//! and the attempt's count; the body; what its result means (recorded,
//! retried inline, parked for a later retry, or failed).

use super::WorkflowContext;
use super::call::{Entered, Replayed, Slot};
use super::panic_message;
use super::run::RunState;
use super::step::{StepContext, StepOptions};
use crate::clock::duration_ms;
use crate::error::{Error, StepError};
use futures_util::FutureExt;
use hydra_store::{
    OpenStep, Step, StepAttempt, StepId, StepKind, StepOutcome, StepRecord, StepStatus, StoreError, Transition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Where a step call is, once its place is taken.
enum StepState<T> {
    /// A durable backoff an earlier attempt recorded is not over.
    BackingOff { wake_at: i64 },
    /// Before an attempt: `prior` attempts counted on the step's record.
    Admit { prior: u32 },
    /// Attempt `attempt` runs its body.
    Running { attempt: u32 },
    /// Attempt `attempt`'s body returned `result`; it began at `began_at`
    /// (engine clock) and took `took` seconds.
    Ran { attempt: u32, began_at: i64, took: f64, result: Result<T, StepError> },
    /// The call's answer.
    Done(Result<T, StepError>),
}

/// What every state of one step call reads.
struct StepCall<'a> {
    options: &'a StepOptions,
    slot: &'a Slot,
    max_attempts: u32,
}

impl StepCall<'_> {
    /// The record of this call's outcome (attempt and times added by the caller).
    fn record(&self, outcome: StepOutcome) -> StepRecord {
        StepRecord::new(
            self.slot.step_id.clone(),
            self.options.id.to_string(),
            self.slot.position,
            StepKind::Step,
            self.max_attempts,
            outcome,
        )
    }
}

/// What a step's record means on replay: its output, its recorded failure,
/// or an attempt under way.
fn replayed<T: DeserializeOwned>(
    run: &RunState,
    options: &StepOptions,
    step_id: &StepId,
    rec: &Step,
) -> Replayed<Result<T, StepError>> {
    match rec.status {
        StepStatus::Completed => match run.env.codecs.decode::<T>(rec.output.as_deref().unwrap_or_default()) {
            Ok(v) => {
                tracing::debug!("step answered from history");
                crate::metrics::step_cached(&run.lease.namespace, &run.workflow_name, &options.id);
                Replayed::Answer(Ok(v))
            }
            // A deploy changed the step's output type: the code does not
            // replay this run.
            Err(reason) => Replayed::Refuse(
                Error::Decode {
                    execution: run.lease.execution_id.clone(),
                    what: format!("the stored output of step `{step_id}`"),
                    reason,
                }
                .to_string(),
            ),
        },
        StepStatus::Failed => {
            let e = StepError::permanent(rec.error.clone().unwrap_or_else(|| "step failed".into()));
            Replayed::Answer(Err(match rec.output.clone() {
                Some(typed) => e.with_recorded(typed, &run.env.codecs),
                None => e,
            }))
        }
        StepStatus::Running => Replayed::Resume,
        other => Replayed::Fail(format!("step `{step_id}` has status `{other}`, unknown to this version")),
    }
}

impl WorkflowContext {
    pub(super) async fn run_step<T, F, Fut>(
        &self,
        options: StepOptions,
        mut body: F,
        slot: Slot,
    ) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = &*self.run;
        let call = StepCall { options: &options, slot: &slot, max_attempts: options.retry.max_attempts.max(1) };
        let read = |rec: &Step| replayed::<T>(run, &options, &slot.step_id, rec);
        let mut state = match self.enter(&slot, StepKind::Step, read).await {
            Entered::Answered(answer) => return answer,
            Entered::New => StepState::Admit { prior: 0 },
            Entered::Resumed(rec) => match rec.wake_at {
                Some(w) if run.now() < w => StepState::BackingOff { wake_at: w },
                _ => StepState::Admit { prior: rec.attempts },
            },
        };
        // This call in flight, from its attempt's admission (before the
        // attempt is counted) until its result is recorded: a sibling call
        // does not park the run meanwhile, and it does not begin while a
        // sibling's park is being written.
        let mut in_flight = None;
        loop {
            state = match state {
                StepState::BackingOff { wake_at } => match self.back_off(wake_at).await {},
                StepState::Admit { prior } => {
                    if in_flight.is_none() {
                        in_flight = Some(run.body_begins().await);
                    }
                    self.admit(&call, prior).await
                }
                StepState::Running { attempt } => {
                    if in_flight.is_none() {
                        in_flight = Some(run.body_begins().await);
                    }
                    self.run_attempt(&call, &mut body, attempt).await
                }
                StepState::Ran { attempt, began_at, took, result } => {
                    self.settle(&call, attempt, began_at, took, result, &mut in_flight).await
                }
                StepState::Done(answer) => return answer,
            }
        }
    }

    /// A durable backoff from an earlier attempt that has not run out yet:
    /// the run parks again until it does.
    async fn back_off(&self, wake_at: i64) -> std::convert::Infallible {
        let run = &*self.run;
        run.checkpoint_gate().await;
        let until = run.park_until(wake_at);
        if let Err(e) = run.park(until).await {
            match run.write_failed(e, |e| format!("could not park the run until its retry: {e}")).await {}
        }
        self.parked(until).await
    }

    /// Before an attempt: the gate, then the attempt counted (usually by the
    /// claim or by the previous result already: no write before the body),
    /// or the call's end if the attempts ran out.
    async fn admit<T>(&self, call: &StepCall<'_>, prior: u32) -> StepState<T> {
        let run = &*self.run;
        let (position, step_id) = (call.slot.position, &call.slot.step_id);
        run.checkpoint_gate().await;
        let reserved = run.reserved_attempt(position, prior);
        let began = reserved.map_or(prior, |a| a - 1);
        if began >= call.max_attempts {
            let msg = format!(
                "step `{step_id}` ran out of attempts ({}): the last attempt never finished \
                 (its worker died or lost its lease)",
                call.max_attempts
            );
            let rec = call.record(StepOutcome::Failed(msg.clone())).attempt(began);
            self.finish_step(rec, Transition::Continue, call.slot.next()).await;
            return StepState::Done(Err(StepError::permanent(msg)));
        }
        let attempt = match reserved {
            Some(a) => a,
            None => self.count_attempt(call.options, position, step_id, call.max_attempts).await,
        };
        run.begin_attempt(position, attempt);
        tracing::Span::current().record("attempt", attempt);
        StepState::Running { attempt }
    }

    /// Runs the body of `attempt` (under its timeout; a panic is a
    /// permanent failure).
    async fn run_attempt<T, F, Fut>(&self, call: &StepCall<'_>, body: &mut F, attempt: u32) -> StepState<T>
    where
        F: FnMut(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run = &*self.run;
        let step_id = &call.slot.step_id;
        let sctx = StepContext {
            execution_id: run.lease.execution_id.clone(),
            step_id: step_id.clone(),
            attempt,
            cancel: if run.undo.compensating.load(std::sync::atomic::Ordering::SeqCst) {
                run.undo.undo_cancel.child_token()
            } else {
                run.stops.cancel.child_token()
            },
            state: std::sync::Arc::clone(&run.env.state),
        };
        let started = std::time::Instant::now();
        let began_at = run.now();
        let fut =
            super::run::IN_STEP_BODY.scope(run.lease.execution_id.clone(), AssertUnwindSafe(body(sctx)).catch_unwind());
        let result = match call.options.timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Ok(Err(StepError::retryable(format!("step `{step_id}` timed out after {t:?}")))),
            },
            None => fut.await,
        };
        let result = match result {
            Ok(r) => r,
            Err(panic) => Err(StepError::permanent(format!("step `{step_id}` panicked: {}", panic_message(&panic)))),
        };
        StepState::Ran { attempt, began_at, took: started.elapsed().as_secs_f64(), result }
    }

    /// What the body's result means: recorded (a value, or a failure that
    /// ends the call), or retried: inline (the next attempt counted with
    /// this result), or after a durable backoff (the run parks).
    async fn settle<T>(
        &self,
        call: &StepCall<'_>,
        attempt: u32,
        began_at: i64,
        took: f64,
        result: Result<T, StepError>,
        in_flight: &mut Option<super::run::BodyInFlight<'_>>,
    ) -> StepState<T>
    where
        T: Serialize + DeserializeOwned + Send,
    {
        let run = &*self.run;
        let step_id = &call.slot.step_id;
        let (ns, wf, name) = (&run.lease.namespace, &run.workflow_name, &*call.options.id);
        let record = |outcome| call.record(outcome).attempt(attempt).started_at(began_at);
        match result {
            Ok(value) => match run
                .env
                .codecs
                .encode_read_back(call.options.codec.unwrap_or(run.env.codec), &value)
                .map_err(|reason| Error::Encode { what: format!("the output of step `{step_id}`"), reason }.to_string())
                .and_then(|(bytes, read_back)| {
                    run.env.fits(|| format!("the output of step `{step_id}`"), bytes.len()).map(|()| (bytes, read_back))
                }) {
                Ok((bytes, read_back)) => {
                    crate::metrics::step_executed(ns, wf, name, "completed", took);
                    crate::metrics::payload(ns, wf, "step", bytes.len());
                    self.finish_step(record(StepOutcome::Completed(bytes)), Transition::Continue, call.slot.next())
                        .await;
                    // What a replay will see, not the body's own value: both
                    // passes take the same branch.
                    StepState::Done(Ok(read_back))
                }
                Err(msg) => {
                    // The body ran and its effect happened: record a
                    // permanent failure, never a silent re-run. This includes
                    // a value the codec would not read back (refused now, not
                    // on a replay) and one over the payload limit.
                    crate::metrics::step_executed(ns, wf, name, "failed", took);
                    self.finish_step(record(StepOutcome::Failed(msg.clone())), Transition::Continue, call.slot.next())
                        .await;
                    StepState::Done(Err(StepError::permanent(msg)))
                }
            },
            Err(e) if e.is_permanent() || attempt >= call.max_attempts => {
                let mut msg = if e.is_permanent() {
                    e.full_message()
                } else {
                    e.full_message_noting(&format!(" (after {attempt} attempts)"))
                };
                tracing::warn!(error = %msg, "step failed");
                crate::metrics::step_executed(ns, wf, name, "failed", took);
                // A typed error is recorded with the step, and what is
                // returned is what a replay reads back.
                let typed = match e.typed_error().map(|t| {
                    t.encode(&run.env.codecs, run.env.codec)
                        .and_then(|b| run.env.fits(|| "its typed error".into(), b.len()).map(|()| b))
                }) {
                    Some(Ok(bytes)) => Some(bytes),
                    Some(Err(reason)) => {
                        msg = format!("{msg} (its typed error was not recorded: {reason})");
                        None
                    }
                    None => None,
                };
                let outcome = match &typed {
                    Some(bytes) => StepOutcome::FailedWith(msg.clone(), bytes.clone()),
                    None => StepOutcome::Failed(msg.clone()),
                };
                self.finish_step(record(outcome), Transition::Continue, call.slot.next()).await;
                let err = StepError::permanent(msg);
                StepState::Done(Err(match typed {
                    Some(bytes) => err.with_recorded(bytes, &run.env.codecs),
                    None => err,
                }))
            }
            Err(e) => {
                let delay = call.options.retry.next_delay(attempt);
                tracing::info!(error = %e, ?delay, "step attempt failed; retrying");
                crate::metrics::step_executed(ns, wf, name, "retry", took);
                crate::metrics::step_retried(ns, wf, name);
                let failed = record(StepOutcome::AttemptFailed(e.message().to_owned()));
                if delay <= run.policy.inline_backoff {
                    // The retry's attempt is counted with this result.
                    let open = OpenStep::new(call.slot.position, attempt.saturating_add(1));
                    self.finish_step(failed, Transition::Continue, open).await;
                    // Recorded: no body of this call is in flight while it waits.
                    in_flight.take();
                    tokio::time::sleep(delay).await;
                    return StepState::Admit { prior: attempt };
                }
                let wake = run.now().saturating_add(duration_ms(delay));
                let until = run.park_until(wake);
                // Its own body is over; the park waits for its siblings'.
                in_flight.take();
                // Parked: the claim that wakes it counts the retry.
                if let Err(e) = run.record_parking(failed.wake_at(wake), until, attempt).await {
                    match run.write_failed(e, |e| format!("could not record the result of step `{step_id}`: {e}")).await {}
                }
                match self.parked(until).await {}
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
                match crate::commit::write(run.env.committer.as_ref(), &run.env.store, op, run.now()).await? {
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
            Err(e) => {
                match run.write_failed(e, |e| format!("could not record an attempt of step `{step_id}`: {e}")).await {}
            }
        }
    }

    async fn finish_step(&self, rec: StepRecord, transition: Transition, open: OpenStep) {
        let run = &*self.run;
        let step = rec.step_id.clone();
        if let Err(e) = run.record(rec, transition, open).await {
            match run.write_failed(e, |e| format!("could not record the result of step `{step}`: {e}")).await {}
        }
    }
}
