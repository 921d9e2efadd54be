//! durare 0.5 running `bench`'s workload, for the peer comparison.
//!
//!     hydra-peer-durare sqlite PATH N K
//!     hydra-peer-durare postgres URL N K
//!
//! Starts N workflows of K no-op steps one at a time (as `bench` starts
//! Hydra's), waits for every result, and prints one JSON line:
//! `{"peer":"durare","backend":…,"n":…,"k":…,"seconds":…,"steps_per_s":…}`.
//! `seconds` runs from just before the first start to the last completion
//! durare recorded (`workflow_status.updated_at`), as Hydra's figure runs to
//! its last recorded completion. The database must be new (the caller makes
//! it): durare creates its tables.

use durare::{DurableContext, DurableEngine, WorkflowOptions};
use sqlx::Connection;
use std::time::{SystemTime, UNIX_EPOCH};

#[durare::step]
async fn noop(_ctx: &DurableContext, i: u32) -> durare::Result<u32> {
    Ok(i)
}

#[durare::workflow]
async fn peer_wf(ctx: DurableContext, k: u32) -> durare::Result<u64> {
    let mut sum = 0u64;
    for i in 0..k {
        sum += u64::from(noop(&ctx, i).await?);
    }
    Ok(sum)
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn epoch_ms() -> Result<i64, Failure> {
    Ok(i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?)
}

/// The last completion durare recorded, and how many runs and step rows.
async fn recorded(backend: &str, url: &str) -> Result<(i64, i64, i64), Failure> {
    let (status, steps) = if backend == "postgres" {
        ("dbos.workflow_status", "dbos.operation_outputs")
    } else {
        ("workflow_status", "operation_outputs")
    };
    let last = format!("SELECT CAST(MAX(updated_at) AS BIGINT), COUNT(*) FROM {status} WHERE status = 'SUCCESS'");
    let count = format!("SELECT COUNT(*) FROM {steps}");
    if backend == "postgres" {
        let mut c = sqlx::PgConnection::connect(url).await?;
        let (m, n): (i64, i64) = sqlx::query_as(&last).fetch_one(&mut c).await?;
        let (s,): (i64,) = sqlx::query_as(&count).fetch_one(&mut c).await?;
        Ok((m, n, s))
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        let (m, n): (i64, i64) = sqlx::query_as(&last).fetch_one(&mut c).await?;
        let (s,): (i64,) = sqlx::query_as(&count).fetch_one(&mut c).await?;
        Ok((m, n, s))
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, target, n, k] = args.as_slice() else {
        return Err("usage: hydra-peer-durare sqlite PATH N K | postgres URL N K".into());
    };
    let (n, k): (usize, u32) = (n.parse()?, k.parse()?);
    let url = match backend.as_str() {
        "sqlite" => format!("sqlite://{target}"),
        "postgres" => target.clone(),
        other => return Err(format!("unknown backend `{other}`").into()),
    };
    let mut builder = DurableEngine::connect(&url).await?;
    builder.app_version("hydra-peer");
    let engine = builder.build().await?;
    engine.launch().await?;

    let t0 = epoch_ms()?;
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        handles.push(engine.start_with(PeerWf, k, WorkflowOptions::default()).await?);
    }
    let expected = u64::from(k) * u64::from(k.saturating_sub(1)) / 2;
    for h in handles {
        let got = h.result().await?;
        if got != expected {
            return Err(format!("a run returned {got}, not {expected}").into());
        }
    }
    let (last, runs, steps) = recorded(backend, &url).await?;
    let _ = engine.shutdown(std::time::Duration::from_secs(2)).await;
    if usize::try_from(runs)? != n || usize::try_from(steps)? != n * k as usize {
        return Err(format!("durare recorded {runs} runs and {steps} steps, not {n} and {}", n * k as usize).into());
    }
    let seconds = ((last - t0) as f64 / 1000.0).max(0.001);
    println!(
        "{{\"peer\":\"durare\",\"backend\":\"{backend}\",\"n\":{n},\"k\":{k},\"seconds\":{seconds:.3},\"steps_per_s\":{:.1}}}",
        (n * k as usize) as f64 / seconds
    );
    Ok(())
}
