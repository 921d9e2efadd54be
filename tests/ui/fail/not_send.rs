use hydra_runtime::prelude::*;
use std::rc::Rc;

#[step]
async fn holds_rc(n: u32) -> Result<u32, StepError> {
    let shared = Rc::new(n);
    tokio::task::yield_now().await;
    Ok(*shared)
}

#[workflow]
async fn flow(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(holds_rc(&ctx, n).await?)
}

fn main() {}
