// One patch ID stands for one change at one place in a workflow; and a
// version replays no version above itself.
use hydra_runtime::prelude::*;

#[step]
async fn check(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut total = n;
    if ctx.patched("add-check").await {
        total += check(&ctx, n).await?;
    }
    if ctx.patched("add-check").await {
        total += 1;
    }
    Ok(total)
}

#[workflow(version = 2, replays_from = 3)]
async fn ahead(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let _ = ctx.execution_id();
    Ok(n)
}

fn main() {}
