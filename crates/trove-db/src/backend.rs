//! The two SQL backends behind [`Db`](crate::db::Db): embedded SQLite (the default) and
//! PostgreSQL (the scale-out mode, where several Trove nodes share one database).
//!
//! A [`Pool`] holds the pool of one or the other, and [`with_pool!`] runs a block of query
//! code once per backend: the block is written once and compiled twice, against
//! `SqlitePool` and `PgPool`, so each query keeps sqlx's native types for its backend (no
//! dynamic `Any` rows) and the SQL is the same text wherever it can be. Backend-specific SQL
//! picks its text with [`Db::backend`](crate::db::Db::backend).
//!
//! Placeholders are numbered (`$1`, `$2`…): PostgreSQL needs them, SQLite accepts them.

use sqlx::postgres::{PgConnection, PgPool, PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ColumnIndex, Decode, Transaction, Type};
use std::future::Future;

/// Which SQL engine a [`Db`](crate::db::Db) runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One file in the data directory; one process at a time writes.
    Sqlite,
    /// A PostgreSQL server, shared by every node of a scale-out hub.
    Postgres,
}

impl Backend {
    /// The name used in logs and metrics (`sqlite`, `postgres`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The connection pool of one backend.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Runs `$body` with `$pool` bound to the `SqlitePool` or the `PgPool` of `$db` (anything
/// with a `pool: Pool` field). The body is compiled once per backend.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            $crate::backend::Pool::Sqlite($pool) => $body,
            $crate::backend::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A connection of either backend, for helpers that run queries inside a caller's
/// transaction: `Conn::from(&mut *tx)`.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(conn: &'c mut SqliteConnection) -> Self {
        Conn::Sqlite(conn)
    }
}

impl<'c> From<&'c mut PgConnection> for Conn<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        Conn::Postgres(conn)
    }
}

/// Runs `$body` with `$c` bound to the `&mut SqliteConnection` or `&mut PgConnection` of a
/// [`Conn`]; compiled once per backend like [`with_pool!`].
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::backend::Conn::Sqlite($c) => $body,
            $crate::backend::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use with_conn;

/// A value type both backends decode: `i64`, `String`, `Vec<u8>`, `bool` and their
/// `Option`s.
pub(crate) trait Value<'r>:
    Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

impl<'r, T> Value<'r> for T where
    T: Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

/// A column index both backends' rows accept (a position or a name).
pub(crate) trait Index: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> {}

impl<I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>> Index for I {}

/// A row of either backend, so that one `from_row` function reads both.
pub(crate) trait DbRow {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T, sqlx::Error>;
}

impl DbRow for SqliteRow {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, index)
    }
}

impl DbRow for PgRow {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, index)
    }
}

/// The advisory lock every PostgreSQL write transaction takes first (see [`WritePool`]);
/// "trove" in ASCII, so that it is recognisable in `pg_locks`.
pub(crate) const WRITE_LOCK_KEY: i64 = 0x74_72_6f_76_65;

/// Opens the transactions that write.
///
/// On SQLite, `BEGIN IMMEDIATE` takes the database's write lock at once: a deferred
/// transaction that read first would fail with "database is locked" when it tried to write
/// while another connection held the lock, instead of waiting the busy timeout.
///
/// On PostgreSQL, the transaction first takes one transaction-scoped advisory lock shared
/// by every writer of every node, so that write transactions run one at a time as they do
/// on SQLite: every read-then-write sequence the queries were written for (next discussion
/// number, positions in a collection, reference counts) keeps the isolation it has on
/// SQLite, under PostgreSQL's default READ COMMITTED level. Finer locks (per repository)
/// are the place where multi-node coordination narrows this later.
pub(crate) trait WritePool {
    type Database: sqlx::Database;

    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Database>, sqlx::Error>> + Send;
}

