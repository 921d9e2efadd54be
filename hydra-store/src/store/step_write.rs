//! Step rows: recording an attempt before a step body runs and writing a
//! step's outcome. A step keeps its position, and its result is recorded
//! once and never overwritten.

use super::Store;
use crate::backend::Dialect;
use crate::error::StoreError;
use crate::model::{Lease, OpenStep, StepAttempt, StepOutcome, StepRecord, to_i32};
use crate::sql::Db;
use sea_orm::{DbErr, Value};

impl Store {
    /// Records the start of a step attempt before its body runs, so that a
    /// crash during the body counts as an attempt. Returns the attempt
    /// number (1 for the first). Fails with [`StoreError::StepAlreadyRecorded`]
    /// if the step already has a result, and with
    /// [`StoreError::PositionTaken`] if another step holds its position.
    pub async fn record_step_attempt(&self, lease: &Lease, attempt: &StepAttempt, now: i64) -> Result<u32, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = self.attempt_in(txn.db(), lease, attempt, now).await;
        self.settle(txn, r).await
    }

    /// The fenced step-attempt upsert: one statement that writes only if
    /// the caller's token is current (see [`Store::fenced_insert`]).
    pub(super) async fn attempt_in(
        &self,
        db: Db<'_>,
        lease: &Lease,
        attempt: &StepAttempt,
        now: i64,
    ) -> Result<u32, StoreError> {
        let d = self.dialect();
        let tail = format!(
            "{}{}",
            d.on_conflict_update(
                "execution_id, step_id",
                "attempts = workflow_steps.attempts + 1, fencing_token = excluded.fencing_token, error_message = NULL",
                "workflow_steps.status = 'running' AND workflow_steps.position = excluded.position",
            ),
            d.returning("attempts, position"),
        );
        let sql = self.fenced_insert(
            "",
            "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, kind, status, \
               attempts, max_attempts, started_at, fencing_token)",
            "?, ?, ?, ?, ?, ?, 'running', 1, ?, ?, ?",
            &tail,
        );
        let values = self.fenced_values(
            lease,
            now,
            Vec::new(),
            vec![
                lease.execution_id.as_str().into(),
                lease.namespace.as_str().into(),
                attempt.step_id.as_str().into(),
                attempt.step_name.as_str().into(),
                to_i32(attempt.position).into(),
                attempt.kind.as_str().into(),
                to_i32(attempt.max_attempts.max(1)).into(),
                now.into(),
                lease.token.0.into(),
            ],
        );
        let row = db.one(self.stmt(&sql, values)).await.map_err(|e| position_conflict(e, lease, attempt.position))?;
        let Some(row) = row else {
            return Err(self.why_refused(db, lease, &attempt.step_id).await);
        };
        let position: i32 = row.try_get("", "position")?;
        if position != to_i32(attempt.position) {
            return Err(StoreError::PositionTaken {
                execution: lease.execution_id.clone(),
                position: attempt.position,
            });
        }
        let attempts: i32 = row.try_get("", "attempts")?;
        Ok(u32::try_from(attempts).unwrap_or(0))
    }

    /// Records a step outcome. With `fenced`, the statement itself checks
    /// the lease (the caller ran no guard) and moves the open step to
    /// `open`; otherwise the caller already holds the run's row under the
    /// fencing check. The row keeps the higher of its counted attempts and
    /// the record's.
    pub(super) async fn write_step(
        &self,
        db: Db<'_>,
        lease: &Lease,
        rec: &StepRecord,
        open: Option<OpenStep>,
        now: i64,
        fenced: bool,
    ) -> Result<(), StoreError> {
        let tail = step_tail(self.dialect());
        const INSERT: &str = STEP_INSERT;
        const ROW: &str = STEP_ROW;
        let row = step_row(lease, rec, now);
        let stmt = if fenced {
            let (frag, open) = open.map_or(("", Vec::new()), |o| open_set(o, OpenWhen::At(rec.position)));
            self.stmt(&self.fenced_insert(frag, INSERT, ROW, &tail), self.fenced_values(lease, now, open, row))
        } else {
            self.stmt(&format!("{INSERT} VALUES ({ROW}) {tail}"), row)
        };
        let written = db.exec(stmt).await.map_err(|e| position_conflict(e, lease, rec.position))?;
        if written == 1 {
            Ok(())
        } else if fenced {
            Err(self.why_refused(db, lease, &rec.step_id).await)
        } else {
            Err(StoreError::StepAlreadyRecorded { execution: lease.execution_id.clone(), step: rec.step_id.clone() })
        }
    }

    /// Records `rec` for a run whose row this transaction already holds
    /// under the fencing check, and moves the open step to `next` if the
    /// open step is `rec`'s (a receive, an event).
    pub(super) async fn record_held(
        &self,
        db: Db<'_>,
        lease: &Lease,
        rec: &StepRecord,
        next: OpenStep,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write_step(db, lease, rec, None, now, false).await?;
        let (open, mut values) = open_set(next, OpenWhen::At(rec.position));
        let open = open.trim_start_matches(", ");
        values.push(lease.execution_id.as_str().into());
        values.push(lease.token.0.into());
        db.exec(
            self.stmt(&format!("UPDATE workflow_executions SET {open} WHERE id = ? AND fencing_token = ?"), values),
        )
        .await?;
        Ok(())
    }
}

