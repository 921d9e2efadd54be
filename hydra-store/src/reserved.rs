//! The names Hydra keeps for itself, in one place: the step IDs of its own
//! records in a run's history, the prefixes of signal names it sends, the
//! tags that start a stored payload, its own workflow names and idempotency
//! keys. The store, the runtime, the CLI and the console spell them only
//! through this module; the `#[step]` macro keeps a copy of
//! [`step::USER_FORBIDDEN`] (its tests compare the two).
//!
//! These are stored data: histories written by earlier versions hold them,
//! so a value here never changes.

/// Step IDs (and their prefixes) of Hydra's own records in a history.
pub mod step {
    /// Every marker step of Hydra's own starts with this.
    pub const HYDRA: &str = "hydra.";
    /// A durable sleep.
    pub const SLEEP: &str = "hydra.sleep";
    /// The compensation marker: from here the run undoes its effects.
    pub const COMPENSATE: &str = "hydra.compensate";
    /// The draw of an awakeable's secret.
    pub const AWAKEABLE: &str = "hydra.awakeable";
    /// The start of a child that tells its parent when it ends
    /// (`hydra.child:{workflow}`).
    pub const CHILD: &str = "hydra.child:";
    /// The start of a detached run (`hydra.detached:{workflow}`).
    pub const DETACHED: &str = "hydra.detached:";
    /// A patch's marker (`hydra.patch:{id}`).
    pub const PATCH: &str = "hydra.patch:";
    /// A receive of a signal (`signal:{name}`; also the recorded name of
    /// the signal a select took).
    pub const SIGNAL: &str = "signal:";
    /// A select over several signals (`select:{names}`).
    pub const SELECT: &str = "select:";
    /// An event's publication (`event:{key}`).
    pub const EVENT: &str = "event:";
    /// A search attribute's setting (`search:{name}`).
    pub const SEARCH: &str = "search:";

    /// The prefixes a user's step ID may not start with: each names records
    /// of Hydra's own, which a replay, a retry or a fork reads as such.
    pub const USER_FORBIDDEN: &[&str] = &[HYDRA, SIGNAL, SELECT, EVENT, SEARCH];

    /// The step ID base of a child's start.
    pub fn child(workflow: &str, linked: bool) -> String {
        format!("{}{workflow}", if linked { CHILD } else { DETACHED })
    }

    /// Whether `base` is the start of a child that tells its parent.
    pub fn is_child_start(base: &str) -> bool {
        base.starts_with(CHILD)
    }

    /// Checks a user's step ID: the rules of every step ID, and none of
    /// Hydra's own prefixes ([`USER_FORBIDDEN`]).
    pub fn check_user(base: &str) -> Result<(), String> {
        crate::StepId::validate_base(base)?;
        match USER_FORBIDDEN.iter().find(|p| base.starts_with(**p)) {
            Some(p) => Err(format!(
                "step ID `{base}` begins with `{p}`, which is reserved for Hydra's own records; choose another ID"
            )),
            None => Ok(()),
        }
    }
}

/// Signal names Hydra sends itself.
pub mod signal {
    use crate::ExecutionId;

    /// A child's end, sent to its parent (`child:{id}`).
    pub const CHILD: &str = "child:";
    /// An awakeable's completion (`awakeable:{secret}`).
    pub const AWAKEABLE: &str = "awakeable:";
    /// The prefixes no sender may use, for a signal's name or its
    /// idempotency key: only Hydra sends these.
    pub const SENDER_FORBIDDEN: &[&str] = &[CHILD, AWAKEABLE];

    /// The name (and idempotency key) of the signal that tells a parent its
    /// child `id` ended.
    pub fn child(id: &ExecutionId) -> String {
        format!("{CHILD}{id}")
    }

    /// The name (and idempotency key) of an awakeable's completion.
    pub fn awakeable(secret: &str) -> String {
        format!("{AWAKEABLE}{secret}")
    }

    /// Which of Hydra's own kinds of signal `name` is, if any: `child` or
    /// `awakeable`.
    pub fn kind(name: &str) -> Option<&'static str> {
        if name.starts_with(CHILD) {
            Some("child")
        } else if name.starts_with(AWAKEABLE) {
            Some("awakeable")
        } else {
            None
        }
    }

    /// Checks a name or idempotency key given by a sender: none of Hydra's
    /// own prefixes. `what` says which it is, for the message.
    pub fn check_sender(what: &str, value: &str) -> Result<(), String> {
        match SENDER_FORBIDDEN.iter().find(|p| value.starts_with(**p)) {
            Some(p) => Err(format!("{what} `{value}`: the prefix `{p}` is reserved for Hydra's own signals")),
            None => Ok(()),
        }
    }
}

/// The first byte of every stored payload: which codec wrote it.
pub mod payload_tag {
    /// A child's end other than completed: `\0{status}\n{message}`, a tag
    /// no codec uses.
    pub const CHILD_END: u8 = 0;
    /// bincode.
    pub const BINCODE: u8 = 1;
    /// JSON.
    pub const JSON: u8 = 2;
    /// The first tag of a user's codec; the tags below are Hydra's.
    pub const FIRST_CUSTOM: u8 = 128;
}

/// Workflow names Hydra gives.
pub mod workflow {
    /// Hydra's own workflow names start with this.
    pub const HYDRA: &str = "hydra.";
    /// A plain cron handler's workflow (`hydra.cron.{schedule}`).
    pub const CRON_HANDLER: &str = "hydra.cron.";

    /// The workflow name of cron schedule `schedule`'s plain handler.
    pub fn cron_handler(schedule: &str) -> String {
        format!("{CRON_HANDLER}{schedule}")
    }
}

/// Idempotency keys Hydra gives its runs.
pub mod idempotency {
    /// A cron tick's run (`cron:{schedule}:{tick}`).
    pub const CRON: &str = "cron:";

    /// The idempotency key of the run of `schedule`'s tick at `tick` (ms):
    /// one run per tick across every worker.
    pub fn cron_tick(schedule: &str, tick: i64) -> String {
        format!("{CRON}{schedule}:{tick}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_step_id_may_not_take_a_prefix_of_hydras_own() {
        assert!(step::check_user("charge-card").is_ok());
        assert!(step::check_user("reserve_inventory").is_ok());
        for own in [step::COMPENSATE, step::AWAKEABLE, step::SLEEP, "hydra.patch:x", "signal:approval", "event:x"] {
            let e = step::check_user(own).expect_err(own);
            assert!(e.contains("reserved for Hydra"), "{e}");
        }
        assert!(step::check_user("").is_err(), "the rules of every step ID still apply");
        assert!(step::check_user("a#b").is_err());
    }

    #[test]
    fn stored_names_keep_their_spelling() {
        // Histories written by earlier versions hold these.
        assert_eq!(step::child("ship", true), "hydra.child:ship");
        assert_eq!(step::child("ship", false), "hydra.detached:ship");
        assert_eq!(signal::awakeable("s3cr3t"), "awakeable:s3cr3t");
        assert_eq!(idempotency::cron_tick("nightly", 42), "cron:nightly:42");
        assert_eq!(workflow::cron_handler("nightly"), "hydra.cron.nightly");
        assert_eq!(signal::kind("child:x"), Some("child"));
        assert_eq!(signal::kind("approval"), None);
        assert!(signal::check_sender("signal name", "awakeable:x").is_err());
        assert!(signal::check_sender("signal name", "approval").is_ok());
    }
}
