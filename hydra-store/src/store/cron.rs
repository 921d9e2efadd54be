//! Cron schedules: creating, reading, pausing and deleting them, and firing
//! a tick atomically together with the run it starts.

use super::Store;
use super::runs::execution_row;
use crate::entity::cron_jobs;
use crate::error::StoreError;
use crate::model::{CronJob, CronUpsert, NewExecution};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

impl Store {
    /// Creates a schedule, or updates an existing one of the same name. An
    /// update keeps the schedule's next tick when its expression and time zone
    /// are unchanged (a restart re-registering it does not reset it), and
    /// keeps it paused if it was paused.
    pub async fn upsert_cron(&self, c: &CronUpsert) -> Result<CronJob, StoreError> {
        let _gate = self.gate().await;
        let d = self.dialect();
        let upsert = d.on_conflict_update(
            "namespace, name",
            "next_run_at = CASE WHEN cron_jobs.cron_spec = excluded.cron_spec \
               AND cron_jobs.timezone = excluded.timezone THEN cron_jobs.next_run_at \
               ELSE excluded.next_run_at END, \
             cron_spec = excluded.cron_spec, timezone = excluded.timezone, \
             workflow_name = excluded.workflow_name, input_data = excluded.input_data, \
             missed_policy = excluded.missed_policy, updated_at = excluded.updated_at",
            "",
        );
        let written = self
            .conn()
            .exec(self.stmt(
                &format!(
                    "INSERT INTO cron_jobs (id, namespace, name, cron_spec, timezone, workflow_name, input_data, \
                       missed_policy, enabled, created_at, updated_at, next_run_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){upsert}"
                ),
                vec![
                    uuid::Uuid::new_v4().to_string().into(),
                    c.namespace.as_str().into(),
                    c.name.as_str().into(),
                    c.spec.as_str().into(),
                    c.timezone.as_str().into(),
                    c.workflow_name.as_str().into(),
                    c.input.clone().into(),
                    c.missed_policy.as_str().into(),
                    true.into(),
                    c.now.into(),
                    c.now.into(),
                    c.next_run_at.into(),
                ],
            ))
            .await?;
        if written == 0 {
            return Err(StoreError::Database(DbErr::Custom(format!("cron schedule `{}` was not stored", c.name))));
        }
        self.cron(&c.namespace, &c.name)
            .await?
            .ok_or_else(|| StoreError::Database(DbErr::Custom(format!("cron schedule `{}` vanished", c.name))))
    }

    /// One schedule by name.
    pub async fn cron(&self, namespace: &str, name: &str) -> Result<Option<CronJob>, StoreError> {
        Ok(cron_jobs::Entity::find()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .filter(cron_jobs::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .map(CronJob::from))
    }

    /// Every schedule of a namespace, by name.
    pub async fn list_crons(&self, namespace: &str) -> Result<Vec<CronJob>, StoreError> {
        Ok(cron_jobs::Entity::find()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .order_by_asc(cron_jobs::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CronJob::from)
            .collect())
    }

    /// Enabled schedules whose next tick is at or before `now`.
    pub async fn due_crons(&self, namespace: &str, now: i64, limit: u64) -> Result<Vec<CronJob>, StoreError> {
        Ok(cron_jobs::Entity::find()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .filter(cron_jobs::Column::Enabled.eq(true))
            .filter(cron_jobs::Column::NextRunAt.lte(now))
            .order_by_asc(cron_jobs::Column::NextRunAt)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CronJob::from)
            .collect())
    }

    /// Pauses or resumes a schedule; `next_run_at` is the next tick to use
    /// when resuming. Returns false if there is no such schedule.
    pub async fn set_cron_enabled(
        &self,
        namespace: &str,
        name: &str,
        enabled: bool,
        next_run_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let r = self
            .conn()
            .exec(self.stmt(
                "UPDATE cron_jobs SET enabled = ?, next_run_at = ?, updated_at = ? WHERE namespace = ? AND name = ?",
                vec![enabled.into(), next_run_at.into(), now.into(), namespace.into(), name.into()],
            ))
            .await?;
        Ok(r == 1)
    }

    /// Deletes a schedule. Returns false if there was none.
    pub async fn delete_cron(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let r = cron_jobs::Entity::delete_many()
            .filter(cron_jobs::Column::Namespace.eq(namespace))
            .filter(cron_jobs::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Fires one tick of a schedule, atomically: moves `next_run_at` from
    /// `expected_next` to `new_next` (only if no one else did) and, in the
    /// same transaction, creates `run` (whose idempotency key names the
    /// schedule and tick). Returns true if this caller fired the tick. A
    /// crash before the commit leaves the tick unfired; two callers cannot
    /// both fire it.
    pub async fn fire_cron_tick(
        &self,
        job: &CronJob,
        expected_next: i64,
        new_next: i64,
        fired_tick: Option<i64>,
        run: Option<&NewExecution>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let txn = self.begin().await?;
        let r = txn
            .db()
            .exec(self.stmt(
                "UPDATE cron_jobs SET next_run_at = ?, last_tick_at = COALESCE(?, last_tick_at), updated_at = ? \
                 WHERE id = ? AND namespace = ? AND next_run_at = ? AND enabled = ?",
                vec![
                    new_next.into(),
                    fired_tick.into(),
                    now.into(),
                    job.id.as_str().into(),
                    job.namespace.as_str().into(),
                    expected_next.into(),
                    true.into(),
                ],
            ))
            .await?;
        if r != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Some(run) = run {
            self.insert_execution(txn.db(), execution_row(run)).await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}
