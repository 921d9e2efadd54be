//! Awakeables: completion tokens for the outside world (a webhook, a task
//! queue, a person). The workflow creates a durable, unguessable token,
//! hands it to a step that calls an external system, and waits; the system
//! later completes it with a value or rejects it with a reason
//! ([`crate::Engine::complete`], [`crate::Engine::reject`]). A token is
//! single-use and belongs to its run's namespace; only a token the run drew
//! completes anything (a forged one is [`crate::Error::UnknownAwakeable`]),
//! and [`crate::Engine::awakeable_state`] tells a receiver whether a token
//! is open before it acts on it. Underneath, the
//! completion is a signal of the run with the token's secret as name and
//! idempotency key, so it is delivered exactly once and survives crashes.

use super::WorkflowContext;
use crate::error::StepError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::time::Duration;

/// The step that draws a token (recorded, so a replay returns the same one).
const AWAKEABLE_STEP: &str = hydra_store::reserved::step::AWAKEABLE;

/// A completion token a run waits on; see the module documentation.
#[derive(Debug)]
pub struct Awakeable<T> {
    token: String,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Awakeable<T> {
    fn clone(&self) -> Self {
        Awakeable { token: self.token.clone(), _value: PhantomData }
    }
}

impl<T> Awakeable<T> {
    /// The token to hand to the system that will complete it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The name that stands for this awakeable among the names given to
    /// [`WorkflowContext::select`]; take its value with
    /// [`crate::Selected::awakeable`]. Empty for a token that is not
    /// well-formed (a select on it fails the run).
    pub fn select_name(&self) -> String {
        parse_token(&self.token).map(|(_, name)| name).unwrap_or_default()
    }
}

/// An awakeable's settlement as its value, or the rejection as a
/// permanent error.
pub(crate) fn settled_value<T>(settled: Settled<T>) -> Result<T, StepError> {
    match settled {
        Settled::Completed(v) => Ok(v),
        Settled::Rejected(reason) => Err(StepError::permanent(format!("awakeable rejected: {reason}"))),
    }
}

/// What a completion carries (the payload of the awakeable's signal).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Settled<T> {
    Completed(T),
    Rejected(String),
}

/// Splits a token into its run and the signal name it completes. A token
/// has one form: `{run ID}.{32 lowercase hex digits}`; anything else (an
/// upper-cased secret included) is not a token.
pub(crate) fn parse_token(token: &str) -> Option<(hydra_store::ExecutionId, String)> {
    let (execution, secret) = token.rsplit_once('.')?;
    let valid = secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (valid && !execution.is_empty() && execution.len() <= 64)
        .then(|| (hydra_store::ExecutionId::from_string(execution), signal_name(secret)))
}

fn signal_name(secret: &str) -> String {
    hydra_store::reserved::signal::awakeable(secret)
}

impl WorkflowContext {
    /// Creates a durable completion token for a value of type `T`: hand
    /// [`Awakeable::token`] to an external system, then wait with
    /// [`WorkflowContext::await_awakeable`].
    pub async fn awakeable<T: DeserializeOwned>(&self) -> Result<Awakeable<T>, StepError> {
        let execution = self.execution_id().to_string();
        // Recorded in JSON whatever the run's codec: an engine that checks
        // a completion's token (a webhook service) needs no codec of the
        // run's.
        let mut options = super::StepOptions::new(AWAKEABLE_STEP);
        options.codec = Some(crate::codec::Codec::Json);
        let token: String = self
            .own_step_with(options, move |_s| {
                let execution = execution.clone();
                async move { Ok::<_, StepError>(format!("{execution}.{}", uuid::Uuid::new_v4().simple())) }
            })
            .await?;
        Ok(Awakeable { token, _value: PhantomData })
    }

    /// Waits until `awakeable` is completed (its value) or rejected (a
    /// permanent error with the reason). The run is parked meanwhile.
    pub async fn await_awakeable<T: DeserializeOwned>(&self, awakeable: &Awakeable<T>) -> Result<T, StepError> {
        let name = self.awakeable_signal(awakeable).await;
        settled_value(self.recv::<Settled<T>>(&name).await?)
    }

    /// [`WorkflowContext::await_awakeable`] for at most `timeout`; `None`
    /// if it was not settled in time (a later completion is kept for a
    /// later wait on the same awakeable).
    pub async fn await_awakeable_timeout<T: DeserializeOwned>(
        &self,
        awakeable: &Awakeable<T>,
        timeout: Duration,
    ) -> Result<Option<T>, StepError> {
        let name = self.awakeable_signal(awakeable).await;
        self.recv_timeout::<Settled<T>>(&name, timeout).await?.map(settled_value).transpose()
    }

    async fn awakeable_signal<T>(&self, awakeable: &Awakeable<T>) -> String {
        match parse_token(&awakeable.token) {
            Some((execution, name)) if &execution == self.execution_id() => name,
            _ => match self.run.fail_run(format!("awakeable `{}` is not one of this run's", awakeable.token)).await {},
        }
    }
}
