//! The workers of this process, as the engine sees them: they may take a
//! run at its start (the direct start, `worker/direct.rs`), and they hear
//! at once of a cancel accepted for a run they hold. The engine knows them
//! through these two traits only, so it depends on no worker.

use super::Engine;
use hydra_store::{Created, ExecutionId, NewExecution, StoreError};

/// A worker of this process.
pub(crate) trait LocalWorker: Send + Sync + std::fmt::Debug {
    /// A free slot of the worker for a new run of `name` at `version`, if
    /// the worker admits it now.
    fn reserve(&self, name: &str, version: Option<u32>) -> Option<Box<dyn Reservation>>;
    /// Whether the worker is gone (it can be dropped).
    fn is_gone(&self) -> bool;
    /// A cancel of run `id` was accepted: if the worker holds the run, its
    /// step bodies are told now and it stops at its next durable call.
    fn hear_cancel(&self, id: &ExecutionId);
}

/// A slot a worker reserved for a run being started; dropped unused, it
/// frees the slot.
pub(crate) trait Reservation: Send + std::fmt::Debug {
    /// Creates `new` claimed for the worker and hands it over.
    fn create(
        self: Box<Self>,
        engine: &Engine,
        new: NewExecution,
    ) -> futures_util::future::BoxFuture<'_, Result<Created, StoreError>>;
}
