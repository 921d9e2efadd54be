//! [`Engine`]: starts, reads and cancels runs in one namespace.

mod handle;
mod local_workers;
mod messages;
mod operate;
mod repair;
mod start;

pub use crate::new_run::StartOptions;
pub(crate) use handle::decode_result;
pub use handle::{RunFailed, RunHandle};
pub(crate) use local_workers::{LocalWorker, Reservation};
pub use messages::{AwakeableState, SignalOptions};
pub use repair::Retention;

use crate::clock::Clock;
use crate::codec::{Codec, CodecRegistry, CustomCodec};
use crate::error::Error;
use hydra_store::{CancelOutcome, Execution, ExecutionFilter, ExecutionId, Store, StoreOptions};
use std::marker::PhantomData;
use std::sync::Arc;
use tokio::sync::watch;

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://hydra.db?mode=rwc";
/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The default limit on an encoded input (8 MiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// The entry point: one database, one namespace, one codec, one clock.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

#[derive(Debug)]
pub(crate) struct EngineInner {
    pub(crate) store: Store,
    pub(crate) namespace: String,
    pub(crate) codec: Codec,
    /// Every codec this engine reads and writes (built-in and registered).
    pub(crate) codecs: CodecRegistry,
    pub(crate) clock: Clock,
    pub(crate) max_payload_bytes: usize,
    /// Bumped when a run is started here, so local idle workers claim at once.
    pub(crate) work: watch::Sender<u64>,
    /// Bumped when a local worker ends a run, so waiting handles look again.
    pub(crate) done: watch::Sender<u64>,
    /// Group commit of run checkpoints (None: each write commits alone).
    pub(crate) committer: Option<crate::commit::Committer>,
    /// This process's workers, which may take a run at its start (see
    /// `worker/direct.rs`).
    pub(crate) local_workers: std::sync::Mutex<Vec<Box<dyn LocalWorker>>>,
    /// Workflows registered by this process's workers: the version and
    /// defaults of their code, for runs started by name (by-name starts, cron
    /// ticks and triggers).
    pub(crate) known: std::sync::Mutex<std::collections::HashMap<String, Known>>,
    /// What this engine's workers delete of old finished runs.
    pub(crate) retention: Option<Retention>,
    /// What was attached to the engine when it was built (see
    /// [`EngineBuilder::attach`]), by type.
    pub(crate) extensions: std::sync::Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
}

/// A workflow registered by a worker of this engine: what runs of it
/// started by name are given.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    /// The version of its code.
    pub(crate) version: u32,
    /// Its defaults (attempts, timeout).
    pub(crate) options: crate::workflow::WorkflowOptions,
}

/// Builds an [`Engine`].
#[derive(Debug, Default)]
#[must_use]
pub struct EngineBuilder {
    url: Option<String>,
    store_options: Option<StoreOptions>,
    store: Option<Store>,
    namespace: Option<String>,
    codec: Codec,
    custom_codecs: CustomCodecs,
    clock: Option<Clock>,
    max_payload_bytes: Option<usize>,
    prometheus: Option<std::net::SocketAddr>,
    no_group_commit: bool,
    retention: Option<Retention>,
    attachments: Attachments,
}

impl EngineBuilder {
    /// The database URL (default [`DEFAULT_DATABASE_URL`]).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Full store options (pool size, timeouts), instead of a bare URL.
    pub fn store_options(mut self, options: StoreOptions) -> Self {
        self.store_options = Some(options);
        self
    }

    /// An already open store (see [`crate::unstable::EngineBuilderStoreExt`]).
    pub(crate) fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The namespace (default [`DEFAULT_NAMESPACE`]). Engines and workers
    /// only see runs of their own namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The codec for new payloads (default [`Codec::Json`], which reads
    /// back every serde shape; [`Codec::Bincode`] is the compact choice for
    /// plain types; a [`Codec::Custom`] must be registered with
    /// [`EngineBuilder::register_codec`]). A workflow can choose its own
    /// with [`WorkflowOptions::codec`](crate::WorkflowOptions::codec). Stored payloads keep decoding by
    /// their tag whatever this is.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Registers a codec of your own (MessagePack, CBOR, an encrypting or
    /// compressing wrapper…) under its tag (128 to 255): payloads with that
    /// tag decode through it, and [`Codec::Custom`] with its tag selects it
    /// for new payloads. A reserved or duplicate tag is an
    /// [`Error::Config`] at [`EngineBuilder::build`]. Every engine and
    /// worker that reads those payloads must register it. See
    /// [`CustomCodec`].
    pub fn register_codec(mut self, codec: impl CustomCodec) -> Self {
        self.custom_codecs.0.push(Arc::new(codec));
        self
    }

