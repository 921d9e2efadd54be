//! PostgreSQL only: a notification on channel `hydra_ended` (payload: the
//! execution ID) when a run ends (completed, failed, cancelled, timed out),
//! sent at commit. `RunHandle::result` in any process waits on it instead
//! of polling. SQLite has no such mechanism; there, a run ended by another
//! process is seen by the waiter's next poll.

use crate::prelude::*;

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    if !m.dialect().notifies() {
        return Ok(());
    }
    let db = m.get_connection();
    db.execute_unprepared(
        "CREATE OR REPLACE FUNCTION hydra_notify_ended() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_notify('hydra_ended', NEW.id); RETURN NULL; END $$",
    )
    .await?;
    db.execute_unprepared("DROP TRIGGER IF EXISTS workflow_executions_notify_ended ON workflow_executions").await?;
    db.execute_unprepared(
        "CREATE TRIGGER workflow_executions_notify_ended \
         AFTER UPDATE OF status ON workflow_executions FOR EACH ROW \
         WHEN (NEW.status IN ('completed', 'failed', 'cancelled', 'timed_out') \
           AND OLD.status IS DISTINCT FROM NEW.status) \
         EXECUTE FUNCTION hydra_notify_ended()",
    )
    .await?;
    Ok(())
}