impl WritePool for SqlitePool {
    type Database = Sqlite;

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WritePool for PgPool {
    type Database = Postgres;

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// SQLite connections for the few reads every request makes (the caller's token, the
/// repository row, an LFS object's Xet file), held outside sqlx's pool.
///
/// Why: a pooled SQLite connection costs a round trip to its thread on the way back to the
/// pool (sqlx pings it there, always) on top of the query's own, and each round trip is two
/// thread wake-ups. A reader is taken, used for one query and kept again ([`with_reader!`]):
/// one round trip per query.
///
/// What a reader sees: each is its own connection to the same file in WAL mode, used in
/// autocommit, so each statement is a read transaction of its own that starts from the
/// newest commit — a write committed on any connection (the pool's, another process's)
/// before the statement starts is seen, exactly as on a pooled connection. No transaction
/// is ever opened on a reader, and sqlx resets a statement as soon as its rows are read (or
/// its consumer goes away), before the connection takes its next command, so a kept reader
/// never holds an old snapshot. One whose query failed or was cancelled is closed rather
/// than kept, so a kept one never holds half a statement.
///
/// At most [`MAX_READERS`] exist. [`Readers::close`] (from `Db::close`) closes them and
/// refuses any later take, like the pool.
pub(crate) struct Readers {
    permits: tokio::sync::Semaphore,
    idle: std::sync::Mutex<Vec<SqliteConnection>>,
}

/// Reader connections at most: as many as the pool's, for the same concurrent readers.
const MAX_READERS: usize = 8;

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("available", &self.permits.available_permits())
            .field("closed", &self.permits.is_closed())
            .finish()
    }
}

impl Default for Readers {
    fn default() -> Self {
        Readers {
            permits: tokio::sync::Semaphore::new(MAX_READERS),
            idle: std::sync::Mutex::new(Vec::with_capacity(MAX_READERS)),
        }
    }
}

impl Readers {
    /// An idle reader, or a new connection made with `pool`'s options; waits while
    /// [`MAX_READERS`] are in use. Fails with `PoolClosed` once [`Readers::close`] ran.
    pub(crate) async fn take(&self, pool: &SqlitePool) -> Result<Reader<'_>, sqlx::Error> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle_conns().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                use sqlx::ConnectOptions;
                pool.connect_options().connect().await?
            }
        };
        Ok(Reader {
            readers: self,
            conn: Some(conn),
            _permit: permit,
        })
    }

    /// Refuses every later [`Readers::take`] and closes the idle readers; one in use is
    /// closed when its query ends (a closed set keeps nothing).
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle_conns());
        for conn in idle {
            use sqlx::Connection;
            let _ = conn.close().await;
        }
    }

    fn idle_conns(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        // A poisoned lock only means a thread panicked while pushing or popping; the list
        // of connections is still whole.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reader connection taken by one query; closed on drop unless [`Reader::keep`] is called.
pub(crate) struct Reader<'r> {
    readers: &'r Readers,
    conn: Option<SqliteConnection>,
    _permit: tokio::sync::SemaphorePermit<'r>,
}

impl Reader<'_> {
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a reader holds its connection until kept or dropped")
    }

    /// Its query finished: the connection is kept for the next one, unless the readers
    /// were closed meanwhile (then it is dropped, which closes it).
    pub(crate) fn keep(mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.readers.idle_conns();
            if !self.readers.permits.is_closed() {
                idle.push(conn);
            }
        }
    }
}

/// Runs `$body` with `$ex` bound to a reader connection ([`Readers`]) on a SQLite file, or
/// to the pool (an in-memory SQLite database, PostgreSQL), for a body of one query that
/// evaluates to a `crate::Result` (`?` and `return` end the body, not the calling
/// function). The SQLite connection is kept for the next reader only when the body
/// succeeded. Only for single statements outside any transaction: a reader is never asked
/// to `BEGIN`.
macro_rules! with_reader {
    ($db:expr, $ex:ident => $body:expr) => {
        match &$db.pool {
            $crate::backend::Pool::Sqlite(pool) => match &$db.readers {
                Some(readers) => {
                    let mut reader = readers.take(pool).await?;
                    let result: $crate::error::Result<_> = async {
                        let $ex = reader.conn();
                        $body
                    }
                    .await;
                    if result.is_ok() {
                        reader.keep();
                    }
                    result
                }
                None => {
                    let result: $crate::error::Result<_> = async {
                        let $ex = pool;
                        $body
                    }
                    .await;
                    result
                }
            },
            $crate::backend::Pool::Postgres($ex) => {
                let result: $crate::error::Result<_> = async { $body }.await;
                result
            }
        }
    };
}
pub(crate) use with_reader;
