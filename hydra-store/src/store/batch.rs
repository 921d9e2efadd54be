//! Group commit: many runs' writes (step attempts, checkpoints, claims)
//! applied in one transaction, falling back to one by one after an SQL error.

use super::Store;
use super::checkpoint::{Checkpoint, Transition};
use super::fence::lock_order;
use super::step_write::{STEP_INSERT, STEP_ROW, STEP_TAIL_SQLITE, position_conflict, step_row};
use crate::connect::Backend;
use crate::error::StoreError;
use crate::model::{
    ClaimRequest, ClaimedExecution, Created, Lease, NewExecution, OpenStep, StepAttempt, StepRecord, to_i32,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, TransactionTrait, Value};
use std::collections::HashMap;

/// One write of a group commit (see [`Store::apply_batch`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BatchOp {
    /// [`Store::record_step_attempt`].
    Attempt(Lease, StepAttempt),
    /// [`Store::checkpoint`].
    Checkpoint(Lease, Checkpoint),
    /// [`Store::claim`]: a claim shares the commit of the writes around it
    /// instead of paying one of its own.
    Claim(ClaimRequest),
    /// [`Store::create_execution`]: a start shares the commit of the
    /// writes around it, and a claim in the same batch can take the new run.
    Create(Box<NewExecution>),
}

impl BatchOp {
    /// The lease the write presents (a claim presents none).
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            BatchOp::Attempt(lease, _) | BatchOp::Checkpoint(lease, _) => Some(lease),
            BatchOp::Claim(_) | BatchOp::Create(_) => None,
        }
    }
}

/// What one write of a group commit returned.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BatchValue {
    /// The attempt number recorded.
    Attempt(u32),
    /// The checkpoint was applied.
    Checkpoint,
    /// The runs claimed.
    Claimed(Vec<ClaimedExecution>),
    /// The run created (or found by its idempotency key).
    Created(Box<Created>),
}

impl Store {
    /// Applies many writes of many runs in one transaction (group commit)
    /// and commits once. A write that is refused (a lost lease, a recorded
    /// step) is reported and leaves nothing behind: its statements either
    /// write nothing or, for a write that both records a step and changes
    /// the run, run inside a savepoint that is rolled back. If any write
    /// hits an SQL error, the batch is rolled back and every write is
    /// applied again in its own transaction, so one bad write cannot take
    /// the others down. The outer error means nothing was applied.
    pub async fn apply_batch(
        &self,
        ops: &[BatchOp],
        now: i64,
    ) -> Result<Vec<Result<BatchValue, StoreError>>, StoreError> {
        let together = match self.writer() {
            Some(writer) => {
                let gate = self.gate().await;
                let ops = ops.to_vec();
                writer.run(gate, Box::new(move |w| Box::pin(async move { w.together(&ops, now).await }))).await?
            }
            None => {
                let _gate = self.gate().await;
                self.together(ops, now).await?
            }
        };
        match together {
            Some(results) => Ok(results),
            None => self.apply_one_by_one(ops, now).await,
        }
    }

    /// [`Store::apply_batch`] in one transaction, under the write gate;
    /// `None` after a rollback when the writes must be applied one by one.
    async fn together(
        &self,
        ops: &[BatchOp],
        now: i64,
    ) -> Result<Option<Vec<Result<BatchValue, StoreError>>>, StoreError> {
        Ok(match self.batch_in_one(ops, now, true).await? {
            Together::Applied(results) => Some(results),
            Together::OneByOne => None,
            // A step of the multi-row insert was refused: the same
            // transaction again, each step with its own statements.
            Together::StepsApart => match self.batch_in_one(ops, now, false).await? {
                Together::Applied(results) => Some(results),
                Together::OneByOne | Together::StepsApart => None,
            },
        })
    }

