//! The key of a worker's liveness row names its namespace and its ID
//! (`worker:{len}:{namespace}:{id}`), each up to 255 bytes: the key column
//! becomes unbounded text on PostgreSQL (SQLite does not enforce lengths).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

// See the first migration for why the lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        m.get_connection().execute_unprepared("ALTER TABLE leases ALTER COLUMN resource_id TYPE text").await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        m.get_connection().execute_unprepared("ALTER TABLE leases ALTER COLUMN resource_id TYPE varchar(255)").await?;
        Ok(())
    }
}
