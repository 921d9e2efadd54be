//! What an operator reads of a run and of a namespace: a run's signals and
//! events, and the runs counted by workflow and status.

use super::Store;
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::ExecutionStatus;
use crate::sql::Row;

/// A signal sent to a run, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalRow {
    /// Its name.
    pub name: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
    /// When it was accepted (ms).
    pub created_at: i64,
    /// When the run took it, if it did.
    pub consumed_at: Option<i64>,
    /// The position of the step that took it.
    pub consumed_position: Option<u32>,
}

/// An event a run published, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventRow {
    /// Its key.
    pub key: String,
    /// The encoded value.
    pub value: Vec<u8>,
    /// When it was last set (ms).
    pub updated_at: i64,
}

/// Runs that ended in one status within one time bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndedBucket {
    /// The bucket's start (ms since the epoch, a multiple of its width).
    pub start: i64,
    /// How the runs ended.
    pub status: String,
    /// How many.
    pub runs: u64,
}

/// Runs of one workflow in one status.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusCount {
    /// The workflow.
    pub workflow_name: String,
    /// The status (as stored: a newer version's status reads as its text).
    pub status: String,
    /// How many runs.
    pub runs: u64,
    /// When the oldest of them was created (ms).
    pub oldest_created_at: i64,
}

impl Store {
    /// The signals sent to a run, in the order they were accepted.
    pub async fn signals_of(&self, namespace: &str, id: &ExecutionId) -> Result<Vec<SignalRow>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "SELECT name, payload, created_at, consumed_at, consumed_position FROM workflow_signals \
                 WHERE execution_id = ? AND namespace = ? ORDER BY id",
                vec![id.as_str().into(), namespace.into()],
            ))
            .await?;
        rows.iter().map(signal_row).collect()
    }

    /// The events a run published, by key.
    pub async fn events_of(&self, namespace: &str, id: &ExecutionId) -> Result<Vec<EventRow>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "SELECT event_key, value, updated_at FROM workflow_events WHERE execution_id = ? AND namespace = ? \
                 ORDER BY event_key",
                vec![id.as_str().into(), namespace.into()],
            ))
            .await?;
        rows.iter().map(event_row).collect()
    }

    /// The runs of a namespace counted by workflow and status (one pass
    /// over the namespace's runs: an operator's question, not a hot path).
    pub async fn status_counts(&self, namespace: &str) -> Result<Vec<StatusCount>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "SELECT workflow_name, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM workflow_executions \
                 WHERE namespace = ? GROUP BY workflow_name, status ORDER BY workflow_name, status",
                vec![namespace.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("", "n")?;
                Ok(StatusCount {
                    workflow_name: r.try_get("", "workflow_name")?,
                    status: r.try_get("", "status")?,
                    runs: u64::try_from(n).unwrap_or(0),
                    oldest_created_at: r.try_get("", "oldest")?,
                })
            })
            .collect()
    }

    /// The namespaces that hold runs, in order, at most `limit` of them:
    /// what an operator who asked the wrong one is told. Read as a skip
    /// scan over the namespace index (one index probe per namespace, not
    /// one row per run).
    pub async fn namespaces(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "WITH RECURSIVE ns(n) AS (SELECT MIN(namespace) FROM workflow_executions \
                 UNION ALL SELECT (SELECT MIN(namespace) FROM workflow_executions WHERE namespace > ns.n) \
                 FROM ns WHERE ns.n IS NOT NULL) SELECT n FROM ns WHERE n IS NOT NULL LIMIT ?",
                vec![i64::from(limit).into()],
            ))
            .await?;
        rows.iter().map(|r| Ok(r.try_get::<String>("", "n")?)).collect()
    }

    /// The running runs of a namespace counted by lease holder.
    pub async fn running_by_worker(&self, namespace: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "SELECT lease_owner, COUNT(*) AS n FROM workflow_executions WHERE namespace = ? AND status = ? \
                 AND lease_owner IS NOT NULL GROUP BY lease_owner",
                vec![namespace.into(), ExecutionStatus::Running.as_str().into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get("", "n")?;
                Ok((r.try_get("", "lease_owner")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// The earliest due time of a pending run of the namespace, if any.
    pub async fn oldest_pending(&self, namespace: &str) -> Result<Option<(ExecutionId, i64)>, StoreError> {
        let row = self
            .conn()
            .one(self.stmt(
                "SELECT id, due_at FROM workflow_executions WHERE namespace = ? AND due_at IS NOT NULL \
                 AND status = ? ORDER BY due_at LIMIT 1",
                vec![namespace.into(), ExecutionStatus::Pending.as_str().into()],
            ))
            .await?;
        row.map(|r| Ok((ExecutionId::from_string(r.try_get::<String>("", "id")?), r.try_get("", "due_at")?)))
            .transpose()
    }

    /// The statement [`Store::ended_by_bucket`] runs (for plan tests).
    #[doc(hidden)]
    pub fn ended_statement(&self, namespace: &str, since: i64, width: i64) -> sea_orm::Statement {
        self.stmt(
            "SELECT completed_at / ? AS b, status, COUNT(*) AS n FROM workflow_executions \
             WHERE namespace = ? AND completed_at IS NOT NULL AND completed_at >= ? \
             GROUP BY 1, 2 ORDER BY 1, 2",
            vec![width.into(), namespace.into(), since.into()],
        )
    }

    /// The runs of a namespace that ended at or after `since` (ms), counted
    /// by end status in buckets `bucket_ms` wide (at least 1 ms), oldest
    /// bucket first.
    pub async fn ended_by_bucket(
        &self,
        namespace: &str,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<EndedBucket>, StoreError> {
        let width = bucket_ms.max(1);
        let rows = self.conn().all(self.ended_statement(namespace, since, width)).await?;
        rows.iter()
            .map(|r| {
                let b: i64 = r.try_get("", "b")?;
                let n: i64 = r.try_get("", "n")?;
                Ok(EndedBucket {
                    start: b.saturating_mul(width),
                    status: r.try_get("", "status")?,
                    runs: u64::try_from(n).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// A signal as its row holds it (`name`, `payload`, `created_at`,
/// `consumed_at`, `consumed_position`).
pub(super) fn signal_row(r: &Row) -> Result<SignalRow, StoreError> {
    let pos: Option<i32> = r.try_get("", "consumed_position")?;
    Ok(SignalRow {
        name: r.try_get("", "name")?,
        payload: r.try_get("", "payload")?,
        created_at: r.try_get("", "created_at")?,
        consumed_at: r.try_get("", "consumed_at")?,
        consumed_position: pos.and_then(|p| u32::try_from(p).ok()),
    })
}

/// An event as its row holds it (`event_key`, `value`, `updated_at`).
pub(super) fn event_row(r: &Row) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        key: r.try_get("", "event_key")?,
        value: r.try_get("", "value")?,
        updated_at: r.try_get("", "updated_at")?,
    })
}
