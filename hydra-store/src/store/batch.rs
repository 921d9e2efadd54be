//! Group commit: many runs' writes (step attempts, checkpoints, claims)
//! applied in one transaction, falling back to one by one after an SQL error.

use super::Store;
use super::checkpoint::{Checkpoint, Transition};
use super::fence::lock_order;
use crate::backend::{HotStep, StepAnswers};
use crate::error::StoreError;
use crate::model::{ClaimRequest, ClaimedExecution, Created, Lease, NewExecution, StepAttempt};
use crate::sql::Txn;
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

    /// Whether the write ends a run that may have a parent (which its end
    /// tells).
    fn ends_child(&self) -> bool {
        matches!(
            self,
            BatchOp::Checkpoint(_, Checkpoint { transition: Transition::Finish(_), without_parent: false, .. })
        )
    }
}

/// The runs `ops` write under a lease, and those they end that may have a
/// parent: what `Dialect::lock_runs` locks (the second, with their parents).
fn run_locks(ops: &[BatchOp]) -> (Vec<String>, Vec<String>) {
    let mut ids: Vec<String> = ops.iter().filter_map(|op| op.lease().map(|l| l.execution_id.to_string())).collect();
    ids.sort_unstable();
    ids.dedup();
    let ending = ops
        .iter()
        .filter(|op| op.ends_child())
        .filter_map(|op| op.lease().map(|l| l.execution_id.to_string()))
        .collect();
    (ids, ending)
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
        let together = if self.has_writer() {
            let owned = ops.to_vec();
            self.offload(move |w| Box::pin(async move { w.together(&owned, now).await })).await?
        } else {
            let _gate = self.gate().await;
            self.together(ops, now).await?
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

    /// [`Store::apply_batch`] in one transaction (with the steps that keep
    /// their runs going written together by the backend if `multi_row`), or
    /// what to do after its rollback.
    async fn batch_in_one(&self, ops: &[BatchOp], now: i64, multi_row: bool) -> Result<Together, StoreError> {
        let txn = self.begin().await?;
        let mut out: Vec<Option<Result<BatchValue, StoreError>>> = ops.iter().map(|_| None).collect();
        let hot = if multi_row { hot_step_rows(ops) } else { Vec::new() };
        let together = self.dialect().steps_together_pays(&hot);
        // New runs first (they lock only their own rows), then the runs'
        // writes in lock order (the step results written together first,
        // see `batch_steps`), claims last: they skip locked rows, wait for
        // none, and can take the runs this batch created.
        let order = lock_order(ops, |op| match op {
            // By idempotency key: two batches creating runs with the same
            // keys insert them in one order (no deadlock on the key's index).
            BatchOp::Create(new) => (0, new.workflow_name.as_str(), new.idempotency_key.as_deref().unwrap_or("")),
            _ => op.lease().map_or((2, "", ""), |l| (1, l.execution_id.as_str(), "")),
        });
        // Before the first run is written, a batch that writes runs
        // together or ends one that may have a parent (which it then tells) locks them all,
        // and the parents of those it ends, in ID order (see
        // `Dialect::lock_runs`): one by one, the end of a child would lock
        // its parent out of that order.
        let lock_first = together || ops.iter().any(BatchOp::ends_child);
        let mut locked = false;
        for i in order {
            if !locked && !matches!(ops[i], BatchOp::Create(_)) {
                locked = true;
                let first = async {
                    if lock_first {
                        let (ids, ending) = run_locks(ops);
                        self.dialect().lock_runs(self, txn.db(), ids, ending).await?;
                    }
                    if together { self.steps_together(&txn, &hot, now).await } else { Ok(Some(Vec::new())) }
                };
                match first.await {
                    Ok(Some(results)) => {
                        for ((row, _), r) in hot.iter().zip(results) {
                            out[*row] = Some(r);
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
            if out[i].is_some() {
                continue;
            }
            let op = &ops[i];
            let r = match op {
                BatchOp::Attempt(lease, attempt) => {
                    self.attempt_in(txn.db(), lease, attempt, now).await.map(BatchValue::Attempt)
                }
                BatchOp::Checkpoint(lease, cp)
                    if cp.step.is_some() && !matches!(cp.transition, Transition::Continue) =>
                {
                    let sp = txn.savepoint().await?;
                    match self.apply(sp.db(), lease, cp, now).await {
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
                    self.apply(txn.db(), lease, cp, now).await.map(|()| BatchValue::Checkpoint)
                }
                BatchOp::Claim(req) => self.claim_on(txn.db(), req).await.map(BatchValue::Claimed),
                BatchOp::Create(new) => self.create_in(txn.db(), new).await.map(|c| BatchValue::Created(Box::new(c))),
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
                // Where a refusal spoils the transaction (see
                // `Dialect::refusal_spoils_batch`), the batch is redone with
                // each write in a transaction of its own, where a refusal
                // leaves nothing (both are rare).
                Err(StoreError::PositionTaken { .. } | StoreError::StepAlreadyRecorded { .. })
                    if self.dialect().refusal_spoils_batch() =>
                {
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

    /// The step results `hot` of `ops` written together by the backend:
    /// `None` when one was refused and the transaction must be rolled back.
    async fn steps_together(
        &self,
        txn: &Txn,
        hot: &[(usize, HotStep<'_>)],
        now: i64,
    ) -> Result<Option<StepAnswers>, StoreError> {
        let items: Vec<HotStep<'_>> = hot.iter().map(|(_, item)| *item).collect();
        self.dialect().steps_together(self, txn.db(), &items, now).await
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

/// The writes of a batch applied together, with their indexes: step
/// results that keep the run going and move its open step, at most one per
/// run (two steps of one run running at once keep their order, one by one).
fn hot_step_rows(ops: &[BatchOp]) -> Vec<(usize, HotStep<'_>)> {
    fn hot(op: &BatchOp) -> Option<HotStep<'_>> {
        match op {
            BatchOp::Checkpoint(
                lease,
                Checkpoint { step: Some(rec), open: Some(open), transition, open_seen: None, .. },
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
