//! Runs: creating (at most one per idempotency key), reading, listing and
//! cancelling them, and the row of a new run (shared with cron ticks).

use super::Store;
use crate::entity::{workflow_executions as exec, workflow_steps as steps};
use crate::error::StoreError;
use crate::ids::{ExecutionId, StepId};
use crate::model::{
    CancelOutcome, Created, Execution, ExecutionFilter, ExecutionStatus, NewExecution, Step, Terminal, to_i32,
};
use crate::sql::Db;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TryIntoModel,
};

impl Store {
    /// Inserts a run. With an idempotency key already used in the same
    /// (namespace, workflow), inserts nothing and returns the existing run.
    pub async fn create_execution(&self, new: NewExecution) -> Result<Created, StoreError> {
        if self.has_writer() {
            return self.offload(move |w| Box::pin(async move { w.create_execution(new).await })).await;
        }
        let _gate = self.gate().await;
        let key = new.idempotency_key.clone();
        let am = execution_row(&new);
        let inserted = if new.search_attributes.is_empty() {
            let rows = self.insert_execution(self.conn(), am.clone()).await?;
            self.count();
            rows == 1
        } else {
            // The run and its attributes in one commit.
            let txn = self.begin().await?;
            let r = async {
                let rows = self.insert_execution(txn.db(), am.clone()).await?;
                if rows == 1 {
                    for (name, value) in &new.search_attributes {
                        self.put_search_attribute(txn.db(), &new.namespace, &new.id, name, value).await?;
                    }
                }
                Ok(rows)
            }
            .await;
            self.settle(txn, r).await? == 1
        };
        if inserted {
            return Ok(Created::New(inserted_execution(am)?));
        }
        self.existing_for_key(self.conn(), &new, key).await
    }

    /// [`Store::create_execution`] inside `txn` (a group commit). The
    /// search attributes are checked before anything is written: a refused
    /// start leaves no row in the batch's commit.
    pub(super) async fn create_in(&self, db: Db<'_>, new: &NewExecution) -> Result<Created, StoreError> {
        for (name, value) in &new.search_attributes {
            super::search::check_search_attribute(name, value)
                .map_err(|reason| StoreError::Refused { execution: new.id.clone(), reason })?;
        }
        let am = execution_row(new);
        if self.insert_execution(db, am.clone()).await? == 1 {
            for (name, value) in &new.search_attributes {
                self.put_search_attribute(db, &new.namespace, &new.id, name, value).await?;
            }
            return Ok(Created::New(inserted_execution(am)?));
        }
        self.existing_for_key(db, new, new.idempotency_key.clone()).await
    }

