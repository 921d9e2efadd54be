use hydra_runtime::prelude::*;

#[step(id = "a", retries = 3)]
async fn a(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow(nmae = "typo")]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

#[step(retry(attempts = 3))]
async fn b(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

fn main() {}
