//! Starting runs: one at a time (`start`, `start_with`, `start_encoded`),
//! claimed by the start itself when a worker of this engine has a free slot
//! (`worker/direct.rs`), or many in one commit (`start_many`).

use super::{Engine, RunHandle, StartOptions};
use crate::error::Error;
use crate::new_run::{self, NewRun, Origin};
use crate::workflow::{Workflow, WorkflowOptions};
use hydra_store::{BatchOp, BatchValue, Created, Execution, NewExecution, StoreError};

/// The most runs [`Engine::start_many`] writes in one commit.
const START_MANY_BATCH: usize = 256;
/// The input bytes after which [`Engine::start_many`] commits what it
/// gathered (a commit holds SQLite's write lock while it is written).
const START_MANY_BYTES: usize = 16 * 1024 * 1024;

impl Engine {
    /// Starts a run of `W` with `input`.
    pub async fn start<W: Workflow>(&self, input: W::Input) -> Result<RunHandle<W::Output>, Error> {
        self.start_with::<W>(input, StartOptions::default()).await
    }

    /// Starts a run of `W` with `input` and `options`.
    pub async fn start_with<W: Workflow>(
        &self,
        input: W::Input,
        options: StartOptions,
    ) -> Result<RunHandle<W::Output>, Error> {
        let new = self.new_run::<W>(&input, options)?;
        let execution = self.create(new).await?;
        Ok(self.handle(execution.id))
    }

    /// A run of `W` to create (see `new_run.rs`): `input` encoded with the
    /// workflow's codec (checked to decode back), `W`'s version unless
    /// `options` name one, every check of a new run.
    fn new_run<W: Workflow>(&self, input: &W::Input, options: StartOptions) -> Result<NewExecution, Error> {
        let defaults = W::options();
        let bytes = new_run::encode_input::<W>(&self.inner.codecs, self.inner.codec, input, || {
            format!("the input of `{}`", W::NAME)
        })?;
        NewRun {
            name: W::NAME,
            input: bytes,
            input_stored: false,
            version: Some(W::VERSION),
            defaults: &defaults,
            options,
            origin: Origin::Start,
        }
        .build(self.rules())
    }

    /// Starts a run of the workflow registered as `name` with an already
    /// encoded input (as produced by
    /// [`CodecRegistry::encode`](crate::CodecRegistry::encode) or
    /// [`Codec::encode`](crate::Codec::encode)). The bytes are stored as
    /// they are: a worker that cannot decode them fails the run with an
    /// error naming it. The run carries the version of the workflow's code
    /// if a worker of this engine registers it (unless `options` name one).
    pub async fn start_encoded(
        &self,
        name: &str,
        input: Vec<u8>,
        defaults: WorkflowOptions,
        options: StartOptions,
    ) -> Result<Execution, Error> {
        let version = self.known(name).map(|k| k.version);
        let new =
            NewRun { name, input, input_stored: false, version, defaults: &defaults, options, origin: Origin::Start }
                .build(self.rules())?;
        self.create(new).await
    }

