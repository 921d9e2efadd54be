//! Checkpoints: one atomic, fenced write that records a step result and/or
//! moves the run on (continue, sleep, retry, finish, release), including
//! the commit of a transactional step.

use super::Store;
use super::fence::{fence_values, lease_lost};
use super::step_write::{OpenWhen, open_set};
use crate::error::StoreError;
use crate::model::{Lease, OpenStep, StepRecord, Terminal};
use crate::reserved;
use crate::sql::{Db, Txn};
use sea_orm::{DatabaseTransaction, Value};

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
    /// Park the run until `until` (a cancel does not bring it forward) and
    /// give up the lease, with `error` as the run's error meanwhile: a
    /// write of its compensations the database failed; they go on when it
    /// is claimed again. Not a new attempt; nothing recorded is reset.
    Backoff {
        /// When it may be claimed again (ms).
        until: i64,
        /// Why it waits.
        error: String,
    },
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
    /// If set, `open` applies only if the run's open step is exactly this
    /// (see [`Checkpoint::open_if_unchanged`]). Otherwise a checkpoint that
    /// records a step moves the open step only if the open step is that
    /// step, and one without a step sets it as given.
    pub open_seen: Option<OpenStep>,
    /// A [`Transition::Finish`] that applies only if no cancel was
    /// accepted for the run (see [`Checkpoint::unless_cancel_requested`]).
    pub unless_cancel_requested: bool,
    /// The run has no parent (see [`Checkpoint::without_parent`]).
    pub without_parent: bool,
}

impl Checkpoint {
    /// Record a step and keep running.
    pub fn step(record: StepRecord) -> Self {
        Checkpoint {
            step: Some(record),
            transition: Transition::Continue,
            open: None,
            open_seen: None,
            unless_cancel_requested: false,
            without_parent: false,
        }
    }

    /// Change the run without recording a step.
    pub fn transition(transition: Transition) -> Self {
        Checkpoint {
            step: None,
            transition,
            open: None,
            open_seen: None,
            unless_cancel_requested: false,
            without_parent: false,
        }
    }

    /// Record a step and change the run in the same commit.
    pub fn step_and(record: StepRecord, transition: Transition) -> Self {
        Checkpoint {
            step: Some(record),
            transition,
            open: None,
            open_seen: None,
            unless_cancel_requested: false,
            without_parent: false,
        }
    }

    /// Says the run has no parent (its claim read so; a parent is set only
    /// when a run is created): its end tells no other run, so it locks no
    /// other run first (on a backend with row locks, a statement saved).
    pub fn without_parent(mut self) -> Self {
        self.without_parent = true;
        self
    }

    /// Also sets the run's open step, in the same fenced statement.
    pub fn open(mut self, open: OpenStep) -> Self {
        self.open = Some(open);
        self
    }

    /// Also sets the run's open step to `open`, but only if it is still
    /// `seen` (what the lease holder last knew): a step that is not the open
    /// step hands back the attempt a claim reserved for the open step,
    /// without undoing a sibling step's newer move of it.
    pub fn open_if_unchanged(mut self, seen: OpenStep, open: OpenStep) -> Self {
        self.open = Some(open);
        self.open_seen = Some(seen);
        self
    }

    /// Makes a [`Transition::Finish`] conditional on the run having no
    /// accepted cancel: the end of a body that returned. If a cancel was
    /// accepted first, nothing is written and the checkpoint fails with
    /// [`StoreError::CancelRequested`] (the run is then ended cancelled,
    /// after its compensations); a cancel that comes after the end finds
    /// the run ended. Either the end or the cancel wins, never both.
    pub fn unless_cancel_requested(mut self) -> Self {
        self.unless_cancel_requested = true;
        self
    }
}

