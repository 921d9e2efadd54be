//! Cron schedules that start exactly one run per tick across all workers.
//!
//! A schedule lives in `cron_jobs`. Every worker's scheduler looks for due
//! schedules and fires a tick with one transaction that moves the
//! schedule's `next_run_at` on (only if it still holds the expected tick)
//! and creates the tick's run, whose idempotency key is
//! `cron:{schedule}:{tick}`. Two workers cannot both fire a tick, and a
//! crash before the commit leaves the tick to be fired by someone else.
//!
//! Ticks missed while no worker ran follow the schedule's [`MissedTicks`]
//! policy; the default, [`MissedTicks::RunOnce`], starts one run for the
//! missed interval when a worker comes back.

use crate::clock::Clock;
use crate::codec::{Codec, CodecRegistry};
use crate::engine::Engine;
use crate::error::Error;
use crate::new_run::{NewRun, Origin};
use crate::workflow::{Workflow, WorkflowOptions};
use chrono::TimeZone;
use hydra_store::{CronJob, CronUpsert, Execution, NewExecution, TriggerType};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// How long after its tick a run may still start under [`MissedTicks::Skip`].
pub const SKIP_GRACE_MS: i64 = 60_000;

/// What to do about ticks that passed while no worker was running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissedTicks {
    /// Start one run for the whole missed interval (for its latest tick),
    /// then continue with the next future tick. The default: nothing is
    /// silently lost.
    #[default]
    RunOnce,
    /// Start nothing for ticks more than [`SKIP_GRACE_MS`] old; continue
    /// with the next future tick.
    Skip,
}

impl MissedTicks {
    fn as_str(self) -> &'static str {
        match self {
            MissedTicks::RunOnce => "run_once",
            MissedTicks::Skip => "skip",
        }
    }
}

/// Encodes a schedule's input with the engine's codecs and default codec
/// (verified to decode back).
type InputEncoder = Box<dyn FnOnce(&CodecRegistry, Codec) -> Result<Vec<u8>, String> + Send>;

/// A schedule to register with [`Engine::register_cron`].
#[must_use]
pub struct CronSchedule {
    name: String,
    spec: String,
    timezone: String,
    workflow_name: String,
    known_type: bool,
    input: InputEncoder,
    missed: MissedTicks,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronSchedule")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("timezone", &self.timezone)
            .field("workflow", &self.workflow_name)
            .field("missed", &self.missed)
            .finish()
    }
}

impl CronSchedule {
    /// A schedule `name` that starts workflow `W` with `input` at every tick
    /// of `spec` (5 fields, optional seconds and year fields, or `@daily`,
    /// `@hourly`… nicknames), in UTC unless [`CronSchedule::timezone`] says otherwise.
    pub fn workflow<W: Workflow>(name: impl Into<String>, spec: impl Into<String>, input: W::Input) -> Self {
        CronSchedule {
            name: name.into(),
            spec: spec.into(),
            timezone: "UTC".into(),
            workflow_name: W::NAME.into(),
            known_type: true,
            input: Box::new(move |codecs, default| {
                codecs.encode_checked(W::options().codec.unwrap_or(default), &input)
            }),
            missed: MissedTicks::default(),
        }
    }

    /// A schedule that starts the workflow registered as `workflow_name`
    /// (its input encoded with the engine's codec). Registration fails with
    /// [`Error::UnknownWorkflow`] unless a worker of this engine has
    /// registered that workflow.
    pub fn workflow_named<I: Serialize + DeserializeOwned + Send + 'static>(
        name: impl Into<String>,
        spec: impl Into<String>,
        workflow_name: impl Into<String>,
        input: I,
    ) -> Self {
        CronSchedule {
            name: name.into(),
            spec: spec.into(),
            timezone: "UTC".into(),
            workflow_name: workflow_name.into(),
            known_type: false,
            input: Box::new(move |codecs, default| codecs.encode_checked(default, &input)),
            missed: MissedTicks::default(),
        }
    }

    /// The IANA time zone the expression is read in (default `UTC`).
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        self.timezone = tz.into();
        self
    }

    /// The missed-tick policy (default [`MissedTicks::RunOnce`]).
    pub fn missed_ticks(mut self, policy: MissedTicks) -> Self {
        self.missed = policy;
        self
    }
}

