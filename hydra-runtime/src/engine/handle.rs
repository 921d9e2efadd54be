//! [`RunHandle`]: a typed handle on one run, to wait for its result.

use super::Engine;
use crate::codec::CodecRegistry;
use crate::error::Error;
use hydra_store::{CancelOutcome, Execution, ExecutionId, ExecutionStatus};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::time::Duration;

/// A typed handle on one run.
#[derive(Debug)]
pub struct RunHandle<O> {
    pub(super) engine: Engine,
    pub(super) id: ExecutionId,
    pub(super) _output: PhantomData<fn() -> O>,
}

impl<O> Clone for RunHandle<O> {
    fn clone(&self) -> Self {
        RunHandle { engine: self.engine.clone(), id: self.id.clone(), _output: PhantomData }
    }
}

impl<O: DeserializeOwned> RunHandle<O> {
    /// The run's ID.
    pub fn id(&self) -> &ExecutionId {
        &self.id
    }

    /// The run as stored now.
    pub async fn execution(&self) -> Result<Execution, Error> {
        self.engine.get(&self.id).await?.ok_or_else(|| Error::NotFound(self.id.clone()))
    }

    /// Where the run is now.
    pub async fn status(&self) -> Result<ExecutionStatus, Error> {
        Ok(self.execution().await?.status)
    }

    /// Cancels the run. See [`Engine::cancel`].
    pub async fn cancel(&self) -> Result<CancelOutcome, Error> {
        self.engine.cancel(&self.id).await
    }

    /// Waits until the run ends and returns its output, or
    /// [`Error::RunEnded`] if it failed, was cancelled or timed out. A run
    /// ended by a worker of this process is seen at once; on PostgreSQL so
    /// is one ended by any process (`LISTEN hydra_ended`); on SQLite a run
    /// ended by another process is seen within 250 ms (the next poll).
    /// Waits for as long as the run takes: see [`RunHandle::result_timeout`]
    /// for a bounded wait.
    pub async fn result(&self) -> Result<O, Error> {
        let e = self.ended().await?;
        decode_result(self.engine.codecs(), &e)
    }

    /// [`RunHandle::result`] with the workflow's typed error: a run that
    /// failed with one ([`crate::StepError::typed`],
    /// [`crate::WorkflowError::typed`]) is [`RunFailed::Workflow`] with the
    /// value; any other end without an output is [`RunFailed::Other`] (a
    /// stored error that does not decode as `E` is
    /// [`Error::Decode`] there, naming it).
    pub async fn result_typed<E: DeserializeOwned>(&self) -> Result<O, RunFailed<E>> {
        let e = self.ended().await.map_err(RunFailed::Other)?;
        decode_typed(self.engine.codecs(), &e)
    }

    /// [`RunHandle::result_typed`], giving up after `timeout`.
    pub async fn result_typed_timeout<E: DeserializeOwned>(&self, timeout: Duration) -> Result<O, RunFailed<E>> {
        match tokio::time::timeout(timeout, self.result_typed()).await {
            Ok(r) => r,
            Err(_) => Err(RunFailed::Other(Error::WaitTimedOut { execution: self.id.clone(), waited: timeout })),
        }
    }

    /// Waits until the run ends; returns it as stored then.
    async fn ended(&self) -> Result<Execution, Error> {
        let mut done = self.engine.inner.done.subscribe();
        // One shared connection per store, not one per waiter.
        // Only wake-ups that name the run that ended are worth following
        // (a SQLite file's say only that something was committed).
        let wake_ups = if self.engine.inner.store.wake_ups_name_runs() {
            self.engine.inner.store.wake_ups().await
        } else {
            Ok(None)
        };
        let mut ended = match wake_ups {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for ended runs; polling");
                None
            }
        };
        loop {
            let e = self.execution().await?;
            if e.status.is_terminal() {
                return Ok(e);
            }
            match ended.as_mut() {
                Some(listener) => {
                    // A slow safety poll: a lost connection is reported
                    // (and looked at), so this only covers the unforeseen.
                    let poll = tokio::time::sleep(Duration::from_secs(60));
                    tokio::pin!(poll);
                    loop {
                        tokio::select! {
                            _ = done.changed() => break,
                            _ = &mut poll => break,
                            n = listener.next() => match n {
                                Ok(hydra_store::WakeUp::Ended(id)) if id == self.id.as_str() => break,
                                Ok(_) => {}
                                // Notifications may have been missed: look.
                                Err(_) => break,
                            },
                        }
                    }
                }
                None => {
                    tokio::select! {
                        _ = done.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            }
        }
    }

    /// [`RunHandle::result`], giving up after `timeout` with
    /// [`Error::WaitTimedOut`] (the run itself goes on).
    pub async fn result_timeout(&self, timeout: Duration) -> Result<O, Error> {
        match tokio::time::timeout(timeout, self.result()).await {
            Ok(r) => r,
            Err(_) => Err(Error::WaitTimedOut { execution: self.id.clone(), waited: timeout }),
        }
    }
}

/// How a run ended without an output, as its workflow's typed error `E`
/// or otherwise ([`RunHandle::result_typed`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum RunFailed<E> {
    /// The workflow failed with this typed error.
    Workflow(E),
    /// Any other end: a failure without a typed error, a cancel, a timeout,
    /// a typed error that does not decode as `E`, an engine error.
    Other(Error),
}

impl<E: std::fmt::Debug> std::fmt::Display for RunFailed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailed::Workflow(e) => write!(f, "the workflow failed: {e:?}"),
            RunFailed::Other(e) => write!(f, "{e}"),
        }
    }
}

impl<E: std::fmt::Debug> std::error::Error for RunFailed<E> {}

/// The output of an ended run, or its typed error, or why there is neither.
pub(crate) fn decode_typed<O: DeserializeOwned, E: DeserializeOwned>(
    codecs: &CodecRegistry,
    e: &Execution,
) -> Result<O, RunFailed<E>> {
    match (&e.status, &e.error_data) {
        (ExecutionStatus::Failed, Some(bytes)) => match codecs.decode::<E>(bytes) {
            Ok(v) => Err(RunFailed::Workflow(v)),
            Err(reason) => Err(RunFailed::Other(Error::Decode {
                execution: e.id.clone(),
                what: format!("its typed error as `{}`", std::any::type_name::<E>()),
                reason,
            })),
        },
        _ => decode_result(codecs, e).map_err(RunFailed::Other),
    }
}

/// The output of an ended run, or why there is none.
pub(crate) fn decode_result<O: DeserializeOwned>(codecs: &CodecRegistry, e: &Execution) -> Result<O, Error> {
    match e.status {
        ExecutionStatus::Completed => {
            let bytes = e.output.as_deref().unwrap_or_default();
            codecs.decode(bytes).map_err(|reason| Error::Decode {
                execution: e.id.clone(),
                what: "the output".into(),
                reason,
            })
        }
        status => Err(Error::RunEnded {
            execution: e.id.clone(),
            status,
            message: e.error.clone().unwrap_or_else(|| status.to_string()),
        }),
    }
}
