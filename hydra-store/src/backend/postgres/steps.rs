//! PostgreSQL: the step results of a group commit that move their runs'
//! open steps, written together. First every run the batch writes, and the
//! parent of every run it ends, is locked in ID order (one statement,
//! [`lock_runs_statement`], sent by `store/batch.rs` through
//! `Dialect::lock_runs`: the order of every multi-run transaction, so none
//! waits for another in a cycle), then one statement of arrays (`unnest`, the
//! same text whatever the batch's size, so one prepared statement serves
//! every batch) updates the runs under the fence, moving their open steps,
//! and inserts the steps of the runs it updated. A row refused (a lost
//! lease, a recorded step) changes nothing: the caller rolls back and
//! applies the steps apart, each with its own answer.

use crate::backend::{HotStep, StepAnswers};
use crate::error::StoreError;
use crate::model::{StepOutcome, to_i32};
use crate::sql::Db;
use crate::store::{BatchValue, Store, step_write};

/// The bytes of the outputs and errors `hot` writes.
pub(super) fn output_bytes(hot: &[(usize, HotStep<'_>)]) -> usize {
    hot.iter()
        .map(|(_, (_, rec, _))| match &rec.outcome {
            StepOutcome::Completed(out) => out.len(),
            StepOutcome::FailedWith(e, data) => e.len().saturating_add(data.len()),
            StepOutcome::Failed(e) | StepOutcome::AttemptFailed(e) => e.len(),
            StepOutcome::Waiting | StepOutcome::TimedOut => 0,
        })
        .fold(0usize, usize::saturating_add)
}

/// The statement of `Dialect::lock_runs`: the runs `ids` and the parents
/// of the runs `ending`, locked in byte order of their IDs (`COLLATE "C"`:
/// the order of `lock_order` and of lease renewals, whatever the
/// database's collation). After it, no other transaction can change those
/// runs, so a statement of this transaction reads their current token. One array of IDs, the
/// parents' found first (an `InitPlan`), so both are found through the
/// primary key: `id = ANY(..) OR id IN (SELECT ..)` would read the whole
/// run table, every batch. (A parent's NULL in the array matches no row.)
pub(crate) fn lock_runs_statement(store: &Store, ids: Vec<String>, ending: Vec<String>) -> sea_orm::Statement {
    store.stmt(
        "SELECT 1 FROM workflow_executions WHERE id = ANY(?::text[] \
         || ARRAY(SELECT parent_id::text FROM workflow_executions WHERE id = ANY(?::text[]))) \
         ORDER BY id COLLATE \"C\" FOR UPDATE",
        vec![ids.into(), ending.into()],
    )
}

/// The step results `items` in one statement of arrays, after
/// `Dialect::lock_runs` (see the module docs). `Some` answers in the order of
/// `items` when every row was written, `None` when one was refused (the
/// caller rolls back).
pub(super) async fn steps_in(
    store: &Store,
    db: Db<'_>,
    items: &[HotStep<'_>],
    now: i64,
) -> Result<Option<StepAnswers>, StoreError> {
    let n = items.len();
    let mut c = Columns::with_capacity(n);
    for (lease, rec, open) in items {
        let (status, output, error, completed_at) = step_write::outcome_columns(&rec.outcome, now);
        c.execution_id.push(lease.execution_id.to_string());
        c.namespace.push(lease.namespace.clone());
        c.step_id.push(rec.step_id.to_string());
        c.step_name.push(rec.step_name.clone());
        c.position.push(to_i32(rec.position));
        c.kind.push(rec.kind.as_str().to_owned());
        c.status.push(status.to_owned());
        c.attempts.push(to_i32(rec.attempt.max(1)));
        c.max_attempts.push(to_i32(rec.max_attempts.max(1)));
        c.has_output.push(output.is_some());
        c.output.push(output.unwrap_or_default());
        c.has_error.push(error.is_some());
        c.error.push(error.unwrap_or_default());
        c.started_at.push(rec.started_at.unwrap_or(now));
        c.has_completed.push(completed_at.is_some());
        c.completed_at.push(completed_at.unwrap_or(0));
        c.has_wake.push(rec.wake_at.is_some());
        c.wake_at.push(rec.wake_at.unwrap_or(0));
        c.token.push(lease.token.0);
        c.open_position.push(to_i32(open.position));
        c.open_attempts.push(to_i32(open.attempts));
    }
    // In the order of the statement's placeholders: the arrays, then the
    // update's time.
    let values: Vec<sea_orm::Value> = vec![
        c.execution_id.into(),
        c.namespace.into(),
        c.step_id.into(),
        c.step_name.into(),
        c.position.into(),
        c.kind.into(),
        c.status.into(),
        c.attempts.into(),
        c.max_attempts.into(),
        c.output.into(),
        c.has_output.into(),
        c.error.into(),
        c.has_error.into(),
        c.started_at.into(),
        c.completed_at.into(),
        c.has_completed.into(),
        c.wake_at.into(),
        c.has_wake.into(),
        c.token.into(),
        c.open_position.into(),
        c.open_attempts.into(),
        now.into(),
    ];
    // As the one-row fenced insert (`fenced_insert`): the update is the
    // fence and moves the open step only if it is the step written
    // (`OpenWhen::At`); the insert takes the rows of the runs it updated.
    let sql = format!(
        "WITH v AS MATERIALIZED (SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::int4[], \
           ?::text[], ?::text[], ?::int4[], ?::int4[], ?::bytea[], ?::bool[], ?::text[], ?::bool[], ?::int8[], \
           ?::int8[], ?::bool[], ?::int8[], ?::bool[], ?::int8[], ?::int4[], ?::int4[]) \
           AS v(execution_id, namespace, step_id, step_name, position, kind, status, attempts, max_attempts, \
           output_data, has_output, error_message, has_error, started_at, completed_at, has_completed, wake_at, \
           has_wake, fencing_token, open_position, open_attempts)), \
         fence AS (UPDATE workflow_executions e SET updated_at = ?, \
           open_position = CASE WHEN e.open_position = v.position THEN v.open_position ELSE e.open_position END, \
           open_attempts = CASE WHEN e.open_position = v.position THEN v.open_attempts ELSE e.open_attempts END \
           FROM v WHERE e.id = v.execution_id AND e.fencing_token = v.fencing_token AND e.status = 'running' \
           AND e.namespace || '' = v.namespace RETURNING e.id) \
         {} SELECT v.execution_id, v.namespace, v.step_id, v.step_name, v.position, v.kind, v.status, \
           v.attempts, v.max_attempts, CASE WHEN v.has_output THEN v.output_data END, \
           CASE WHEN v.has_error THEN v.error_message END, v.started_at, \
           CASE WHEN v.has_completed THEN v.completed_at END, CASE WHEN v.has_wake THEN v.wake_at END, \
           v.fencing_token FROM v JOIN fence ON fence.id = v.execution_id {}",
        step_write::STEP_INSERT,
        step_write::step_tail(store.dialect()),
    );
    let written = db.exec(store.stmt(&sql, values)).await?;
    if written != n as u64 {
        return Ok(None);
    }
    Ok(Some(items.iter().map(|_| Ok(BatchValue::Checkpoint)).collect()))
}

/// The columns of [`steps_in`]'s arrays (PostgreSQL arrays hold no NULL
/// here: a flag says whether a nullable column has a value).
#[derive(Default)]
struct Columns {
    execution_id: Vec<String>,
    namespace: Vec<String>,
    step_id: Vec<String>,
    step_name: Vec<String>,
    position: Vec<i32>,
    kind: Vec<String>,
    status: Vec<String>,
    attempts: Vec<i32>,
    max_attempts: Vec<i32>,
    output: Vec<Vec<u8>>,
    has_output: Vec<bool>,
    error: Vec<String>,
    has_error: Vec<bool>,
    started_at: Vec<i64>,
    completed_at: Vec<i64>,
    has_completed: Vec<bool>,
    wake_at: Vec<i64>,
    has_wake: Vec<bool>,
    token: Vec<i64>,
    open_position: Vec<i32>,
    open_attempts: Vec<i32>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Columns {
            execution_id: Vec::with_capacity(n),
            namespace: Vec::with_capacity(n),
            step_id: Vec::with_capacity(n),
            step_name: Vec::with_capacity(n),
            output: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            ..Columns::default()
        }
    }
}

impl Store {
    /// The statement that locks a PostgreSQL group commit's runs (see
    /// `Dialect::lock_runs`), for plan tests.
    #[doc(hidden)]
    pub fn lock_runs_statement(&self, ids: Vec<String>, ending: Vec<String>) -> sea_orm::Statement {
        lock_runs_statement(self, ids, ending)
    }
}
