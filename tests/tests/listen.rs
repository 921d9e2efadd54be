//! Wake-ups across processes. PostgreSQL `LISTEN`: however many workers an
//! engine runs, listening takes one connection, outside the pool. SQLite:
//! watching the file for other connections' commits.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_store::StoreOptions;
use hydra_store::sea_orm::ConnectionTrait;
use hydra_tests::TestDb;
use hydra_tests::flow::{Act, Flow, StepPlan};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_more_workers_than_pooled_connections_still_start_and_run() {
    let db = TestDb::postgres().await;
    let pool = 3;
    let store = db.store_with(|o: StoreOptions| o.max_connections(pool).connect_timeout(Duration::from_secs(3))).await;
    let engine = Engine::builder().store(store).namespace("listen").build().await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..(pool + 3) {
        let (flow, _probe) = Flow::new();
        let w = Worker::builder(&engine)
            .register(flow)
            .concurrency(2)
            .poll_interval(Duration::from_millis(100))
            .heartbeat_interval(Duration::from_millis(200))
            .lease_ttl(Duration::from_secs(30))
            .start()
            .await
            .unwrap();
        workers.push(w);
    }
    // Past every worker's LISTEN: with one pooled connection per listener,
    // the pool would be empty now and the next start would time out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut handles = Vec::new();
    for i in 0..12 {
        let plan = vec![StepPlan::new(&format!("s{i}"), Act::Ok)];
        let started = tokio::time::timeout(Duration::from_secs(20), engine.start::<Flow>(plan)).await;
        handles.push(started.expect("start did not hang").expect("start found a pooled connection"));
    }
    for h in handles {
        let out = tokio::time::timeout(Duration::from_secs(30), h.result()).await.expect("run ended").unwrap();
        assert_eq!(out.len(), 1);
    }
    for w in workers {
        w.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_ended_by_another_process_wakes_its_waiter_through_listen_notify() {
    let db = TestDb::postgres().await;
    // The waiter's engine has no worker; another engine with its own pool
    // (another process, as far as the database can tell) runs the run.
    let waiter = Engine::builder().store(db.store().await).namespace("ended").build().await.unwrap();
    let runner = Engine::builder().store(db.store().await).namespace("ended").build().await.unwrap();
    let (flow, probe) = Flow::new();
    let w = Worker::builder(&runner)
        .register(flow)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(200))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let h = waiter.start::<Flow>(vec![StepPlan::new("wait", Act::Gate("g".into()))]).await.unwrap();
    let waiting = tokio::spawn({
        let h = h.clone();
        async move { h.result().await }
    });
    while probe.bodies("wait") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The worker's engine listens, and now the waiter's too: without its
    // LISTEN the waiter would fall back to polling, which also ends the wait.
    hydra_tests::until_listening(runner.connection(), 2).await;
    probe.open("g");
    // The waiter polls only once a minute: the notification has to wake it.
    let out = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("woken by NOTIFY").unwrap().unwrap();
    assert_eq!(out.len(), 1);
    w.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_waiter_whose_listen_connection_drops_still_sees_the_end() {
    use hydra_store::sea_orm::{ConnectionTrait, Statement};
    use std::sync::atomic::Ordering;
    let db = TestDb::postgres().await;
    let (proxy, via_proxy) = hydra_tests::proxy::Proxy::in_front_of(&db.url).await;
    // The waiter reaches the database only through the proxy; the runner directly.
    let waiter = Engine::builder()
        .store(hydra_store::Store::connect(&via_proxy).await.unwrap())
        .namespace("ended")
        .build()
        .await
        .unwrap();
    let runner = Engine::builder().store(db.store().await).namespace("ended").build().await.unwrap();
    let (flow, probe) = Flow::new();
    let w = Worker::builder(&runner)
        .register(flow)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(200))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let h = waiter.start::<Flow>(vec![StepPlan::new("wait", Act::Gate("g".into()))]).await.unwrap();
    let waiting = tokio::spawn({
        let h = h.clone();
        async move { h.result().await }
    });
    let admin = runner.connection().clone();
    // Both engines listen (the worker's and the waiter's connection).
    tokio::time::timeout(Duration::from_secs(30), async {
        while hydra_tests::pg_listeners(&admin).await.len() < 2 || probe.bodies("wait") == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both listening, the body running");
    // The waiter's network fails and its LISTEN connection is dropped; the
    // run ends while it cannot hear about it.
    proxy.held.store(true, Ordering::SeqCst);
    for pid in hydra_tests::pg_listeners(&admin).await {
        let sql = format!("SELECT pg_terminate_backend({pid})");
        admin.execute_raw(Statement::from_string(admin.get_database_backend(), sql)).await.unwrap();
    }
    probe.open("g");
    tokio::time::timeout(Duration::from_secs(30), async {
        while !runner.get(h.id()).await.unwrap().unwrap().status.is_terminal() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run ended");
    proxy.held.store(false, Ordering::SeqCst);
    // The lost connection was reported, so the waiter looked again: it does
    // not sit out its once-a-minute safety poll.
    let out = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("the waiter saw the end").unwrap();
    assert_eq!(out.unwrap().len(), 1);
    w.shutdown(Duration::from_secs(5)).await;
}

/// SQLite has no notifications: a worker watches the file for other
/// connections' commits (`PRAGMA data_version`). A run started by another
/// engine with its own pool (another process, as far as SQLite can tell)
/// is claimed long before the worker's next poll, which is a minute away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_run_started_by_another_process_is_claimed_before_the_next_poll() {
    let db = TestDb::new(hydra_tests::DbKind::Sqlite).await;
    let runner = Engine::builder().store(db.store().await).namespace("watch").build().await.unwrap();
    let starter = Engine::builder().store(db.store().await).namespace("watch").build().await.unwrap();
    let (flow, _probe) = Flow::new();
    let w = Worker::builder(&runner)
        .register(flow)
        .poll_interval(Duration::from_secs(60))
        // Heartbeats far apart too: the worker's own commits do not wake it.
        .heartbeat_interval(Duration::from_secs(10))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    // Past the worker's first claim (at start): from here only a wake-up
    // or the poll a minute away can claim.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        let h = starter.start::<Flow>(vec![StepPlan::new(&format!("s{i}"), Act::Ok)]).await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), h.result()).await.expect("claimed before the poll");
        assert_eq!(out.unwrap().len(), 1);
    }
    w.shutdown(Duration::from_secs(5)).await;
}

/// An in-memory database has no other process to watch for: no watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_watching_needs_a_file() {
    let memory = hydra_store::Store::connect("sqlite::memory:").await.unwrap();
    assert!(memory.wake_ups().await.unwrap().is_none());
    let db = TestDb::new(hydra_tests::DbKind::Sqlite).await;
    let store = db.store().await;
    let mut first = store.wake_ups().await.unwrap().expect("a file is watched");
    let _second = store.wake_ups().await.unwrap().expect("shared");
    let other = db.store().await;
    other.connection().execute_unprepared("CREATE TABLE poke (x INTEGER)").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), first.next())
        .await
        .expect("another connection's commit seen")
        .unwrap();
}
