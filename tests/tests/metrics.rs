//! Metrics: a workload with success, retry, cache hits (resume), failure,
//! non-determinism and a lease takeover, on SQLite and PostgreSQL, then a
//! scrape of the Prometheus endpoint over HTTP. The recorder is global to
//! the process, so both backends run in this one test, under different
//! namespace labels.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::metrics;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Clock, ExecutionStatus};
use hydra_tests::flow::{Act, Flow, StepPlan};
use hydra_tests::prometheus::{scrape, value};
use hydra_tests::{DbKind, TestDb};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;
const WAIT: Duration = Duration::from_secs(30);

async fn wait_for(engine: &Engine, id: &ExecutionId, done: impl Fn(ExecutionStatus) -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done(engine.get(id).await.unwrap().unwrap().status) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {id} did not reach the expected state"));
}

/// Runs the workload in `engine`'s namespace.
async fn workload(engine: &Engine, clock: &Clock) {
    let (flow_a, probe_a) = Flow::new();
    let (flow_b, probe_b) = Flow::new();
    probe_b.open("t");
    // A: one slot, slow heartbeats: it stalls on `t` and loses the lease.
    let a = Worker::builder(engine)
        .register(flow_a)
        .concurrency(1)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_secs(10))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let taken = engine.start::<Flow>(vec![StepPlan::new("t", Act::Gate("t".into()))]).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while probe_a.bodies("t") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let b = Worker::builder(engine)
        .register(flow_b)
        .concurrency(8)
        .poll_interval(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_millis(50))
        .lease_ttl(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let ok = engine.start::<Flow>(vec![StepPlan::new("a", Act::Ok), StepPlan::new("b", Act::Ok)]).await.unwrap();
    let retry = engine.start::<Flow>(vec![StepPlan::new("r", Act::FailTimes(1))]).await.unwrap();
    let fail = engine.start::<Flow>(vec![StepPlan::new("p", Act::Permanent)]).await.unwrap();
    let sleeper = engine
        .start::<Flow>(vec![
            StepPlan::new("s1", Act::Ok),
            StepPlan::new("z", Act::Sleep(1_000)),
            StepPlan::new("s2", Act::Ok),
        ])
        .await
        .unwrap();
    let changed = engine
        .start::<Flow>(vec![
            StepPlan::new("_", Act::Switch("old".into(), "new".into())),
            StepPlan::new("z", Act::Sleep(1_000)),
        ])
        .await
        .unwrap();
    for h in [&ok, &retry, &fail] {
        wait_for(engine, h.id(), |s| s.is_terminal()).await;
    }
    wait_for(engine, sleeper.id(), |s| s == ExecutionStatus::Sleeping).await;
    wait_for(engine, changed.id(), |s| s == ExecutionStatus::Sleeping).await;
    // A deploy changes the code of `changed`; time passes: A's lease expires,
    // sleepers wake, B takes over `taken`.
    probe_b.switch.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(31));
    for h in [&taken, &sleeper] {
        wait_for(engine, h.id(), |s| s.is_terminal()).await;
    }
    // Its code no longer replays it: suspended; an operator fails it.
    wait_for(engine, changed.id(), |s| s == ExecutionStatus::Suspended).await;
    engine.fail(changed.id(), "the deploy changed its first step").await.unwrap();
    // A wakes up and tries to record under its stale token.
    probe_a.open("t");
    tokio::time::timeout(WAIT, async {
        while a.active_runs() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await; // a few heartbeats of B
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
}

/// Waits for one signal and returns it.
struct Ask;

impl Workflow for Ask {
    const NAME: &'static str = "ask";
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        Ok(ctx.recv::<u32>("answer").await?)
    }
}

/// Returns 7 at once.
struct Leaf;

impl Workflow for Leaf {
    const NAME: &'static str = "leaf";
    type Input = ();
    type Output = u32;

    async fn run(&self, _ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        Ok(7)
    }
}

/// Starts a `leaf` child and returns its result.
struct Family;

impl Workflow for Family {
    const NAME: &'static str = "family";
    type Input = ();
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
        Ok(ctx.child::<Leaf>(()).await?)
    }
}

/// Registers a compensation that fails, then fails: ends
/// `compensation_failed`.
struct Undone;

