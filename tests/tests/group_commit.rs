//! Group commits at the store (`Store::apply_batch`): each write applied or
//! refused alone, step results written together equal to the rows written
//! one by one, a refusal that leaves its run as it was, and, on
//! PostgreSQL, the row locks of a batch (its runs and the parents of those
//! it ends, in ID order) never in a cycle with lease renewals or other
//! transactions. Same bodies on SQLite and PostgreSQL where both apply.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::sea_orm::{ConnectionTrait, DbBackend, Statement};
use hydra_store::{
    BatchOp, BatchValue, Checkpoint, ExecutionId, ExecutionStatus, Lease, NewExecution, OpenStep, StepOutcome,
    StepStatus, Store, StoreError, Terminal, Transition, WorkerId,
};
use hydra_tests::both_backends;
use hydra_tests::store_ops::{NS, TTL, WF, claim_one, claim_req, create, record};

both_backends! {
    async fn a_group_commit_applies_each_write_or_refuses_it_and_claims_in_the_same_commit(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let b = create(&store, NS, 0).await;
        let stale = store.claim(&claim_req(NS, &w, 0, 1)).await.unwrap().remove(0).lease;
        assert_eq!(stale.execution_id, b);
        // B's lease expires and another claim takes it over.
        let current = store.claim(&claim_req(NS, &w, TTL + 1, 1)).await.unwrap().remove(0).lease;
        assert_eq!((current.execution_id.clone(), current.token.get()), (b.clone(), 2));
        let a = create(&store, NS, TTL + 2).await;
        let lease_a = store.claim(&claim_req(NS, &w, TTL + 2, 1)).await.unwrap().remove(0).lease;
        assert_eq!(lease_a.execution_id, a);
        let d = create(&store, NS, TTL + 2).await;
        let lease_d = store.claim(&claim_req(NS, &w, TTL + 2, 1)).await.unwrap().remove(0).lease;
        assert_eq!(lease_d.execution_id, d);
        let c = create(&store, NS, TTL + 3).await;
        let commits = store.write_commits();
        // Given in another order than the one they are applied in (by run ID,
        // claims last): the results still come back in the given order.
        let ops = vec![
            BatchOp::Claim(claim_req(NS, &w, TTL + 4, 10)),
            BatchOp::Checkpoint(
                lease_a.clone(),
                Checkpoint::step(record("s", 0, StepOutcome::Completed(vec![2])).attempt(1)).open(OpenStep::new(1, 1)),
            ),
            BatchOp::Checkpoint(
                stale.clone(),
                Checkpoint::step(record("s", 0, StepOutcome::Completed(vec![1]))).open(OpenStep::new(1, 1)),
            ),
            BatchOp::Checkpoint(
                lease_d.clone(),
                Checkpoint::step(record("s", 0, StepOutcome::AttemptFailed("again".into())).attempt(1))
                    .open(OpenStep::new(0, 2)),
            ),
        ];
        let results = store.apply_batch(&ops, TTL + 4).await.unwrap();
        assert_eq!(store.write_commits(), commits + 1, "one commit for the whole batch");
        match &results[0] {
            Ok(BatchValue::Claimed(v)) => {
                assert_eq!(v.iter().map(|c| c.execution.id.clone()).collect::<Vec<_>>(), vec![c.clone()])
            }
            other => panic!("expected the claim of {c}, got {other:?}"),
        }
        assert!(matches!(results[1], Ok(BatchValue::Checkpoint)), "{:?}", results[1]);
        assert!(matches!(results[2], Err(StoreError::LeaseLost { .. })), "{:?}", results[2]);
        assert!(matches!(results[3], Ok(BatchValue::Checkpoint)), "{:?}", results[3]);
        let run_d = store.get_execution(NS, &d).await.unwrap().unwrap();
        assert_eq!(run_d.open_step, OpenStep::new(0, 2), "a retry's attempt is counted with the failed one");
        let steps_d = store.steps(NS, &d).await.unwrap();
        assert_eq!((steps_d[0].status, steps_d[0].attempts), (StepStatus::Running, 1));
        let run_b = store.get_execution(NS, &b).await.unwrap().unwrap();
        assert_eq!(run_b.open_step, OpenStep::new(0, 2), "the refused write moved nothing (two claims counted two)");
        assert!(store.steps(NS, &b).await.unwrap().is_empty(), "the refused write left nothing");
        let steps_a = store.steps(NS, &a).await.unwrap();
        assert_eq!((steps_a.len(), steps_a[0].output.clone()), (1, Some(vec![2])));
        let run_a = store.get_execution(NS, &a).await.unwrap().unwrap();
        assert_eq!(run_a.open_step, OpenStep::new(1, 1), "the step result moved the open step in the same write");
        let run_c = store.get_execution(NS, &c).await.unwrap().unwrap();
        assert_eq!((run_c.status, run_c.open_step.attempts), (ExecutionStatus::Running, 1), "the claim counted an attempt");
    }

    async fn step_results_written_together_are_the_rows_written_one_by_one(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        // Two sets of four runs, the same four step results in each: one
        // set's go in one group commit (several runs' step results are
        // written together, in statements of many rows), the other's one
        // checkpoint each. Every row and run must come out the same.
        let mut ids = Vec::new();
        for i in 0..8 {
            ids.push(create(&store, NS, i).await);
        }
        let claimed = store.claim(&claim_req(NS, &w, 10, 100)).await.unwrap();
        let lease = |id: &ExecutionId| claimed.iter().find(|c| &c.execution.id == id).unwrap().lease.clone();
        let write = |i: usize| -> Checkpoint {
            let (rec, open) = match i % 4 {
                // An empty output is not a missing one.
                0 => (record("a", 0, StepOutcome::Completed(vec![])).attempt(1).started_at(5), OpenStep::new(1, 1)),
                1 => (record("b", 0, StepOutcome::AttemptFailed("boom".into())).attempt(2), OpenStep::new(0, 3)),
                2 => (record("c", 0, StepOutcome::FailedWith("typed".into(), vec![9, 0, 9])).attempt(3), OpenStep::new(1, 1)),
                _ => (record("d", 0, StepOutcome::Waiting).wake_at(i64::MAX), OpenStep::new(0, 1)),
            };
            Checkpoint::step(rec).open(open)
        };
        let ops: Vec<BatchOp> = (0..4).map(|i| BatchOp::Checkpoint(lease(&ids[i]), write(i))).collect();
        let commits = store.write_commits();
        let results = store.apply_batch(&ops, 20).await.unwrap();
        assert_eq!(store.write_commits(), commits + 1, "one commit for the four");
        assert!(results.iter().all(|r| matches!(r, Ok(BatchValue::Checkpoint))), "{results:?}");
        for (i, id) in ids.iter().enumerate().skip(4) {
            store.checkpoint(&lease(id), write(i), 20).await.unwrap();
        }
        for i in 0..4 {
            let (together, alone) = (&ids[i], &ids[i + 4]);
            let mut rows = store.steps(NS, together).await.unwrap();
            assert_eq!(rows.len(), 1, "run {i}");
            rows[0].execution_id = alone.clone();
            assert_eq!(rows, store.steps(NS, alone).await.unwrap(), "step row of run {i}");
            let (a, b) = (
                store.get_execution(NS, together).await.unwrap().unwrap(),
                store.get_execution(NS, alone).await.unwrap().unwrap(),
            );
            assert_eq!(
                (a.open_step, a.updated_at, a.status, a.fencing_token),
                (b.open_step, b.updated_at, b.status, b.fencing_token),
                "run {i}"
            );
        }
    }

    async fn a_step_result_refused_in_a_group_commit_leaves_its_run_as_it_was(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &w, 1).await;
        // Step 0 recorded without moving the open step (as a step that is
        // not the open one records its result).
        store.checkpoint(&lease, Checkpoint::step(record("s", 0, StepOutcome::Completed(vec![1]))), 2).await.unwrap();
        let before = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!(before.open_step, OpenStep::new(0, 1));
        // The same step again (a replayed write), moving the open step, in
        // a batch with another write.
        let again = Checkpoint::step(record("s", 0, StepOutcome::Completed(vec![2]))).open(OpenStep::new(1, 1));
        let ops = vec![BatchOp::Checkpoint(lease.clone(), again), BatchOp::Claim(claim_req(NS, &w, 9, 10))];
        let results = store.apply_batch(&ops, 9).await.unwrap();
        assert!(matches!(results[0], Err(StoreError::StepAlreadyRecorded { .. })), "{:?}", results[0]);
        assert!(matches!(results[1], Ok(BatchValue::Claimed(_))), "{:?}", results[1]);
        let after = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!((after.open_step, after.updated_at), (before.open_step, before.updated_at), "the refusal moved the run");
        assert_eq!(store.steps(NS, &id).await.unwrap()[0].output, Some(vec![1]), "the recorded result stays");
    }
}

