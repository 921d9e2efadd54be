// Typed signals on the generated client, children with options, and a
// select over a signal, a child and an awakeable.
use hydra_runtime::prelude::*;
use hydra_runtime::{ChildOptions, Selected};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
}

#[workflow]
async fn shipping(ctx: WorkflowContext, item: String) -> Result<String, WorkflowError> {
    let carrier = ctx.recv::<String>("carrier").await?;
    Ok(format!("{item} by {carrier}"))
}

#[workflow(name = "approval")]
async fn approval(ctx: WorkflowContext, item: String) -> Result<String, WorkflowError> {
    let first = ctx.recv::<Decision>("decision").await?;
    // The same name with the same type again: one constant.
    let again = ctx.recv_timeout::<Decision>("decision", Duration::from_secs(5)).await?;
    let child = ctx.start_child_with::<shipping>(item.clone(), ChildOptions::new().cancel_with_parent(false)).await?;
    let paid = ctx.awakeable::<u64>().await?;
    let picked: Option<Selected> =
        ctx.select(&["cancel", &child.select_name(), &paid.select_name()], Some(Duration::from_secs(60))).await?;
    let out = match picked {
        Some(s) if s.is(&child.select_name()) => s.child(&child)?,
        Some(s) if s.is(&paid.select_name()) => s.awakeable(&paid)?.to_string(),
        Some(s) => s.name().to_owned(),
        None => "timed out".to_owned(),
    };
    Ok(format!("{} {} {out}", first.approved, again.is_some()))
}

async fn send(engine: &Engine, id: &ExecutionId) -> Result<(), Error> {
    let client = approval::client(engine);
    client.signal(id, approval::SIGNAL_DECISION, &Decision { approved: true }).await?;
    let options = hydra_runtime::SignalOptions::new().idempotency_key("once");
    client.signal_with(id, approval::SIGNAL_DECISION, &Decision { approved: false }, options).await?;
    shipping::client(engine).signal(id, shipping::SIGNAL_CARRIER, &"ups".to_owned()).await?;
    let _status: Option<String> = client.event(id, "status").await?;
    assert_eq!(approval::SIGNAL_DECISION.name(), "decision");
    Ok(())
}

fn main() {
    let _ = send;
}

// Receives whose type cannot be named beside the workflow get no constant
// (and still compile).
#[workflow]
async fn local_types(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    #[derive(Serialize, Deserialize)]
    struct Local {
        n: u32,
    }
    let a: u32 = ctx.recv::<_>("inferred").await?;
    let b = ctx.recv::<Local>("local").await?;
    let c = ctx.recv::<Vec<Local>>("locals").await?;
    Ok(n + a + b.n + c.len() as u32)
}
