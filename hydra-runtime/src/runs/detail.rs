//! A run's whole story ([`RunDetail`]).

use crate::error::Error;
use hydra_store::{EventRow, Execution, ExecutionId, SignalRow, Step, Store};

/// Everything stored about one run: the run, its steps in order, its
/// children, the signals sent to it, the events it published and its
/// search attributes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunDetail {
    /// The run.
    pub execution: Execution,
    /// Its recorded steps, in call order; once the run has ended, a step
    /// or wait still open reads as failed, with the reason
    /// ([`Step::closed_by`]).
    pub steps: Vec<Step>,
    /// The runs it started as children.
    pub children: Vec<Execution>,
    /// The signals sent to it, in the order they were accepted.
    pub signals: Vec<SignalRow>,
    /// The events it published.
    pub events: Vec<EventRow>,
    /// Its search attributes, by name.
    pub search_attributes: Vec<(String, String)>,
}

pub(super) async fn read(store: &Store, ns: &str, id: &ExecutionId) -> Result<RunDetail, Error> {
    let execution = store.get_execution(ns, id).await?.ok_or_else(|| Error::NotFound(id.clone()))?;
    let steps = store.steps(ns, id).await?;
    Ok(RunDetail {
        steps: steps.into_iter().map(|s| s.closed_by(execution.status, execution.completed_at)).collect(),
        children: store.children(ns, id).await?,
        signals: store.signals_of(ns, id).await?,
        events: store.events_of(ns, id).await?,
        search_attributes: store.search_attributes(ns, id).await?,
        execution,
    })
}
