//! A worker process for the fault-injection tests. The tests start several,
//! SIGKILL, SIGSTOP and SIGCONT them, and count what happened.
//!
//! Configuration (environment):
//! - `HYDRA_FAULT_URL`: database URL; `HYDRA_FAULT_NS`: namespace;
//! - `HYDRA_FAULT_LOG`: file every step body appends a line to when it starts
//!   and when it ends (`start|end execution step attempt pid`), so bodies are
//!   counted outside the engine;
//! - `HYDRA_FAULT_CONCURRENCY` (1), `HYDRA_FAULT_TTL_MS` (1500),
//!   `HYDRA_FAULT_HEARTBEAT_MS` (250), `HYDRA_FAULT_POLL_MS` (20).
//!
//! Prints `ready` on stdout once it is claiming.

use hydra_runtime::prelude::*;
use hydra_tests::fault::{Collector, FaultFlow, FaultParent, FaultSaga, Greeting, env_or};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("HYDRA_FAULT_TRACE").is_some() {
        tracing_subscriber::fmt().with_env_filter("hydra_runtime=warn").with_writer(std::io::stderr).init();
    }
    let url = std::env::var("HYDRA_FAULT_URL")?;
    let ns = std::env::var("HYDRA_FAULT_NS")?;
    let engine = Engine::builder().database_url(url).namespace(ns).build().await?;
    let _worker = Worker::builder(&engine)
        .register(FaultFlow::from_env()?)
        .register(Greeting)
        .register(Collector::from_env()?)
        .register(FaultParent)
        .register(FaultSaga::from_env()?)
        .concurrency(env_or("HYDRA_FAULT_CONCURRENCY", 1))
        .lease_ttl(Duration::from_millis(env_or("HYDRA_FAULT_TTL_MS", 1500)))
        .heartbeat_interval(Duration::from_millis(env_or("HYDRA_FAULT_HEARTBEAT_MS", 250)))
        .poll_interval(Duration::from_millis(env_or("HYDRA_FAULT_POLL_MS", 20)))
        // Many of these run on one host: each its own ID.
        .worker_id(hydra_runtime::WorkerId::from_string(format!("fault-{}", std::process::id())))
        .start()
        .await?;
    println!("ready");
    // Run until killed.
    std::future::pending::<()>().await;
    Ok(())
}
