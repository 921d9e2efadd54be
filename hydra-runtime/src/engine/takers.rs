//! The workers of this process that may take a run at its start (the
//! direct start, `worker/direct.rs`): the engine knows them through these
//! two traits only, so it depends on no worker.

use super::Engine;
use hydra_store::{Created, NewExecution, StoreError};

/// A local worker's offer to take runs at their start.
pub(crate) trait StartTaker: Send + Sync + std::fmt::Debug {
    /// A free slot of the worker for a new run of `name` at `version`, if
    /// the worker admits it now.
    fn reserve(&self, name: &str, version: Option<u32>) -> Option<Box<dyn Reservation>>;
    /// Whether the worker is gone (its offer can be dropped).
    fn is_gone(&self) -> bool;
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