/// Sixteen runs claimed by one worker, their leases in ID order.
async fn sixteen_claimed(store: &Store) -> Vec<Lease> {
    let w = WorkerId::generate();
    for i in 0..16 {
        create(store, NS, i).await;
    }
    let mut leases: Vec<Lease> =
        store.claim(&claim_req(NS, &w, 100, 100)).await.unwrap().into_iter().map(|c| c.lease).collect();
    assert_eq!(leases.len(), 16);
    leases.sort_by(|a, b| a.execution_id.as_str().cmp(b.execution_id.as_str()));
    leases
}

/// `ops` as one group commit at the same time as a renewal of `renewed`:
/// both succeed with one commit each (a deadlock would fail the renewal,
/// or send the batch back to one commit per write).
async fn batch_beside_renewal(
    store: &Store,
    ops: &[BatchOp],
    renewed: &[Lease],
    now: i64,
    round: impl std::fmt::Display,
) {
    let commits = store.write_commits();
    let (batch, renewals) = tokio::join!(store.apply_batch(ops, now), store.renew_leases(renewed, now, TTL));
    assert!(batch.expect("group commit").iter().all(Result::is_ok), "round {round}");
    assert!(renewals.expect("renewal").iter().all(Result::is_ok), "round {round}");
    assert_eq!(store.write_commits(), commits + 2, "round {round}: one commit each, no retry one by one");
}

