//! A recorded step in words, for people (`hydra runs show`, the console,
//! the demo): Hydra's own records (`signal:child:…`, `hydra.compensate`)
//! read as what they are, and a run's open steps read as closed once the
//! run has ended.

use super::execution::ExecutionStatus;
use super::step::{Step, StepKind, StepStatus};
use crate::reserved::{signal, step};

impl Step {
    /// What the step is, in words: a user's step by its ID; `sleep`;
    /// `signal `review``; `end of child run 0190…`; `awakeable settled`
    /// (a token is a credential: never shown); `child `shipping`` (its
    /// start); `select: took signal `approve``; `compensations begin`;
    /// `event `stage``; `search attribute `customer``; `patch `v2``. A
    /// repeated call keeps its `#n`.
    pub fn label(&self) -> String {
        let base = self.step_id.base();
        let again = self.step_id.as_str().strip_prefix(base).unwrap_or_default();
        let words = if base == step::SLEEP {
            "sleep".to_owned()
        } else if base == step::COMPENSATE {
            "compensations begin".to_owned()
        } else if base == step::AWAKEABLE {
            "awakeable drawn".to_owned()
        } else if let Some(w) = base.strip_prefix(step::CHILD) {
            format!("child `{w}`")
        } else if let Some(w) = base.strip_prefix(step::DETACHED) {
            format!("detached run `{w}`")
        } else if let Some(p) = base.strip_prefix(step::PATCH) {
            format!("patch `{p}`")
        } else if let Some(k) = base.strip_prefix(step::EVENT) {
            format!("event `{k}`")
        } else if let Some(k) = base.strip_prefix(step::SEARCH) {
            format!("search attribute `{k}`")
        } else if let Some(name) = base.strip_prefix(step::SIGNAL) {
            wait_label(name)
        } else if base.starts_with(step::SELECT) {
            match self.step_name.strip_prefix(step::SIGNAL) {
                Some(taken) if self.status == StepStatus::Completed => format!("select: took {}", wait_label(taken)),
                _ => "select".to_owned(),
            }
        } else {
            base.to_owned()
        };
        if again.is_empty() { words } else { format!("{words} {again}") }
    }

    /// Its state in words: a wait (a sleep, a receive) still open is
    /// `waiting`; otherwise its status.
    pub fn state_label(&self) -> &'static str {
        match (self.kind, self.status) {
            (StepKind::Signal | StepKind::Sleep, StepStatus::Running) => "waiting",
            (_, s) => s.as_str(),
        }
    }

    /// The step as it reads once its run ended `status` at `at`: a wait or
    /// a body still open then will never finish, and reads as `failed`
    /// with the reason (the row itself is kept as it was, so that a retry
    /// of the run resumes a wait with its recorded deadline).
    pub fn closed_by(mut self, status: ExecutionStatus, at: Option<i64>) -> Step {
        if status.is_terminal() && self.status == StepStatus::Running {
            let what = match self.kind {
                StepKind::Signal | StepKind::Sleep => "the wait",
                _ => "the step",
            };
            self.status = StepStatus::Failed;
            self.error = Some(format!("{what} did not finish: the run ended {status}"));
            self.completed_at = at.or(self.completed_at);
        }
        self
    }
}

/// A receive of signal `name`, in words.
fn wait_label(name: &str) -> String {
    if let Some(id) = name.strip_prefix(signal::CHILD) {
        format!("end of child run {id}")
    } else if name.starts_with(signal::AWAKEABLE) {
        "awakeable settled".to_owned()
    } else {
        format!("signal `{name}`")
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::{ExecutionId, StepId};
    use crate::model::{ExecutionStatus, Step, StepKind, StepStatus};

    fn step(id: &str, name: &str, kind: StepKind, status: StepStatus) -> Step {
        let mut s = Step::completed(ExecutionId::from_string("r"), StepId::from_string(id), 0, Vec::new());
        s.step_name = name.to_owned();
        s.kind = kind;
        s.status = status;
        s
    }

    #[test]
    fn hydras_own_records_read_as_what_they_are() {
        let c = StepStatus::Completed;
        let cases = [
            (step("charge", "charge", StepKind::Step, c), "charge"),
            (step("charge#2", "charge", StepKind::Step, c), "charge #2"),
            (step("hydra.sleep", "hydra.sleep", StepKind::Sleep, c), "sleep"),
            (step("hydra.compensate", "hydra.compensate", StepKind::Step, c), "compensations begin"),
            (step("hydra.child:shipping", "hydra.child:shipping", StepKind::Step, c), "child `shipping`"),
            (step("signal:review", "signal:review", StepKind::Signal, c), "signal `review`"),
            (step("signal:child:0190a8f2", "signal:child:0190a8f2", StepKind::Signal, c), "end of child run 0190a8f2"),
            (step("signal:awakeable:s3cr3t", "signal:awakeable:s3cr3t", StepKind::Signal, c), "awakeable settled"),
            (step("select:a|b", "signal:b", StepKind::Signal, c), "select: took signal `b`"),
            (step("event:stage", "event:stage", StepKind::Event, c), "event `stage`"),
        ];
        for (s, want) in cases {
            assert_eq!(s.label(), want);
            assert!(!s.label().contains("s3cr3t"));
        }
    }

    #[test]
    fn open_steps_of_an_ended_run_read_as_closed_and_the_others_as_they_are() {
        let wait = step("signal:review", "signal:review", StepKind::Signal, StepStatus::Running);
        assert_eq!(wait.state_label(), "waiting");
        let closed = wait.clone().closed_by(ExecutionStatus::Cancelled, Some(7));
        assert_eq!((closed.status, closed.completed_at), (StepStatus::Failed, Some(7)));
        assert_eq!(closed.error.as_deref(), Some("the wait did not finish: the run ended cancelled"));
        assert_eq!(wait.clone().closed_by(ExecutionStatus::Sleeping, Some(7)), wait);
        let done = step("charge", "charge", StepKind::Step, StepStatus::Completed);
        assert_eq!(done.clone().closed_by(ExecutionStatus::Failed, Some(7)), done);
    }
}
