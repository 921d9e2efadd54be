//! Search attributes: text values a run carries under names of the user's
//! (`order_id`, `customer_id`), set at start or by the workflow, and found
//! through the index (namespace, name, value).

use super::Store;
use super::step_write::OpenWhen;
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{Lease, OpenStep, StepRecord};
use crate::sql::Db;

/// The longest search attribute value stored (bytes).
pub const MAX_SEARCH_VALUE_BYTES: usize = 1024;

/// The longest search attribute name (bytes): its setting's step ID
/// (`search:{name}`, with an occurrence suffix) fits the step ID column.
pub const MAX_SEARCH_NAME_BYTES: usize = 190;

/// Why a search attribute name or value is refused, if it is: a name of 1
/// to [`MAX_SEARCH_NAME_BYTES`] bytes that is a valid step ID base (no `#`,
/// whitespace or control characters), and a value of at most
/// [`MAX_SEARCH_VALUE_BYTES`] bytes without NUL (PostgreSQL text holds
/// none). The same on both backends.
pub fn check_search_attribute(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SEARCH_NAME_BYTES {
        return Err(format!("a search attribute name is 1 to {MAX_SEARCH_NAME_BYTES} bytes, not {}", name.len()));
    }
    if name.chars().any(|c| c.is_control() || c == '#') {
        return Err(format!("search attribute name {name:?} contains `#` or a control character"));
    }
    crate::ids::StepId::validate_base(&format!("{}{name}", crate::reserved::step::SEARCH))
        .map_err(|e| format!("search attribute name {name:?}: {e}"))?;
    if value.contains('\0') {
        return Err(format!("search attribute `{name}`: a value holds no NUL character"));
    }
    if value.len() > MAX_SEARCH_VALUE_BYTES {
        return Err(format!(
            "search attribute `{name}`: a value is at most {MAX_SEARCH_VALUE_BYTES} bytes, not {}",
            value.len()
        ));
    }
    Ok(())
}

impl Store {
    /// Sets search attribute `name` = `value` of a claimed run, under the
    /// fencing check, in one transaction with `record` (the setting's step
    /// in the history, so a replay does not set it again); the run's open
    /// step moves past it.
    pub async fn set_search_attribute(
        &self,
        lease: &Lease,
        record: &StepRecord,
        name: &str,
        value: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        check_search_attribute(name, value)
            .map_err(|reason| StoreError::Refused { execution: lease.execution_id.clone(), reason })?;
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = async {
            let next = OpenStep::new(record.position.saturating_add(1), 1);
            self.guard(txn.db(), lease, None, OpenWhen::Always, now).await?;
            self.record_held(txn.db(), lease, record, next, now).await?;
            self.put_search_attribute(txn.db(), &lease.namespace, &lease.execution_id, name, value).await
        }
        .await;
        match self.settle(txn, r).await {
            // A retry whose commit went through (its reply lost) finds its
            // own record: done already.
            Err(e @ StoreError::StepAlreadyRecorded { .. }) => {
                match self.ended_under(self.conn(), lease, &record.step_id).await? {
                    Some(_) => Ok(()),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Writes (or replaces) one search attribute in `txn`.
    pub(super) async fn put_search_attribute(
        &self,
        db: Db<'_>,
        namespace: &str,
        id: &ExecutionId,
        name: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        check_search_attribute(name, value).map_err(|reason| StoreError::Refused { execution: id.clone(), reason })?;
        db.exec(self.stmt(
            &format!(
                "INSERT INTO workflow_search_attributes (execution_id, name, namespace, value) VALUES (?, ?, ?, ?){}",
                self.dialect().on_conflict_update("execution_id, name", "value = excluded.value", "")
            ),
            vec![id.as_str().into(), name.into(), namespace.into(), value.into()],
        ))
        .await?;
        Ok(())
    }

    /// The search attributes of a run, by name.
    pub async fn search_attributes(
        &self,
        namespace: &str,
        id: &ExecutionId,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .conn()
            .all(self.stmt(
                "SELECT name, value FROM workflow_search_attributes WHERE execution_id = ? AND namespace = ? \
                 ORDER BY name",
                vec![id.as_str().into(), namespace.into()],
            ))
            .await?;
        rows.iter().map(|r| Ok((r.try_get("", "name")?, r.try_get("", "value")?))).collect()
    }
}
