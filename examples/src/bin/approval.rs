//! Approval with a durable sleep: submit a request for review, sleep (the
//! worker is released; the run costs a row), then check the decision.
//!
//!     cargo run -p hydra-examples --bin approval [-- SLEEP_SECONDS]
//!
//! The seed's example sleeps 48 hours; this one sleeps 3 seconds by default
//! so you can watch it wake.

use clap::Parser;
use hydra_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ApprovalRequest {
    id: String,
    amount_cents: u64,
    review_seconds: u64,
}

#[step(id = "submit-review")]
async fn submit_review(req: ApprovalRequest) -> Result<String, StepError> {
    Ok(format!("review-{}", req.id))
}

#[step(id = "check-approval")]
async fn check_approval(req: ApprovalRequest) -> Result<bool, StepError> {
    // The fake reviewer approves anything under 1,000.00.
    Ok(req.amount_cents < 100_000)
}

#[step(id = "process-approved")]
async fn process_approved(req: ApprovalRequest) -> Result<String, StepError> {
    Ok(format!("paid out {} ¢ for {}", req.amount_cents, req.id))
}

#[workflow(name = "approval")]
async fn approval(ctx: WorkflowContext, req: ApprovalRequest) -> Result<String, WorkflowError> {
    let ticket = submit_review(&ctx, req.clone()).await?;
    ctx.sleep(Duration::from_secs(req.review_seconds)).await;
    if check_approval(&ctx, req.clone()).await? {
        let done = process_approved(&ctx, req).await?;
        Ok(format!("{ticket}: approved, {done}"))
    } else {
        Ok(format!("{ticket}: rejected"))
    }
}

/// Command line: one optional number.
#[derive(clap::Parser)]
struct Args {
    /// How long the review sleeps, seconds.
    #[arg(default_value_t = 3)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = Args::parse().seconds;
    let url = std::env::var("HYDRA_DATABASE_URL").unwrap_or_else(|_| "sqlite://hydra-approval.db?mode=rwc".into());
    let engine = Engine::builder().database_url(&url).namespace("approvals").build().await?;
    let worker = Worker::builder(&engine).register(approval).poll_interval(Duration::from_millis(200)).start().await?;
    let small =
        approval::start(&engine, ApprovalRequest { id: "req-1".into(), amount_cents: 25_000, review_seconds: seconds })
            .await?;
    let large = approval::start(
        &engine,
        ApprovalRequest { id: "req-2".into(), amount_cents: 500_000, review_seconds: seconds },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "req-1 is {} and req-2 is {} (worker runs in flight: {})",
        small.status().await?,
        large.status().await?,
        worker.active_runs()
    );
    println!("{}", small.result().await?);
    println!("{}", large.result().await?);
    worker.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
