//! Which runs a worker may take: one rule, read in Rust by a start that
//! hands its run straight to a local worker, and in SQL by the claim
//! statement. Flow control (queues, limits) belongs here, so that both
//! roads to a worker apply it.

use sea_orm::Value;

/// The runs a worker may take: of the workflows it registered, each at the
/// versions it replays (unversioned runs by any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Admission {
    /// The workflows it runs.
    pub workflow_names: Vec<String>,
    /// The versions of each of `workflow_names` (same order) it replays,
    /// `(from, to)` inclusive; runs of other versions are left to other
    /// workers. Empty: any.
    pub versions: Vec<(u32, u32)>,
    /// The fingerprints of the code it runs them with: a run that code
    /// suspended (it did not replay the run's history) is not taken by
    /// it again once other code took it up (no run passes back and forth
    /// between old and new workers in a mixed fleet), unless a cancel was
    /// accepted for it (a cancel lands: replayed to its stopping point by
    /// any worker, or ended as code that does not replay it ends it).
    /// Empty: none.
    pub codes: Vec<i64>,
}

impl Admission {
    /// Runs of `workflow_names`, at any version.
    pub fn new(workflow_names: Vec<String>) -> Self {
        Admission { workflow_names, versions: Vec::new(), codes: Vec::new() }
    }

    /// Only the versions `versions` of each workflow (same order as its
    /// names).
    pub fn versions(mut self, versions: Vec<(u32, u32)>) -> Self {
        self.versions = versions;
        self
    }

    /// Not the runs that code fingerprinted `codes` suspended.
    pub fn codes(mut self, codes: Vec<i64>) -> Self {
        self.codes = codes;
        self
    }

    /// Whether a run of `name` at `version` may be taken (a new run: no
    /// code suspended it).
    pub fn admits(&self, name: &str, version: Option<u32>) -> bool {
        let Some(i) = self.workflow_names.iter().position(|n| n == name) else { return false };
        match (version, self.ranges().and_then(|r| r.get(i))) {
            (Some(v), Some((from, to))) => (*from..=*to).contains(&v),
            _ => true,
        }
    }

    /// Whether it admits nothing.
    pub fn is_empty(&self) -> bool {
        self.workflow_names.is_empty()
    }

    /// The version ranges, when given for every workflow.
    fn ranges(&self) -> Option<&[(u32, u32)]> {
        (!self.versions.is_empty() && self.versions.len() == self.workflow_names.len()).then_some(&self.versions[..])
    }

    /// The same rule as a condition on `workflow_executions` (to follow
    /// `AND`), and its values: the workflows, then the versions, one range
    /// for all when they share it (the usual case), else one per name.
    pub(crate) fn condition(&self) -> (String, Vec<Value>) {
        let names = vec!["?"; self.workflow_names.len()].join(", ");
        let mut sql = format!("workflow_name IN ({names})");
        let mut values: Vec<Value> = self.workflow_names.iter().map(|n| Value::from(n.as_str())).collect();
        if !self.codes.is_empty() {
            let codes = vec!["?"; self.codes.len()].join(", ");
            sql.push_str(&format!(
                " AND (suspended_code IS NULL OR suspended_code NOT IN ({codes}) OR cancel_requested = TRUE)"
            ));
            values.extend(self.codes.iter().map(|c| Value::from(*c)));
        }
        let Some(ranges) = self.ranges() else { return (sql, values) };
        let first = ranges[0];
        if ranges.iter().all(|v| *v == first) {
            sql.push_str(" AND (workflow_version IS NULL OR workflow_version BETWEEN ? AND ?)");
            values.extend([i64::from(first.0).into(), i64::from(first.1).into()]);
            return (sql, values);
        }
        sql.push_str(" AND (workflow_version IS NULL OR CASE workflow_name");
        for (name, (from, to)) in self.workflow_names.iter().zip(ranges) {
            sql.push_str(" WHEN ? THEN workflow_version BETWEEN ? AND ?");
            values.extend([Value::from(name.as_str()), i64::from(*from).into(), i64::from(*to).into()]);
        }
        sql.push_str(" ELSE FALSE END)");
        (sql, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_takes_its_workflows_at_the_versions_it_replays() {
        let a = Admission::new(vec!["a".into(), "b".into()]).versions(vec![(1, 2), (3, 3)]);
        assert!(a.admits("a", Some(2)) && a.admits("b", Some(3)));
        assert!(!a.admits("a", Some(3)) && !a.admits("b", Some(2)), "other versions are other workers'");
        assert!(a.admits("a", None), "an unversioned run goes to any");
        assert!(!a.admits("c", None), "not a workflow it runs");
        let any = Admission::new(vec!["a".into()]);
        assert!(any.admits("a", Some(99)));
    }
}
