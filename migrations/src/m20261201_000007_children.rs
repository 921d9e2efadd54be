//! Child workflows: a run started by another run's workflow records its
//! parent (`parent_id`), so the parent can be told when it ends and its
//! children can be found (to show them, and to cancel them with it).

use crate::prelude::*;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    ParentId,
}

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.alter_table(
        Table::alter()
            .table(Executions::Table)
            .add_column(ColumnDef::new(Executions::ParentId).string_len(64).null())
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .if_not_exists()
            .name("idx_workflow_executions_parent")
            .table(Executions::Table)
            .col(Executions::ParentId)
            .to_owned(),
    )
    .await?;
    Ok(())
}
