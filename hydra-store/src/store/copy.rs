//! Moving a database: every run, step, signal, event, search attribute and
//! cron schedule copied from one database into another (SQLite to
//! PostgreSQL, the way a user outgrows the embedded default), with no
//! worker running, and checked row for row.
//!
//! The copy is one transaction on the target: a failure leaves it as it
//! was. Once it is committed, the source is sealed (`moved.rs`). Worker rows (`leases`) are not copied: they belong to processes of
//! the old database. Runs keep their state, tokens and due times, so a run
//! that was sleeping, waiting or pending is taken up by a worker of the new
//! database as it would have been by one of the old.

use super::Store;
use crate::error::StoreError;
use crate::sql::{Db, Row};
use sea_orm::Value;

/// The type of a copied column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Text,
    OptText,
    Int,
    OptInt,
    Big,
    OptBig,
    Bool,
    Blob,
    OptBlob,
}

/// A table that moves: its name, its key columns (for paging) and every
/// column with its type, as its entity declares them (`crate::entity`:
/// the schema as the store reads it; no second copy here).
struct Table {
    name: &'static str,
    key: Vec<&'static str>,
    cols: Vec<(&'static str, Col)>,
    /// Whether its `id` is drawn from a sequence (moved past the copied
    /// IDs after the copy, see `Dialect::after_copy`).
    serial: bool,
}

/// The tables a move copies, in copy order (runs before what refers to
/// them). Worker rows (`leases`) belong to the old database's processes.
fn tables() -> Vec<Table> {
    use crate::entity::{
        cron_jobs, workflow_events, workflow_executions, workflow_search_attributes, workflow_signals, workflow_steps,
    };
    vec![
        table::<workflow_executions::Entity>(),
        table::<workflow_steps::Entity>(),
        table::<workflow_signals::Entity>(),
        table::<workflow_events::Entity>(),
        table::<workflow_search_attributes::Entity>(),
        table::<cron_jobs::Entity>(),
    ]
}

/// The [`Table`] entity `E` declares.
fn table<E: sea_orm::EntityTrait>() -> Table {
    use sea_orm::{ColumnTrait, ColumnType, IdenStatic, Iterable, PrimaryKeyToColumn, PrimaryKeyTrait};
    let cols = E::Column::iter()
        .map(|c| {
            let def = c.def();
            let kind = match (def.get_column_type(), def.is_null()) {
                (ColumnType::Integer | ColumnType::SmallInteger | ColumnType::TinyInteger, false) => Col::Int,
                (ColumnType::Integer | ColumnType::SmallInteger | ColumnType::TinyInteger, true) => Col::OptInt,
                (ColumnType::BigInteger, false) => Col::Big,
                (ColumnType::BigInteger, true) => Col::OptBig,
                (ColumnType::Boolean, _) => Col::Bool,
                (ColumnType::Blob | ColumnType::Binary(_) | ColumnType::VarBinary(_), false) => Col::Blob,
                (ColumnType::Blob | ColumnType::Binary(_) | ColumnType::VarBinary(_), true) => Col::OptBlob,
                (_, false) => Col::Text,
                (_, true) => Col::OptText,
            };
            (c.as_str(), kind)
        })
        .collect();
    Table {
        name: E::default().table_name(),
        key: E::PrimaryKey::iter().map(|k| k.into_column().as_str()).collect(),
        cols,
        serial: <E::PrimaryKey as PrimaryKeyTrait>::auto_increment(),
    }
}

/// Rows per read (and at most per insert statement).
const BATCH: usize = 200;

/// An insert statement is cut after this many bytes of values (payloads
/// may be megabytes each; PostgreSQL takes at most 1 GiB per message).
const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// About how many bytes a value sends.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(Some(s)) => s.len(),
        Value::Bytes(Some(b)) => b.len(),
        _ => 8,
    }
}

/// One table of a move: rows and checksum on each side.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MovedTable {
    /// The table.
    pub table: String,
    /// Rows read from the source.
    pub source_rows: u64,
    /// Rows found in the target afterwards.
    pub target_rows: u64,
    /// A checksum of every value of every row read from the source
    /// (FNV-1a per row, summed: independent of row order).
    pub source_checksum: u64,
    /// The same checksum over the target's rows afterwards.
    pub target_checksum: u64,
}

