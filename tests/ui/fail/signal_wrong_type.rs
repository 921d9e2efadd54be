// A typed client sends a workflow's signals with the payload type the
// workflow receives: a wrong type, or another workflow's signal, does not
// compile.
use hydra_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
}

#[workflow]
async fn approval(ctx: WorkflowContext, request: String) -> Result<bool, WorkflowError> {
    let d = ctx.recv::<Decision>("decision").await?;
    let _ = request;
    Ok(d.approved)
}

#[workflow]
async fn refund(ctx: WorkflowContext, amount: u64) -> Result<u64, WorkflowError> {
    let extra = ctx.recv_timeout::<u64>("top-up", std::time::Duration::from_secs(60)).await?;
    Ok(amount + extra.unwrap_or(0))
}

async fn send(engine: &Engine, id: &ExecutionId) -> Result<(), Error> {
    let client = approval::client(engine);
    client.signal(id, approval::SIGNAL_DECISION, &true).await?;
    client.signal(id, refund::SIGNAL_TOP_UP, &5u64).await?;
    Ok(())
}

fn main() {
    let _ = send;
}
