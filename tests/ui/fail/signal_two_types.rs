// One signal name carries one payload type in a workflow.
use hydra_runtime::prelude::*;

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = ctx.recv::<u32>("amount").await?;
    let b = ctx.recv::<String>("amount").await?;
    Ok(n + a + b.len() as u32)
}

fn main() {}