/// Group commits and lease renewals lock many runs each; given the runs in
/// opposite orders they still take the row locks in one order, so neither
/// ever waits for the other in a cycle (a deadlock would fail the renewal,
/// or send the batch back to one commit per write).
#[tokio::test]
async fn postgres_group_commits_and_lease_renewals_never_deadlock() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let leases = sixteen_claimed(&store).await;
    let descending: Vec<Lease> = leases.iter().rev().cloned().collect();
    let ops: Vec<BatchOp> =
        leases.iter().map(|l| BatchOp::Checkpoint(l.clone(), Checkpoint::transition(Transition::Continue))).collect();
    for round in 0..40 {
        let now = 200 + round;
        batch_beside_renewal(&store, &ops, &descending, now, round).await;
    }
}

/// The same with step results that keep their runs going, which a group
/// commit writes together: it first locks all its runs in ID order, as a
/// renewal does.
#[tokio::test]
async fn postgres_step_results_written_together_and_lease_renewals_never_deadlock() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let leases = sixteen_claimed(&store).await;
    let descending: Vec<Lease> = leases.iter().rev().cloned().collect();
    for round in 0..40u32 {
        let now = 200 + i64::from(round);
        // The batch in descending order, the renewal in ascending order.
        let ops: Vec<BatchOp> = descending
            .iter()
            .map(|l| {
                let rec = record(&format!("s{round}"), round, StepOutcome::Completed(vec![1]));
                BatchOp::Checkpoint(l.clone(), Checkpoint::step(rec).open(OpenStep::new(round + 1, 1)))
            })
            .collect();
        batch_beside_renewal(&store, &ops, &leases, now, round).await;
    }
    for l in &leases {
        let run = store.get_execution(NS, &l.execution_id).await.unwrap().unwrap();
        assert_eq!(run.open_step, OpenStep::new(40, 1), "every step moved its run on");
        assert_eq!(store.steps(NS, &l.execution_id).await.unwrap().len(), 40);
    }
}

