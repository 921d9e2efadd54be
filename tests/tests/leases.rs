//! Leases from the moment of the claim: a resumed run is renewed and
//! guarded while its history loads, so no step body starts on a lease that
//! expired meanwhile.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::both_backends;
use hydra_tests::flow::{Act, Flow, StepPlan};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

both_backends! {
    async fn a_slow_history_load_keeps_the_lease_and_no_second_body_starts(db: TestDb) {
        let engine = Engine::builder().store(db.store().await).namespace("leases").build().await.unwrap();
        let (flow_a, probe) = Flow::new();
        // A reads histories slower than its lease lasts (as on a failing-over
        // database): 1.5 s against a 600 ms lease.
        let a = Worker::builder(&engine)
            .register(flow_a)
            .concurrency(1)
            .poll_interval(Duration::from_millis(20))
            .heartbeat_interval(Duration::from_millis(150))
            .lease_ttl(Duration::from_millis(600))
            .__history_delay(Duration::from_millis(1_500))
            .worker_id(hydra_runtime::WorkerId::from_string("slow-history"))
            .start()
            .await
            .unwrap();
        // A durable sleep first, so the second claim (token 2) has a history.
        let plan = vec![StepPlan::new("nap", Act::Sleep(1)), StepPlan::new("charge", Act::Busy(200))];
        let h = engine.start::<Flow>(plan).await.unwrap();
        tokio::time::timeout(WAIT, async {
            loop {
                let e = engine.get(h.id()).await.unwrap().unwrap();
                if e.fencing_token.get() >= 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("A claimed the run again after its sleep");
        // B would take the run over the moment A's lease expired.
        let (flow_b, probe_b) = Flow::new();
        let b = Worker::builder(&engine)
            .register(flow_b)
            .poll_interval(Duration::from_millis(20))
            .heartbeat_interval(Duration::from_millis(150))
            .lease_ttl(Duration::from_millis(600))
            .start()
            .await
            .unwrap();
        let out = tokio::time::timeout(WAIT, h.result()).await.expect("the run ended").unwrap();
        assert_eq!(out.len(), 1, "one step output (the sleep has none)");
        assert_eq!(
            probe.bodies("charge") + probe_b.bodies("charge"),
            1,
            "one body: A kept its lease while its history loaded, so B never took the run over"
        );
        assert_eq!(engine.get(h.id()).await.unwrap().unwrap().fencing_token.get(), 2, "no takeover");
        a.shutdown(Duration::from_secs(2)).await;
        b.shutdown(Duration::from_secs(2)).await;
    }
}
