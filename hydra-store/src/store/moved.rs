//! A moved database's seal: after `hydra move` copied a database into
//! another, the source refuses every write (starts, signals, claims,
//! checkpoints, prunes) and every engine refuses to open it, naming the
//! database it moved to. Otherwise a start or a signal that reached the old
//! database during or after the move would be accepted there and never
//! reach the new one, and a worker restarted on the old URL would run every
//! copied run a second time.
//!
//! The seal is a table (`hydra_moved`: where to, when) that opening
//! checks, and triggers on every table a move copies (and the worker
//! rows) that refuse writes with a message naming the new database, so
//! engines already open, and older versions of Hydra, are refused too. It
//! is written in the move's own transaction on the source, which keeps
//! other writers out from before the copy until it commits.

use super::Store;
use crate::error::StoreError;
use crate::sql::Db;

/// What a sealed table's trigger says, before the new database's name.
pub(crate) const MARK: &str = "hydra-moved-to: ";

/// The tables the seal closes to writes.
pub(crate) const SEALED: &[&str] = &[
    "workflow_executions",
    "workflow_steps",
    "workflow_signals",
    "workflow_events",
    "workflow_search_attributes",
    "cron_jobs",
    "leases",
];

/// The new database named by a refusal's text (a trigger's message), if it
/// is one: what follows [`MARK`], to the first space.
pub(crate) fn moved_in(text: &str) -> Option<String> {
    let (_, rest) = text.split_once(MARK)?;
    let to: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\'').collect();
    Some(to)
}

impl Store {
    /// Seals this database, inside `db` (the move's transaction on it): it
    /// moved to `to` (a URL with any password hidden).
    pub(crate) async fn seal_in(&self, db: Db<'_>, to: &str, now: i64) -> Result<(), StoreError> {
        db.exec(self.stmt("CREATE TABLE hydra_moved (moved_to TEXT NOT NULL, moved_at BIGINT NOT NULL)", vec![]))
            .await?;
        db.exec(self.stmt("INSERT INTO hydra_moved (moved_to, moved_at) VALUES (?, ?)", vec![to.into(), now.into()]))
            .await?;
        // A literal in the triggers' text: quotes doubled, no whitespace
        // (a URL has none; the name ends at the first).
        let to: String = to.chars().filter(|c| !c.is_whitespace()).collect::<String>().replace('\'', "''");
        // Run as written: a `?` in the name is text, not a placeholder.
        for sql in self.dialect().seal(&format!("{MARK}{to}"), SEALED) {
            db.exec(sea_orm::Statement::from_string(self.dialect().db_backend(), sql)).await?;
        }
        Ok(())
    }
}

/// Where the database of `db` moved to, if a move sealed it. Asked before
/// anything else when a store opens (before migrations: a sealed database
/// is not changed).
pub(crate) async fn moved_to(
    db: &sea_orm::DatabaseConnection,
    dialect: &dyn crate::backend::Dialect,
) -> Result<Option<String>, StoreError> {
    let db = Db::Pool(db);
    let cols = db.all(dialect.statement(dialect.columns_query(), vec!["hydra_moved".into()])).await?;
    if cols.is_empty() {
        return Ok(None);
    }
    let row = db.one(dialect.statement("SELECT moved_to FROM hydra_moved", vec![])).await?;
    Ok(match row {
        Some(r) => Some(r.try_get("", "moved_to")?),
        None => Some("another database".to_owned()),
    })
}