    /// The clock (default the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The largest payload stored, encoded (default 8 MiB): one limit for
    /// run inputs (starts, cron schedules, children, forks), signals and
    /// awakeable completions, step outputs, events, run outputs and typed
    /// errors. Over it, a start or a send is refused with
    /// [`Error::TooLarge`]; a step's output fails the step for good (its
    /// body is not run again); an event is a permanent error; a run's
    /// output fails the run; a typed error is left out of the record (its
    /// message kept). Each error names the limit.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = Some(bytes);
        self
    }

    /// Serves Prometheus metrics on `addr` (`http://addr/metrics`); use a
    /// loopback address unless the port is protected. Installs the process's
    /// metrics recorder, so call it on one engine per process.
    pub fn prometheus(mut self, addr: std::net::SocketAddr) -> Self {
        self.prometheus = Some(addr);
        self
    }

    /// Whether checkpoints of concurrent runs are committed together (group
    /// commit, the default) or each in its own transaction.
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.no_group_commit = !enabled;
        self
    }

    /// Keeps finished runs for `retention`'s period: the workers of this
    /// engine delete older ones (with their steps, signals, events and
    /// search attributes) in bounded batches, at their start and every
    /// minute. Runs that have not ended are never deleted. Default: runs
    /// are kept for ever.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Starts `attachment` with the engine, at [`EngineBuilder::build`]
    /// (which fails if it does): something that serves beside the engine,
    /// such as the web console (`hydra_console::EngineBuilderExt::console`).
    pub fn attach(mut self, attachment: impl Attachment) -> Self {
        self.attachments.0.push(Box::new(attachment));
        self
    }

    /// Opens the database (applying migrations) and builds the engine.
    pub async fn build(self) -> Result<Engine, Error> {
        if let Some(addr) = self.prometheus {
            crate::metrics::install_prometheus(addr)?;
        }
        let namespace = self.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        if namespace.is_empty() || namespace.len() > 255 || namespace.contains('\0') {
            return Err(Error::Config(format!("namespace must be 1 to 255 bytes without NUL, got {:?}", namespace)));
        }
        let store = match (self.store, self.store_options, self.url) {
            (Some(store), _, _) => store,
            (None, Some(opts), _) => Store::connect_with(opts).await?,
            (None, None, url) => Store::connect(url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)).await?,
        };
        let codecs = CodecRegistry::with_custom(self.custom_codecs.0).map_err(Error::Config)?;
        if !codecs.supports(self.codec) {
            return Err(Error::Config(format!(
                "the default codec {:?} is not registered (EngineBuilder::register_codec)",
                self.codec
            )));
        }
        let clock = self.clock.unwrap_or_default();
        let committer = (!self.no_group_commit).then(|| crate::commit::Committer::start(store.clone(), clock.clone()));
        let engine = Engine {
            inner: Arc::new(EngineInner {
                store,
                namespace,
                codec: self.codec,
                codecs,
                committer,
                clock,
                max_payload_bytes: self.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES),
                work: watch::channel(0).0,
                done: watch::channel(0).0,
                known: std::sync::Mutex::new(std::collections::HashMap::new()),
                local_workers: std::sync::Mutex::new(Vec::new()),
                retention: self.retention,
                extensions: std::sync::Mutex::new(Vec::new()),
            }),
        };
        for attachment in self.attachments.0 {
            attachment.start(engine.clone()).await?;
        }
        Ok(engine)
    }
}

/// Something started with an engine when it is built (see
/// [`EngineBuilder::attach`]): it gets the engine, and may record what it
/// wants found later with [`Engine::set_extension`].
pub trait Attachment: Send + 'static {
    /// Starts it for `engine`; an error fails the build.
    fn start(self: Box<Self>, engine: Engine) -> futures_util::future::BoxFuture<'static, Result<(), Error>>;
}

/// The attachments of a builder.
#[derive(Default)]
struct Attachments(Vec<Box<dyn Attachment>>);

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} attachment(s)", self.0.len())
    }
}

