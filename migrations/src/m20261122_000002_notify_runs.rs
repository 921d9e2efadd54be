//! PostgreSQL only: a notification on channel `hydra_runs` (payload: the
//! namespace) whenever a run becomes claimable now: created, handed back by
//! a worker, or set to retry. Workers in other processes `LISTEN` on it and
//! claim at once instead of waiting for their next poll. The notification is
//! sent at commit, so a listener never sees a run it cannot claim yet.
//! SQLite has no such mechanism; there, workers in other processes find new
//! runs on their next poll.

use crate::prelude::*;

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    if !m.dialect().notifies() {
        return Ok(());
    }
    let db = m.get_connection();
    db.execute_unprepared(
        "CREATE OR REPLACE FUNCTION hydra_notify_runs() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_notify('hydra_runs', NEW.namespace); RETURN NULL; END $$",
    )
    .await?;
    // Claims set `due_at` of running runs and sleeps set it in the future:
    // neither notifies. (DROP + CREATE rather than CREATE OR REPLACE
    // TRIGGER, which needs PostgreSQL 14.)
    db.execute_unprepared("DROP TRIGGER IF EXISTS workflow_executions_notify_runs ON workflow_executions").await?;
    db.execute_unprepared(
        "CREATE TRIGGER workflow_executions_notify_runs \
         AFTER INSERT OR UPDATE OF due_at ON workflow_executions FOR EACH ROW \
         WHEN (NEW.status = 'pending' OR (NEW.status = 'sleeping' AND NEW.due_at <= NEW.updated_at)) \
         EXECUTE FUNCTION hydra_notify_runs()",
    )
    .await?;
    Ok(())
}