/// A parsed expression in its time zone.
#[derive(Debug)]
pub(crate) struct Spec {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Spec {
    pub(crate) fn parse(spec: &str, timezone: &str) -> Result<Spec, Error> {
        let cron = croner::Cron::from_str(spec)
            .map_err(|e| Error::InvalidCron { spec: spec.to_owned(), reason: e.to_string() })?;
        let tz = chrono_tz::Tz::from_str(timezone).map_err(|_| Error::InvalidCron {
            spec: spec.to_owned(),
            reason: format!("unknown time zone `{timezone}` (use an IANA name such as `Europe/Berlin` or `UTC`)"),
        })?;
        Ok(Spec { cron, tz })
    }

    fn at(&self, ms: i64) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        self.tz.timestamp_millis_opt(ms).single()
    }

    /// The first tick strictly after `ms`.
    pub(crate) fn next_after(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron.find_next_occurrence(&t, false).ok().map(|d| d.timestamp_millis())
    }

    /// The last tick at or before `ms`.
    pub(crate) fn latest_at_or_before(&self, ms: i64) -> Option<i64> {
        let t = self.at(ms)?;
        self.cron.find_previous_occurrence(&t, true).ok().map(|d| d.timestamp_millis())
    }
}

/// A schedule that will never fire again keeps this as its next tick.
const NEVER: i64 = i64::MAX;

impl Engine {
    /// Creates or updates a schedule. The expression, time zone and (for
    /// [`CronSchedule::workflow_named`]) the workflow are checked first; a
    /// bad one is an error and nothing is stored. Registering an existing
    /// name again updates its target and policy and keeps its next tick if
    /// the expression and time zone are unchanged (so restarts do not reset
    /// it); a paused schedule stays paused.
    pub async fn register_cron(&self, schedule: CronSchedule) -> Result<CronJob, Error> {
        if schedule.name.is_empty() || schedule.name.len() > 200 {
            return Err(Error::Config("a cron schedule name must be 1 to 200 bytes".into()));
        }
        let spec = Spec::parse(&schedule.spec, &schedule.timezone)?;
        if !schedule.known_type && !self.knows_workflow(&schedule.workflow_name) {
            return Err(Error::UnknownWorkflow(schedule.workflow_name));
        }
        let input = (schedule.input)(self.codecs(), self.codec()).map_err(|reason| Error::Encode {
            what: format!("the input of cron schedule `{}`", schedule.name),
            reason,
        })?;
        // Every tick's run is held to the payload limit (see `new_run.rs`):
        // an input over it is refused now, not at each tick.
        if input.len() > self.rules().max_payload_bytes {
            return Err(Error::TooLarge {
                what: format!("the input of cron schedule `{}`", schedule.name),
                size: input.len(),
                limit: self.rules().max_payload_bytes,
            });
        }
        let now = self.clock().now_ms();
        let next = spec.next_after(now).unwrap_or(NEVER);
        let row = CronUpsert::new(
            self.namespace(),
            schedule.name.clone(),
            schedule.spec,
            schedule.timezone,
            schedule.workflow_name,
            input,
            schedule.missed.as_str(),
            next,
            now,
        );
        let job = self.inner.store.upsert_cron(&row).await?;
        tracing::info!(schedule = %job.name, spec = %job.spec, next_run_at = job.next_run_at, "cron schedule registered");
        Ok(job)
    }

    /// Every schedule of this namespace.
    pub async fn list_crons(&self) -> Result<Vec<CronJob>, Error> {
        Ok(self.inner.store.list_crons(self.namespace()).await?)
    }