/// A parent, its child and two other runs, created in that (ID) order,
/// the four claimed by one worker; and a transaction of another connection
/// that gives up waiting for a row lock after half a second (before
/// PostgreSQL's deadlock detection, at one second, would pick a victim).
struct Family {
    parent: ExecutionId,
    child: ExecutionId,
    x: ExecutionId,
    y: ExecutionId,
    leases: Vec<Lease>,
}

impl Family {
    async fn new(store: &Store, claim: bool) -> Family {
        // IDs in time order: parent < child < x < y.
        let parent = create(store, NS, 0).await;
        let child = ExecutionId::generate(1);
        let mut new = NewExecution::new(child.clone(), NS, WF, vec![], 1);
        new.parent_id = Some(parent.clone());
        store.create_execution(new).await.unwrap();
        let x = create(store, NS, 2).await;
        let y = create(store, NS, 3).await;
        let leases = if claim {
            let claimed = store.claim(&claim_req(NS, &WorkerId::generate(), 10, 100)).await.unwrap();
            assert_eq!(claimed.len(), 4);
            claimed.into_iter().map(|c| c.lease).collect()
        } else {
            Vec::new()
        };
        Family { parent, child, x, y, leases }
    }

    fn lease(&self, id: &ExecutionId) -> Lease {
        self.leases.iter().find(|l| &l.execution_id == id).unwrap().clone()
    }

    fn hot(&self, id: &ExecutionId) -> BatchOp {
        let rec = record("s", 0, StepOutcome::Completed(vec![1]));
        BatchOp::Checkpoint(self.lease(id), Checkpoint::step(rec).open(OpenStep::new(1, 1)))
    }

    fn end_child(&self) -> BatchOp {
        BatchOp::Checkpoint(
            self.lease(&self.child),
            Checkpoint::transition(Transition::Finish(Terminal::Completed(vec![7]))),
        )
    }
}

/// A transaction of its own connection that holds `first`'s row lock,
/// waiting at most half a second for any other.
async fn holding(store: &Store, first: &ExecutionId) -> hydra_store::sea_orm::DatabaseTransaction {
    use hydra_store::sea_orm::TransactionTrait;
    let other = store.connection().begin().await.unwrap();
    other.execute_raw(Statement::from_string(DbBackend::Postgres, "SET LOCAL lock_timeout = '500ms'")).await.unwrap();
    touch(&other, first).await.unwrap();
    other
}

/// Takes `id`'s row lock in `txn`.
async fn touch(
    txn: &hydra_store::sea_orm::DatabaseTransaction,
    id: &ExecutionId,
) -> Result<hydra_store::sea_orm::ExecResult, hydra_store::sea_orm::DbErr> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE workflow_executions SET updated_at = updated_at WHERE id = $1",
        [id.as_str().into()],
    ))
    .await
}

/// Runs `write` while another transaction holds the parent's row lock:
/// the write must wait for the parent without holding `later` (a run after
/// the parent in ID order), which the other transaction then takes at
/// once. Locking `later` first and the parent second, the write would be
/// in a cycle with any transaction that locks in ID order (a lease
/// renewal of both runs): "deadlock detected" after a second.
async fn parent_locked_first<T: Send + 'static>(
    store: &Store,
    family: &Family,
    later: &ExecutionId,
    write: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let other = holding(store, &family.parent).await;
    let write = tokio::spawn(write);
    // The write is waiting for a row lock now (the server says so: a
    // write that has not started yet would hold none).
    waiting_for_a_lock(store).await;
    assert!(!write.is_finished(), "the write waits for the parent's lock");
    touch(&other, later).await.expect("the waiting write holds no run after the parent");
    other.commit().await.unwrap();
    write.await.unwrap()
}

