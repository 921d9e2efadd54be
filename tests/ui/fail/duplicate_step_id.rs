use hydra_runtime::prelude::*;

#[step(id = "reserve")]
async fn reserve_stock(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step(id = "reserve")]
async fn reserve_room(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow]
async fn booking(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = reserve_stock(&ctx, n).await?;
    let b = reserve_room(&ctx, n).await?;
    Ok(a + b)
}

fn main() {}
