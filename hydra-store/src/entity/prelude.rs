//! Entity names for `use hydra_store::entity::prelude::*`.

pub use super::cron_jobs::Entity as CronJobs;
pub use super::leases::Entity as Leases;
pub use super::workflow_events::Entity as WorkflowEvents;
pub use super::workflow_executions::Entity as WorkflowExecutions;
pub use super::workflow_search_attributes::Entity as WorkflowSearchAttributes;
pub use super::workflow_signals::Entity as WorkflowSignals;
pub use super::workflow_steps::Entity as WorkflowSteps;
