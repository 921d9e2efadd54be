//! Fewer index entries per run: the indexes on a column that most runs
//! leave NULL hold only the rows that set it.
//! - `idx_executions_ns_key` (runs by idempotency key): only runs with a
//!   key;
//! - `idx_workflow_executions_parent` (a run's children): only children,
//!   now by `(namespace, parent_id, created_at, id)`, the children query's
//!   filter and order (SQLite's planner, seeing a near-empty index on
//!   `parent_id` alone, preferred scanning the namespace);
//! - `idx_executions_ns_completed` (retention, the ended-runs chart): only
//!   ended runs.
//!
//! Every query these indexes serve compares the column (`= ?`, `< ?`,
//! `>= ?`), which implies `IS NOT NULL`, so both databases still use them.
//! A run that sets none of the three is written to six of the run table's
//! nine indexes when it starts instead of nine (the unique index on the
//! idempotency key stays whole: `ON CONFLICT` names it), and on PostgreSQL,
//! where an update that changes an indexed column adds an entry to every
//! index whose predicate the new row meets, to six instead of eight when
//! it ends.
//!
//! Downtime: each rebuild reads the whole run table, inside the migration's
//! transaction, and on PostgreSQL the first `DROP INDEX` locks the table
//! against every read and write until that transaction commits. Workers of
//! the old version cannot renew their leases meanwhile (they stop their
//! runs, which resume later); on a large history, migrate in a quiet
//! moment.

use crate::prelude::*;

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    for (name, columns, column) in [
        ("idx_executions_ns_key", "namespace, idempotency_key, created_at, id", "idempotency_key"),
        ("idx_workflow_executions_parent", "namespace, parent_id, created_at, id", "parent_id"),
        ("idx_executions_ns_completed", "namespace, completed_at", "completed_at"),
    ] {
        let conn = m.get_connection();
        conn.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
        conn.execute_unprepared(&format!(
            "CREATE INDEX {name} ON workflow_executions ({columns}) WHERE {column} IS NOT NULL"
        ))
        .await?;
    }
    Ok(())
}
