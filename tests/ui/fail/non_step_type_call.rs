use hydra_runtime::prelude::*;

#[allow(non_camel_case_types)]
struct lookalike {}

impl lookalike {
    fn new() -> Self {
        lookalike {}
    }
}

#[allow(non_snake_case)]
async fn Lookalike(_ctx: &WorkflowContext) -> Result<u32, StepError> {
    Ok(1)
}

#[workflow]
async fn flow(ctx: WorkflowContext, _n: u32) -> Result<u32, WorkflowError> {
    let _ = lookalike::new();
    Ok(Lookalike(&ctx).await?)
}

fn main() {}
