//! Procedural macros for Hydra: `#[workflow]` and `#[step]`.
//!
//! Not written yet. This crate will hold the attribute macros that turn
//! `async fn`s into checkpointed workflow steps with compile-time-checked
//! step IDs, generated typed start functions and typed clients. Until then,
//! workflows are written against `hydra-runtime`'s API directly.
