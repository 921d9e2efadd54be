//! Runnable Hydra programs (order processing, approval with a durable sleep,
//! a cron report, and the benchmark) live in this crate's `src/bin/`.
