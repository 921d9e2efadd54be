use hydra_runtime::prelude::*;

// Deserialize only: it cannot be stored.
#[derive(serde::Deserialize)]
pub struct Secret {
    pub value: u32,
}

#[workflow]
async fn flow(_ctx: WorkflowContext, input: Secret) -> Result<u32, WorkflowError> {
    Ok(input.value)
}

fn main() {}
