//! Operating runs:
//! - `workflow_search_attributes`: a run's user search attributes (name =
//!   text value), set at start or by the workflow, with an index that finds
//!   runs by (namespace, name, value);
//! - an index on `(namespace, idempotency_key, created_at, id)`: runs
//!   found by their key without naming their workflow;
//! - indexes `(namespace, created_at, id)`, `(namespace, workflow_name,
//!   created_at, id)` and `(namespace, status, created_at, id)` (the last two
//!   replacing the first migration's, which lacked the ID): runs listed in
//!   list order (newest first, ties by ID) without a sort;
//! - an index on `(namespace, completed_at)`: retention finds finished runs
//!   older than a cutoff without a scan.

use crate::prelude::*;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    Id,
    Namespace,
    WorkflowName,
    Status,
    IdempotencyKey,
    CreatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum SearchAttributes {
    #[sea_orm(iden = "workflow_search_attributes")]
    Table,
    ExecutionId,
    Namespace,
    Name,
    Value,
}

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(SearchAttributes::Table)
            .if_not_exists()
            .col(ColumnDef::new(SearchAttributes::ExecutionId).string_len(64).not_null())
            .col(ColumnDef::new(SearchAttributes::Name).string_len(255).not_null())
            .col(ColumnDef::new(SearchAttributes::Namespace).string_len(255).not_null())
            .col(ColumnDef::new(SearchAttributes::Value).string_len(1024).not_null())
            .primary_key(Index::create().col(SearchAttributes::ExecutionId).col(SearchAttributes::Name))
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .name("idx_search_attributes_lookup")
            .table(SearchAttributes::Table)
            .col(SearchAttributes::Namespace)
            .col(SearchAttributes::Name)
            .col(SearchAttributes::Value)
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .name("idx_executions_ns_completed")
            .table(Executions::Table)
            .col(Executions::Namespace)
            .col(Executions::CompletedAt)
            .to_owned(),
    )
    .await?;
    // With the ID: the list order (created_at, id) is the index order,
    // for the namespace and, replacing the first migration's indexes,
    // per workflow and per status.
    for (name, col, replaces) in [
        ("idx_workflow_executions_list", Executions::WorkflowName, true),
        ("idx_workflow_executions_status", Executions::Status, true),
        ("idx_executions_ns_key", Executions::IdempotencyKey, false),
    ] {
        if replaces {
            m.drop_index(Index::drop().name(name).table(Executions::Table).to_owned()).await?;
        }
        m.create_index(
            Index::create()
                .name(name)
                .table(Executions::Table)
                .col(Executions::Namespace)
                .col(col)
                .col(Executions::CreatedAt)
                .col(Executions::Id)
                .to_owned(),
        )
        .await?;
    }
    m.create_index(
        Index::create()
            .name("idx_executions_ns_created")
            .table(Executions::Table)
            .col(Executions::Namespace)
            .col(Executions::CreatedAt)
            .col(Executions::Id)
            .to_owned(),
    )
    .await
}
