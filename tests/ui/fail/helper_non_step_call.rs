// A helper, like a workflow, may pass its context only to steps and helpers.
use hydra_runtime::prelude::*;

async fn plain(_ctx: &WorkflowContext, n: u32) -> u32 {
    n
}

#[workflow_helper]
async fn book(ctx: &WorkflowContext, n: u32) -> u32 {
    plain(ctx, n).await
}

fn main() {}
