//! Live workers and what they register, and the runs nobody can run.

use crate::error::Error;
use hydra_store::{Admission, Store, WorkerId};

/// What a worker registers, as recorded in its liveness row: a workflow,
/// with the versions of it that the worker replays.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Registration {
    /// The workflow.
    pub name: String,
    /// The oldest version it replays.
    pub from: u32,
    /// The version of its code.
    pub to: u32,
}

impl Registration {
    /// `name` at versions `from` to `to`.
    pub fn new(name: impl Into<String>, from: u32, to: u32) -> Self {
        Registration { name: name.into(), from, to }
    }

    /// Whether the worker takes runs of `name` at `version`: the rule of its
    /// claims ([`Admission`]).
    pub fn covers(&self, name: &str, version: Option<u32>) -> bool {
        Admission::new(vec![self.name.clone()]).versions(vec![(self.from, self.to)]).admits(name, version)
    }

    /// The registrations of a liveness row (`None` for rows of workers that
    /// record none, or whose text does not read).
    pub fn parse(text: Option<&str>) -> Option<Vec<Registration>> {
        serde_json::from_str(text?).ok()
    }

    /// The liveness row text of `regs`.
    pub fn render(regs: &[Registration]) -> String {
        serde_json::to_string(regs).unwrap_or_default()
    }
}

/// A live worker of the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveWorker {
    /// The worker.
    pub worker_id: WorkerId,
    /// When it first registered (ms).
    pub since: i64,
    /// Its last heartbeat (ms).
    pub heartbeat_at: i64,
    /// When it is presumed dead without another heartbeat (ms).
    pub expires_at: i64,
    /// The runs it holds leases on.
    pub running_runs: u64,
    /// What it registers (`None`: not recorded, a worker of an older version).
    pub registrations: Option<Vec<Registration>>,
}

/// The workers of a namespace (see [`super::Runs::workers`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Workers {
    /// The live workers, oldest first.
    pub live: Vec<LiveWorker>,
    /// Runs still held by workers that are gone (their leases lapse and
    /// other workers take them over), by the worker's ID.
    pub held_by_gone: Vec<(String, u64)>,
}

/// Runs due for a workflow (and version) that no live worker of the
/// namespace registers: they wait for a worker that may never come.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unclaimable {
    /// The workflow.
    pub workflow_name: String,
    /// The version the runs record (`None`: unversioned).
    pub workflow_version: Option<u32>,
    /// How many runs.
    pub runs: u64,
    /// How long the one due first has waited (ms).
    pub waited_ms: i64,
}

pub(super) async fn read(store: &Store, ns: &str, now: i64) -> Result<Workers, Error> {
    let live = store.live_workers(ns, now).await?;
    let running = store.running_by_worker(ns).await?;
    let runs_of = |w: &str| running.iter().find(|(o, _)| o == w).map_or(0, |(_, n)| *n);
    let held_by_gone =
        running.iter().filter(|(o, _)| !live.iter().any(|w| w.worker_id.as_str() == o)).cloned().collect();
    let live = live
        .into_iter()
        .map(|w| LiveWorker {
            running_runs: runs_of(w.worker_id.as_str()),
            registrations: Registration::parse(w.registrations.as_deref()),
            since: w.acquired_at,
            heartbeat_at: w.heartbeat_at,
            expires_at: w.expires_at,
            worker_id: w.worker_id,
        })
        .collect();
    Ok(Workers { live, held_by_gone })
}

/// The unclaimable runs of namespace `ns`, by workflow and version. Live
/// workers that record no registrations (older versions) are taken to run
/// nothing.
pub(super) async fn unclaimable(store: &Store, ns: &str, now: i64) -> Result<Vec<Unclaimable>, Error> {
    let live = store.live_workers(ns, now).await?;
    let regs: Vec<Registration> =
        live.iter().filter_map(|w| Registration::parse(w.registrations.as_deref())).flatten().collect();
    let mut out: Vec<Unclaimable> = store
        .due_runs(ns, now)
        .await?
        .into_iter()
        .filter(|d| !regs.iter().any(|r| r.covers(&d.workflow_name, d.workflow_version)))
        .map(|d| Unclaimable {
            workflow_name: d.workflow_name,
            workflow_version: d.workflow_version,
            runs: d.runs,
            waited_ms: now.saturating_sub(d.oldest_due_at).max(0),
        })
        .collect();
    out.sort_by(|a, b| (&a.workflow_name, a.workflow_version).cmp(&(&b.workflow_name, b.workflow_version)));
    Ok(out)
}
