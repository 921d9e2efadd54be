//! Schema migrations for Hydra.
//!
//! One file per migration, named `mYYYYMMDD_HHMMSS_what.rs`; a file name is the
//! migration's identity in `seaql_migrations` and is never renamed once released.
//! The runtime applies these on connect through `hydra_store::Store`, which
//! serialises concurrent migrators (advisory lock on PostgreSQL, `BEGIN
//! IMMEDIATE` on SQLite).

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::{MigrationTrait, async_trait::async_trait};

mod m20261122_000001_create_schema;
mod m20261122_000002_notify_runs;
mod m20261201_000003_notify_ended;
mod m20261201_000004_worker_rows_text_key;
mod m20261201_000005_signals;
mod m20261201_000006_events;
mod m20261201_000007_children;
mod m20261201_000008_child_policy;
mod m20261201_000009_typed_errors_and_compensation;
mod m20261201_000010_versions;
mod m20261201_000011_operations;

/// Every migration of the Hydra schema, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_schema::Migration),
            Box::new(m20261122_000002_notify_runs::Migration),
            Box::new(m20261201_000003_notify_ended::Migration),
            Box::new(m20261201_000004_worker_rows_text_key::Migration),
            Box::new(m20261201_000005_signals::Migration),
            Box::new(m20261201_000006_events::Migration),
            Box::new(m20261201_000007_children::Migration),
            Box::new(m20261201_000008_child_policy::Migration),
            Box::new(m20261201_000009_typed_errors_and_compensation::Migration),
            Box::new(m20261201_000010_versions::Migration),
            Box::new(m20261201_000011_operations::Migration),
        ]
    }
}
