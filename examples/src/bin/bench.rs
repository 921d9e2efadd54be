//! Throughput and latency benchmark: N workflows of K no-op steps with W
//! runs at once in one process, on SQLite (file, WAL) and PostgreSQL, next
//! to the floor measured in the same run: bare single-row insert
//! transactions (one commit each) through the same database and pool
//! settings.
//!
//!     cargo run --release -p hydra-examples --bin bench -- [OPTIONS]
//!
//! Options: `--backend sqlite|postgres|both` (sqlite), `--pg-url URL` (admin
//! URL of a PostgreSQL server; the benchmark creates its own databases),
//! `-n N` (1000), `-k K` (10), `-w W` (64), `--matrix` (K = 1, 10, 100 ×
//! W = 1, 16, 64), `--no-group-commit`, `--no-writer-thread` (SQLite writes
//! through the pool), `--start-many` (runs started
//! with `Engine::start_many`, 256 per commit), `--floor-secs S` (5),
//! `--claim-flatness` (instead: the cost of a claim with 10³ and with 10⁶
//! finished, sleeping and signal-waiting runs in the table), `--latency`
//! (instead: start→first-step latency with free slots, for runs started in
//! the worker's process and by another engine, and signal→next-step
//! latency of parked runs, signalled the same two ways). `--help` lists
//! them. `--peer durare` (instead): the peer comparison, durare 0.5
//! (`peer/durare`, built on first use) and Hydra back to back on K = 1 and
//! K = 10, both figures and the ratio. `--durability relaxed` runs with
//! `Durability::Relaxed`; `--durability-cost` (instead): N runs of K = 1
//! and K = 10 with full and with relaxed durability back to back, and the
//! ratio.
//!
//! Prints one table row and one JSON line per configuration. Times come
//! from the engine's own records: `seconds` runs from just before the first
//! start to the last recorded completion.

use clap::Parser;
use hydra_runtime::prelude::*;
use hydra_runtime::sea_orm::{ConnectionTrait, Database, Statement};
use hydra_runtime::{Durability, ExecutionFilter, StartOptions, StoreOptions};
use std::time::{Duration, Instant};

#[step]
async fn noop(i: u32) -> Result<u32, StepError> {
    Ok(i)
}

#[workflow(name = "bench")]
async fn bench_wf(ctx: WorkflowContext, k: u32) -> Result<u64, WorkflowError> {
    let mut sum = 0u64;
    for i in 0..k {
        sum += u64::from(noop(&ctx, i).await?);
    }
    Ok(sum)
}

/// Parked until signal `go`, then one step.
#[workflow(name = "bench-wait")]
async fn wait_wf(ctx: WorkflowContext, _x: u32) -> Result<u32, WorkflowError> {
    let go: u32 = ctx.recv("go").await?;
    Ok(noop(&ctx, go).await?)
}

