//! Memory: the peak resident set of one process (engine, worker and the
//! code starting runs) with 10,000 runs in flight at once, and with
//! 100,000 runs parked waiting for a signal, next to the same process idle.
//!
//!     cargo run --release -p hydra-examples --bin memory_bench -- --backend both
//!
//! Each case runs in a child process of its own (this program started
//! again with `--case`), so each peak is its own. "In flight": a worker
//! with 10,000 slots holds 10,000 runs whose one step waits (a timer, not a
//! durable sleep) until all of them are running. "Parked": 100,000 runs
//! have each reached `recv` and wait in the database; the worker holds
//! none of them. Prints a table row and a JSON line per backend.

use clap::Parser;
use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, Database};
use hydra_store::StoreOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Released when every run of the in-flight case is running.
static RELEASE: AtomicBool = AtomicBool::new(false);

#[step]
async fn hold(i: u32) -> Result<u32, StepError> {
    while !RELEASE.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(i)
}

#[workflow(name = "mem-hold")]
async fn hold_wf(ctx: WorkflowContext, i: u32) -> Result<u32, WorkflowError> {
    Ok(hold(&ctx, i).await?)
}

#[workflow(name = "mem-park")]
async fn park_wf(ctx: WorkflowContext, _i: u32) -> Result<u32, WorkflowError> {
    let go: u32 = ctx.recv("go").await?;
    Ok(go)
}

/// Peak memory with many runs in flight and many parked (see the module docs).
#[derive(Debug, Parser)]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, value_parser = ["sqlite", "postgres", "both"], default_value = "sqlite")]
    backend: String,
    /// Admin URL of a PostgreSQL server; the benchmark creates its own databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:55432/postgres")]
    pg_url: String,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 10_000)]
    in_flight: u32,
    /// Runs parked.
    #[arg(long, default_value_t = 100_000)]
    parked: u32,
    /// Internal: run one case in this process (idle, in-flight or parked) and print its peak.
    #[arg(long, hide = true)]
    case: Option<String>,
}

/// (VmHWM, VmRSS) of this process, in MiB.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn fresh_db(backend: &str, pg_url: &str, tag: &str) -> Result<String, Box<dyn std::error::Error>> {
    if backend == "sqlite" {
        let dir = std::env::temp_dir().join("hydra-bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("memory_{tag}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        return Ok(format!("sqlite://{}?mode=rwc", path.display()));
    }
    let admin = Database::connect(pg_url).await?;
    let name = format!("hydra_memory_{tag}");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
    admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await?;
    admin.close().await?;
    let base = pg_url.rsplit_once('/').map_or(pg_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// How many runs of `workflow` have `status`.
async fn count(engine: &Engine, workflow: &str, status: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let counts = engine.status_counts().await?;
    Ok(counts.iter().filter(|c| c.workflow_name == workflow && c.status == status).map(|c| c.runs).sum())
}

/// Starts `n` runs from 16 tasks at once.
async fn start_many<W>(engine: &Engine, n: u32) -> Result<(), Box<dyn std::error::Error>>
where
    W: hydra_runtime::Workflow<Input = u32>,
{
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..16u32 {
        let engine = engine.clone();
        tasks.spawn(async move {
            let mut i = part;
            while i < n {
                engine.start::<W>(i).await?;
                i += 16;
            }
            Ok::<(), Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// One case in this process; returns (peak MiB, runs reached, seconds).
async fn case(args: &Args, backend: &str, which: &str) -> Result<(f64, u64, f64), Box<dyn std::error::Error>> {
    let url = fresh_db(backend, &args.pg_url, which).await?;
    let opts = StoreOptions::new(url).max_connections(if backend == "sqlite" { 8 } else { 32 });
    let engine = Engine::builder().store_options(opts).namespace("memory").build().await?;
    let t0 = std::time::Instant::now();
    let reached = match which {
        "idle" => {
            let worker = Worker::builder(&engine).register(hold_wf).concurrency(64).start().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            worker.shutdown(Duration::from_secs(5)).await;
            0
        }
        "in-flight" => {
            let n = args.in_flight;
            let worker = Worker::builder(&engine)
                .register(hold_wf)
                .concurrency(n as usize)
                .claim_batch(256)
                .lease_ttl(Duration::from_secs(120))
                .start()
                .await?;
            start_many::<hold_wf>(&engine, n).await?;
            let mut running = 0;
            while running < u64::from(n) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                running = count(&engine, "mem-hold", "running").await?;
            }
            RELEASE.store(true, Ordering::Relaxed);
            while count(&engine, "mem-hold", "completed").await? < u64::from(n) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            worker.shutdown(Duration::from_secs(10)).await;
            running
        }
        _ => {
            let n = args.parked;
            let worker = Worker::builder(&engine).register(park_wf).concurrency(64).claim_batch(64).start().await?;
            start_many::<park_wf>(&engine, n).await?;
            let mut parked = 0;
            while parked < u64::from(n) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                parked = count(&engine, "mem-park", "sleeping").await?;
            }
            worker.shutdown(Duration::from_secs(10)).await;
            parked
        }
    };
    Ok((memory_mb().0, reached, t0.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Some(which) = &args.case {
        let (peak, reached, secs) = case(&args, &args.backend, which).await?;
        println!("{peak:.1} {reached} {secs:.1}");
        return Ok(());
    }
    let backends: Vec<&str> = match args.backend.as_str() {
        "both" => vec!["sqlite", "postgres"],
        b => vec![b],
    };
    println!("{:<8} {:>14} {:>22} {:>22}", "backend", "idle peak MiB", "in flight: runs, MiB", "parked: runs, MiB");
    for backend in backends {
        let mut figures = Vec::new();
        for which in ["idle", "in-flight", "parked"] {
            let out = std::process::Command::new(std::env::current_exe()?)
                .args(["--backend", backend, "--pg-url", &args.pg_url, "--case", which])
                .args(["--in-flight", &args.in_flight.to_string(), "--parked", &args.parked.to_string()])
                .output()?;
            if !out.status.success() {
                return Err(format!("the {which} case failed: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let mut parts = text.split_whitespace();
            let peak: f64 = parts.next().ok_or("no peak")?.parse()?;
            let reached: u64 = parts.next().ok_or("no count")?.parse()?;
            figures.push((peak, reached));
        }
        let [(idle, _), (flight, flying), (park, parked)] = figures[..] else { return Err("three cases".into()) };
        println!(
            "{backend:<8} {idle:>14.1} {:>22} {:>22}",
            format!("{flying}, {flight:.1}"),
            format!("{parked}, {park:.1}")
        );
        println!(
            "{{\"bench\":\"memory\",\"backend\":\"{backend}\",\"idle_peak_mib\":{idle:.1},\"in_flight\":{flying},\"in_flight_peak_mib\":{flight:.1},\"parked\":{parked},\"parked_peak_mib\":{park:.1}}}"
        );
    }
    Ok(())
}