/// Codecs registered on a builder, checked at [`EngineBuilder::build`].
#[derive(Default)]
struct CustomCodecs(Vec<Arc<dyn CustomCodec>>);

impl std::fmt::Debug for CustomCodecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|c| (c.tag(), c.name()))).finish()
    }
}

impl Engine {
    /// A builder with defaults: SQLite file `hydra.db`, namespace `default`,
    /// JSON payloads, system clock.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The engine's database connection pool, for your own tables (a
    /// transactional step gets a transaction of it: [`crate::StepTransaction`]).
    pub fn connection(&self) -> &hydra_store::sea_orm::DatabaseConnection {
        self.inner.store.connection()
    }

    /// What this engine's acknowledged writes survive, as its database
    /// connections report their settings (see [`crate::Durability`] and
    /// [`crate::StoreOptions::durability`]).
    pub async fn durability(&self) -> Result<crate::Durability, Error> {
        Ok(self.inner.store.durability().await?)
    }

    /// How many write transactions this engine's database handle
    /// committed (starts, claims, renewals, checkpoints, group commits): the
    /// benchmark reports it per step.
    pub fn write_commits(&self) -> u64 {
        self.inner.store.write_commits()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Records `value` with this engine, found again by
    /// [`Engine::extension`] of its type (an attachment's state, such as
    /// the address the console listens on); replaces a value of that type.
    pub fn set_extension<T: Send + Sync + 'static>(&self, value: T) {
        let mut all = self.inner.extensions.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|v| !v.is::<T>());
        all.push(Arc::new(value));
    }

    /// The value of type `T` recorded with [`Engine::set_extension`].
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let all = self.inner.extensions.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().find_map(|v| Arc::clone(v).downcast::<T>().ok())
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The codec for new payloads (workflows may choose their own with
    /// [`WorkflowOptions::codec`](crate::WorkflowOptions::codec)).
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// Every codec this engine reads and writes: the built-in ones and those
    /// registered with [`EngineBuilder::register_codec`]. Decode stored
    /// payloads through it.
    pub fn codecs(&self) -> &CodecRegistry {
        &self.inner.codecs
    }

    /// Whether a worker of this engine registered workflow `name`.
    pub fn knows_workflow(&self, name: &str) -> bool {
        self.known(name).is_some()
    }

    /// What a worker of this engine registered as workflow `name`.
    pub(crate) fn known(&self, name: &str) -> Option<Known> {
        self.inner.known.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The engine's side of a new run (see `new_run.rs`), now.
    pub(crate) fn rules(&self) -> crate::new_run::Rules<'_> {
        crate::new_run::Rules {
            namespace: &self.inner.namespace,
            max_payload_bytes: self.inner.max_payload_bytes,
            now: self.inner.clock.now_ms(),
        }
    }

    /// A typed handle on an existing run (the type is not checked until
    /// the output is decoded).
    pub fn handle<O>(&self, id: ExecutionId) -> RunHandle<O> {
        RunHandle { engine: self.clone(), id, _output: PhantomData }
    }

    /// The read model of this engine's namespace: runs, schedules,
    /// workers, counts (see [`crate::runs`]).
    pub fn runs(&self) -> crate::runs::Runs {
        crate::runs::Runs::new(self.inner.store.clone(), self.inner.namespace.clone(), self.inner.clock.clone())
    }

    /// A run of this namespace.
    pub async fn get(&self, id: &ExecutionId) -> Result<Option<Execution>, Error> {
        self.runs().get(id).await
    }

    /// The recorded steps of a run, in call order.
    pub async fn steps(&self, id: &ExecutionId) -> Result<Vec<hydra_store::Step>, Error> {
        self.runs().steps(id).await
    }

    /// Runs of this namespace, newest first (`filter`'s namespace is replaced
    /// by the engine's).
    pub async fn list(&self, filter: ExecutionFilter) -> Result<Vec<Execution>, Error> {
        self.runs().list(filter).await
    }

    /// Cancels a run: one that never ran ends at once; one that has run is
    /// stopped by a worker at its next durable call (a parked one at once;
    /// its step bodies see [`crate::StepContext::cancelled`]), which runs its
    /// compensations ([`crate::WorkflowContext::compensate`]) and ends it
    /// `cancelled`. So a started run needs a worker of its workflow to end:
    /// see [`Engine::terminate`] for runs no worker can run.
    ///
    /// Either the cancel or the run's own end wins, never both: a cancel
    /// answered [`CancelOutcome::Requested`] ends the run `cancelled` even
    /// if its body returns before it hears of it (its end is written only
    /// if no cancel was accepted first), and a run whose end committed
    /// first answers [`CancelOutcome::AlreadyEnded`]. The worker holding
    /// the run hears the cancel at once: in this process directly, in
    /// another through the store's wake-ups (`LISTEN` on PostgreSQL, the
    /// file's commits on SQLite), at the latest at its next lease renewal.
    ///
    /// Its child runs that have not ended are cancelled with it, and
    /// theirs, except children started with
    /// [`ChildOptions::cancel_with_parent`](crate::ChildOptions) `false`
    /// (and their own children); detached starts are not children. A parent
    /// that already ended on its own leaves its children running.
    pub async fn cancel(&self, id: &ExecutionId) -> Result<CancelOutcome, Error> {
        let outcome = self.cancel_one(id).await?;
        // A parent that ended on its own leaves its children running; one
        // that ended cancelled (by an earlier cancel whose cascade a crash
        // may have cut short) passes the cancel on again.
        if !matches!(outcome, CancelOutcome::AlreadyEnded(s) if s != hydra_store::ExecutionStatus::Cancelled) {
            self.cancel_children(id).await?;
        }
        Ok(outcome)
    }

    /// Cancels the descendants of `id` that are cancelled with their
    /// parent and have not ended (each run once, even if stored parent
    /// links form a cycle). Also called by a worker when it ends a run
    /// cancelled, for children started while a cancel was on its way.
    pub(crate) async fn cancel_children(&self, id: &ExecutionId) -> Result<(), Error> {
        let mut seen = std::collections::HashSet::from([id.clone()]);
        let mut parents = vec![id.clone()];
        while let Some(parent) = parents.pop() {
            for child in self.inner.store.children(&self.inner.namespace, &parent).await? {
                if !child.cancel_with_parent || !seen.insert(child.id.clone()) {
                    continue;
                }
                if !child.status.is_terminal() {
                    match self.cancel_one(&child.id).await {
                        Ok(_) | Err(Error::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                parents.push(child.id);
            }
        }
        Ok(())
    }

    /// The runs that run `id` started as its children, oldest first.
    pub async fn children(&self, id: &ExecutionId) -> Result<Vec<Execution>, Error> {
        self.runs().children(id).await
    }

    /// Ends run `id` at once, `cancelled` ("terminated"), without running
    /// its compensations, if it is not running: for a run no worker can
    /// run any more (its workflow was retired or renamed). A running run is
    /// cancelled as by [`Engine::cancel`]. Its children are not touched.
    pub async fn terminate(&self, id: &ExecutionId) -> Result<CancelOutcome, Error> {
        self.end_one(id, true).await
    }

    async fn cancel_one(&self, id: &ExecutionId) -> Result<CancelOutcome, Error> {
        self.end_one(id, false).await
    }

    async fn end_one(&self, id: &ExecutionId, terminate: bool) -> Result<CancelOutcome, Error> {
        let now = self.inner.clock.now_ms();
        let store = &self.inner.store;
        let ended = if terminate {
            store.terminate(&self.inner.namespace, id, now).await
        } else {
            store.request_cancel(&self.inner.namespace, id, now).await
        };
        match ended {
            Ok(o) => {
                if o == CancelOutcome::Cancelled {
                    // Ended here, not by a worker: this is where it is counted.
                    if let Ok(Some(e)) = self.get(id).await {
                        let seconds = now.saturating_sub(e.created_at).max(0) as f64 / 1000.0;
                        crate::metrics::workflow_ended(&e.namespace, &e.workflow_name, "cancelled", seconds);
                    }
                }
                if o == CancelOutcome::Requested {
                    // A worker of this process that holds the run hears it
                    // now; others through the store's wake-ups.
                    let workers = self.inner.local_workers.lock().unwrap_or_else(|p| p.into_inner());
                    for w in workers.iter() {
                        w.hear_cancel(id);
                    }
                }
                self.inner.done.send_modify(|n| *n = n.wrapping_add(1));
                Ok(o)
            }
            Err(e) => Err(e.into()),
        }
    }
}
