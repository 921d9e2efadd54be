//! Deploying changed code while runs are in flight:
//! - `workflow_executions.workflow_version`: the version of the workflow's
//!   code that started the run (NULL: unversioned, claimable by any worker
//!   of the workflow), so workers claim only versions they can replay;
//! - `workflow_executions.suspended_code`: for a run suspended by
//!   non-determinism, the code fingerprint that could not replay it (a
//!   worker with other code retries it);
//! - `leases.registrations`: what a live worker registers (workflow names
//!   and versions), so runs nobody can run are visible.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    WorkflowVersion,
    SuspendedCode,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Registrations,
}

// See the first migration for why the lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Executions::Table)
                .add_column(ColumnDef::new(Executions::WorkflowVersion).integer().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Executions::Table)
                .add_column(ColumnDef::new(Executions::SuspendedCode).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Leases::Table)
                .add_column(ColumnDef::new(Leases::Registrations).text().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Leases::Table).drop_column(Leases::Registrations).to_owned()).await?;
        m.alter_table(Table::alter().table(Executions::Table).drop_column(Executions::SuspendedCode).to_owned())
            .await?;
        m.alter_table(Table::alter().table(Executions::Table).drop_column(Executions::WorkflowVersion).to_owned()).await
    }
}
