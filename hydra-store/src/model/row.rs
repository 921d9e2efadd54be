//! Converting between database rows and domain types, in one place: the
//! stored text of status enums (`string_enum!`), integer columns
//! ([`to_u32`], [`to_i32`]) and the `TryFrom`/`From` impls of the entity
//! models.

use super::cron::CronJob;
use super::execution::{Execution, ExecutionStatus, TriggerType};
use super::step::{OpenStep, Step, StepKind, StepStatus};
use crate::entity::{workflow_executions, workflow_steps};
use crate::error::StoreError;
use crate::ids::{ExecutionId, FencingToken, StepId, WorkerId};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $table:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The value as stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stored value.
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::CorruptRow {
                        table: $table,
                        reason: format!("unknown {} `{other}`", stringify!($name)),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(super) use string_enum;

impl TryFrom<workflow_executions::Model> for Execution {
    type Error = StoreError;
    fn try_from(m: workflow_executions::Model) -> Result<Self, StoreError> {
        Ok(Execution {
            id: ExecutionId::from_string(m.id),
            namespace: m.namespace,
            workflow_name: m.workflow_name,
            status: ExecutionStatus::parse(&m.status)?,
            input: m.input_data,
            output: m.output_data,
            error: m.error_message,
            max_attempts: to_u32(m.max_attempts),
            attempts: to_u32(m.attempts),
            idempotency_key: m.idempotency_key,
            // Informational: a newer version's trigger does not stop a run.
            trigger_type: TriggerType::parse(&m.trigger_type).unwrap_or(TriggerType::Other),
            trigger_source: m.trigger_source,
            created_at: m.created_at,
            started_at: m.started_at,
            updated_at: m.updated_at,
            completed_at: m.completed_at,
            due_at: m.due_at,
            deadline_at: m.deadline_at,
            lease_owner: m.lease_owner.map(WorkerId::from_string),
            fencing_token: FencingToken(m.fencing_token),
            cancel_requested: m.cancel_requested,
            open_step: OpenStep { position: to_u32(m.open_position), attempts: to_u32(m.open_attempts) },
            parent_id: m.parent_id.map(ExecutionId::from_string),
            cancel_with_parent: m.cancel_with_parent,
            error_data: m.error_data,
            workflow_version: m.workflow_version.and_then(|v| u32::try_from(v).ok()),
            suspended_code: m.suspended_code,
        })
    }
}

impl TryFrom<workflow_steps::Model> for Step {
    type Error = StoreError;
    fn try_from(m: workflow_steps::Model) -> Result<Self, StoreError> {
        Ok(Step {
            execution_id: ExecutionId::from_string(m.execution_id),
            step_id: StepId::from_string(m.step_id),
            step_name: m.step_name,
            position: to_u32(m.position),
            kind: StepKind::parse(&m.kind)?,
            status: StepStatus::parse(&m.status)?,
            attempts: to_u32(m.attempts),
            max_attempts: to_u32(m.max_attempts),
            output: m.output_data,
            error: m.error_message,
            started_at: m.started_at,
            completed_at: m.completed_at,
            wake_at: m.wake_at,
            fencing_token: FencingToken(m.fencing_token),
        })
    }
}

impl From<crate::entity::cron_jobs::Model> for CronJob {
    fn from(m: crate::entity::cron_jobs::Model) -> Self {
        CronJob {
            id: m.id,
            namespace: m.namespace,
            name: m.name,
            spec: m.cron_spec,
            timezone: m.timezone,
            workflow_name: m.workflow_name.unwrap_or_default(),
            input: m.input_data.unwrap_or_default(),
            missed_policy: m.missed_policy,
            enabled: m.enabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
            next_run_at: m.next_run_at,
            last_tick_at: m.last_tick_at,
        }
    }
}

fn to_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}
