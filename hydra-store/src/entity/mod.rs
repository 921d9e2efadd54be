//! sea-orm entities, one file per table. These mirror the schema created by
//! `hydra-migrations`; the rest of the crate converts them into the domain
//! types (such as [`crate::Execution`]) before anything leaves the store.

pub mod cron_jobs;
pub mod leases;
pub mod prelude;
pub mod workflow_executions;
pub mod workflow_steps;
