//! Wake-ups across processes on PostgreSQL: `LISTEN hydra_runs`.
//!
//! A trigger (migration `m20261122_000002_notify_runs`) sends the run's
//! namespace on channel `hydra_runs` when a run becomes claimable now. A
//! worker listening here claims at once instead of waiting for its poll.
//!
//! A store (with its clones) holds at most one `LISTEN` connection, opened
//! outside its connection pool and shared by all its listeners through a
//! broadcast channel: however many workers an engine runs, listening takes
//! one database connection and never one of the pool's.

use crate::backend::{Fut, WakeSource, WakeUp};
use crate::error::StoreError;
use crate::store::Store;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The notification channel of runs that became claimable (payload: the
/// namespace).
pub(crate) const RUNS_CHANNEL: &str = "hydra_runs";

/// The notification channel of runs that ended (payload: the execution ID;
/// migration `m20261201_000003_notify_ended`).
pub(crate) const ENDED_CHANNEL: &str = "hydra_ended";

/// The notification channel of cancels accepted for running runs
/// (payload: the execution ID; migration `m20261207_000013_notify_cancel`).
pub(crate) const CANCEL_CHANNEL: &str = "hydra_cancel";

/// What the listening task broadcasts: a namespace, or that the connection
/// was lost (notifications may have been missed meanwhile).
#[derive(Clone, Debug)]
enum Event {
    Notice(WakeUp),
    Lost(String),
}

/// The one listening task of a store; dropped with its last listener.
#[derive(Debug)]
pub(crate) struct SharedListener {
    events: broadcast::Sender<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SharedListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Notifications of runs that became claimable, from any process.
pub(crate) struct RunListener {
    /// Keeps the shared connection open while this listener lives.
    _shared: Arc<SharedListener>,
    events: broadcast::Receiver<Event>,
}

impl std::fmt::Debug for RunListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunListener").field("channel", &RUNS_CHANNEL).finish()
    }
}

impl RunListener {
    /// Waits for the next notification. An error means notifications may
    /// have been missed (the connection was lost and is being
    /// re-established, or this listener fell behind), so look once anyway.
    pub(crate) async fn recv_notice(&mut self) -> Result<WakeUp, StoreError> {
        match self.events.recv().await {
            Ok(Event::Notice(n)) => Ok(n),
            Ok(Event::Lost(why)) => Err(StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: {why}"))),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Err(StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: {n} notifications missed")))
            }
            Err(broadcast::error::RecvError::Closed) => {
                Err(StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: the listening task ended")))
            }
        }
    }
}

impl WakeSource for RunListener {
    fn next(&mut self) -> Fut<'_, Result<WakeUp, StoreError>> {
        Box::pin(self.recv_notice())
    }

    fn names_runs(&self) -> bool {
        true
    }
}

/// Listens for runs that become claimable (created, handed back, set to
/// retry), end, or have a cancel accepted, in any process. The first listener of a store opens its
/// `LISTEN` connection (outside the pool), kept in `slot`; the others
/// share it.
pub(super) async fn listen(
    slot: &tokio::sync::Mutex<std::sync::Weak<SharedListener>>,
    store: &Store,
) -> Result<RunListener, StoreError> {
    let mut slot = slot.lock().await;
    if let Some(shared) = slot.upgrade() {
        let events = shared.events.subscribe();
        return Ok(RunListener { _shared: shared, events });
    }
    let transient = |e: sea_orm::sqlx::Error| StoreError::Transient(format!("LISTEN {RUNS_CHANNEL}: {e}"));
    // A pool of its own with one connection: never one of the store's.
    let options = store.connection().get_postgres_connection_pool().connect_options();
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_lazy_with((*options).clone());
    let mut listener = PgListener::connect_with(&own).await.map_err(transient)?;
    listener.listen_all([RUNS_CHANNEL, ENDED_CHANNEL, CANCEL_CHANNEL]).await.map_err(transient)?;
    let (tx, events) = broadcast::channel(1024);
    let task = tokio::spawn(forward(listener, tx.clone()));
    let shared = Arc::new(SharedListener { events: tx, task });
    *slot = Arc::downgrade(&shared);
    Ok(RunListener { _shared: shared, events })
}

/// Forwards notifications to every listener. A lost connection is
/// reported at once (notifications sent until it is re-established are
/// lost) and re-established by the next `try_recv`; `recv` would reconnect
/// silently.
async fn forward(mut listener: PgListener, tx: broadcast::Sender<Event>) {
    loop {
        let event = match listener.try_recv().await {
            Ok(None) => {
                let _ = tx.send(Event::Lost("the connection was lost; re-establishing it".into()));
                continue;
            }
            Ok(Some(n)) if n.channel() == ENDED_CHANNEL => Event::Notice(WakeUp::Ended(n.payload().to_owned())),
            Ok(Some(n)) if n.channel() == CANCEL_CHANNEL => {
                Event::Notice(WakeUp::CancelRequested(n.payload().to_owned()))
            }
            Ok(Some(n)) => Event::Notice(WakeUp::Runs(n.payload().to_owned())),
            Err(e) => {
                let _ = tx.send(Event::Lost(e.to_string()));
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        let _ = tx.send(event);
    }
}
