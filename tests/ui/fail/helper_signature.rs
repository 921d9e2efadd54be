use hydra_runtime::prelude::*;

#[workflow_helper]
async fn by_value(ctx: WorkflowContext) -> u32 {
    ctx.attempt()
}

#[workflow_helper]
fn not_async(ctx: &WorkflowContext) -> u32 {
    ctx.attempt()
}

#[workflow_helper(bogus = 1)]
async fn no_context(n: u32) -> u32 {
    n
}

fn main() {}
