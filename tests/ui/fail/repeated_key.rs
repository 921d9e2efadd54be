use hydra_runtime::prelude::*;

#[step(id = "a", id = "b")]
async fn a(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

fn main() {}
