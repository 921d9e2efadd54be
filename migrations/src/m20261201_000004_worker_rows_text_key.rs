//! The key of a worker's liveness row names its namespace and its ID
//! (`worker:{len}:{namespace}:{id}`), each up to 255 bytes: the key column
//! becomes unbounded text on PostgreSQL (SQLite does not enforce lengths).

use crate::prelude::*;

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    if !m.dialect().enforces_text_lengths() {
        return Ok(());
    }
    m.get_connection().execute_unprepared("ALTER TABLE leases ALTER COLUMN resource_id TYPE text").await?;
    Ok(())
}
