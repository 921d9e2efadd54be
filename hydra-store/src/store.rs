//! The `Store`: every SQL statement the runtime needs, and nothing else.
//!
//! Policy (retries, backoff, what a lost lease means) is the runtime's; the
//! store only applies writes atomically and reports what happened. Every
//! write made on behalf of a claimed run is conditional on the caller's
//! fencing token and fails with [`StoreError::LeaseLost`] when the token is no
//! longer current. Times are milliseconds on the engine's clock, passed in
//! by the caller: the store never reads a clock.

use crate::connect::{self, Backend, StoreOptions, db_backend, immediate};
use crate::entity::{cron_jobs, leases, workflow_executions as exec, workflow_steps as steps};
use crate::error::StoreError;
use crate::ids::{ExecutionId, StepId, WorkerId};
use crate::model::{
    CancelOutcome, ClaimRequest, ClaimedExecution, Created, CronJob, CronUpsert, Execution, ExecutionFilter,
    ExecutionStatus, Lease, NewExecution, OpenStep, Renewed, Step, StepAttempt, StepOutcome, StepRecord, Terminal,
    WorkerLease, to_i32,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement, TransactionTrait, TryInsertResult, Value,
};
use std::collections::{HashMap, HashSet};

/// Appends the fencing condition to a run update: the write applies only if
/// the caller's token is current and the run is still running.
/// The fencing condition on `workflow_executions`; binds the run's ID, the
/// caller's token and the lease's namespace (see [`fence_values`]).
const FENCE: &str = " WHERE id = ? AND fencing_token = ? AND status = 'running' AND namespace || '' = ?";

/// What a checkpoint does to the run besides (optionally) recording a step.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transition {
    /// Keep running (the write only records a step).
    Continue,
    /// Park the run until `until` and give up the lease (durable sleep, or a
    /// step retry backoff). The attempt continues when it is claimed again.
    Sleep {
        /// When it may be claimed again (ms).
        until: i64,
    },
    /// End this workflow attempt with `error` and start a new one at `at`.
    /// Steps that failed in this attempt become re-runnable (attempts reset);
    /// completed steps stay recorded.
    Retry {
        /// When the next attempt may be claimed (ms).
        at: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// End the run.
    Finish(Terminal),
    /// Give up the lease so that any worker can resume the run at once
    /// (graceful shutdown). Not a new attempt.
    Release,
}

/// One atomic write on behalf of a claimed run: an optional step record and
/// a transition of the run, both applied under the fencing check, together
/// or not at all.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The step result to record, if any.
    pub step: Option<StepRecord>,
    /// What happens to the run.
    pub transition: Transition,
    /// The run's open step after this write, if it changes (see
    /// [`OpenStep`]).
    pub open: Option<OpenStep>,
}

impl Checkpoint {
    /// Record a step and keep running.
    pub fn step(record: StepRecord) -> Self {
        Checkpoint { step: Some(record), transition: Transition::Continue, open: None }
    }

    /// Change the run without recording a step.
    pub fn transition(transition: Transition) -> Self {
        Checkpoint { step: None, transition, open: None }
    }

    /// Record a step and change the run in the same commit.
    pub fn step_and(record: StepRecord, transition: Transition) -> Self {
        Checkpoint { step: Some(record), transition, open: None }
    }

    /// Also sets the run's open step, in the same fenced statement.
    pub fn open(mut self, open: OpenStep) -> Self {
        self.open = Some(open);
        self
    }
}

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
}

impl BatchOp {
    /// The lease the write presents (a claim presents none).
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            BatchOp::Attempt(lease, _) | BatchOp::Checkpoint(lease, _) => Some(lease),
            BatchOp::Claim(_) => None,
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
}

