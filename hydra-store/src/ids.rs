//! Identifier newtypes. Each is built in one place so that IDs of different
//! kinds cannot be mixed up and a step ID has exactly one format.

use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The ID as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps an ID read back from storage or given by a user.
            pub fn from_string(id: impl Into<String>) -> Self {
                Self(id.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The ID of one workflow execution (a run).
    ExecutionId
);
string_id!(
    /// The ID of a worker process or worker instance.
    WorkerId
);
string_id!(
    /// The stable ID of one step call inside a run.
    ///
    /// Built only by [`StepId::new`], which every path (creation, lookup,
    /// completion) goes through.
    StepId
);

impl ExecutionId {
    /// A new, time-ordered execution ID (UUIDv7) from the engine clock's
    /// milliseconds, so IDs sort by creation time and index locality is good.
    pub fn generate(now_ms: i64) -> Self {
        let random = *uuid::Uuid::new_v4().as_bytes();
        let ms = u64::try_from(now_ms).unwrap_or(0);
        let mut rand10 = [0u8; 10];
        rand10.copy_from_slice(&random[..10]);
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &rand10).into_uuid().to_string())
    }
}

impl WorkerId {
    /// A new random worker ID with a readable prefix.
    pub fn generate() -> Self {
        Self(format!("worker-{}", uuid::Uuid::new_v4().simple()))
    }
}

impl StepId {
    /// The one function that forms a step ID: the base ID (the `id = "…"`
    /// given to the step, or its function name) for the first call in a run,
    /// and `base#n` for the n-th repeated call (n = 2, 3, …).
    ///
    /// `#` cannot appear in a base ID given to [`StepId::new`] (see
    /// [`StepId::validate_base`]), so suffixed IDs never collide with a base.
    pub fn new(base: &str, occurrence: u32) -> Self {
        if occurrence <= 1 { Self(base.to_owned()) } else { Self(format!("{base}#{occurrence}")) }
    }

    /// Checks a base step ID: non-empty, at most 200 bytes, no `#`, no
    /// whitespace or control characters.
    pub fn validate_base(base: &str) -> Result<(), String> {
        if base.is_empty() {
            return Err("a step ID must not be empty".into());
        }
        if base.len() > 200 {
            return Err(format!("step ID `{base}` is longer than 200 bytes"));
        }
        if let Some(c) = base.chars().find(|c| *c == '#' || c.is_whitespace() || c.is_control()) {
            return Err(format!("step ID `{base}` contains the character {c:?}, which is reserved"));
        }
        Ok(())
    }

    /// The base part of the ID (without any occurrence suffix).
    pub fn base(&self) -> &str {
        self.0.split_once('#').map_or(self.0.as_str(), |(b, _)| b)
    }
}

/// The fencing token of a claim. It grows by one on every claim of an
/// execution, so a holder of an older token can be told apart from the
/// current one on every write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FencingToken(pub(crate) i64);

impl FencingToken {
    /// The token of a run's first claim (a run not yet claimed has 0).
    pub const FIRST: FencingToken = FencingToken(1);

    /// The token's value.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_id_has_one_format() {
        assert_eq!(StepId::new("charge-card", 1).as_str(), "charge-card");
        assert_eq!(StepId::new("charge-card", 0).as_str(), "charge-card");
        assert_eq!(StepId::new("charge-card", 3).as_str(), "charge-card#3");
        assert_eq!(StepId::new("charge_card", 2).base(), "charge_card");
    }

    #[test]
    fn base_ids_reject_the_suffix_separator() {
        assert!(StepId::validate_base("a#2").is_err());
        assert!(StepId::validate_base("").is_err());
        assert!(StepId::validate_base("has space").is_err());
        assert!(StepId::validate_base("reserve-inventory").is_ok());
    }

    #[test]
    fn execution_ids_sort_by_time() {
        let a = ExecutionId::generate(1_000);
        let b = ExecutionId::generate(2_000);
        assert!(a < b, "{a} < {b}");
    }
}