    async fn existing_for_key(
        &self,
        db: Db<'_>,
        new: &NewExecution,
        key: Option<String>,
    ) -> Result<Created, StoreError> {
        match key {
            Some(key) => {
                let query = exec::Entity::find()
                    .filter(exec::Column::Namespace.eq(&new.namespace))
                    .filter(exec::Column::WorkflowName.eq(&new.workflow_name))
                    .filter(exec::Column::IdempotencyKey.eq(&key))
                    .limit(1)
                    .build(self.dialect().db_backend());
                let existing: exec::Model = db
                    .one(query)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Database(DbErr::Custom(format!(
                            "idempotency key `{key}` conflicted but no run holds it"
                        )))
                    })?
                    .to()?;
                Ok(Created::Existing(Execution::try_from(existing)?))
            }
            None => Err(StoreError::Database(DbErr::Custom(format!(
                "execution {} was not inserted (ID already taken)",
                new.id
            )))),
        }
    }

    /// A run by ID, only if it belongs to `namespace`.
    pub async fn get_execution(&self, namespace: &str, id: &ExecutionId) -> Result<Option<Execution>, StoreError> {
        // By primary key alone, the namespace checked here: a query naming
        // the namespace too may get a cached plan through the wider
        // (namespace, status) index (see `fence_values`).
        exec::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await?
            .filter(|m| m.namespace == namespace)
            .map(Execution::try_from)
            .transpose()
    }

    /// Runs matching `filter`, newest first (by creation time, then ID).
    /// Every filter is served by an index: (namespace, created_at, id),
    /// (namespace, workflow, created_at, id), (namespace, status,
    /// created_at, id), (namespace, idempotency_key, created_at, id); with
    /// search attributes, the first one's index (namespace, name, value)
    /// drives the query (a `CROSS JOIN`, which SQLite keeps in that order)
    /// and only the matching runs are sorted.
    pub async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
        exec::Entity::find()
            .from_raw_sql(self.list_statement(filter))
            .all(&self.db)
            .await?
            .into_iter()
            .map(Execution::try_from)
            .collect()
    }

    /// The statement [`Store::list_executions`] runs (for plan tests).
    #[doc(hidden)]
    pub fn list_statement(&self, filter: &ExecutionFilter) -> sea_orm::Statement {
        use sea_orm::Value;
        let mut values: Vec<Value> = Vec::new();
        let mut from = String::from("workflow_executions e");
        let mut conds: Vec<String> = vec!["e.namespace = ?".into()];
        let mut search = filter.search.iter();
        if let Some((name, value)) = search.next() {
            from = "workflow_search_attributes s CROSS JOIN workflow_executions e".into();
            values.extend([filter.namespace.as_str().into(), name.as_str().into(), value.as_str().into()]);
            conds = vec![
                "s.namespace = ? AND s.name = ? AND s.value = ? AND e.id = s.execution_id AND e.namespace = ?".into(),
            ];
        }
        values.push(filter.namespace.as_str().into());
        for (name, value) in search {
            conds.push(
                "e.id IN (SELECT execution_id FROM workflow_search_attributes WHERE namespace = ? AND name = ? \
                 AND value = ?)"
                    .into(),
            );
            values.extend([filter.namespace.as_str().into(), name.as_str().into(), value.as_str().into()]);
        }
        if let Some(w) = &filter.workflow_name {
            conds.push("e.workflow_name = ?".into());
            values.push(w.as_str().into());
        }
        if let Some(st) = filter.status {
            conds.push("e.status = ?".into());
            values.push(st.as_str().into());
        }
        if let Some(t) = filter.created_before {
            conds.push("e.created_at < ?".into());
            values.push(t.into());
        }
        if let Some(t) = filter.created_since {
            conds.push("e.created_at >= ?".into());
            values.push(t.into());
        }
        if let Some(k) = &filter.idempotency_key {
            conds.push("e.idempotency_key = ?".into());
            values.push(k.as_str().into());
        }
        if let Some((created, id)) = &filter.after {
            conds.push("(e.created_at < ? OR (e.created_at = ? AND e.id < ?))".into());
            values.extend([(*created).into(), (*created).into(), id.as_str().into()]);
        }
        values.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
        let columns = if filter.without_payloads {
            // Every column, the payloads as empty values of their type.
            use sea_orm::{IdenStatic, Iterable};
            exec::Column::iter()
                .map(|c| match c {
                    exec::Column::InputData | exec::Column::OutputData => {
                        format!("substr(e.{0}, 1, 0) AS {0}", c.as_str())
                    }
                    _ => format!("e.{}", c.as_str()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "e.*".to_owned()
        };
        let sql = format!(
            "SELECT {columns} FROM {from} WHERE {} ORDER BY e.created_at DESC, e.id DESC LIMIT ?",
            conds.join(" AND ")
        );
        self.stmt(&sql, values)
    }

    /// The recorded steps of a run, in call order.
    pub async fn steps(&self, namespace: &str, id: &ExecutionId) -> Result<Vec<Step>, StoreError> {
        steps::Entity::find()
            .filter(steps::Column::Namespace.eq(namespace))
            .filter(steps::Column::ExecutionId.eq(id.as_str()))
            .order_by_asc(steps::Column::Position)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Step::try_from)
            .collect()
    }

    /// One recorded step of a run.
    pub async fn step(&self, namespace: &str, id: &ExecutionId, step: &StepId) -> Result<Option<Step>, StoreError> {
        steps::Entity::find()
            .filter(steps::Column::Namespace.eq(namespace))
            .filter(steps::Column::ExecutionId.eq(id.as_str()))
            .filter(steps::Column::StepId.eq(step.as_str()))
            .one(&self.db)
            .await?
            .map(Step::try_from)
            .transpose()
    }

    /// Cancels a run. A run that never ran (pending, never claimed) ends
    /// `cancelled` at once (its token moves on). Any other run is flagged
    /// and ended by a worker, which replays it to its first new durable
    /// call and runs its compensations there: a running run at its next
    /// checkpoint or heartbeat, a parked one (sleeping, or pending a
    /// workflow retry) made due now.
    pub async fn request_cancel(
        &self,
        namespace: &str,
        id: &ExecutionId,
        now: i64,
    ) -> Result<CancelOutcome, StoreError> {
        self.cancel_run(namespace, id, now, false).await
    }

    /// Ends a run that is not running at once, `cancelled`, without running
    /// its compensations (for a run no worker can run any more: its
    /// workflow was retired); a running run is flagged as by
    /// [`Store::request_cancel`].
    pub async fn terminate(&self, namespace: &str, id: &ExecutionId, now: i64) -> Result<CancelOutcome, StoreError> {
        self.cancel_run(namespace, id, now, true).await
    }

    /// The runs among `ids` (of `namespace`) that are running with a cancel
    /// accepted: how a worker on a database whose wake-ups name no run
    /// learns of cancels before its next lease renewal. Reads by primary
    /// key, on the pool (never through the writer).
    pub async fn cancels_requested(
        &self,
        namespace: &str,
        ids: &[ExecutionId],
    ) -> Result<Vec<ExecutionId>, StoreError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let mut values: Vec<sea_orm::Value> = chunk.iter().map(|id| id.as_str().into()).collect();
            values.push(namespace.into());
            values.push(true.into());
            let rows = Db::Pool(&self.db)
                .all(self.stmt(
                    &format!(
                        "SELECT id FROM workflow_executions WHERE id IN ({marks}) AND namespace = ? \
                         AND status = 'running' AND cancel_requested = ?"
                    ),
                    values,
                ))
                .await?;
            for row in rows {
                found.push(ExecutionId::from_string(row.try_get::<String>("", "id")?));
            }
        }
        Ok(found)
    }

    async fn cancel_run(
        &self,
        namespace: &str,
        id: &ExecutionId,
        now: i64,
        terminate: bool,
    ) -> Result<CancelOutcome, StoreError> {
        let _gate = self.gate().await;
        // A suspended run's code does not replay it: no worker could run its
        // compensations, so it ends at once either way.
        let ends_at_once = if terminate {
            "status IN ('pending', 'sleeping', 'suspended')"
        } else {
            "((status = 'pending' AND started_at IS NULL) OR status = 'suspended')"
        };
        for _ in 0..3 {
            // Ended here: its parent (if any) is told in the same transaction.
            let txn = self.begin().await?;
            if let Err(e) = self.lock_run_and_parent(txn.db(), id).await {
                txn.rollback().await?;
                return Err(e);
            }
            let r = txn
                .db()
                .exec(self.stmt(
                    &format!(
                        "UPDATE workflow_executions SET status = 'cancelled', error_message = ?, \
                         completed_at = ?, updated_at = ?, due_at = NULL, lease_owner = NULL, \
                         fencing_token = fencing_token + 1 \
                         WHERE id = ? AND namespace = ? AND {ends_at_once}"
                    ),
                    vec![
                        if terminate { "terminated" } else { "cancelled" }.into(),
                        now.into(),
                        now.into(),
                        id.as_str().into(),
                        namespace.into(),
                    ],
                ))
                .await;
            let r = match r {
                Ok(1) => {
                    let told = self.notify_parent(txn.db(), id, &Terminal::Cancelled("cancelled".into()), now).await;
                    self.settle(txn, told).await?;
                    return Ok(CancelOutcome::Cancelled);
                }
                Ok(n) => n,
                Err(e) => {
                    txn.rollback().await?;
                    return Err(e.into());
                }
            };
            debug_assert_eq!(r, 0);
            txn.rollback().await?;
            // A run that ran before is ended by a worker, which replays it
            // to its stopping point and runs its compensations: a running
            // one at its next checkpoint, a parked one (sleeping, or pending
            // a workflow retry) made due now.
            let r = self
                .conn()
                .exec(self.stmt(
                    "UPDATE workflow_executions SET cancel_requested = ?, updated_at = ?, \
                     due_at = CASE WHEN status = 'running' THEN due_at ELSE ? END \
                     WHERE id = ? AND namespace = ? \
                     AND (status IN ('running', 'sleeping') OR (status = 'pending' AND started_at IS NOT NULL))",
                    vec![true.into(), now.into(), now.into(), id.as_str().into(), namespace.into()],
                ))
                .await?;
            if r == 1 {
                return Ok(CancelOutcome::Requested);
            }
            match self.get_execution(namespace, id).await? {
                None => {
                    return Err(StoreError::ExecutionNotFound {
                        namespace: namespace.to_owned(),
                        execution: id.clone(),
                    });
                }
                Some(e) if e.status.is_terminal() => return Ok(CancelOutcome::AlreadyEnded(e.status)),
                // It changed state between the two updates; try again.
                Some(_) => continue,
            }
        }
        Err(StoreError::Database(DbErr::Custom(format!("execution {id} kept changing state while being cancelled"))))
    }
}

