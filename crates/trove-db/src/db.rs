//! The handle to the database ([`Db`]): opening SQLite or PostgreSQL, migrations, closing;
//! and the clock every stored timestamp is read from. The queries live in the modules of
//! their aggregates, each an `impl Db` of its own.

use crate::backend::{Backend, Pool, with_pool};
use crate::connect::{self, ConnectOptions, DatabaseUrl};
use crate::error::{DbError, Result};
use crate::lock_sessions;
use crate::reader::Readers;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a statement waits for another connection's (or process's) write lock before
/// failing with "database is locked". The admin CLI and a running server share the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in a file-backed pool. SQLite has one writer at a time, so more would only
/// add readers; this many covers the concurrent readers of a small team's server.
const MAX_CONNECTIONS: u32 = 8;

/// A handle to the database; cheap to clone (it shares one connection pool).
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: Pool,
    /// Sessions kept for the per-repository locks (PostgreSQL; unused on SQLite).
    pub(crate) lock_sessions: std::sync::Arc<lock_sessions::LockSessions>,
    /// Writes that can change a listing's answer, completed on this handle (see
    /// `listing_epoch.rs`).
    pub(crate) listing_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Writes that can change who a token identifies or what they belong to, completed on
    /// this handle (see `listing_epoch.rs`).
    pub(crate) account_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Writes that can change what an LFS download needs to know (see `listing_epoch.rs`).
    pub(crate) storage_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// SQLite connections for the reads of every request, run on the calling thread (a
    /// database in a file only: a new connection to an in-memory one would open another,
    /// empty one; none on PostgreSQL). See `reader.rs`.
    pub(crate) readers: Option<std::sync::Arc<Readers>>,
    /// The epochs file every process on the same SQLite file moves (`shared_epochs.rs`);
    /// none in memory or on PostgreSQL.
    pub(crate) shared_epochs: Option<std::sync::Arc<crate::shared_epochs::SharedEpochs>>,
}

impl Db {
    fn new(pool: Pool) -> Db {
        Db {
            pool,
            lock_sessions: Default::default(),
            listing_epoch: Default::default(),
            account_epoch: Default::default(),
            storage_epoch: Default::default(),
            readers: None,
            shared_epochs: None,
        }
    }

    /// Opens (creating it if missing) the SQLite database at `path` and applies pending
    /// migrations.
    ///
    /// The journal is WAL, so readers never block the writer, with `synchronous=FULL`: every
    /// commit is fsynced before it returns, which is what "nothing acknowledged is lost"
    /// needs (`NORMAL` in WAL mode may lose the last commits on power failure).
    pub async fn open(path: &Path) -> Result<Db> {
        Db::open_sqlite(path, MAX_CONNECTIONS).await
    }

