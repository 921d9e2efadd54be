//! The fencing condition: every write on behalf of a claimed run is
//! conditional on the run's fencing token.
//!
//! A claim raises a run's token by one and hands it to one worker in a
//! [`Lease`]. A write made under that lease applies only while the run's row
//! still has that token, is `running` and is in the lease's namespace
//! ([`FENCE`], bound by [`fence_values`]); otherwise it writes nothing and
//! fails with [`StoreError::LeaseLost`] ([`lease_lost`]). So once another
//! claim, a reclaim or the run's end has moved the token on, the old holder
//! can change nothing.
//!
//! How a write carries the fence:
//! - [`Store::guard`]: an update of the run's row under [`FENCE`], which
//!   locks the row until the transaction ends (the run transitions in
//!   `checkpoint` append [`FENCE`] to their own update the same way);
//! - [`Store::fenced_insert`] with [`Store::fenced_values`]: a step insert
//!   that writes only under the fence, in one statement;
//! - [`Store::why_refused`]: tells a lost lease from an already recorded
//!   step when a fenced insert wrote nothing.
//!
//! Two statements spell the same condition out inline: lease renewal
//! (`lease`, which also requires the lease not to have expired) and SQLite's
//! multi-row step insert (`batch`, which reads it from each row's values).
//! Transactions that write several runs lock them in [`lock_order`].

use super::Store;
use super::step_write::{OpenWhen, open_set};
use crate::connect::Backend;
use crate::entity::workflow_executions as exec;
use crate::error::StoreError;
use crate::ids::StepId;
use crate::model::{Lease, OpenStep};
use sea_orm::{ConnectionTrait, DatabaseTransaction, EntityTrait, Value};

/// Appends the fencing condition to a run update: the write applies only if
/// the caller's token is current and the run is still running.
/// The fencing condition on `workflow_executions`; binds the run's ID, the
/// caller's token and the lease's namespace (see [`fence_values`]).
pub(super) const FENCE: &str = " WHERE id = ? AND fencing_token = ? AND status = 'running' AND namespace || '' = ?";

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
        txn: &DatabaseTransaction,
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
        let sql = format!("UPDATE workflow_executions SET updated_at = ?{frag}{FENCE}");
        let r = txn.execute_raw(self.stmt(&sql, values)).await?;
        if r.rows_affected() == 1 { Ok(()) } else { Err(lease_lost(lease)) }
    }

    /// An `INSERT … SELECT` that inserts only while the lease's token is
    /// current. PostgreSQL: a data-modifying CTE updates (and so locks) the
    /// run's row first, so no claim can slip in before the commit; with
    /// `open`, that update also moves the run's open step. SQLite: an
    /// `EXISTS` check, safe because every write transaction here holds the
    /// database's write lock (`BEGIN IMMEDIATE`); there `open` is written
    /// by [`Store::guard`] before. Values: see [`Store::fenced_values`].
    pub(super) fn fenced_insert(&self, open: &str, insert: &str, select: &str, tail: &str) -> String {
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
    pub(super) fn fenced_values(&self, lease: &Lease, now: i64, open: Vec<Value>, row: Vec<Value>) -> Vec<Value> {
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
    pub(super) async fn why_refused(&self, txn: &DatabaseTransaction, lease: &Lease, step: &StepId) -> StoreError {
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
