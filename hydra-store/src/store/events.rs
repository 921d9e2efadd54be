//! Events: a run publishes a durable key/value (recorded as a step of its
//! history, so a replay does not publish it again), and anyone reads it.

use super::Store;
use super::step_write::OpenWhen;
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{Lease, OpenStep, StepRecord};
use crate::sql::Db;

/// An event's value as stored, and when it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventValue {
    /// The encoded value (tagged by its codec).
    pub value: Vec<u8>,
    /// When it was set (ms).
    pub updated_at: i64,
}

impl Store {
    /// Publishes event `key` = `value` for a claimed run, under the fencing
    /// check, in one transaction with `record` (the publication's step in
    /// the history); the run's open step moves past it.
    pub async fn set_event(
        &self,
        lease: &Lease,
        record: &StepRecord,
        key: &str,
        value: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = self.set_event_in(txn.db(), lease, record, key, value, now).await;
        match self.settle(txn, r).await {
            // A retry of a publication whose commit went through (its reply
            // lost) finds its own record: done already.
            Err(e @ StoreError::StepAlreadyRecorded { .. }) => {
                match self.ended_under(self.conn(), lease, &record.step_id).await? {
                    Some(_) => Ok(()),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn set_event_in(
        &self,
        db: Db<'_>,
        lease: &Lease,
        record: &StepRecord,
        key: &str,
        value: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let next = OpenStep::new(record.position.saturating_add(1), 1);
        self.guard(db, lease, None, OpenWhen::Always, now).await?;
        self.record_held(db, lease, record, next, now).await?;
        db.exec(self.stmt(
            &format!(
                "INSERT INTO workflow_events (execution_id, event_key, namespace, value, updated_at) \
                 VALUES (?, ?, ?, ?, ?){}",
                self.dialect().on_conflict_update(
                    "execution_id, event_key",
                    "value = excluded.value, updated_at = excluded.updated_at",
                    ""
                )
            ),
            vec![
                lease.execution_id.as_str().into(),
                key.into(),
                lease.namespace.as_str().into(),
                value.to_vec().into(),
                now.into(),
            ],
        ))
        .await?;
        Ok(())
    }

    /// The current value of event `key` of a run, if it was set.
    pub async fn event(&self, namespace: &str, id: &ExecutionId, key: &str) -> Result<Option<EventValue>, StoreError> {
        let row = self
            .conn()
            .one(self.stmt(
                "SELECT value, updated_at FROM workflow_events WHERE execution_id = ? AND event_key = ? \
                 AND namespace = ?",
                vec![id.as_str().into(), key.into(), namespace.into()],
            ))
            .await?;
        row.map(|r| Ok(EventValue { value: r.try_get("", "value")?, updated_at: r.try_get("", "updated_at")? }))
            .transpose()
    }
}
