use hydra_runtime::prelude::*;

#[workflow]
async fn flow(n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

fn main() {}
