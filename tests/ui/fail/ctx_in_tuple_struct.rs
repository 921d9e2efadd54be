// A tuple struct's constructor is called like a function: storing the
// context in one is caught by the callee check.
use hydra_runtime::prelude::*;

struct Keep(WorkflowContext);

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let kept = Keep(ctx);
    let _ = kept.0;
    Ok(n)
}

fn main() {}
