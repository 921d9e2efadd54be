//! Events: a run publishes durable key/values that clients read while it
//! runs; a replay never publishes an old value over a newer one.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::Clock;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::both_backends;
use std::time::{Duration, Instant};

const T0: i64 = 1_800_000_000_000;

/// When the run's event `key` was last written, read from its row.
async fn written_at(e: &Engine, run: &ExecutionId, key: &str) -> i64 {
    let c = e.connection();
    let sql = match c.get_database_backend() {
        hydra_store::sea_orm::DbBackend::Postgres => {
            "SELECT updated_at FROM workflow_events WHERE execution_id = $1 AND event_key = $2"
        }
        _ => "SELECT updated_at FROM workflow_events WHERE execution_id = ? AND event_key = ?",
    };
    let stmt = Statement::from_sql_and_values(c.get_database_backend(), sql, [run.as_str().into(), key.into()]);
    c.query_one_raw(stmt).await.unwrap().expect("the event's row").try_get_by_index::<i64>(0).unwrap()
}

const WAIT: Duration = Duration::from_secs(30);

/// A checkout: "awaiting approval" while it waits for signal `go`, then
/// "paid", then an hour's durable sleep (so it replays, once the test's
/// clock is moved past it), then the receipt.
struct Checkout;

impl Workflow for Checkout {
    const NAME: &'static str = "checkout";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
        ctx.set_event("status", &"awaiting approval".to_owned()).await?;
        let amount: u32 = ctx.recv("go").await?;
        ctx.set_event("status", &format!("paid {amount}")).await?;
        ctx.sleep(Duration::from_secs(3_600)).await;
        ctx.set_event("receipt", &amount).await?;
        Ok("done".into())
    }
}

both_backends! {
    async fn a_client_reads_a_runs_events_while_it_runs_and_replays_do_not_regress_them(db: TestDb) {
        let clock = Clock::manual(T0);
        let e = Engine::builder().store(db.store().await).namespace("events").clock(clock.clone()).build().await.unwrap();
        let w = Worker::builder(&e).register(Checkout).poll_interval(Duration::from_millis(20)).start().await.unwrap();
        let h = e.start::<Checkout>(()).await.unwrap();
        let status: Option<String> = e.wait_event(h.id(), "status", WAIT).await.unwrap();
        assert_eq!(status.as_deref(), Some("awaiting approval"), "readable while the run waits");
        assert_eq!(e.event::<u32>(h.id(), "receipt").await.unwrap(), None, "not set yet");
        e.signal(h.id(), "go", &25u32).await.unwrap();
        let give_up = Instant::now() + WAIT;
        // Paid, and asleep for its hour (a run waiting for a signal sleeps too).
        while e.event::<String>(h.id(), "status").await.unwrap().as_deref() != Some("paid 25")
            || e.get(h.id()).await.unwrap().unwrap().status != ExecutionStatus::Sleeping
        {
            assert!(Instant::now() < give_up, "the run never paid and slept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let published = written_at(&e, h.id(), "status").await;
        assert_eq!(published, T0, "published at the clock's time");
        // The run wakes in a new claim and replays its two publications; a
        // republished status would carry the new time.
        clock.advance(Duration::from_secs(7_200));
        assert_eq!(h.result_timeout(WAIT).await.unwrap(), "done");
        assert_eq!(e.event::<String>(h.id(), "status").await.unwrap().as_deref(), Some("paid 25"));
        assert_eq!(written_at(&e, h.id(), "status").await, published, "the replay published the status again");
        assert_eq!(e.event::<u32>(h.id(), "receipt").await.unwrap(), Some(25));
        assert_eq!(written_at(&e, h.id(), "receipt").await, T0 + 7_200_000, "the receipt is the replay's new call");
        let none: Option<u32> = e.wait_event(h.id(), "never", Duration::from_millis(250)).await.unwrap();
        assert_eq!(none, None, "a bounded wait for an event that never comes");
        let nobody = ExecutionId::generate(0);
        assert!(matches!(e.event::<u32>(&nobody, "status").await.unwrap_err(), Error::NotFound(_)));
        w.shutdown(Duration::from_secs(5)).await;
    }
}
