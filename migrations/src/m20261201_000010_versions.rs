//! Deploying changed code while runs are in flight:
//! - `workflow_executions.workflow_version`: the version of the workflow's
//!   code that started the run (NULL: unversioned, claimable by any worker
//!   of the workflow), so workers claim only versions they can replay;
//! - `workflow_executions.suspended_code`: for a run suspended by
//!   non-determinism, the code fingerprint that could not replay it (a
//!   worker with other code retries it);
//! - `leases.registrations`: what a live worker registers (workflow names
//!   and versions), so runs nobody can run are visible.

use crate::prelude::*;

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

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
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
        Table::alter().table(Leases::Table).add_column(ColumnDef::new(Leases::Registrations).text().null()).to_owned(),
    )
    .await
}
