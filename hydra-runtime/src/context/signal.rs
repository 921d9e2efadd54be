//! Receiving signals: a named, typed message sent to the run
//! ([`crate::Engine::signal`]). Signals sent before the run waits are
//! buffered; several of one name are received in the order they were
//! accepted; each is received once, recorded in the run's history in the
//! same transaction that takes it, so a replay returns the same value. A
//! run waiting for a signal is parked: a row, no worker slot, no memory.

use super::WorkflowContext;
use super::call::{Entered, Replayed};
use crate::clock::duration_ms;
use crate::error::{Error, StepError};
use hydra_store::{OpenStep, Receive, Received, Step, StepId, StepKind, StepOutcome, StepRecord, StepStatus};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tracing::Instrument;

/// The prefix of a receive's step ID: `signal:{name}`.
pub(crate) const SIGNAL_STEP_PREFIX: &str = hydra_store::reserved::step::SIGNAL;

/// Checks a signal name (it becomes part of a step ID): 1 to 190 bytes, no
/// `#`, whitespace or control characters.
pub(crate) fn validate_signal_name(name: &str) -> Result<(), String> {
    if name.len() > 190 {
        return Err(format!("signal name `{name}` is longer than 190 bytes"));
    }
    StepId::validate_base(name).map_err(|e| e.replace("step ID", "signal name"))
}

/// What a receive waits for, from its step ID base (the `kind` of its
/// span and of `hydra_waits_total`).
fn wait_kind(base: &str) -> &'static str {
    match base.strip_prefix(SIGNAL_STEP_PREFIX) {
        Some(name) => hydra_store::reserved::signal::kind(name).unwrap_or("signal"),
        None => "select",
    }
}

/// The step ID base of a select: `select:` and its names joined by `|`; a
/// list longer than a step ID allows keeps its first 150 bytes and adds a
/// hash of all of it (FNV-1a, stable across versions and platforms), so a
/// replay with other names still differs.
fn select_base(names: &[&str]) -> String {
    let all = format!("{}{}", hydra_store::reserved::step::SELECT, names.join("|"));
    if all.len() <= 200 {
        return all;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in all.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut cut = 150;
    while !all.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &all[..cut])
}

impl WorkflowContext {
    /// Waits for signal `name` and returns its value. A signal sent before
    /// this call was buffered and is returned at once; otherwise the run is
    /// parked (no worker slot held) until one arrives. A payload that does
    /// not decode as `T` is a permanent error (the signal is consumed, and a
    /// replay returns the same error).
    pub async fn recv<T: DeserializeOwned>(&self, name: &str) -> Result<T, StepError> {
        match self.receive(name, None).await? {
            Some(v) => Ok(v),
            None => Err(StepError::permanent(format!("the wait for signal `{name}` ended without a signal"))),
        }
    }

    /// Waits for signal `name` at most `timeout` (durable: the deadline is
    /// recorded, so a resumed run keeps it). `None` if it did not come in
    /// time; a signal that arrives after that stays buffered for the next
    /// receive of that name.
    pub async fn recv_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<T>, StepError> {
        self.receive(name, Some(timeout)).await
    }

    async fn receive<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, StepError> {
        let base = format!("{SIGNAL_STEP_PREFIX}{name}");
        match self.receive_raw(base, &[name], timeout).await {
            Some((_, step_id, bytes)) => self.decode_signal(name, &step_id, bytes.as_deref()),
            None => Ok(None),
        }
    }

    /// Waits for signal `name` and returns its raw (tagged) payload.
    pub(super) async fn recv_raw_payload(&self, name: &str) -> Vec<u8> {
        let base = format!("{SIGNAL_STEP_PREFIX}{name}");
        match self.receive_raw(base, &[name], None).await {
            Some((_, _, Some(bytes))) => bytes,
            _ => match self.run.fail_run(format!("the wait for `{name}` ended without a signal")).await {},
        }
    }

    /// Waits for whichever of `names` is sent first (the oldest unconsumed
    /// signal of any of them), or until `timeout` passes (`None`): "approve,
    /// reject or 48 hours" is one select. The branch taken is recorded, so a
    /// replay takes the same one; the other signals stay buffered. A child's
    /// end and an awakeable's settlement take part under their
    /// `select_name()` ([`crate::ChildHandle::select_name`],
    /// [`crate::Awakeable::select_name`]).
    ///
    /// A child's end or an awakeable's settlement is taken once: a select
    /// after the one that took it waits for the others only ("handle each
    /// as it finishes" is a loop of selects over all of them), and a select
    /// whose every name was taken already is a permanent error.
    pub async fn select(&self, names: &[&str], timeout: Option<Duration>) -> Result<Option<Selected>, StepError> {
        let base = select_base(names);
        let open: Vec<&str> = {
            let taken = self.run.taken.lock().unwrap_or_else(|p| p.into_inner());
            names.iter().copied().filter(|n| !taken.contains_key(*n)).collect()
        };
        if open.is_empty() && !names.is_empty() {
            return Err(StepError::permanent(format!(
                "select over {names:?}: each of them was taken by an earlier wait of this run (a child's end and an \
                 awakeable's settlement are taken once)"
            )));
        }
        Ok(self.receive_raw(base, &open, timeout).await.map(|(name, step, bytes)| Selected {
            name,
            step,
            payload: bytes,
            codecs: self.run.env.codecs.clone(),
            execution: self.run.lease.execution_id.clone(),
        }))
    }

