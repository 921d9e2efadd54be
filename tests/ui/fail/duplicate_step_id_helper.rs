// Duplicate step IDs are found across a workflow and the helpers it calls,
// at any depth, and inside a helper.
use hydra_runtime::prelude::*;

#[step(id = "reserve")]
async fn reserve_stock(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[step(id = "reserve")]
async fn reserve_room(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[workflow_helper]
async fn book_room(ctx: &WorkflowContext, n: u32) -> Result<u32, StepError> {
    reserve_room(ctx, n).await
}

#[workflow_helper]
async fn book_trip(ctx: &WorkflowContext, n: u32) -> Result<u32, StepError> {
    book_room(ctx, n).await
}

#[workflow]
async fn booking(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = reserve_stock(&ctx, n).await?;
    let b = book_trip(&ctx, n).await?;
    Ok(a + b)
}

#[workflow_helper]
async fn double_booking(ctx: &WorkflowContext, n: u32) -> Result<u32, StepError> {
    let a = reserve_stock(ctx, n).await?;
    let b = reserve_room(ctx, n).await?;
    Ok(a + b)
}

fn main() {}
