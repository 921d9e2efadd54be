// `crate = "…"` points generated code at a renamed dependency.
use hydra_runtime as hydra;
use hydra::prelude::*;

#[step(crate = "hydra")]
async fn ping(n: u32) -> Result<u32, StepError> {
    Ok(n + 1)
}

#[workflow(crate = "hydra")]
async fn pinger(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(ping(&ctx, n).await?)
}

fn main() {
    assert_eq!(<pinger as hydra::Workflow>::NAME, "pinger");
}
