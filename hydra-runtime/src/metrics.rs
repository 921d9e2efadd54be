//! Metrics, through the `metrics` facade, recorded where each event happens.
//!
//! The names are the contract (they match the Go engine's documentation)
//! and are listed in [`ALL`]. Labels are bounded: namespace, workflow name,
//! step name (the step's base ID), worker ID and a status; never an
//! execution ID. [`install_prometheus`] serves them over HTTP.

use std::net::SocketAddr;

/// Runs started (label: namespace, workflow_name, trigger).
pub const WORKFLOWS_STARTED: &str = "hydra_workflows_started_total";
/// Runs ended (labels: namespace, workflow_name, status = completed | failed | cancelled | timed_out).
pub const WORKFLOWS_COMPLETED: &str = "hydra_workflows_completed_total";
/// Creation-to-end time of ended runs, seconds (namespace, workflow_name, status).
pub const WORKFLOW_DURATION: &str = "hydra_workflow_duration_seconds";
/// Creation-to-first-claim time, seconds (namespace, workflow_name).
pub const WORKFLOW_QUEUE_TIME: &str = "hydra_workflow_queue_time_seconds";
/// Runs a worker is executing now (namespace, worker_id).
pub const WORKFLOWS_ACTIVE: &str = "hydra_workflows_active";
/// Step bodies executed (namespace, workflow_name, step_name, status = completed | failed | retry).
pub const STEPS_EXECUTED: &str = "hydra_steps_executed_total";
/// Step body run time, seconds (namespace, workflow_name, step_name).
pub const STEP_DURATION: &str = "hydra_step_duration_seconds";
/// Steps answered from the recorded history (namespace, workflow_name, step_name).
pub const STEPS_CACHED: &str = "hydra_steps_cached_total";
/// Step retries scheduled (namespace, workflow_name, step_name).
pub const STEPS_RETRIED: &str = "hydra_steps_retried_total";
/// Claim queries made (namespace, worker_id).
pub const WORKER_POLLS: &str = "hydra_worker_polls_total";
/// Heartbeats (namespace, worker_id, status = ok | error).
pub const WORKER_HEARTBEATS: &str = "hydra_worker_heartbeats_total";
/// Runs claimed (namespace, worker_id, workflow_name).
pub const LEASE_ACQUISITIONS: &str = "hydra_lease_acquisitions_total";
/// The worker's configured concurrency (namespace, worker_id); utilization
/// is `hydra_workflows_active / hydra_worker_concurrency_current`.
pub const WORKER_CONCURRENCY: &str = "hydra_worker_concurrency_current";
/// Runs a worker stopped because it lost the lease (namespace, workflow_name).
pub const LEASES_LOST: &str = "hydra_leases_lost_total";
/// Runs failed by a non-determinism error (namespace, workflow_name).
pub const NONDETERMINISM_ERRORS: &str = "hydra_nondeterminism_errors_total";
/// Runs parked durably: sleeps, long retry backoffs, waits for signals (namespace, workflow_name).
pub const WORKFLOWS_PARKED: &str = "hydra_workflows_parked_total";
/// Runs started by cron schedules (namespace, schedule).
pub const CRON_TRIGGERS: &str = "hydra_cron_triggers_total";
/// Encoded payload sizes, bytes (namespace, workflow_name, kind = input | output | step).
pub const PAYLOAD_BYTES: &str = "hydra_payload_bytes";
/// Signals accepted for a run (namespace, workflow_name); a duplicate send is not counted.
pub const SIGNALS_SENT: &str = "hydra_signals_sent_total";
/// Signals received by runs (namespace, workflow_name).
pub const SIGNALS_RECEIVED: &str = "hydra_signals_received_total";
/// Child runs started by runs (namespace, workflow_name = the parent's,
/// child_workflow); a replayed or repeated start is not counted.
pub const CHILDREN_STARTED: &str = "hydra_children_started_total";
/// Waits begun by runs, whether or not they had to park (namespace,
/// workflow_name, kind = signal | select | child | awakeable); a replayed
/// wait is not counted. The ones that parked the run are in
/// `hydra_workflows_parked_total` too; the runs waiting now are the
/// `sleeping` runs of [`crate::Engine::list`].
pub const WAITS: &str = "hydra_waits_total";
/// Compensations run (namespace, workflow_name, status = completed |
/// failed); a run whose compensations failed also ends with status
/// `compensation_failed` in `hydra_workflows_completed_total`.
pub const COMPENSATIONS: &str = "hydra_compensations_total";
/// Compensation phases parked because the database failed one of their
/// writes for a reason that is not transient (namespace, workflow_name):
/// they go on after a backoff, and the run's error says why it waits.
pub const COMPENSATION_WRITE_FAILURES: &str = "hydra_compensation_write_failures_total";
/// Runs suspended because their code did not replay their history
/// (namespace, workflow_name); `hydra_nondeterminism_errors_total` counts
/// every such replay.
pub const RUNS_SUSPENDED: &str = "hydra_runs_suspended_total";
/// Runs due for a workflow (and version) no live worker registers, as last
/// counted by a worker of the namespace (namespace, workflow_name).
pub const RUNS_UNCLAIMABLE: &str = "hydra_runs_unclaimable";

