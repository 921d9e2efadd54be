//! PostgreSQL only: a notification on channel `hydra_cancel` (payload: the
//! execution ID) when a cancel is accepted for a running run, sent at
//! commit. The worker holding the run, in any process, hears the cancel at
//! once instead of at its next lease renewal. SQLite has no such
//! mechanism; there a worker that sees another process's commit checks the
//! runs it holds (`hydra-runtime/src/worker/cancels.rs`).

use crate::prelude::*;

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    if !m.dialect().notifies() {
        return Ok(());
    }
    let db = m.get_connection();
    db.execute_unprepared(
        "CREATE OR REPLACE FUNCTION hydra_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_notify('hydra_cancel', NEW.id); RETURN NULL; END $$",
    )
    .await?;
    db.execute_unprepared("DROP TRIGGER IF EXISTS workflow_executions_notify_cancel ON workflow_executions").await?;
    db.execute_unprepared(
        "CREATE TRIGGER workflow_executions_notify_cancel \
         AFTER UPDATE OF cancel_requested ON workflow_executions FOR EACH ROW \
         WHEN (NEW.cancel_requested AND NOT OLD.cancel_requested AND NEW.status = 'running') \
         EXECUTE FUNCTION hydra_notify_cancel()",
    )
    .await?;
    Ok(())
}