    /// One receive of any of `names`, recorded as step `base`: the name
    /// taken, the step ID, and the payload (`None` payload: an empty record).
    /// `None` if the wait timed out.
    async fn receive_raw(
        &self,
        base: String,
        names: &[&str],
        timeout: Option<Duration>,
    ) -> Option<(String, StepId, Option<Vec<u8>>)> {
        let run = &*self.run;
        if names.is_empty() {
            match run.fail_run("a receive needs at least one signal name".to_owned()).await {}
        }
        for name in names {
            if let Err(why) = validate_signal_name(name) {
                match run.fail_run(format!("invalid signal name: {why}")).await {}
            }
        }
        if let Err(why) = StepId::validate_base(&base) {
            match run.fail_run(format!("invalid receive: {why}")).await {}
        }
        if let Some(again) = self.taken_before(names) {
            // Answered from memory: still a point where the run yields and
            // stops if it is to (a loop of such waits must not pin the
            // worker's thread, or outlive a cancel).
            // (Not while replaying recorded history: a stop there would
            // come before the compensations of later steps are registered.)
            tokio::task::yield_now().await;
            if !run.replaying() {
                run.checkpoint_gate().await;
            }
            return Some(again);
        }
        let slot = self.slot(&base);
        let mut deadline = timeout.map(|t| run.now().saturating_add(duration_ms(t)));
        let read = |rec: &Step| match rec.status {
            // Timed out (an empty record), or the name it took.
            StepStatus::Completed => match rec.output.clone() {
                None => Replayed::Answer(None),
                Some(output) => match rec.step_name.strip_prefix(SIGNAL_STEP_PREFIX).filter(|t| names.contains(t)) {
                    Some(taken) => {
                        self.remember(taken, &slot.step_id, &output);
                        Replayed::Answer(Some((taken.to_owned(), slot.step_id.clone(), Some(output))))
                    }
                    None => Replayed::Refuse(format!(
                        "receive `{}` is recorded as `{}`, which is none of {names:?}",
                        slot.step_id, rec.step_name
                    )),
                },
            },
            // A wait in progress: its recorded deadline holds.
            StepStatus::Running => Replayed::Resume,
            other => {
                Replayed::Fail(format!("receive `{}` has status `{other}`, unknown to this version", slot.step_id))
            }
        };
        let recorded = match self.enter(&slot, StepKind::Signal, read).await {
            Entered::Answered(answer) => return answer,
            Entered::Resumed(rec) => {
                deadline = rec.wake_at;
                true
            }
            Entered::New => false,
        };
        let (position, step_id) = (slot.position, slot.step_id);
        run.checkpoint_gate().await;
        let kind = wait_kind(&base);
        let span = tracing::info_span!(
            "wait",
            kind,
            namespace = %run.lease.namespace,
            workflow = %run.workflow_name,
            execution_id = %run.lease.execution_id,
            step_id = %step_id,
            deadline = ?deadline,
        );
        if !recorded {
            // Counted once: not again when the run resumes the wait.
            crate::metrics::wait(&run.lease.namespace, &run.workflow_name, kind);
        }
        let record = StepRecord::new(step_id.clone(), base, position, StepKind::Signal, 1, StepOutcome::Waiting);
        let due = deadline.map(|d| run.park_until(d)).or_else(|| run.deadline_wake());
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let receive = Receive::any(record, names, deadline).due(due);
        self.take_or_park(receive, position, step_id, due).instrument(span).await
    }

