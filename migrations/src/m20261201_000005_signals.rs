//! Signals: named messages sent to a run, buffered until the run receives
//! them, each received once (recorded in the run's history when received).
//!
//! - `workflow_signals` holds every accepted signal in the order accepted
//!   (`id`); `consumed_at`/`consumed_position` say which receive took it.
//!   `UNIQUE(execution_id, idempotency_key)` makes a retried send with the
//!   same key a no-op (NULL keys never conflict).
//! - `workflow_executions.signal_wait` marks a run parked in a receive, so a
//!   send wakes only runs that wait for a signal.

use crate::prelude::*;

#[derive(DeriveIden)]
enum Signals {
    #[sea_orm(iden = "workflow_signals")]
    Table,
    Id,
    Namespace,
    ExecutionId,
    Name,
    Payload,
    IdempotencyKey,
    CreatedAt,
    ConsumedAt,
    ConsumedPosition,
}

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    SignalWait,
}

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(Signals::Table)
            .if_not_exists()
            .col(ColumnDef::new(Signals::Id).big_integer().not_null().auto_increment().primary_key())
            .col(ColumnDef::new(Signals::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(Signals::ExecutionId).string_len(64).not_null())
            .col(ColumnDef::new(Signals::Name).string_len(255).not_null())
            .col(ColumnDef::new(Signals::Payload).blob().not_null())
            .col(ColumnDef::new(Signals::IdempotencyKey).string_len(255).null())
            .col(ColumnDef::new(Signals::CreatedAt).big_integer().not_null())
            .col(ColumnDef::new(Signals::ConsumedAt).big_integer().null())
            .col(ColumnDef::new(Signals::ConsumedPosition).integer().null())
            .index(
                Index::create()
                    .name("uq_workflow_signals_idempotency")
                    .col(Signals::ExecutionId)
                    .col(Signals::IdempotencyKey)
                    .unique(),
            )
            .to_owned(),
    )
    .await?;
    // A receive reads the oldest unconsumed signal of one name.
    m.create_index(
        Index::create()
            .if_not_exists()
            .name("idx_workflow_signals_pending")
            .table(Signals::Table)
            .col(Signals::ExecutionId)
            .col(Signals::Name)
            .col(Signals::ConsumedAt)
            .col(Signals::Id)
            .to_owned(),
    )
    .await?;
    m.alter_table(
        Table::alter()
            .table(Executions::Table)
            .add_column(ColumnDef::new(Executions::SignalWait).boolean().not_null().default(false))
            .to_owned(),
    )
    .await?;
    Ok(())
}
