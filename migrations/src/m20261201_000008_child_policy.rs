//! Child workflows' cancel policy: whether cancelling the parent cancels
//! the child (the default) or leaves it running (a per-call override).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    CancelWithParent,
}

// See the first migration for why the lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Executions::Table)
                .add_column(ColumnDef::new(Executions::CancelWithParent).boolean().not_null().default(true))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Executions::Table).drop_column(Executions::CancelWithParent).to_owned())
            .await
    }
}
