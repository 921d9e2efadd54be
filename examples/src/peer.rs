//! The peer benchmark's runner: builds `peer/durare` (durare 0.5 from
//! crates.io, outside the workspace) and runs it on a fresh database, so
//! `bench --peer durare` can time it back to back with Hydra in one run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What can go wrong building or running the peer.
#[derive(Debug)]
pub struct PeerError(pub String);

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerError {}

/// The peer's crate in this repository.
pub fn crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("peer").join("durare")
}

/// Builds the peer (release, with its own `Cargo.lock`) and returns its
/// binary. The first build takes a few minutes; later ones are quick.
pub fn build() -> Result<PathBuf, PeerError> {
    let dir = crate_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("bench: building the durare peer ({})", dir.display());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .status()
        .map_err(|e| PeerError(format!("cannot run cargo to build the peer: {e}")))?;
    if !status.success() {
        return Err(PeerError(format!("building the durare peer failed ({status})")));
    }
    let bin = dir.join("target").join("release").join("hydra-peer-durare");
    if bin.is_file() { Ok(bin) } else { Err(PeerError(format!("no peer binary at {}", bin.display()))) }
}

/// Runs `n` workflows of `k` no-op steps on `target` (a SQLite file path,
/// or a PostgreSQL URL of a new database) and returns steps per second as
/// the peer measured them.
pub fn run(bin: &Path, backend: &str, target: &str, n: usize, k: u32) -> Result<f64, PeerError> {
    let out = Command::new(bin)
        .args([backend, target, &n.to_string(), &k.to_string()])
        .output()
        .map_err(|e| PeerError(format!("cannot run the peer: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(PeerError(format!(
            "the peer failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| PeerError(format!("the peer printed no result ({e}): {stdout}")))?;
    value["steps_per_s"].as_f64().ok_or_else(|| PeerError(format!("no steps_per_s in the peer's line: {line}")))
}
