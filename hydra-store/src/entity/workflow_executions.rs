//! `workflow_executions`: one row per run, carrying its lease and fencing token.

use sea_orm::entity::prelude::*;

/// A row of `workflow_executions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_executions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub namespace: String,
    pub workflow_name: String,
    pub status: String,
    pub input_data: Vec<u8>,
    pub output_data: Option<Vec<u8>>,
    pub error_message: Option<String>,
    pub max_attempts: i32,
    pub attempts: i32,
    pub idempotency_key: Option<String>,
    pub trigger_type: String,
    pub trigger_source: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub due_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub fencing_token: i64,
    pub cancel_requested: bool,
    pub open_position: i32,
    pub open_attempts: i32,
    pub signal_wait: bool,
    pub parent_id: Option<String>,
    pub cancel_with_parent: bool,
    pub error_data: Option<Vec<u8>>,
    pub workflow_version: Option<i32>,
    pub suspended_code: Option<i64>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
