//! Store tests: every operation, happy path and refusal, with the same
//! bodies on SQLite and PostgreSQL (`store::sqlite::…`, `store::postgres::…`).
//! Group commits have their own file (`group_commit.rs`).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::sea_orm::{ConnectionTrait, DbBackend, Statement};
use hydra_store::{
    CancelOutcome, Checkpoint, ClaimRequest, ExecutionFilter, ExecutionId, ExecutionStatus, Lease, NewExecution,
    NewSignal, OpenStep, Receive, Received, StepId, StepKind, StepOutcome, StepRecord, StepStatus, Store, StoreError,
    Terminal, Transition, TriggerType, WorkerId,
};
use hydra_tests::both_backends;
use hydra_tests::store_ops::{NS, TTL, WF, attempt, claim_one, claim_req, create, record};
use std::collections::HashSet;

both_backends! {
    async fn a_retried_receive_whose_commit_went_through_answers_what_it_took(db: TestDb) {
        let store = db.store().await;
        // A receive commits, its reply is lost, the run retries it under the
        // same lease: the retry answers the signal the first one took, and
        // the next signal stays for the next receive.
        let w = WorkerId::generate();
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &w, 0).await;
        for (n, payload) in [(1, vec![7u8]), (2, vec![8u8])] {
            store.send_signal(&NewSignal::new(NS, id.clone(), "go", payload, n)).await.unwrap();
        }
        let rec = StepRecord::new(StepId::new("signal:go", 1), "signal:go", 0, StepKind::Signal, 1, StepOutcome::Waiting);
        let receive = Receive::new(rec, "go", None);
        for round in ["first", "retry"] {
            match store.receive_signal(&lease, &receive, 5).await.unwrap() {
                Received::Signal { name, payload } => assert_eq!((name.as_str(), payload), ("go", vec![7u8]), "{round}"),
                other => panic!("{round}: {other:?}"),
            }
        }
        let rec = StepRecord::new(StepId::new("signal:go", 2), "signal:go", 1, StepKind::Signal, 1, StepOutcome::Waiting);
        match store.receive_signal(&lease, &Receive::new(rec, "go", None), 6).await.unwrap() {
            Received::Signal { payload, .. } => assert_eq!(payload, vec![8u8], "the second signal is still there"),
            other => panic!("{other:?}"),
        }
    }

    async fn create_returns_a_pending_due_run(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 1_000).await;
        let e = store.get_execution(NS, &id).await.unwrap().expect("run exists");
        assert_eq!(e.status, ExecutionStatus::Pending);
        assert_eq!(e.input, vec![1, 2, 3]);
        assert_eq!(e.due_at, Some(1_000));
        assert_eq!(e.attempts, 0);
        assert_eq!(e.fencing_token.get(), 0);
        assert_eq!(e.trigger_type, TriggerType::Api);
    }

    async fn same_idempotency_key_returns_the_existing_run(db: TestDb) {
        let store = db.store().await;
        let mut first = NewExecution::new(ExecutionId::generate(1), NS, WF, vec![1], 1);
        first.idempotency_key = Some("order-42".into());
        let a = store.create_execution(first).await.unwrap();
        assert!(matches!(a, hydra_store::Created::New(_)));
        let mut second = NewExecution::new(ExecutionId::generate(2), NS, WF, vec![2], 2);
        second.idempotency_key = Some("order-42".into());
        let b = store.create_execution(second).await.unwrap();
        assert!(matches!(b, hydra_store::Created::Existing(_)), "second create must not insert");
        assert_eq!(a.execution().id, b.execution().id);
        assert_eq!(b.execution().input, vec![1], "the existing run is returned unchanged");
        let all = store.list_executions(&ExecutionFilter::new(NS)).await.unwrap();
        assert_eq!(all.len(), 1, "exactly one row for one key");
        // The key is scoped to (namespace, workflow).
        let mut other_wf = NewExecution::new(ExecutionId::generate(3), NS, "other", vec![3], 3);
        other_wf.idempotency_key = Some("order-42".into());
        assert!(matches!(store.create_execution(other_wf).await.unwrap(), hydra_store::Created::New(_)));
        let mut other_ns = NewExecution::new(ExecutionId::generate(4), "elsewhere", WF, vec![4], 4);
        other_ns.idempotency_key = Some("order-42".into());
        assert!(matches!(store.create_execution(other_ns).await.unwrap(), hydra_store::Created::New(_)));
    }

    async fn claim_takes_due_runs_and_raises_the_token(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 1_000).await;
        let w = WorkerId::generate();
        assert!(store.claim(&claim_req(NS, &w, 999, 10)).await.unwrap().is_empty(), "not due before due_at");
        let claimed = store.claim(&claim_req(NS, &w, 1_000, 10)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let c = &claimed[0];
        assert_eq!(c.execution.id, id);
        assert_eq!(c.execution.status, ExecutionStatus::Running);
        assert_eq!(c.execution.lease_owner.as_ref(), Some(&w));
        assert_eq!(c.execution.attempts, 1);
        assert_eq!(c.execution.started_at, Some(1_000));
        assert_eq!(c.execution.lease_expires_at(), Some(1_000 + TTL));
        assert_eq!(c.lease.token.get(), 1);
        assert!(store.claim(&claim_req(NS, &w, 2_000, 10)).await.unwrap().is_empty(), "a held lease is not claimable");
    }

    async fn claim_only_takes_registered_workflows(db: TestDb) {
        let store = db.store().await;
        create(&store, NS, 0).await;
        let w = WorkerId::generate();
        let req = ClaimRequest::new(NS, vec!["something-else".into()], w.clone(), 10, TTL, 10);
        assert!(store.claim(&req).await.unwrap().is_empty());
        let req = ClaimRequest::new(NS, vec![], w, 10, TTL, 10);
        assert!(store.claim(&req).await.unwrap().is_empty());
    }

    async fn claim_respects_the_batch_limit(db: TestDb) {
        let store = db.store().await;
        for i in 0..5 {
            create(&store, NS, i).await;
        }
        let w = WorkerId::generate();
        assert_eq!(store.claim(&claim_req(NS, &w, 100, 3)).await.unwrap().len(), 3);
        assert_eq!(store.claim(&claim_req(NS, &w, 100, 3)).await.unwrap().len(), 2);
        assert_eq!(store.claim(&claim_req(NS, &w, 100, 3)).await.unwrap().len(), 0);
    }

    async fn twenty_concurrent_claimers_claim_each_run_exactly_once(db: TestDb) {
        // Separate stores (separate pools) so that SQLite claimers really use
        // several connections to the one file.
        let setup = db.store().await;
        let mut ids = HashSet::new();
        for i in 0..200 {
            ids.insert(create(&setup, NS, i).await);
        }
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = db.store_with(|o| o.max_connections(2)).await;
            tasks.push(tokio::spawn(async move {
                let w = WorkerId::generate();
                let mut mine = Vec::new();
                loop {
                    let got = loop {
                        match store.claim(&claim_req(NS, &w, 10_000, 7)).await {
                            Ok(got) => break got,
                            Err(e) if e.is_retryable() => tokio::task::yield_now().await,
                            Err(e) => panic!("claim failed: {e}"),
                        }
                    };
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.into_iter().map(|c| c.execution.id));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let distinct: HashSet<_> = all.iter().cloned().collect();
        assert_eq!(all.len(), 200, "every run claimed exactly once in total");
        assert_eq!(distinct, ids, "the claimed set is exactly the created set");
        for id in &ids {
            let e = setup.get_execution(NS, id).await.unwrap().unwrap();
            assert_eq!(e.fencing_token.get(), 1, "one claim per run");
        }
    }

    async fn expired_lease_takeover_rejects_every_old_token_write(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let (a, b) = (WorkerId::generate(), WorkerId::generate());
        let old = claim_one(&store, &id, &a, 0).await;
        store.record_step_result(&old, record("first", 0, StepOutcome::Completed(vec![1])), 10).await.unwrap();
        // A stalls; its lease expires; B takes over.
        let new = claim_one(&store, &id, &b, TTL + 1).await;
        assert!(new.token > old.token, "token grew: {} -> {}", old.token, new.token);
        let now = TTL + 2;
        let lost = |r: Result<(), StoreError>, what: &str| {
            assert!(matches!(r, Err(StoreError::LeaseLost { .. })), "{what} with the old token must be rejected: {r:?}");
        };
        lost(store.renew_lease(&old, now, TTL).await.map(|_| ()), "renew");
        lost(store.record_step_attempt(&old, &attempt("second", 1), now).await.map(|_| ()), "step attempt");
        lost(store.record_step_result(&old, record("second", 1, StepOutcome::Completed(vec![2])), now).await, "step result");
        lost(store.schedule_wakeup(&old, now + 1_000, now).await, "sleep");
        lost(store.finish(&old, Terminal::Completed(vec![9]), now).await, "complete");
        lost(store.finish(&old, Terminal::Failed("x".into()), now).await, "fail");
        lost(store.finish(&old, Terminal::Cancelled("x".into()), now).await, "cancel");
        lost(store.release(&old, now).await, "release");
        lost(
            store.checkpoint(&old, Checkpoint::transition(Transition::Retry { at: now, error: "e".into() }), now).await,
            "retry",
        );
        // Nothing of A's late writes landed; B's work proceeds.
        let steps = store.steps(NS, &id).await.unwrap();
        assert_eq!(steps.len(), 1, "only the step written under the live token exists");
        assert_eq!(steps[0].fencing_token, old.token);
        store.record_step_result(&new, record("second", 1, StepOutcome::Completed(vec![2])), now).await.unwrap();
        store.finish(&new, Terminal::Completed(vec![7]), now).await.unwrap();
        let e = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!(e.status, ExecutionStatus::Completed);
        assert_eq!(e.output, Some(vec![7]));
        assert_eq!(e.attempts, 2, "the takeover began a new attempt: the crash counts");
    }

    async fn renew_extends_the_lease_and_refuses_after_expiry(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &WorkerId::generate(), 0).await;
        let r = store.renew_lease(&lease, 1_000, TTL).await.unwrap();
        assert_eq!(r.expires_at, 1_000 + TTL);
        assert!(!r.cancel_requested);
        let e = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!(e.lease_expires_at(), Some(1_000 + TTL), "heartbeat moved expires_at");
        let late = store.renew_lease(&lease, 1_000 + TTL, TTL).await;
        assert!(matches!(late, Err(StoreError::LeaseLost { .. })), "renewal after expiry reports loss: {late:?}");
        let batch = store.renew_leases(std::slice::from_ref(&lease), 1_000 + TTL + 5, TTL).await.unwrap();
        assert!(batch[0].is_err());
    }

    async fn renew_leases_reports_each_lease(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let a = create(&store, NS, 0).await;
        let b = create(&store, NS, 0).await;
        let la = claim_one(&store, &a, &w, 0).await;
        let lb = store.get_execution(NS, &b).await.unwrap().unwrap();
        assert_eq!(lb.status, ExecutionStatus::Running, "claim_one claimed both");
        let lb = Lease { namespace: NS.into(), execution_id: b.clone(), worker_id: w.clone(), token: lb.fencing_token };
        store.finish(&lb, Terminal::Completed(vec![]), 5).await.unwrap();
        let out = store.renew_leases(&[la, lb], 10, TTL).await.unwrap();
        assert!(out[0].is_ok());
        assert!(matches!(out[1], Err(StoreError::LeaseLost { .. })), "a finished run's lease is gone");
    }

    async fn a_second_result_for_one_step_is_rejected(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &WorkerId::generate(), 0).await;
        store.record_step_result(&lease, record("pay", 0, StepOutcome::Completed(vec![1])), 1).await.unwrap();
        let again = store.record_step_result(&lease, record("pay", 0, StepOutcome::Completed(vec![2])), 2).await;
        assert!(matches!(again, Err(StoreError::StepAlreadyRecorded { .. })), "{again:?}");
        let s = store.step(NS, &id, &StepId::new("pay", 1)).await.unwrap().unwrap();
        assert_eq!(s.output, Some(vec![1]), "the first result is kept");
        // And the schema itself refuses a second row for (execution, step).
        let backend = store.connection().get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, \
                kind, status, attempts, max_attempts, started_at, fencing_token) \
                VALUES ($1, $2, 'pay', 'pay', 99, 'step', 'completed', 1, 1, 0, 1)",
            _ => "INSERT INTO workflow_steps (execution_id, namespace, step_id, step_name, position, \
                kind, status, attempts, max_attempts, started_at, fencing_token) \
                VALUES (?, ?, 'pay', 'pay', 99, 'step', 'completed', 1, 1, 0, 1)",
        };
        let raw = store
            .connection()
            .execute_raw(Statement::from_sql_and_values(backend, sql, [id.as_str().into(), NS.into()]))
            .await;
        let err = raw.expect_err("the unique index must reject a duplicate (execution_id, step_id)");
        assert!(
            matches!(err.sql_err(), Some(hydra_store::sea_orm::SqlErr::UniqueConstraintViolation(_))),
            "unique violation expected, got {err}"
        );
    }

    async fn step_attempts_are_counted_before_the_body(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &WorkerId::generate(), 0).await;
        assert_eq!(store.record_step_attempt(&lease, &attempt("pay", 0), 1).await.unwrap(), 1);
        assert_eq!(store.record_step_attempt(&lease, &attempt("pay", 0), 2).await.unwrap(), 2);
        store.record_step_result(&lease, record("pay", 0, StepOutcome::AttemptFailed("flaky".into())), 3).await.unwrap();
        assert_eq!(store.record_step_attempt(&lease, &attempt("pay", 0), 4).await.unwrap(), 3);
        let s = store.step(NS, &id, &StepId::new("pay", 1)).await.unwrap().unwrap();
        assert_eq!((s.status, s.attempts), (StepStatus::Running, 3));
        store.record_step_result(&lease, record("pay", 0, StepOutcome::Completed(vec![5])), 5).await.unwrap();
        let done = store.record_step_attempt(&lease, &attempt("pay", 0), 6).await;
        assert!(matches!(done, Err(StoreError::StepAlreadyRecorded { .. })), "{done:?}");
        let clash = store.record_step_attempt(&lease, &attempt("other", 0), 7).await;
        assert!(matches!(clash, Err(StoreError::PositionTaken { position: 0, .. })), "{clash:?}");
        let clash = store.record_step_result(&lease, record("other", 0, StepOutcome::Completed(vec![])), 7).await;
        assert!(matches!(clash, Err(StoreError::PositionTaken { position: 0, .. })), "{clash:?}");
        // The same with the open step moved by the write (the runtime's path).
        let cp = Checkpoint::step(record("other", 0, StepOutcome::Completed(vec![]))).open(OpenStep::new(1, 1));
        let clash = store.checkpoint(&lease, cp, 8).await;
        assert!(matches!(clash, Err(StoreError::PositionTaken { position: 0, .. })), "{clash:?}");
        let run = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!(run.open_step, OpenStep::new(0, 1), "the refused write moved nothing");
        let s = store.step(NS, &id, &StepId::new("pay", 1)).await.unwrap().unwrap();
        assert_eq!((s.status, s.attempts, s.output), (StepStatus::Completed, 3, Some(vec![5])));
    }

    async fn sleep_releases_the_lease_and_wakes_when_due(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let w = WorkerId::generate();
        let lease = claim_one(&store, &id, &w, 0).await;
        let mut rec = record("nap", 0, StepOutcome::Completed(vec![]));
        rec.kind = StepKind::Sleep;
        rec.wake_at = Some(50_000);
        store.checkpoint(&lease, Checkpoint::step_and(rec, Transition::Sleep { until: 50_000 }), 10).await.unwrap();
        let e = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!((e.status, e.due_at, e.lease_owner), (ExecutionStatus::Sleeping, Some(50_000), None));
        assert!(store.claim(&claim_req(NS, &w, 49_999, 10)).await.unwrap().is_empty(), "not before its wake-up");
        let again = claim_one(&store, &id, &w, 50_000).await;
        assert_eq!(again.token.get(), 2);
        let e = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!(e.attempts, 1, "waking from sleep continues the same attempt");
        let s = store.steps(NS, &id).await.unwrap();
        assert_eq!((s[0].kind, s[0].wake_at), (StepKind::Sleep, Some(50_000)));
    }

    async fn claim_skips_finished_cancelled_and_future_sleepers(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let done = create(&store, NS, 0).await;
        let failed = create(&store, NS, 0).await;
        let cancelled = create(&store, NS, 0).await;
        let sleeper = create(&store, NS, 0).await;
        let due_sleeper = create(&store, NS, 0).await;
        let claimed = store.claim(&claim_req(NS, &w, 0, 10)).await.unwrap();
        assert_eq!(claimed.len(), 5);
        let lease = |id: &ExecutionId| claimed.iter().find(|c| &c.execution.id == id).unwrap().lease.clone();
        store.finish(&lease(&done), Terminal::Completed(vec![]), 1).await.unwrap();
        store.finish(&lease(&failed), Terminal::Failed("boom".into()), 1).await.unwrap();
        store.finish(&lease(&cancelled), Terminal::Cancelled("stop".into()), 1).await.unwrap();
        store.schedule_wakeup(&lease(&sleeper), 1_000_000, 1).await.unwrap();
        store.schedule_wakeup(&lease(&due_sleeper), 500, 1).await.unwrap();
        let pending = create(&store, NS, 600).await;
        let got: HashSet<_> =
            store.claim(&claim_req(NS, &w, 1_000, 10)).await.unwrap().into_iter().map(|c| c.execution.id).collect();
        assert_eq!(got, HashSet::from([due_sleeper, pending]));
        for id in [&done, &failed, &cancelled] {
            let e = store.get_execution(NS, id).await.unwrap().unwrap();
            assert!(e.status.is_terminal());
            assert_eq!(e.due_at, None, "terminal runs leave the claim index");
        }
    }

    async fn finish_records_output_and_errors(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let a = create(&store, NS, 0).await;
        let la = claim_one(&store, &a, &w, 0).await;
        store.finish(&la, Terminal::Completed(vec![4, 2]), 9).await.unwrap();
        let e = store.get_execution(NS, &a).await.unwrap().unwrap();
        assert_eq!((e.status, e.output, e.completed_at), (ExecutionStatus::Completed, Some(vec![4, 2]), Some(9)));
        let again = store.finish(&la, Terminal::Failed("late".into()), 10).await;
        assert!(matches!(again, Err(StoreError::LeaseLost { .. })), "an ended run accepts no more writes");
        let b = create(&store, NS, 0).await;
        let lb = claim_one(&store, &b, &w, 0).await;
        store.finish(&lb, Terminal::TimedOut("deadline".into()), 9).await.unwrap();
        let e = store.get_execution(NS, &b).await.unwrap().unwrap();
        assert_eq!((e.status, e.error.as_deref()), (ExecutionStatus::TimedOut, Some("deadline")));
    }

    async fn workflow_retry_begins_a_new_attempt(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let id = create(&store, NS, 0).await;
        let l1 = claim_one(&store, &id, &w, 0).await;
        store
            .checkpoint(&l1, Checkpoint::transition(Transition::Retry { at: 100, error: "flaky".into() }), 1)
            .await
            .unwrap();
        let e = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!((e.status, e.due_at, e.error.as_deref()), (ExecutionStatus::Pending, Some(100), Some("flaky")));
        assert!(store.claim(&claim_req(NS, &w, 99, 10)).await.unwrap().is_empty());
        claim_one(&store, &id, &w, 100).await;
        assert_eq!(store.get_execution(NS, &id).await.unwrap().unwrap().attempts, 2);
    }

    async fn release_lets_another_worker_resume_at_once(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let l = claim_one(&store, &id, &WorkerId::generate(), 0).await;
        store.release(&l, 5).await.unwrap();
        let l2 = claim_one(&store, &id, &WorkerId::generate(), 5).await;
        assert!(l2.token > l.token);
        assert_eq!(store.get_execution(NS, &id).await.unwrap().unwrap().attempts, 1, "a release is not an attempt");
    }

    async fn cancel_ends_idle_runs_and_flags_running_ones(db: TestDb) {
        let store = db.store().await;
        let idle = create(&store, NS, 0).await;
        assert_eq!(store.request_cancel(NS, &idle, 1).await.unwrap(), CancelOutcome::Cancelled);
        assert_eq!(store.get_execution(NS, &idle).await.unwrap().unwrap().status, ExecutionStatus::Cancelled);
        assert_eq!(
            store.request_cancel(NS, &idle, 2).await.unwrap(),
            CancelOutcome::AlreadyEnded(ExecutionStatus::Cancelled)
        );
        let busy = create(&store, NS, 0).await;
        let lease = claim_one(&store, &busy, &WorkerId::generate(), 0).await;
        assert_eq!(store.request_cancel(NS, &busy, 3).await.unwrap(), CancelOutcome::Requested);
        assert!(store.renew_lease(&lease, 4, TTL).await.unwrap().cancel_requested, "the holder learns of it");
        // A run that ran and parked is made due now, flagged, for a worker
        // to end (running its compensations).
        let parked = create(&store, NS, 0).await;
        let lease = claim_one(&store, &parked, &WorkerId::generate(), 0).await;
        store.checkpoint(&lease, Checkpoint::transition(Transition::Sleep { until: 1_000_000 }), 1).await.unwrap();
        assert_eq!(store.request_cancel(NS, &parked, 6).await.unwrap(), CancelOutcome::Requested);
        let e = store.get_execution(NS, &parked).await.unwrap().unwrap();
        assert_eq!((e.status, e.cancel_requested, e.due_at), (ExecutionStatus::Sleeping, true, Some(6)));
        let missing = store.request_cancel(NS, &ExecutionId::generate(0), 5).await;
        assert!(matches!(missing, Err(StoreError::ExecutionNotFound { .. })), "{missing:?}");
    }

    async fn reclaim_expired_moves_the_token_and_counts_the_attempt(db: TestDb) {
        let store = db.store().await;
        let id = create(&store, NS, 0).await;
        let old = claim_one(&store, &id, &WorkerId::generate(), 0).await;
        assert_eq!(store.reclaim_expired(NS, TTL - 1).await.unwrap(), 0, "a live lease is not reclaimed");
        assert_eq!(store.reclaim_expired(NS, TTL).await.unwrap(), 1);
        let e = store.get_execution(NS, &id).await.unwrap().unwrap();
        assert_eq!((e.status, e.lease_owner), (ExecutionStatus::Pending, None));
        assert!(e.fencing_token > old.token);
        let late = store.record_step_result(&old, record("s", 0, StepOutcome::Completed(vec![])), TTL + 1).await;
        assert!(matches!(late, Err(StoreError::LeaseLost { .. })), "{late:?}");
        claim_one(&store, &id, &WorkerId::generate(), TTL + 1).await;
        assert_eq!(store.get_execution(NS, &id).await.unwrap().unwrap().attempts, 2);
    }

    async fn namespaces_do_not_see_each_other(db: TestDb) {
        let store = db.store().await;
        let mine = create(&store, "a", 0).await;
        let theirs = create(&store, "b", 0).await;
        let w = WorkerId::generate();
        let got: Vec<_> =
            store.claim(&claim_req("a", &w, 10, 100)).await.unwrap().into_iter().map(|c| c.execution.id).collect();
        assert_eq!(got, vec![mine.clone()], "a's claimer never sees b's run");
        assert!(store.get_execution("a", &theirs).await.unwrap().is_none());
        assert!(matches!(store.request_cancel("a", &theirs, 1).await, Err(StoreError::ExecutionNotFound { .. })));
        assert_eq!(store.list_executions(&ExecutionFilter::new("a")).await.unwrap().len(), 1);
        assert_eq!(store.reclaim_expired("a", i64::MAX / 2).await.unwrap(), 1, "only a's expired lease");
        assert_eq!(store.get_execution("b", &theirs).await.unwrap().unwrap().status, ExecutionStatus::Pending);
        // A lease presented under the wrong namespace is not a lease.
        let lease = claim_one_in(&store, "b", &theirs, &w).await;
        let forged = Lease { namespace: "a".into(), ..lease.clone() };
        assert!(matches!(store.finish(&forged, Terminal::Completed(vec![]), 20).await, Err(StoreError::LeaseLost { .. })));
        store.record_step_result(&lease, record("s", 0, StepOutcome::Completed(vec![])), 21).await.unwrap();
        assert!(store.steps("a", &theirs).await.unwrap().is_empty());
        assert_eq!(store.steps("b", &theirs).await.unwrap().len(), 1);
    }

    async fn list_filters_and_steps_come_in_call_order(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let a = create(&store, NS, 1).await;
        let b = create(&store, NS, 2).await;
        let mut other = NewExecution::new(ExecutionId::generate(3), NS, "other", vec![], 3);
        other.trigger_type = TriggerType::Cron;
        other.trigger_source = Some("nightly".into());
        store.create_execution(other).await.unwrap();
        let all = store.list_executions(&ExecutionFilter::new(NS)).await.unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|p| p[0].created_at >= p[1].created_at), "newest first");
        assert_eq!(all[0].trigger_type, TriggerType::Cron);
        assert_eq!(all[0].trigger_source.as_deref(), Some("nightly"));
        assert_eq!(store.list_executions(&ExecutionFilter::new(NS).workflow(WF)).await.unwrap().len(), 2);
        assert_eq!(store.list_executions(&ExecutionFilter::new(NS).limit(1)).await.unwrap().len(), 1);
        assert_eq!(store.list_executions(&ExecutionFilter::new(NS).created_before(2)).await.unwrap()[0].id, a);
        let la = claim_one(&store, &a, &w, 10).await;
        assert_eq!(
            store.list_executions(&ExecutionFilter::new(NS).status(ExecutionStatus::Running)).await.unwrap().len(),
            2
        );
        for (pos, name) in ["one", "two", "three"].iter().enumerate() {
            store.record_step_result(&la, record(name, pos as u32, StepOutcome::Completed(vec![])), 20).await.unwrap();
        }
        let names: Vec<_> = store.steps(NS, &a).await.unwrap().into_iter().map(|s| s.step_name).collect();
        assert_eq!(names, ["one", "two", "three"]);
        assert!(store.steps(NS, &b).await.unwrap().is_empty());
    }

    async fn worker_liveness_rows_follow_heartbeats(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        store.heartbeat_worker(NS, &w, 0, 1_000).await.unwrap();
        store.heartbeat_worker(NS, &w, 500, 1_000).await.unwrap();
        let live = store.live_workers(NS, 1_200).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].acquired_at, live[0].heartbeat_at, live[0].expires_at), (0, 500, 1_500));
        assert!(store.live_workers(NS, 1_500).await.unwrap().is_empty(), "expired without a heartbeat");
        assert!(store.live_workers("other", 0).await.unwrap().is_empty());
        store.remove_worker(NS, &w).await.unwrap();
        assert!(store.live_workers(NS, 0).await.unwrap().is_empty());
    }

    async fn a_run_written_by_a_newer_version_with_an_unknown_trigger_is_claimed_and_runs(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let id = create(&store, NS, 0).await;
        let c = store.connection();
        let q = format!("UPDATE workflow_executions SET trigger_type = 'martian' WHERE id = '{id}'");
        c.execute_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap();
        let claimed = store.claim(&claim_req(NS, &w, 10, 10)).await.unwrap();
        assert_eq!(claimed.len(), 1, "the run is claimed, not failed for an informational field");
        assert_eq!(claimed[0].execution.trigger_type, TriggerType::Other);
        assert_eq!(store.list_executions(&ExecutionFilter::new(NS)).await.unwrap().len(), 1, "and listed");
    }

    async fn a_lease_renewed_for_the_longest_time_saturates_and_stays_held(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &w, 1).await;
        let renewed = store.renew_lease(&lease, 10, i64::MAX).await.unwrap();
        assert_eq!(renewed.expires_at, i64::MAX, "saturates instead of wrapping to the past");
        assert!(store.claim(&claim_req(NS, &w, 20, 10)).await.unwrap().is_empty(), "nobody can take it over");
    }

    async fn a_worker_of_the_longest_namespace_and_id_heartbeats(db: TestDb) {
        let store = db.store().await;
        let ns = "n".repeat(255);
        let w = WorkerId::from_string("w".repeat(255));
        store.heartbeat_worker(&ns, &w, 0, 1_000).await.expect("a liveness row for any valid namespace and ID");
        assert_eq!(store.live_workers(&ns, 10).await.unwrap().len(), 1);
        store.remove_worker(&ns, &w).await.unwrap();
        assert!(store.live_workers(&ns, 10).await.unwrap().is_empty());
    }

    async fn a_conditional_hand_back_of_the_open_step_never_undoes_a_newer_move(db: TestDb) {
        let store = db.store().await;
        let w = WorkerId::generate();
        let id = create(&store, NS, 0).await;
        let lease = claim_one(&store, &id, &w, 1).await;
        let open = |store: Store, id: ExecutionId| async move {
            store.get_execution(NS, &id).await.unwrap().unwrap().open_step
        };
        assert_eq!(open(store.clone(), id.clone()).await, OpenStep::new(0, 1), "the claim reserved attempt 1");
        // A sibling's result moved it meanwhile (here: to attempt 2).
        let moved = Checkpoint::transition(Transition::Continue).open(OpenStep::new(0, 2));
        store.checkpoint(&lease, moved, 2).await.unwrap();
        // A hand-back based on the older view changes nothing.
        let stale = Checkpoint::transition(Transition::Continue).open_if_unchanged(OpenStep::new(0, 1), OpenStep::new(0, 0));
        store.checkpoint(&lease, stale, 3).await.unwrap();
        assert_eq!(open(store.clone(), id.clone()).await, OpenStep::new(0, 2), "the newer move stands");
        // Based on the current view, it applies.
        let current = Checkpoint::transition(Transition::Continue).open_if_unchanged(OpenStep::new(0, 2), OpenStep::new(0, 1));
        store.checkpoint(&lease, current, 4).await.unwrap();
        assert_eq!(open(store.clone(), id.clone()).await, OpenStep::new(0, 1));
    }

    async fn worker_liveness_rows_are_per_namespace_and_dead_ones_are_pruned(db: TestDb) {
        let store = db.store().await;
        let shared = WorkerId::from_string("host-a/worker");
        store.heartbeat_worker(NS, &shared, 0, 1_000).await.unwrap();
        store.heartbeat_worker("other", &shared, 0, 1_000).await.unwrap();
        assert_eq!(store.live_workers(NS, 10).await.unwrap().len(), 1);
        assert_eq!(store.live_workers("other", 10).await.unwrap().len(), 1, "one row per namespace");
        store.remove_worker(NS, &shared).await.unwrap();
        assert!(store.live_workers(NS, 10).await.unwrap().is_empty());
        assert_eq!(store.live_workers("other", 10).await.unwrap().len(), 1, "removal stays in its namespace");

        let rows = |ns: &'static str| {
            let c = store.connection().clone();
            async move {
                let q = format!("SELECT COUNT(*) FROM leases WHERE namespace = '{ns}'");
                let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap();
                row.unwrap().try_get_by_index::<i64>(0).unwrap()
            }
        };
        // A worker that died at 1,000 (TTL 1 s) is kept for ten TTLs, then a
        // living worker's heartbeat deletes its row; other namespaces keep theirs.
        let dead = WorkerId::from_string("dead");
        let alive = WorkerId::from_string("alive");
        store.heartbeat_worker(NS, &dead, 0, 1_000).await.unwrap();
        store.heartbeat_worker(NS, &alive, 5_000, 1_000).await.unwrap();
        assert_eq!(rows(NS).await, 2, "a recently dead worker stays visible");
        store.heartbeat_worker(NS, &alive, 11_001, 1_000).await.unwrap();
        assert_eq!(rows(NS).await, 1, "the dead worker's row is pruned");
        assert_eq!(rows("other").await, 1, "another namespace's rows are not pruned");
    }

    async fn concurrent_migrations_on_a_fresh_database_succeed(db: TestDb) {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move { Store::connect(&url).await.map(|_| ()) }));
        }
        for t in tasks {
            t.await.unwrap().expect("every concurrent connect+migrate succeeds");
        }
        let store = db.store().await;
        create(&store, NS, 0).await;
    }
}

