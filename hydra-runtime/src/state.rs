//! Application state for steps: clients, pools and settings a worker is
//! given once ([`crate::WorkerBuilder::state`]) and its steps receive as a
//! [`State<T>`] parameter (`#[step] async fn charge(payments:
//! State<Payments>, …)`) or from [`crate::StepContext::state`]. State never
//! enters the history: steps record their outputs, not their arguments.
//!
//! A workflow's needs are known before it runs: `#[workflow]` collects the
//! `State<T>` parameters of every step it calls (through helpers too), and
//! a hand-written [`crate::Workflow`] lists its own
//! ([`crate::Workflow::required_state`]); a worker that lacks one refuses
//! to start, naming the type and the workflow.

use crate::error::StepError;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// A shared value of type `T` from the worker's state; dereferences to
/// `T`. Cloning it clones the `Arc`.
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// The shared value.
    pub fn arc(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> std::fmt::Debug for State<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "State<{}>", std::any::type_name::<T>())
    }
}

/// A state type a workflow needs: its name (for messages) and identity.
#[derive(Clone, Copy)]
pub struct StateNeed {
    type_name: fn() -> &'static str,
    type_id: fn() -> TypeId,
}

impl StateNeed {
    /// The need for a `T`.
    pub const fn of<T: Send + Sync + 'static>() -> Self {
        StateNeed { type_name: std::any::type_name::<T>, type_id: TypeId::of::<T> }
    }

    /// The type's name.
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    pub(crate) fn type_id(&self) -> TypeId {
        (self.type_id)()
    }
}

impl std::fmt::Debug for StateNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateNeed({})", self.type_name())
    }
}

impl PartialEq for StateNeed {
    fn eq(&self, other: &Self) -> bool {
        self.type_id() == other.type_id()
    }
}

/// A worker's state: one value per type.
#[derive(Clone, Default)]
pub(crate) struct StateMap {
    values: HashMap<TypeId, (&'static str, Arc<dyn Any + Send + Sync>)>,
}

impl std::fmt::Debug for StateMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values.values().map(|(name, _)| name)).finish()
    }
}

impl StateMap {
    /// Adds (or replaces) the value of type `T`.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(TypeId::of::<T>(), (std::any::type_name::<T>(), value));
    }

    pub(crate) fn contains(&self, need: &StateNeed) -> bool {
        self.values.contains_key(&need.type_id())
    }

    /// The value of type `T`, or a permanent step error naming the type.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Result<State<T>, StepError> {
        let missing = || {
            StepError::permanent(format!(
                "this worker has no state of type `{}`: give it with `Worker::builder(…).state(…)` (and list it \
                 in `Workflow::required_state` of a hand-written workflow, so a worker without it refuses to \
                 start)",
                std::any::type_name::<T>()
            ))
        };
        let (_, value) = self.values.get(&TypeId::of::<T>()).ok_or_else(missing)?;
        Arc::clone(value).downcast::<T>().map(State).map_err(|_| missing())
    }
}

/// A step parameter the `#[step]` macro fills from the step's context
/// instead of the caller's arguments. Not a stable API.
#[doc(hidden)]
pub trait StateParam: Sized {
    /// What it needs from the worker.
    const NEED: StateNeed;
    /// Takes it from the step's context.
    fn from_step(s: &crate::StepContext) -> Result<Self, StepError>;
}

impl<T: Send + Sync + 'static> StateParam for State<T> {
    const NEED: StateNeed = StateNeed::of::<T>();
    fn from_step(s: &crate::StepContext) -> Result<Self, StepError> {
        s.state::<T>()
    }
}

/// Adds the state needs of `tree` (a step's own, and those of everything a
/// helper calls) to `out`, once each.
pub(crate) fn collect(tree: &crate::workflow::CallTree, out: &mut Vec<StateNeed>) {
    for need in tree.states {
        if !out.contains(need) {
            out.push(*need);
        }
    }
    for call in tree.calls {
        collect(call, out);
    }
}

/// The state needs of the steps and helpers a `#[workflow]` calls. Not a
/// stable API.
#[doc(hidden)]
pub fn needs_of(trees: &[crate::workflow::CallTree]) -> Vec<StateNeed> {
    let mut out = Vec::new();
    for t in trees {
        collect(t, &mut out);
    }
    out
}
