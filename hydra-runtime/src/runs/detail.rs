//! A run's whole story as an operator reads it ([`RunDetail`]): a page of
//! each of its tables, every one counted whole, payloads over a size left
//! unread ([`ShowLimits`]).

use crate::error::Error;
use hydra_store::{EventRow, Execution, ExecutionId, ShowLimits, Shown, SignalRow, Step, Store};

/// One run as an operator reads it: the run, a page of its steps (from
/// [`ShowLimits::steps_from`]), its children, the signals sent to it and
/// the events it published, at most [`ShowLimits::rows`] of each with
/// how many there are, and its search attributes. Payloads stored larger
/// than [`ShowLimits::payload_bytes`] are not read ([`Shown::left_out`]
/// gives their size); children are read without their payloads. The run's
/// own input and output are read whole.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunDetail {
    /// The run.
    pub execution: Execution,
    /// Its recorded steps, in call order, from the page's first position;
    /// once the run has ended, a step or wait still open reads as failed,
    /// with the reason ([`Step::closed_by`]).
    pub steps: Vec<Shown<Step>>,
    /// How many steps it recorded.
    pub steps_total: u64,
    /// The runs it started as children, oldest first (without payloads).
    pub children: Vec<Execution>,
    /// How many children it started.
    pub children_total: u64,
    /// The signals sent to it, in the order they were accepted.
    pub signals: Vec<Shown<SignalRow>>,
    /// How many signals were sent to it.
    pub signals_total: u64,
    /// The events it published, by key.
    pub events: Vec<Shown<EventRow>>,
    /// How many events it published.
    pub events_total: u64,
    /// Its search attributes, by name.
    pub search_attributes: Vec<(String, String)>,
    /// What was read.
    pub limits: ShowLimits,
}

pub(super) async fn read(store: &Store, ns: &str, id: &ExecutionId, limits: ShowLimits) -> Result<RunDetail, Error> {
    let execution = store.get_execution(ns, id).await?.ok_or_else(|| Error::NotFound(id.clone()))?;
    let steps = store.steps_shown(ns, id, limits).await?;
    let children = store.children_shown(ns, id, limits).await?;
    let signals = store.signals_shown(ns, id, limits).await?;
    let events = store.events_shown(ns, id, limits).await?;
    let (status, ended) = (execution.status, execution.completed_at);
    Ok(RunDetail {
        steps: steps.rows.into_iter().map(|s| s.map(|s| s.closed_by(status, ended))).collect(),
        steps_total: steps.total,
        children: children.rows,
        children_total: children.total,
        signals: signals.rows,
        signals_total: signals.total,
        events: events.rows,
        events_total: events.total,
        search_attributes: store.search_attributes(ns, id).await?,
        limits,
        execution,
    })
}
