//! One step call: answered from the history, or run through its attempts
//! (each counted durably before its body), its result recorded under the
//! fence before it is returned; retries inline or parked durably.

use super::WorkflowContext;
use super::panic_message;
use super::run::Interrupt;
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

impl WorkflowContext {
    pub(super) async fn run_step<T, F, Fut>(
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
        if let Some(rec) = run.recorded(position) {
            self.check_recorded(rec, position, &step_id, StepKind::Step).await;
            match rec.status {
                StepStatus::Completed => {
                    let bytes = rec.output.as_deref().unwrap_or_default();
                    return match run.codecs.decode::<T>(bytes) {
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
                            // A deploy changed the step's output type: the
                            // code does not replay this run.
                            match run.refuse(e.to_string()).await {}
                        }
                    };
                }
                StepStatus::Failed => {
                    let e = StepError::permanent(rec.error.clone().unwrap_or_else(|| "step failed".into()));
                    return Err(match rec.output.clone() {
                        Some(typed) => e.with_recorded(typed, &run.codecs),
                        None => e,
                    });
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
        let next_step = OpenStep::new(position.saturating_add(1), 1);
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
                cancel: if run.compensating.load(std::sync::atomic::Ordering::SeqCst) {
                    run.undo_cancel.child_token()
                } else {
                    run.cancel.child_token()
                },
                state: std::sync::Arc::clone(&run.state),
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
                Ok(value) => match run.codecs.encode_read_back(run.codec, &value) {
                    Ok((bytes, read_back)) => {
                        crate::metrics::step_executed(ns, wf, name, "completed", took);
                        crate::metrics::payload(ns, wf, "step", bytes.len());
                        let rec = record(StepOutcome::Completed(bytes)).attempt(attempt).started_at(began_at);
                        self.finish_step(rec, Transition::Continue, next_step).await;
                        // What a replay will see, not the body's own value:
                        // both passes take the same branch.
                        return Ok(read_back);
                    }
                    Err(reason) => {
                        // The body ran and its effect happened: record a
                        // permanent failure, never a silent re-run. This
                        // includes a value the codec would not read back
                        // (refused now, not on a replay).
                        crate::metrics::step_executed(ns, wf, name, "failed", took);
                        let e = Error::Encode { what: format!("the output of step `{step_id}`"), reason };
                        let msg = e.to_string();
                        let rec = record(StepOutcome::Failed(msg.clone())).attempt(attempt).started_at(began_at);
                        self.finish_step(rec, Transition::Continue, next_step).await;
                        return Err(StepError::permanent(msg));
                    }
                },
                Err(e) if e.is_permanent() || attempt >= max_attempts => {
                    let mut msg = if e.is_permanent() {
                        e.full_message()
                    } else {
                        e.full_message_noting(&format!(" (after {attempt} attempts)"))
                    };
                    tracing::warn!(error = %msg, "step failed");
                    crate::metrics::step_executed(ns, wf, name, "failed", took);
                    // A typed error is recorded with the step, and what is
                    // returned is what a replay reads back.
                    let typed = match e.typed_error().map(|t| t.encode(&run.codecs, run.codec)) {
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
                    let rec = record(outcome).attempt(attempt).started_at(began_at);
                    self.finish_step(rec, Transition::Continue, next_step).await;
                    let err = StepError::permanent(msg);
                    return Err(match typed {
                        Some(bytes) => err.with_recorded(bytes, &run.codecs),
                        None => err,
                    });
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
                            OpenStep::new(position, attempt.saturating_add(1)),
                        )
                        .await;
                        tokio::time::sleep(delay).await;
                        prior_attempts = attempt;
                    } else {
                        let wake = run.now().saturating_add(duration_ms(delay));
                        let until = run.park_until(wake);
                        let rec = record(StepOutcome::AttemptFailed(e.message().to_owned()))
                            .attempt(attempt)
                            .started_at(began_at)
                            .wake_at(wake);
                        // Parked: the claim that wakes it counts the retry.
                        let step = rec.step_id.clone();
                        if let Err(e) = run.record_parking(rec, until, attempt).await {
                            match run.fail_run(format!("could not record the result of step `{step}`: {e}")).await {}
                        }
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

    pub(super) async fn check_recorded(&self, rec: &Step, position: u32, called: &StepId, kind: StepKind) {
        if rec.step_id.base() == super::compensate::COMPENSATE_STEP
            && !self.run.compensating.load(std::sync::atomic::Ordering::SeqCst)
        {
            // The body reached the point where a worker began compensating:
            // it stops here, and the compensation goes on.
            let cause = rec.output.as_deref().and_then(|b| self.run.codecs.decode(b).ok());
            let cause = cause.unwrap_or_else(|| super::compensate::EndCause::Failed("compensating".into(), None));
            // The compensation phase reads the marker at this position.
            self.run.unwind_call(position, called);
            match self.run.halt(super::Interrupt::End(cause)).await {}
        }
        if &rec.step_id != called || rec.kind != kind {
            crate::metrics::nondeterminism(&self.run.lease.namespace, &self.run.workflow_name);
            let e = Error::NonDeterminism {
                execution: self.run.lease.execution_id.clone(),
                position,
                recorded: rec.step_id.clone(),
                called: called.clone(),
            };
            self.run.note_divergence(position, &rec.step_id, called);
            match self.run.refuse(e.to_string()).await {}
        }
    }
}