    /// Creates one checked run in a commit of its own, claimed by its
    /// start when a worker of this engine can take it.
    pub(crate) async fn create(&self, new: NewExecution) -> Result<Execution, Error> {
        // A commit of its own, not the group committer's: measured with
        // runs started one at a time (`bench`, SQLite, K = 1 and 10), a
        // start that waits for the batch in flight and then rides the next
        // one is slower (0.7-0.9x) than one that takes the write lock
        // between batches. `BatchOp::Create` remains for callers that
        // start many runs at once.
        //
        // Due now and a worker of this engine has a free slot for it: the
        // insert claims it for that worker (see `worker/direct.rs`).
        let reserved =
            if new.due_at == new.now { self.reserve_slot(&new.workflow_name, new.workflow_version) } else { None };
        if let Some(r) = reserved {
            return Ok(r.create(self, new).await?.into_execution());
        }
        let created = self.inner.store.create_execution(new).await?;
        if let hydra_store::Created::New(e) = &created {
            new_run::started(e, false);
            self.inner.work.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(created.into_execution())
    }

    /// A free slot of one of this engine's workers for a new run of `name`.
    fn reserve_slot(&self, name: &str, version: Option<u32>) -> Option<Box<dyn super::Reservation>> {
        let takers = self.inner.local_workers.lock().unwrap_or_else(|p| p.into_inner());
        takers.iter().find_map(|t| t.reserve(name, version))
    }

    /// Starts many runs of `W`, each with its own input and options, in as
    /// few commits as possible (256 runs or 16 MiB of inputs per commit)
    /// instead of one each: for a batch of work at once (an import, a
    /// fan-out from a webhook). Returns one answer per item, in order. Each
    /// item is checked on its own (encoding, size, idempotency key, search
    /// attributes) before the commit of its chunk, and a bad one fails
    /// alone. A run whose idempotency key was taken (before, or by an
    /// earlier item of the same call) answers the run that holds it, as
    /// [`Engine::start_with`] does. The runs are queued for this engine's
    /// workers (and any other process's), never claimed by the start; their
    /// times (creation, due, deadline) are taken as each item is checked.
    ///
    /// A chunk whose commit fails answers each of its items with that
    /// error (transient, as a rule: retry those items, with idempotency
    /// keys if a lost connection may have let the commit through); the
    /// other chunks go on. A caller that stops waiting part-way leaves the
    /// chunks already committed.
    pub async fn start_many<W: Workflow>(
        &self,
        items: impl IntoIterator<Item = (W::Input, StartOptions)>,
    ) -> Vec<Result<RunHandle<W::Output>, Error>> {
        let mut out: Vec<Result<RunHandle<W::Output>, Error>> = Vec::new();
        // The checked runs of the chunk being gathered, with their answers'
        // slots, and the size of their inputs.
        let mut chunk: Vec<(usize, NewExecution)> = Vec::new();
        let mut bytes = 0usize;
        for (input, options) in items {
            let checked = self.new_run::<W>(&input, options);
            match checked {
                Ok(new) => {
                    bytes = bytes.saturating_add(new.input.len());
                    chunk.push((out.len(), new));
                    // Replaced by its answer when its chunk is written.
                    out.push(Err(Error::Config("not started: its chunk was never written".into())));
                }
                Err(e) => out.push(Err(e)),
            }
            if chunk.len() == START_MANY_BATCH || bytes >= START_MANY_BYTES {
                self.create_many(std::mem::take(&mut chunk), &mut out).await;
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            self.create_many(chunk, &mut out).await;
        }
        out
    }

    /// One commit of [`Engine::start_many`]: creates `chunk` and puts the
    /// answers at their indexes in `out`.
    async fn create_many<O>(&self, chunk: Vec<(usize, NewExecution)>, out: &mut [Result<RunHandle<O>, Error>]) {
        let (slots, ops): (Vec<usize>, Vec<BatchOp>) =
            chunk.into_iter().map(|(i, new)| (i, BatchOp::Create(Box::new(new)))).unzip();
        let results = match self.inner.store.apply_batch(&ops, self.inner.clock.now_ms()).await {
            Ok(r) if r.len() == slots.len() => r,
            Ok(r) => {
                let e = StoreError::Transient(format!("{} answers for {} starts", r.len(), slots.len()));
                slots.iter().map(|_| Err(StoreError::Transient(e.to_string()))).collect()
            }
            Err(e) => {
                let text = e.to_string();
                let transient = e.is_retryable();
                slots
                    .iter()
                    .map(|_| {
                        Err(if transient {
                            StoreError::Transient(text.clone())
                        } else {
                            StoreError::Database(hydra_store::sea_orm::DbErr::Custom(text.clone()))
                        })
                    })
                    .collect()
            }
        };
        let mut queued = false;
        for (i, r) in slots.into_iter().zip(results) {
            out[i] = match r {
                Ok(BatchValue::Created(created)) => {
                    if let Created::New(e) = created.as_ref() {
                        new_run::started(e, false);
                        queued = true;
                    }
                    Ok(self.handle(created.execution().id.clone()))
                }
                Ok(other) => Err(crate::commit::unexpected(other).into()),
                Err(e) => Err(e.into()),
            };
        }
        if queued {
            self.inner.work.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
