//! Events: a run publishes durable key/values that clients read while it
//! runs; a replay never publishes an old value over a newer one.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_tests::both_backends;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A checkout: "awaiting approval" while it waits for signal `go`, then a
/// durable sleep (so it replays), then "paid".
struct Checkout;

impl Workflow for Checkout {
    const NAME: &'static str = "checkout";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        ctx.set_event("status", &"awaiting approval".to_owned()).await?;
        let amount: u32 = ctx.recv("go").await?;
        ctx.set_event("status", &format!("paid {amount}")).await?;
        ctx.sleep(Duration::from_millis(30)).await;
        ctx.set_event("receipt", &amount).await?;
        Ok("done".into())
    }
}

both_backends! {
    async fn a_client_reads_a_runs_events_while_it_runs_and_replays_do_not_regress_them(db: TestDb) {
        let e = Engine::builder().store(db.store().await).namespace("events").build().await.unwrap();
        let w = Worker::builder(&e).register(Checkout).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        let h = e.start::<Checkout>(()).await.unwrap();
        let status: Option<String> = e.wait_event(h.id(), "status", WAIT).await.unwrap();
        assert_eq!(status.as_deref(), Some("awaiting approval"), "readable while the run waits");
        assert_eq!(e.event::<u32>(h.id(), "receipt").await.unwrap(), None, "not set yet");
        e.signal(h.id(), "go", &25u32).await.unwrap();
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "done");
        // The run replayed after its sleep: the first status was not
        // published again over the newer one.
        assert_eq!(e.event::<String>(h.id(), "status").await.unwrap().as_deref(), Some("paid 25"));
        assert_eq!(e.event::<u32>(h.id(), "receipt").await.unwrap(), Some(25));
        let none: Option<u32> = e.wait_event(h.id(), "never", Duration::from_millis(250)).await.unwrap();
        assert_eq!(none, None, "a bounded wait for an event that never comes");
        let nobody = ExecutionId::generate(0);
        assert!(matches!(e.event::<u32>(&nobody, "status").await.unwrap_err(), Error::NotFound(_)));
        w.shutdown(Duration::from_secs(5)).await;
    }
}
