//! sea-orm entities, one file per table: the schema created by
//! `hydra-migrations` as the store reads it (a test compares them column by
//! column with a migrated database, and a move copies exactly these
//! columns); the rest of the crate converts them into the domain types
//! (such as [`crate::Execution`]) before anything leaves the store.

pub mod cron_jobs;
pub mod leases;
pub mod prelude;
pub mod workflow_events;
pub mod workflow_executions;
pub mod workflow_search_attributes;
pub mod workflow_signals;
pub mod workflow_steps;