/// Until a session of this database waits for a lock (PostgreSQL's own
/// view of its sessions).
async fn waiting_for_a_lock(store: &Store) {
    let waits = Statement::from_string(
        DbBackend::Postgres,
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let row = store.connection().query_one_raw(waits.clone()).await.unwrap().unwrap();
            if row.try_get::<i64>("", "n").unwrap() >= 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the write waits for a lock");
}

/// `ops` as one group commit while another transaction holds the parent's
/// lock (see [`parent_locked_first`]): every write applied in one commit,
/// and the parent told.
async fn batch_beside_the_parents_lock(store: &Store, family: &Family, later: &ExecutionId, ops: Vec<BatchOp>) {
    let commits = store.write_commits();
    let batch = parent_locked_first(store, family, later, {
        let store = store.clone();
        async move { store.apply_batch(&ops, 20).await }
    })
    .await;
    let results = batch.expect("group commit");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(store.write_commits(), commits + 1, "one commit, no retry one by one");
    parent_told(store, family).await;
}

async fn parent_told(store: &Store, family: &Family) {
    let signals: Vec<String> =
        store.signals_of(NS, &family.parent).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(signals, vec![format!("child:{}", family.child)], "the parent was told in the same commit");
}

/// A group commit that ends a child and writes other runs' step results
/// together locks the child's parent with its runs, in ID order, before
/// any of them.
#[tokio::test]
async fn postgres_a_group_commit_ending_a_child_locks_its_parent_in_order() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let family = Family::new(&store, true).await;
    let ops = vec![family.end_child(), family.hot(&family.x), family.hot(&family.y)];
    batch_beside_the_parents_lock(&store, &family, &family.x, ops).await;
}

/// The same for a group commit whose writes are applied one after another
/// (no step results written together): the child's end does not lock the
/// child by its update and then wait for the parent.
#[tokio::test]
async fn postgres_a_group_commit_ending_a_child_one_write_after_another_locks_its_parent_in_order() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let family = Family::new(&store, true).await;
    let ops = vec![
        family.end_child(),
        BatchOp::Checkpoint(family.lease(&family.y), Checkpoint::transition(Transition::Continue)),
    ];
    batch_beside_the_parents_lock(&store, &family, &family.child, ops).await;
}

/// A child's end in a transaction of its own (`Store::finish`) locks its
/// parent before itself.
#[tokio::test]
async fn postgres_a_child_ending_alone_locks_its_parent_before_itself() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let family = Family::new(&store, true).await;
    let lease = family.lease(&family.child);
    let ended = parent_locked_first(&store, &family, &family.child, {
        let store = store.clone();
        async move { store.finish(&lease, Terminal::Completed(vec![7]), 20).await }
    })
    .await;
    ended.expect("the end is written");
    parent_told(&store, &family).await;
}

/// A cancel that ends a child at once (it never started) and an
/// operator's `fail_now` lock its parent before it.
#[tokio::test]
async fn postgres_a_child_cancelled_or_failed_at_once_locks_its_parent_before_itself() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let family = Family::new(&store, false).await;
    let (ns, child) = (NS, family.child.clone());
    let cancelled = parent_locked_first(&store, &family, &family.child, {
        let store = store.clone();
        async move { store.request_cancel(ns, &child, 20).await }
    })
    .await;
    assert_eq!(cancelled.expect("cancel"), hydra_store::CancelOutcome::Cancelled);
    parent_told(&store, &family).await;

    let family = Family::new(&store, false).await;
    let child = family.child.clone();
    let failed = parent_locked_first(&store, &family, &family.child, {
        let store = store.clone();
        async move { store.fail_now(ns, &child, "by hand", 20).await }
    })
    .await;
    assert_eq!(failed.expect("fail_now"), Ok(()));
    parent_told(&store, &family).await;
}

/// An operator's retry of a child (which withdraws its parent's untaken
/// news of its end) locks the parent before the child.
#[tokio::test]
async fn postgres_a_retry_of_a_child_locks_its_parent_before_itself() {
    let db = hydra_tests::TestDb::postgres().await;
    let store = db.store().await;
    let family = Family::new(&store, true).await;
    store.finish(&family.lease(&family.child), Terminal::Failed("broke".into()), 20).await.unwrap();
    let child = family.child.clone();
    let retried = parent_locked_first(&store, &family, &family.child, {
        let store = store.clone();
        async move { store.retry_run(NS, &child, 30).await }
    })
    .await;
    assert_eq!(retried.expect("retry").status, ExecutionStatus::Pending);
}
