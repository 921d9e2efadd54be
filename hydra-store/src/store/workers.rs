//! Worker liveness: each worker's heartbeat row in the `leases` table, one
//! per (namespace, worker); rows of workers that stopped heartbeating are
//! pruned by the heartbeats of the living.

use super::Store;
use crate::entity::leases;
use crate::error::StoreError;
use crate::ids::WorkerId;
use crate::model::WorkerLease;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QueryTrait};

/// How many TTLs a dead worker's row stays visible before a living
/// worker's heartbeat deletes it.
const DEAD_WORKER_ROWS_KEPT_FOR_TTLS: i64 = 10;

/// The row key of a worker's liveness in one namespace: the same worker ID
/// in two namespaces is two rows. The namespace's length comes first, so
/// no (namespace, worker) pair can collide with another.
fn resource_id(namespace: &str, worker: &WorkerId) -> String {
    format!("worker:{}:{namespace}:{}", namespace.len(), worker.as_str())
}

impl Store {
    /// Registers or renews a worker's liveness row in `namespace` until
    /// `now + ttl_ms`, and in the same transaction deletes the rows of
    /// workers of that namespace that expired more than
    /// ten times `ttl_ms` ago (dead workers stay visible that long).
    pub async fn heartbeat_worker(
        &self,
        namespace: &str,
        worker: &WorkerId,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(), StoreError> {
        self.heartbeat_worker_with(namespace, worker, now, ttl_ms, None).await
    }

    /// [`Store::heartbeat_worker`], also recording what the worker
    /// registers (`registrations`, Hydra's own text: workflow names and
    /// version ranges), so runs no live worker can run are visible.
    pub async fn heartbeat_worker_with(
        &self,
        namespace: &str,
        worker: &WorkerId,
        now: i64,
        ttl_ms: i64,
        registrations: Option<&str>,
    ) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        let am = leases::ActiveModel {
            resource_id: Set(resource_id(namespace, worker)),
            kind: Set("worker".to_owned()),
            namespace: Set(namespace.to_owned()),
            worker_id: Set(worker.as_str().to_owned()),
            acquired_at: Set(now),
            expires_at: Set(now.saturating_add(ttl_ms)),
            heartbeat_at: Set(now),
            registrations: Set(registrations.map(str::to_owned)),
        };
        let mut updated = vec![leases::Column::ExpiresAt, leases::Column::HeartbeatAt];
        if registrations.is_some() {
            updated.push(leases::Column::Registrations);
        }
        let dead_before = now.saturating_sub(ttl_ms.saturating_mul(DEAD_WORKER_ROWS_KEPT_FOR_TTLS));
        let txn = self.begin().await?;
        let backend = self.dialect().db_backend();
        let r = async {
            let upsert = leases::Entity::insert(am)
                .on_conflict(OnConflict::column(leases::Column::ResourceId).update_columns(updated).to_owned())
                .build(backend);
            txn.db().exec(upsert).await?;
            let dead = leases::Entity::delete_many()
                .filter(leases::Column::Kind.eq("worker"))
                .filter(leases::Column::Namespace.eq(namespace))
                .filter(leases::Column::ExpiresAt.lt(dead_before))
                .build(backend);
            txn.db().exec(dead).await?;
            Ok(())
        }
        .await;
        self.settle(txn, r).await
    }

    /// Removes a worker's liveness row in `namespace` (clean shutdown); the
    /// same worker ID in other namespaces keeps its rows.
    pub async fn remove_worker(&self, namespace: &str, worker: &WorkerId) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        leases::Entity::delete_by_id(resource_id(namespace, worker)).exec(&self.db).await?;
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
                registrations: m.registrations,
            })
            .collect())
    }
}
