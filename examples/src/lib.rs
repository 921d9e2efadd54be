//! Workflows shared by the runnable Hydra programs in `src/bin/`.

pub mod orders;
pub mod peer;
