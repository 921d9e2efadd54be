//! PostgreSQL is restarted (stop/start of the test cluster) while worker
//! processes are mid-run: they reconnect and finish everything, nothing lost
//! or duplicated. Its own test binary: the restart disturbs every connection.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::ExecutionFilter;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::fault::{FaultFlow, FaultPlan, ProcConfig, WorkerProc, body_log};
use hydra_tests::{DbKind, TestDb};
use std::process::Command;
use std::time::{Duration, Instant};

fn restart_postgres() {
    let data = std::env::var("HYDRA_TEST_PG_DATA").expect("HYDRA_TEST_PG_DATA (set by scripts/test)");
    let bin = std::env::var("HYDRA_TEST_PG_BIN").expect("HYDRA_TEST_PG_BIN (set by scripts/test)");
    let user = std::env::var("HYDRA_TEST_PG_OS_USER").unwrap_or_default();
    let pg_ctl = format!("{bin}/pg_ctl");
    let args = ["-D", data.as_str(), "-m", "fast", "-w", "-t", "60", "restart"];
    let status = if user.is_empty() || std::env::var("USER").ok().as_deref() == Some(user.as_str()) {
        Command::new(&pg_ctl).args(args).stdout(std::process::Stdio::null()).status()
    } else {
        Command::new("runuser")
            .args(["-u", user.as_str(), "--", pg_ctl.as_str()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
    };
    assert!(status.unwrap().success(), "pg_ctl restart failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_run_loses_and_duplicates_nothing() {
    let db = TestDb::new(DbKind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder().store(db.store().await).namespace("restart").build().await.unwrap();
    let cfg = ProcConfig {
        bin: env!("CARGO_BIN_EXE_fault_worker").into(),
        url: db.url.clone(),
        namespace: "restart".into(),
        log: dir.path().join("bodies.log"),
        dir: dir.path().to_owned(),
        concurrency: 4,
        ttl_ms: 3_000,
        heartbeat_ms: 500,
    };
    let (n, steps) = (80, 4);
    for _ in 0..n {
        engine.start::<FaultFlow>(FaultPlan::steps(steps, 20)).await.unwrap();
    }
    let procs: Vec<WorkerProc> = (0..2).map(|i| WorkerProc::start(&cfg, i)).collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = body_log(&cfg.log).len();
    restart_postgres();
    let restarted_at = body_log(&cfg.log).len();
    eprintln!("database restart: {before} bodies before the restart, {restarted_at} when it was back");
    let give_up = Instant::now() + Duration::from_secs(180);
    let runs = loop {
        // The test's own pool reconnects too.
        if let Ok(runs) = engine.list(ExecutionFilter::new("restart").limit(1_000)).await
            && runs.iter().all(|r| r.status.is_terminal())
        {
            break runs;
        }
        assert!(Instant::now() < give_up, "runs did not finish after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(procs);
    assert!(before > 0 && before < n * steps as usize, "the restart happened mid-run ({before} bodies)");
    assert_eq!(runs.len(), n);
    assert!(runs.iter().all(|r| r.status == ExecutionStatus::Completed), "nothing lost");
    let c = engine.connection();
    let row = c
        .query_one_raw(Statement::from_string(c.get_database_backend(), "SELECT COUNT(*) FROM workflow_steps"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), (n * steps as usize) as i64, "one result per step");
}
