//! A backend's own synchronous connection (see [`Direct`]).

use super::OwnedRow;
use sea_orm::{DbErr, Statement};

/// A synchronous connection that a backend drives itself, outside sea-orm's
/// pool: SQLite's writer thread runs whole write transactions on one, one
/// hand-off per transaction instead of one per statement.
///
/// It keeps its own transaction nesting: [`Direct::begin`] opens a
/// transaction, or a savepoint inside the open one; [`Direct::end`] ends
/// the innermost. Each call reports its own failure.
pub(crate) trait Direct: Send + Sync {
    /// Runs a statement; rows changed.
    fn execute(&self, stmt: &Statement) -> Result<u64, DbErr>;
    /// Runs a query; its rows, read by name later.
    fn query(&self, stmt: &Statement) -> Result<Vec<OwnedRow>, DbErr>;
    /// Runs statements without values, one after the other.
    #[cfg(test)]
    fn execute_batch(&self, sql: &str) -> Result<(), DbErr>;
    /// Opens a transaction (or a savepoint in the open one).
    fn begin(&self) -> Result<(), DbErr>;
    /// Ends the innermost transaction level: commits (releases) it, or
    /// rolls it back.
    fn end(&self, commit: bool) -> Result<(), DbErr>;
}
