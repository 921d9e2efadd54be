//! Claims: one atomic statement hands each due run to one worker and raises
//! its fencing token.

use super::Store;
use crate::entity::workflow_executions as exec;
use crate::error::StoreError;
use crate::model::{ClaimRequest, ClaimedExecution, Execution, Lease};
use crate::sql::{Db, Row};
use sea_orm::Value;

impl Store {
    /// Claims up to `limit` due runs of the given workflows in one atomic
    /// statement: pending and sleeping runs whose `due_at` has passed, and
    /// running runs whose lease expired. Each claimed run gets a new fencing
    /// token (old token + 1), the worker as lease owner and a lease until
    /// `now + lease_ttl_ms`. A claim of a pending run, or a takeover of an
    /// expired one, begins a new workflow attempt (`attempts + 1`); a claim
    /// of a sleeping run continues the current one.
    ///
    /// Where the database locks rows, the candidates are locked with `FOR
    /// UPDATE SKIP LOCKED`, so concurrent claimers take disjoint sets; on
    /// SQLite the single statement holds the write lock. The candidates are read from
    /// the partial index `(namespace, due_at) WHERE due_at IS NOT NULL`,
    /// which holds no finished run.
    ///
    /// Every claim also counts one attempt of the run's open step (see
    /// [`OpenStep`](crate::OpenStep)): the attempt the new holder is about to begin, or the
    /// one a dead holder left unfinished.
    ///
    /// A claimed row that does not convert (written by another version, or
    /// edited by hand: an unknown trigger type, a NULL where a value
    /// belongs) is not returned and not left leased: in the same statement
    /// sequence it is ended `failed` with an error naming what is wrong, and
    /// the other runs of the batch are returned as usual.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<ClaimedExecution>, StoreError> {
        let _gate = self.gate().await;
        let claimed = self.claim_on(self.conn(), req).await?;
        if !claimed.is_empty() {
            self.count();
        }
        Ok(claimed)
    }

    /// [`Store::claim`] on `db` (the pool, or a group commit's
    /// transaction); the caller counts the commit.
    pub(super) async fn claim_on(&self, db: Db<'_>, req: &ClaimRequest) -> Result<Vec<ClaimedExecution>, StoreError> {
        if req.admission.is_empty() || req.limit == 0 {
            return Ok(Vec::new());
        }
        let lock = self.dialect().for_update_skip_locked(None);
        let returning = self.dialect().returning("*");
        let (admitted, admitted_values) = req.admission.condition();
        let sql = format!(
            "UPDATE workflow_executions SET status = 'running', lease_owner = ?, \
             fencing_token = fencing_token + 1, due_at = ?, updated_at = ?, \
             started_at = COALESCE(started_at, ?), \
             attempts = CASE WHEN status = 'sleeping' THEN attempts ELSE attempts + 1 END, \
             open_attempts = open_attempts + 1 \
             WHERE id IN (SELECT id FROM workflow_executions \
               WHERE namespace = ? AND due_at IS NOT NULL AND due_at <= ? AND {admitted} \
               ORDER BY due_at LIMIT ?{lock}){returning}"
        );
        let mut values: Vec<Value> = vec![
            req.worker_id.as_str().into(),
            req.now.saturating_add(req.lease_ttl_ms).into(),
            req.now.into(),
            req.now.into(),
            req.namespace.as_str().into(),
            req.now.into(),
        ];
        values.extend(admitted_values);
        values.push(i64::from(req.limit).into());
        let stmt = self.stmt(&sql, values);
        let rows = db.all(stmt).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            match claimed_run(&row, req) {
                Ok(c) => claimed.push(c),
                Err(reason) => self.fail_unreadable_claim(db, &row, &reason, req.now).await?,
            }
        }
        // The rows come back in no given order; hand them out oldest-due first.
        claimed.sort_by_key(|c| (c.execution.started_at, c.execution.created_at));
        Ok(claimed)
    }

    /// Ends a just-claimed run whose row does not convert, under the token
    /// the claim gave it, so that it is neither driven nor left leased.
    async fn fail_unreadable_claim(
        &self,
        db: Db<'_>,
        row: &Row,
        reason: &StoreError,
        now: i64,
    ) -> Result<(), StoreError> {
        let id: String = row.try_get("", "id")?;
        let token: i64 = row.try_get("", "fencing_token")?;
        let message = format!("this run's stored row cannot be read by this version of Hydra: {reason}");
        tracing::error!(execution_id = %id, error = %reason, "claimed a run whose row does not convert; failing it");
        let ended = db
            .exec(self.stmt(
                "UPDATE workflow_executions SET status = 'failed', error_message = ?, completed_at = ?, \
                 updated_at = ?, due_at = NULL, lease_owner = NULL WHERE id = ? AND fencing_token = ?",
                vec![message.as_str().into(), now.into(), now.into(), id.as_str().into(), token.into()],
            ))
            .await?;
        if ended == 1 {
            // A child's parent hears of this end like of any other.
            let id = crate::ids::ExecutionId::from_string(id);
            self.notify_parent(db, &id, &crate::model::Terminal::Failed(message), now).await?;
        }
        Ok(())
    }
}

/// One returned row of a claim as a claimed run, or why it does not convert.
fn claimed_run(row: &Row, req: &ClaimRequest) -> Result<ClaimedExecution, StoreError> {
    let model: exec::Model = row.to()?;
    let execution = Execution::try_from(model)?;
    let lease = Lease {
        namespace: execution.namespace.clone(),
        execution_id: execution.id.clone(),
        worker_id: req.worker_id.clone(),
        token: execution.fencing_token,
    };
    Ok(ClaimedExecution { execution, lease })
}
