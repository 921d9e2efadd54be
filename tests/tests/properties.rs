//! Property test over random interleavings of claim, heartbeat, expiry,
//! takeover, step result, completion and reclaim against the real store
//! (SQLite and PostgreSQL). After every operation: every lease but the
//! running run's current one is refused (its renewal and its step writes),
//! a renewal that succeeds was made under the current token, tokens strictly
//! increase, no result is recorded under a stale token and no recorded
//! result changes; after every schedule the run can always be driven to an
//! end.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::{
    ClaimRequest, ExecutionId, ExecutionStatus, Lease, NewExecution, StepId, StepKind, StepOutcome, StepRecord, Store,
    StoreError, Terminal, WorkerId,
};
use hydra_tests::{DbKind, TestDb};
use proptest::prelude::*;

const TTL: i64 = 1_000;

#[derive(Clone, Debug)]
enum Op {
    Claim(usize),
    Heartbeat(usize),
    Advance(i64),
    RecordStep(usize, u32),
    Complete(usize),
    Reclaim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize).prop_map(Op::Claim),
        2 => (0..3usize).prop_map(Op::Heartbeat),
        2 => (1..1_500i64).prop_map(Op::Advance),
        3 => (0..3usize, 0..4u32).prop_map(|(w, s)| Op::RecordStep(w, s)),
        1 => (0..3usize).prop_map(Op::Complete),
        1 => Just(Op::Reclaim),
    ]
}

async fn check_schedule(store: Store, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let ns = "prop";
    let mut now = 0i64;
    let id = ExecutionId::generate(now);
    store.create_execution(NewExecution::new(id.clone(), ns, "wf", vec![], now)).await.unwrap();
    let workers: Vec<WorkerId> = (0..3).map(|_| WorkerId::generate()).collect();
    let mut leases: Vec<Option<Lease>> = vec![None; 3];
    let mut max_token = 0i64;
    let mut written: Vec<(u32, i64)> = Vec::new();
    for op in ops {
        // The run as the operation finds it: whether a refusal was due.
        let before = store.get_execution(ns, &id).await.unwrap().unwrap();
        let holds = |l: &Lease| l.token == before.fencing_token && before.status == ExecutionStatus::Running;
        match op {
            Op::Claim(w) => {
                let req = ClaimRequest::new(ns, vec!["wf".into()], workers[w].clone(), now, TTL, 5);
                for c in store.claim(&req).await.unwrap() {
                    let t = c.lease.token.get();
                    prop_assert!(t > max_token, "tokens strictly increase: {t} after {max_token}");
                    max_token = t;
                    leases[w] = Some(c.lease);
                }
            }
            Op::Heartbeat(w) => {
                if let Some(l) = &leases[w] {
                    let live = holds(l) && before.due_at.is_some_and(|d| d > now);
                    match store.renew_lease(l, now, TTL).await {
                        Ok(_) => {
                            prop_assert!(live, "a renewal succeeded on a lease that had expired or was not held");
                            let e = store.get_execution(ns, &id).await.unwrap().unwrap();
                            prop_assert_eq!(l.token, e.fencing_token, "a renewal succeeded under a stale token");
                            prop_assert_eq!(
                                e.status,
                                ExecutionStatus::Running,
                                "a renewal succeeded on a run not running"
                            );
                        }
                        Err(e) => {
                            prop_assert!(e.is_lease_lost(), "{e}");
                            prop_assert!(!live, "the live lease's renewal was refused: {e}");
                            leases[w] = None;
                        }
                    }
                }
            }
            Op::Advance(ms) => now += ms,
            Op::RecordStep(w, s) => {
                if let Some(l) = leases[w].clone() {
                    let rec = StepRecord::new(
                        StepId::new(&format!("s{s}"), 1),
                        format!("s{s}"),
                        s,
                        StepKind::Step,
                        1,
                        StepOutcome::Completed(vec![]),
                    );
                    match store.record_step_result(&l, rec, now).await {
                        Ok(()) => {
                            let e = store.get_execution(ns, &id).await.unwrap().unwrap();
                            prop_assert_eq!(l.token, e.fencing_token, "a result was accepted under a stale token");
                            written.push((s, l.token.get()));
                        }
                        Err(StoreError::LeaseLost { .. }) => {
                            prop_assert!(!holds(&l), "the holder's step write was refused");
                            leases[w] = None;
                        }
                        Err(StoreError::StepAlreadyRecorded { .. }) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("unexpected: {e}"))),
                    }
                }
            }
            Op::Complete(w) => {
                if let Some(l) = leases[w].clone() {
                    match store.finish(&l, Terminal::Completed(vec![]), now).await {
                        Ok(()) => {
                            prop_assert!(holds(&l), "a run was finished under a lease that did not hold it");
                            leases[w] = None;
                        }
                        Err(e) => {
                            prop_assert!(e.is_lease_lost(), "{e}");
                            prop_assert!(!holds(&l), "the holder's finish was refused: {e}");
                            leases[w] = None;
                        }
                    }
                }
            }
            Op::Reclaim => {
                store.reclaim_expired(ns, now).await.unwrap();
            }
        }
        // Only the running run's current lease is honoured: every other one
        // a worker still holds is refused, for a renewal and for a step
        // write (at a position no schedule uses, so a wrong success shows).
        let e = store.get_execution(ns, &id).await.unwrap().unwrap();
        for (w, l) in leases.iter().enumerate() {
            let Some(l) = l else { continue };
            if l.token == e.fencing_token && e.status == ExecutionStatus::Running {
                continue;
            }
            let renewed = store.renew_lease(l, now, TTL).await;
            prop_assert!(
                renewed.as_ref().is_err_and(|e| e.is_lease_lost()),
                "worker {w}'s stale lease (token {}, current {}) was renewed: {renewed:?}",
                l.token.get(),
                e.fencing_token.get()
            );
            let probe = hydra_tests::store_ops::record("probe", 100, StepOutcome::Completed(vec![]));
            let wrote = store.record_step_result(l, probe, now).await;
            prop_assert!(
                matches!(wrote, Err(StoreError::LeaseLost { .. })),
                "worker {w}'s stale lease wrote a step: {wrote:?}"
            );
        }
        prop_assert!(e.fencing_token.get() >= max_token);
        for s in store.steps(ns, &id).await.unwrap() {
            let first = written.iter().find(|(p, _)| *p == s.position).map(|(_, t)| *t);
            prop_assert_eq!(Some(s.fencing_token.get()), first, "a step row changed after it was recorded");
        }
    }
    // Every run can be driven to an end from any reachable state.
    now += TTL + 1;
    let finisher = WorkerId::generate();
    let e = store.get_execution(ns, &id).await.unwrap().unwrap();
    if !e.status.is_terminal() {
        let req = ClaimRequest::new(ns, vec!["wf".into()], finisher, now, TTL, 5);
        let c = store.claim(&req).await.unwrap().pop().expect("a non-terminal run is claimable once its lease expired");
        store.finish(&c.lease, Terminal::Completed(vec![]), now).await.unwrap();
    }
    prop_assert!(store.get_execution(ns, &id).await.unwrap().unwrap().status.is_terminal());
    Ok(())
}

fn run(kind: DbKind, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..40))| {
        rt.block_on(async {
            let db = TestDb::new(kind).await;
            let store = db.store().await;
            check_schedule(store, ops).await
        })?;
    });
}

#[test]
fn sqlite_random_interleavings_keep_the_lease_invariants() {
    run(DbKind::Sqlite, 48);
}

#[test]
fn postgres_random_interleavings_keep_the_lease_invariants() {
    run(DbKind::Postgres, 32);
}
