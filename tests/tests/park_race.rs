//! A run that parks (a durable sleep) hands its lease back in the same
//! commit. A heartbeat that renews the lease just after that commit finds it
//! gone; that is the run's own doing, not a lost lease: it must not be
//! counted as one, nor stop the run's wake-up from being scheduled. The
//! recorder is global to the process, so this test has a binary of its own.
//! The race is one of timing: without the guard against it, this test
//! failed about one run in six on a 2-core machine (the metrics test's
//! scrape caught it too, now and then).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::metrics;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::flow::{Act, Flow, StepPlan};
use hydra_tests::prometheus::{scrape, value};
use hydra_tests::{DbKind, TestDb};
use std::net::SocketAddr;
use std::time::Duration;

const RUNS: usize = 120;
/// Rounds of `RUNS` runs: the race is a matter of timing, each round another try.
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_parks_while_a_heartbeat_renews_it_has_not_lost_its_lease() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for (i, kind) in [DbKind::Sqlite, DbKind::Postgres].into_iter().enumerate() {
        let db = TestDb::new(kind).await;
        let ns = format!("park-race-{i}");
        let mut builder = Engine::builder().store(db.store().await).namespace(&ns);
        if i == 0 {
            builder = builder.prometheus(addr);
        }
        let engine = builder.build().await.unwrap();
        let (flow, _probe) = Flow::new();
        // Heartbeats as often as they come: every park races one.
        let worker = Worker::builder(&engine)
            .register(flow)
            .concurrency(RUNS)
            .heartbeat_interval(Duration::from_millis(1))
            .lease_ttl(Duration::from_secs(10))
            .start()
            .await
            .unwrap();
        let mut handles = Vec::new();
        for _ in 0..RUNS * ROUNDS {
            let plan =
                vec![StepPlan::new("a", Act::Ok), StepPlan::new("z", Act::Sleep(30)), StepPlan::new("b", Act::Ok)];
            handles.push(engine.start::<Flow>(plan).await.unwrap());
        }
        for h in &handles {
            let r = tokio::time::timeout(Duration::from_secs(60), h.result()).await.unwrap();
            assert!(r.is_ok(), "{ns}: {r:?}");
        }
        worker.shutdown(Duration::from_secs(5)).await;
        let body = scrape(addr).await;
        assert_eq!(
            value(&body, metrics::WORKFLOWS_PARKED, &[("namespace", &ns)]),
            (RUNS * ROUNDS) as f64,
            "every run parked once: {ns}"
        );
        assert_eq!(value(&body, metrics::LEASES_LOST, &[("namespace", &ns)]), 0.0, "no run lost its lease: {ns}");
    }
}
