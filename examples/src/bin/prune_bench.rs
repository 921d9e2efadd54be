//! Retention under load: claims and steps per second while 10^6 finished
//! runs (and their steps) are pruned, against the same load measured just
//! before without a prune, in the same run.
//!
//!     cargo run --release -p hydra-examples --bin prune_bench -- --backend both
//!
//! The load keeps `-w` runs of `-k` no-op steps in flight (a new run starts
//! when one ends). It is measured for `--secs` seconds alone, then again
//! while `Engine::prune` deletes the seeded runs in batches of `--batch`.
//! Reported: steps/s and runs/s of each phase and their ratio, the longest
//! gap between two step completions (a stall would show here), and the
//! prune's own rate. PostgreSQL needs a server (`--pg-url`).

use clap::Parser;
use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, Database, DbBackend};
use hydra_runtime::unstable::EngineBuilderStoreExt as _;
use hydra_runtime::{Retention, StoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static STEPS: AtomicU64 = AtomicU64::new(0);
/// Microseconds since the start of the process of the last step, and the
/// longest gap seen between two steps.
static LAST_STEP_US: AtomicI64 = AtomicI64::new(0);
static MAX_GAP_US: AtomicI64 = AtomicI64::new(0);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

#[step]
async fn tick(i: u32) -> Result<u32, StepError> {
    STEPS.fetch_add(1, Ordering::Relaxed);
    let now = i64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(i64::MAX);
    let last = LAST_STEP_US.swap(now, Ordering::Relaxed);
    if last > 0 {
        MAX_GAP_US.fetch_max(now - last, Ordering::Relaxed);
    }
    Ok(i)
}

#[workflow(name = "load")]
async fn load(ctx: WorkflowContext, k: u32) -> Result<u32, WorkflowError> {
    let mut sum = 0;
    for i in 0..k {
        sum += tick(&ctx, i).await?;
    }
    Ok(sum)
}

/// Retention under load (see the module docs).
#[derive(Debug, Parser)]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, value_parser = ["sqlite", "postgres", "both"], default_value = "sqlite")]
    backend: String,
    /// Admin URL of a PostgreSQL server; the benchmark creates its own database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:55432/postgres")]
    pg_url: String,
    /// Finished runs to seed (one step row each) and prune.
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// Runs in flight.
    #[arg(short = 'w', default_value_t = 16)]
    w: usize,
    /// Steps per run.
    #[arg(short = 'k', default_value_t = 10)]
    k: u32,
    /// Seconds of the baseline phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Runs deleted per prune transaction.
    #[arg(long, default_value_t = 500)]
    batch: u32,
}

