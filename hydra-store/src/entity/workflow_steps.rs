//! `workflow_steps`: one row per (execution, step ID), unique at the schema level.

use sea_orm::entity::prelude::*;

/// A row of `workflow_steps`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub execution_id: String,
    pub namespace: String,
    pub step_id: String,
    pub step_name: String,
    pub position: i32,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub output_data: Option<Vec<u8>>,
    pub error_message: Option<String>,
    pub started_at: i64,
    pub completed_at: Option<i64>,
    pub wake_at: Option<i64>,
    pub fencing_token: i64,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
