//! One road into the run table: every new run, whatever made it (a start,
//! a start of many, a start by name, a cron tick or a schedule triggered
//! by hand, a child, a fork), is built by [`NewRun::build`] with the same
//! checks: a name the schema holds, a new input within the engine's payload
//! limit (an input already stored, a schedule's or a forked run's, was held
//! to it where it entered the database), an idempotency key and a trigger source the schema holds and not
//! of Hydra's own form, valid search attributes; and it carries its
//! workflow's version wherever that is known, so that version-gated claims
//! apply to it. Typed inputs are encoded by [`encode_input`], checked to
//! read back. A run created is counted by [`started`].

use crate::clock::duration_ms;
use crate::codec::{Codec, CodecRegistry};
use crate::error::Error;
use crate::workflow::{Workflow, WorkflowOptions};
use hydra_store::{Execution, ExecutionId, NewExecution, TriggerType};
use std::time::Duration;

/// What made a run.
#[derive(Clone, Debug)]
pub(crate) enum Origin {
    /// A start through the API (its trigger as the options say, default
    /// [`TriggerType::Api`]).
    Start,
    /// Cron schedule `schedule`: its tick at `tick` (ms), or triggered by
    /// hand (`None`).
    Cron {
        /// The schedule's name.
        schedule: String,
        /// The tick, if it is one.
        tick: Option<i64>,
    },
    /// A child (or detached run) started by run `parent` as run `id`.
    Child {
        /// The child's ID, derived from its parent and call position.
        id: ExecutionId,
        /// The run that started it.
        parent: ExecutionId,
        /// Whether its end tells the parent (a child, not a detached run).
        linked: bool,
        /// Whether a cancel of the parent cancels it.
        cancel_with_parent: bool,
    },
    /// A fork of run `origin`.
    Fork {
        /// The run forked.
        origin: ExecutionId,
        /// The new run's ID.
        id: ExecutionId,
    },
}

/// A run to build (see the module docs).
#[derive(Debug)]
pub(crate) struct NewRun<'a> {
    /// The workflow.
    pub(crate) name: &'a str,
    /// The encoded input.
    pub(crate) input: Vec<u8>,
    /// Whether the input is already stored (a schedule's input, a forked
    /// run's): it was held to the limit where it entered the database, and
    /// is not refused again by an engine whose limit is lower.
    pub(crate) input_stored: bool,
    /// The workflow's version, if known (a start's options may name one).
    pub(crate) version: Option<u32>,
    /// The workflow's defaults (attempts, timeout).
    pub(crate) defaults: &'a WorkflowOptions,
    /// The caller's options (a start's; empty for the others).
    pub(crate) options: StartOptions,
    /// What made it.
    pub(crate) origin: Origin,
}

/// The engine's side of every new run: its namespace, its payload limit
/// and the time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules<'a> {
    /// The namespace runs are created in.
    pub(crate) namespace: &'a str,
    /// The largest encoded input accepted.
    pub(crate) max_payload_bytes: usize,
    /// Now, on the engine's clock (ms).
    pub(crate) now: i64,
}

impl NewRun<'_> {
    /// The run as the store takes it, after every check.
    pub(crate) fn build(self, rules: Rules<'_>) -> Result<NewExecution, Error> {
        let NewRun { name, input, input_stored, version, defaults, options, origin } = self;
        if name.is_empty() {
            return Err(Error::UnknownWorkflow(name.to_owned()));
        }
        fits("a workflow name", name)?;
        if let Some(k) = &options.idempotency_key {
            fits("an idempotency key", k)?;
            if k.starts_with(hydra_store::reserved::idempotency::CRON) {
                return Err(Error::Config(format!(
                    "idempotency key {:?}: keys beginning `{}` are Hydra's own (one run per cron tick)",
                    cut(k),
                    hydra_store::reserved::idempotency::CRON
                )));
            }
        }
        if let Some(s) = &options.trigger_source {
            fits("a trigger source", s)?;
        }
        if !input_stored && input.len() > rules.max_payload_bytes {
            let what = match &origin {
                Origin::Start => format!("the input of `{name}`"),
                Origin::Cron { schedule, .. } => format!("the input of cron schedule `{schedule}`"),
                Origin::Child { .. } => format!("the input of child `{name}`"),
                Origin::Fork { origin, .. } => format!("the input of a fork of {origin}"),
            };
            return Err(Error::TooLarge { what, size: input.len(), limit: rules.max_payload_bytes });
        }
        for (n, v) in &options.search_attributes {
            hydra_store::check_search_attribute(n, v).map_err(Error::Config)?;
        }
        let now = rules.now;
        let id = match &origin {
            Origin::Child { id, .. } | Origin::Fork { id, .. } => id.clone(),
            Origin::Start | Origin::Cron { .. } => ExecutionId::generate(now),
        };
        let mut new = NewExecution::new(id, rules.namespace, name, input, now);
        new.max_attempts = options.max_attempts.unwrap_or(defaults.retry.max_attempts).max(1);
        new.workflow_version = options.workflow_version.or(version);
        new.due_at = now.saturating_add(options.delay.map_or(0, duration_ms));
        new.deadline_at = options.timeout.or(defaults.timeout).map(|t| now.saturating_add(duration_ms(t)));
        new.search_attributes = options.search_attributes;
        new.idempotency_key = options.idempotency_key;
        new.trigger_type = options.trigger_type.unwrap_or(TriggerType::Api);
        new.trigger_source = options.trigger_source;
        match origin {
            Origin::Start => {}
            Origin::Cron { schedule, tick } => {
                new.trigger_type = TriggerType::Cron;
                // A tick's run is one per tick across every worker; a
                // schedule triggered by hand makes a run each time.
                new.idempotency_key = tick.map(|t| hydra_store::reserved::idempotency::cron_tick(&schedule, t));
                new.trigger_source = Some(schedule);
            }
            Origin::Child { id, parent, linked, cancel_with_parent } => {
                // The ID as idempotency key: a second insert finds the first.
                new.idempotency_key = Some(id.to_string());
                new.trigger_type = TriggerType::Child;
                new.trigger_source = Some(parent.to_string());
                new.parent_id = linked.then_some(parent);
                new.cancel_with_parent = cancel_with_parent;
            }
            Origin::Fork { origin, .. } => {
                new.trigger_type = TriggerType::Fork;
                new.trigger_source = Some(origin.to_string());
            }
        }
        Ok(new)
    }
}

