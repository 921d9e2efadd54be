//! Code that no longer replays its runs: a run stopped by non-determinism
//! is `suspended` (no lease, no due time) with the fingerprint of the code
//! that failed it; a worker with other code takes such runs up again. An
//! operator can end any run that is not running at once, failed. And the
//! runs due for a workflow (and version) nobody can run are counted.

use super::Store;
use super::fence::fence_values;
use super::step_write::{OpenWhen, open_set};
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{Lease, OpenStep, Terminal};
use sea_orm::Value;

/// Due runs of one workflow and version (see [`Store::due_runs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DueRuns {
    /// The workflow.
    pub workflow_name: String,
    /// The version the runs record (`None`: unversioned).
    pub workflow_version: Option<u32>,
    /// How many are due.
    pub runs: u64,
    /// The earliest due time among them (ms).
    pub oldest_due_at: i64,
}

impl Store {
    /// Suspends the lease's run: code fingerprinted `code` met a step its
    /// history does not have (`message` says which). Fenced; the run keeps
    /// its history and open step and has no due time until it is resumed.
    /// A run with an accepted cancel is not suspended (the cancel would be
    /// kept for ever): [`StoreError::CancelRequested`], nothing written.
    pub async fn suspend(
        &self,
        lease: &Lease,
        open: OpenStep,
        message: &str,
        code: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        // The open step as the run leaves it: the attempt its claim counted
        // and no body began is given back, as a release does, so suspending
        // and resuming use up no attempt.
        let (open_sql, open_values) = open_set(open, OpenWhen::Always);
        let mut values: Vec<Value> = vec![message.into(), code.into(), now.into()];
        values.extend(open_values);
        values.extend(fence_values(lease));
        let r = self
            .conn()
            .exec(self.stmt(
                &format!(
                    "UPDATE workflow_executions SET status = 'suspended', error_message = ?, suspended_code = ?, \
                     due_at = NULL, lease_owner = NULL, signal_wait = FALSE, updated_at = ?{open_sql}{} \
                     AND cancel_requested = FALSE",
                    self.fence()
                ),
                values,
            ))
            .await?;
        if r != 1 {
            return Err(self.why_not_written(self.conn(), lease, true).await?);
        }
        self.count();
        Ok(())
    }

    /// Takes up again the suspended runs of `workflow` that code other than
    /// `code` suspended and whose versions lie in `versions` (those the
    /// resuming worker replays; unversioned runs too): they are due now.
    /// Each keeps the fingerprint of the code that suspended it, which
    /// claims no more (see [`crate::Admission::codes`]). Returns how many.
    pub async fn resume_suspended(
        &self,
        namespace: &str,
        workflow: &str,
        versions: (u32, u32),
        code: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let _gate = self.gate().await;
        let r = self
            .conn()
            .exec(self.stmt(
                "UPDATE workflow_executions SET status = 'sleeping', due_at = ?, error_message = NULL, \
                 updated_at = ? \
                 WHERE namespace = ? AND workflow_name = ? AND status = 'suspended' \
                 AND (suspended_code IS NULL OR suspended_code <> ?) \
                 AND (workflow_version IS NULL OR workflow_version BETWEEN ? AND ?)",
                vec![
                    now.into(),
                    now.into(),
                    namespace.into(),
                    workflow.into(),
                    code.into(),
                    i64::from(versions.0).into(),
                    i64::from(versions.1).into(),
                ],
            ))
            .await?;
        if r > 0 {
            self.count();
        }
        Ok(r)
    }

    /// An operator takes suspended run `id` up again: due now, for any
    /// worker of its workflow and version, the code that suspended it
    /// included (for a fix its fingerprint does not see: a payload type's
    /// definition, a plain function the workflow calls). Also a run other
    /// code took up and never claimed (it waits, due, for a worker of that
    /// code). `Err(status)`: the run was neither (nothing changed).
    pub async fn resume_now(
        &self,
        namespace: &str,
        id: &ExecutionId,
        now: i64,
    ) -> Result<Result<(), crate::model::ExecutionStatus>, StoreError> {
        let _gate = self.gate().await;
        let r = self
            .conn()
            .exec(self.stmt(
                "UPDATE workflow_executions SET status = 'sleeping', due_at = ?, error_message = NULL, \
                 suspended_code = NULL, updated_at = ? WHERE id = ? AND namespace = ? \
                 AND (status = 'suspended' OR (status IN ('pending', 'sleeping') AND suspended_code IS NOT NULL))",
                vec![now.into(), now.into(), id.as_str().into(), namespace.into()],
            ))
            .await?;
        if r == 1 {
            self.count();
            return Ok(Ok(()));
        }
        match self.get_execution(namespace, id).await? {
            Some(e) => Ok(Err(e.status)),
            None => Err(StoreError::ExecutionNotFound { execution: id.clone(), namespace: namespace.to_owned() }),
        }
    }

    /// Ends a run that is not running (pending, sleeping or suspended) at
    /// once, `failed` with `reason`, without running anything of it (an
    /// operator's decision); its parent, if any, is told. `Err(status)`: the
    /// run was running or had ended (nothing changed).
    pub async fn fail_now(
        &self,
        namespace: &str,
        id: &ExecutionId,
        reason: &str,
        now: i64,
    ) -> Result<Result<(), crate::model::ExecutionStatus>, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        if let Err(e) = self.lock_run_and_parent(txn.db(), id).await {
            txn.rollback().await?;
            return Err(e);
        }
        let r = txn
            .db()
            .exec(self.stmt(
                "UPDATE workflow_executions SET status = 'failed', error_message = ?, completed_at = ?, \
                 updated_at = ?, due_at = NULL, lease_owner = NULL, fencing_token = fencing_token + 1 \
                 WHERE id = ? AND namespace = ? AND status IN ('pending', 'sleeping', 'suspended')",
                vec![reason.into(), now.into(), now.into(), id.as_str().into(), namespace.into()],
            ))
            .await;
        match r {
            Ok(1) => {
                let told = self.notify_parent(txn.db(), id, &Terminal::Failed(reason.to_owned()), now).await;
                self.settle(txn, told).await?;
                Ok(Ok(()))
            }
            Ok(_) => {
                txn.rollback().await?;
                match self.get_execution(namespace, id).await? {
                    Some(e) => Ok(Err(e.status)),
                    None => {
                        Err(StoreError::ExecutionNotFound { namespace: namespace.to_owned(), execution: id.clone() })
                    }
                }
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e.into())
            }
        }
    }

    /// Runs of `namespace` due by `now` (pending or sleeping), counted by
    /// workflow and version, with the earliest due time of each group.
    pub async fn due_runs(&self, namespace: &str, now: i64) -> Result<Vec<DueRuns>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "SELECT workflow_name, workflow_version, COUNT(*) AS runs, MIN(due_at) AS oldest \
                 FROM workflow_executions WHERE namespace = ? AND status IN ('pending', 'sleeping') \
                 AND due_at IS NOT NULL AND due_at <= ? GROUP BY workflow_name, workflow_version",
                vec![namespace.into(), now.into()],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let version: Option<i32> = row.try_get("", "workflow_version")?;
            let runs: i64 = row.try_get("", "runs")?;
            out.push(DueRuns {
                workflow_name: row.try_get("", "workflow_name")?,
                workflow_version: version.and_then(|v| u32::try_from(v).ok()),
                runs: u64::try_from(runs).unwrap_or(0),
                oldest_due_at: row.try_get::<Option<i64>>("", "oldest")?.unwrap_or(now),
            });
        }
        Ok(out)
    }
}
