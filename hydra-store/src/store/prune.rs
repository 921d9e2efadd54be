//! Retention: deleting finished runs (and their steps, signals, events and
//! search attributes) older than a cutoff, in bounded batches so that
//! claims and step writes go on between them. Runs that have not ended
//! (pending, running, sleeping, suspended) are never touched: every delete
//! names the end states.

use super::Store;
use crate::error::StoreError;
use crate::model::ExecutionStatus;
use crate::sql::Db;
use sea_orm::Value;

/// The end states retention may delete.
const ENDED: [ExecutionStatus; 5] = [
    ExecutionStatus::Completed,
    ExecutionStatus::Failed,
    ExecutionStatus::Cancelled,
    ExecutionStatus::TimedOut,
    ExecutionStatus::CompensationFailed,
];

/// What one prune batch (or a whole prune) deleted, or would delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Runs.
    pub runs: u64,
    /// Their step rows.
    pub steps: u64,
    /// Their signals.
    pub signals: u64,
    /// Their events.
    pub events: u64,
    /// Their search attributes.
    pub attributes: u64,
}

impl Pruned {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: Pruned) {
        self.runs += other.runs;
        self.steps += other.steps;
        self.signals += other.signals;
        self.events += other.events;
        self.attributes += other.attributes;
    }
}

impl Store {
    /// Deletes up to `batch` runs of `namespace` that ended before
    /// `ended_before` (ms) with one of `statuses` (empty: any end state;
    /// states that are not end states are ignored), oldest first, with
    /// their rows in the other tables, in one transaction.
    pub async fn prune_batch(
        &self,
        namespace: &str,
        ended_before: i64,
        statuses: &[ExecutionStatus],
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = self.prune_in(txn.db(), namespace, ended_before, statuses, batch).await;
        self.settle(txn, r).await
    }

    /// How many runs (and rows of theirs) [`Store::prune_batch`] would delete
    /// in all, deleting nothing.
    pub async fn prune_count(
        &self,
        namespace: &str,
        ended_before: i64,
        statuses: &[ExecutionStatus],
    ) -> Result<Pruned, StoreError> {
        let (cond, values) = prune_condition(namespace, ended_before, statuses);
        let mut out = Pruned::default();
        let runs = format!("SELECT id FROM workflow_executions e WHERE {cond}");
        out.runs = self
            .count_on(
                self.conn(),
                &format!("SELECT COUNT(*) AS n FROM workflow_executions e WHERE {cond}"),
                values.clone(),
            )
            .await?;
        for (table, field) in [
            ("workflow_steps", &mut out.steps),
            ("workflow_signals", &mut out.signals),
            ("workflow_events", &mut out.events),
            ("workflow_search_attributes", &mut out.attributes),
        ] {
            *field = self
                .count_on(
                    self.conn(),
                    &format!("SELECT COUNT(*) AS n FROM {table} WHERE execution_id IN ({runs})"),
                    values.clone(),
                )
                .await?;
        }
        Ok(out)
    }

    /// The selection of a prune batch (for plan tests).
    #[doc(hidden)]
    pub fn prune_statement(
        &self,
        namespace: &str,
        ended_before: i64,
        statuses: &[ExecutionStatus],
        batch: u32,
    ) -> sea_orm::Statement {
        let (cond, mut values) = prune_condition(namespace, ended_before, statuses);
        values.push(i64::from(batch.max(1)).into());
        self.stmt(&format!("SELECT id FROM workflow_executions e WHERE {cond} ORDER BY completed_at LIMIT ?"), values)
    }
    async fn prune_in(
        &self,
        db: Db<'_>,
        namespace: &str,
        ended_before: i64,
        statuses: &[ExecutionStatus],
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let (cond, mut values) = prune_condition(namespace, ended_before, statuses);
        values.push(i64::from(batch.max(1)).into());
        // The runs are locked as they are selected, skipping locked rows (a
        // run another transaction holds, a retry say, is left for a later
        // batch, and no lock is waited for, so no lock cycle can form; where
        // the transaction holds the database's write lock, nothing to do). Their rows in the other tables go first (steps would
        // also go by the foreign key's cascade), then the runs, whose end
        // states the delete checks once more.
        let lock = self.dialect().for_update_skip_locked(Some("e"));
        let ids: Vec<String> = db
            .all(self.stmt(
                &format!("SELECT e.id FROM workflow_executions e WHERE {cond} ORDER BY e.completed_at LIMIT ?{lock}"),
                values,
            ))
            .await?
            .iter()
            .map(|r| r.try_get("", "id"))
            .collect::<Result<_, _>>()?;
        let mut out = Pruned::default();
        if ids.is_empty() {
            return Ok(out);
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let id_values = || ids.iter().map(|i| Value::from(i.as_str())).collect::<Vec<_>>();
        for (table, field) in [
            ("workflow_steps", &mut out.steps),
            ("workflow_signals", &mut out.signals),
            ("workflow_events", &mut out.events),
            ("workflow_search_attributes", &mut out.attributes),
        ] {
            let r = db
                .exec(self.stmt(&format!("DELETE FROM {table} WHERE execution_id IN ({marks})"), id_values()))
                .await?;
            *field = r;
        }
        let mut values = id_values();
        values.extend(ENDED.iter().map(|s| Value::from(s.as_str())));
        let ended = vec!["?"; ENDED.len()].join(", ");
        let r = db
            .exec(self.stmt(
                &format!("DELETE FROM workflow_executions WHERE id IN ({marks}) AND status IN ({ended})"),
                values,
            ))
            .await?;
        out.runs = r;
        Ok(out)
    }
}

/// The condition (and its values) selecting the runs a prune deletes.
fn prune_condition(namespace: &str, ended_before: i64, statuses: &[ExecutionStatus]) -> (String, Vec<Value>) {
    let wanted: Vec<ExecutionStatus> = if statuses.is_empty() {
        ENDED.to_vec()
    } else {
        statuses.iter().copied().filter(|s| ENDED.contains(s)).collect()
    };
    let mut values: Vec<Value> = vec![namespace.into(), ended_before.into()];
    if wanted.is_empty() {
        return ("e.namespace = ? AND e.completed_at < ? AND 1 = 0".to_owned(), values);
    }
    values.extend(wanted.iter().map(|s| Value::from(s.as_str())));
    let marks = vec!["?"; wanted.len()].join(", ");
    // A child whose parent has not ended stays: the parent's replay may
    // start it again by its ID (its idempotency key), and would start a
    // second one if the first were gone. So does a detached run whose
    // starter has not ended (no link, but its trigger names the starter).
    (
        format!(
            "e.namespace = ? AND e.completed_at IS NOT NULL AND e.completed_at < ? AND e.status IN ({marks}) \
             AND NOT EXISTS (SELECT 1 FROM workflow_executions p WHERE p.id = COALESCE(e.parent_id, CASE WHEN \
             e.trigger_type = 'child' THEN e.trigger_source END) \
             AND p.status IN ('pending', 'running', 'sleeping', 'suspended'))"
        ),
        values,
    )
}
