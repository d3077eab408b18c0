//! Test databases on both backends: a private in-memory SQLite database, and, when
//! `TROVE_TEST_POSTGRES_URL` names a PostgreSQL server (`scripts/test.sh` starts one), a
//! fresh database `t_<random>` on it, dropped after the test. [`backend_tests!`] runs a test
//! body once on each.

use crate::connect::{ConnectOptions, DatabaseUrl};
use crate::db::Db;
use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the PostgreSQL server of the tests: a URL of a role allowed to
/// create databases, e.g. `postgres://trove:pw@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_ENV: &str = "TROVE_TEST_POSTGRES_URL";

/// A database for one test.
pub struct TestDb {
    db: Db,
    /// The server's URL and the database's name, to drop it after (PostgreSQL only).
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// A private in-memory SQLite database.
    pub async fn sqlite() -> TestDb {
        TestDb {
            db: Db::open_in_memory()
                .await
                .expect("in-memory SQLite database"),
            postgres: None,
        }
    }

    /// A new empty PostgreSQL database with the migrations applied, or `None` when
    /// [`POSTGRES_URL_ENV`] is not set.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = std::env::var(POSTGRES_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = fresh_name();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connecting to TROVE_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let url = DatabaseUrl::parse(&database_url(&admin_url, &name)).expect("test URL parses");
        let options = ConnectOptions {
            max_connections: Some(4),
            ..ConnectOptions::default()
        };
        let db = Db::connect(&url, &options)
            .await
            .expect("opening the test database");
        Some(TestDb {
            db,
            postgres: Some((admin_url, name)),
        })
    }

    /// The handle the test uses (a clone of the same pool).
    pub fn db(&self) -> Db {
        self.db.clone()
    }

    /// Closes the pool and drops the PostgreSQL database.
    pub async fn drop(self) {
        self.db.close().await;
        if let Some((admin_url, name)) = self.postgres {
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connecting to TROVE_TEST_POSTGRES_URL");
            // Clean-up only: FORCE may still meet a backend Trove's role cannot end (an
            // autovacuum worker, without pg_signal_backend); the cluster is thrown away after
            // the run, so a database left behind is reported, not failed on.
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let mut attempts = 0;
            while let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
                attempts += 1;
                if attempts == 5 {
                    eprintln!("test database {name} left behind: {e}");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            let _ = admin.close().await;
        }
    }
}

/// `url` with its database replaced by `name` (query parameters kept).
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
        _ => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// `t_<pid>_<time>_<counter>`: unique across the parallel tests of a run and across runs.
pub fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "t_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a test returns when it is skipped (no PostgreSQL server configured).
pub trait Skip {
    fn skip() -> Self;
}

impl Skip for () {
    fn skip() {}
}

impl<E> Skip for Result<(), E> {
    fn skip() -> Self {
        Ok(())
    }
}

/// Defines each test twice, as `<name>::sqlite` and `<name>::postgres`, with `$db` bound to
/// a fresh database of that backend. The PostgreSQL one passes without running when
/// `TROVE_TEST_POSTGRES_URL` is unset (it is always set by `scripts/test.sh`, so in CI).
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $(-> $ret:ty)? $body:block )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports, reason = "what the test body names, whatever it is")]
            use super::*;

            async fn body($db: $crate::Db) $(-> $ret)? $body

            #[tokio::test]
            async fn sqlite() $(-> $ret)? {
                let test_db = $crate::testing::TestDb::sqlite().await;
                let result = body(test_db.db()).await;
                test_db.drop().await;
                result
            }

            #[tokio::test]
            async fn postgres() $(-> $ret)? {
                let Some(test_db) = $crate::testing::TestDb::postgres().await else {
                    eprintln!("{} unset: skipped", $crate::testing::POSTGRES_URL_ENV);
                    return $crate::testing::Skip::skip();
                };
                let result = body(test_db.db()).await;
                test_db.drop().await;
                result
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn test_urls_name_their_database() {
        assert_eq!(
            database_url("postgres://t:pw@127.0.0.1:5432/postgres", "t_1"),
            "postgres://t:pw@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            database_url("postgres://t@h/postgres?sslmode=disable", "t_2"),
            "postgres://t@h/t_2?sslmode=disable"
        );
    }
}

/// One column as the schema-equivalence test compares it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnShape {
    pub table: String,
    pub column: String,
    /// `None` for primary-key columns (SQLite reports those nullable, PostgreSQL never).
    pub nullable: Option<bool>,
}

/// The columns of every table of the logical schema, sorted: SQLite's FTS5 tables (and
/// their shadow tables), for which PostgreSQL has indexes instead, and the migrations'
/// bookkeeping are left out.
pub async fn schema_columns(db: &Db) -> crate::error::Result<Vec<ColumnShape>> {
    let mut columns: Vec<ColumnShape> = match &db.pool {
        crate::backend::Pool::Sqlite(pool) => {
            let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                "SELECT m.name, c.name, c.\"notnull\", c.pk FROM sqlite_master m \
                 JOIN pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND m.name NOT LIKE 'repo\\_facets%' ESCAPE '\\' \
                 AND m.name NOT LIKE 'repo\\_search%' ESCAPE '\\' \
                 AND m.name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|(table, column, notnull, pk)| ColumnShape {
                    table,
                    column,
                    nullable: (pk == 0).then_some(notnull == 0),
                })
                .collect()
        }
        crate::backend::Pool::Postgres(pool) => {
            let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text, c.is_nullable::text, \
                 EXISTS (SELECT 1 FROM information_schema.key_column_usage k \
                   JOIN information_schema.table_constraints t \
                     ON t.constraint_name = k.constraint_name AND t.table_name = k.table_name \
                   WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_name = c.table_name \
                     AND k.column_name = c.column_name) \
                 FROM information_schema.columns c \
                 WHERE c.table_schema = 'public' AND c.table_name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|(table, column, nullable, pk)| ColumnShape {
                    table,
                    column,
                    nullable: (!pk).then_some(nullable == "YES"),
                })
                .collect()
        }
    };
    columns.sort();
    Ok(columns)
}

/// The applied migrations, by version, with their descriptions.
pub async fn applied_migrations(db: &Db) -> crate::error::Result<Vec<(i64, String)>> {
    let sql = "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version";
    Ok(crate::backend::with_pool!(db, pool => {
        sqlx::query_as(sql).fetch_all(pool).await?
    }))
}
