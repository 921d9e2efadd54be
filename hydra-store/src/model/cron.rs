//! Cron schedules: a stored schedule and a schedule to create or update.

/// A cron schedule as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CronJob {
    /// Row ID.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Schedule name, unique per namespace.
    pub name: String,
    /// The cron expression.
    pub spec: String,
    /// IANA time zone of the expression.
    pub timezone: String,
    /// The workflow each tick starts.
    pub workflow_name: String,
    /// The encoded input given to each run.
    pub input: Vec<u8>,
    /// What to do about ticks missed while no worker ran (`run_once` or `skip`).
    pub missed_policy: String,
    /// Paused schedules fire nothing.
    pub enabled: bool,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// The next tick (ms).
    pub next_run_at: i64,
    /// The last tick fired (ms).
    pub last_tick_at: Option<i64>,
}

/// A schedule to create or update.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CronUpsert {
    /// Namespace.
    pub namespace: String,
    /// Schedule name.
    pub name: String,
    /// The cron expression.
    pub spec: String,
    /// Its time zone.
    pub timezone: String,
    /// The workflow to start.
    pub workflow_name: String,
    /// The encoded input.
    pub input: Vec<u8>,
    /// Missed-tick policy.
    pub missed_policy: String,
    /// The next tick computed from now, used when the schedule is new or
    /// its expression or time zone changed.
    pub next_run_at: i64,
    /// Now (ms).
    pub now: i64,
}

impl CronUpsert {
    /// A schedule `name` in `namespace`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        spec: impl Into<String>,
        timezone: impl Into<String>,
        workflow_name: impl Into<String>,
        input: Vec<u8>,
        missed_policy: impl Into<String>,
        next_run_at: i64,
        now: i64,
    ) -> Self {
        CronUpsert {
            namespace: namespace.into(),
            name: name.into(),
            spec: spec.into(),
            timezone: timezone.into(),
            workflow_name: workflow_name.into(),
            input,
            missed_policy: missed_policy.into(),
            next_run_at,
            now,
        }
    }
}
