//! Wake-ups across processes on PostgreSQL: `LISTEN hydra_runs`.
//!
//! A trigger (migration `m20261122_000002_notify_runs`) sends the run's
//! namespace on channel `hydra_runs` when a run becomes claimable now. A
//! worker listening here claims at once instead of waiting for its poll.

use crate::connect::Backend;
use crate::error::StoreError;
use crate::store::Store;
use sea_orm::sqlx::postgres::PgListener;

/// The notification channel the trigger sends on.
pub const RUNS_CHANNEL: &str = "hydra_runs";

/// Notifications of runs that became claimable, from any process
/// (PostgreSQL only). Holds one connection of the store's pool while it
/// lives.
pub struct RunListener {
    inner: PgListener,
}

impl std::fmt::Debug for RunListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunListener").field("channel", &RUNS_CHANNEL).finish()
    }
}

impl RunListener {
    /// Waits for the next notification and returns its namespace. An error
    /// means the connection was lost; the next call reconnects, and
    /// notifications sent in between are lost, so claim once anyway.
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        let n = self.inner.recv().await.map_err(|e| StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: {e}")))?;
        Ok(n.payload().to_owned())
    }
}

impl Store {
    /// Listens for runs that become claimable (created, handed back, set to
    /// retry) in any process. `None` on SQLite, which has no notifications.
    pub async fn listen_for_runs(&self) -> Result<Option<RunListener>, StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let pool = self.connection().get_postgres_connection_pool();
        let mut inner = PgListener::connect_with(pool)
            .await
            .map_err(|e| StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: {e}")))?;
        inner.listen(RUNS_CHANNEL).await.map_err(|e| StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: {e}")))?;
        Ok(Some(RunListener { inner }))
    }
}
