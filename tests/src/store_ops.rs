//! Store-level helpers shared by the store and group-commit tests: runs of
//! one workflow created, claimed and written at given (fake) times; the
//! query plans the index tests read.

use hydra_store::{
    ClaimRequest, ExecutionId, Lease, NewExecution, StepAttempt, StepId, StepKind, StepOutcome, StepRecord, Store,
    WorkerId,
};

/// The namespace of the store tests.
pub const NS: &str = "test";
/// The workflow the store tests create runs of.
pub const WF: &str = "wf";
/// The lease the store tests claim with (ms).
pub const TTL: i64 = 30_000;

/// Creates a run of [`WF`] in `ns`, due at `now`.
pub async fn create(store: &Store, ns: &str, now: i64) -> ExecutionId {
    let id = ExecutionId::generate(now);
    store.create_execution(NewExecution::new(id.clone(), ns, WF, vec![1, 2, 3], now)).await.expect("create execution");
    id
}

/// A claim of up to `limit` runs of [`WF`] in `ns` for `worker`.
pub fn claim_req(ns: &str, worker: &WorkerId, now: i64, limit: u32) -> ClaimRequest {
    let mut r = ClaimRequest::new(ns, vec![WF.to_owned()], worker.clone(), now, TTL, limit);
    r.lease_ttl_ms = TTL;
    r
}

/// Claims due runs of [`NS`] for `worker` and returns the lease on `id`.
pub async fn claim_one(store: &Store, id: &ExecutionId, worker: &WorkerId, now: i64) -> Lease {
    let claimed = store.claim(&claim_req(NS, worker, now, 100)).await.expect("claim");
    claimed.into_iter().find(|c| &c.execution.id == id).unwrap_or_else(|| panic!("{id} was not claimed at {now}")).lease
}

/// A step result of step `step` (version 1) at `position`.
pub fn record(step: &str, position: u32, outcome: StepOutcome) -> StepRecord {
    StepRecord::new(StepId::new(step, 1), step, position, StepKind::Step, 3, outcome)
}

/// An attempt of step `step` (version 1) at `position`.
pub fn attempt(step: &str, position: u32) -> StepAttempt {
    StepAttempt::new(StepId::new(step, 1), step, position, StepKind::Step, 3)
}

/// How [`plan_of`] asks PostgreSQL's planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Costs {
    /// With sequential scans priced out: shows whether an index can serve
    /// the statement at all (on a table too small for the planner to want
    /// one).
    IndexIfUsable,
    /// At the planner's own costs: what it would really do.
    Normal,
}

/// The query plan of `stmt`, one line per node joined by `; ` (SQLite's
/// `EXPLAIN QUERY PLAN`, PostgreSQL's `EXPLAIN`). SQLite has one planner
/// mode; `costs` applies to PostgreSQL.
pub async fn plan_of(store: &Store, stmt: &sea_orm::Statement, costs: Costs) -> String {
    use sea_orm::ConnectionTrait as _;
    let conn = store.connection();
    let explain = |prefix: &str| {
        let mut s = stmt.clone();
        s.sql = format!("{prefix} {}", s.sql);
        s
    };
    match store.backend() {
        hydra_store::Backend::Sqlite => {
            let rows = conn.query_all_raw(explain("EXPLAIN QUERY PLAN")).await.expect("explain");
            rows.iter().map(|r| r.try_get::<String>("", "detail").expect("detail")).collect::<Vec<_>>().join("; ")
        }
        _ => {
            let txn = sea_orm::TransactionTrait::begin(conn).await.expect("begin");
            if costs == Costs::IndexIfUsable {
                txn.execute_unprepared("SET LOCAL enable_seqscan = off").await.expect("set");
            }
            let rows = txn.query_all_raw(explain("EXPLAIN")).await.expect("explain");
            let plan = rows
                .iter()
                .map(|r| r.try_get::<String>("", "QUERY PLAN").expect("plan"))
                .collect::<Vec<_>>()
                .join("; ");
            txn.rollback().await.expect("rollback");
            plan
        }
    }
}
