//! SQLite: the step results of a group commit that move their runs' open
//! steps, of one run each, in two statements however many there are: one
//! multi-row fenced insert and one multi-row update of the open steps (on
//! SQLite each statement is a round trip to the connection's thread, and so
//! is each row a statement returns: the insert returns none). Every write
//! transaction holds the database's write lock, so an `EXISTS` check of
//! the token is the fence.

use crate::backend::{HotStep, StepAnswers};
use crate::error::StoreError;
use crate::model::to_i32;
use crate::sql::Db;
use crate::store::{BatchValue, Store, step_write};
use sea_orm::{DbErr, Value};

/// Writes `items` (see the module docs). A row the insert refused (lost
/// lease, recorded step) changes nothing. When every row was written, the
/// update moves every run's open step and the results are in the order of
/// `items`; when one of several was refused, `None`: the caller rolls back
/// and applies them apart, each with its own answer (refusals are rare: a
/// lost lease, a replay). One step alone always gets its own answer.
pub(super) async fn steps_in(
    store: &Store,
    db: Db<'_>,
    items: &[HotStep<'_>],
    now: i64,
) -> Result<Option<StepAnswers>, StoreError> {
    let mut values = Vec::with_capacity(items.len() * 15);
    for (lease, rec, _) in items {
        values.extend(step_write::step_row(lease, rec, now));
    }
    let sql = format!(
        "{} SELECT * FROM (VALUES {}) AS v WHERE EXISTS (SELECT 1 FROM workflow_executions e \
         WHERE e.id = v.column1 AND e.fencing_token = v.column15 AND e.status = 'running' \
         AND e.namespace || '' = v.column2) {}",
        step_write::STEP_INSERT,
        vec![format!("({})", step_write::STEP_ROW); items.len()].join(", "),
        step_write::step_tail(store.dialect()),
    );
    let written = db.exec(store.stmt(&sql, values)).await.map_err(|e| match items {
        // One step: a unique violation is its position taken. Several:
        // the group commit retries them one by one to find out.
        [(lease, rec, _)] => step_write::position_conflict(e, lease, rec.position),
        _ => e.into(),
    })?;
    if written != items.len() as u64 {
        return match items {
            [(lease, rec, _)] => Ok(Some(vec![Err(store.why_refused(db, lease, &rec.step_id).await)])),
            _ => Ok(None),
        };
    }
    let mut values: Vec<Value> = vec![now.into()];
    for (lease, rec, open) in items {
        values.push(lease.execution_id.as_str().into());
        values.push(lease.token.0.into());
        values.push(to_i32(rec.position).into());
        values.push(to_i32(open.position).into());
        values.push(to_i32(open.attempts).into());
    }
    // As `open_set` with the step's position: only a run whose open step is
    // the one written moves on.
    let sql = format!(
        "UPDATE workflow_executions SET updated_at = ?, \
         open_position = CASE WHEN workflow_executions.open_position = v.column3 THEN v.column4 \
           ELSE workflow_executions.open_position END, \
         open_attempts = CASE WHEN workflow_executions.open_position = v.column3 THEN v.column5 \
           ELSE workflow_executions.open_attempts END \
         FROM (VALUES {}) AS v WHERE workflow_executions.id = v.column1 \
         AND workflow_executions.fencing_token = v.column2",
        vec!["(?, ?, ?, ?, ?)"; items.len()].join(", ")
    );
    let moved = db.exec(store.stmt(&sql, values)).await?;
    if moved != items.len() as u64 {
        return Err(StoreError::Database(DbErr::Custom(format!(
            "moved {moved} open steps for {} written steps",
            items.len()
        ))));
    }
    Ok(Some(items.iter().map(|_| Ok(BatchValue::Checkpoint)).collect()))
}