async fn fresh_db(backend: &str, args: &Args) -> Result<String, Box<dyn std::error::Error>> {
    if backend == "sqlite" {
        let dir = std::env::temp_dir().join("hydra-bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("prune.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        return Ok(format!("sqlite://{}?mode=rwc", path.display()));
    }
    let admin = Database::connect(args.pg_url.as_str()).await?;
    admin.execute_unprepared("DROP DATABASE IF EXISTS \"hydra_bench_prune\" WITH (FORCE)").await?;
    admin.execute_unprepared("CREATE DATABASE \"hydra_bench_prune\"").await?;
    admin.close().await?;
    let base = args.pg_url.rsplit_once('/').map_or(args.pg_url.as_str(), |(b, _)| b);
    Ok(format!("{base}/hydra_bench_prune"))
}

/// `n` runs that ended at time 1000 (long ago), one completed step each.
async fn seed(store: &hydra_store::Store, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let db = store.connection();
    let series = match db.get_database_backend() {
        DbBackend::Postgres => format!("generate_series(1, {n}) AS s(i)"),
        _ => {
            format!("(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {n}) SELECT i FROM r) s")
        }
    };
    let blob = match db.get_database_backend() {
        DbBackend::Postgres => "'\\x02'::bytea",
        _ => "X'02'",
    };
    db.execute_unprepared(&format!(
        "INSERT INTO workflow_executions (id, namespace, workflow_name, status, input_data, max_attempts, attempts, \
         trigger_type, created_at, updated_at, completed_at, fencing_token, cancel_requested, open_position, \
         open_attempts) SELECT 'old-' || i, 'default', 'load', 'completed', {blob}, 1, 1, 'api', 1000, 1000, 1000, 1, \
         FALSE, 1, 0 FROM {series}"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, kind, status, attempts, \
         max_attempts, output_data, started_at, completed_at, fencing_token) SELECT 'old-' || i, 'default', 'tick', \
         'tick', 0, 'step', 'completed', 1, 1, {blob}, 1000, 1000, 1 FROM {series}"
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    Ok(())
}

/// Keeps `w` runs in flight until `stop`; returns runs finished.
fn start_load(engine: &Engine, w: usize, k: u32, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    for _ in 0..w {
        let engine = engine.clone();
        let stop = Arc::clone(&stop);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match load::start(&engine, k).await {
                    Ok(h) => {
                        if h.result_timeout(Duration::from_secs(60)).await.is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("start failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
}

/// Steps/s, runs/s and the longest step gap (ms) over `window`, measured
/// while `during` runs (or for `secs` when there is nothing to wait for).
struct Phase {
    seconds: f64,
    steps_per_s: f64,
    runs_per_s: f64,
    max_gap_ms: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let backends: Vec<&str> = match args.backend.as_str() {
        "both" => vec!["sqlite", "postgres"],
        b => vec![b],
    };
    println!(
        "{:<8} {:>9} {:>10} {:>10} {:>7} {:>10} {:>10} {:>9} {:>9} {:>12}",
        "backend",
        "seeded",
        "base st/s",
        "prune st/s",
        "ratio",
        "base run/s",
        "prune run/s",
        "base gap",
        "prune gap",
        "pruned/s"
    );
    for backend in backends {
        let url = fresh_db(backend, &args).await?;
        let store = hydra_store::Store::connect_with(StoreOptions::new(url.clone())).await?;
        let t = Instant::now();
        seed(&store, args.runs).await?;
        eprintln!("{backend}: seeded {} finished runs in {:.1}s", args.runs, t.elapsed().as_secs_f64());
        let engine = Engine::builder().store(store).build().await?;
        let worker = Worker::builder(&engine).register(load).concurrency(args.w).start().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        start_load(&engine, args.w, args.k, Arc::clone(&stop), Arc::clone(&done));
        tokio::time::sleep(Duration::from_secs(2)).await; // warm up

        let measure = |t0: Instant, s0: u64, r0: u64| Phase {
            seconds: t0.elapsed().as_secs_f64(),
            steps_per_s: (STEPS.load(Ordering::Relaxed) - s0) as f64 / t0.elapsed().as_secs_f64(),
            runs_per_s: (done.load(Ordering::Relaxed) - r0) as f64 / t0.elapsed().as_secs_f64(),
            max_gap_ms: MAX_GAP_US.swap(0, Ordering::Relaxed) as f64 / 1000.0,
        };
        MAX_GAP_US.store(0, Ordering::Relaxed);
        let (t0, s0, r0) = (Instant::now(), STEPS.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(args.secs)).await;
        let base = measure(t0, s0, r0);

        MAX_GAP_US.store(0, Ordering::Relaxed);
        let (t0, s0, r0) = (Instant::now(), STEPS.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
        let pruned = engine.prune(&Retention::keep(Duration::from_secs(3600)).batch(args.batch)).await?;
        let during = measure(t0, s0, r0);
        stop.store(true, Ordering::Relaxed);
        worker.shutdown(Duration::from_secs(10)).await;
        let rate = pruned.runs as f64 / during.seconds;
        let ratio = during.steps_per_s / base.steps_per_s;
        println!(
            "{backend:<8} {:>9} {:>10.0} {:>10.0} {:>7.2} {:>10.1} {:>10.1} {:>8.1}ms {:>8.1}ms {:>12.0}",
            pruned.runs,
            base.steps_per_s,
            during.steps_per_s,
            ratio,
            base.runs_per_s,
            during.runs_per_s,
            base.max_gap_ms,
            during.max_gap_ms,
            rate
        );
        println!(
            "{{\"bench\":\"prune-under-load\",\"backend\":\"{backend}\",\"pruned_runs\":{},\"pruned_steps\":{},\"prune_seconds\":{:.2},\"pruned_runs_per_s\":{rate:.0},\"base_steps_per_s\":{:.1},\"prune_steps_per_s\":{:.1},\"ratio\":{ratio:.3},\"base_runs_per_s\":{:.1},\"prune_runs_per_s\":{:.1},\"base_max_step_gap_ms\":{:.1},\"prune_max_step_gap_ms\":{:.1},\"base_seconds\":{:.1}}}",
            pruned.runs,
            pruned.steps,
            during.seconds,
            base.steps_per_s,
            during.steps_per_s,
            base.runs_per_s,
            during.runs_per_s,
            base.max_gap_ms,
            during.max_gap_ms,
            base.seconds
        );
    }
    Ok(())
}
