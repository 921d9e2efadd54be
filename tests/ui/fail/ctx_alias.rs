// An alias of the context would let a call take it unchecked.
use hydra_runtime::prelude::*;

#[step]
async fn reserve(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let c = &ctx;
    Ok(reserve(c, n).await?)
}

fn main() {}
