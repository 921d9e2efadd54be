//! `cron_jobs`: cron schedules, unique per (namespace, name).

use sea_orm::entity::prelude::*;

/// A row of `cron_jobs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cron_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub cron_spec: String,
    pub timezone: String,
    pub workflow_name: Option<String>,
    pub input_data: Option<Vec<u8>>,
    pub missed_policy: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub next_run_at: i64,
    pub last_tick_at: Option<i64>,
}

/// No relations are navigated through the ORM.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
