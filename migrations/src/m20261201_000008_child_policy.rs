//! Child workflows' cancel policy: whether cancelling the parent cancels
//! the child (the default) or leaves it running (a per-call override).

use crate::prelude::*;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    CancelWithParent,
}

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.alter_table(
        Table::alter()
            .table(Executions::Table)
            .add_column(ColumnDef::new(Executions::CancelWithParent).boolean().not_null().default(true))
            .to_owned(),
    )
    .await
}