async fn claim_one_in(store: &Store, ns: &str, id: &ExecutionId, w: &WorkerId) -> Lease {
    let mut req = claim_req(ns, w, 100, 10);
    req.namespace = ns.into();
    store.claim(&req).await.unwrap().into_iter().find(|c| &c.execution.id == id).expect("claimed").lease
}

/// SQLite keeps whatever a hand edit writes, even text in an integer
/// column: such a row does not convert. The claim ends that run alone,
/// saying why, and hands out the others (PostgreSQL's column types rule
/// this row out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_claimed_row_that_does_not_convert_fails_alone_and_the_claim_returns_the_others() {
    let db = hydra_tests::TestDb::sqlite();
    let store = db.store().await;
    let w = WorkerId::generate();
    let good = create(&store, NS, 0).await;
    let bad = create(&store, NS, 0).await;
    let c = store.connection();
    let q = format!("UPDATE workflow_executions SET max_attempts = 'many' WHERE id = '{bad}'");
    c.execute_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap();
    let claimed = store.claim(&claim_req(NS, &w, 10, 10)).await.expect("one bad row does not fail the claim");
    let ids: Vec<_> = claimed.iter().map(|c| c.execution.id.clone()).collect();
    assert_eq!(ids, std::slice::from_ref(&good), "only the readable run is handed out");
    let q = format!("SELECT status, error_message, due_at FROM workflow_executions WHERE id = '{bad}'");
    let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap().unwrap();
    assert_eq!(row.try_get::<String>("", "status").unwrap(), "failed");
    assert!(row.try_get::<String>("", "error_message").unwrap().contains("cannot be read"));
    assert_eq!(row.try_get::<Option<i64>>("", "due_at").unwrap(), None, "not claimable again");
}

