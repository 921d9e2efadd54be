use hydra_runtime::prelude::*;

async fn helper(_ctx: &WorkflowContext, n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(helper(&ctx, n).await?)
}

fn main() {}
