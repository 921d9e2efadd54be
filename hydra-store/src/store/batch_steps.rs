//! Multi-row step writes of a group commit: the step results of many runs
//! that keep their runs going, written by a fixed number of statements
//! however many there are, with the same fence and the same answers as one
//! by one.
//!
//! - SQLite ([`Store::sqlite_steps_in`]): one multi-row fenced insert and
//!   one multi-row update of the open steps. Every write transaction holds
//!   the database's write lock, so an `EXISTS` check of the token is the
//!   fence.
//! - PostgreSQL ([`Store::pg_steps_in`]): first every run the batch writes,
//!   and the parent of every run it ends, is locked in ID order (one
//!   statement, [`Store::pg_lock_runs`]: the order of every multi-run
//!   transaction, so none waits for another in a cycle), then one statement
//!   of arrays (`unnest`, the same text whatever the batch's size, so one
//!   prepared statement serves every batch) updates the runs under the
//!   fence, moving their open steps, and inserts the steps of the runs it
//!   updated.
//!
//! A row refused (a lost lease, a recorded step) changes nothing: the
//! caller rolls back and applies the steps apart, each with its own answer.

use super::Store;
use super::batch::{BatchOp, BatchValue};
use super::checkpoint::{Checkpoint, Transition};
use super::step_write::{
    STEP_INSERT, STEP_ROW, STEP_TAIL_PG, STEP_TAIL_SQLITE, outcome_columns, position_conflict, step_row,
};
use crate::error::StoreError;
use crate::model::{Lease, OpenStep, StepOutcome, StepRecord, to_i32};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};
use std::collections::HashMap;

/// The most output bytes PostgreSQL writes in one statement of arrays; a
/// batch with more writes its steps one statement each.
pub(super) const PG_HOT_BYTES: usize = 64 << 20;

