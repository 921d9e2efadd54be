//! `workflow_signals`: every signal accepted for a run, in the order
//! accepted; unique per (run, idempotency key).

use sea_orm::entity::prelude::*;

/// A row of `workflow_signals`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_signals")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub namespace: String,
    pub execution_id: String,
    pub name: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub consumed_at: Option<i64>,
    pub consumed_position: Option<i32>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
