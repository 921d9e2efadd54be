// Inside a helper, the context follows the same rules as in a workflow.
use hydra_runtime::prelude::*;

#[step]
async fn reserve(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow_helper]
async fn book(ctx: &WorkflowContext, n: u32) -> Result<u32, StepError> {
    let alias = ctx;
    let owned = ctx.clone();
    let _ = reserve(alias, n).await?;
    reserve(&owned, n).await
}

fn main() {}
