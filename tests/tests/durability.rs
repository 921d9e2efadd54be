//! Acknowledged means durable (guarantee 17): by default every connection
//! of a store commits so that a power loss keeps what was acknowledged
//! (SQLite `synchronous = FULL` on the pool's connections and the writer
//! thread's; PostgreSQL `synchronous_commit` left on). The relaxed mode is
//! there only when asked for, and says so.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::{Durability, StoreOptions};
use hydra_tests::both_backends;

both_backends! {
    async fn acknowledged_writes_are_durable_by_default_on_every_connection(db: TestDb) {
        let store = db.store().await;
        assert_eq!(store.durability().await.unwrap(), Durability::Full);
        let e = Engine::builder().database_url(&db.url).build().await.unwrap();
        assert_eq!(e.durability().await.unwrap(), Durability::Full);
        // Every pooled connection, not only the first: hold several at once.
        let conns = tokio::join!(store.durability(), store.durability(), store.durability(), store.durability());
        for d in [conns.0, conns.1, conns.2, conns.3] {
            assert_eq!(d.unwrap(), Durability::Full);
        }
    }

    async fn the_relaxed_mode_is_there_only_when_asked_for_and_reports_itself(db: TestDb) {
        let relaxed = db.store_with(|o| o.durability(Durability::Relaxed)).await;
        assert_eq!(relaxed.durability().await.unwrap(), Durability::Relaxed);
        let e = Engine::builder()
            .store_options(StoreOptions::new(db.url.clone()).durability(Durability::Relaxed))
            .build()
            .await
            .unwrap();
        assert_eq!(e.durability().await.unwrap(), Durability::Relaxed);
        // A store opened afterwards with the defaults is durable again (the
        // setting belongs to connections, not to the database).
        assert_eq!(db.store().await.durability().await.unwrap(), Durability::Full);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_memory_reports_that_nothing_survives_its_process() {
    let store = hydra_store::Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.durability().await.unwrap(), Durability::Volatile);
}
