//! Child workflows: a run started by another run's workflow records its
//! parent (`parent_id`), so the parent can be told when it ends and its
//! children can be found (to show them, and to cancel them with it).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    ParentId,
}

// See the first migration for why the lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
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

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_workflow_executions_parent").table(Executions::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(Executions::Table).drop_column(Executions::ParentId).to_owned()).await?;
        Ok(())
    }
}