/// Hydra's throughput and latency benchmark (see the module docs).
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Which database(s): sqlite, postgres or both.
    #[arg(long = "backend", value_parser = ["sqlite", "postgres", "both"], default_value = "sqlite")]
    backend: String,
    /// Admin URL of a PostgreSQL server; the benchmark creates its own databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:55432/postgres")]
    pg_url: String,
    /// Workflows to run (1,000; 2,000 with `--peer`).
    #[arg(short = 'n')]
    n: Option<usize>,
    /// No-op steps per workflow.
    #[arg(short = 'k', default_value_t = 10)]
    k: u32,
    /// Runs at once (worker concurrency).
    #[arg(short = 'w', default_value_t = 64)]
    w: usize,
    /// K = 1, 10, 100 × W = 1, 16, 64 instead of one configuration.
    #[arg(long)]
    matrix: bool,
    /// Commit every write on its own.
    #[arg(long = "no-group-commit", action = clap::ArgAction::SetFalse)]
    group_commit: bool,
    /// SQLite: write through the pool, not the store's writer thread (see
    /// `StoreOptions::writer_thread`).
    #[arg(long = "no-writer-thread", action = clap::ArgAction::SetFalse)]
    writer_thread: bool,
    /// Start the runs with `Engine::start_many` (256 per commit) instead
    /// of one at a time.
    #[arg(long)]
    start_many: bool,
    /// How long to measure the single-commit floor, seconds.
    #[arg(long, default_value_t = 5.0)]
    floor_secs: f64,
    /// Instead: the cost of a claim with 10^3 and with 10^6 finished and sleeping runs in the table.
    #[arg(long)]
    claim_flatness: bool,
    /// Instead: start→first-step latency with free slots, for runs started by
    /// the worker's own engine and by another engine (its own pool, as
    /// another process would).
    #[arg(long)]
    latency: bool,
    /// Instead: the peer comparison. Builds the peer in `peer/durare`
    /// (durare 0.5 from crates.io) and runs it and Hydra back to back on
    /// the same workload (N runs of K = 1 and K = 10 no-op steps, started
    /// one at a time), `--rounds` times each, printing both and the ratio.
    #[arg(long, value_parser = ["durare"])]
    peer: Option<String>,
    /// Rounds of the peer comparison.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// What acknowledged writes survive: `full` (the default: a power
    /// loss) or `relaxed` (`StoreOptions::durability`).
    #[arg(long, value_parser = ["full", "relaxed"], default_value = "full")]
    durability: String,
    /// Instead: the cost of durable commits. N runs of K = 1 and of K = 10
    /// steps, each with `full` and with `relaxed` durability back to back,
    /// and the ratio relaxed / full.
    #[arg(long)]
    durability_cost: bool,
}

impl Args {
    fn backends(&self) -> Vec<String> {
        match self.backend.as_str() {
            "both" => vec!["sqlite".into(), "postgres".into()],
            b => vec![b.to_owned()],
        }
    }