/// Group commits whose store code panicked (their writes failed; the
/// committer went on). Zero unless Hydra has a bug.
pub const COMMITTER_PANICS: &str = "hydra_committer_panics_total";

/// Every metric name Hydra records.
pub const ALL: &[&str] = &[
    WORKFLOWS_STARTED,
    WORKFLOWS_COMPLETED,
    WORKFLOW_DURATION,
    WORKFLOW_QUEUE_TIME,
    WORKFLOWS_ACTIVE,
    STEPS_EXECUTED,
    STEP_DURATION,
    STEPS_CACHED,
    STEPS_RETRIED,
    WORKER_POLLS,
    WORKER_HEARTBEATS,
    LEASE_ACQUISITIONS,
    WORKER_CONCURRENCY,
    LEASES_LOST,
    NONDETERMINISM_ERRORS,
    WORKFLOWS_PARKED,
    CRON_TRIGGERS,
    PAYLOAD_BYTES,
    SIGNALS_SENT,
    SIGNALS_RECEIVED,
    CHILDREN_STARTED,
    WAITS,
    COMPENSATIONS,
    COMPENSATION_WRITE_FAILURES,
    RUNS_SUSPENDED,
    RUNS_UNCLAIMABLE,
    COMMITTER_PANICS,
];

const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
const BYTES_BUCKETS: &[f64] = &[64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 8_388_608.0];

/// Installs a Prometheus exporter as the process's metrics recorder and
/// serves `/metrics` on `addr` (use a loopback address unless the port is
/// protected). One per process.
pub fn install_prometheus(addr: SocketAddr) -> Result<(), crate::Error> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let config = |e: metrics_exporter_prometheus::BuildError| crate::Error::Config(format!("prometheus exporter: {e}"));
    let mut b = PrometheusBuilder::new().with_http_listener(addr);
    for name in [WORKFLOW_DURATION, WORKFLOW_QUEUE_TIME, STEP_DURATION] {
        b = b.set_buckets_for_metric(Matcher::Full(name.to_owned()), SECONDS_BUCKETS).map_err(config)?;
    }
    b = b.set_buckets_for_metric(Matcher::Full(PAYLOAD_BYTES.to_owned()), BYTES_BUCKETS).map_err(config)?;
    b.install().map_err(config)
}

pub(crate) fn workflow_started(ns: &str, workflow: &str, trigger: &str, input_bytes: usize) {
    metrics::counter!(WORKFLOWS_STARTED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "trigger" => trigger.to_owned()).increment(1);
    payload(ns, workflow, "input", input_bytes);
}

pub(crate) fn workflow_ended(ns: &str, workflow: &str, status: &str, seconds: f64) {
    metrics::counter!(WORKFLOWS_COMPLETED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "status" => status.to_owned()).increment(1);
    metrics::histogram!(WORKFLOW_DURATION, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "status" => status.to_owned()).record(seconds);
}

