//! What an operator is shown of one run (`hydra runs show`, the console's
//! run page): pages of its steps, children, signals and events, each
//! counted whole, with every payload over a size left unread. A run may
//! record a million steps of 8 MiB outputs: its page reads what it shows.

use super::Store;
use super::inspect::{EventRow, SignalRow, event_row, signal_row};
use crate::entity::workflow_executions as exec;
use crate::entity::workflow_steps;
use crate::error::StoreError;
use crate::ids::ExecutionId;
use crate::model::{Execution, Step};
use crate::sql::Row;
use sea_orm::{IdenStatic, Iterable, Value};

/// How much of a run [`Store::steps_shown`] and its siblings read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShowLimits {
    /// The most rows read per table (steps, children, signals, events).
    pub rows: u32,
    /// Payloads (step outputs, signal payloads, event values) stored
    /// larger than this many bytes are left unread; errors are cut to as
    /// many characters.
    pub payload_bytes: u32,
    /// The position of the first step read (the step table's page).
    pub steps_from: u32,
}

impl Default for ShowLimits {
    fn default() -> Self {
        ShowLimits { rows: 500, payload_bytes: 4096, steps_from: 0 }
    }
}

impl ShowLimits {
    /// 500 rows per table, payloads up to 4 KiB, steps from position 0.
    pub fn new() -> Self {
        ShowLimits::default()
    }

    /// At most `rows` rows per table (at least 1).
    pub fn rows(mut self, rows: u32) -> Self {
        self.rows = rows.max(1);
        self
    }

    /// Payloads up to `bytes` bytes are read; larger ones are not.
    pub fn payload_bytes(mut self, bytes: u32) -> Self {
        self.payload_bytes = bytes;
        self
    }

    /// The payload limit as a statement's value: within a 32-bit integer
    /// (the cut of a text takes one on PostgreSQL).
    fn cap(&self) -> i64 {
        i64::from(self.payload_bytes.min(i32::MAX.unsigned_abs()))
    }

    /// Steps from position `position` on.
    pub fn steps_from(mut self, position: u32) -> Self {
        self.steps_from = position;
        self
    }
}

/// A row as an operator is shown it: the row, and its payload's size as
/// stored. When [`Shown::left_out`] says so, the row's payload is empty:
/// it was larger than the page reads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shown<T> {
    /// The row (its payload empty if it was left out).
    pub row: T,
    /// The size of its payload as stored, in bytes (0: none).
    pub stored_bytes: u64,
    /// Whether the payload was left out (over [`ShowLimits::payload_bytes`]).
    pub left_out: bool,
}

impl<T> Shown<T> {
    /// The stored size of the payload that was left out, if one was.
    pub fn left_out(&self) -> Option<u64> {
        self.left_out.then_some(self.stored_bytes)
    }

    /// The same row changed by `f` (its payload's size and flag kept).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Shown<U> {
        Shown { row: f(self.row), stored_bytes: self.stored_bytes, left_out: self.left_out }
    }
}

impl<T> std::ops::Deref for Shown<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.row
    }
}

/// One page of a table and how many rows the table holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The rows read, in the table's order.
    pub rows: Vec<T>,
    /// How many rows the table holds for the run.
    pub total: u64,
}

/// The select list of the columns `all`, with `payload` read only up to
/// `?` bytes (else as an empty value of its type), `text` cut to `?`
/// characters, then the payload's stored size (`stored_bytes`). Every `?`
/// of it takes the same value, the page's limit.
fn columns(all: &[&str], payload: &str, text: Option<&str>) -> String {
    all.iter()
        .map(|c| {
            if *c == payload {
                format!("CASE WHEN length({c}) > ? THEN substr({c}, 1, 0) ELSE {c} END AS {c}")
            } else if Some(*c) == text {
                format!("substr({c}, 1, CAST(? AS INTEGER)) AS {c}")
            } else {
                (*c).to_owned()
            }
        })
        .chain([format!("CAST(COALESCE(length({payload}), 0) AS BIGINT) AS stored_bytes")])
        .collect::<Vec<_>>()
        .join(", ")
}

/// `value` as shown within `limits`: its payload's stored size, read from
/// `row`, says whether the payload was left out.
fn shown<T>(row: &Row, value: T, limits: ShowLimits) -> Result<Shown<T>, StoreError> {
    let stored = u64::try_from(row.try_get::<i64>("", "stored_bytes")?).unwrap_or(0);
    let left_out = stored > u64::try_from(limits.cap()).unwrap_or(0);
    Ok(Shown { row: value, stored_bytes: stored, left_out })
}