/// The bytes of the outputs and errors `hot` writes.
pub(super) fn hot_output_bytes(hot: &[(usize, HotStep<'_>)]) -> usize {
    hot.iter()
        .map(|(_, (_, rec, _))| match &rec.outcome {
            StepOutcome::Completed(out) => out.len(),
            StepOutcome::FailedWith(e, data) => e.len().saturating_add(data.len()),
            StepOutcome::Failed(e) | StepOutcome::AttemptFailed(e) => e.len(),
            StepOutcome::Waiting | StepOutcome::TimedOut => 0,
        })
        .fold(0usize, usize::saturating_add)
}

impl Store {
    /// SQLite: step results that move their runs' open steps, of one run
    /// each, in two statements however many there are: one multi-row fenced
    /// insert and one multi-row update of the open steps (on SQLite each
    /// statement is a round trip to the connection's thread, and so is
    /// each row a statement returns: the insert returns none). A row the
    /// insert refused (lost lease, recorded step) changes nothing. When
    /// every row was written, the update moves every run's open step and
    /// the results are in the order of `items`; when one of several was
    /// refused, `None`: the caller rolls back and applies them apart, each
    /// with its own answer (refusals are rare: a lost lease, a replay).
    pub(super) async fn sqlite_steps_in(
        &self,
        txn: &DatabaseTransaction,
        items: &[HotStep<'_>],
        now: i64,
    ) -> Result<Option<StepAnswers>, StoreError> {
        let mut values = Vec::with_capacity(items.len() * 15);
        for (lease, rec, _) in items {
            values.extend(step_row(lease, rec, now));
        }
        let sql = format!(
            "{STEP_INSERT} SELECT * FROM (VALUES {}) AS v WHERE EXISTS (SELECT 1 FROM workflow_executions e \
             WHERE e.id = v.column1 AND e.fencing_token = v.column15 AND e.status = 'running' \
             AND e.namespace || '' = v.column2) {STEP_TAIL_SQLITE}",
            vec![format!("({STEP_ROW})"); items.len()].join(", ")
        );
        let written = txn
            .execute_raw(self.stmt(&sql, values))
            .await
            .map_err(|e| match items {
                // One step: a unique violation is its position taken. Several:
                // the group commit retries them one by one to find out.
                [(lease, rec, _)] => position_conflict(e, lease, rec.position),
                _ => StoreError::Database(e),
            })?
            .rows_affected();
        if written != items.len() as u64 {
            return match items {
                [(lease, rec, _)] => Ok(Some(vec![Err(self.why_refused(txn, lease, &rec.step_id).await)])),
                _ => Ok(None),
            };
        }
        let mut values: Vec<Value> = vec![now.into()];
        for (lease, rec, open) in items {
            values.push(lease.execution_id.as_str().into());
            values.push(lease.token.0.into());
            values.push(to_i32(rec.position).into());
            values.push(to_i32(open.position).into());
            values.push(to_i32(open.attempts).into());
        }
        // As `open_set` with the step's position: only a run whose open
        // step is the one written moves on.
        let sql = format!(
            "UPDATE workflow_executions SET updated_at = ?, \
             open_position = CASE WHEN workflow_executions.open_position = v.column3 THEN v.column4 \
               ELSE workflow_executions.open_position END, \
             open_attempts = CASE WHEN workflow_executions.open_position = v.column3 THEN v.column5 \
               ELSE workflow_executions.open_attempts END \
             FROM (VALUES {}) AS v WHERE workflow_executions.id = v.column1 \
             AND workflow_executions.fencing_token = v.column2",
            vec!["(?, ?, ?, ?, ?)"; items.len()].join(", ")
        );
        let r = txn.execute_raw(self.stmt(&sql, values)).await?;
        if r.rows_affected() != items.len() as u64 {
            return Err(StoreError::Database(DbErr::Custom(format!(
                "moved {} open steps for {} written steps",
                r.rows_affected(),
                items.len()
            ))));
        }
        Ok(Some(items.iter().map(|_| Ok(BatchValue::Checkpoint)).collect()))
    }

    /// Locks the runs `ops` write under a lease, and the parents of those
    /// it ends (an end tells its parent, in the same transaction), until
    /// the transaction ends (PostgreSQL). One statement, in the byte order
    /// of their IDs (`COLLATE "C"`: the order of `lock_order` and of lease
    /// renewals, whatever the database's collation), so no other
    /// transaction that locks runs in that order can wait for this one in a
    /// cycle. After it, no other transaction can change those runs, so a
    /// statement of this transaction reads their current token.
    pub(super) async fn pg_lock_runs(&self, txn: &DatabaseTransaction, ops: &[BatchOp]) -> Result<(), StoreError> {
        let mut ids: Vec<String> = ops.iter().filter_map(|op| op.lease().map(|l| l.execution_id.to_string())).collect();
        ids.sort_unstable();
        ids.dedup();
        let ending: Vec<String> = ops
            .iter()
            .filter_map(|op| match op {
                BatchOp::Checkpoint(lease, Checkpoint { transition: Transition::Finish(_), .. }) => {
                    Some(lease.execution_id.to_string())
                }
                _ => None,
            })
            .collect();
        txn.execute_raw(self.lock_runs_statement(ids, ending)).await?;
        Ok(())
    }

    /// The statement of [`Store::pg_lock_runs`]: the runs `ids` and the
    /// parents of the runs `ending`, locked in byte order of their IDs.
    /// One array of IDs, the parents' found first (an `InitPlan`), so both
    /// are found through the primary key: `id = ANY(..) OR id IN (SELECT
    /// ..)` would read the whole run table, every batch. (A parent's NULL
    /// in the array matches no row.)
    #[doc(hidden)]
    pub fn lock_runs_statement(&self, ids: Vec<String>, ending: Vec<String>) -> sea_orm::Statement {
        self.stmt(
            "SELECT 1 FROM workflow_executions WHERE id = ANY(?::text[] \
             || ARRAY(SELECT parent_id::text FROM workflow_executions WHERE id = ANY(?::text[]))) \
             ORDER BY id COLLATE \"C\" FOR UPDATE",
            vec![ids.into(), ending.into()],
        )
    }

    /// PostgreSQL: the step results `items` in one statement of arrays,
    /// after [`Store::pg_lock_runs`] (see the module docs). `Some` answers
    /// in the order of `items` when every row was written, `None` when one
    /// was refused (the caller rolls back).
    pub(super) async fn pg_steps_in(
        &self,
        txn: &DatabaseTransaction,
        items: &[HotStep<'_>],
        now: i64,
    ) -> Result<Option<StepAnswers>, StoreError> {
        let n = items.len();
        let mut c = PgColumns::with_capacity(n);
        for (lease, rec, open) in items {
            let (status, output, error, completed_at) = outcome_columns(&rec.outcome, now);
            c.execution_id.push(lease.execution_id.to_string());
            c.namespace.push(lease.namespace.clone());
            c.step_id.push(rec.step_id.to_string());
            c.step_name.push(rec.step_name.clone());
            c.position.push(to_i32(rec.position));
            c.kind.push(rec.kind.as_str().to_owned());
            c.status.push(status.to_owned());
            c.attempts.push(to_i32(rec.attempt.max(1)));
            c.max_attempts.push(to_i32(rec.max_attempts.max(1)));
            c.has_output.push(output.is_some());
            c.output.push(output.unwrap_or_default());
            c.has_error.push(error.is_some());
            c.error.push(error.unwrap_or_default());
            c.started_at.push(rec.started_at.unwrap_or(now));
            c.has_completed.push(completed_at.is_some());
            c.completed_at.push(completed_at.unwrap_or(0));
            c.has_wake.push(rec.wake_at.is_some());
            c.wake_at.push(rec.wake_at.unwrap_or(0));
            c.token.push(lease.token.0);
            c.open_position.push(to_i32(open.position));
            c.open_attempts.push(to_i32(open.attempts));
        }
        // In the order of the statement's placeholders: the arrays, then
        // the update's time.
        let values: Vec<Value> = vec![
            c.execution_id.into(),
            c.namespace.into(),
            c.step_id.into(),
            c.step_name.into(),
            c.position.into(),
            c.kind.into(),
            c.status.into(),
            c.attempts.into(),
            c.max_attempts.into(),
            c.output.into(),
            c.has_output.into(),
            c.error.into(),
            c.has_error.into(),
            c.started_at.into(),
            c.completed_at.into(),
            c.has_completed.into(),
            c.wake_at.into(),
            c.has_wake.into(),
            c.token.into(),
            c.open_position.into(),
            c.open_attempts.into(),
            now.into(),
        ];
        // As the one-row fenced insert (`fenced_insert`): the update is the
        // fence and moves the open step only if it is the step written
        // (`OpenWhen::At`); the insert takes the rows of the runs it updated.
        let sql = format!(
            "WITH v AS MATERIALIZED (SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::int4[], \
               ?::text[], ?::text[], ?::int4[], ?::int4[], ?::bytea[], ?::bool[], ?::text[], ?::bool[], ?::int8[], \
               ?::int8[], ?::bool[], ?::int8[], ?::bool[], ?::int8[], ?::int4[], ?::int4[]) \
               AS v(execution_id, namespace, step_id, step_name, position, kind, status, attempts, max_attempts, \
               output_data, has_output, error_message, has_error, started_at, completed_at, has_completed, wake_at, \
               has_wake, fencing_token, open_position, open_attempts)), \
             fence AS (UPDATE workflow_executions e SET updated_at = ?, \
               open_position = CASE WHEN e.open_position = v.position THEN v.open_position ELSE e.open_position END, \
               open_attempts = CASE WHEN e.open_position = v.position THEN v.open_attempts ELSE e.open_attempts END \
               FROM v WHERE e.id = v.execution_id AND e.fencing_token = v.fencing_token AND e.status = 'running' \
               AND e.namespace || '' = v.namespace RETURNING e.id) \
             {STEP_INSERT} SELECT v.execution_id, v.namespace, v.step_id, v.step_name, v.position, v.kind, v.status, \
               v.attempts, v.max_attempts, CASE WHEN v.has_output THEN v.output_data END, \
               CASE WHEN v.has_error THEN v.error_message END, v.started_at, \
               CASE WHEN v.has_completed THEN v.completed_at END, CASE WHEN v.has_wake THEN v.wake_at END, \
               v.fencing_token FROM v JOIN fence ON fence.id = v.execution_id {STEP_TAIL_PG}"
        );
        let written = txn.execute_raw(self.stmt(&sql, values)).await?.rows_affected();
        if written != n as u64 {
            return Ok(None);
        }
        Ok(Some(items.iter().map(|_| Ok(BatchValue::Checkpoint)).collect()))
    }
}

/// The columns of [`Store::pg_steps_in`]'s arrays (PostgreSQL arrays hold no
/// NULL here: a flag says whether a nullable column has a value).
#[derive(Default)]
struct PgColumns {
    execution_id: Vec<String>,
    namespace: Vec<String>,
    step_id: Vec<String>,
    step_name: Vec<String>,
    position: Vec<i32>,
    kind: Vec<String>,
    status: Vec<String>,
    attempts: Vec<i32>,
    max_attempts: Vec<i32>,
    output: Vec<Vec<u8>>,
    has_output: Vec<bool>,
    error: Vec<String>,
    has_error: Vec<bool>,
    started_at: Vec<i64>,
    completed_at: Vec<i64>,
    has_completed: Vec<bool>,
    wake_at: Vec<i64>,
    has_wake: Vec<bool>,
    token: Vec<i64>,
    open_position: Vec<i32>,
    open_attempts: Vec<i32>,
}

impl PgColumns {
    fn with_capacity(n: usize) -> Self {
        PgColumns {
            execution_id: Vec::with_capacity(n),
            namespace: Vec::with_capacity(n),
            step_id: Vec::with_capacity(n),
            step_name: Vec::with_capacity(n),
            output: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            ..PgColumns::default()
        }
    }
}

/// The answers of step results written together, in their order.
pub(super) type StepAnswers = Vec<Result<BatchValue, StoreError>>;

/// A step result that keeps its run going and moves its open step: the
/// write a group commit applies together with others of its kind.
pub(super) type HotStep<'a> = (&'a Lease, &'a StepRecord, OpenStep);

/// The writes of a batch applied together, with their indexes: step
/// results that keep the run going and move its open step, at most one per
/// run (two steps of one run running at once keep their order, one by one).
pub(super) fn hot_step_rows(ops: &[BatchOp]) -> Vec<(usize, HotStep<'_>)> {
    fn hot(op: &BatchOp) -> Option<HotStep<'_>> {
        match op {
            BatchOp::Checkpoint(
                lease,
                Checkpoint { step: Some(rec), open: Some(open), transition, open_seen: None },
            ) => matches!(transition, Transition::Continue).then_some((lease, rec, *open)),
            _ => None,
        }
    }
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for (lease, _, _) in ops.iter().filter_map(hot) {
        *runs.entry(lease.execution_id.as_str()).or_insert(0) += 1;
    }
    ops.iter()
        .enumerate()
        .filter_map(|(i, op)| hot(op).map(|item| (i, item)))
        .filter(|(_, (lease, _, _))| runs.get(lease.execution_id.as_str()) == Some(&1))
        .collect()
}