    fn durability(&self) -> Durability {
        if self.durability == "relaxed" { Durability::Relaxed } else { Durability::Full }
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A fresh database URL for one configuration.
async fn fresh_db(backend: &str, args: &Args, tag: &str) -> Result<String, Box<dyn std::error::Error>> {
    if backend == "sqlite" {
        let dir = std::env::temp_dir().join("hydra-bench");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{tag}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        return Ok(format!("sqlite://{}?mode=rwc", path.display()));
    }
    let admin = Database::connect(args.pg_url.as_str()).await?;
    let name = format!("hydra_bench_{tag}");
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
    admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await?;
    admin.close().await?;
    let base = args.pg_url.rsplit_once('/').map_or(args.pg_url.as_str(), |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// Bare single-row insert transactions, one commit each, sequential, through
/// a pool with the store's settings. Returns commits per second.
async fn floor(backend: &str, args: &Args, commits: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let url = fresh_db(backend, args, "floor").await?;
    let store = hydra_store::Store::connect_with(StoreOptions::new(url).durability(args.durability())).await?;
    let db = store.connection();
    let be = db.get_database_backend();
    let (create, insert) = match backend {
        "sqlite" => {
            ("CREATE TABLE floor (id INTEGER PRIMARY KEY, wf TEXT, v TEXT)", "INSERT INTO floor (wf, v) VALUES (?, ?)")
        }
        _ => (
            "CREATE TABLE floor (id BIGSERIAL PRIMARY KEY, wf TEXT, v TEXT)",
            "INSERT INTO floor (wf, v) VALUES ($1, $2)",
        ),
    };
    db.execute_unprepared(create).await?;
    let t0 = Instant::now();
    let mut done = 0;
    while done < commits {
        use hydra_runtime::sea_orm::TransactionTrait;
        let txn = db.begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            be,
            insert,
            [format!("wf-{done}").into(), done.to_string().into()],
        ))
        .await?;
        txn.commit().await?;
        done += 1;
        if done % 64 == 0 && t0.elapsed().as_secs_f64() > args.floor_secs {
            break;
        }
    }
    Ok(done as f64 / t0.elapsed().as_secs_f64())
}

struct Outcome {
    seconds: f64,
    workflows_per_s: f64,
    steps_per_s: f64,
    first_step_p50: i64,
    first_step_p99: i64,
    total_p50: i64,
    total_p99: i64,
    commits_per_step: f64,
}

async fn run_one(
    backend: &str,
    args: &Args,
    n: usize,
    k: u32,
    w: usize,
    durability: Durability,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let url = fresh_db(backend, args, &format!("{n}_{k}_{w}")).await?;
    let opts = StoreOptions::new(url)
        .max_connections(if backend == "sqlite" { 8 } else { 32 })
        .writer_thread(args.writer_thread)
        .durability(durability);
    let engine =
        Engine::builder().store_options(opts).namespace("bench").group_commit(args.group_commit).build().await?;
    let worker =
        Worker::builder(&engine).register(bench_wf).concurrency(w).claim_batch(w.min(256) as u32).start().await?;
    let commits_before = engine.write_commits();
    let t0 = engine.clock().now_ms();
    let mut handles = Vec::with_capacity(n);
    if args.start_many {
        for h in engine.start_many::<bench_wf>((0..n).map(|_| (k, StartOptions::new()))).await {
            handles.push(h?);
        }
    } else {
        for _ in 0..n {
            handles.push(bench_wf::start(&engine, k).await?);
        }
    }
    let expected = u64::from(k) * u64::from(k.saturating_sub(1)) / 2;
    for h in &handles {
        let v = tokio::time::timeout(Duration::from_secs(600), h.result()).await??;
        assert_eq!(v, expected, "wrong result");
    }
    let commits = engine.write_commits() - commits_before;
    worker.shutdown(Duration::from_secs(5)).await;
    let runs = engine.list(ExecutionFilter::new("bench").limit(n as u64 + 10)).await?;
    let last = runs.iter().filter_map(|r| r.completed_at).max().unwrap_or(t0);
    let seconds = ((last - t0) as f64 / 1000.0).max(0.001);
    let mut total: Vec<i64> = runs.iter().filter_map(|r| r.completed_at.map(|c| c - r.created_at)).collect();
    total.sort_unstable();
    // First-step latency for a sample of runs (reading every run's steps would dominate).
    let mut first: Vec<i64> = Vec::new();
    for r in runs.iter().step_by((runs.len() / 200).max(1)) {
        if let Some(s) = engine.steps(&r.id).await?.into_iter().find(|s| s.position == 0) {
            first.push(s.started_at - r.created_at);
        }
    }
    first.sort_unstable();
    let steps = (n * k as usize) as f64;
    Ok(Outcome {
        seconds,
        workflows_per_s: n as f64 / seconds,
        steps_per_s: steps / seconds,
        first_step_p50: percentile(&first, 0.5),
        first_step_p99: percentile(&first, 0.99),
        total_p50: percentile(&total, 0.5),
        total_p99: percentile(&total, 0.99),
        commits_per_step: commits as f64 / steps.max(1.0),
    })
}

/// Start→first-step latency (p50, p99 in ms) of one-step runs started one at
/// a time while the worker has free slots: first by the worker's own engine
/// (in-process wake-up), then by a second engine with its own pool, as
/// another process would (PostgreSQL: LISTEN/NOTIFY; SQLite: the next poll).
async fn latency(backend: &str, args: &Args, runs: usize) -> Result<[(i64, i64); 2], Box<dyn std::error::Error>> {
    let url = fresh_db(backend, args, "latency").await?;
    let engine = Engine::builder().store_options(StoreOptions::new(url.clone())).namespace("bench").build().await?;
    let other = Engine::builder().store_options(StoreOptions::new(url)).namespace("bench").build().await?;
    let worker = Worker::builder(&engine).register(bench_wf).concurrency(16).start().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = [(0, 0); 2];
    for (slot, starter) in out.iter_mut().zip([&engine, &other]) {
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let h = bench_wf::start(starter, 1).await?;
            tokio::time::timeout(Duration::from_secs(30), h.result()).await??;
            let created = h.execution().await?.created_at;
            let first = engine.steps(h.id()).await?.into_iter().find(|s| s.position == 0).ok_or("no first step")?;
            ms.push(first.started_at - created);
        }
        ms.sort_unstable();
        *slot = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    }
    worker.shutdown(Duration::from_secs(5)).await;
    Ok(out)
}

/// Signal→next-step latency (p50, p99 in ms) of parked runs, one at a time:
/// signalled by the worker's own engine, then by a second engine with its
/// own pool (PostgreSQL: LISTEN/NOTIFY; SQLite: the next poll).
async fn signal_latency(
    backend: &str,
    args: &Args,
    runs: usize,
) -> Result<[(i64, i64); 2], Box<dyn std::error::Error>> {
    let url = fresh_db(backend, args, "signal_latency").await?;
    let engine = Engine::builder().store_options(StoreOptions::new(url.clone())).namespace("bench").build().await?;
    let other = Engine::builder().store_options(StoreOptions::new(url)).namespace("bench").build().await?;
    let worker = Worker::builder(&engine).register(wait_wf).concurrency(16).start().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut out = [(0, 0); 2];
    for (slot, sender) in out.iter_mut().zip([&engine, &other]) {
        let mut ms = Vec::with_capacity(runs);
        for _ in 0..runs {
            let h = wait_wf::start(&engine, 0).await?;
            while h.status().await? != ExecutionStatus::Sleeping {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let sent = engine.clock().now_ms();
            sender.signal(h.id(), "go", &1u32).await?;
            tokio::time::timeout(Duration::from_secs(30), h.result()).await??;
            let step = engine.steps(h.id()).await?.into_iter().find(|s| s.step_name == "noop").ok_or("no step")?;
            ms.push(step.started_at - sent);
        }
        ms.sort_unstable();
        *slot = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    }
    worker.shutdown(Duration::from_secs(5)).await;
    Ok(out)
}

/// Mean time of one claim (batch of 1) of 300 due runs, with `finished`
/// finished-or-sleeping runs already in the table.
async fn claim_cost(backend: &str, args: &Args, finished: i64) -> Result<f64, Box<dyn std::error::Error>> {
    use hydra_runtime::sea_orm::DbBackend;
    use hydra_store::{ClaimRequest, ExecutionId, NewExecution, WorkerId};
    let url = fresh_db(backend, args, &format!("claim_{finished}")).await?;
    let store = hydra_store::Store::connect_with(StoreOptions::new(url)).await?;
    let db = store.connection();
    // Eight in ten finished, one in ten sleeping far in the future, one in
    // ten parked waiting for a signal (no due time).
    let seed = match db.get_database_backend() {
        DbBackend::Postgres => format!(
            "INSERT INTO workflow_executions (id, namespace, workflow_name, status, input_data, max_attempts, attempts, \
             trigger_type, created_at, updated_at, due_at, fencing_token, cancel_requested, signal_wait) \
             SELECT 'seed-' || i, 'bench', 'bench', CASE WHEN i % 10 IN (0, 1) THEN 'sleeping' ELSE 'completed' END, \
             '\\x00'::bytea, 1, 1, 'api', 0, 0, CASE WHEN i % 10 = 0 THEN 9000000000000 ELSE NULL END, 1, false, \
             i % 10 = 1 FROM generate_series(1, {finished}) i"
        ),
        _ => format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {finished}) \
             INSERT INTO workflow_executions (id, namespace, workflow_name, status, input_data, max_attempts, attempts, \
             trigger_type, created_at, updated_at, due_at, fencing_token, cancel_requested, signal_wait) \
             SELECT 'seed-' || i, 'bench', 'bench', CASE WHEN i % 10 IN (0, 1) THEN 'sleeping' ELSE 'completed' END, \
             X'00', 1, 1, 'api', 0, 0, CASE WHEN i % 10 = 0 THEN 9000000000000 ELSE NULL END, 1, 0, \
             i % 10 = 1 FROM s"
        ),
    };
    db.execute_unprepared(&seed).await?;
    db.execute_unprepared("ANALYZE").await?;
    for i in 0..300 {
        store.create_execution(NewExecution::new(ExecutionId::generate(i), "bench", "bench", vec![1, 0], i)).await?;
    }
    let worker = WorkerId::generate();
    let t0 = Instant::now();
    let mut claimed = 0;
    while claimed < 300 {
        let req = ClaimRequest::new("bench", vec!["bench".into()], worker.clone(), 1_000_000, 60_000, 1);
        claimed += store.claim(&req).await?.len();
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6 / 300.0)
}