impl Store {
    /// How many rows of `table` have `column` = `id`, counted in the index
    /// that leads with `column` (run IDs are unique across namespaces; the
    /// namespace was checked on the run's own row). With `namespace`, for
    /// an index that leads with it (the children's).
    async fn count_of(
        &self,
        table: &str,
        namespace: Option<&str>,
        id: &ExecutionId,
        column: &str,
    ) -> Result<u64, StoreError> {
        let (sql, values): (String, Vec<Value>) = match namespace {
            Some(ns) => (
                format!("SELECT COUNT(*) AS n FROM {table} WHERE namespace = ? AND {column} = ?"),
                vec![ns.into(), id.as_str().into()],
            ),
            None => (format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = ?"), vec![id.as_str().into()]),
        };
        self.count_on(self.conn(), &sql, values).await
    }

    /// A page of run `id`'s recorded steps, from position
    /// [`ShowLimits::steps_from`], outputs over the limit left unread.
    pub async fn steps_shown(
        &self,
        namespace: &str,
        id: &ExecutionId,
        limits: ShowLimits,
    ) -> Result<Page<Shown<Step>>, StoreError> {
        let all: Vec<&str> = workflow_steps::Column::iter().map(|c| c.as_str()).collect();
        let cols = columns(&all, "output_data", Some("error_message"));
        let cap = limits.cap();
        let sql = format!(
            "SELECT {cols} FROM workflow_steps WHERE namespace = ? AND execution_id = ? AND position >= ? \
             ORDER BY position LIMIT ?"
        );
        // The select list's two limits (output, error), then the rest.
        let values: Vec<Value> = vec![
            cap.into(),
            cap.into(),
            namespace.into(),
            id.as_str().into(),
            i64::from(limits.steps_from).into(),
            i64::from(limits.rows).into(),
        ];
        let rows = self.conn().all(self.stmt(&sql, values)).await?;
        let rows = rows
            .iter()
            .map(|r| shown(r, Step::try_from(r.to::<workflow_steps::Model>()?)?, limits))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let total = self.count_of("workflow_steps", None, id, "execution_id").await?;
        Ok(Page { rows, total })
    }

    /// A page of the signals sent to run `id`, in the order they were
    /// accepted, payloads over the limit left unread.
    pub async fn signals_shown(
        &self,
        namespace: &str,
        id: &ExecutionId,
        limits: ShowLimits,
    ) -> Result<Page<Shown<SignalRow>>, StoreError> {
        let cols = ["name", "payload", "created_at", "consumed_at", "consumed_position"];
        self.payload_page("workflow_signals", &cols, "payload", "id", namespace, id, limits, signal_row).await
    }

    /// A page of the events run `id` published, by key, values over the
    /// limit left unread.
    pub async fn events_shown(
        &self,
        namespace: &str,
        id: &ExecutionId,
        limits: ShowLimits,
    ) -> Result<Page<Shown<EventRow>>, StoreError> {
        let cols = ["event_key", "value", "updated_at"];
        self.payload_page("workflow_events", &cols, "value", "event_key", namespace, id, limits, event_row).await
    }

    /// A page of `table`'s rows of run `id` in `order`, read by `read`,
    /// `payload` left unread over the limit; and how many there are.
    #[allow(clippy::too_many_arguments)]
    async fn payload_page<T>(
        &self,
        table: &str,
        cols: &[&str],
        payload: &str,
        order: &str,
        namespace: &str,
        id: &ExecutionId,
        limits: ShowLimits,
        read: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Page<Shown<T>>, StoreError> {
        let cols = columns(cols, payload, None);
        let cap = limits.cap();
        let rows = self
            .conn()
            .all(self.stmt(
                &format!(
                    "SELECT {cols} FROM {table} WHERE execution_id = ? AND namespace = ? ORDER BY {order} LIMIT ?"
                ),
                vec![cap.into(), id.as_str().into(), namespace.into(), i64::from(limits.rows).into()],
            ))
            .await?;
        let rows = rows.iter().map(|r| shown(r, read(r)?, limits)).collect::<Result<Vec<_>, StoreError>>()?;
        let total = self.count_of(table, None, id, "execution_id").await?;
        Ok(Page { rows, total })
    }

    /// A page of the runs run `id` started as its children, oldest first,
    /// without their payloads.
    pub async fn children_shown(
        &self,
        namespace: &str,
        id: &ExecutionId,
        limits: ShowLimits,
    ) -> Result<Page<Execution>, StoreError> {
        let cols = exec::Column::iter()
            .map(|c| match c {
                exec::Column::InputData | exec::Column::OutputData | exec::Column::ErrorData => {
                    format!("substr({0}, 1, 0) AS {0}", c.as_str())
                }
                _ => c.as_str().to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .conn()
            .all(self.stmt(
                &format!(
                    "SELECT {cols} FROM workflow_executions WHERE namespace = ? AND parent_id = ? \
                     ORDER BY created_at, id LIMIT ?"
                ),
                vec![namespace.into(), id.as_str().into(), i64::from(limits.rows).into()],
            ))
            .await?;
        let rows =
            rows.iter().map(|r| Execution::try_from(r.to::<exec::Model>()?)).collect::<Result<Vec<_>, StoreError>>()?;
        let total = self.count_of("workflow_executions", Some(namespace), id, "parent_id").await?;
        Ok(Page { rows, total })
    }
}
