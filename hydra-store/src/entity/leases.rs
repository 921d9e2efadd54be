//! `leases`: worker liveness, one row per worker, renewed by its heartbeat.

use sea_orm::entity::prelude::*;

/// A row of `leases`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "leases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource_id: String,
    pub kind: String,
    pub namespace: String,
    pub worker_id: String,
    pub acquired_at: i64,
    pub expires_at: i64,
    pub heartbeat_at: i64,
    pub registrations: Option<String>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
