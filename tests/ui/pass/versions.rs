// A versioned workflow with a patch; the generated constants.
use hydra_runtime::prelude::*;

#[step]
async fn check(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow(version = 3, replays_from = 2)]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut total = n;
    if ctx.patched("add-check").await {
        total += check(&ctx, n).await?;
    }
    ctx.deprecate_patch("old-fix").await;
    Ok(total)
}

#[workflow]
async fn plain(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let _ = ctx.execution_id();
    Ok(n)
}

fn main() {
    assert_eq!(<flow as hydra_runtime::Workflow>::VERSION, 3);
    assert_eq!(<flow as hydra_runtime::Workflow>::REPLAYS_FROM, 2);
    assert_eq!(<plain as hydra_runtime::Workflow>::VERSION, 1);
    assert_eq!(<plain as hydra_runtime::Workflow>::REPLAYS_FROM, 1);
    assert_ne!(
        <flow as hydra_runtime::Workflow>::code_fingerprint(),
        <plain as hydra_runtime::Workflow>::code_fingerprint(),
        "other code, another fingerprint"
    );
}