impl MovedTable {
    /// Rows and checksums agree.
    pub fn verified(&self) -> bool {
        self.source_rows == self.target_rows && self.source_checksum == self.target_checksum
    }
}

/// What a move copied, table by table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoveReport {
    /// One entry per table, in copy order.
    pub tables: Vec<MovedTable>,
}

impl MoveReport {
    /// Every table's rows and checksums agree.
    pub fn verified(&self) -> bool {
        self.tables.iter().all(MovedTable::verified)
    }
}

impl Store {
    /// Copies this database into `target`, whose schema is migrated and
    /// which must hold no run and no schedule. Refused while a lease in
    /// this database is live (a worker row, or a running run's lease): stop
    /// the workers first. Every table is copied in one transaction on the
    /// target, then read back; the report holds rows and checksums of both
    /// sides. A report that does not verify rolls the copy back and is an
    /// error.
    ///
    /// Once the copy is committed, this database is sealed (see
    /// `store/moved.rs`) in the same transaction that kept its writers out:
    /// it refuses every write and every engine refuses to open it, naming
    /// `target_name` (the target's URL, any password hidden).
    pub async fn move_into(&self, target: &Store, target_name: &str, now: i64) -> Result<MoveReport, StoreError> {
        // The source is read in one transaction that keeps writers out until
        // the copy is done: SQLite's write lock (BEGIN IMMEDIATE), or on
        // PostgreSQL a repeatable-read snapshot with its tables locked in
        // SHARE mode. The lease check runs inside it, so no worker can start
        // writing between the check and the copy.
        let _source_gate = self.gate().await;
        let tables = tables();
        let names: Vec<&str> = tables.iter().map(|t| t.name).chain(["leases"]).collect();
        let source = self.dialect().begin_snapshot(self.connection(), &names).await?;
        let report = match self.move_from((&source).into(), target, target_name, now).await {
            Ok(report) => report,
            Err(e) => {
                // Only read: ending the transaction cannot undo anything.
                if let Err(e) = source.rollback().await {
                    tracing::warn!(error = %e, "could not end the move's read of the source");
                }
                return Err(e);
            }
        };
        // The seal was written in the source's transaction before the copy
        // committed; it takes effect now. (Only a failure of this one
        // `COMMIT` leaves a committed copy and an unsealed source.)
        match source.commit().await {
            Ok(()) => Ok(report),
            Err(e) => Err(refusal(format!(
                "the copy into {target_name} is committed and verified, but this database could not be sealed \
                 ({e}): stop every engine and worker on it and point them at {target_name}"
            ))),
        }
    }

