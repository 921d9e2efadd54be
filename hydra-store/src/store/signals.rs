//! Signals: sending a named message to a run (buffered, deduplicated by an
//! idempotency key, waking the run if it waits for one), and the fenced
//! receive that takes the oldest unconsumed signal of a name and records it
//! in the run's history in the same transaction, or parks the run.
//!
//! Both lock the run's row first (the sender by updating it, the receiver
//! through the fence), so a signal is either seen by a receive or wakes the
//! run it parked: none is missed between "nothing there" and "parked".

use super::Store;
use super::fence::lease_lost;
use super::step_write::{OpenWhen, open_set};
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{ExecutionStatus, Lease, OpenStep, StepOutcome, StepRecord, to_i32};
use crate::reserved;
use crate::sql::Db;
use sea_orm::Value;

/// A signal to send.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewSignal {
    /// The run's namespace.
    pub namespace: String,
    /// The run.
    pub execution_id: ExecutionId,
    /// The signal's name.
    pub name: String,
    /// The encoded payload (tagged by its codec).
    pub payload: Vec<u8>,
    /// A retried send with the same key is a no-op.
    pub idempotency_key: Option<String>,
    /// When it is sent (ms).
    pub now: i64,
}

impl NewSignal {
    /// A signal without an idempotency key.
    pub fn new(
        namespace: impl Into<String>,
        execution_id: ExecutionId,
        name: impl Into<String>,
        payload: Vec<u8>,
        now: i64,
    ) -> Self {
        NewSignal { namespace: namespace.into(), execution_id, name: name.into(), payload, idempotency_key: None, now }
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// What [`Store::send_signal`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalSent {
    /// Accepted (and the run woken if it was waiting for a signal). Carries
    /// the run's workflow name.
    Accepted {
        /// The run's workflow.
        workflow_name: String,
    },
    /// A signal with the same idempotency key was accepted before: nothing
    /// was done.
    Duplicate,
}

/// The outcome of [`Store::receive_signal`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A signal was taken and recorded: its name and payload.
    Signal {
        /// Which of the names it was sent as.
        name: String,
        /// Its encoded payload.
        payload: Vec<u8>,
    },
    /// The wait's deadline passed first; recorded as timed out.
    TimedOut,
    /// Nothing to take: the run is parked until a signal or the deadline.
    Parked,
    /// Nothing to take, and the receive was not to park
    /// ([`Receive::without_parking`]): nothing was written.
    Nothing,
}

/// A receive of signal `name` at `position` of a run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Receive {
    /// The step record of the receive; its outcome is filled in here.
    pub record: StepRecord,
    /// The names it takes: one for a receive, several for a select (the
    /// oldest unconsumed signal of any of them is taken, and its name
    /// recorded as the step's name, `signal:{name}`).
    pub names: Vec<String>,
    /// When the wait times out, if it does (ms); recorded with the wait.
    pub deadline: Option<i64>,
    /// When a parked run becomes claimable again without a signal (the
    /// deadline, or earlier: the run's own deadline); `None`: only a signal
    /// (or a cancel) wakes it.
    pub due: Option<i64>,
    /// Whether to park the run when there is nothing to take (default);
    /// otherwise the receive answers [`Received::Nothing`].
    pub park: bool,
}

impl Receive {
    /// A receive recorded as `record`, of signal `name`, parked until
    /// `deadline`.
    pub fn new(record: StepRecord, name: impl Into<String>, deadline: Option<i64>) -> Self {
        Receive { record, names: vec![name.into()], deadline, due: deadline, park: true }
    }

    /// A receive of whichever of `names` was sent first (a select).
    pub fn any(record: StepRecord, names: Vec<String>, deadline: Option<i64>) -> Self {
        Receive { record, names, deadline, due: deadline, park: true }
    }

    /// Takes what is there (or records the timeout) but does not park:
    /// nothing to take is [`Received::Nothing`].
    pub fn without_parking(mut self) -> Self {
        self.park = false;
        self
    }

    /// Parks until `due` instead of the deadline.
    pub fn due(mut self, due: Option<i64>) -> Self {
        self.due = due;
        self
    }
}

/// A run's awakeables as a completion sees them (see
/// [`Store::awakeable_draws`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AwakeableDraws {
    /// The run's status.
    pub status: ExecutionStatus,
    /// The encoded tokens the run drew.
    pub tokens: Vec<Vec<u8>>,
    /// Whether the awakeable asked about was settled.
    pub settled: bool,
}

