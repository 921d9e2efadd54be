use hydra_runtime::prelude::*;

#[step]
fn a(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow]
fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

fn main() {}
