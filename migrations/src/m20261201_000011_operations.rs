//! Operating runs:
//! - `workflow_search_attributes`: a run's user search attributes (name =
//!   text value), set at start or by the workflow, with an index that finds
//!   runs by (namespace, name, value);
//! - an index on `(namespace, idempotency_key)`: a run found by its key
//!   without naming its workflow;
//! - an index on `(namespace, created_at)`: the newest runs of a namespace
//!   without a sort;
//! - an index on `(namespace, completed_at)`: retention finds finished runs
//!   older than a cutoff without a scan.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    Namespace,
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

// See the first migration for why the lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
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
        for (name, col) in [
            ("idx_executions_ns_key", Executions::IdempotencyKey),
            ("idx_executions_ns_created", Executions::CreatedAt),
            ("idx_executions_ns_completed", Executions::CompletedAt),
        ] {
            m.create_index(
                Index::create().name(name).table(Executions::Table).col(Executions::Namespace).col(col).to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_executions_ns_key", "idx_executions_ns_created", "idx_executions_ns_completed"] {
            m.drop_index(Index::drop().name(name).table(Executions::Table).to_owned()).await?;
        }
        m.drop_table(Table::drop().table(SearchAttributes::Table).to_owned()).await
    }
}
