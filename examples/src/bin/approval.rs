//! A real approval: submit a request for review, then wait for a person's
//! decision, a signal, for at most the review window (48 hours in
//! production); remind the reviewer once halfway, and escalate if nobody
//! decides. A waiting run is parked: it holds no worker slot and no memory,
//! only a row.
//!
//!     cargo run -p hydra-examples --bin approval [-- WINDOW_SECONDS]
//!
//! The window is 4 seconds by default so you can watch all three endings:
//! req-1 approved at once, req-2 rejected after the reminder, req-3
//! escalated because nobody decided.

use clap::Parser;
use hydra_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ApprovalRequest {
    id: String,
    amount_cents: u64,
    /// The whole review window, seconds (48 × 3600 in production).
    window_seconds: u64,
}

/// What a reviewer sends as signal `decision`.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Decision {
    Approve { by: String },
    Reject { by: String, reason: String },
}

#[step(id = "submit-review")]
async fn submit_review(req: ApprovalRequest) -> Result<String, StepError> {
    Ok(format!("review-{}", req.id))
}

#[step(id = "remind-reviewer")]
async fn remind_reviewer(ticket: String) -> Result<(), StepError> {
    println!("  {ticket}: reminder sent to the reviewer");
    Ok(())
}

#[step(id = "escalate")]
async fn escalate(ticket: String) -> Result<String, StepError> {
    Ok(format!("{ticket}: nobody decided in time, escalated to the finance lead"))
}

#[step(id = "process-approved")]
async fn process_approved(req: ApprovalRequest) -> Result<String, StepError> {
    Ok(format!("paid out {} ¢ for {}", req.amount_cents, req.id))
}

#[workflow(name = "approval")]
async fn approval(ctx: WorkflowContext, req: ApprovalRequest) -> Result<String, WorkflowError> {
    let ticket = submit_review(&ctx, req.clone()).await?;
    let half = Duration::from_secs(req.window_seconds) / 2;
    // Approve or reject within the window, with a reminder halfway.
    let mut decision = ctx.recv_timeout::<Decision>("decision", half).await?;
    if decision.is_none() {
        remind_reviewer(&ctx, ticket.clone()).await?;
        decision = ctx.recv_timeout::<Decision>("decision", half).await?;
    }
    match decision {
        Some(Decision::Approve { by }) => {
            let done = process_approved(&ctx, req).await?;
            Ok(format!("{ticket}: approved by {by}, {done}"))
        }
        Some(Decision::Reject { by, reason }) => Ok(format!("{ticket}: rejected by {by} ({reason})")),
        None => Ok(escalate(&ctx, ticket).await?),
    }
}

/// Command line: one optional number.
#[derive(clap::Parser)]
struct Args {
    /// The review window, seconds (the reminder goes out halfway).
    #[arg(default_value_t = 4)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = Args::parse().seconds.max(1);
    let url = std::env::var("HYDRA_DATABASE_URL").unwrap_or_else(|_| "sqlite://hydra-approval.db?mode=rwc".into());
    let engine = Engine::builder().database_url(&url).namespace("approvals").build().await?;
    let worker = Worker::builder(&engine).register(approval).poll_interval(Duration::from_millis(200)).start().await?;
    let request = |id: &str, amount_cents| ApprovalRequest { id: id.into(), amount_cents, window_seconds: seconds };
    let one = approval::start(&engine, request("req-1", 25_000)).await?;
    let two = approval::start(&engine, request("req-2", 500_000)).await?;
    let three = approval::start(&engine, request("req-3", 90_000)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "waiting for decisions: req-1 {}, req-2 {}, req-3 {} (worker runs in flight: {})",
        one.status().await?,
        two.status().await?,
        three.status().await?,
        worker.active_runs()
    );
    // The typed client: a payload that is not a `Decision` does not compile.
    let client = approval::client(&engine);
    client.signal(one.id(), approval::SIGNAL_DECISION, &Decision::Approve { by: "ana".into() }).await?;
    println!("{}", one.result().await?);
    // req-2's reviewer answers only after the reminder.
    tokio::time::sleep(Duration::from_millis(seconds * 1000 * 3 / 4)).await;
    let reject = Decision::Reject { by: "bo".into(), reason: "over budget".into() };
    client.signal(two.id(), approval::SIGNAL_DECISION, &reject).await?;
    println!("{}", two.result().await?);
    println!("{}", three.result().await?);
    worker.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
