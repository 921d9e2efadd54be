// The dead-code lint still fires on a user's function under the macro.
#![deny(dead_code)]
use hydra_runtime::prelude::*;

#[step]
async fn never_called(n: u32) -> Result<u32, StepError> {
    Ok(n)
}

fn main() {}