/// A child whose row does not convert is failed at its claim like any
/// unreadable run, and its parent is told, as of any other end: a parent
/// waiting for it does not wait for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_unreadable_child_failed_at_its_claim_tells_its_parent() {
    let db = hydra_tests::TestDb::sqlite();
    let store = db.store().await;
    let parent = create(&store, "parents", 0).await;
    let child = ExecutionId::generate(0);
    let mut new = NewExecution::new(child.clone(), NS, WF, vec![1], 0);
    new.parent_id = Some(parent.clone());
    store.create_execution(new).await.unwrap();
    let c = store.connection();
    let q = format!("UPDATE workflow_executions SET max_attempts = 'many' WHERE id = '{child}'");
    c.execute_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap();
    let claimed = store.claim(&claim_req(NS, &WorkerId::generate(), 10, 10)).await.unwrap();
    assert!(claimed.is_empty());
    let q = format!("SELECT name, payload FROM workflow_signals WHERE execution_id = '{parent}'");
    let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), q)).await.unwrap().expect("told");
    assert_eq!(row.try_get::<String>("", "name").unwrap(), format!("child:{child}"));
    let payload: Vec<u8> = row.try_get("", "payload").unwrap();
    assert_eq!(payload.first(), Some(&0u8), "an end without an output");
    assert!(String::from_utf8_lossy(&payload).contains("cannot be read"));
}
