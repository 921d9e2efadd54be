//! Rows read by the types the code declares.
//!
//! A pool row is read by sea-orm's own conversions. A row of a direct
//! connection ([`OwnedRow`]) holds each cell as the database stored it
//! ([`Cell`]), and [`Decode`] turns a cell into the type the caller asks
//! for, by the rules the pool's driver applies: an integer type only from
//! an integer (and within its range), text only from text, bytes from a
//! blob or text, `NULL` only into an `Option`. A cell of another kind is an
//! error naming the column, never a silent `None`.

use super::Row;
use sea_orm::{DbErr, TryGetable};
use std::sync::Arc;

/// A stored value, as a direct connection read it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text (not yet checked for UTF-8: [`Decode`] does that).
    Text(Vec<u8>),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Cell {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Integer(_) => "an integer",
            Cell::Real(_) => "a real number",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "a blob",
        }
    }
}

/// One row of a direct connection's answer: the statement's column names
/// (shared by its rows) and this row's cells.
#[derive(Clone, Debug)]
pub(crate) struct OwnedRow {
    names: Arc<[String]>,
    cells: Vec<Cell>,
}

impl OwnedRow {
    /// A row of `cells`, named by `names` in the same order.
    pub(crate) fn new(names: Arc<[String]>, cells: Vec<Cell>) -> Self {
        OwnedRow { names, cells }
    }

    /// Column `col` as a `T`. With two columns of one name, the first.
    pub(crate) fn get<T: Decode>(&self, col: &str) -> Result<T, DbErr> {
        let i = self
            .names
            .iter()
            .position(|n| n == col)
            .ok_or_else(|| DbErr::Type(format!("the answer has no column `{col}`")))?;
        T::decode(&self.cells[i], col)
    }
}

fn mismatch(col: &str, cell: &Cell, wanted: &str) -> DbErr {
    DbErr::Type(format!("column `{col}` holds {} where {wanted} is declared", cell.kind()))
}

/// A type a column is read as, from either kind of row.
pub(crate) trait Decode: TryGetable + Sized {
    /// The value of `cell`, in column `col`.
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr>;
}

impl Decode for i64 {
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr> {
        match cell {
            Cell::Integer(i) => Ok(*i),
            other => Err(mismatch(col, other, "a 64-bit integer")),
        }
    }
}

impl Decode for i32 {
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr> {
        match cell {
            Cell::Integer(i) => {
                i32::try_from(*i).map_err(|_| DbErr::Type(format!("column `{col}`: {i} does not fit a 32-bit integer")))
            }
            other => Err(mismatch(col, other, "a 32-bit integer")),
        }
    }
}

impl Decode for bool {
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr> {
        match cell {
            Cell::Integer(i) => Ok(*i != 0),
            other => Err(mismatch(col, other, "a boolean")),
        }
    }
}

impl Decode for String {
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr> {
        match cell {
            Cell::Text(t) => {
                String::from_utf8(t.clone()).map_err(|_| DbErr::Type(format!("column `{col}` is not UTF-8")))
            }
            other => Err(mismatch(col, other, "text")),
        }
    }
}

