// The checks follow the context's name: a local of the same name is refused
// rather than guessed at.
use hydra_runtime::prelude::*;

#[step]
async fn reserve(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = reserve(&ctx, n).await?;
    let total = [a, n].iter().map(|ctx| ctx + 1).sum();
    Ok(total)
}

fn main() {}