    async fn move_from(
        &self,
        source: Db<'_>,
        target: &Store,
        target_name: &str,
        now: i64,
    ) -> Result<MoveReport, StoreError> {
        let live_workers =
            self.count_on(source, "SELECT COUNT(*) AS n FROM leases WHERE expires_at > ?", vec![now.into()]).await?;
        let live_runs = self
            .count_on(
                source,
                "SELECT COUNT(*) AS n FROM workflow_executions WHERE status = 'running' AND due_at > ?",
                vec![now.into()],
            )
            .await?;
        if live_workers > 0 || live_runs > 0 {
            return Err(refusal(format!(
                "the source database has live leases ({live_workers} worker(s), {live_runs} running run(s) \
                 under lease): stop every worker and wait for their leases to expire before moving it"
            )));
        }
        for table in &tables() {
            self.check_columns(source, table, "source").await?;
            target.check_columns(target.conn(), table, "target").await?;
        }
        let target_runs =
            target.count_on(target.conn(), "SELECT COUNT(*) AS n FROM workflow_executions", Vec::new()).await?;
        let target_crons = target.count_on(target.conn(), "SELECT COUNT(*) AS n FROM cron_jobs", Vec::new()).await?;
        if target_runs > 0 || target_crons > 0 {
            return Err(refusal(format!(
                "the target database is not empty ({target_runs} run(s), {target_crons} cron schedule(s)): \
                 a move copies into an empty database only"
            )));
        }
        let _gate = target.gate().await;
        let txn = target.begin().await?;
        let r = self.copy_all(source, target, txn.db()).await;
        let report = match r {
            Ok(report) if report.verified() => report,
            Ok(report) => {
                txn.rollback().await?;
                let bad: Vec<String> = report
                    .tables
                    .iter()
                    .filter(|t| !t.verified())
                    .map(|t| {
                        format!(
                            "{}: {} rows {:016x} read, {} rows {:016x} written",
                            t.table, t.source_rows, t.source_checksum, t.target_rows, t.target_checksum
                        )
                    })
                    .collect();
                return Err(refusal(format!("the copy did not verify, nothing was written: {}", bad.join("; "))));
            }
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        // Sealed inside the source's transaction before the copy commits: a
        // seal that cannot be written (privileges, locks, a second move)
        // leaves the target empty.
        if let Err(e) = self.seal_in(source, target_name, now).await {
            txn.rollback().await?;
            return Err(refusal(format!("the source could not be sealed, nothing was written: {e}")));
        }
        txn.commit().await?;
        target.count();
        Ok(report)
    }

    /// Refuses a table whose columns are not the ones this version copies:
    /// a column it does not know (written by a newer version) would be
    /// lost, one it expects and misses means an older schema.
    async fn check_columns(&self, db: Db<'_>, table: &Table, side: &str) -> Result<(), StoreError> {
        let sql = self.dialect().columns_query();
        let rows = db.all(self.stmt(sql, vec![table.name.into()])).await?;
        let found: Vec<String> = rows.iter().map(|r| r.try_get("", "name")).collect::<Result<_, _>>()?;
        let known: Vec<&str> = table.cols.iter().map(|(c, _)| *c).collect();
        if let Some(extra) = found.iter().find(|c| !known.contains(&c.as_str())) {
            return Err(refusal(format!(
                "the {side} table {} has a column `{extra}` this version of Hydra does not know (a newer version \
                 wrote it): move with the version that did",
                table.name
            )));
        }
        if let Some(missing) = known.iter().find(|c| !found.iter().any(|f| f == *c)) {
            return Err(refusal(format!("the {side} table {} has no column `{missing}`", table.name)));
        }
        Ok(())
    }

    async fn copy_all(&self, source: Db<'_>, target: &Store, txn: Db<'_>) -> Result<MoveReport, StoreError> {
        let mut report = MoveReport::default();
        for table in &tables() {
            let mut moved = MovedTable {
                table: table.name.to_owned(),
                source_rows: 0,
                target_rows: 0,
                source_checksum: 0,
                target_checksum: 0,
            };
            let mut after: Option<Vec<Value>> = None;
            loop {
                let rows = self.page(source, table, after.as_deref()).await?;
                if rows.is_empty() {
                    break;
                }
                let mut values = Vec::with_capacity(rows.len());
                for row in &rows {
                    let v = read_row(table, row)?;
                    moved.source_checksum = moved.source_checksum.wrapping_add(row_hash(&v));
                    values.push(v);
                }
                moved.source_rows += values.len() as u64;
                after = Some(key_of(table, values.last().map(Vec::as_slice).unwrap_or_default()));
                target.insert_rows(txn, table, values).await?;
                if rows.len() < BATCH {
                    break;
                }
            }
            if table.serial {
                target.dialect().after_copy(txn, table.name).await?;
            }
            // Read back what the target now holds.
            let mut after: Option<Vec<Value>> = None;
            loop {
                let rows = target.page(txn, table, after.as_deref()).await?;
                if rows.is_empty() {
                    break;
                }
                let mut last = Vec::new();
                for row in &rows {
                    let v = read_row(table, row)?;
                    moved.target_checksum = moved.target_checksum.wrapping_add(row_hash(&v));
                    last = v;
                }
                moved.target_rows += rows.len() as u64;
                after = Some(key_of(table, &last));
                if rows.len() < BATCH {
                    break;
                }
            }
            report.tables.push(moved);
        }
        Ok(report)
    }

    /// The next page of `table` after key `after`, in key order.
    async fn page(&self, db: Db<'_>, table: &Table, after: Option<&[Value]>) -> Result<Vec<Row>, StoreError> {
        let cols: Vec<&str> = table.cols.iter().map(|(c, _)| *c).collect();
        let order = table.key.join(", ");
        let (cond, mut values) = match (after, table.key.as_slice()) {
            (None, _) => (String::new(), Vec::new()),
            (Some(k), [a]) => (format!(" WHERE {a} > ?"), vec![k[0].clone()]),
            (Some(k), [a, b]) => {
                (format!(" WHERE {a} > ? OR ({a} = ? AND {b} > ?)"), vec![k[0].clone(), k[0].clone(), k[1].clone()])
            }
            (Some(_), _) => return Err(refusal(format!("table {} has an unsupported key", table.name))),
        };
        values.push(i64::try_from(BATCH).unwrap_or(500).into());
        let sql = format!("SELECT {} FROM {}{cond} ORDER BY {order} LIMIT ?", cols.join(", "), table.name);
        Ok(db.all(self.stmt(&sql, values)).await?)
    }

    async fn insert_rows(&self, db: Db<'_>, table: &Table, rows: Vec<Vec<Value>>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = table.cols.iter().map(|(c, _)| *c).collect();
        let one = format!("({})", vec!["?"; cols.len()].join(", "));
        // Statements of at most CHUNK_BYTES of values (and BATCH rows).
        let mut chunk: Vec<Vec<Value>> = Vec::new();
        let mut bytes = 0usize;
        let mut rows = rows.into_iter().peekable();
        while let Some(row) = rows.next() {
            bytes += row.iter().map(value_bytes).sum::<usize>();
            chunk.push(row);
            if bytes >= CHUNK_BYTES || rows.peek().is_none() {
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    table.name,
                    cols.join(", "),
                    vec![one.as_str(); chunk.len()].join(", ")
                );
                let values: Vec<Value> = std::mem::take(&mut chunk).into_iter().flatten().collect();
                db.exec(self.stmt(&sql, values)).await?;
                bytes = 0;
            }
        }
        Ok(())
    }
}

