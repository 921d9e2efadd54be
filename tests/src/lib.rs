//! Support for Hydra's integration tests: a fresh database per test on
//! SQLite (a file in a temporary directory) or PostgreSQL (a new database on
//! the server named by `HYDRA_TEST_PG_URL`, which `scripts/test` starts).
//!
//! PostgreSQL tests never skip: without `HYDRA_TEST_PG_URL` they fail and
//! say how to run them.

pub mod browser;
pub mod campaign;
pub mod fault;
pub mod flow;
pub mod http;
pub mod prometheus;
pub mod proxy;
pub mod store_ops;

use hydra_store::{Store, StoreOptions};
use sea_orm::{ConnectionTrait, Database};
use std::path::PathBuf;

/// The environment variable naming a PostgreSQL server URL (any database on
/// it; tests create their own databases next to it).
pub const PG_URL_VAR: &str = "HYDRA_TEST_PG_URL";

/// A database created for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to connect to.
    pub url: String,
    /// Which backend.
    pub kind: DbKind,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop when the test ends.
    pg_name: Option<String>,
}

impl Drop for TestDb {
    /// Drops the test's PostgreSQL database (a suite run creates hundreds;
    /// left behind they fill the disk). Connections a test leaves open are
    /// closed by `WITH (FORCE)`. Runs on its own thread, so it works from
    /// inside or outside a runtime; a failure to drop is only reported.
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        let admin = pg_admin_url();
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let conn = Database::connect(admin.as_str()).await.map_err(|e| e.to_string())?;
                let res = conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                let _ = conn.close().await;
                res.map(|_| ()).map_err(|e| format!("drop {name}: {e}"))
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("hydra-tests: could not drop the test database: {e}"),
            Err(_) => eprintln!("hydra-tests: the thread dropping the test database panicked"),
        }
    }
}

/// Which backend a [`TestDb`] is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl TestDb {
    /// A fresh database of `kind`.
    pub async fn new(kind: DbKind) -> TestDb {
        match kind {
            DbKind::Sqlite => TestDb::sqlite(),
            DbKind::Postgres => TestDb::postgres().await,
        }
    }

    /// A fresh SQLite file in its own temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path: PathBuf = dir.path().join("hydra.db");
        TestDb {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            kind: DbKind::Sqlite,
            _dir: Some(dir),
            pg_name: None,
        }
    }

    /// A fresh database on the test PostgreSQL server.
    pub async fn postgres() -> TestDb {
        let admin = pg_admin_url();
        let name = format!("hydra_t_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(admin.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
        conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = conn.close().await;
        TestDb { url: replace_db(&admin, &name), kind: DbKind::Postgres, _dir: None, pg_name: Some(name) }
    }

    /// Opens a store on this database with default options.
    pub async fn store(&self) -> Store {
        self.store_with(|o| o).await
    }

    /// Opens a store on this database with adjusted options.
    pub async fn store_with(&self, f: impl FnOnce(StoreOptions) -> StoreOptions) -> Store {
        Store::connect_with(f(StoreOptions::new(self.url.clone())))
            .await
            .unwrap_or_else(|e| panic!("open store on {}: {e}", self.url))
    }
}

/// The admin URL of the test PostgreSQL server, or a panic explaining how to
/// get one.
pub fn pg_admin_url() -> String {
    match std::env::var(PG_URL_VAR) {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "{PG_URL_VAR} is not set: PostgreSQL tests need a server. Run `scripts/test`, which starts a \
             throwaway PostgreSQL and sets it, or point {PG_URL_VAR} at a server you own."
        ),
    }
}

/// PostgreSQL: the PIDs of this database's connections whose last statement
/// was a `LISTEN` (the connections that carry wake-ups), seen through `conn`.
pub async fn pg_listeners(conn: &sea_orm::DatabaseConnection) -> Vec<i32> {
    let sql = "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid() \
               AND datname = current_database()";
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("read pg_stat_activity");
    rows.iter().map(|r| r.try_get_by_index::<i32>(0).expect("pid")).collect()
}

/// PostgreSQL: waits (30 s at most) until at least `n` connections of this
/// database listen, so a test's wake-up cannot come from a claim or a poll
/// made before the `LISTEN` took effect.
pub async fn until_listening(conn: &sea_orm::DatabaseConnection, n: usize) -> Vec<i32> {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pids = pg_listeners(conn).await;
        if pids.len() >= n {
            return pids;
        }
        assert!(std::time::Instant::now() < give_up, "only {} of {n} connections listen", pids.len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[prefix_end..].find('/') {
        Some(slash) => &base[..prefix_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Defines each test twice, in modules `sqlite` and `postgres`, so test
/// names say which backend ran: `store::sqlite::claim_…`.
///
/// ```text
/// both_backends! {
///     async fn my_test(db: TestDb) { … }
/// }
/// ```
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident: TestDb) $body:block)*) => {
        $(
            async fn $name($db: $crate::TestDb) $body
        )*
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestDb::new($crate::DbKind::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestDb::new($crate::DbKind::Postgres).await).await
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::replace_db;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(replace_db("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(replace_db("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(replace_db("postgres://u@h:1/p?sslmode=disable", "x"), "postgres://u@h:1/x?sslmode=disable");
    }
}