impl Store {
    /// What a completion of an awakeable of run `id` needs to know: the
    /// encoded outputs of the run's recorded token draws (steps named
    /// [`reserved::step::AWAKEABLE`]), and whether a signal with
    /// idempotency key `key` (the awakeable's settlement) was accepted.
    /// `None` for a run not in `namespace`.
    pub async fn awakeable_draws(
        &self,
        namespace: &str,
        id: &ExecutionId,
        key: &str,
    ) -> Result<Option<AwakeableDraws>, StoreError> {
        let db = Db::Pool(&self.db);
        let run = db
            .one(self.stmt(
                "SELECT status FROM workflow_executions WHERE id = ? AND namespace = ?",
                vec![id.as_str().into(), namespace.into()],
            ))
            .await?;
        let Some(run) = run else { return Ok(None) };
        let status = ExecutionStatus::parse(&run.try_get::<String>("", "status")?)?;
        let rows = db
            .all(self.stmt(
                "SELECT output_data FROM workflow_steps WHERE execution_id = ? AND namespace = ? AND step_name = ? \
                 AND status = 'completed'",
                vec![id.as_str().into(), namespace.into(), reserved::step::AWAKEABLE.into()],
            ))
            .await?;
        let mut tokens = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(out) = row.try_get::<Option<Vec<u8>>>("", "output_data")? {
                tokens.push(out);
            }
        }
        let settled = db
            .one(self.stmt(
                "SELECT 1 AS seen FROM workflow_signals WHERE execution_id = ? AND idempotency_key = ?",
                vec![id.as_str().into(), key.into()],
            ))
            .await?
            .is_some();
        Ok(Some(AwakeableDraws { status, tokens, settled }))
    }

    /// Sends a signal: in one transaction, locks the run's row, refuses an
    /// unknown ([`StoreError::ExecutionNotFound`]) or ended
    /// ([`StoreError::RunEnded`]) run, stores the signal unless its
    /// idempotency key was used for this run before (also after the run
    /// ended: [`SignalSent::Duplicate`]), and wakes the run if it is parked
    /// in a receive.
    pub async fn send_signal(&self, s: &NewSignal) -> Result<SignalSent, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = self.send_in(txn.db(), s).await;
        self.settle(txn, r).await
    }

    async fn send_in(&self, db: Db<'_>, s: &NewSignal) -> Result<SignalSent, StoreError> {
        // Locks the row (and orders concurrent senders: ids follow commits).
        let row = db
            .one(self.stmt(
                &format!(
                    "UPDATE workflow_executions SET updated_at = updated_at WHERE id = ? AND namespace = ?{}",
                    self.dialect().returning("status, workflow_name")
                ),
                vec![s.execution_id.as_str().into(), s.namespace.as_str().into()],
            ))
            .await?;
        let Some(row) = row else {
            return Err(StoreError::ExecutionNotFound {
                namespace: s.namespace.clone(),
                execution: s.execution_id.clone(),
            });
        };
        let status = ExecutionStatus::parse(&row.try_get::<String>("", "status")?)?;
        if status.is_terminal() {
            // A retried send of a signal accepted before the run ended is
            // still the no-op it was meant to be.
            if let Some(key) = &s.idempotency_key {
                let seen = db
                    .one(self.stmt(
                        "SELECT 1 AS seen FROM workflow_signals WHERE execution_id = ? AND idempotency_key = ?",
                        vec![s.execution_id.as_str().into(), key.as_str().into()],
                    ))
                    .await?;
                if seen.is_some() {
                    return Ok(SignalSent::Duplicate);
                }
            }
            return Err(StoreError::RunEnded { execution: s.execution_id.clone(), status });
        }
        let workflow_name: String = row.try_get("", "workflow_name")?;
        let inserted = db
            .exec(self.stmt(
                &format!(
                    "INSERT INTO workflow_signals (namespace, execution_id, name, payload, idempotency_key, \
                     created_at) VALUES (?, ?, ?, ?, ?, ?){}",
                    self.dialect().on_conflict_ignore("execution_id, idempotency_key")
                ),
                vec![
                    s.namespace.as_str().into(),
                    s.execution_id.as_str().into(),
                    s.name.as_str().into(),
                    s.payload.clone().into(),
                    s.idempotency_key.clone().into(),
                    s.now.into(),
                ],
            ))
            .await?;
        if inserted == 0 {
            return Ok(SignalSent::Duplicate);
        }
        self.wake_if_waiting(db, &s.execution_id, s.now).await?;
        Ok(SignalSent::Accepted { workflow_name })
    }

    /// Makes run `id` claimable now if it is parked in a receive (the one
    /// wake-up of every signal: sends, awakeable completions, children's
    /// ends). The caller holds the run's row.
    pub(super) async fn wake_if_waiting(&self, db: Db<'_>, id: &ExecutionId, now: i64) -> Result<(), StoreError> {
        db.exec(self.stmt(
            "UPDATE workflow_executions SET due_at = ?, updated_at = ? \
             WHERE id = ? AND status = 'sleeping' AND signal_wait = ? AND (due_at IS NULL OR due_at > ?)",
            vec![now.into(), now.into(), id.as_str().into(), true.into(), now.into()],
        ))
        .await?;
        Ok(())
    }

    /// The name and output of step `step` of the lease's run if it was
    /// recorded completed under this very lease (a write whose commit went
    /// through but whose reply was lost, retried).
    pub(super) async fn ended_under(
        &self,
        db: Db<'_>,
        lease: &Lease,
        step: &crate::ids::StepId,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, StoreError> {
        let row = db
            .one(self.stmt(
                "SELECT step_name, output_data FROM workflow_steps \
                 WHERE execution_id = ? AND step_id = ? AND status = 'completed' AND fencing_token = ?",
                vec![lease.execution_id.as_str().into(), step.as_str().into(), lease.token.0.into()],
            ))
            .await?;
        match row {
            Some(row) => Ok(Some((row.try_get("", "step_name")?, row.try_get("", "output_data")?))),
            None => Ok(None),
        }
    }

    /// Receives a signal named one of `r.names` for a claimed run, under the fencing check,
    /// in one transaction: takes the oldest unconsumed signal of that name
    /// and records it as the receive's step (the run's open step moves past
    /// it); or, past the deadline, records the receive as timed out; or
    /// records the wait and parks the run (`sleeping` until the deadline, or
    /// until a signal wakes it).
    pub async fn receive_signal(&self, lease: &Lease, r: &Receive, now: i64) -> Result<Received, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let out = self.receive_in(txn.db(), lease, r, now).await;
        match self.settle(txn, out).await {
            // A retry of a receive whose commit went through but whose reply
            // was lost finds its own record: it answers what that recorded,
            // not a second signal. (Looked at only then: no extra query on
            // the ordinary path.)
            Err(e @ StoreError::StepAlreadyRecorded { .. }) => {
                match self.ended_under(self.conn(), lease, &r.record.step_id).await? {
                    Some((step_name, Some(payload))) => Ok(Received::Signal {
                        name: step_name.strip_prefix(reserved::step::SIGNAL).unwrap_or(&step_name).to_owned(),
                        payload,
                    }),
                    Some((_, None)) => Ok(Received::TimedOut),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn receive_in(&self, db: Db<'_>, lease: &Lease, r: &Receive, now: i64) -> Result<Received, StoreError> {
        // The fence locks the run's row until the end of the transaction.
        self.guard(db, lease, None, OpenWhen::Always, now).await?;
        let position = r.record.position;
        if r.names.is_empty() {
            return Err(StoreError::Database(sea_orm::DbErr::Custom("a receive needs a signal name".into())));
        }
        let mut values: Vec<Value> = vec![lease.execution_id.as_str().into()];
        values.extend(r.names.iter().map(|n| Value::from(n.as_str())));
        let oldest = db
            .one(self.stmt(
                &format!(
                    "SELECT id, name, payload FROM workflow_signals WHERE execution_id = ? AND name IN ({}) \
                     AND consumed_at IS NULL ORDER BY id LIMIT 1",
                    vec!["?"; r.names.len()].join(", ")
                ),
                values,
            ))
            .await?;
        let next = OpenStep::new(position.saturating_add(1), 1);
        if let Some(row) = oldest {
            let id: i64 = row.try_get("", "id")?;
            let payload: Vec<u8> = row.try_get("", "payload")?;
            let name: String = row.try_get("", "name")?;
            db.exec(self.stmt(
                "UPDATE workflow_signals SET consumed_at = ?, consumed_position = ? WHERE id = ?",
                vec![now.into(), to_i32(position).into(), id.into()],
            ))
            .await?;
            let mut rec = r.record.clone();
            rec.outcome = StepOutcome::Completed(payload.clone());
            // The name taken, also for a select of one name: its replay
            // reads the branch from here.
            rec.step_name = format!("{}{name}", reserved::step::SIGNAL);
            self.record_held(db, lease, &rec, next, now).await?;
            return Ok(Received::Signal { name, payload });
        }
        if r.deadline.is_some_and(|d| now >= d) {
            let mut rec = r.record.clone();
            rec.outcome = StepOutcome::TimedOut;
            self.record_held(db, lease, &rec, next, now).await?;
            return Ok(Received::TimedOut);
        }
        if !r.park {
            return Ok(Received::Nothing);
        }
        // Record the wait (its deadline survives replays) and park.
        let mut rec = r.record.clone();
        rec.outcome = StepOutcome::Waiting;
        rec.wake_at = r.deadline;
        self.write_step(db, lease, &rec, None, now, false).await?;
        let (open, mut values) = open_set(OpenStep::new(position, 0), OpenWhen::At(position));
        // A cancel requested while the run ran (not yet seen by it) makes
        // it due now, so its next claim ends it cancelled: a wait with no
        // deadline would otherwise keep the cancel for ever.
        let mut all: Vec<Value> =
            vec![reserved::step::COMPENSATE.into(), now.into(), r.due.into(), now.into(), true.into()];
        all.append(&mut values);
        all.push(lease.execution_id.as_str().into());
        all.push(lease.token.0.into());
        let parked = db
            .exec(self.stmt(
                &format!(
                    "UPDATE workflow_executions SET status = 'sleeping', \
                     due_at = CASE WHEN cancel_requested AND NOT EXISTS (SELECT 1 FROM workflow_steps c WHERE c.execution_id = workflow_executions.id AND c.step_id = ?) THEN ? ELSE ? END, lease_owner = NULL, \
                     updated_at = ?, signal_wait = ?{open} WHERE id = ? AND fencing_token = ?"
                ),
                all,
            ))
            .await?;
        if parked != 1 {
            return Err(lease_lost(lease));
        }
        Ok(Received::Parked)
    }
}
