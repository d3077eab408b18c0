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

use crate::error::Result;
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

/// A value type every backend decodes — sqlx's SQLite and PostgreSQL rows and the reader
/// connections' rows (`reader.rs`): `i64`, `String`, `Vec<u8>`, `bool` and their `Option`s.
pub(crate) trait Value<'r>:
    Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres> + rusqlite::types::FromSql
{
}

impl<'r, T> Value<'r> for T where
    T: Decode<'r, Sqlite>
        + Type<Sqlite>
        + Decode<'r, Postgres>
        + Type<Postgres>
        + rusqlite::types::FromSql
{
}

/// A column index every backend's rows accept (a position or a name).
pub(crate) trait Index:
    ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + rusqlite::RowIndex
{
}

impl<I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> + rusqlite::RowIndex> Index for I {}

/// A row of any backend, so that one `from_row` function reads them all.
pub(crate) trait DbRow {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T>;
}

impl DbRow for SqliteRow {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T> {
        Ok(sqlx::Row::try_get(self, index)?)
    }
}

impl DbRow for PgRow {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T> {
        Ok(sqlx::Row::try_get(self, index)?)
    }
}

impl DbRow for rusqlite::Row<'_> {
    fn try_get<'r, T: Value<'r>, I: Index>(&'r self, index: I) -> Result<T> {
        Ok(self.get(index)?)
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
