//! Repairing runs by hand: a retry (an ended run goes on from its last
//! recorded step with fresh attempts) and a fork (a new run that keeps the
//! history before a position and runs the rest).
//!
//! Both are single transactions whose writes are conditional on the run's
//! row as read in them (status and fencing token), so a repair never races
//! a live worker: a run that changed in between is refused, not repaired.

use super::Store;
use super::runs::execution_row;
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{Execution, ExecutionStatus, NewExecution, Step, StepKind, StepStatus};
use crate::reserved;
use crate::sql::Db;

/// The step ID base of the compensation marker (see the runtime's sagas):
/// a run whose compensations ran is not retried, and forked only from
/// position 0.
pub const COMPENSATION_MARKER: &str = reserved::step::COMPENSATE;

/// A fork to make: which run, from which position, and the new run (built
/// by the caller like every new run: of the origin's workflow and version,
/// in its namespace, with its input or a new one).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ForkRequest {
    /// The run forked.
    pub origin: ExecutionId,
    /// Steps at positions below this are kept; the fork runs the rest.
    pub from_position: u32,
    /// The new run.
    pub run: NewExecution,
}

impl ForkRequest {
    /// A fork of `origin` from `from_position` as `run`.
    pub fn new(origin: ExecutionId, from_position: u32, run: NewExecution) -> Self {
        ForkRequest { origin, from_position, run }
    }
}

