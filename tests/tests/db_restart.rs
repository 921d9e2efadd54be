//! PostgreSQL is restarted (stop/start of the test cluster) while worker
//! processes are mid-run: they reconnect and finish everything, nothing lost
//! or duplicated. Then crashed (`pg_ctl -m immediate`: no checkpoint, the
//! server recovers from its WAL) while starts keep coming: every start,
//! step result and run end it acknowledged is there afterwards. Its own
//! test binary: the restart disturbs every connection (and the two tests
//! take turns).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_runtime::ExecutionFilter;
use hydra_runtime::prelude::*;
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_store::sea_orm::{ConnectionTrait, Statement};
use hydra_tests::campaign::workers;
use hydra_tests::fault::{BodyLog, FaultFlow, FaultPlan, ProcConfig};
use hydra_tests::{DbKind, TestDb};
use std::process::Command;
use std::time::{Duration, Instant};

/// One restart at a time (they share the server).
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn restart_postgres(mode: &str) {
    let data = std::env::var("HYDRA_TEST_PG_DATA").expect("HYDRA_TEST_PG_DATA (set by scripts/test)");
    let bin = std::env::var("HYDRA_TEST_PG_BIN").expect("HYDRA_TEST_PG_BIN (set by scripts/test)");
    let user = std::env::var("HYDRA_TEST_PG_OS_USER").unwrap_or_default();
    let pg_ctl = format!("{bin}/pg_ctl");
    let args = ["-D", data.as_str(), "-m", mode, "-w", "-t", "60", "restart"];
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

/// Worker processes on `db`'s namespace `ns`, four runs at once each,
/// logging their bodies in `dir`.
fn proc_config(db: &TestDb, dir: &tempfile::TempDir, ns: &str) -> ProcConfig {
    ProcConfig {
        bin: env!("CARGO_BIN_EXE_fault_worker").into(),
        url: db.url.clone(),
        namespace: ns.into(),
        log: dir.path().join("bodies.log"),
        dir: dir.path().to_owned(),
        concurrency: 4,
        ttl_ms: 3_000,
        heartbeat_ms: 500,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_run_loses_and_duplicates_nothing() {
    let _turn = SERVER.lock().await;
    let db = TestDb::new(DbKind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder().store(db.store().await).namespace("restart").build().await.unwrap();
    let cfg = proc_config(&db, &dir, "restart");
    let (n, steps) = (80, 4);
    for _ in 0..n {
        engine.start::<FaultFlow>(FaultPlan::steps(steps, 20)).await.unwrap();
    }
    let procs = workers(&cfg, 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = BodyLog::read(&cfg.log).started.len();
    restart_postgres("fast");
    let restarted_at = BodyLog::read(&cfg.log).started.len();
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
    // The unique (run, step) index makes a second result row impossible;
    // what the restart could duplicate is a body, under one counted attempt.
    let log = BodyLog::read(&cfg.log);
    eprintln!(
        "database restart: {} bodies for {} steps ({} ran again)",
        log.started.len(),
        n * steps as usize,
        log.reruns()
    );
    assert_eq!(log.steps().len(), n * steps as usize, "every step's body ran");
    let twice = log.repeated_attempts();
    assert!(twice.is_empty(), "two bodies under one attempt: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_mid_run_keeps_every_acknowledged_write() {
    let _turn = SERVER.lock().await;
    let db = TestDb::new(DbKind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder().store(db.store().await).namespace("crash").build().await.unwrap();
    let cfg = proc_config(&db, &dir, "crash");
    let (n, steps) = (60, 4);
    for _ in 0..n {
        engine.start::<FaultFlow>(FaultPlan::steps(steps, 20)).await.unwrap();
    }
    let procs = workers(&cfg, 2).await;
    // Starts keep coming through the crash; those answered Ok are the
    // acknowledged ones.
    let starter = tokio::spawn({
        let engine = engine.clone();
        async move {
            let (mut acked, mut refused) = (Vec::new(), 0u32);
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                match engine.start::<FaultFlow>(FaultPlan::steps(steps, 20)).await {
                    Ok(h) => acked.push(h.id().clone()),
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, refused)
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = BodyLog::read(&cfg.log).started.len();
    restart_postgres("immediate");
    let (acked, refused) = starter.await.unwrap();
    let give_up = Instant::now() + Duration::from_secs(180);
    let runs = loop {
        if let Ok(runs) = engine.list(ExecutionFilter::new("crash").limit(10_000)).await
            && runs.iter().all(|r| r.status.is_terminal())
        {
            break runs;
        }
        assert!(Instant::now() < give_up, "runs did not finish after the crash");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(procs);
    // Starts kept coming: "mid-run" is measured against every run's steps.
    let all_steps = runs.len() * steps as usize;
    assert!(before > 0 && before < all_steps, "the crash happened mid-run ({before} of {all_steps} bodies)");
    // Every acknowledged start is there, and every run finished.
    let ids: std::collections::HashSet<&ExecutionId> = runs.iter().map(|r| &r.id).collect();
    let lost: Vec<&ExecutionId> = acked.iter().filter(|id| !ids.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged starts lost in the crash: {lost:?}");
    assert!(runs.len() >= n + acked.len(), "{} runs for {} acknowledged starts", runs.len(), n + acked.len());
    assert!(runs.iter().all(|r| r.status == ExecutionStatus::Completed), "nothing lost");
    // One result per step; bodies ran again only where a result was not
    // yet committed when the server went down (at most one body per slot).
    let c = engine.connection();
    let row = c
        .query_one_raw(Statement::from_string(c.get_database_backend(), "SELECT COUNT(*) FROM workflow_steps"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), (runs.len() * steps as usize) as i64, "one result per step");
    let log = BodyLog::read(&cfg.log);
    let again = log.reruns();
    eprintln!(
        "database crash (-m immediate): {before} bodies before it; {} starts acknowledged during the run, {refused} \
         refused while the server was down; {} runs, all completed; {} bodies for {} steps ({again} ran again)",
        acked.len(),
        runs.len(),
        log.started.len(),
        runs.len() * steps as usize
    );
    let twice = log.repeated_attempts();
    assert!(twice.is_empty(), "two bodies under one attempt: {twice:?}");
    assert!(
        again <= 2 * 4 * 2,
        "{again} bodies ran again: more than the slots in flight at the crash (and one retry each)"
    );
}