impl Decode for Vec<u8> {
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr> {
        match cell {
            Cell::Blob(b) | Cell::Text(b) => Ok(b.clone()),
            other => Err(mismatch(col, other, "bytes")),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(cell: &Cell, col: &str) -> Result<Self, DbErr> {
        match cell {
            Cell::Null => Ok(None),
            other => T::decode(other, col).map(Some),
        }
    }
}

/// A type built from a whole row (an entity's model).
pub(crate) trait FromRow: Sized {
    /// Reads the row, column by column.
    fn from_row(row: &Row) -> Result<Self, DbErr>;
}

impl FromRow for crate::entity::workflow_executions::Model {
    fn from_row(r: &Row) -> Result<Self, DbErr> {
        // A struct literal: each field's type picks its column's decoder,
        // and a field added to the model does not compile until read here.
        Ok(Self {
            id: r.try_get("", "id")?,
            namespace: r.try_get("", "namespace")?,
            workflow_name: r.try_get("", "workflow_name")?,
            status: r.try_get("", "status")?,
            input_data: r.try_get("", "input_data")?,
            output_data: r.try_get("", "output_data")?,
            error_message: r.try_get("", "error_message")?,
            max_attempts: r.try_get("", "max_attempts")?,
            attempts: r.try_get("", "attempts")?,
            idempotency_key: r.try_get("", "idempotency_key")?,
            trigger_type: r.try_get("", "trigger_type")?,
            trigger_source: r.try_get("", "trigger_source")?,
            created_at: r.try_get("", "created_at")?,
            started_at: r.try_get("", "started_at")?,
            updated_at: r.try_get("", "updated_at")?,
            completed_at: r.try_get("", "completed_at")?,
            due_at: r.try_get("", "due_at")?,
            deadline_at: r.try_get("", "deadline_at")?,
            lease_owner: r.try_get("", "lease_owner")?,
            fencing_token: r.try_get("", "fencing_token")?,
            cancel_requested: r.try_get("", "cancel_requested")?,
            open_position: r.try_get("", "open_position")?,
            open_attempts: r.try_get("", "open_attempts")?,
            signal_wait: r.try_get("", "signal_wait")?,
            parent_id: r.try_get("", "parent_id")?,
            cancel_with_parent: r.try_get("", "cancel_with_parent")?,
            error_data: r.try_get("", "error_data")?,
            workflow_version: r.try_get("", "workflow_version")?,
            suspended_code: r.try_get("", "suspended_code")?,
        })
    }
}

impl FromRow for crate::entity::workflow_steps::Model {
    fn from_row(r: &Row) -> Result<Self, DbErr> {
        Ok(Self {
            id: r.try_get("", "id")?,
            execution_id: r.try_get("", "execution_id")?,
            namespace: r.try_get("", "namespace")?,
            step_id: r.try_get("", "step_id")?,
            step_name: r.try_get("", "step_name")?,
            position: r.try_get("", "position")?,
            kind: r.try_get("", "kind")?,
            status: r.try_get("", "status")?,
            attempts: r.try_get("", "attempts")?,
            max_attempts: r.try_get("", "max_attempts")?,
            output_data: r.try_get("", "output_data")?,
            error_message: r.try_get("", "error_message")?,
            started_at: r.try_get("", "started_at")?,
            completed_at: r.try_get("", "completed_at")?,
            wake_at: r.try_get("", "wake_at")?,
            fencing_token: r.try_get("", "fencing_token")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: Vec<(&str, Cell)>) -> OwnedRow {
        let names: Vec<String> = cells.iter().map(|(n, _)| (*n).to_owned()).collect();
        OwnedRow::new(names.into(), cells.into_iter().map(|(_, c)| c).collect())
    }

    #[test]
    fn cells_are_read_as_the_declared_type_or_refused() {
        let r = row(vec![
            ("attempts", Cell::Integer(3)),
            ("big", Cell::Integer(1 << 40)),
            ("flag", Cell::Integer(1)),
            ("missing", Cell::Null),
            ("name", Cell::Text(b"r1".to_vec())),
            ("bad_utf8", Cell::Text(vec![0xff, 0xfe])),
            ("output", Cell::Blob(vec![1, 2])),
            ("soon", Cell::Text(b"soon".to_vec())),
            ("half", Cell::Real(1.5)),
        ]);
        assert_eq!(r.get::<i32>("attempts").ok(), Some(3));
        assert!(matches!(r.get::<i32>("big"), Err(DbErr::Type(_))), "out of a 32-bit range");
        assert_eq!(r.get::<i64>("big").ok(), Some(1 << 40));
        assert_eq!(r.get::<bool>("flag").ok(), Some(true));
        assert_eq!(r.get::<Option<i32>>("missing").ok(), Some(None));
        assert_eq!(r.get::<Option<Vec<u8>>>("missing").ok(), Some(None));
        assert!(matches!(r.get::<i64>("missing"), Err(DbErr::Type(_))), "NULL into a non-optional");
        assert_eq!(r.get::<String>("name").ok(), Some("r1".to_owned()));
        assert!(matches!(r.get::<String>("bad_utf8"), Err(DbErr::Type(_))));
        assert_eq!(r.get::<Vec<u8>>("output").ok(), Some(vec![1, 2]));
        assert_eq!(r.get::<Vec<u8>>("name").ok(), Some(b"r1".to_vec()), "text reads as bytes, as on the pool");
        // Another storage class than declared: an error, never a NULL.
        assert!(matches!(r.get::<Option<i64>>("soon"), Err(DbErr::Type(_))));
        assert!(matches!(r.get::<Option<i32>>("half"), Err(DbErr::Type(_))));
        assert!(matches!(r.get::<Option<Vec<u8>>>("attempts"), Err(DbErr::Type(_))));
        assert!(matches!(r.get::<Option<String>>("output"), Err(DbErr::Type(_))));
        assert!(matches!(r.get::<i64>("no_such_column"), Err(DbErr::Type(_))));
    }
}