impl Store {
    /// Retries an ended run: a `failed`, `timed_out` or `cancelled` run
    /// becomes `pending` again, due now, with fresh attempts (the run's and
    /// its open step's); its recorded steps stay, except the failed step
    /// that ended it (the last one, if it failed), which runs again. Its
    /// error, output and cancel flag are cleared, a deadline that has passed
    /// is dropped, and its fencing token moves on. Refused
    /// ([`StoreError::Refused`]) for a run in any other state, for a run
    /// whose compensations ran (its effects were undone: fork it from
    /// position 0 instead), and for a child whose parent, still going, has
    /// taken the news of its end already (an untaken end is withdrawn, and
    /// the retried child tells the parent again), and for a run forked from
    /// a position past 0 (the fork owns its steps' compensations).
    pub async fn retry_run(&self, namespace: &str, id: &ExecutionId, now: i64) -> Result<Execution, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = self.retry_in(txn.db(), namespace, id, now).await;
        // The answer is the row as this transaction wrote it: read after the
        // commit, a live worker may already have moved it on.
        self.settle(txn, r).await
    }

    async fn retry_in(&self, db: Db<'_>, namespace: &str, id: &ExecutionId, now: i64) -> Result<Execution, StoreError> {
        // The run and its parent (whose news of the child's end a retry
        // withdraws) in ID order, before either is locked on its own.
        self.lock_run_and_parent(db, id).await?;
        let run = self.locked_run(db, namespace, id).await?;
        let retryable = [ExecutionStatus::Failed, ExecutionStatus::TimedOut, ExecutionStatus::Cancelled];
        if !retryable.contains(&run.status) {
            let hint = match run.status {
                ExecutionStatus::CompensationFailed => "; its compensations ran: fork it from position 0 (a new run)",
                ExecutionStatus::Suspended => "; it waits for a worker whose code replays it",
                s if !s.is_terminal() => "; only an ended run can be retried",
                _ => "",
            };
            return Err(refused(
                id,
                format!("run {id} is {}: only a failed, timed-out or cancelled run can be retried{hint}", run.status),
            ));
        }
        if let Some(fork) = self.owning_fork(db, id).await? {
            return Err(refused(
                id,
                format!(
                    "run {id} was forked into run {fork}, which keeps its recorded steps and their compensations: \
                     a retry would let both undo them; retry or fork run {fork} instead"
                ),
            ));
        }
        let steps = self.steps_in(db, namespace, id).await?;
        if let Some(marker) = steps.iter().find(|s| s.step_id.base() == COMPENSATION_MARKER) {
            return Err(refused(
                id,
                format!(
                    "run {id} ran its compensations (step {} at position {}): a retry would go on after its \
                     effects were undone; fork it from position 0 (a new run from its start) instead",
                    marker.step_id, marker.position
                ),
            ));
        }
        // A child's parent is told how it ended once (the signal is keyed by
        // the child). If the parent has not taken that news yet, it is
        // withdrawn here and the retried child's new end will tell it; if it
        // has, a retry's outcome would never reach it: refused.
        if let Some(parent) = &run.parent_id {
            let p = match self.locked_run(db, namespace, parent).await {
                Ok(p) => Some(p),
                Err(StoreError::ExecutionNotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if let Some(p) = p
                && !p.status.is_terminal()
            {
                let name = reserved::signal::child(id);
                let withdrawn = db
                    .exec(self.stmt(
                        "DELETE FROM workflow_signals WHERE execution_id = ? AND name = ? AND consumed_at IS NULL",
                        vec![parent.as_str().into(), name.as_str().into()],
                    ))
                    .await?;
                let taken = self.consumed_before(db, parent, &name, u32::MAX).await?;
                if withdrawn == 0 && taken > 0 {
                    return Err(refused(
                        id,
                        format!(
                            "run {id} is a child of run {parent} ({}), which has already taken the news that it \
                             ended {}: a retry's new outcome would not reach it",
                            p.status, run.status
                        ),
                    ));
                }
            }
        }
        let mut open = run.open_step.position;
        if let Some(last) = steps.last()
            && last.status == StepStatus::Failed
        {
            db.exec(self.stmt(
                "DELETE FROM workflow_steps WHERE execution_id = ? AND position = ?",
                vec![id.as_str().into(), i32::try_from(last.position).unwrap_or(i32::MAX).into()],
            ))
            .await?;
            open = last.position;
        }
        // Fresh attempts (and no old backoff) for a step body caught between
        // an attempt and its result. A wait's row keeps its deadline.
        db.exec(self.stmt(
            "UPDATE workflow_steps SET attempts = 0, wake_at = NULL WHERE execution_id = ? AND status = 'running' \
             AND kind = ?",
            vec![id.as_str().into(), StepKind::Step.as_str().into()],
        ))
        .await?;
        let r = db
            .exec(self.stmt(
                "UPDATE workflow_executions SET status = 'pending', attempts = 0, open_position = ?, \
                 open_attempts = 0, due_at = ?, updated_at = ?, completed_at = NULL, output_data = NULL, \
                 error_message = NULL, error_data = NULL, cancel_requested = FALSE, lease_owner = NULL, \
                 suspended_code = NULL, signal_wait = FALSE, fencing_token = fencing_token + 1, \
                 deadline_at = CASE WHEN deadline_at <= ? THEN NULL ELSE deadline_at END \
                 WHERE id = ? AND namespace = ? AND status = ? AND fencing_token = ?",
                vec![
                    i32::try_from(open).unwrap_or(i32::MAX).into(),
                    now.into(),
                    now.into(),
                    now.into(),
                    id.as_str().into(),
                    namespace.into(),
                    run.status.as_str().into(),
                    run.fencing_token.0.into(),
                ],
            ))
            .await?;
        if r != 1 {
            return Err(refused(id, format!("run {id} changed while it was being retried; look at it again")));
        }
        self.locked_run(db, namespace, id).await
    }

    /// Forks a run: creates run `req.id` of the same workflow (and version),
    /// started by trigger [`TriggerType::Fork`](crate::TriggerType::Fork) with the origin's ID as its
    /// source, whose history is a copy of the origin's steps at positions
    /// below `req.from_position`, and whose input is `req.input` or the
    /// origin's. A replay returns those steps' recorded results; the fork
    /// runs the rest. The origin's search attributes are copied as they are
    /// now; its events, signals, children and deadline are not. Refused
    /// ([`StoreError::Refused`]) for a position past the recorded history, a
    /// kept step without a result; for a run whose compensations ran, any
    /// position but 0 (its kept steps' effects were undone, and their
    /// compensations would run again); a kept child start whose end the
    /// kept history does not take (the child tells the origin, not the
    /// fork); a kept awakeable (its token names the origin); and, from a
    /// position past 0, an origin that has not ended (or is suspended) or
    /// that was forked past 0 already: the steps a fork keeps, and their
    /// compensations, become the fork's alone, so that one charge is never
    /// refunded by two runs.
    pub async fn fork_run(&self, req: &ForkRequest) -> Result<Execution, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = self.fork_in(txn.db(), req).await;
        self.settle(txn, r).await?;
        self.get_execution(&req.run.namespace, &req.run.id).await?.ok_or_else(|| StoreError::ExecutionNotFound {
            namespace: req.run.namespace.clone(),
            execution: req.run.id.clone(),
        })
    }

    async fn fork_in(&self, db: Db<'_>, req: &ForkRequest) -> Result<(), StoreError> {
        let origin_id = &req.origin;
        let namespace = &req.run.namespace;
        let origin = self.locked_run(db, namespace, origin_id).await?;
        if origin.workflow_name != req.run.workflow_name || origin.workflow_version != req.run.workflow_version {
            return Err(refused(
                origin_id,
                format!("a fork of run {origin_id} must be a run of its workflow and version"),
            ));
        }
        let steps = self.steps_in(db, namespace, origin_id).await?;
        let recorded = u32::try_from(steps.len()).unwrap_or(u32::MAX);
        if req.from_position > recorded {
            return Err(refused(
                origin_id,
                format!(
                    "run {origin_id} has {recorded} recorded step(s): a fork keeps the steps before a position \
                     from 0 to {recorded}, not {}",
                    req.from_position
                ),
            ));
        }
        if req.from_position > 0
            && let Some(marker) = steps.iter().find(|s| s.step_id.base() == COMPENSATION_MARKER)
        {
            return Err(refused(
                origin_id,
                format!(
                    "run {origin_id} ran its compensations (position {}): the effects of its steps were undone, \
                     so a fork may keep none of them: fork from position 0",
                    marker.position
                ),
            ));
        }
        let kept: Vec<&Step> = steps.iter().filter(|s| s.position < req.from_position).collect();
        // An awakeable's token names the run that made it: a fork cannot
        // take it over.
        if let Some(a) = kept.iter().find(|s| s.step_id.base() == reserved::step::AWAKEABLE) {
            return Err(refused(
                origin_id,
                format!(
                    "run {origin_id} made an awakeable at position {p} (its token names the origin): fork from \
                     position {p} or earlier (the fork then makes its own)",
                    p = a.position
                ),
            ));
        }
        // A linked child tells the run that started it: the fork keeps a
        // child's start only with the step that took its end.
        let started = kept.iter().filter(|s| reserved::step::is_child_start(s.step_id.base())).count();
        let ends_taken = kept
            .iter()
            .filter(|s| {
                s.status == StepStatus::Completed
                    && s.step_name
                        .strip_prefix(reserved::step::SIGNAL)
                        .is_some_and(|name| name.starts_with(reserved::signal::CHILD))
            })
            .count();
        if started > ends_taken
            && let Some(last) = kept.iter().rev().find(|s| reserved::step::is_child_start(s.step_id.base()))
        {
            return Err(refused(
                origin_id,
                format!(
                    "run {origin_id} keeps a child started at position {p} whose end the kept history does not \
                     take (the child tells the origin, not a fork): fork from after the step that takes its end, \
                     or from position {p} or earlier (the fork then starts a child of its own)",
                    p = last.position
                ),
            ));
        }
        for (i, s) in kept.iter().enumerate() {
            if usize::try_from(s.position).ok() != Some(i) {
                return Err(refused(
                    origin_id,
                    format!("run {origin_id} has no step recorded at position {i}: its history has a gap"),
                ));
            }
            if s.status == StepStatus::Running {
                return Err(refused(
                    origin_id,
                    format!(
                        "step {} at position {} of run {origin_id} has no result yet: fork from position {} or earlier",
                        s.step_id, s.position, s.position
                    ),
                ));
            }
        }
        // A fork that keeps steps takes them over with their compensations:
        // only one run may undo a charge. So the origin must have ended
        // (running, or suspended, it can still fail and compensate), and it
        // is forked past position 0 once (then fork the fork).
        if req.from_position > 0 {
            if !origin.status.is_terminal() || origin.status == ExecutionStatus::Suspended {
                return Err(refused(
                    origin_id,
                    format!(
                        "run {origin_id} is {}: while it has not ended it may still compensate the steps a fork \
                         would keep, and both would undo them; fork it once it has ended, or from position 0",
                        origin.status
                    ),
                ));
            }
            if let Some(fork) = self.owning_fork(db, origin_id).await? {
                return Err(refused(
                    origin_id,
                    format!(
                        "run {origin_id} was forked already into run {fork}, which keeps its steps and their \
                         compensations: fork run {fork} instead, or from position 0"
                    ),
                ));
            }
        }
        let mut row = execution_row(&req.run);
        row.open_position = sea_orm::ActiveValue::Set(i32::try_from(req.from_position).unwrap_or(i32::MAX));
        // A run's first claim gets token 1, and a worker takes token 1 to
        // mean "no history yet" (it skips reading it): a fork has one.
        row.fencing_token = sea_orm::ActiveValue::Set(1);
        if self.insert_execution(db, row).await? != 1 {
            return Err(refused(origin_id, format!("a run with ID {} exists already", req.run.id)));
        }
        for s in kept {
            db.exec(self.stmt(
                "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, kind, status, \
                 attempts, max_attempts, output_data, error_message, started_at, completed_at, wake_at, fencing_token) \
                 SELECT ?, namespace, step_id, step_name, position, kind, status, attempts, max_attempts, output_data, \
                 error_message, started_at, completed_at, wake_at, 0 FROM workflow_steps \
                 WHERE execution_id = ? AND position = ?",
                vec![
                    req.run.id.as_str().into(),
                    origin_id.as_str().into(),
                    i32::try_from(s.position).unwrap_or(i32::MAX).into(),
                ],
            ))
            .await?;
        }
        db.exec(self.stmt(
            "INSERT INTO workflow_search_attributes (execution_id, name, namespace, value) \
             SELECT ?, name, namespace, value FROM workflow_search_attributes WHERE execution_id = ?",
            vec![req.run.id.as_str().into(), origin_id.as_str().into()],
        ))
        .await?;
        Ok(())
    }

    /// The fork of run `id` that took over some of its recorded steps (a
    /// fork from a position past 0: its copied steps carry token 0), if any.
    async fn owning_fork(&self, db: Db<'_>, id: &ExecutionId) -> Result<Option<String>, StoreError> {
        let row = db
            .one(self.stmt(
                "SELECT f.id AS id FROM workflow_executions f WHERE f.trigger_type = ? AND f.trigger_source = ? \
                 AND EXISTS (SELECT 1 FROM workflow_steps s WHERE s.execution_id = f.id AND s.fencing_token = 0)",
                vec![crate::model::TriggerType::Fork.as_str().into(), id.as_str().into()],
            ))
            .await?;
        match row {
            Some(r) => Ok(Some(r.try_get("", "id")?)),
            None => Ok(None),
        }
    }

    /// How many of run `id`'s signals named `prefix…` were taken at a
    /// position below `before`.
    async fn consumed_before(
        &self,
        db: Db<'_>,
        id: &ExecutionId,
        prefix: &str,
        before: u32,
    ) -> Result<u64, StoreError> {
        let row = db
            .one(self.stmt(
                "SELECT COUNT(*) AS n FROM workflow_signals WHERE execution_id = ? AND name LIKE ? \
                 AND consumed_position IS NOT NULL AND consumed_position < ?",
                vec![id.as_str().into(), format!("{prefix}%").into(), i32::try_from(before).unwrap_or(i32::MAX).into()],
            ))
            .await?;
        let n: i64 = match row {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Run `id` read in `db`'s transaction, its row locked until it ends
    /// (where the transaction does not hold the database's write lock).
    async fn locked_run(&self, db: Db<'_>, namespace: &str, id: &ExecutionId) -> Result<Execution, StoreError> {
        let lock = self.dialect().for_update();
        let row = db
            .one(self.stmt(
                &format!("SELECT * FROM workflow_executions WHERE id = ? AND namespace = ?{lock}"),
                vec![id.as_str().into(), namespace.into()],
            ))
            .await?
            .ok_or_else(|| StoreError::ExecutionNotFound { namespace: namespace.to_owned(), execution: id.clone() })?;
        let model: crate::entity::workflow_executions::Model = row.to()?;
        Execution::try_from(model)
    }

    async fn steps_in(&self, db: Db<'_>, namespace: &str, id: &ExecutionId) -> Result<Vec<Step>, StoreError> {
        use crate::entity::workflow_steps as steps;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait};
        let query = steps::Entity::find()
            .filter(steps::Column::Namespace.eq(namespace))
            .filter(steps::Column::ExecutionId.eq(id.as_str()))
            .order_by_asc(steps::Column::Position)
            .build(self.dialect().db_backend());
        db.all(query).await?.iter().map(|r| Step::try_from(r.to::<steps::Model>()?)).collect()
    }
}

fn refused(id: &ExecutionId, reason: String) -> StoreError {
    StoreError::Refused { execution: id.clone(), reason }
}