/// `input` of `W`, encoded with `W`'s codec (else `engine_codec`) and
/// checked to decode back.
pub(crate) fn encode_input<W: Workflow>(
    codecs: &CodecRegistry,
    engine_codec: Codec,
    input: &W::Input,
    what: impl FnOnce() -> String,
) -> Result<Vec<u8>, Error> {
    let codec = W::options().codec.unwrap_or(engine_codec);
    codecs.encode_checked(codec, input).map_err(|reason| Error::Encode { what: what(), reason })
}

/// Counts and logs a run just created (`claimed`: by its start).
pub(crate) fn started(e: &Execution, claimed: bool) {
    crate::metrics::workflow_started(&e.namespace, &e.workflow_name, e.trigger_type.as_str(), e.input.len());
    tracing::info!(namespace = %e.namespace, workflow = %e.workflow_name, execution_id = %e.id, claimed, "run started");
}

/// What the schema holds: 255 characters, no NUL (PostgreSQL refuses it).
pub(crate) fn fits(what: &str, text: &str) -> Result<(), Error> {
    if text.chars().count() > 255 || text.contains('\0') {
        Err(Error::Config(format!("{what} must be at most 255 characters without NUL: {:?}", cut(text))))
    } else {
        Ok(())
    }
}

/// The first 40 characters of `text`, for an error message.
fn cut(text: &str) -> String {
    text.chars().take(40).collect()
}

/// Options of one start.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct StartOptions {
    /// A second start with the same key (same namespace and workflow)
    /// returns the first run instead of creating another. Keys beginning
    /// `cron:` are Hydra's own (one run per cron tick) and are refused.
    pub idempotency_key: Option<String>,
    /// Workflow attempts allowed (default: the workflow's retry policy).
    pub max_attempts: Option<u32>,
    /// Run timeout (default: the workflow's).
    pub timeout: Option<Duration>,
    /// Do not start before this long from now.
    pub delay: Option<Duration>,
    /// What started it (default: the API).
    pub trigger_type: Option<TriggerType>,
    /// Which schedule or caller started it.
    pub trigger_source: Option<String>,
    /// The version of the workflow's code starting it (set by
    /// [`Engine::start_with`](crate::Engine::start_with) from [`crate::Workflow::VERSION`]; `None`:
    /// unversioned).
    pub workflow_version: Option<u32>,
    /// Search attributes (name, value) the run carries from its start; find
    /// runs by them with [`hydra_store::ExecutionFilter::search`].
    pub search_attributes: Vec<(String, String)>,
}

impl StartOptions {
    /// Default options.
    pub fn new() -> Self {
        StartOptions::default()
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the workflow attempts allowed.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// Sets the run timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Delays the first claim.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Adds search attribute `name` = `value` (at most
    /// [`hydra_store::MAX_SEARCH_VALUE_BYTES`] bytes); a workflow sets more
    /// with [`crate::WorkflowContext::set_search_attribute`].
    pub fn search_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.search_attributes.retain(|(n, _)| *n != name);
        self.search_attributes.push((name, value.into()));
        self
    }

    /// Sets the trigger.
    pub fn trigger(mut self, trigger_type: TriggerType, source: impl Into<String>) -> Self {
        self.trigger_type = Some(trigger_type);
        self.trigger_source = Some(source.into());
        self
    }
}