impl Store {
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
        let txn = self.begin().await?;
        let r = async {
            if matches!(checkpoint.transition, Transition::Finish(_)) && !checkpoint.without_parent {
                self.lock_run_and_parent(txn.db(), &lease.execution_id).await?;
            }
            self.apply(txn.db(), lease, &checkpoint, now).await
        }
        .await;
        self.settle(txn, r).await
    }

    /// Begins the transaction of a transactional step (`BEGIN IMMEDIATE` on
    /// SQLite: it holds the database's write lock until it ends, so keep
    /// transactional bodies short).
    pub async fn begin_step_transaction(&self) -> Result<DatabaseTransaction, StoreError> {
        Ok(self.dialect().begin(self.connection()).await?)
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
        let txn = Txn::from(txn);
        let r = self.apply(txn.db(), lease, &cp, now).await;
        self.settle(txn, r).await
    }

    pub(super) async fn apply(&self, db: Db<'_>, lease: &Lease, cp: &Checkpoint, now: i64) -> Result<(), StoreError> {
        let (sql, mut values): (&'static str, Vec<Value>) = match &cp.transition {
            Transition::Continue => match &cp.step {
                // The step write carries the fence itself: one statement, or
                // where the backend writes one step as cheaply as many, the
                // statements of a group commit of several runs' steps.
                Some(record) if cp.open_seen.is_none() => {
                    if let Some(open) = cp.open
                        && self.dialect().writes_one_step_together()
                    {
                        // One step: its own answer, never `None` (see `Dialect::steps_together`).
                        return match self
                            .dialect()
                            .steps_together(self, db, &[(lease, record, open)], now)
                            .await?
                            .and_then(|mut r| r.pop())
                        {
                            Some(r) => r.map(|_| ()),
                            None => Err(StoreError::Database(sea_orm::DbErr::Custom(
                                "a step write came back without an answer".into(),
                            ))),
                        };
                    }
                    return self.write_step(db, lease, record, cp.open, now, true).await;
                }
                // The open step as given (or none): the guard sets it, the
                // step (if any) is written below under the guard's lock.
                _ => {
                    let when = cp.open_seen.map_or(OpenWhen::Always, OpenWhen::Unchanged);
                    self.guard(db, lease, cp.open, when, now).await?;
                    ("", Vec::new())
                }
            },
            // A cancel requested while the run was running (and not yet
            // seen by it) makes the parked run due now: its next claim
            // ends it cancelled, instead of at the end of its sleep. Not
            // while it compensates (its marker, `reserved::step::COMPENSATE`, is
            // recorded): a compensation's own backoff is waited out.
            Transition::Sleep { until } => (
                "UPDATE workflow_executions SET status = 'sleeping', \
                 due_at = CASE WHEN cancel_requested AND NOT EXISTS (SELECT 1 FROM workflow_steps c WHERE c.execution_id = workflow_executions.id AND c.step_id = ?) THEN ? ELSE ? END, lease_owner = NULL, updated_at = ?, \
                 signal_wait = FALSE",
                vec![reserved::step::COMPENSATE.into(), now.into(), (*until).into(), now.into()],
            ),
            Transition::Backoff { until, error } => (
                "UPDATE workflow_executions SET status = 'sleeping', due_at = ?, error_message = ?, \
                 lease_owner = NULL, updated_at = ?, signal_wait = FALSE",
                vec![(*until).into(), error.as_str().into(), now.into()],
            ),
            Transition::Release => (
                "UPDATE workflow_executions SET status = 'sleeping', due_at = ?, lease_owner = NULL, updated_at = ?, \
                 signal_wait = FALSE",
                vec![now.into(), now.into()],
            ),
            Transition::Retry { at, error } => (
                "UPDATE workflow_executions SET status = 'pending', \
                 due_at = CASE WHEN cancel_requested AND NOT EXISTS (SELECT 1 FROM workflow_steps c WHERE c.execution_id = workflow_executions.id AND c.step_id = ?) THEN ? ELSE ? END, error_message = ?, \
                 lease_owner = NULL, updated_at = ?, signal_wait = FALSE",
                vec![reserved::step::COMPENSATE.into(), now.into(), (*at).into(), error.as_str().into(), now.into()],
            ),
            Transition::Finish(t) => {
                let (output, error, data): (Option<Vec<u8>>, Option<String>, Option<Vec<u8>>) = match t {
                    Terminal::Completed(out) => (Some(out.clone()), None, None),
                    Terminal::FailedWith(e, data) => (None, Some(e.clone()), Some(data.clone())),
                    Terminal::Failed(e)
                    | Terminal::Cancelled(e)
                    | Terminal::TimedOut(e)
                    | Terminal::CompensationFailed(e) => (None, Some(e.clone()), None),
                };
                (
                    "UPDATE workflow_executions SET status = ?, output_data = ?, error_message = ?, error_data = ?, \
                     completed_at = ?, due_at = NULL, lease_owner = NULL, updated_at = ?",
                    vec![t.status().as_str().into(), output.into(), error.into(), data.into(), now.into(), now.into()],
                )
            }
        };
        if !sql.is_empty() {
            let open = match cp.open {
                Some(o) => {
                    let when = match (cp.open_seen, &cp.step) {
                        (Some(seen), _) => OpenWhen::Unchanged(seen),
                        (None, Some(r)) => OpenWhen::At(r.position),
                        (None, None) => OpenWhen::Always,
                    };
                    let (frag, v) = open_set(o, when);
                    values.extend(v);
                    frag
                }
                None => "",
            };
            values.extend(fence_values(lease));
            let mut fence = self.fence();
            if let Transition::Finish(terminal) = &cp.transition {
                if cp.unless_cancel_requested {
                    fence.push_str(" AND cancel_requested = ?");
                    values.push(false.into());
                }
                // The run's parent, read by the same statement: only a child's
                // end costs the statements that tell its parent.
                let returning = self.dialect().returning("parent_id");
                let Some(row) = db.one(self.stmt(&format!("{sql}{open}{fence}{returning}"), values)).await? else {
                    return Err(self.why_not_written(db, lease, cp.unless_cancel_requested).await?);
                };
                if row.try_get::<Option<String>>("", "parent_id")?.is_some() {
                    // A child's end reaches its parent in the same commit.
                    self.notify_parent(db, &lease.execution_id, terminal, now).await?;
                }
            } else {
                let changed = db.exec(self.stmt(&format!("{sql}{open}{fence}"), values)).await?;
                if changed != 1 {
                    return Err(lease_lost(lease));
                }
            }
        }
        if let Transition::Retry { .. } = cp.transition {
            // A new workflow attempt re-runs the steps that failed in the old
            // one, with fresh step attempts; completed steps stay recorded.
            db.exec(self.stmt(
                "UPDATE workflow_steps SET status = 'running', attempts = 0, completed_at = NULL, wake_at = NULL \
                 WHERE execution_id = ? AND namespace = ? AND status = 'failed'",
                vec![lease.execution_id.as_str().into(), lease.namespace.as_str().into()],
            ))
            .await?;
        }
        if let Some(record) = &cp.step {
            self.write_step(db, lease, record, None, now, false).await?;
        }
        Ok(())
    }
}