/// durare and Hydra back to back: for each backend and K = 1, 10, each
/// round runs the peer on a fresh database, then Hydra on another.
async fn peer_comparison(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let bin = hydra_examples::peer::build()?;
    let n = args.n.unwrap_or(2000);
    println!(
        "{:<8} {:>5} {:>3} {:>3} {:>5} {:>15} {:>15} {:>7}",
        "backend", "N", "K", "W", "round", "durare steps/s", "Hydra steps/s", "ratio"
    );
    for backend in &args.backends() {
        for k in [1u32, 10] {
            for round in 1..=args.rounds {
                let target = match backend.as_str() {
                    "sqlite" => {
                        let url = fresh_db(backend, args, &format!("durare_{k}_{round}")).await?;
                        let path = url.trim_start_matches("sqlite://");
                        path.split_once('?').map_or(path, |(p, _)| p).to_owned()
                    }
                    _ => fresh_db(backend, args, &format!("durare_{k}_{round}")).await?,
                };
                let (peer_bin, peer_backend) = (bin.clone(), backend.clone());
                let peer = tokio::task::spawn_blocking(move || {
                    hydra_examples::peer::run(&peer_bin, &peer_backend, &target, n, k)
                })
                .await??;
                let ours = run_one(backend, args, n, k, args.w, args.durability()).await?.steps_per_s;
                let ratio = ours / peer;
                println!("{backend:<8} {n:>5} {k:>3} {:>3} {round:>5} {peer:>15.1} {ours:>15.1} {ratio:>7.2}", args.w);
                println!(
                    "{{\"bench\":\"peer\",\"peer\":\"durare\",\"backend\":\"{backend}\",\"n\":{n},\"k\":{k},\"w\":{},\"round\":{round},\"peer_steps_per_s\":{peer:.1},\"hydra_steps_per_s\":{ours:.1},\"ratio\":{ratio:.3}}}",
                    args.w
                );
            }
        }
    }
    Ok(())
}