    /// [`Store::apply_batch`] in one transaction (on SQLite, with the
    /// steps that keep their runs going in two multi-row statements if
    /// `multi_row`), or what to do after its rollback.
    async fn batch_in_one(&self, ops: &[BatchOp], now: i64, multi_row: bool) -> Result<Together, StoreError> {
        let txn = self.begin().await?;
        let mut out: Vec<Option<Result<BatchValue, StoreError>>> = ops.iter().map(|_| None).collect();
        if self.backend == Backend::Sqlite && multi_row {
            let (rows, items): (Vec<usize>, Vec<SqliteStep<'_>>) = sqlite_step_rows(ops).into_iter().unzip();
            if !items.is_empty() {
                match self.sqlite_steps_in(&txn, &items, now).await {
                    Ok(Some(results)) => {
                        for (i, r) in rows.into_iter().zip(results) {
                            out[i] = Some(r);
                        }
                    }
                    Ok(None) => {
                        txn.rollback().await?;
                        return Ok(Together::StepsApart);
                    }
                    Err(StoreError::Database(e)) if e.sql_err().is_none() && crate::error::is_transient(&e) => {
                        return Err(StoreError::Database(e));
                    }
                    Err(_) => {
                        txn.rollback().await?;
                        return Ok(Together::OneByOne);
                    }
                }
            }
        }
        // After SQLite's step rows above: new runs (they lock only their own
        // rows), then the runs' writes in lock order, claims last: they skip
        // locked rows, wait for none, and can take the runs this batch created.
        let order = lock_order(ops, |op| match op {
            // By idempotency key: two batches creating runs with the same
            // keys insert them in one order (no deadlock on the key's index).
            BatchOp::Create(new) => (0, new.workflow_name.as_str(), new.idempotency_key.as_deref().unwrap_or("")),
            _ => op.lease().map_or((2, "", ""), |l| (1, l.execution_id.as_str(), "")),
        });
        for i in order {
            if out[i].is_some() {
                continue;
            }
            let op = &ops[i];
            let r = match op {
                BatchOp::Attempt(lease, attempt) => {
                    self.attempt_in(&txn, lease, attempt, now).await.map(BatchValue::Attempt)
                }
                BatchOp::Checkpoint(lease, cp)
                    if cp.step.is_some() && !matches!(cp.transition, Transition::Continue) =>
                {
                    let sp = txn.begin().await?;
                    match self.apply(&sp, lease, cp, now).await {
                        Ok(()) => {
                            sp.commit().await?;
                            Ok(BatchValue::Checkpoint)
                        }
                        Err(e) => {
                            sp.rollback().await?;
                            Err(e)
                        }
                    }
                }
                BatchOp::Checkpoint(lease, cp) => {
                    self.apply(&txn, lease, cp, now).await.map(|()| BatchValue::Checkpoint)
                }
                BatchOp::Claim(req) => self.claim_on(&txn, req).await.map(BatchValue::Claimed),
                BatchOp::Create(new) => self.create_in(&txn, new).await.map(|c| BatchValue::Created(Box::new(c))),
            };
            match r {
                Err(StoreError::Database(e)) => {
                    if e.sql_err().is_none() && crate::error::is_transient(&e) {
                        return Err(StoreError::Database(e));
                    }
                    // An SQL error (PostgreSQL aborts the whole transaction on
                    // one): isolate the writes from each other.
                    txn.rollback().await?;
                    return Ok(Together::OneByOne);
                }
                Err(e @ StoreError::PositionTaken { .. }) if self.backend == Backend::Postgres => {
                    let _ = e;
                    txn.rollback().await?;
                    return Ok(Together::OneByOne);
                }
                other => out[i] = Some(other),
            }
        }
        txn.commit().await?;
        self.count();
        Ok(Together::Applied(out.into_iter().flatten().collect()))
    }

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
        items: &[SqliteStep<'_>],
        now: i64,
    ) -> Result<Option<Vec<Result<BatchValue, StoreError>>>, StoreError> {
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

    async fn apply_one_by_one(
        &self,
        ops: &[BatchOp],
        now: i64,
    ) -> Result<Vec<Result<BatchValue, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(self.apply_write(op, now).await);
        }
        Ok(out)
    }

    /// Applies one write of the kind a group commit takes, in a transaction
    /// of its own.
    pub async fn apply_write(&self, op: &BatchOp, now: i64) -> Result<BatchValue, StoreError> {
        match op {
            BatchOp::Attempt(lease, attempt) => {
                self.record_step_attempt(lease, attempt, now).await.map(BatchValue::Attempt)
            }
            BatchOp::Checkpoint(lease, cp) => {
                self.checkpoint(lease, cp.clone(), now).await.map(|()| BatchValue::Checkpoint)
            }
            BatchOp::Claim(req) => self.claim(req).await.map(BatchValue::Claimed),
            BatchOp::Create(new) => {
                self.create_execution((**new).clone()).await.map(|c| BatchValue::Created(Box::new(c)))
            }
        }
    }
}

/// What a group commit's one transaction came to.
enum Together {
    /// Committed: each write's answer.
    Applied(Vec<Result<BatchValue, StoreError>>),
    /// Rolled back after an SQL error: apply each write alone.
    OneByOne,
    /// Rolled back because the multi-row step insert refused a row: the
    /// transaction again with each step apart.
    StepsApart,
}

/// A step result that moves its run's open step (see
/// [`Store::sqlite_steps_in`]).
type SqliteStep<'a> = (&'a Lease, &'a StepRecord, OpenStep);

/// The writes of a batch that SQLite applies together, with their indexes:
/// step results that keep the run going and move its open step, at most
/// one per run (two steps of one run running at once keep their order, one
/// by one).
fn sqlite_step_rows(ops: &[BatchOp]) -> Vec<(usize, SqliteStep<'_>)> {
    fn hot(op: &BatchOp) -> Option<SqliteStep<'_>> {
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