/// The row of a new, pending run.
pub(super) fn execution_row(new: &NewExecution) -> exec::ActiveModel {
    // A claim at creation leaves the row as a claim of the pending run
    // would (see `claim.rs`): token 0 + 1, one workflow attempt and one
    // attempt of the open step counted, the lease's expiry in `due_at`.
    let (status, lease_owner, token, attempts, started_at, due_at) = match &new.claim {
        Some(c) => (
            ExecutionStatus::Running,
            Some(c.worker_id.as_str().to_owned()),
            1,
            1,
            Some(new.now),
            new.now.saturating_add(c.lease_ttl_ms.max(0)),
        ),
        None => (ExecutionStatus::Pending, None, 0, 0, None, new.due_at),
    };
    exec::ActiveModel {
        id: Set(new.id.as_str().to_owned()),
        namespace: Set(new.namespace.clone()),
        workflow_name: Set(new.workflow_name.clone()),
        status: Set(status.as_str().to_owned()),
        input_data: Set(new.input.clone()),
        output_data: Set(None),
        error_message: Set(None),
        max_attempts: Set(to_i32(new.max_attempts.max(1))),
        attempts: Set(attempts),
        idempotency_key: Set(new.idempotency_key.clone()),
        trigger_type: Set(new.trigger_type.as_str().to_owned()),
        trigger_source: Set(new.trigger_source.clone()),
        created_at: Set(new.now),
        started_at: Set(started_at),
        updated_at: Set(new.now),
        completed_at: Set(None),
        due_at: Set(Some(due_at)),
        deadline_at: Set(new.deadline_at),
        lease_owner: Set(lease_owner),
        fencing_token: Set(token),
        cancel_requested: Set(false),
        open_position: Set(0),
        open_attempts: Set(attempts),
        signal_wait: Set(false),
        parent_id: Set(new.parent_id.as_ref().map(|p| p.as_str().to_owned())),
        cancel_with_parent: Set(new.cancel_with_parent),
        error_data: Set(None),
        workflow_version: Set(new.workflow_version.map(|v| i32::try_from(v).unwrap_or(i32::MAX))),
        suspended_code: Set(None),
    }
}

/// The run just inserted from `row` (every column was set: the row as stored).
fn inserted_execution(row: exec::ActiveModel) -> Result<Execution, StoreError> {
    let model = row.try_into_model().map_err(StoreError::Database)?;
    Execution::try_from(model)
}

impl Store {
    /// Inserts a run unless its idempotency key is taken; returns the rows inserted.
    pub(super) async fn insert_execution(&self, db: Db<'_>, row: exec::ActiveModel) -> Result<u64, StoreError> {
        let insert = exec::Entity::insert(row)
            .on_conflict_do_nothing_on([
                exec::Column::Namespace,
                exec::Column::WorkflowName,
                exec::Column::IdempotencyKey,
            ])
            .build(self.dialect().db_backend());
        Ok(db.exec(insert).await?)
    }
}