fn refusal(reason: String) -> StoreError {
    StoreError::MoveRefused(reason)
}

/// A row's values in column order, typed as the column is.
fn read_row(table: &Table, row: &Row) -> Result<Vec<Value>, StoreError> {
    let mut out = Vec::with_capacity(table.cols.len());
    for &(name, col) in &table.cols {
        let v: Value = match col {
            Col::Text => row.try_get::<String>("", name)?.into(),
            Col::OptText => row.try_get::<Option<String>>("", name)?.into(),
            Col::Int => row.try_get::<i32>("", name)?.into(),
            Col::OptInt => row.try_get::<Option<i32>>("", name)?.into(),
            Col::Big => row.try_get::<i64>("", name)?.into(),
            Col::OptBig => row.try_get::<Option<i64>>("", name)?.into(),
            Col::Bool => row.try_get::<bool>("", name)?.into(),
            Col::Blob => row.try_get::<Vec<u8>>("", name)?.into(),
            Col::OptBlob => row.try_get::<Option<Vec<u8>>>("", name)?.into(),
        };
        out.push(v);
    }
    Ok(out)
}

/// The key values of a row read by [`read_row`].
fn key_of(table: &Table, row: &[Value]) -> Vec<Value> {
    table
        .key
        .iter()
        .filter_map(|k| table.cols.iter().position(|(c, _)| c == k).and_then(|i| row.get(i).cloned()))
        .collect()
}

/// FNV-1a over a row's values, each with a type byte (so `NULL` and an
/// empty string differ).
fn row_hash(row: &[Value]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for v in row {
        match v {
            Value::String(Some(s)) => {
                eat(&[1]);
                eat(&(s.len() as u64).to_le_bytes());
                eat(s.as_bytes());
            }
            Value::Int(Some(i)) => {
                eat(&[2]);
                eat(&i64::from(*i).to_le_bytes());
            }
            Value::BigInt(Some(i)) => {
                eat(&[2]);
                eat(&i.to_le_bytes());
            }
            Value::Bool(Some(b)) => eat(&[3, u8::from(*b)]),
            Value::Bytes(Some(b)) => {
                eat(&[4]);
                eat(&(b.len() as u64).to_le_bytes());
                eat(b);
            }
            _ => eat(&[0]),
        }
    }
    h
}
