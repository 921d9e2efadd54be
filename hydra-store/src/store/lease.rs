//! Leases: renewing them (one run, or many in one transaction) and ending
//! the ones that expired.

use super::Store;
use super::fence::{lease_lost, lock_order};
use crate::error::StoreError;
use crate::model::{Lease, Renewed};

impl Store {
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
        let txn = self.begin().await?;
        let mut out: Vec<Option<Result<Renewed, StoreError>>> = leases.iter().map(|_| None).collect();
        for i in lock_order(leases, |l| l.execution_id.as_str()) {
            let lease = &leases[i];
            let row = txn
                .db()
                .one(self.stmt(
                    &format!(
                        "UPDATE workflow_executions SET due_at = ?, updated_at = ? \
                         WHERE id = ? AND fencing_token = ? AND status = 'running' AND {} = ? AND due_at > ?{}",
                        self.dialect().unindexed("namespace"),
                        self.dialect().returning("cancel_requested")
                    ),
                    vec![
                        now.saturating_add(ttl_ms).into(),
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
                    expires_at: now.saturating_add(ttl_ms),
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
            .conn()
            .exec(self.stmt(
                "UPDATE workflow_executions SET status = 'pending', lease_owner = NULL, \
                 fencing_token = fencing_token + 1, due_at = ?, updated_at = ? \
                 WHERE namespace = ? AND status = 'running' AND due_at IS NOT NULL AND due_at <= ?",
                vec![now.into(), now.into(), namespace.into(), now.into()],
            ))
            .await?;
        Ok(r)
    }
}
