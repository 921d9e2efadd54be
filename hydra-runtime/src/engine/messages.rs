//! Messages to and from runs: signals in ([`Engine::signal`]), awakeables
//! completed or rejected ([`Engine::complete`], [`Engine::reject`]), and
//! events out ([`Engine::event`], [`Engine::wait_event`]).

use super::Engine;
use crate::error::Error;
use hydra_store::{ExecutionId, SignalSent};
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
    /// signals ([`hydra_store::StoreError::RunEnded`]). The payload is
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
            Err(hydra_store::StoreError::ExecutionNotFound { execution, .. }) => Err(Error::NotFound(execution)),
            Err(e) => Err(e.into()),
        }
    }

    /// Completes the awakeable with `token` with `value` (see
    /// [`WorkflowContext::awakeable`](crate::WorkflowContext::awakeable)).
    /// A token settles once: a second completion or rejection is
    /// [`Error::AwakeableSettled`]; a malformed token is [`Error::Config`]; a
    /// token of a run not in this engine's namespace is [`Error::NotFound`].
    pub async fn complete<T: serde::Serialize + DeserializeOwned>(&self, token: &str, value: T) -> Result<(), Error> {
        self.settle_awakeable(token, &crate::context::Settled::Completed(value)).await
    }

    /// Rejects the awakeable with `token`: its wait fails with `reason` (a
    /// permanent step error). As [`Engine::complete`] otherwise.
    pub async fn reject(&self, token: &str, reason: &str) -> Result<(), Error> {
        self.settle_awakeable(token, &crate::context::Settled::<()>::Rejected(reason.to_owned())).await
    }

    async fn settle_awakeable<T: serde::Serialize + DeserializeOwned>(
        &self,
        token: &str,
        settled: &crate::context::Settled<T>,
    ) -> Result<(), Error> {
        let Some((id, name)) = crate::context::parse_token(token) else {
            return Err(Error::Config(format!("`{token}` is not an awakeable token")));
        };
        match self.send_signal(&id, &name, settled, SignalOptions::new().idempotency_key(&name)).await? {
            SignalSent::Accepted { .. } => Ok(()),
            SignalSent::Duplicate => Err(Error::AwakeableSettled(token.to_owned())),
            _ => Err(Error::AwakeableSettled(token.to_owned())),
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