/// Full and relaxed durability back to back on K = 1 and K = 10.
async fn durability_cost(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let n = args.n.unwrap_or(1000);
    println!(
        "{:<8} {:>5} {:>3} {:>3} {:>15} {:>18} {:>7}",
        "backend", "N", "K", "W", "full steps/s", "relaxed steps/s", "ratio"
    );
    for backend in &args.backends() {
        for k in [1u32, 10] {
            let full = run_one(backend, args, n, k, args.w, Durability::Full).await?.steps_per_s;
            let relaxed = run_one(backend, args, n, k, args.w, Durability::Relaxed).await?.steps_per_s;
            let ratio = relaxed / full;
            println!("{backend:<8} {n:>5} {k:>3} {:>3} {full:>15.1} {relaxed:>18.1} {ratio:>7.2}", args.w);
            println!(
                "{{\"bench\":\"durability\",\"backend\":\"{backend}\",\"n\":{n},\"k\":{k},\"w\":{},\"full_steps_per_s\":{full:.1},\"relaxed_steps_per_s\":{relaxed:.1},\"ratio\":{ratio:.3}}}",
                args.w
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // Quiet unless RUST_LOG asks (warnings from the engine explain stalls).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .init();
    if args.latency {
        println!(
            "{:<8} {:>5} {:>13} {:>13} {:>14} {:>14}",
            "backend", "runs", "local p50 ms", "local p99 ms", "remote p50 ms", "remote p99 ms"
        );
        for backend in &args.backends() {
            // SQLite's remote case waits out a poll (1 s) per run: fewer runs.
            let runs = 100;
            let [(lp50, lp99), (rp50, rp99)] = latency(backend, &args, runs).await?;
            println!("{backend:<8} {runs:>5} {lp50:>13} {lp99:>13} {rp50:>14} {rp99:>14}");
            println!(
                "{{\"bench\":\"latency\",\"backend\":\"{backend}\",\"runs\":{runs},\"local_first_step_p50_ms\":{lp50},\"local_first_step_p99_ms\":{lp99},\"remote_first_step_p50_ms\":{rp50},\"remote_first_step_p99_ms\":{rp99}}}"
            );
        }
        println!(
            "{:<8} {:>5} {:>13} {:>13} {:>14} {:>14}",
            "backend", "runs", "sig→step p50", "sig→step p99", "remote p50 ms", "remote p99 ms"
        );
        for backend in &args.backends() {
            let runs = if backend == "sqlite" { 20 } else { 100 };
            let [(lp50, lp99), (rp50, rp99)] = signal_latency(backend, &args, runs).await?;
            println!("{backend:<8} {runs:>5} {lp50:>13} {lp99:>13} {rp50:>14} {rp99:>14}");
            println!(
                "{{\"bench\":\"signal-latency\",\"backend\":\"{backend}\",\"runs\":{runs},\"local_signal_to_step_p50_ms\":{lp50},\"local_signal_to_step_p99_ms\":{lp99},\"remote_signal_to_step_p50_ms\":{rp50},\"remote_signal_to_step_p99_ms\":{rp99}}}"
            );
        }
        return Ok(());
    }
    if args.peer.is_some() {
        return peer_comparison(&args).await;
    }
    if args.durability_cost {
        return durability_cost(&args).await;
    }
    if args.claim_flatness {
        println!("{:<8} {:>12} {:>12} {:>7}", "backend", "µs/claim 1e3", "µs/claim 1e6", "ratio");
        for backend in &args.backends() {
            let small = claim_cost(backend, &args, 1_000).await?;
            let large = claim_cost(backend, &args, 1_000_000).await?;
            println!("{backend:<8} {small:>12.1} {large:>12.1} {:>7.2}", large / small);
            println!(
                "{{\"bench\":\"claim-flatness\",\"backend\":\"{backend}\",\"us_per_claim_1e3\":{small:.1},\"us_per_claim_1e6\":{large:.1},\"ratio\":{:.3}}}",
                large / small
            );
        }
        return Ok(());
    }
    let configs: Vec<(usize, u32, usize)> = if args.matrix {
        let mut v = Vec::new();
        for k in [1u32, 10, 100] {
            for w in [1usize, 16, 64] {
                let n = match (k, w) {
                    (100, 1) => 20,
                    (100, _) => 200,
                    (10, 1) => 100,
                    (_, 1) => 300,
                    _ => 2_000,
                };
                v.push((n, k, w));
            }
        }
        v
    } else {
        vec![(args.n.unwrap_or(1000), args.k, args.w)]
    };
    println!(
        "{:<8} {:>5} {:>4} {:>3} {:>7} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>7}",
        "backend",
        "N",
        "K",
        "W",
        "secs",
        "wf/s",
        "steps/s",
        "1st p50ms",
        "1st p99ms",
        "end p50",
        "end p99",
        "cmt/step",
        "floor c/s",
        "ratio"
    );
    for backend in &args.backends() {
        let floor_rate = floor(backend, &args, 200_000).await?;
        for &(n, k, w) in &configs {
            let o = run_one(backend, &args, n, k, w, args.durability()).await?;
            let ratio = o.steps_per_s / floor_rate;
            println!(
                "{:<8} {:>5} {:>4} {:>3} {:>7.2} {:>8.1} {:>9.1} {:>10} {:>10} {:>9} {:>9} {:>8.3} {:>9.1} {:>7.2}",
                backend,
                n,
                k,
                w,
                o.seconds,
                o.workflows_per_s,
                o.steps_per_s,
                o.first_step_p50,
                o.first_step_p99,
                o.total_p50,
                o.total_p99,
                o.commits_per_step,
                floor_rate,
                ratio
            );
            println!(
                "{{\"bench\":\"hydra\",\"backend\":\"{backend}\",\"n\":{n},\"k\":{k},\"w\":{w},\"group_commit\":{},\"seconds\":{:.3},\"workflows_per_s\":{:.1},\"steps_per_s\":{:.1},\"first_step_p50_ms\":{},\"first_step_p99_ms\":{},\"completion_p50_ms\":{},\"completion_p99_ms\":{},\"commits_per_step\":{:.4},\"floor_commits_per_s\":{:.1},\"steps_per_floor_commit\":{:.3},\"peak_rss_mb\":{:.1}}}",
                args.group_commit,
                o.seconds,
                o.workflows_per_s,
                o.steps_per_s,
                o.first_step_p50,
                o.first_step_p99,
                o.total_p50,
                o.total_p99,
                o.commits_per_step,
                floor_rate,
                ratio,
                peak_rss_mb()
            );
        }
    }
    Ok(())
}