/// The persistence layer of one database, shared by engines and workers.
/// Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// Write transactions committed through this store (for benchmarks).
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// SQLite: one writer at a time in this process. SQLite has one write
    /// lock per database; a writer that finds it taken sleeps in the busy
    /// handler (1 ms and more each time), so writers of this process queue
    /// here instead. Other processes still meet the busy timeout.
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl Store {
    /// Opens `url` with default [`StoreOptions`] and applies migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(StoreOptions::new(url)).await
    }

    /// Opens a database and applies migrations. Fails with a clear
    /// [`StoreError`] within the connect timeout on a bad URL, an unknown
    /// scheme or an unreachable server.
    pub async fn connect_with(options: StoreOptions) -> Result<Store, StoreError> {
        let (db, backend) = connect::open(&options).await?;
        let write_gate = (backend == Backend::Sqlite).then(Default::default);
        Ok(Store { db, backend, commits: Default::default(), write_gate })
    }

    /// Waits for this process's turn to write (SQLite; see `write_gate`).
    async fn gate(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(g) => Some(std::sync::Arc::clone(g).lock_owned().await),
            None => None,
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many write transactions this store (and its clones) committed:
    /// creates, claims that claimed something, renewals, checkpoints, group
    /// commits. The benchmark reports it per step.
    pub fn write_commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self) {
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The underlying sea-orm connection pool.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(StoreError::from)
    }

    /// Turns `?` placeholders into `$n` on PostgreSQL. Every statement in
    /// this file is written once, with `?`, and never contains a literal `?`.
    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        let text: String = match self.backend {
            Backend::Sqlite => sql.to_owned(),
            Backend::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        };
        Statement::from_sql_and_values(db_backend(self.backend), text, values)
    }

    // ----- creating and reading runs -------------------------------------

    /// Inserts a run. With an idempotency key already used in the same
    /// (namespace, workflow), inserts nothing and returns the existing run.
    pub async fn create_execution(&self, new: NewExecution) -> Result<Created, StoreError> {
        let _gate = self.gate().await;
        let key = new.idempotency_key.clone();
        let am = execution_row(&new);
        let rows = insert_execution(&self.db, am).await?;
        self.count();
        if rows == 1 {
            let execution = self.get_execution(&new.namespace, &new.id).await?.ok_or_else(|| {
                StoreError::ExecutionNotFound { namespace: new.namespace.clone(), execution: new.id.clone() }
            })?;
            return Ok(Created::New(execution));
        }
        self.existing_for_key(&new, key).await
    }

    async fn existing_for_key(&self, new: &NewExecution, key: Option<String>) -> Result<Created, StoreError> {
        match key {
            Some(key) => {
                let existing = exec::Entity::find()
                    .filter(exec::Column::Namespace.eq(&new.namespace))
                    .filter(exec::Column::WorkflowName.eq(&new.workflow_name))
                    .filter(exec::Column::IdempotencyKey.eq(&key))
                    .one(&self.db)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Database(DbErr::Custom(format!(
                            "idempotency key `{key}` conflicted but no run holds it"
                        )))
                    })?;
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

    /// Runs matching `filter`, newest first.
    pub async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
        let mut q = exec::Entity::find().filter(exec::Column::Namespace.eq(&filter.namespace));
        if let Some(w) = &filter.workflow_name {
            q = q.filter(exec::Column::WorkflowName.eq(w));
        }
        if let Some(s) = filter.status {
            q = q.filter(exec::Column::Status.eq(s.as_str()));
        }
        if let Some(t) = filter.created_before {
            q = q.filter(exec::Column::CreatedAt.lt(t));
        }
        q.order_by_desc(exec::Column::CreatedAt)
            .order_by_desc(exec::Column::Id)
            .limit(filter.limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Execution::try_from)
            .collect()
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

    // ----- claiming and leases --------------------------------------------

    /// Claims up to `limit` due runs of the given workflows in one atomic
    /// statement: pending and sleeping runs whose `due_at` has passed, and
    /// running runs whose lease expired. Each claimed run gets a new fencing
    /// token (old token + 1), the worker as lease owner and a lease until
    /// `now + lease_ttl_ms`. A claim of a pending run, or a takeover of an
    /// expired one, begins a new workflow attempt (`attempts + 1`); a claim
    /// of a sleeping run continues the current one.
    ///
    /// On PostgreSQL the candidate rows are locked with `FOR UPDATE SKIP
    /// LOCKED`, so concurrent claimers take disjoint sets; on SQLite the
    /// single statement holds the write lock. The candidates are read from
    /// the partial index `(namespace, due_at) WHERE due_at IS NOT NULL`,
    /// which holds no finished run.
    ///
    /// Every claim also counts one attempt of the run's open step (see
    /// [`OpenStep`]): the attempt the new holder is about to begin, or the
    /// one a dead holder left unfinished.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedExecution>, StoreError> {
        let _gate = self.gate().await;
        let claimed = self.claim_on(&self.db, req).await?;
        if !claimed.is_empty() {
            self.count();
        }
        Ok(claimed)
    }

    /// [`Store::claim`] on `conn` (the pool, or a group commit's
    /// transaction); the caller counts the commit.
    async fn claim_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        req: &ClaimRequest,
    ) -> Result<Vec<ClaimedExecution>, StoreError> {
        if req.workflow_names.is_empty() || req.limit == 0 {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let placeholders = vec!["?"; req.workflow_names.len()].join(", ");
        let sql = format!(
            "UPDATE workflow_executions SET status = 'running', lease_owner = ?, \
             fencing_token = fencing_token + 1, due_at = ?, updated_at = ?, \
             started_at = COALESCE(started_at, ?), \
             attempts = CASE WHEN status = 'sleeping' THEN attempts ELSE attempts + 1 END, \
             open_attempts = open_attempts + 1 \
             WHERE id IN (SELECT id FROM workflow_executions \
               WHERE namespace = ? AND due_at IS NOT NULL AND due_at <= ? AND workflow_name IN ({placeholders}) \
               ORDER BY due_at LIMIT ?{lock}) \
             RETURNING *"
        );
        let mut values: Vec<Value> = vec![
            req.worker_id.as_str().into(),
            (req.now + req.lease_ttl_ms).into(),
            req.now.into(),
            req.now.into(),
            req.namespace.as_str().into(),
            req.now.into(),
        ];
        values.extend(req.workflow_names.iter().map(|n| Value::from(n.as_str())));
        values.push(i64::from(req.limit).into());
        let stmt = self.stmt(&sql, values);
        let rows = exec::Entity::find().from_raw_sql(stmt).all(conn).await?;
        let mut claimed = rows
            .into_iter()
            .map(|m| {
                let execution = Execution::try_from(m)?;
                let lease = Lease {
                    namespace: execution.namespace.clone(),
                    execution_id: execution.id.clone(),
                    worker_id: req.worker_id.clone(),
                    token: execution.fencing_token,
                };
                Ok(ClaimedExecution { execution, lease })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING order is unspecified; hand them out oldest-due first.
        claimed.sort_by_key(|c| (c.execution.started_at, c.execution.created_at));
        Ok(claimed)
    }

    /// Extends the lease of one run to `now + ttl_ms`. Fails with
    /// [`StoreError::LeaseLost`] when the token is no longer current, the run
    /// is no longer running, or the lease already expired.
    pub async fn renew_lease(&self, lease: &Lease, now: i64, ttl_ms: i64) -> Result<Renewed, StoreError> {
        self.renew_leases(std::slice::from_ref(lease), now, ttl_ms)
            .await?
            .pop()
            .unwrap_or_else(|| Err(lease_lost(lease)))
    }

    /// Renews many leases in one transaction; one result per lease, in order.
    pub async fn renew_leases(
        &self,
        leases: &[Lease],
        now: i64,
        ttl_ms: i64,
    ) -> Result<Vec<Result<Renewed, StoreError>>, StoreError> {
        let _gate = self.gate().await;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_with_options(immediate()).await?;
        let mut out: Vec<Option<Result<Renewed, StoreError>>> = leases.iter().map(|_| None).collect();
        for i in lock_order(leases, |l| l.execution_id.as_str()) {
            let lease = &leases[i];
            let row = txn
                .query_one_raw(self.stmt(
                    "UPDATE workflow_executions SET due_at = ?, updated_at = ? \
                     WHERE id = ? AND fencing_token = ? AND status = 'running' AND namespace || '' = ? AND due_at > ? \
                     RETURNING cancel_requested",
                    vec![
                        (now + ttl_ms).into(),
                        now.into(),
                        lease.execution_id.as_str().into(),
                        lease.token.0.into(),
                        lease.namespace.as_str().into(),
                        now.into(),
                    ],
                ))
                .await?;
            out[i] = Some(match row {
                Some(r) => Ok(Renewed {
                    expires_at: now + ttl_ms,
                    cancel_requested: r.try_get::<bool>("", "cancel_requested")?,
                }),
                None => Err(lease_lost(lease)),
            });
        }
        txn.commit().await?;
        self.count();
        Ok(out.into_iter().flatten().collect())
    }

    /// Ends the lease of every running run in `namespace` whose lease expired
    /// before `now`: the run goes back to pending (its next claim is a new
    /// attempt, so a crash counts) and its fencing token moves on, so the old
    /// holder's writes are refused even before anyone claims it. Returns how
    /// many runs were reclaimed.
    pub async fn reclaim_expired(&self, namespace: &str, now: i64) -> Result<u64, StoreError> {
        let _gate = self.gate().await;
        let r = self
            .db
            .execute_raw(self.stmt(
                "UPDATE workflow_executions SET status = 'pending', lease_owner = NULL, \
                 fencing_token = fencing_token + 1, due_at = ?, updated_at = ? \
                 WHERE namespace = ? AND status = 'running' AND due_at IS NOT NULL AND due_at <= ?",
                vec![now.into(), now.into(), namespace.into(), now.into()],
            ))
            .await?;
        Ok(r.rows_affected())
    }

    // ----- fenced writes ---------------------------------------------------

    /// Records the start of a step attempt before its body runs, so that a
    /// crash during the body counts as an attempt. Returns the attempt
    /// number (1 for the first). Fails with [`StoreError::StepAlreadyRecorded`]
    /// if the step already has a result, and with
    /// [`StoreError::PositionTaken`] if another step holds its position.
    pub async fn record_step_attempt(&self, lease: &Lease, attempt: &StepAttempt, now: i64) -> Result<u32, StoreError> {
        let _gate = self.gate().await;
        let txn = self.db.begin_with_options(immediate()).await?;
        let r = self.attempt_in(&txn, lease, attempt, now).await;
        self.settle(txn, r).await
    }

    /// The fenced step-attempt upsert: one statement that writes only if
    /// the caller's token is current (see [`Store::fenced_insert`]).
    async fn attempt_in(
        &self,
        txn: &DatabaseTransaction,
        lease: &Lease,
        attempt: &StepAttempt,
        now: i64,
    ) -> Result<u32, StoreError> {
        let sql = self.fenced_insert(
            "",
            "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, kind, status, \
               attempts, max_attempts, started_at, fencing_token)",
            "?, ?, ?, ?, ?, ?, 'running', 1, ?, ?, ?",
            "ON CONFLICT (execution_id, step_id) DO UPDATE SET attempts = workflow_steps.attempts + 1, \
               fencing_token = excluded.fencing_token, error_message = NULL \
             WHERE workflow_steps.status = 'running' AND workflow_steps.position = excluded.position \
             RETURNING attempts, position",
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
        let row = txn
            .query_one_raw(self.stmt(&sql, values))
            .await
            .map_err(|e| position_conflict(e, lease, attempt.position))?;
        let Some(row) = row else {
            return Err(self.why_refused(txn, lease, &attempt.step_id).await);
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

    /// An `INSERT … SELECT` that inserts only while the lease's token is
    /// current. PostgreSQL: a data-modifying CTE updates (and so locks) the
    /// run's row first, so no claim can slip in before the commit; with
    /// `open`, that update also moves the run's open step. SQLite: an
    /// `EXISTS` check, safe because every write transaction here holds the
    /// database's write lock (`BEGIN IMMEDIATE`); there `open` is written
    /// by [`Store::guard`] before. Values: see [`Store::fenced_values`].
    fn fenced_insert(&self, open: &str, insert: &str, select: &str, tail: &str) -> String {
        match self.backend {
            Backend::Postgres => format!(
                "WITH fence AS (UPDATE workflow_executions SET updated_at = ?{open}{FENCE} RETURNING id) \
                 {insert} SELECT {select} FROM fence {tail}"
            ),
            Backend::Sqlite => format!(
                "{insert} SELECT {select} WHERE EXISTS (SELECT 1 FROM workflow_executions \
                 WHERE id = ? AND fencing_token = ? AND status = 'running' AND namespace || '' = ?) {tail}"
            ),
        }
    }

    /// The values of a [`Store::fenced_insert`]: the fence first on
    /// PostgreSQL (the CTE comes first), last on SQLite.
    fn fenced_values(&self, lease: &Lease, now: i64, open: Vec<Value>, row: Vec<Value>) -> Vec<Value> {
        let fence = fence_values(lease);
        match self.backend {
            Backend::Postgres => {
                let mut v: Vec<Value> = vec![now.into()];
                v.extend(open);
                v.extend(fence);
                v.extend(row);
                v
            }
            Backend::Sqlite => {
                let mut v = row;
                v.extend(fence);
                v
            }
        }
    }

    /// Why a fenced write wrote nothing: the lease is gone, or the step is
    /// already recorded.
    async fn why_refused(&self, txn: &DatabaseTransaction, lease: &Lease, step: &StepId) -> StoreError {
        let current = exec::Entity::find_by_id(lease.execution_id.as_str()).one(txn).await;
        match current {
            Ok(Some(e))
                if e.fencing_token == lease.token.0 && e.status == "running" && e.namespace == lease.namespace =>
            {
                StoreError::StepAlreadyRecorded { execution: lease.execution_id.clone(), step: step.clone() }
            }
            Ok(_) => lease_lost(lease),
            Err(e) => StoreError::Database(e),
        }
    }

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
        let together = {
            let _gate = self.gate().await;
            self.batch_in_one(ops, now).await?
        };
        match together {
            Some(results) => Ok(results),
            None => self.apply_one_by_one(ops, now).await,
        }
    }

    /// [`Store::apply_batch`] in one transaction; `None` after a rollback
    /// when the writes must be applied one by one.
    async fn batch_in_one(
        &self,
        ops: &[BatchOp],
        now: i64,
    ) -> Result<Option<Vec<Result<BatchValue, StoreError>>>, StoreError> {
        let txn = self.db.begin_with_options(immediate()).await?;
        let mut out: Vec<Option<Result<BatchValue, StoreError>>> = ops.iter().map(|_| None).collect();
        if self.backend == Backend::Sqlite {
            let (rows, items): (Vec<usize>, Vec<SqliteStep<'_>>) = sqlite_step_rows(ops).into_iter().unzip();
            if !items.is_empty() {
                match self.sqlite_steps_in(&txn, &items, now).await {
                    Ok(results) => {
                        for (i, r) in rows.into_iter().zip(results) {
                            out[i] = Some(r);
                        }
                    }
                    Err(StoreError::Database(e)) if e.sql_err().is_none() && crate::error::is_transient(&e) => {
                        return Err(StoreError::Database(e));
                    }
                    Err(_) => {
                        txn.rollback().await?;
                        return Ok(None);
                    }
                }
            }
        }
        // Claims last: they skip locked rows and wait for none.
        for i in lock_order(ops, |op| op.lease().map(|l| l.execution_id.as_str()).ok_or(())) {
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
            };
            match r {
                Err(StoreError::Database(e)) => {
                    if e.sql_err().is_none() && crate::error::is_transient(&e) {
                        return Err(StoreError::Database(e));
                    }
                    // An SQL error (PostgreSQL aborts the whole transaction on
                    // one): isolate the writes from each other.
                    txn.rollback().await?;
                    return Ok(None);
                }
                Err(e @ StoreError::PositionTaken { .. }) if self.backend == Backend::Postgres => {
                    let _ = e;
                    txn.rollback().await?;
                    return Ok(None);
                }
                other => out[i] = Some(other),
            }
        }
        txn.commit().await?;
        self.count();
        Ok(Some(out.into_iter().flatten().collect()))
    }

    /// SQLite: step results that move their runs' open steps, of one run
    /// each, in two statements however many there are: one multi-row fenced
    /// insert and one multi-row update of the open steps (on SQLite each
    /// statement is a round trip to the connection's thread). A row the
    /// insert refused (lost lease, recorded step) changes nothing; the
    /// update touches only runs whose step was written. Results in the
    /// order of `items`.
    async fn sqlite_steps_in(
        &self,
        txn: &DatabaseTransaction,
        items: &[SqliteStep<'_>],
        now: i64,
    ) -> Result<Vec<Result<BatchValue, StoreError>>, StoreError> {
        let mut values = Vec::with_capacity(items.len() * 15);
        for (lease, rec, _) in items {
            values.extend(step_row(lease, rec, now));
        }
        let sql = format!(
            "{STEP_INSERT} SELECT * FROM (VALUES {}) AS v WHERE EXISTS (SELECT 1 FROM workflow_executions e \
             WHERE e.id = v.column1 AND e.fencing_token = v.column15 AND e.status = 'running' \
             AND e.namespace || '' = v.column2) {STEP_TAIL_SQLITE} RETURNING execution_id, step_id",
            vec![format!("({STEP_ROW})"); items.len()].join(", ")
        );
        let returned: HashSet<(String, String)> = txn
            .query_all_raw(self.stmt(&sql, values))
            .await
            .map_err(|e| match items {
                // One step: a unique violation is its position taken. Several:
                // the group commit retries them one by one to find out.
                [(lease, rec, _)] => position_conflict(e, lease, rec.position),
                _ => StoreError::Database(e),
            })?
            .iter()
            .map(|r| Ok((r.try_get::<String>("", "execution_id")?, r.try_get::<String>("", "step_id")?)))
            .collect::<Result<_, DbErr>>()?;
        let written: Vec<bool> = items
            .iter()
            .map(|(l, r, _)| returned.contains(&(l.execution_id.as_str().to_owned(), r.step_id.as_str().to_owned())))
            .collect();
        let done: Vec<&SqliteStep<'_>> = items.iter().zip(&written).filter(|(_, w)| **w).map(|(it, _)| it).collect();
        if !done.is_empty() {
            let mut values: Vec<Value> = vec![now.into()];
            for (lease, rec, open) in &done {
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
                vec!["(?, ?, ?, ?, ?)"; done.len()].join(", ")
            );
            let r = txn.execute_raw(self.stmt(&sql, values)).await?;
            if r.rows_affected() != done.len() as u64 {
                return Err(StoreError::Database(DbErr::Custom(format!(
                    "moved {} open steps for {} written steps",
                    r.rows_affected(),
                    done.len()
                ))));
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for ((lease, rec, _), written) in items.iter().zip(written) {
            out.push(if written {
                Ok(BatchValue::Checkpoint)
            } else {
                Err(self.why_refused(txn, lease, &rec.step_id).await)
            });
        }
        Ok(out)
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
        }
    }

    /// Records a step's result and keeps running. See [`Store::checkpoint`].
    pub async fn record_step_result(&self, lease: &Lease, record: StepRecord, now: i64) -> Result<(), StoreError> {
        self.checkpoint(lease, Checkpoint::step(record), now).await
    }

    /// Parks the run until `until`, releasing the lease.
    pub async fn schedule_wakeup(&self, lease: &Lease, until: i64, now: i64) -> Result<(), StoreError> {
        self.checkpoint(lease, Checkpoint::transition(Transition::Sleep { until }), now).await
    }

    /// Ends the run.
    pub async fn finish(&self, lease: &Lease, terminal: Terminal, now: i64) -> Result<(), StoreError> {
        self.checkpoint(lease, Checkpoint::transition(Transition::Finish(terminal)), now).await
    }

    /// Gives the lease back so any worker may resume the run at once.
    pub async fn release(&self, lease: &Lease, now: i64) -> Result<(), StoreError> {
        self.checkpoint(lease, Checkpoint::transition(Transition::Release), now).await
    }

    /// Applies one checkpoint atomically under the fencing check: the run's
    /// transition (which is itself conditional on the token) and the step
    /// record commit together or not at all.
    pub async fn checkpoint(&self, lease: &Lease, checkpoint: Checkpoint, now: i64) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        let txn = self.db.begin_with_options(immediate()).await?;
        let r = self.apply(&txn, lease, &checkpoint, now).await;
        self.settle(txn, r).await
    }

    /// Commits `txn` (and counts the commit) if `result` is a success,
    /// rolls it back otherwise.
    async fn settle<T>(&self, txn: DatabaseTransaction, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(v) => {
                txn.commit().await?;
                self.count();
                Ok(v)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    /// Begins the transaction of a transactional step (`BEGIN IMMEDIATE` on
    /// SQLite: it holds the database's write lock until it ends, so keep
    /// transactional bodies short).
    pub async fn begin_step_transaction(&self) -> Result<DatabaseTransaction, StoreError> {
        Ok(self.db.begin_with_options(immediate()).await?)
    }

    /// Records a transactional step's result inside the step's own
    /// transaction, under the fencing check, and commits: the step's writes
    /// and its checkpoint become durable together or not at all. On any
    /// error (including [`StoreError::LeaseLost`]) the transaction is rolled
    /// back.
    pub async fn commit_step_transaction(
        &self,
        txn: DatabaseTransaction,
        lease: &Lease,
        record: StepRecord,
        open: Option<OpenStep>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut cp = Checkpoint::step(record);
        cp.open = open;
        let r = self.apply(&txn, lease, &cp, now).await;
        self.settle(txn, r).await
    }

    /// The fencing check: touches the run only if the caller's token is
    /// current and the run is running. The row stays locked until the
    /// transaction ends, so no claim can slip in between check and commit.
    /// With `open`, also sets the run's open step (see [`open_set`]).
    async fn guard(
        &self,
        txn: &DatabaseTransaction,
        lease: &Lease,
        open: Option<OpenStep>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut values: Vec<Value> = vec![now.into()];
        let frag = match open {
            Some(o) => {
                let (frag, v) = open_set(o, None);
                values.extend(v);
                frag
            }
            None => "",
        };
        values.extend(fence_values(lease));
        let sql = format!("UPDATE workflow_executions SET updated_at = ?{frag}{FENCE}");
        let r = txn.execute_raw(self.stmt(&sql, values)).await?;
        if r.rows_affected() == 1 { Ok(()) } else { Err(lease_lost(lease)) }
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        lease: &Lease,
        cp: &Checkpoint,
        now: i64,
    ) -> Result<(), StoreError> {
        let (sql, mut values): (&'static str, Vec<Value>) = match &cp.transition {
            Transition::Continue => match &cp.step {
                // The step write carries the fence itself: one statement on
                // PostgreSQL; on SQLite the same two statements as a group
                // commit of several runs' steps.
                Some(record) => {
                    if let (Some(open), Backend::Sqlite) = (cp.open, self.backend) {
                        let mut r = self.sqlite_steps_in(txn, &[(lease, record, open)], now).await?;
                        return r.pop().map_or(Ok(()), |r| r.map(|_| ()));
                    }
                    return self.write_step(txn, lease, record, cp.open, now, true).await;
                }
                None => {
                    self.guard(txn, lease, cp.open, now).await?;
                    ("", Vec::new())
                }
            },
            Transition::Sleep { until } => (
                "UPDATE workflow_executions SET status = 'sleeping', due_at = ?, lease_owner = NULL, updated_at = ?",
                vec![(*until).into(), now.into()],
            ),
            Transition::Release => (
                "UPDATE workflow_executions SET status = 'sleeping', due_at = ?, lease_owner = NULL, updated_at = ?",
                vec![now.into(), now.into()],
            ),
            Transition::Retry { at, error } => (
                "UPDATE workflow_executions SET status = 'pending', due_at = ?, error_message = ?, \
                 lease_owner = NULL, updated_at = ?",
                vec![(*at).into(), error.as_str().into(), now.into()],
            ),
            Transition::Finish(t) => {
                let (output, error): (Option<Vec<u8>>, Option<String>) = match t {
                    Terminal::Completed(out) => (Some(out.clone()), None),
                    Terminal::Failed(e) | Terminal::Cancelled(e) | Terminal::TimedOut(e) => (None, Some(e.clone())),
                };
                (
                    "UPDATE workflow_executions SET status = ?, output_data = ?, error_message = ?, \
                     completed_at = ?, due_at = NULL, lease_owner = NULL, updated_at = ?",
                    vec![t.status().as_str().into(), output.into(), error.into(), now.into(), now.into()],
                )
            }
        };
        if !sql.is_empty() {
            let open = match cp.open {
                Some(o) => {
                    let (frag, v) = open_set(o, cp.step.as_ref().map(|r| r.position));
                    values.extend(v);
                    frag
                }
                None => "",
            };
            values.extend(fence_values(lease));
            let r = txn.execute_raw(self.stmt(&format!("{sql}{open}{FENCE}"), values)).await?;
            if r.rows_affected() != 1 {
                return Err(lease_lost(lease));
            }
        }
        if let Transition::Retry { .. } = cp.transition {
            // A new workflow attempt re-runs the steps that failed in the old
            // one, with fresh step attempts; completed steps stay recorded.
            txn.execute_raw(self.stmt(
                "UPDATE workflow_steps SET status = 'running', attempts = 0, completed_at = NULL, wake_at = NULL \
                 WHERE execution_id = ? AND namespace = ? AND status = 'failed'",
                vec![lease.execution_id.as_str().into(), lease.namespace.as_str().into()],
            ))
            .await?;
        }
        if let Some(record) = &cp.step {
            self.write_step(txn, lease, record, None, now, false).await?;
        }
        Ok(())
    }

    /// Records a step outcome. With `fenced`, the statement itself checks
    /// the lease (the caller ran no guard) and moves the open step to
    /// `open`; otherwise the caller already holds the run's row under the
    /// fencing check. The row keeps the higher of its counted attempts and
    /// the record's.
    async fn write_step(
        &self,
        txn: &DatabaseTransaction,
        lease: &Lease,
        rec: &StepRecord,
        open: Option<OpenStep>,
        now: i64,
        fenced: bool,
    ) -> Result<(), StoreError> {
        let tail = match self.backend {
            Backend::Postgres => STEP_TAIL_PG,
            Backend::Sqlite => STEP_TAIL_SQLITE,
        };
        const INSERT: &str = STEP_INSERT;
        const ROW: &str = STEP_ROW;
        let row = step_row(lease, rec, now);
        let stmt = if fenced {
            let (frag, open) = open.map_or(("", Vec::new()), |o| open_set(o, Some(rec.position)));
            self.stmt(&self.fenced_insert(frag, INSERT, ROW, tail), self.fenced_values(lease, now, open, row))
        } else {
            self.stmt(&format!("{INSERT} VALUES ({ROW}) {tail}"), row)
        };
        let r = txn.execute_raw(stmt).await.map_err(|e| position_conflict(e, lease, rec.position))?;
        if r.rows_affected() == 1 {
            Ok(())
        } else if fenced {
            Err(self.why_refused(txn, lease, &rec.step_id).await)
        } else {
            Err(StoreError::StepAlreadyRecorded { execution: lease.execution_id.clone(), step: rec.step_id.clone() })
        }
    }

    // ----- cancellation ------------------------------------------------------

    /// Cancels a run. A run that is not running ends `cancelled` at once (its
    /// token moves on); a running run is flagged and its worker stops it at
    /// its next checkpoint or heartbeat.
    pub async fn request_cancel(
        &self,
        namespace: &str,
        id: &ExecutionId,
        now: i64,
    ) -> Result<CancelOutcome, StoreError> {
        let _gate = self.gate().await;
        for _ in 0..3 {
            let r = self
                .db
                .execute_raw(self.stmt(
                    "UPDATE workflow_executions SET status = 'cancelled', error_message = 'cancelled', \
                     completed_at = ?, updated_at = ?, due_at = NULL, lease_owner = NULL, \
                     fencing_token = fencing_token + 1 \
                     WHERE id = ? AND namespace = ? AND status IN ('pending', 'sleeping')",
                    vec![now.into(), now.into(), id.as_str().into(), namespace.into()],
                ))
                .await?;
            if r.rows_affected() == 1 {
                return Ok(CancelOutcome::Cancelled);
            }
            let r = self
                .db
                .execute_raw(self.stmt(
                    "UPDATE workflow_executions SET cancel_requested = ?, updated_at = ? \
                     WHERE id = ? AND namespace = ? AND status = 'running'",
                    vec![true.into(), now.into(), id.as_str().into(), namespace.into()],
                ))
                .await?;
            if r.rows_affected() == 1 {
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

    // ----- cron schedules --------------------------------------------------

    /// Creates a schedule, or updates an existing one of the same name. An
    /// update keeps the schedule's next tick when its expression and time zone
    /// are unchanged (a restart re-registering it does not reset it), and
    /// keeps it paused if it was paused.
    pub async fn upsert_cron(&self, c: &CronUpsert) -> Result<CronJob, StoreError> {
        let _gate = self.gate().await;
        let row = self
            .db
            .query_one_raw(self.stmt(
                "INSERT INTO cron_jobs (id, namespace, name, cron_spec, timezone, workflow_name, input_data, \
                   missed_policy, enabled, created_at, updated_at, next_run_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (namespace, name) DO UPDATE SET \
                   next_run_at = CASE WHEN cron_jobs.cron_spec = excluded.cron_spec \
                     AND cron_jobs.timezone = excluded.timezone THEN cron_jobs.next_run_at \
                     ELSE excluded.next_run_at END, \
                   cron_spec = excluded.cron_spec, timezone = excluded.timezone, \
                   workflow_name = excluded.workflow_name, input_data = excluded.input_data, \
                   missed_policy = excluded.missed_policy, updated_at = excluded.updated_at \
                 RETURNING id",
                vec![
                    uuid::Uuid::new_v4().to_string().into(),
                    c.namespace.as_str().into(),
                    c.name.as_str().into(),
                    c.spec.as_str().into(),
                    c.timezone.as_str().into(),
                    c.workflow_name.as_str().into(),
                    c.input.clone().into(),
                    c.missed_policy.as_str().into(),
                    true.into(),
                    c.now.into(),
                    c.now.into(),
                    c.next_run_at.into(),
                ],
            ))
            .await?;
        if row.is_none() {
            return Err(StoreError::Database(DbErr::Custom(format!("cron schedule `{}` was not stored", c.name))));
        }
        self.cron(&c.namespace, &c.name)
            .await?
            .ok_or_else(|| StoreError::Database(DbErr::Custom(format!("cron schedule `{}` vanished", c.name))))
    }

    /// One schedule by name.
    pub async fn cron(&self, namespace: &str, name: &str) -> Result<Option<CronJob>, StoreError> {
        Ok(cron_jobs::Entity::find()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .filter(cron_jobs::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .map(CronJob::from))
    }

    /// Every schedule of a namespace, by name.
    pub async fn list_crons(&self, namespace: &str) -> Result<Vec<CronJob>, StoreError> {
        Ok(cron_jobs::Entity::find()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .order_by_asc(cron_jobs::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CronJob::from)
            .collect())
    }

    /// Enabled schedules whose next tick is at or before `now`.
    pub async fn due_crons(&self, namespace: &str, now: i64, limit: u64) -> Result<Vec<CronJob>, StoreError> {
        Ok(cron_jobs::Entity::find()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .filter(cron_jobs::Column::Enabled.eq(true))
            .filter(cron_jobs::Column::NextRunAt.lte(now))
            .order_by_asc(cron_jobs::Column::NextRunAt)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CronJob::from)
            .collect())
    }

    /// Pauses or resumes a schedule; `next_run_at` is the next tick to use
    /// when resuming. Returns false if there is no such schedule.
    pub async fn set_cron_enabled(
        &self,
        namespace: &str,
        name: &str,
        enabled: bool,
        next_run_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let r = self
            .db
            .execute_raw(self.stmt(
                "UPDATE cron_jobs SET enabled = ?, next_run_at = ?, updated_at = ? WHERE namespace = ? AND name = ?",
                vec![enabled.into(), next_run_at.into(), now.into(), namespace.into(), name.into()],
            ))
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes a schedule. Returns false if there was none.
    pub async fn delete_cron(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let r = cron_jobs::Entity::delete_many()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .filter(cron_jobs::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Fires one tick of a schedule, atomically: moves `next_run_at` from
    /// `expected_next` to `new_next` (only if no one else did) and, in the
    /// same transaction, creates `run` (whose idempotency key names the
    /// schedule and tick). Returns true if this caller fired the tick. A
    /// crash before the commit leaves the tick unfired; two callers cannot
    /// both fire it.
    pub async fn fire_cron_tick(
        &self,
        job: &CronJob,
        expected_next: i64,
        new_next: i64,
        fired_tick: Option<i64>,
        run: Option<&NewExecution>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let txn = self.db.begin_with_options(immediate()).await?;
        let r = txn
            .execute_raw(self.stmt(
                "UPDATE cron_jobs SET next_run_at = ?, last_tick_at = COALESCE(?, last_tick_at), updated_at = ? \
                 WHERE id = ? AND namespace = ? AND next_run_at = ? AND enabled = ?",
                vec![
                    new_next.into(),
                    fired_tick.into(),
                    now.into(),
                    job.id.as_str().into(),
                    job.namespace.as_str().into(),
                    expected_next.into(),
                    true.into(),
                ],
            ))
            .await?;
        if r.rows_affected() != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Some(run) = run {
            insert_execution(&txn, execution_row(run)).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    // ----- worker liveness ---------------------------------------------------

    /// Registers or renews a worker's liveness row until `now + ttl_ms`.
    pub async fn heartbeat_worker(
        &self,
        namespace: &str,
        worker: &WorkerId,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        let am = leases::ActiveModel {
            resource_id: Set(worker.as_str().to_owned()),
            kind: Set("worker".to_owned()),
            namespace: Set(namespace.to_owned()),
            worker_id: Set(worker.as_str().to_owned()),
            acquired_at: Set(now),
            expires_at: Set(now + ttl_ms),
            heartbeat_at: Set(now),
        };
        leases::Entity::insert(am)
            .on_conflict(
                OnConflict::column(leases::Column::ResourceId)
                    .update_columns([leases::Column::ExpiresAt, leases::Column::HeartbeatAt])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        self.count();
        Ok(())
    }

    /// Removes a worker's liveness row (clean shutdown).
    pub async fn remove_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        leases::Entity::delete_by_id(worker.as_str()).exec(&self.db).await?;
        Ok(())
    }

    /// Workers of `namespace` whose liveness has not expired at `now`.
    pub async fn live_workers(&self, namespace: &str, now: i64) -> Result<Vec<WorkerLease>, StoreError> {
        let rows = leases::Entity::find()
            .filter(leases::Column::Namespace.eq(namespace))
            .filter(leases::Column::Kind.eq("worker"))
            .filter(leases::Column::ExpiresAt.gt(now))
            .order_by_asc(leases::Column::AcquiredAt)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| WorkerLease {
                worker_id: WorkerId::from_string(m.worker_id),
                namespace: m.namespace,
                acquired_at: m.acquired_at,
                heartbeat_at: m.heartbeat_at,
                expires_at: m.expires_at,
            })
            .collect())
    }
}

/// The columns of a step row, in the order [`step_row`] binds them.
const STEP_INSERT: &str = "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, \
       kind, status, attempts, max_attempts, output_data, error_message, started_at, completed_at, wake_at, \
       fencing_token)";
const STEP_ROW: &str = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

/// The values of one step row (see [`STEP_INSERT`]).
fn step_row(lease: &Lease, rec: &StepRecord, now: i64) -> Vec<Value> {
    let (status, output, error, completed_at): (&str, Option<Vec<u8>>, Option<String>, Option<i64>) = match &rec.outcome
    {
        StepOutcome::Completed(out) => ("completed", Some(out.clone()), None, Some(now)),
        StepOutcome::Failed(e) => ("failed", None, Some(e.clone()), Some(now)),
        StepOutcome::AttemptFailed(e) => ("running", None, Some(e.clone()), None),
    };
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

/// The SET clause that moves a run's open step to `to`, and its values.
///
/// With `at` (the position of the step written in the same statement), the
/// open step moves only if it is at `at`: when steps of one run execute at
/// once, a step's result must not move the open step away from a sibling
/// whose attempt it holds. Without `at` (a hand-back, written from the
/// lease holder's own view of the open step) it is set as given.
fn open_set(to: OpenStep, at: Option<u32>) -> (&'static str, Vec<Value>) {
    match at {
        Some(at) => (
            ", open_position = CASE WHEN open_position = ? THEN ? ELSE open_position END, \
             open_attempts = CASE WHEN open_position = ? THEN ? ELSE open_attempts END",
            vec![to_i32(at).into(), to_i32(to.position).into(), to_i32(at).into(), to_i32(to.attempts).into()],
        ),
        None => {
            (", open_position = ?, open_attempts = ?", vec![to_i32(to.position).into(), to_i32(to.attempts).into()])
        }
    }
}
/// The conflict clause of a step result: only a running step at the same
/// position takes it; its attempt count never goes down.
const STEP_TAIL_PG: &str = "ON CONFLICT (execution_id, step_id) DO UPDATE SET status = excluded.status, \
       output_data = excluded.output_data, error_message = excluded.error_message, \
       completed_at = excluded.completed_at, wake_at = excluded.wake_at, \
       fencing_token = excluded.fencing_token, attempts = GREATEST(workflow_steps.attempts, excluded.attempts) \
     WHERE workflow_steps.status = 'running' AND workflow_steps.position = excluded.position";
const STEP_TAIL_SQLITE: &str = "ON CONFLICT (execution_id, step_id) DO UPDATE SET status = excluded.status, \
       output_data = excluded.output_data, error_message = excluded.error_message, \
       completed_at = excluded.completed_at, wake_at = excluded.wake_at, \
       fencing_token = excluded.fencing_token, attempts = MAX(workflow_steps.attempts, excluded.attempts) \
     WHERE workflow_steps.status = 'running' AND workflow_steps.position = excluded.position";

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
            BatchOp::Checkpoint(lease, Checkpoint { step: Some(rec), open: Some(open), transition }) => {
                matches!(transition, Transition::Continue).then_some((lease, rec, *open))
            }
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

/// The order in which a transaction that writes several runs touches them:
/// by execution ID. Every multi-run transaction (group commit, lease
/// renewal) locks rows in this one order, so two of them can never wait
/// for each other in a cycle (on PostgreSQL a deadlock costs a second of
/// detection and a rolled-back batch).
fn lock_order<'a, T, K: Ord>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| key(&items[a]).cmp(&key(&items[b])));
    order
}

/// The fence's values: the run's ID, the caller's token and the lease's
/// namespace. The ID is the primary key and alone picks the row; the
/// namespace is compared as `namespace || ''`, which no index serves, so no
/// query plan (PostgreSQL caches generic plans of prepared statements) can
/// prefer the wider (namespace, status) index: plans made while the table
/// was small did, and scanned every running run on each write.
fn fence_values(lease: &Lease) -> [Value; 3] {
    [lease.execution_id.as_str().into(), lease.token.0.into(), lease.namespace.as_str().into()]
}

fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost { execution: lease.execution_id.clone(), token: lease.token }
}

fn position_conflict(e: DbErr, lease: &Lease, position: u32) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            StoreError::PositionTaken { execution: lease.execution_id.clone(), position }
        }
        _ => StoreError::Database(e),
    }
}

/// The row of a new, pending run.
fn execution_row(new: &NewExecution) -> exec::ActiveModel {
    exec::ActiveModel {
        id: Set(new.id.as_str().to_owned()),
        namespace: Set(new.namespace.clone()),
        workflow_name: Set(new.workflow_name.clone()),
        status: Set(ExecutionStatus::Pending.as_str().to_owned()),
        input_data: Set(new.input.clone()),
        output_data: Set(None),
        error_message: Set(None),
        max_attempts: Set(to_i32(new.max_attempts.max(1))),
        attempts: Set(0),
        idempotency_key: Set(new.idempotency_key.clone()),
        trigger_type: Set(new.trigger_type.as_str().to_owned()),
        trigger_source: Set(new.trigger_source.clone()),
        created_at: Set(new.now),
        started_at: Set(None),
        updated_at: Set(new.now),
        completed_at: Set(None),
        due_at: Set(Some(new.due_at)),
        deadline_at: Set(new.deadline_at),
        lease_owner: Set(None),
        fencing_token: Set(0),
        cancel_requested: Set(false),
        open_position: Set(0),
        open_attempts: Set(0),
    }
}

/// Inserts a run unless its idempotency key is taken; returns the rows inserted.
async fn insert_execution<C: ConnectionTrait>(conn: &C, row: exec::ActiveModel) -> Result<u64, StoreError> {
    let inserted = exec::Entity::insert(row)
        .on_conflict_do_nothing_on([exec::Column::Namespace, exec::Column::WorkflowName, exec::Column::IdempotencyKey])
        .exec_without_returning(conn)
        .await?;
    Ok(match inserted {
        TryInsertResult::Inserted(n) => n,
        TryInsertResult::Conflicted | TryInsertResult::Empty => 0,
    })
}
