//! A network partition between a worker and PostgreSQL: a TCP proxy in the
//! test holds all of the worker's traffic for longer than the lease TTL,
//! then delivers it. The partitioned worker stops its run before the lease
//! expires, another worker takes the run over, and nothing the partitioned
//! worker sent is applied after the partition heals.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::TestDb;
use hydra_tests::flow::{Act, Flow, StepPlan};
use hydra_tests::proxy::Proxy;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

async fn query_i64(conn: &hydra_store::sea_orm::DatabaseConnection, sql: String) -> Option<i64> {
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    row.and_then(|r| r.try_get_by_index::<Option<i64>>(0).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_partitioned_worker_stops_before_its_lease_expires_and_nothing_it_sends_is_applied_after() {
    let db = TestDb::postgres().await;
    let (proxy, via_proxy) = Proxy::in_front_of(&db.url).await;

    // B reaches the database directly; A only through the proxy.
    let direct = Engine::builder().store(db.store().await).namespace("part").build().await.unwrap();
    let store_a = hydra_store::Store::connect(&via_proxy).await.unwrap();
    let engine_a = Engine::builder().store(store_a).namespace("part").build().await.unwrap();
    let (flow_a, probe_a) = Flow::new();
    *probe_a.tag.lock().unwrap() = "A".into();
    let ttl = Duration::from_millis(3_000);
    let a = Worker::builder(&engine_a)
        .register(flow_a)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(1_000))
        .lease_ttl(ttl)
        .start()
        .await
        .unwrap();
    let h = direct.start::<Flow>(vec![StepPlan::new("pay", Act::Gate("g".into()))]).await.unwrap();
    let conn = direct.connection().clone();
    let expiry_sql = format!("SELECT due_at FROM workflow_executions WHERE id = '{}'", h.id());
    // A runs the body (its gate stays shut); the partition starts right
    // after one of A's renewals committed, so A holds no transaction open.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while probe_a.bodies("pay") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "A never started the body");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = query_i64(&conn, expiry_sql.clone()).await;
    let expiry = loop {
        let now = query_i64(&conn, expiry_sql.clone()).await;
        if now != before {
            proxy.held.store(true, Ordering::SeqCst);
            break now.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no renewal seen");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    // A's body now finishes: its checkpoint goes into the partition and is
    // held there. Nothing A does can move the expiry any more: A must stop
    // the run before it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    probe_a.open("g");
    let stopped_at = loop {
        if a.active_runs() == 0 {
            break now_ms();
        }
        assert!(now_ms() < expiry + 5_000, "A never stopped the partitioned run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(stopped_at < expiry, "A stopped the run at {stopped_at}, after its lease expired at {expiry}");

    // B takes the run over once the lease expired; its body waits.
    let (flow_b, probe_b) = Flow::new();
    *probe_b.tag.lock().unwrap() = "B".into();
    let b = Worker::builder(&direct)
        .register(flow_b)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(1_000))
        .lease_ttl(ttl)
        .start()
        .await
        .unwrap();
    while probe_b.bodies("pay") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "B never took the run over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The partition heals: A's held checkpoint (and renewals, claims)
    // reach the database now, under A's old token.
    proxy.held.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(direct.steps(h.id()).await.unwrap().is_empty(), "A's late checkpoint was refused by the fence");
    let run = direct.get(h.id()).await.unwrap().unwrap();
    assert_eq!((run.status, run.fencing_token.get()), (ExecutionStatus::Running, 2), "still B's");

    probe_b.open("g");
    let out = tokio::time::timeout(Duration::from_secs(30), h.result()).await.expect("B finished the run").unwrap();
    assert_eq!(out, ["B"]);
    let steps = direct.steps(h.id()).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].fencing_token.get(), 2, "the step row is B's");
    a.shutdown(Duration::from_secs(2)).await;
    b.shutdown(Duration::from_secs(2)).await;
}
