//! Child workflows: a run's parent is told when the run ends, by a signal
//! (`child:{id}`, [`reserved::signal::child`], keyed by the same name so it
//! is sent once) written in the
//! transaction that ends the run; and a run's children can be listed.

use super::Store;
use crate::entity::workflow_executions as exec;
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{Execution, Terminal};
use crate::reserved::{self, payload_tag};
use crate::sql::Db;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

/// The payload of a child's end: its output if it completed; otherwise
/// [`payload_tag::CHILD_END`] (a tag no codec uses), its status, a newline
/// and its error.
pub fn child_outcome_payload(terminal: &Terminal) -> Vec<u8> {
    match terminal {
        Terminal::Completed(out) => out.clone(),
        Terminal::Failed(m)
        | Terminal::FailedWith(m, _)
        | Terminal::Cancelled(m)
        | Terminal::TimedOut(m)
        | Terminal::CompensationFailed(m) => {
            let mut v = vec![payload_tag::CHILD_END];
            v.extend_from_slice(terminal.status().as_str().as_bytes());
            v.push(b'\n');
            v.extend_from_slice(m.as_bytes());
            v
        }
    }
}

impl Store {
    /// Tells run `id`'s parent, if it has one, that `id` ended as
    /// `terminal`: inserts the parent's signal (once) and wakes the parent
    /// if it waits for a signal. Runs in the transaction that ends `id`.
    pub(super) async fn notify_parent(
        &self,
        db: Db<'_>,
        id: &ExecutionId,
        terminal: &Terminal,
        now: i64,
    ) -> Result<(), StoreError> {
        let name = reserved::signal::child(id);
        // Lock the parent's row first, as a signal send does: a parent
        // between "no signal yet" and "parked" holds it, so this waits and
        // then wakes it; never "signal inserted, parent parks unwoken".
        let parent = db
            .one(self.stmt(
                &format!(
                    "UPDATE workflow_executions SET updated_at = updated_at \
                     WHERE id = (SELECT parent_id FROM workflow_executions WHERE id = ?){}",
                    self.dialect().returning("id")
                ),
                vec![id.as_str().into()],
            ))
            .await?;
        let Some(parent) = parent else { return Ok(()) };
        let parent = ExecutionId::from_string(parent.try_get::<String>("", "id")?);
        let inserted = db
            .exec(self.stmt(
                &format!(
                    "INSERT INTO workflow_signals (namespace, execution_id, name, payload, idempotency_key, \
                     created_at) SELECT namespace, id, ?, ?, ?, ? FROM workflow_executions WHERE id = ?{}",
                    self.dialect().on_conflict_ignore("execution_id, idempotency_key")
                ),
                vec![
                    name.as_str().into(),
                    child_outcome_payload(terminal).into(),
                    name.as_str().into(),
                    now.into(),
                    parent.as_str().into(),
                ],
            ))
            .await?;
        if inserted == 1 {
            self.wake_if_waiting(db, &parent, now).await?;
        }
        Ok(())
    }

    /// The runs started by run `id` as its children, oldest first.
    pub async fn children(&self, namespace: &str, id: &ExecutionId) -> Result<Vec<Execution>, StoreError> {
        Self::children_query(namespace, id).all(&self.db).await?.into_iter().map(Execution::try_from).collect()
    }

    fn children_query(namespace: &str, id: &ExecutionId) -> sea_orm::Select<exec::Entity> {
        exec::Entity::find()
            .filter(exec::Column::Namespace.eq(namespace))
            .filter(exec::Column::ParentId.eq(id.as_str()))
            .order_by_asc(exec::Column::CreatedAt)
            .order_by_asc(exec::Column::Id)
    }

    /// Children of namespace `namespace` that should have been cancelled
    /// with their parent and were not: linked to it
    /// (`cancel_with_parent`), not ended and with no cancel accepted, while
    /// the parent ended cancelled (a worker that ended the parent died
    /// before it cancelled them). At most `limit`, oldest first.
    pub async fn children_left_by_cancelled_parents(
        &self,
        namespace: &str,
        limit: u64,
    ) -> Result<Vec<ExecutionId>, StoreError> {
        let rows = crate::sql::Db::Pool(&self.db)
            .all(self.stmt(
                "SELECT c.id AS id FROM workflow_executions c JOIN workflow_executions p ON p.id = c.parent_id \
                 WHERE c.namespace = ? AND c.cancel_with_parent = ? AND c.cancel_requested = ? \
                 AND c.status IN ('pending', 'running', 'sleeping', 'suspended') AND p.status = 'cancelled' \
                 ORDER BY c.created_at, c.id LIMIT ?",
                vec![namespace.into(), true.into(), false.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
            ))
            .await?;
        rows.iter().map(|r| Ok(ExecutionId::from_string(r.try_get::<String>("", "id")?))).collect()
    }

    /// The statement [`Store::children`] runs (for plan tests).
    #[doc(hidden)]
    pub fn children_statement(&self, namespace: &str, id: &ExecutionId) -> sea_orm::Statement {
        sea_orm::QueryTrait::build(&Self::children_query(namespace, id), self.dialect().db_backend())
    }
}
