//! One shape for every durable call (a step, a sleep, a signal wait, an
//! event, a search attribute; a child and an awakeable are a step and a
//! wait; a patch peeks at the next position and takes it only where its
//! marker is recorded):
//!
//! 1. the call takes its place in the run, first and without awaiting
//!    ([`WorkflowContext::slot`]), so calls `join!`-ed keep their order;
//! 2. it meets the entry recorded there ([`WorkflowContext::enter`]): a
//!    different call recorded there is non-determinism (the run suspends),
//!    a compensation marker stops the body; otherwise the call reads its
//!    own record: an answer (returned with no write), a call begun and not
//!    finished (it goes on), or a record this code cannot read;
//! 3. a new (or resumed) call passes the checkpoint gate (cancel, deadline,
//!    drain) and writes under the fence: a write that keeps the run going
//!    moves the open step past it ([`WorkflowContext::continued`]); one
//!    that parks the run ends in [`WorkflowContext::parked`].

use super::WorkflowContext;
use super::stop::RunEnd;
use crate::error::Error;
use hydra_store::{OpenStep, Step, StepId, StepKind, StoreError};
use std::convert::Infallible;
use std::future::Future;

/// A call's place in the run: its position and its step ID.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) position: u32,
    pub(super) step_id: StepId,
}

impl Slot {
    /// The open step after this call's result: the next position, its
    /// first attempt counted.
    pub(super) fn next(&self) -> OpenStep {
        OpenStep::new(self.position.saturating_add(1), 1)
    }
}

/// What a call reads in the entry recorded at its position.
pub(super) enum Replayed<T> {
    /// Its answer, from the history: no gate, no write.
    Answer(T),
    /// Begun and not finished: the call goes on from its record.
    Resume,
    /// Its record, which this code does not read (a changed type): the
    /// code does not replay the run.
    Refuse(String),
    /// A record this version does not know: the run fails.
    Fail(String),
}

/// Where a call stands once it met its record (see [`WorkflowContext::enter`]).
pub(super) enum Entered<'r, T> {
    /// Answered from the history.
    Answered(T),
    /// Nothing recorded at its position: a new call.
    New,
    /// Begun before and not finished: its record.
    Resumed(&'r Step),
}

impl WorkflowContext {
    /// Takes the next position in the run for a call of step ID base
    /// `base` (the first thing a call does, without awaiting).
    pub(super) fn slot(&self, base: &str) -> Slot {
        let (position, step_id) = self.run.next_step_id(base);
        Slot { position, step_id }
    }

    /// Meets the entry recorded at `slot`: checks it is this call, of kind
    /// `kind` (else suspends or fails the run, by its policy), and lets
    /// `read` say what it means.
    pub(super) async fn enter<'r, T>(
        &'r self,
        slot: &Slot,
        kind: StepKind,
        read: impl FnOnce(&'r Step) -> Replayed<T>,
    ) -> Entered<'r, T> {
        let Some(rec) = self.run.recorded(slot.position) else { return Entered::New };
        self.check_recorded(rec, slot.position, &slot.step_id, kind).await;
        match read(rec) {
            Replayed::Answer(v) => Entered::Answered(v),
            Replayed::Resume => Entered::Resumed(rec),
            Replayed::Refuse(message) => match self.run.refuse(message).await {},
            Replayed::Fail(message) => match self.run.fail_run(message).await {},
        }
    }

    /// Stops the body where a different call, or the compensation marker,
    /// is recorded at `position`.
    async fn check_recorded(&self, rec: &Step, position: u32, called: &StepId, kind: StepKind) {
        if rec.step_id.base() == super::compensate::COMPENSATE_STEP
            && !self.run.undo.compensating.load(std::sync::atomic::Ordering::SeqCst)
        {
            // The body reached the point where a worker began compensating:
            // it stops here, and the compensation goes on.
            let cause = rec.output.as_deref().and_then(|b| self.run.env.codecs.decode(b).ok());
            let cause = cause.unwrap_or_else(|| super::compensate::EndCause::Failed("compensating".into(), None));
            // The compensation phase reads the marker at this position.
            self.run.unwind_call(position, called);
            match self.run.halt(RunEnd::End(cause)).await {}
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

    /// A new call's write `what` that records it and keeps the run going
    /// (retried through transient failures; a lost lease stops the run):
    /// the open step moves past the call. Any other failure fails the run
    /// with the message `failed` makes of it.
    pub(super) async fn continued<T, F, Fut>(
        &self,
        slot: &Slot,
        what: &str,
        write: F,
        failed: impl FnOnce(&StoreError) -> String,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.run.write(what, write).await {
            Ok(v) => {
                self.run.moved_open(slot.position, slot.next());
                v
            }
            Err(e) => match self.run.write_failed(e, failed).await {},
        }
    }

    /// The one exit of a call whose write parked the run until `until`.
    pub(super) async fn parked(&self, until: i64) -> Infallible {
        self.run.halt(RunEnd::Suspended { until }).await
    }
}