    async fn open_sqlite(path: &Path, max_connections: u32) -> Result<Db> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // No ping before each use: sqlx's SQLite connection is a thread of this process
        // over a local file, which cannot have been cut off while idle, and the ping is a
        // round trip to that thread (two wake-ups) before every query.
        prepare_sqlite_file(&options).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let mut db = Db::new(Pool::Sqlite(pool));
        db.readers = Some(std::sync::Arc::new(Readers::new(path)));
        let epochs = crate::shared_epochs::SharedEpochs::open(path).map_err(|error| {
            DbError::EpochsFile {
                path: crate::shared_epochs::SharedEpochs::path_of(path)
                    .display()
                    .to_string(),
                error,
            }
        })?;
        db.shared_epochs = Some(std::sync::Arc::new(epochs));
        tracing::debug!(db.path = %path.display(), "database opened");
        Ok(db)
    }

    /// Opens the database `url` names (see [`DatabaseUrl`]) and applies pending migrations:
    /// a SQLite file, or a PostgreSQL database shared by several nodes.
    ///
    /// On PostgreSQL the first connection is made here, within `options.connect_timeout`,
    /// so that an unreachable server or refused credentials fail at start with
    /// [`DbError::Connect`], which names the server but never the password. Migrations
    /// hold PostgreSQL's advisory lock while they run: nodes started together apply them
    /// once, the others wait and find them applied.
    pub async fn connect(url: &DatabaseUrl, options: &ConnectOptions) -> Result<Db> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                Db::open_sqlite(path, options.max_connections.unwrap_or(MAX_CONNECTIONS)).await
            }
            DatabaseUrl::Postgres(pg) => {
                let pool = connect::postgres_pool(pg, options).await.map_err(|error| {
                    DbError::Connect {
                        target: url.redacted(),
                        error,
                    }
                })?;
                let db = Db::new(Pool::Postgres(pool));
                db.migrate().await?;
                tracing::debug!(db.url = %url.redacted(), "database opened");
                Ok(db)
            }
        }
    }

    /// Opens a fresh private in-memory database with migrations applied, for tests.
    ///
    /// The pool holds exactly one connection that is never recycled: an in-memory SQLite
    /// database lives only as long as the connection that created it.
    pub async fn open_in_memory() -> Result<Db> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let db = Db::new(Pool::Sqlite(pool));
        db.migrate().await?;
        Ok(db)
    }

    /// Which SQL engine this handle runs on.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Whether the database answers a query now (readiness checks).
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Waits for checked-out connections to return, then closes them all. Later queries on
    /// any clone of this handle fail.
    pub async fn close(&self) {
        self.close_lock_sessions().await;
        if let Some(readers) = &self.readers {
            readers.close();
        }
        with_pool!(self, pool => pool.close().await)
    }

    /// Creates SQLite's statistics table (`sqlite_stat1`) now, when it does not exist yet,
    /// rather than at the first `PRAGMA optimize` (the index job's, at start and every hour):
    /// its creation is a schema change, best made before the file serves. `ANALYZE` of the
    /// schema table analyses nothing and costs nothing.
    async fn create_stat_table(&self) -> Result<()> {
        if let Pool::Sqlite(pool) = &self.pool {
            sqlx::query("ANALYZE sqlite_schema").execute(pool).await?;
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Pool::Postgres(pool) => {
                // Every start after the first meets `CREATE TABLE IF NOT EXISTS
                // _sqlx_migrations`, and the server answers with a NOTICE ("relation …
                // already exists, skipping") that sqlx logs among the start-up lines as if
                // something were amiss. The migrations run on a connection that asks the
                // server for warnings and errors only, closed afterwards rather than handed
                // back to the pool with that setting; a failing migration still fails here.
                let mut conn = pool.acquire().await?;
                conn.close_on_drop();
                sqlx::query("SET client_min_messages TO warning")
                    .execute(&mut *conn)
                    .await?;
                // `run_direct` is `run` on a connection already held: `run(&mut *conn)` makes
                // the future not `Send` ("`Acquire` is not general enough"), as sqlx notes.
                sqlx::migrate!("./migrations/postgres")
                    .run_direct(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Creates the SQLite file if missing and brings its schema up to date (migrations, the
/// statistics table) on a connection of its own, closed before the serving pool opens.
///
/// Why apart: with the migrations run through the serving pool, one of its connections now
/// and then prepared its first `INSERT INTO repos` against a schema without that table and
/// failed with "no such table: repos" — a repository created right after a start answered
/// 500 (about one round in 200 of `open::a_repo_created_while_the_first_optimize_runs_is_created`,
/// with or without the optimize; never with a pool of one connection). With every serving
/// connection opened after the schema is in place it did not happen in 750 rounds.
async fn prepare_sqlite_file(options: &SqliteConnectOptions) -> Result<()> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    let db = Db::new(Pool::Sqlite(pool));
    let prepared = async {
        db.migrate().await?;
        db.create_stat_table().await
    }
    .await;
    db.close().await;
    prepared
}

/// The current time as unix milliseconds, the unit of every timestamp in the database.
pub fn unix_now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_connections_use_wal_full_sync_foreign_keys_and_busy_timeout() -> Result<()> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("trove.db")).await?;
        let Pool::Sqlite(pool) = &db.pool else {
            panic!("a file path opens SQLite");
        };
        let mut conn = pool.acquire().await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await?;
        let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await?;
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "synchronous=FULL");
        assert_eq!(foreign_keys, 1);
        assert_eq!(busy_timeout, 5000);
        Ok(())
    }

    #[test]
    fn now_is_in_milliseconds() {
        // 2020-01-01 in ms; seconds would be three orders of magnitude smaller.
        assert!(unix_now_ms() > 1_577_836_800_000);
    }
}