    /// Pauses a schedule: no tick fires until it is resumed.
    pub async fn pause_cron(&self, name: &str) -> Result<(), Error> {
        let job = self.cron_job(name).await?;
        let now = self.clock().now_ms();
        if !self.inner.store.set_cron_enabled(self.namespace(), name, false, job.next_run_at, now).await? {
            return Err(Error::CronNotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Resumes a paused schedule from the next tick after now (ticks that
    /// passed while paused are not fired).
    pub async fn resume_cron(&self, name: &str) -> Result<(), Error> {
        let job = self.cron_job(name).await?;
        let now = self.clock().now_ms();
        let next = Spec::parse(&job.spec, &job.timezone)?.next_after(now).unwrap_or(NEVER);
        if !self.inner.store.set_cron_enabled(self.namespace(), name, true, next, now).await? {
            return Err(Error::CronNotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Deletes a schedule (runs it started are kept).
    pub async fn delete_cron(&self, name: &str) -> Result<(), Error> {
        if self.inner.store.delete_cron(self.namespace(), name).await? {
            Ok(())
        } else {
            Err(Error::CronNotFound(name.to_owned()))
        }
    }

    /// Starts a run of cron schedule `name` now, as its tick would (same
    /// workflow and input, trigger `cron`, and the version and defaults of
    /// the workflow as a worker of this engine registers it), without
    /// moving its next tick. Works for a paused schedule too.
    pub async fn trigger_cron(&self, name: &str) -> Result<Execution, Error> {
        let job =
            self.inner.store.cron(self.namespace(), name).await?.ok_or_else(|| Error::CronNotFound(name.to_owned()))?;
        let new = cron_run(self, &job, None)?;
        self.create(new).await
    }

    async fn cron_job(&self, name: &str) -> Result<CronJob, Error> {
        self.inner.store.cron(self.namespace(), name).await?.ok_or_else(|| Error::CronNotFound(name.to_owned()))
    }
}

/// Fires every due tick of this engine's namespace. A tick's run carries
/// the version and defaults (attempts, timeout) of its workflow as a worker
/// of this engine registers it. Returns how many runs were started.
pub(crate) async fn fire_due(engine: &Engine) -> Result<usize, Error> {
    let clock: &Clock = engine.clock();
    let now = clock.now_ms();
    let mut started = 0;
    for job in engine.inner.store.due_crons(engine.namespace(), now, 64).await? {
        let spec = match Spec::parse(&job.spec, &job.timezone) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(schedule = %job.name, error = %e, "stored cron schedule no longer parses; skipping it");
                continue;
            }
        };
        let latest = spec.latest_at_or_before(now).unwrap_or(job.next_run_at).max(job.next_run_at);
        let next = spec.next_after(latest).unwrap_or(NEVER);
        let fire = match job.missed_policy.as_str() {
            "skip" if now.saturating_sub(latest) > SKIP_GRACE_MS => None,
            _ => Some(latest),
        };
        let run = match fire {
            Some(tick) => match cron_run(engine, &job, Some(tick)) {
                Ok(new) => Some(new),
                Err(e) => {
                    // Refused at every tick alike (an input over the limit):
                    // the tick is passed over, loudly, not retried at every poll.
                    tracing::error!(schedule = %job.name, tick, error = %e, "cron tick skipped: its run cannot be started");
                    engine.inner.store.fire_cron_tick(&job, job.next_run_at, next, None, None, now).await?;
                    continue;
                }
            },
            None => None,
        };
        if engine.inner.store.fire_cron_tick(&job, job.next_run_at, next, fire, run.as_ref(), now).await? {
            match fire {
                Some(tick) => {
                    tracing::info!(schedule = %job.name, tick, next_run_at = next, "cron tick fired");
                    crate::metrics::cron_trigger(engine.namespace(), &job.name);
                    crate::metrics::workflow_started(
                        engine.namespace(),
                        &job.workflow_name,
                        TriggerType::Cron.as_str(),
                        job.input.len(),
                    );
                    started += 1;
                }
                None => tracing::warn!(schedule = %job.name, missed_until = latest, "missed cron ticks skipped"),
            }
        }
    }
    if started > 0 {
        engine.inner.work.send_modify(|n| *n = n.wrapping_add(1));
    }
    Ok(started)
}

/// A plain async cron handler, as registered with
/// [`crate::WorkerBuilder::cron_handler`].
pub(crate) type Handler = std::sync::Arc<
    dyn Fn(crate::StepContext) -> futures_util::future::BoxFuture<'static, Result<(), crate::StepError>> + Send + Sync,
>;

/// The workflow name under which a handler schedule's runs are recorded.
pub(crate) fn handler_workflow_name(schedule: &str) -> String {
    hydra_store::reserved::workflow::cron_handler(schedule)
}

/// Runs a plain handler as a one-step workflow, so each tick's handler run
/// is recorded, retried and exactly-once like any other run.
pub(crate) struct HandlerWorkflow {
    pub(crate) handler: Handler,
}

impl crate::workflow::ErasedWorkflow for HandlerWorkflow {
    fn required_state(&self) -> Vec<crate::state::StateNeed> {
        Vec::new()
    }

    fn version(&self) -> (u32, u32, i64) {
        (1, 1, 0)
    }

    fn options(&self) -> WorkflowOptions {
        WorkflowOptions::default()
    }

    fn start(
        &self,
        ctx: crate::WorkflowContext,
        input: &[u8],
    ) -> Result<futures_util::future::BoxFuture<'static, crate::context::RunEnd>, String> {
        let () = ctx.run.env.codecs.decode(input)?;
        let (codecs, codec) = (ctx.run.env.codecs.clone(), ctx.run.env.codec);
        let handler = std::sync::Arc::clone(&self.handler);
        Ok(Box::pin(async move {
            use crate::context::RunEnd;
            let result = ctx
                .step("handler", move |s| {
                    let handler = std::sync::Arc::clone(&handler);
                    async move { handler(s).await }
                })
                .await;
            match result {
                Ok(()) => match codecs.encode_checked(codec, &()) {
                    Ok(bytes) => RunEnd::Output(bytes),
                    Err(reason) => RunEnd::OutputRefused(
                        crate::error::Error::Encode { what: "the output".into(), reason }.to_string(),
                    ),
                },
                Err(e) => RunEnd::Failed(std::sync::Arc::new(e.into())),
            }
        }))
    }
}

/// The run of schedule `job`: of its tick at `tick`, or triggered by hand
/// (`None`); with the version and defaults of its workflow as a worker of
/// `engine` registers it (see `new_run.rs`).
pub(crate) fn cron_run(engine: &Engine, job: &CronJob, tick: Option<i64>) -> Result<NewExecution, Error> {
    let known = engine.known(&job.workflow_name);
    let defaults = known.as_ref().map(|k| k.options).unwrap_or_default();
    NewRun {
        name: &job.workflow_name,
        input: job.input.clone(),
        input_stored: true,
        version: known.map(|k| k.version),
        defaults: &defaults,
        options: crate::engine::StartOptions::default(),
        origin: Origin::Cron { schedule: job.name.clone(), tick },
    }
    .build(engine.rules())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_in_their_time_zone() {
        let s = Spec::parse("0 0 * * *", "UTC").unwrap();
        // 2023-11-14T22:13:20Z → next midnight UTC is 2023-11-15T00:00:00Z.
        assert_eq!(s.next_after(1_700_000_000_000), Some(1_700_006_400_000));
        assert_eq!(s.latest_at_or_before(1_700_006_400_000), Some(1_700_006_400_000));
        let berlin = Spec::parse("0 0 * * *", "Europe/Berlin").unwrap();
        assert_eq!(berlin.next_after(1_700_000_000_000), Some(1_700_002_800_000), "midnight CET is 23:00 UTC");
        assert!(Spec::parse("@daily", "UTC").is_ok());
        assert!(Spec::parse("*/10 * * * * *", "UTC").is_ok(), "six fields: seconds");
        assert!(matches!(Spec::parse("61 * * * *", "UTC"), Err(Error::InvalidCron { .. })));
        assert!(matches!(Spec::parse("in five minutes", "UTC"), Err(Error::InvalidCron { .. })));
        assert!(Spec::parse("0 0 * * *", "Mars/Olympus").unwrap_err().to_string().contains("unknown time zone"));
    }
}