/// The columns of a step row, in the order [`step_row`] binds them.
pub(crate) const STEP_INSERT: &str = "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, \
       kind, status, attempts, max_attempts, output_data, error_message, started_at, completed_at, wake_at, \
       fencing_token)";
pub(crate) const STEP_ROW: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

/// The values of one step row (see [`STEP_INSERT`]).
pub(crate) fn step_row(lease: &Lease, rec: &StepRecord, now: i64) -> Vec<Value> {
    let (status, output, error, completed_at) = outcome_columns(&rec.outcome, now);
    vec![
        lease.execution_id.as_str().into(),
        lease.namespace.as_str().into(),
        rec.step_id.as_str().into(),
        rec.step_name.as_str().into(),
        to_i32(rec.position).into(),
        rec.kind.as_str().into(),
        status.into(),
        to_i32(rec.attempt.max(1)).into(),
        to_i32(rec.max_attempts.max(1)).into(),
        output.into(),
        error.into(),
        rec.started_at.unwrap_or(now).into(),
        completed_at.into(),
        rec.wake_at.into(),
        lease.token.0.into(),
    ]
}

/// The columns an outcome sets: the step's status, output, error and
/// completion time.
pub(crate) fn outcome_columns(
    outcome: &StepOutcome,
    now: i64,
) -> (&'static str, Option<Vec<u8>>, Option<String>, Option<i64>) {
    match outcome {
        StepOutcome::Completed(out) => ("completed", Some(out.clone()), None, Some(now)),
        StepOutcome::Failed(e) => ("failed", None, Some(e.clone()), Some(now)),
        StepOutcome::FailedWith(e, data) => ("failed", Some(data.clone()), Some(e.clone()), Some(now)),
        StepOutcome::AttemptFailed(e) => ("running", None, Some(e.clone()), None),
        StepOutcome::Waiting => ("running", None, None, None),
        StepOutcome::TimedOut => ("completed", None, None, Some(now)),
    }
}

/// When a write moves the run's open step (see [`open_set`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum OpenWhen {
    /// Always: a hand-back written from the lease holder's own view when no
    /// other step of the run can be writing.
    Always,
    /// Only if the open step is at this position (the step written in the
    /// same statement): when steps of one run execute at once, a step's
    /// result must not move the open step away from a sibling whose attempt
    /// it holds.
    At(u32),
    /// Only if the open step is exactly this (what the writer saw): a
    /// hand-back by a step that is not the open step must not undo a
    /// sibling's newer move.
    Unchanged(OpenStep),
}

/// The SET clause that moves a run's open step to `to` under `when`, and
/// its values.
pub(super) fn open_set(to: OpenStep, when: OpenWhen) -> (&'static str, Vec<Value>) {
    let (p, a) = (to_i32(to.position).into(), to_i32(to.attempts).into());
    match when {
        OpenWhen::Always => (", open_position = ?, open_attempts = ?", vec![p, a]),
        OpenWhen::At(at) => (
            ", open_position = CASE WHEN open_position = ? THEN ? ELSE open_position END, \
             open_attempts = CASE WHEN open_position = ? THEN ? ELSE open_attempts END",
            vec![to_i32(at).into(), p, to_i32(at).into(), a],
        ),
        // SET expressions read the row as it was, so both see the old pair.
        OpenWhen::Unchanged(seen) => {
            let (sp, sa): (Value, Value) = (to_i32(seen.position).into(), to_i32(seen.attempts).into());
            (
                ", open_position = CASE WHEN open_position = ? AND open_attempts = ? THEN ? ELSE open_position END, \
                 open_attempts = CASE WHEN open_position = ? AND open_attempts = ? THEN ? ELSE open_attempts END",
                vec![sp.clone(), sa.clone(), p, sp, sa, a],
            )
        }
    }
}

/// The conflict clause of a step result: only a running step at the same
/// position takes it; its attempt count never goes down. The name is
/// replaced: a select that parked records the branch it took there.
pub(crate) fn step_tail(d: &dyn Dialect) -> String {
    d.on_conflict_update(
        "execution_id, step_id",
        &format!(
            "status = excluded.status, step_name = excluded.step_name, output_data = excluded.output_data, \
             error_message = excluded.error_message, completed_at = excluded.completed_at, \
             wake_at = excluded.wake_at, fencing_token = excluded.fencing_token, \
             attempts = {}(workflow_steps.attempts, excluded.attempts)",
            d.greatest()
        ),
        "workflow_steps.status = 'running' AND workflow_steps.position = excluded.position",
    )
}

pub(crate) fn position_conflict(e: DbErr, lease: &Lease, position: u32) -> StoreError {
    if crate::error::is_unique_violation(&e) {
        StoreError::PositionTaken { execution: lease.execution_id.clone(), position }
    } else {
        e.into()
    }
}
