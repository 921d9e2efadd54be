//! A scripted workflow for runtime tests: its input is a plan of steps, each
//! with a behaviour, and every body execution is counted outside the engine.

use hydra_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// What one step of a [`Plan`] does.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Act {
    /// Succeed with the step ID as output.
    Ok,
    /// Fail (retryably) on the first `n` attempts, then succeed.
    FailTimes(u32),
    /// Always fail retryably.
    AlwaysFail,
    /// Fail permanently.
    Permanent,
    /// Panic.
    Panic,
    /// Succeed with a value that cannot be encoded.
    Unencodable,
    /// Wait for gate `name` to open, then succeed with the worker tag.
    Gate(String),
    /// Wait until the step is cancelled, then fail.
    WaitForCancel,
    /// Sleep this long (real time) inside the body.
    Busy(u64),
    /// A durable sleep of this many ms instead of a step.
    Sleep(u64),
    /// Call step `a` if the switch is off, `b` if it is on.
    Switch(String, String),
    /// Fail the whole workflow attempt (retryably) if it is attempt 1.
    FailWorkflowOnFirstAttempt,
    /// Panic in workflow code (outside any step).
    WorkflowPanic,
}

/// One step of a plan.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepPlan {
    /// The step ID.
    pub id: String,
    /// What it does.
    pub act: Act,
    /// Its attempts.
    pub attempts: u32,
    /// Its first backoff, ms.
    pub backoff_ms: u64,
    /// Its per-attempt timeout, ms.
    pub timeout_ms: Option<u64>,
}

impl StepPlan {
    /// A step with 3 attempts and a 1 ms backoff.
    pub fn new(id: &str, act: Act) -> Self {
        StepPlan { id: id.into(), act, attempts: 3, backoff_ms: 1, timeout_ms: None }
    }
    /// Sets the attempts.
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n;
        self
    }
    /// Sets the first backoff.
    pub fn backoff_ms(mut self, ms: u64) -> Self {
        self.backoff_ms = ms;
        self
    }
    /// Sets the timeout.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }
}

/// The workflow input.
pub type Plan = Vec<StepPlan>;

/// A value whose serialization always fails.
#[derive(Debug, Deserialize)]
pub struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be encoded"))
    }
}

/// Records, when dropped, the moment a body stopped.
struct StopMark(Arc<Probe>);

impl Drop for StopMark {
    fn drop(&mut self) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.0.cancelled_at.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(at);
    }
}

/// State shared between the test and the workflow code.
#[derive(Debug, Default)]
pub struct Probe {
    bodies: Mutex<HashMap<String, u32>>,
    gates: Mutex<HashMap<String, Arc<Notify>>>,
    open: Mutex<Vec<String>>,
    /// Flips the branch of [`Act::Switch`].
    pub switch: AtomicBool,
    /// A tag the worker's bodies return (which worker ran it).
    pub tag: Mutex<String>,
    /// When (system clock, ms) a [`Act::WaitForCancel`] body stopped.
    pub cancelled_at: Mutex<Option<i64>>,
}

impl Probe {
    /// How many times the body of step `id` ran (all runs).
    pub fn bodies(&self, id: &str) -> u32 {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).get(id).copied().unwrap_or(0)
    }

    /// Counts a body of step `id` (for workflows written in a test).
    pub fn began(&self, id: &str) {
        self.count(id);
    }

    fn count(&self, id: &str) {
        *self.bodies.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_owned()).or_insert(0) += 1;
    }

    fn gate(&self, name: &str) -> Arc<Notify> {
        Arc::clone(self.gates.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_owned()).or_default())
    }

    /// Opens gate `name` for every present and future waiter.
    pub fn open(&self, name: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).push(name.to_owned());
        self.gate(name).notify_waiters();
    }

    fn is_open(&self, name: &str) -> bool {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|g| g == name)
    }

    /// Waits until gate `name` is open.
    pub async fn wait_gate(&self, name: &str) {
        let gate = self.gate(name);
        loop {
            let notified = gate.notified();
            if self.is_open(name) {
                return;
            }
            notified.await;
        }
    }
}

/// The scripted workflow.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The shared probe.
    pub probe: Arc<Probe>,
}

impl Flow {
    /// A workflow with a fresh probe.
    pub fn new() -> (Flow, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        (Flow { probe: Arc::clone(&probe) }, probe)
    }
}

impl Workflow for Flow {
    const NAME: &'static str = "flow";
    type Input = Plan;
    type Output = Vec<String>;

    fn options() -> WorkflowOptions {
        WorkflowOptions::default().retry(RetryPolicy::attempts(3).initial(Duration::from_millis(1)))
    }

    async fn run(&self, ctx: WorkflowContext, plan: Plan) -> Result<Vec<String>, WorkflowError> {
        let mut out = Vec::new();
        for step in plan {
            match &step.act {
                Act::Sleep(ms) => {
                    ctx.sleep(Duration::from_millis(*ms)).await;
                    continue;
                }
                Act::FailWorkflowOnFirstAttempt => {
                    if ctx.attempt() == 1 {
                        return Err(WorkflowError::retryable("first workflow attempt fails"));
                    }
                    continue;
                }
                Act::WorkflowPanic => panic!("workflow code panicked on purpose"),
                _ => {}
            }
            let id = match &step.act {
                Act::Switch(a, b) => {
                    if self.probe.switch.load(Ordering::SeqCst) {
                        b.clone()
                    } else {
                        a.clone()
                    }
                }
                _ => step.id.clone(),
            };
            let mut options = StepOptions::new(id.clone()).retry(
                RetryPolicy::attempts(step.attempts).initial(Duration::from_millis(step.backoff_ms)).jitter(0.0),
            );
            if let Some(t) = step.timeout_ms {
                options = options.timeout(Duration::from_millis(t));
            }
            if step.act == Act::Unencodable {
                let probe = Arc::clone(&self.probe);
                let _: Unencodable = ctx
                    .step_with(options, move |_s| {
                        let probe = Arc::clone(&probe);
                        let id = id.clone();
                        async move {
                            probe.count(&id);
                            Ok(Unencodable)
                        }
                    })
                    .await?;
                continue;
            }
            let probe = Arc::clone(&self.probe);
            let act = step.act.clone();
            let v: String = ctx
                .step_with(options, move |s| {
                    let probe = Arc::clone(&probe);
                    let act = act.clone();
                    let id = id.clone();
                    async move {
                        probe.count(&id);
                        match act {
                            Act::FailTimes(n) if s.attempt() <= n => {
                                Err(StepError::retryable(format!("attempt {} fails", s.attempt())))
                            }
                            Act::AlwaysFail => Err(StepError::retryable("always fails")),
                            Act::Permanent => Err(StepError::permanent("card declined")),
                            Act::Panic => panic!("step body panicked on purpose"),
                            Act::Gate(g) => {
                                probe.wait_gate(&g).await;
                                Ok(probe.tag.lock().unwrap_or_else(|p| p.into_inner()).clone())
                            }
                            Act::WaitForCancel => {
                                // Marks the moment the body stops, whether it
                                // returns or its future is dropped.
                                let _mark = StopMark(Arc::clone(&probe));
                                s.cancelled().await;
                                Err(StepError::retryable("stopped by cancellation"))
                            }
                            Act::Busy(ms) => {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                Ok(format!("{}@{}", s.step_id(), s.attempt()))
                            }
                            _ => Ok(s.idempotency_key()),
                        }
                    }
                })
                .await?;
            out.push(v);
        }
        Ok(out)
    }
}