pub(crate) fn queue_time(ns: &str, workflow: &str, seconds: f64) {
    metrics::histogram!(WORKFLOW_QUEUE_TIME, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
        .record(seconds);
}

pub(crate) fn active(ns: &str, worker: &str, n: usize) {
    metrics::gauge!(WORKFLOWS_ACTIVE, "namespace" => ns.to_owned(), "worker_id" => worker.to_owned()).set(n as f64);
}

pub(crate) fn concurrency(ns: &str, worker: &str, n: usize) {
    metrics::gauge!(WORKER_CONCURRENCY, "namespace" => ns.to_owned(), "worker_id" => worker.to_owned()).set(n as f64);
}

pub(crate) fn step_executed(ns: &str, workflow: &str, step: &str, status: &'static str, seconds: f64) {
    metrics::counter!(STEPS_EXECUTED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "step_name" => step.to_owned(), "status" => status).increment(1);
    metrics::histogram!(STEP_DURATION, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "step_name" => step.to_owned()).record(seconds);
}

pub(crate) fn step_cached(ns: &str, workflow: &str, step: &str) {
    metrics::counter!(STEPS_CACHED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "step_name" => step.to_owned()).increment(1);
}

pub(crate) fn step_retried(ns: &str, workflow: &str, step: &str) {
    metrics::counter!(STEPS_RETRIED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "step_name" => step.to_owned()).increment(1);
}

pub(crate) fn poll(ns: &str, worker: &str) {
    metrics::counter!(WORKER_POLLS, "namespace" => ns.to_owned(), "worker_id" => worker.to_owned()).increment(1);
}

pub(crate) fn heartbeat(ns: &str, worker: &str, ok: bool) {
    let status = if ok { "ok" } else { "error" };
    metrics::counter!(WORKER_HEARTBEATS, "namespace" => ns.to_owned(), "worker_id" => worker.to_owned(), "status" => status).increment(1);
}

pub(crate) fn lease_acquired(ns: &str, worker: &str, workflow: &str) {
    metrics::counter!(LEASE_ACQUISITIONS, "namespace" => ns.to_owned(), "worker_id" => worker.to_owned(), "workflow_name" => workflow.to_owned()).increment(1);
}

/// Registers the panic counter at zero (a scrape shows 0, not nothing).
pub(crate) fn committer_started() {
    metrics::counter!(COMMITTER_PANICS).increment(0);
}

pub(crate) fn committer_panicked() {
    metrics::counter!(COMMITTER_PANICS).increment(1);
}

pub(crate) fn lease_lost(ns: &str, workflow: &str) {
    metrics::counter!(LEASES_LOST, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned()).increment(1);
}

pub(crate) fn nondeterminism(ns: &str, workflow: &str) {
    metrics::counter!(NONDETERMINISM_ERRORS, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
        .increment(1);
}

pub(crate) fn parked(ns: &str, workflow: &str) {
    metrics::counter!(WORKFLOWS_PARKED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
        .increment(1);
}

pub(crate) fn payload(ns: &str, workflow: &str, kind: &'static str, bytes: usize) {
    metrics::histogram!(PAYLOAD_BYTES, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "kind" => kind).record(bytes as f64);
}

/// Records a run started by a cron schedule.
pub(crate) fn cron_trigger(ns: &str, schedule: &str) {
    metrics::counter!(CRON_TRIGGERS, "namespace" => ns.to_owned(), "schedule" => schedule.to_owned()).increment(1);
}

pub(crate) fn signal_sent(ns: &str, workflow: &str) {
    metrics::counter!(SIGNALS_SENT, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned()).increment(1);
}

pub(crate) fn signal_received(ns: &str, workflow: &str) {
    metrics::counter!(SIGNALS_RECEIVED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
        .increment(1);
}

pub(crate) fn child_started(ns: &str, workflow: &str, child: &str) {
    metrics::counter!(CHILDREN_STARTED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "child_workflow" => child.to_owned()).increment(1);
}

pub(crate) fn wait(ns: &str, workflow: &str, kind: &'static str) {
    metrics::counter!(WAITS, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "kind" => kind)
        .increment(1);
}

pub(crate) fn compensation(ns: &str, workflow: &str, ok: bool) {
    let status = if ok { "completed" } else { "failed" };
    metrics::counter!(COMPENSATIONS, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned(), "status" => status).increment(1);
}

fn compensation_write_failures(ns: &str, workflow: &str) -> metrics::Counter {
    metrics::counter!(COMPENSATION_WRITE_FAILURES, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
}

/// Registers the counters a healthy run never moves at zero for a
/// workflow a worker runs (a scrape shows 0, not nothing).
pub(crate) fn workflow_registered(ns: &str, workflow: &str) {
    compensation_write_failures(ns, workflow).increment(0);
}

pub(crate) fn compensation_write_failed(ns: &str, workflow: &str) {
    compensation_write_failures(ns, workflow).increment(1);
}

pub(crate) fn suspended(ns: &str, workflow: &str) {
    metrics::counter!(RUNS_SUSPENDED, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
        .increment(1);
}

pub(crate) fn unclaimable(ns: &str, workflow: &str, runs: u64) {
    metrics::gauge!(RUNS_UNCLAIMABLE, "namespace" => ns.to_owned(), "workflow_name" => workflow.to_owned())
        .set(runs as f64);
}