impl Workflow for Undone {
    const NAME: &'static str = "undone";
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
        ctx.compensate(hydra_runtime::Compensation::new("undo-ok", |ctx| async move {
            ctx.step("undo-ok", |_s| async { Ok::<_, StepError>(()) }).await
        }));
        ctx.compensate(hydra_runtime::Compensation::new("undo-bad", |ctx| async move {
            let options = StepOptions::new("undo-bad").retry(RetryPolicy::none());
            ctx.step_with(options, |_s| async { Err::<(), _>(StepError::permanent("no")) }).await
        }));
        Err(WorkflowError::permanent("failed"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_lists_every_seed_metric_with_expected_values() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut namespaces = Vec::new();
    for (i, kind) in [DbKind::Sqlite, DbKind::Postgres].into_iter().enumerate() {
        let db = TestDb::new(kind).await;
        let ns = format!("metrics-{}", if kind == DbKind::Sqlite { "sqlite" } else { "postgres" });
        let clock = Clock::manual(T0);
        let mut builder = Engine::builder().store(db.store().await).namespace(&ns).clock(clock.clone());
        if i == 0 {
            builder = builder.prometheus(addr);
        }
        let engine = builder.build().await.unwrap();
        workload(&engine, &clock).await;
        namespaces.push(ns);
    }
    // A cron tick, in its own namespace.
    {
        let db = TestDb::new(DbKind::Sqlite).await;
        let clock = Clock::manual(T0);
        let engine = Engine::builder()
            .store(db.store().await)
            .namespace("metrics-cron")
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        // A run of a workflow no worker registers (counted by the worker's
        // upkeep when it starts).
        engine
            .start_encoded("retired", b"\x01null".to_vec(), WorkflowOptions::default(), StartOptions::new())
            .await
            .unwrap();
        let (flow, probe) = Flow::new();
        let w = Worker::builder(&engine)
            .register(flow)
            .register(Ask)
            .register(Leaf)
            .register(Family)
            .register(Undone)
            .poll_interval(Duration::from_millis(50))
            .heartbeat_interval(Duration::from_millis(50))
            .lease_ttl(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        engine
            .register_cron(hydra_runtime::CronSchedule::workflow::<Flow>(
                "tick",
                "* * * * *",
                vec![StepPlan::new("c", Act::Ok)],
            ))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(60));
        tokio::time::timeout(WAIT, async {
            while probe.bodies("c") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // Runs cancelled before any worker ran them: one pending (delayed
        // start), one that ended through a worker, counted once each.
        let later = StartOptions::new().delay(Duration::from_secs(3600));
        let pending = engine.start_with::<Flow>(vec![StepPlan::new("never", Act::Ok)], later).await.unwrap();
        assert_eq!(engine.cancel(pending.id()).await.unwrap(), hydra_runtime::CancelOutcome::Cancelled);
        // A signal sent and received.
        let asking = engine.start::<Ask>(()).await.unwrap();
        engine.signal(asking.id(), "answer", &42u32).await.unwrap();
        assert_eq!(asking.result_timeout(WAIT).await.unwrap(), 42);
        // A child started and awaited.
        let family = engine.start::<Family>(()).await.unwrap();
        assert_eq!(family.result_timeout(WAIT).await.unwrap(), 7);
        // Compensations: one completes, one fails.
        let undone = engine.start::<Undone>(()).await.unwrap();
        let err = undone.result_timeout(WAIT).await.unwrap_err();
        assert!(matches!(err, Error::RunEnded { status: ExecutionStatus::CompensationFailed, .. }), "{err}");
        w.shutdown(Duration::from_secs(1)).await;
    }
    let body = scrape(addr).await;
    assert_eq!(value(&body, metrics::CRON_TRIGGERS, &[("namespace", "metrics-cron"), ("schedule", "tick")]), 1.0);
    let cron_ns = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("namespace", "metrics-cron"), ("workflow_name", "flow")];
        l.extend_from_slice(extra);
        l
    };
    assert_eq!(
        value(&body, metrics::WORKFLOWS_STARTED, &cron_ns(&[("trigger", "cron")])),
        1.0,
        "a cron-started run counts as started"
    );
    assert_eq!(value(&body, metrics::WORKFLOWS_STARTED, &cron_ns(&[("trigger", "api")])), 1.0);
    assert_eq!(
        value(&body, metrics::WORKFLOWS_COMPLETED, &cron_ns(&[("status", "cancelled")])),
        1.0,
        "a pending run cancelled by the engine counts as ended cancelled"
    );
    assert_eq!(value(&body, metrics::WORKFLOWS_COMPLETED, &cron_ns(&[("status", "completed")])), 1.0);
    let ask = [("namespace", "metrics-cron"), ("workflow_name", "ask")];
    assert_eq!(value(&body, metrics::SIGNALS_SENT, &ask), 1.0);
    assert_eq!(value(&body, metrics::SIGNALS_RECEIVED, &ask), 1.0);
    assert_eq!(
        value(&body, metrics::WAITS, &[("namespace", "metrics-cron"), ("workflow_name", "ask"), ("kind", "signal")]),
        1.0
    );
    let family = [("namespace", "metrics-cron"), ("workflow_name", "family")];
    assert_eq!(value(&body, metrics::CHILDREN_STARTED, &[family[0], family[1], ("child_workflow", "leaf")]), 1.0);
    assert_eq!(
        value(&body, metrics::WAITS, &[family[0], family[1], ("kind", "child")]),
        1.0,
        "one wait, not one per replay"
    );

    let seed = [
        "hydra_workflows_started_total",
        "hydra_workflows_completed_total",
        "hydra_workflow_duration_seconds",
        "hydra_workflow_queue_time_seconds",
        "hydra_workflows_active",
        "hydra_steps_executed_total",
        "hydra_step_duration_seconds",
        "hydra_steps_cached_total",
        "hydra_steps_retried_total",
        "hydra_worker_polls_total",
        "hydra_worker_heartbeats_total",
        "hydra_lease_acquisitions_total",
        "hydra_worker_concurrency_current",
    ];
    for name in seed.iter().chain(metrics::ALL) {
        assert!(body.contains(&format!("\n{name}")), "metric {name} missing from the scrape:\n{body}");
    }
    for ns in &namespaces {
        let n = [("namespace", ns.as_str())];
        let wf = |extra: &[(&'static str, &'static str)]| {
            let mut l = vec![("namespace", ns.as_str()), ("workflow_name", "flow")];
            l.extend_from_slice(extra);
            l
        };
        assert_eq!(value(&body, metrics::WORKFLOWS_STARTED, &wf(&[])), 6.0, "{ns}");
        assert_eq!(value(&body, metrics::WORKFLOWS_COMPLETED, &wf(&[("status", "completed")])), 4.0, "{ns}");
        assert_eq!(value(&body, metrics::WORKFLOWS_COMPLETED, &wf(&[("status", "failed")])), 2.0, "{ns}");
        assert_eq!(value(&body, "hydra_workflow_duration_seconds_count", &wf(&[])), 6.0, "{ns}");
        assert_eq!(value(&body, "hydra_workflow_queue_time_seconds_count", &wf(&[])), 6.0, "{ns}");
        assert_eq!(value(&body, metrics::STEPS_RETRIED, &wf(&[("step_name", "r")])), 1.0, "{ns}");
        assert_eq!(value(&body, metrics::STEPS_EXECUTED, &wf(&[("step_name", "r"), ("status", "retry")])), 1.0, "{ns}");
        assert_eq!(value(&body, metrics::STEPS_EXECUTED, &wf(&[("step_name", "r"), ("status", "completed")])), 1.0);
        assert_eq!(value(&body, metrics::STEPS_EXECUTED, &wf(&[("step_name", "p"), ("status", "failed")])), 1.0);
        assert_eq!(value(&body, metrics::STEPS_CACHED, &wf(&[("step_name", "s1")])), 1.0, "resumed after the sleep");
        assert!(value(&body, "hydra_step_duration_seconds_count", &wf(&[("step_name", "a")])) >= 1.0);
        assert_eq!(value(&body, metrics::NONDETERMINISM_ERRORS, &wf(&[])), 1.0, "{ns}");
        assert_eq!(value(&body, metrics::RUNS_SUSPENDED, &wf(&[])), 1.0, "{ns}");
        assert_eq!(value(&body, metrics::LEASES_LOST, &wf(&[])), 1.0, "A lost its lease once: {ns}");
        assert!(value(&body, metrics::WORKFLOWS_PARKED, &wf(&[])) >= 2.0);
        assert!(value(&body, metrics::LEASE_ACQUISITIONS, &n) >= 9.0, "6 runs, 2 wake-ups, 1 takeover: {ns}");
        assert!(value(&body, metrics::WORKER_POLLS, &n) >= 2.0);
        assert!(value(&body, metrics::WORKER_HEARTBEATS, &[("namespace", ns.as_str()), ("status", "ok")]) >= 2.0);
        assert!(value(&body, "hydra_payload_bytes_count", &wf(&[("kind", "input")])) >= 6.0);
        assert!(body.contains(&format!("hydra_worker_concurrency_current{{namespace=\"{ns}\"")), "{ns}");
        assert_eq!(value(&body, metrics::WORKFLOWS_ACTIVE, &n), 0.0, "all runs ended");
    }
    assert!(!body.contains("execution_id"), "no execution IDs as labels");
}

#[test]
fn the_grafana_dashboard_has_the_seed_queries_and_only_real_metrics() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/grafana/hydra-dashboard.json"))
            .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    let all = exprs.join("\n");
    for seed in [
        "rate(hydra_workflows_completed_total[5m])",
        "rate(hydra_workflow_duration_seconds_sum[5m])) / sum by (workflow_name) (rate(hydra_workflow_duration_seconds_count[5m])",
        "rate(hydra_steps_cached_total[5m])) / sum(rate(hydra_steps_executed_total[5m])",
        "hydra_workflows_active / hydra_worker_concurrency_current",
    ] {
        assert!(all.contains(seed), "dashboard lacks the seed query {seed}");
    }
    for word in all.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("hydra_")) {
        let base = word.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        assert!(metrics::ALL.contains(&base), "dashboard uses {word}, which Hydra does not record");
    }
}
