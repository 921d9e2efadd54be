//! Messages to and from runs: signals in ([`Engine::signal`]), awakeables
//! completed or rejected ([`Engine::complete`], [`Engine::reject`]), and
//! events out ([`Engine::event`], [`Engine::wait_event`]).

use super::Engine;
use crate::error::Error;
use hydra_store::{ExecutionId, ExecutionStatus, SignalSent};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Signal names a sender may not use: a child's end (`child:{id}`) and an
/// awakeable's settlement (`awakeable:{secret}`) are sent by Hydra only.
const RESERVED_SIGNAL_PREFIXES: &[&str] = hydra_store::reserved::signal::SENDER_FORBIDDEN;

/// Options of [`Engine::signal_with`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SignalOptions {
    /// A key that makes a retried send of the same signal to the same run a
    /// no-op.
    pub idempotency_key: Option<String>,
}

impl SignalOptions {
    /// No idempotency key.
    pub fn new() -> Self {
        SignalOptions::default()
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl Engine {
    /// Sends signal `name` with `value` to run `id` (see
    /// [`WorkflowContext::recv`](crate::WorkflowContext::recv)). Buffered
    /// until the run receives it; wakes the run if it waits for a signal. An
    /// unknown run is [`Error::NotFound`]; a run that has ended refuses
    /// signals ([`Error::RunEnded`]). The payload is
    /// encoded with the engine's codec, checked to read back, and
    /// size-checked like inputs.
    pub async fn signal<T: serde::Serialize + DeserializeOwned>(
        &self,
        id: &ExecutionId,
        name: &str,
        value: &T,
    ) -> Result<SignalSent, Error> {
        self.signal_with(id, name, value, SignalOptions::default()).await
    }

    /// [`Engine::signal`] with options: an idempotency key makes a retried
    /// send a no-op ([`SignalSent::Duplicate`]). Names and idempotency keys
    /// beginning `child:` or `awakeable:` are Hydra's own (a child's end, an
    /// awakeable's settlement) and are refused ([`Error::Config`]).
    pub async fn signal_with<T: serde::Serialize + DeserializeOwned>(
        &self,
        id: &ExecutionId,
        name: &str,
        value: &T,
        options: SignalOptions,
    ) -> Result<SignalSent, Error> {
        if let Some(prefix) = RESERVED_SIGNAL_PREFIXES.iter().find(|p| name.starts_with(**p)) {
            return Err(Error::Config(format!(
                "signal name `{name}`: names beginning `{prefix}` are reserved for Hydra's own signals"
            )));
        }
        // Hydra's own signals are keyed by their names: a sender's key of
        // that form would take the slot and silence them.
        if let Some(key) = &options.idempotency_key
            && let Some(prefix) = RESERVED_SIGNAL_PREFIXES.iter().find(|p| key.starts_with(**p))
        {
            return Err(Error::Config(format!(
                "idempotency key `{key}`: keys beginning `{prefix}` are reserved for Hydra's own signals"
            )));
        }
        self.send_signal(id, name, value, options).await
    }

    async fn send_signal<T: serde::Serialize + DeserializeOwned>(
        &self,
        id: &ExecutionId,
        name: &str,
        value: &T,
        options: SignalOptions,
    ) -> Result<SignalSent, Error> {
        crate::context::validate_signal_name(name).map_err(Error::Config)?;
        if let Some(key) = &options.idempotency_key {
            crate::new_run::fits("a signal's idempotency key", key)?;
        }
        let payload = self
            .inner
            .codecs
            .encode_checked(self.inner.codec, value)
            .map_err(|reason| Error::Encode { what: format!("signal `{name}`"), reason })?;
        if payload.len() > self.inner.max_payload_bytes {
            return Err(Error::TooLarge {
                what: format!("signal `{name}`"),
                size: payload.len(),
                limit: self.inner.max_payload_bytes,
            });
        }
        let mut s = hydra_store::NewSignal::new(
            self.inner.namespace.clone(),
            id.clone(),
            name,
            payload,
            self.inner.clock.now_ms(),
        );
        s.idempotency_key = options.idempotency_key;
        match self.inner.store.send_signal(&s).await {
            Ok(sent) => {
                if let SignalSent::Accepted { workflow_name } = &sent {
                    crate::metrics::signal_sent(&self.inner.namespace, workflow_name);
                    // A worker of this process claims the woken run at once.
                    self.inner.work.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(sent)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Completes the awakeable with `token` with `value` (see
    /// [`WorkflowContext::awakeable`](crate::WorkflowContext::awakeable)).
    /// Only a token its run drew completes anything: one it never issued
    /// (forged, altered, upper-cased) is [`Error::UnknownAwakeable`] and
    /// leaves nothing on the run. A token settles once: a second completion
    /// or rejection is [`Error::AwakeableSettled`]; one whose run ended is
    /// [`Error::RunEnded`]; a malformed token is [`Error::Config`]; a token
    /// of a run not in this engine's namespace is [`Error::NotFound`]. See
    /// [`Engine::awakeable_state`] to check a token first.
    pub async fn complete<T: serde::Serialize + DeserializeOwned>(&self, token: &str, value: T) -> Result<(), Error> {
        self.settle_awakeable(token, &crate::context::Settled::Completed(value)).await
    }

    /// Rejects the awakeable with `token`: its wait fails with `reason` (a
    /// permanent step error). As [`Engine::complete`] otherwise.
    pub async fn reject(&self, token: &str, reason: &str) -> Result<(), Error> {
        self.settle_awakeable(token, &crate::context::Settled::<()>::Rejected(reason.to_owned())).await
    }

    /// Whether the awakeable with `token` can still be settled: for a
    /// webhook receiver to check a token before acting on it. A token its
    /// run never drew is [`Error::UnknownAwakeable`], a malformed one
    /// [`Error::Config`], one of a run not in this engine's namespace
    /// [`Error::NotFound`].
    pub async fn awakeable_state(&self, token: &str) -> Result<AwakeableState, Error> {
        self.awakeable_of(token).await.map(|(state, _, _)| state)
    }

    /// The state of the awakeable with `token`, its run and its signal name.
    async fn awakeable_of(&self, token: &str) -> Result<(AwakeableState, ExecutionId, String), Error> {
        let Some((id, name)) = crate::context::parse_token(token) else {
            return Err(Error::Config(format!(
                "`{token}` is not an awakeable token (a run ID, a dot, 32 lowercase hex digits)"
            )));
        };
        let Some(draws) = self.inner.store.awakeable_draws(&self.inner.namespace, &id, &name).await? else {
            return Err(Error::NotFound(id));
        };
        // Tokens are recorded as the draw step's output (in JSON; by runs
        // of earlier versions, in the run's codec): decoded one by one.
        let mut unreadable = None;
        let mut drawn = false;
        for bytes in &draws.tokens {
            match self.inner.codecs.decode::<String>(bytes) {
                Ok(t) if t == token => drawn = true,
                Ok(_) => {}
                Err(reason) => unreadable = Some(reason),
            }
        }
        if !drawn {
            if let Some(reason) = unreadable {
                return Err(Error::Config(format!(
                    "cannot check awakeable `{token}`: a token its run drew is in a codec this engine does not \
                     read ({reason}); register the run's codec on this engine"
                )));
            }
            return Err(Error::UnknownAwakeable(token.to_owned()));
        }
        let state = if draws.settled {
            AwakeableState::Settled
        } else if draws.status.is_terminal() {
            AwakeableState::RunEnded(draws.status)
        } else {
            AwakeableState::Open
        };
        Ok((state, id, name))
    }

    async fn settle_awakeable<T: serde::Serialize + DeserializeOwned>(
        &self,
        token: &str,
        settled: &crate::context::Settled<T>,
    ) -> Result<(), Error> {
        let (state, id, name) = self.awakeable_of(token).await?;
        match state {
            AwakeableState::Open => {}
            AwakeableState::Settled => return Err(Error::AwakeableSettled(token.to_owned())),
            AwakeableState::RunEnded(status) => {
                return Err(Error::RunEnded {
                    execution: id,
                    status,
                    message: "its run ended before the awakeable was settled".into(),
                });
            }
        }
        // Settled or ended meanwhile: the send itself refuses both.
        match self.send_signal(&id, &name, settled, SignalOptions::new().idempotency_key(&name)).await {
            Ok(SignalSent::Accepted { .. }) => Ok(()),
            Ok(_) => Err(Error::AwakeableSettled(token.to_owned())),
            Err(Error::RunEnded { execution, status, .. }) => Err(Error::RunEnded {
                execution,
                status,
                message: "its run ended before the awakeable was settled".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The current value of event `key` of run `id`
    /// ([`WorkflowContext::set_event`](crate::WorkflowContext::set_event)),
    /// or `None` if it was not set yet. An unknown run is
    /// [`Error::NotFound`].
    pub async fn event<T: DeserializeOwned>(&self, id: &ExecutionId, key: &str) -> Result<Option<T>, Error> {
        let Some(stored) = self.inner.store.event(&self.inner.namespace, id, key).await? else {
            return match self.get(id).await? {
                Some(_) => Ok(None),
                None => Err(Error::NotFound(id.clone())),
            };
        };
        self.inner.codecs.decode(&stored.value).map(Some).map_err(|reason| Error::Decode {
            execution: id.clone(),
            what: format!("event `{key}`"),
            reason,
        })
    }

    /// [`Engine::event`], waiting up to `timeout` for the event to be set
    /// (looked at every 100 ms); `None` if it was not set in time.
    pub async fn wait_event<T: DeserializeOwned>(
        &self,
        id: &ExecutionId,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<T>, Error> {
        let give_up = crate::clock::instant_after(timeout);
        loop {
            if let Some(v) = self.event(id, key).await? {
                return Ok(Some(v));
            }
            if tokio::time::Instant::now() >= give_up {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100).min(give_up - tokio::time::Instant::now())).await;
        }
    }
}

/// Whether an awakeable can still be settled ([`Engine::awakeable_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AwakeableState {
    /// Its run drew it and it was not settled: a completion or rejection
    /// will be taken.
    Open,
    /// It was completed or rejected already.
    Settled,
    /// Its run ended (with this status) before it was settled.
    RunEnded(ExecutionStatus),
}