    /// Takes the oldest signal `receive` waits for, records the timeout,
    /// or parks the run (and does not return).
    async fn take_or_park(
        &self,
        receive: Receive,
        position: u32,
        step_id: StepId,
        due: Option<i64>,
    ) -> Option<(String, StepId, Option<Vec<u8>>)> {
        let run = &*self.run;
        // A receive that finds nothing parks the run in the same write: not
        // while a sibling step's body is in flight (see `park_gate`). What
        // is there already is taken without waiting for them.
        let mut got = None;
        if run.bodies_in_flight() {
            let first = receive.clone().without_parking();
            let write = run.write("signal receive", || run.env.store.receive_signal(&run.lease, &first, run.now()));
            match write.await {
                Ok(Received::Nothing) => {}
                other => got = Some(other),
            }
        }
        let _gate;
        let got = match got {
            Some(got) => got,
            None => {
                _gate = run.park_gate().await;
                let write =
                    run.write("signal receive", || run.env.store.receive_signal(&run.lease, &receive, run.now()));
                run.parking_write(write, |got| matches!(got, Received::Parked)).await
            }
        };
        let next = OpenStep::new(position.saturating_add(1), 1);
        match got {
            Ok(Received::Signal { name, payload }) => {
                run.moved_open(position, next);
                crate::metrics::signal_received(&run.lease.namespace, &run.workflow_name);
                tracing::debug!(signal = %name, "received");
                self.remember(&name, &step_id, &payload);
                Some((name, step_id, Some(payload)))
            }
            Ok(Received::TimedOut) => {
                run.moved_open(position, next);
                tracing::debug!("timed out");
                None
            }
            Ok(Received::Parked) => {
                tracing::debug!(signals = ?receive.names, "parked until a signal comes");
                match self.parked(due.unwrap_or(i64::MAX)).await {}
            }
            Err(e) => {
                match run.write_failed(e, |e| format!("could not receive a signal ({:?}): {e}", receive.names)).await {}
            }
            Ok(_) => match run.fail_run("receive of a signal: unexpected outcome".to_owned()).await {},
        }
    }

    /// A one-shot signal among `names` this run took already (the first
    /// in `names` order), as the receive that took it returned it.
    fn taken_before(&self, names: &[&str]) -> Option<(String, StepId, Option<Vec<u8>>)> {
        let taken = self.run.taken.lock().unwrap_or_else(|p| p.into_inner());
        names
            .iter()
            .find_map(|n| taken.get(*n).map(|(step, payload)| ((*n).to_owned(), step.clone(), Some(payload.clone()))))
    }

    /// Keeps a taken one-shot signal (a child's end, an awakeable's
    /// settlement) for a later wait on it.
    fn remember(&self, name: &str, step: &StepId, payload: &[u8]) {
        if hydra_store::reserved::signal::kind(name).is_some() {
            let mut taken = self.run.taken.lock().unwrap_or_else(|p| p.into_inner());
            taken.insert(name.to_owned(), (step.clone(), payload.to_vec()));
        }
    }

    fn decode_signal<T: DeserializeOwned>(
        &self,
        name: &str,
        step: &StepId,
        bytes: Option<&[u8]>,
    ) -> Result<Option<T>, StepError> {
        let Some(bytes) = bytes else { return Ok(None) };
        self.run.env.codecs.decode::<T>(bytes).map(Some).map_err(|reason| {
            let e = Error::Decode {
                execution: self.run.lease.execution_id.clone(),
                what: format!("signal `{name}` (received as `{step}`) as `{}`", std::any::type_name::<T>()),
                reason,
            };
            StepError::permanent(e.to_string())
        })
    }
}

/// The branch a [`WorkflowContext::select`] took: which signal, and its
/// payload.
#[derive(Debug)]
pub struct Selected {
    name: String,
    step: StepId,
    payload: Option<Vec<u8>>,
    codecs: crate::codec::CodecRegistry,
    execution: hydra_store::ExecutionId,
}

impl Selected {
    /// The name of the signal taken.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the branch taken is `name` (a signal name or a
    /// `select_name()`).
    pub fn is(&self, name: &str) -> bool {
        self.name == name
    }

    /// The result of `child` if the branch taken is its end: its output, or
    /// a permanent error saying how it ended (as
    /// [`WorkflowContext::await_child`]). A permanent error too if another
    /// branch was taken.
    pub fn child<O: DeserializeOwned>(&self, child: &super::ChildHandle<O>) -> Result<O, StepError> {
        if !self.is(&child.select_name()) {
            return Err(StepError::permanent(format!("select took `{}`, not child run {}", self.name, child.id())));
        }
        super::child::child_result(
            &self.codecs,
            &self.execution,
            child.id(),
            self.payload.as_deref().unwrap_or_default(),
        )
    }

    /// The value of `awakeable` if the branch taken is its settlement; its
    /// rejection (or another branch) is a permanent error.
    pub fn awakeable<T: DeserializeOwned>(&self, awakeable: &super::Awakeable<T>) -> Result<T, StepError> {
        let ours = super::parse_token(awakeable.token()).is_some_and(|(run, _)| run == self.execution);
        if !ours || !self.is(&awakeable.select_name()) {
            return Err(StepError::permanent(format!(
                "select took `{}`, not awakeable `{}`",
                self.name,
                awakeable.token()
            )));
        }
        super::awakeable::settled_value(self.decode::<super::Settled<T>>()?)
    }

    /// Its payload as `T`; a payload that does not decode is a permanent
    /// error (as for [`WorkflowContext::recv`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        let bytes = self.payload.as_deref().unwrap_or_default();
        self.codecs.decode::<T>(bytes).map_err(|reason| {
            let e = Error::Decode {
                execution: self.execution.clone(),
                what: format!(
                    "signal `{}` (received as `{}`) as `{}`",
                    self.name,
                    self.step,
                    std::any::type_name::<T>()
                ),
                reason,
            };
            StepError::permanent(e.to_string())
        })
    }
}
