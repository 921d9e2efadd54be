//! The initial schema: executions, steps, worker leases and cron schedules.
//!
//! Design points a reader of the SQL should know:
//! - An execution's lease lives on its own row (`lease_owner`, `fencing_token`,
//!   and `due_at`, which holds the lease expiry while the run is `running`), so
//!   a claim, a renewal and the fencing check of every write touch one row in
//!   one statement.
//! - `due_at` is the single claim key: the wake-up time of a pending or
//!   sleeping run, the lease expiry of a running one, and NULL once the run is
//!   terminal. The partial index on `(namespace, due_at) WHERE due_at IS NOT
//!   NULL` therefore never holds finished runs, and a claim reads only the due
//!   prefix of it: its cost does not grow with finished or future work.
//! - `UNIQUE(execution_id, step_id)` and `UNIQUE(execution_id, position)`
//!   make a second record of one step impossible at the schema level.
//! - `leases` keeps the seed's table for worker liveness (one row per worker,
//!   renewed by its heartbeat), so operators can see which workers are alive.

use crate::prelude::*;

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(Executions::Table)
            .if_not_exists()
            .col(ColumnDef::new(Executions::Id).string_len(64).not_null().primary_key())
            .col(ColumnDef::new(Executions::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(Executions::WorkflowName).string_len(255).not_null())
            .col(ColumnDef::new(Executions::Status).string_len(16).not_null())
            .col(ColumnDef::new(Executions::InputData).blob().not_null())
            .col(ColumnDef::new(Executions::OutputData).blob().null())
            .col(ColumnDef::new(Executions::ErrorMessage).text().null())
            .col(ColumnDef::new(Executions::MaxAttempts).integer().not_null())
            .col(ColumnDef::new(Executions::Attempts).integer().not_null().default(0))
            .col(ColumnDef::new(Executions::IdempotencyKey).string_len(255).null())
            .col(ColumnDef::new(Executions::TriggerType).string_len(16).not_null())
            .col(ColumnDef::new(Executions::TriggerSource).string_len(255).null())
            .col(ColumnDef::new(Executions::CreatedAt).big_integer().not_null())
            .col(ColumnDef::new(Executions::StartedAt).big_integer().null())
            .col(ColumnDef::new(Executions::UpdatedAt).big_integer().not_null())
            .col(ColumnDef::new(Executions::CompletedAt).big_integer().null())
            .col(ColumnDef::new(Executions::DueAt).big_integer().null())
            .col(ColumnDef::new(Executions::DeadlineAt).big_integer().null())
            .col(ColumnDef::new(Executions::LeaseOwner).string_len(255).null())
            .col(ColumnDef::new(Executions::FencingToken).big_integer().not_null().default(0))
            .col(ColumnDef::new(Executions::CancelRequested).boolean().not_null().default(false))
            .col(ColumnDef::new(Executions::OpenPosition).integer().not_null().default(0))
            .col(ColumnDef::new(Executions::OpenAttempts).integer().not_null().default(0))
            .index(
                Index::create()
                    .name("uq_workflow_executions_idempotency")
                    .col(Executions::Namespace)
                    .col(Executions::WorkflowName)
                    .col(Executions::IdempotencyKey)
                    .unique(),
            )
            .to_owned(),
    )
    .await?;
    // Partial index: terminal runs (due_at NULL) are not in it at all.
    m.get_connection()
        .execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_workflow_executions_claim \
             ON workflow_executions (namespace, due_at) WHERE due_at IS NOT NULL",
        )
        .await?;
    m.create_index(
        Index::create()
            .if_not_exists()
            .name("idx_workflow_executions_list")
            .table(Executions::Table)
            .col(Executions::Namespace)
            .col(Executions::WorkflowName)
            .col(Executions::CreatedAt)
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .if_not_exists()
            .name("idx_workflow_executions_status")
            .table(Executions::Table)
            .col(Executions::Namespace)
            .col(Executions::Status)
            .col(Executions::CreatedAt)
            .to_owned(),
    )
    .await?;

    m.create_table(
        Table::create()
            .table(Steps::Table)
            .if_not_exists()
            .col(ColumnDef::new(Steps::Id).big_integer().not_null().auto_increment().primary_key())
            .col(ColumnDef::new(Steps::ExecutionId).string_len(64).not_null())
            .col(ColumnDef::new(Steps::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(Steps::StepId).string_len(255).not_null())
            .col(ColumnDef::new(Steps::StepName).string_len(255).not_null())
            .col(ColumnDef::new(Steps::Position).integer().not_null())
            .col(ColumnDef::new(Steps::Kind).string_len(16).not_null())
            .col(ColumnDef::new(Steps::Status).string_len(16).not_null())
            .col(ColumnDef::new(Steps::Attempts).integer().not_null())
            .col(ColumnDef::new(Steps::MaxAttempts).integer().not_null())
            .col(ColumnDef::new(Steps::OutputData).blob().null())
            .col(ColumnDef::new(Steps::ErrorMessage).text().null())
            .col(ColumnDef::new(Steps::StartedAt).big_integer().not_null())
            .col(ColumnDef::new(Steps::CompletedAt).big_integer().null())
            .col(ColumnDef::new(Steps::WakeAt).big_integer().null())
            .col(ColumnDef::new(Steps::FencingToken).big_integer().not_null())
            .index(
                Index::create()
                    .name("uq_workflow_steps_execution_step")
                    .col(Steps::ExecutionId)
                    .col(Steps::StepId)
                    .unique(),
            )
            .index(
                Index::create()
                    .name("uq_workflow_steps_execution_position")
                    .col(Steps::ExecutionId)
                    .col(Steps::Position)
                    .unique(),
            )
            .foreign_key(
                ForeignKey::create()
                    .name("fk_workflow_steps_execution")
                    .from(Steps::Table, Steps::ExecutionId)
                    .to(Executions::Table, Executions::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            )
            .to_owned(),
    )
    .await?;

    m.create_table(
        Table::create()
            .table(Leases::Table)
            .if_not_exists()
            .col(ColumnDef::new(Leases::ResourceId).string_len(255).not_null().primary_key())
            .col(ColumnDef::new(Leases::Kind).string_len(16).not_null())
            .col(ColumnDef::new(Leases::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(Leases::WorkerId).string_len(255).not_null())
            .col(ColumnDef::new(Leases::AcquiredAt).big_integer().not_null())
            .col(ColumnDef::new(Leases::ExpiresAt).big_integer().not_null())
            .col(ColumnDef::new(Leases::HeartbeatAt).big_integer().not_null())
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .if_not_exists()
            .name("idx_leases_namespace_expires")
            .table(Leases::Table)
            .col(Leases::Namespace)
            .col(Leases::ExpiresAt)
            .to_owned(),
    )
    .await?;

    m.create_table(
        Table::create()
            .table(CronJobs::Table)
            .if_not_exists()
            .col(ColumnDef::new(CronJobs::Id).string_len(64).not_null().primary_key())
            .col(ColumnDef::new(CronJobs::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(CronJobs::Name).string_len(255).not_null())
            .col(ColumnDef::new(CronJobs::CronSpec).string_len(255).not_null())
            .col(ColumnDef::new(CronJobs::Timezone).string_len(64).not_null())
            .col(ColumnDef::new(CronJobs::WorkflowName).string_len(255).null())
            .col(ColumnDef::new(CronJobs::InputData).blob().null())
            .col(ColumnDef::new(CronJobs::MissedPolicy).string_len(16).not_null())
            .col(ColumnDef::new(CronJobs::Enabled).boolean().not_null().default(true))
            .col(ColumnDef::new(CronJobs::CreatedAt).big_integer().not_null())
            .col(ColumnDef::new(CronJobs::UpdatedAt).big_integer().not_null())
            .col(ColumnDef::new(CronJobs::NextRunAt).big_integer().not_null())
            .col(ColumnDef::new(CronJobs::LastTickAt).big_integer().null())
            .index(
                Index::create()
                    .name("uq_cron_jobs_namespace_name")
                    .col(CronJobs::Namespace)
                    .col(CronJobs::Name)
                    .unique(),
            )
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .if_not_exists()
            .name("idx_cron_jobs_due")
            .table(CronJobs::Table)
            .col(CronJobs::Namespace)
            .col(CronJobs::Enabled)
            .col(CronJobs::NextRunAt)
            .to_owned(),
    )
    .await?;
    Ok(())
}

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    Id,
    Namespace,
    WorkflowName,
    Status,
    InputData,
    OutputData,
    ErrorMessage,
    MaxAttempts,
    Attempts,
    IdempotencyKey,
    TriggerType,
    TriggerSource,
    CreatedAt,
    StartedAt,
    UpdatedAt,
    CompletedAt,
    DueAt,
    DeadlineAt,
    LeaseOwner,
    FencingToken,
    CancelRequested,
    OpenPosition,
    OpenAttempts,
}

#[derive(DeriveIden)]
enum Steps {
    #[sea_orm(iden = "workflow_steps")]
    Table,
    Id,
    ExecutionId,
    Namespace,
    StepId,
    StepName,
    Position,
    Kind,
    Status,
    Attempts,
    MaxAttempts,
    OutputData,
    ErrorMessage,
    StartedAt,
    CompletedAt,
    WakeAt,
    FencingToken,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    ResourceId,
    Kind,
    Namespace,
    WorkerId,
    AcquiredAt,
    ExpiresAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum CronJobs {
    Table,
    Id,
    Namespace,
    Name,
    CronSpec,
    Timezone,
    WorkflowName,
    InputData,
    MissedPolicy,
    Enabled,
    CreatedAt,
    UpdatedAt,
    NextRunAt,
    LastTickAt,
}
