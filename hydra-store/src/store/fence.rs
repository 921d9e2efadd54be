//! The fencing condition: every write on behalf of a claimed run is
//! conditional on the run's fencing token.
//!
//! A claim raises a run's token by one and hands it to one worker in a
//! [`Lease`]. A write made under that lease applies only while the run's row
//! still has that token, is `running` and is in the lease's namespace
//! ([`Store::fence`], bound by [`fence_values`]); otherwise it writes nothing and
//! fails with [`StoreError::LeaseLost`] ([`lease_lost`]). So once another
//! claim, a reclaim or the run's end has moved the token on, the old holder
//! can change nothing.
//!
//! How a write carries the fence:
//! - [`Store::guard`]: an update of the run's row under the fence, which
//!   locks the row until the transaction ends (the run transitions in
//!   `checkpoint` append the fence to their own update the same way);
//! - [`Store::fenced_insert`] with [`Store::fenced_values`]: a step insert
//!   that writes only under the fence, in one statement;
//! - [`Store::why_refused`]: tells a lost lease from an already recorded
//!   step when a fenced insert wrote nothing.
//!
//! Two statements spell the same condition out inline: lease renewal
//! (`lease`, which also requires the lease not to have expired) and the
//! backends' multi-row step writes (which read it from each row's values).
//! Transactions that write several runs lock them in [`lock_order`]; one
//! that ends a run locks the run and its parent (which it tells of the end)
//! in that order first ([`Store::lock_run_and_parent`], or for a group
//! commit `Dialect::lock_runs` over all its runs).

use super::Store;
use super::step_write::{OpenWhen, open_set};
use crate::error::StoreError;
use crate::ids::{ExecutionId, StepId};
use crate::model::{Lease, OpenStep};
use crate::sql::Db;
use sea_orm::Value;

impl Store {
    /// Locks run `id` and its parent, if it has one, in [`lock_order`],
    /// before a transaction ends the run and tells the parent: locking the
    /// run by its update and then the parent would hold the one while
    /// waiting for the other out of order (a cycle with a lease renewal
    /// that holds both runs' leases).
    pub(super) async fn lock_run_and_parent(&self, db: Db<'_>, id: &ExecutionId) -> Result<(), StoreError> {
        self.dialect().lock_runs(self, db, vec![id.to_string()], vec![id.to_string()]).await
    }

    /// Why a fenced write wrote nothing: a cancel accepted for a run this
    /// lease still holds (when the write was conditional on none: a run's
    /// end, a suspend), else a lost lease.
    pub(super) async fn why_not_written(
        &self,
        db: Db<'_>,
        lease: &Lease,
        unless_cancel: bool,
    ) -> Result<StoreError, StoreError> {
        if unless_cancel {
            let fence = self.fence();
            let row = db
                .one(self.stmt(
                    &format!("SELECT cancel_requested FROM workflow_executions{fence}"),
                    fence_values(lease).to_vec(),
                ))
                .await?;
            if let Some(row) = row
                && row.try_get::<bool>("", "cancel_requested")?
            {
                return Ok(StoreError::CancelRequested { execution: lease.execution_id.clone() });
            }
        }
        Ok(lease_lost(lease))
    }

    /// The fencing condition on `workflow_executions` (a `WHERE` clause):
    /// the write applies only if the caller's token is current and the run
    /// is still running; binds the run's ID, the caller's token and the
    /// lease's namespace (see [`fence_values`]).
    pub(super) fn fence(&self) -> String {
        format!(
            " WHERE id = ? AND fencing_token = ? AND status = 'running' AND {} = ?",
            self.dialect().unindexed("namespace")
        )
    }
}

/// The fence's values: the run's ID, the caller's token and the lease's
/// namespace. The ID is the primary key and alone picks the row; the
/// namespace is compared as `namespace || ''`, which no index serves, so no
/// query plan (PostgreSQL caches generic plans of prepared statements) can
/// prefer the wider (namespace, status) index: plans made while the table
/// was small did, and scanned every running run on each write.
pub(super) fn fence_values(lease: &Lease) -> [Value; 3] {
    [lease.execution_id.as_str().into(), lease.token.0.into(), lease.namespace.as_str().into()]
}

pub(super) fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost { execution: lease.execution_id.clone(), token: lease.token }
}

impl Store {
    /// The fencing check: touches the run only if the caller's token is
    /// current and the run is running. The row stays locked until the
    /// transaction ends, so no claim can slip in between check and commit.
    /// With `open`, also sets the run's open step under `when` (see [`open_set`]).
    pub(super) async fn guard(
        &self,
        db: Db<'_>,
        lease: &Lease,
        open: Option<OpenStep>,
        when: OpenWhen,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut values: Vec<Value> = vec![now.into()];
        let frag = match open {
            Some(o) => {
                let (frag, v) = open_set(o, when);
                values.extend(v);
                frag
            }
            None => "",
        };
        values.extend(fence_values(lease));
        let sql = format!("UPDATE workflow_executions SET updated_at = ?{frag}{}", self.fence());
        let changed = db.exec(self.stmt(&sql, values)).await?;
        if changed == 1 { Ok(()) } else { Err(lease_lost(lease)) }
    }

    /// An `INSERT … SELECT` that inserts only while the lease's token is
    /// current; where the backend's fence is an update of the run, it also
    /// moves the run's open step by `open` (elsewhere the open step is
    /// written by the caller's [`Store::guard`] before, or the insert is
    /// the backend's one-step path of a group commit, which moves it after).
    /// Values: [`Store::fenced_values`].
    pub(super) fn fenced_insert(&self, open: &str, insert: &str, select: &str, tail: &str) -> String {
        self.dialect().fenced_insert(&self.fence(), open, insert, select, tail)
    }

    /// The values of a [`Store::fenced_insert`].
    pub(super) fn fenced_values(&self, lease: &Lease, now: i64, open: Vec<Value>, row: Vec<Value>) -> Vec<Value> {
        self.dialect().fenced_values(fence_values(lease), now, open, row)
    }

    /// Why a fenced write wrote nothing: the lease is gone, or the step is
    /// already recorded.
    pub(crate) async fn why_refused(&self, db: Db<'_>, lease: &Lease, step: &StepId) -> StoreError {
        let current = db
            .one(self.stmt(
                "SELECT fencing_token, status, namespace FROM workflow_executions WHERE id = ?",
                vec![lease.execution_id.as_str().into()],
            ))
            .await;
        let held = |row: &crate::sql::Row| -> Result<bool, sea_orm::DbErr> {
            Ok(row.try_get::<i64>("", "fencing_token")? == lease.token.0
                && row.try_get::<String>("", "status")? == "running"
                && row.try_get::<String>("", "namespace")? == lease.namespace)
        };
        match current {
            Ok(Some(row)) => match held(&row) {
                Ok(true) => {
                    StoreError::StepAlreadyRecorded { execution: lease.execution_id.clone(), step: step.clone() }
                }
                Ok(false) => lease_lost(lease),
                Err(e) => e.into(),
            },
            Ok(None) => lease_lost(lease),
            Err(e) => e.into(),
        }
    }
}

/// The order in which a transaction that writes several runs touches them:
/// by execution ID. Every multi-run transaction (group commit, lease
/// renewal) locks rows in this one order, so two of them can never wait
/// for each other in a cycle (on PostgreSQL a deadlock costs a second of
/// detection and a rolled-back batch).
pub(super) fn lock_order<'a, T, K: Ord>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| key(&items[a]).cmp(&key(&items[b])));
    order
}
