//! Events: durable key/value pairs a run publishes while it runs (its
//! status for a checkout page, say), readable by clients at any time. One
//! row per (run, key), replaced by each new value.

use crate::prelude::*;

#[derive(DeriveIden)]
enum Events {
    #[sea_orm(iden = "workflow_events")]
    Table,
    ExecutionId,
    EventKey,
    Namespace,
    Value,
    UpdatedAt,
}

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(Events::Table)
            .if_not_exists()
            .col(ColumnDef::new(Events::ExecutionId).string_len(64).not_null())
            .col(ColumnDef::new(Events::EventKey).string_len(255).not_null())
            .col(ColumnDef::new(Events::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(Events::Value).blob().not_null())
            .col(ColumnDef::new(Events::UpdatedAt).big_integer().not_null())
            .primary_key(Index::create().col(Events::ExecutionId).col(Events::EventKey))
            .to_owned(),
    )
    .await?;
    Ok(())
}
