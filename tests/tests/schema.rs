//! The entities (`hydra_store::entity`) are the schema as the store reads
//! it: rows are read into them, and a move copies exactly their columns
//! (`hydra-store/src/store/copy.rs` keeps no list of its own). Each must
//! name every column of its migrated table, and no other.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_tests::both_backends;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// The columns of `table` in a migrated database, sorted.
async fn columns(c: &DatabaseConnection, kind: hydra_tests::DbKind, table: &str) -> Vec<String> {
    let sql = match kind {
        hydra_tests::DbKind::Sqlite => format!("SELECT name FROM pragma_table_info('{table}')"),
        hydra_tests::DbKind::Postgres => format!(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
    };
    let rows = c.query_all_raw(Statement::from_string(c.get_database_backend(), sql)).await.unwrap();
    let mut out: Vec<String> = rows.iter().map(|r| r.try_get("", "name").unwrap()).collect();
    out.sort();
    out
}

/// The columns entity `E` declares, sorted.
fn declared<E: sea_orm::EntityTrait>() -> (&'static str, Vec<String>) {
    use sea_orm::{IdenStatic, Iterable};
    let mut cols: Vec<String> = E::Column::iter().map(|c| c.as_str().to_owned()).collect();
    cols.sort();
    (E::default().table_name(), cols)
}

both_backends! {
    async fn every_entity_names_every_column_of_its_migrated_table(db: TestDb) {
        use hydra_store::entity::*;
        let _store = db.store().await;
        let c = Database::connect(db.url.as_str()).await.unwrap();
        for (table, cols) in [
            declared::<workflow_executions::Entity>(),
            declared::<workflow_steps::Entity>(),
            declared::<workflow_signals::Entity>(),
            declared::<workflow_events::Entity>(),
            declared::<workflow_search_attributes::Entity>(),
            declared::<cron_jobs::Entity>(),
            declared::<leases::Entity>(),
        ] {
            assert_eq!(columns(&c, db.kind, table).await, cols, "table {table}");
        }
    }
}
