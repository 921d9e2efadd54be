//! A run's typed error (`error_data`: the workflow's own error value,
//! encoded by the run's codec, beside the `error_message` text), and the
//! end state `compensation_failed` (a run whose compensations did not all
//! succeed), which PostgreSQL's `hydra_ended` notification now includes
//! and its `status` column now fits.

use crate::prelude::*;

#[derive(DeriveIden)]
enum Executions {
    #[sea_orm(iden = "workflow_executions")]
    Table,
    ErrorData,
}

/// The trigger of `hydra_runs` notifications, unchanged.
const RUNS_TRIGGER: &str = "CREATE TRIGGER workflow_executions_notify_runs \
     AFTER INSERT OR UPDATE OF due_at ON workflow_executions FOR EACH ROW \
     WHEN (NEW.status = 'pending' OR (NEW.status = 'sleeping' AND NEW.due_at <= NEW.updated_at)) \
     EXECUTE FUNCTION hydra_notify_runs()";

fn trigger(statuses: &str) -> String {
    format!(
        "CREATE TRIGGER workflow_executions_notify_ended \
         AFTER UPDATE OF status ON workflow_executions FOR EACH ROW \
         WHEN (NEW.status IN ({statuses}) AND OLD.status IS DISTINCT FROM NEW.status) \
         EXECUTE FUNCTION hydra_notify_ended()"
    )
}

pub(crate) async fn up(m: &Manager<'_>) -> Result<(), DbErr> {
    m.alter_table(
        Table::alter()
            .table(Executions::Table)
            .add_column(ColumnDef::new(Executions::ErrorData).blob().null())
            .to_owned(),
    )
    .await?;
    let db = m.get_connection();
    // `compensation_failed` is longer than the 16 the column had (where a
    // length is enforced). Widening a varchar does not rewrite the table.
    // The triggers that read the column go while it changes, and come back
    // (`hydra_notify_runs` as the second migration made it).
    if m.dialect().notifies() {
        db.execute_unprepared("DROP TRIGGER IF EXISTS workflow_executions_notify_ended ON workflow_executions").await?;
        db.execute_unprepared("DROP TRIGGER IF EXISTS workflow_executions_notify_runs ON workflow_executions").await?;
    }
    if m.dialect().enforces_text_lengths() {
        db.execute_unprepared("ALTER TABLE workflow_executions ALTER COLUMN status TYPE VARCHAR(32)").await?;
    }
    if m.dialect().notifies() {
        db.execute_unprepared(RUNS_TRIGGER).await?;
        db.execute_unprepared(&trigger("'completed', 'failed', 'cancelled', 'timed_out', 'compensation_failed'"))
            .await?;
    }
    Ok(())
}
