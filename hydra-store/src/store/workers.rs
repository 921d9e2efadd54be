//! Worker liveness: each worker's heartbeat row in the `leases` table.

use super::Store;
use crate::entity::leases;
use crate::error::StoreError;
use crate::ids::WorkerId;
use crate::model::WorkerLease;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

impl Store {
    /// Registers or renews a worker's liveness row until `now + ttl_ms`.
    pub async fn heartbeat_worker(
        &self,
        namespace: &str,
        worker: &WorkerId,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        let am = leases::ActiveModel {
            resource_id: Set(worker.as_str().to_owned()),
            kind: Set("worker".to_owned()),
            namespace: Set(namespace.to_owned()),
            worker_id: Set(worker.as_str().to_owned()),
            acquired_at: Set(now),
            expires_at: Set(now + ttl_ms),
            heartbeat_at: Set(now),
        };
        leases::Entity::insert(am)
            .on_conflict(
                OnConflict::column(leases::Column::ResourceId)
                    .update_columns([leases::Column::ExpiresAt, leases::Column::HeartbeatAt])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        self.count();
        Ok(())
    }

    /// Removes a worker's liveness row (clean shutdown).
    pub async fn remove_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        leases::Entity::delete_by_id(worker.as_str()).exec(&self.db).await?;
        Ok(())
    }

    /// Workers of `namespace` whose liveness has not expired at `now`.
    pub async fn live_workers(&self, namespace: &str, now: i64) -> Result<Vec<WorkerLease>, StoreError> {
        let rows = leases::Entity::find()
            .filter(leases::Column::Namespace.eq(namespace))
            .filter(leases::Column::Kind.eq("worker"))
            .filter(leases::Column::ExpiresAt.gt(now))
            .order_by_asc(leases::Column::AcquiredAt)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| WorkerLease {
                worker_id: WorkerId::from_string(m.worker_id),
                namespace: m.namespace,
                acquired_at: m.acquired_at,
                heartbeat_at: m.heartbeat_at,
                expires_at: m.expires_at,
            })
            .collect())
    }
}
