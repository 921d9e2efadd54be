//! The schema migrator: each migration applied once, in order, recorded in
//! `seaql_migrations` as earlier versions recorded it; a database from
//! another line of versions refused without a change; a failed migration
//! leaving nothing behind; an index rebuilt on a database with runs
//! (migration 12) finding them all.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use hydra_store::{Store, StoreError};
use hydra_tests::{TestDb, both_backends};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

async fn raw(db: &TestDb) -> DatabaseConnection {
    Database::connect(db.url.as_str()).await.unwrap()
}

async fn exec(c: &DatabaseConnection, sql: &str) {
    c.execute_raw(Statement::from_string(c.get_database_backend(), sql)).await.unwrap();
}

/// The recorded versions with their `applied_at`, in version order.
async fn recorded(c: &DatabaseConnection) -> Vec<(String, i64)> {
    let sql = "SELECT version, applied_at FROM seaql_migrations ORDER BY version";
    let rows = c.query_all_raw(Statement::from_string(c.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|r| (r.try_get("", "version").unwrap(), r.try_get("", "applied_at").unwrap())).collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

const SIGNALS: &str = "m20261201_000005_signals";

/// A migration's name is its identity in every database it ran on: a
/// renamed one would run again (and fail, or worse) on each of them.
#[test]
fn released_migrations_keep_their_names_and_order() {
    let released = [
        "m20261122_000001_create_schema",
        "m20261122_000002_notify_runs",
        "m20261201_000003_notify_ended",
        "m20261201_000004_worker_rows_text_key",
        SIGNALS,
        "m20261201_000006_events",
        "m20261201_000007_children",
        "m20261201_000008_child_policy",
        "m20261201_000009_typed_errors_and_compensation",
        "m20261201_000010_versions",
        "m20261201_000011_operations",
    ];
    let now: Vec<&str> = hydra_migrations::names().collect();
    assert_eq!(&now[..released.len()], released, "released migrations come first, unchanged");
}

both_backends! {
    async fn a_fresh_database_records_every_migration_once_in_seconds(db: TestDb) {
        let before = now_secs();
        drop(db.store().await);
        let c = raw(&db).await;
        let rows = recorded(&c).await;
        let names: Vec<&str> = hydra_migrations::names().collect();
        assert_eq!(rows.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(), names);
        for (version, at) in &rows {
            // Seconds, as SeaORM's migrator wrote them: databases it made
            // and databases made now read alike.
            assert!((before - 1..=now_secs() + 1).contains(at), "{version} applied at {at}");
        }
        // A second connect finds nothing pending and records nothing again.
        drop(db.store().await);
        assert_eq!(recorded(&c).await, rows);
    }

    async fn a_pending_migration_is_applied_and_the_applied_ones_are_not_run_again(db: TestDb) {
        drop(db.store().await);
        let c = raw(&db).await;
        // As if the database were made by a version that knew migrations 1
        // to 3 only (the fourth changes a column's type on PostgreSQL and
        // nothing on SQLite, so it may run again); every later migration
        // adds a column or table that a second run would trip over.
        let fourth = "m20261201_000004_worker_rows_text_key";
        exec(&c, &format!("DELETE FROM seaql_migrations WHERE version = '{fourth}'")).await;
        drop(db.store().await);
        let rows = recorded(&c).await;
        assert!(rows.iter().any(|(v, _)| v == fourth), "the pending migration is recorded: {rows:?}");
        assert_eq!(rows.len(), hydra_migrations::names().count());
    }

    async fn a_failed_migration_leaves_the_database_as_it_was(db: TestDb) {
        drop(db.store().await);
        let c = raw(&db).await;
        // Forget the signals migration and undo all of it but its last
        // statement: running it again creates the table, then fails adding a
        // column that is there.
        exec(&c, &format!("DELETE FROM seaql_migrations WHERE version = '{SIGNALS}'")).await;
        exec(&c, "DROP TABLE workflow_signals").await;
        let before = recorded(&c).await;
        let err = Store::connect(db.url.as_str()).await.expect_err("the failing migration fails the connect");
        assert!(matches!(err, StoreError::Migration(_)), "{err}");
        assert!(err.to_string().contains(SIGNALS), "the error names the migration: {err}");
        assert_eq!(recorded(&c).await, before, "nothing is recorded for a failed migration");
        let exists = match c.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'workflow_signals'"
            }
            _ => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'workflow_signals'",
        };
        let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), exists)).await.unwrap().unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 0, "the table the failed migration made is gone");
    }

    async fn a_newer_versions_database_is_used_as_it_is(db: TestDb) {
        drop(db.store().await);
        let c = raw(&db).await;
        // A later version added a migration this one does not know (a
        // rolling deploy: old workers still run beside new ones).
        exec(&c, &format!("INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29991231_000001_future', {})", now_secs())).await;
        let before = recorded(&c).await;
        let store = db.store().await;
        assert!(store.list_executions(&hydra_store::ExecutionFilter::new("x")).await.unwrap().is_empty());
        assert_eq!(recorded(&c).await, before);
    }

    async fn the_partial_indexes_migration_keeps_every_run_findable(db: TestDb) {
        use hydra_store::{Checkpoint, ExecutionFilter, NewExecution, Terminal, Transition, WorkerId};
        use hydra_tests::store_ops::{NS, WF, claim_req, create};
        let store = db.store().await;
        // A run with a key, its child, and a run that ended.
        let keyed = hydra_store::ExecutionId::generate(1);
        let mut new = NewExecution::new(keyed.clone(), NS, WF, vec![], 1);
        new.idempotency_key = Some("order-7".into());
        store.create_execution(new).await.unwrap();
        let child = hydra_store::ExecutionId::generate(2);
        let mut new = NewExecution::new(child.clone(), NS, WF, vec![], 2);
        new.parent_id = Some(keyed.clone());
        store.create_execution(new).await.unwrap();
        let ended = create(&store, NS, 3).await;
        let claimed = store.claim(&claim_req(NS, &WorkerId::generate(), 10, 10)).await.unwrap();
        let lease = claimed.into_iter().find(|c| c.execution.id == ended).unwrap().lease;
        let finish = Checkpoint::transition(Transition::Finish(Terminal::Completed(vec![1])));
        store.checkpoint(&lease, finish, 20).await.unwrap();
        drop(store);
        // As a database made before migration 12: the three indexes whole.
        let c = raw(&db).await;
        for (name, columns) in [
            ("idx_executions_ns_key", "namespace, idempotency_key, created_at, id"),
            ("idx_workflow_executions_parent", "parent_id"),
            ("idx_executions_ns_completed", "namespace, completed_at"),
        ] {
            exec(&c, &format!("DROP INDEX {name}")).await;
            exec(&c, &format!("CREATE INDEX {name} ON workflow_executions ({columns})")).await;
        }
        exec(&c, "DELETE FROM seaql_migrations WHERE version = 'm20261207_000012_partial_indexes'").await;
        // Connecting migrates it; every run is found as before.
        let store = db.store().await;
        assert_eq!(recorded(&c).await.len(), hydra_migrations::names().count());
        let by_key = store.list_executions(&ExecutionFilter::new(NS).idempotency_key("order-7")).await.unwrap();
        assert_eq!(by_key.iter().map(|r| &r.id).collect::<Vec<_>>(), [&keyed]);
        let children = store.children(NS, &keyed).await.unwrap();
        assert_eq!(children.iter().map(|r| &r.id).collect::<Vec<_>>(), [&child]);
        let buckets = store.ended_by_bucket(NS, 0, 1_000).await.unwrap();
        assert_eq!(buckets.iter().map(|b| (b.status.as_str(), b.runs)).collect::<Vec<_>>(), [("completed", 1)]);
        let partial = match c.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname IN ('idx_executions_ns_key', \
                 'idx_workflow_executions_parent', 'idx_executions_ns_completed') AND indexdef LIKE '%WHERE%'"
            }
            _ => {
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('idx_executions_ns_key', \
                 'idx_workflow_executions_parent', 'idx_executions_ns_completed') AND sql LIKE '%WHERE%'"
            }
        };
        let row = c.query_one_raw(Statement::from_string(c.get_database_backend(), partial)).await.unwrap().unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 3, "the three indexes are partial after the upgrade");
        // And the statements they exist for can use them: a partial index
        // whose condition the statement does not imply is never used.
        use hydra_tests::store_ops::{Costs, plan_of};
        for (what, stmt, index) in [
            ("key", store.list_statement(&ExecutionFilter::new(NS).idempotency_key("order-7")), "idx_executions_ns_key"),
            ("children", store.children_statement(NS, &keyed), "idx_workflow_executions_parent"),
            ("ended chart", store.ended_statement(NS, 0, 1_000), "idx_executions_ns_completed"),
        ] {
            let plan = plan_of(&store, &stmt, Costs::IndexIfUsable).await;
            assert!(plan.contains(index), "after the upgrade, {what} is not served by {index}: {plan}");
        }
    }

    async fn a_database_from_another_line_of_versions_is_refused_unchanged(db: TestDb) {
        drop(db.store().await);
        let c = raw(&db).await;
        // Unknown migrations recorded, and one of ours missing: the two
        // histories diverged, and neither order of applying them is safe.
        exec(&c, &format!("INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29991231_000001_elsewhere', {})", now_secs())).await;
        exec(&c, &format!("DELETE FROM seaql_migrations WHERE version = '{SIGNALS}'")).await;
        let before = recorded(&c).await;
        let err = Store::connect(db.url.as_str()).await.expect_err("refused");
        assert!(matches!(err, StoreError::Migration(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("m29991231_000001_elsewhere") && text.contains(SIGNALS), "{text}");
        assert_eq!(recorded(&c).await, before);
    }
}
