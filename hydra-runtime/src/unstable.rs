//! Not a stable API: the SQL layer under the engine (`hydra_store::Store`),
//! for Hydra's own tests, benchmarks and tools that need to reach below
//! the engine (share one open database between engines, read rows the
//! engine does not show). Anything here may change in any release;
//! applications use [`Engine`], its read model ([`crate::runs`]) and
//! [`Engine::connection`] for their own tables.

use crate::engine::{Engine, EngineBuilder};
pub use hydra_store::Store;

/// The store under an engine.
pub trait EngineStoreExt {
    /// The engine's store.
    fn store(&self) -> &Store;
}

impl EngineStoreExt for Engine {
    fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// Builds an engine on a store already open.
pub trait EngineBuilderStoreExt {
    /// An already open store (shared between engines of several namespaces).
    #[must_use]
    fn store(self, store: Store) -> Self;
}

impl EngineBuilderStoreExt for EngineBuilder {
    fn store(self, store: Store) -> Self {
        self.with_store(store)
    }
}
