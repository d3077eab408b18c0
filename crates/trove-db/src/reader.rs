//! The reads every request makes (the caller's token or session, the repository row, an LFS
//! download's object), run on the calling thread against SQLite connections of this module,
//! with prepared statements kept per connection; through sqlx elsewhere (PostgreSQL, an
//! in-memory SQLite database). [`read_rows!`] writes such a read once: one SQL text, one
//! row decoder, compiled for each backend.
//!
//! Why not sqlx here: a sqlx SQLite connection is a thread of its own, and each statement
//! is a message to that thread and the rows back — two thread wake-ups per statement, which
//! a profile of small downloads put at about half of the server's CPU (the worker threads
//! themselves and waking them). Here the statement runs on the thread that asks.
//!
//! Why a blocking call on the async runtime's thread is acceptable: each statement is an
//! indexed lookup of a few rows (a token or session by its hash, a repository by its unique
//! name, an LFS object by its key) in pages the page cache holds, a few microseconds — less
//! than handing it to another thread would cost. It never waits for the writer: in WAL mode
//! a reader reads the last commit from the file and the WAL while a write goes on. What can
//! make it wait is brief and rare (another connection rebuilding the WAL index after a
//! crash, a checkpoint restarting the WAL at that instant), and bounded by
//! [`READ_BUSY_TIMEOUT`], after which the read fails like any database error.
//!
//! What a read sees: each reader is its own connection to the file, in autocommit, so each
//! statement is a read transaction of its own that starts from the newest commit — a write
//! committed on any connection (the pool's, another process's) before the statement starts
//! is seen. Nothing is kept between statements but the compiled statement: its rows are
//! read to the end and the statement reset before the connection goes back, and a
//! connection is kept only when it is in autocommit with no statement running
//! ([`Readers::read`]). Connections are opened `query_only`: a read can never write.

use crate::error::{DbError, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a read waits for a lock before failing. In WAL mode only the rare cases above
/// take one, briefly; a read that waited this long would be better answered with an error
/// than left holding the runtime's thread.
pub(crate) const READ_BUSY_TIMEOUT: Duration = Duration::from_millis(200);

/// Idle reader connections kept at most. A reader is in use only for the duration of one
/// statement on one thread, so as many as the runtime's threads are ever in use at once;
/// more are opened if needed and closed after.
const MAX_IDLE: usize = 16;

/// Compiled statements kept per connection: the few reads of the request path, with room.
const STATEMENT_CACHE: usize = 16;

/// The reader connections of a SQLite file ([`crate::Db`] holds one set per file).
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.path)
            .field("idle", &self.idle_conns().len())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Readers {
    /// Readers of the database file at `path`, which must exist (the pool opened it).
    pub(crate) fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::with_capacity(MAX_IDLE)),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `read` on an idle reader connection, or a new one; the connection is kept for
    /// the next read only if `read` succeeded and left it in autocommit with every
    /// statement reset (otherwise it is closed). Fails with sqlx's `PoolClosed` once
    /// [`Readers::close`] ran, as the pool does.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed.into());
        }
        let idle = self.idle_conns().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        if result.is_ok()
            && conn.is_autocommit()
            && !conn.is_busy()
            && !self.closed.load(Ordering::Acquire)
        {
            let mut idle = self.idle_conns();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    /// Refuses every later read and closes the idle connections; one in use is closed when
    /// its read ends.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.idle_conns());
        drop(idle);
    }

    /// Opened read-write, made read-only by `query_only`: a connection opened
    /// `SQLITE_OPEN_READONLY` is a lesser WAL reader — it cannot rebuild the WAL index after
    /// a crash or create the `-shm` file when it is missing, and then fails or waits where a
    /// read-write connection reads — while `query_only` refuses every statement that would
    /// write, at the SQL level.
    fn open(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(READ_BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn idle_conns(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A poisoned lock only means a thread panicked while pushing or popping; the list
        // of connections is still whole.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A parameter of a read, bound as `$1`, `$2`… in the order given, on either backend.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(v)
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// The names of the placeholders, `$1`… (SQLite numbers a named parameter by its first
/// appearance, so they are bound by name: `$2` may come first or twice).
const PLACEHOLDERS: [&str; 8] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8"];

/// Runs `sql` with `args` as `$1`, `$2`… on a reader connection and decodes every row. The
/// statement is compiled once per connection and reset before this returns (its rows are
/// read to the end, or dropped on an error), so no read transaction outlives the call.
pub(crate) fn query_rows<T>(
    conn: &Connection,
    sql: &str,
    args: &[Arg<'_>],
    mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    if stmt.parameter_count() != args.len() {
        return Err(DbError::Reader(rusqlite::Error::InvalidParameterCount(
            args.len(),
            stmt.parameter_count(),
        )));
    }
    for (name, arg) in PLACEHOLDERS.iter().zip(args) {
        let index = stmt
            .parameter_index(name)?
            .ok_or_else(|| rusqlite::Error::InvalidParameterName((*name).to_owned()))?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Runs one read statement — `$sql` with the parameters `[$arg, …]` (each into an
/// [`Arg`]) — and decodes each row with `$decode`, `$row` bound to the row (anything
/// [`DbRow`](crate::backend::DbRow)): on a reader connection on the calling thread for a
/// SQLite file, through the pool otherwise. Evaluates to a `crate::Result<Vec<_>>`; only
/// inside an `async` function (the pool's branch awaits). The body is compiled once per
/// backend, so the SQL and the decoding are the same text on each.
macro_rules! read_rows {
    ($db:expr, $sql:expr, [$($arg:expr),* $(,)?], $row:ident => $decode:expr) => {{
        let sql: &str = $sql;
        let args: &[$crate::reader::Arg<'_>] = &[$($crate::reader::Arg::from($arg)),*];
        match &$db.pool {
            $crate::backend::Pool::Sqlite(pool) => match &$db.readers {
                Some(readers) => readers.read(|conn| {
                    $crate::reader::query_rows(conn, sql, args, |$row| $decode)
                }),
                None => $crate::reader::read_rows!(@pool pool, sql, args, $row => $decode),
            },
            $crate::backend::Pool::Postgres(pool) => {
                $crate::reader::read_rows!(@pool pool, sql, args, $row => $decode)
            }
        }
    }};
    (@pool $pool:ident, $sql:ident, $args:ident, $row:ident => $decode:expr) => {{
        let mut query = sqlx::query($sql);
        for arg in $args {
            query = match *arg {
                $crate::reader::Arg::Int(v) => query.bind(v),
                $crate::reader::Arg::Text(v) => query.bind(v),
                $crate::reader::Arg::Blob(v) => query.bind(v),
            };
        }
        match query.fetch_all($pool).await {
            Ok(rows) => rows
                .iter()
                .map(|$row| $decode)
                .collect::<$crate::error::Result<Vec<_>>>(),
            Err(e) => Err($crate::error::DbError::from(e)),
        }
    }};
}
pub(crate) use read_rows;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DbRow;

    /// A database file in WAL mode with one table, and a connection that writes to it (as
    /// the pool or another process would).
    fn file_with_writer() -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).expect("open writer");
        writer
            .pragma_update(None, "journal_mode", "wal")
            .expect("WAL");
        writer
            .execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL, b BLOB)")
            .expect("schema");
        (dir, path, writer)
    }

    fn value_of(readers: &Readers, key: &str) -> Result<Option<i64>> {
        let rows = readers.read(|conn| {
            query_rows(
                conn,
                "SELECT v FROM t WHERE k = $1",
                &[Arg::Text(key)],
                |row| row.try_get::<i64, _>(0),
            )
        })?;
        Ok(rows.into_iter().next())
    }

    fn idle(readers: &Readers) -> usize {
        readers.idle_conns().len()
    }

    #[test]
    fn each_read_sees_the_newest_commit_on_a_kept_connection() -> Result<()> {
        let (_dir, path, writer) = file_with_writer();
        let readers = Readers::new(&path);
        assert_eq!(value_of(&readers, "a")?, None);
        assert_eq!(idle(&readers), 1, "the connection is kept");
        for i in 0..50 {
            writer.execute("INSERT OR REPLACE INTO t (k, v) VALUES ('a', ?1)", [i])?;
            assert_eq!(value_of(&readers, "a")?, Some(i), "write {i} seen at once");
            assert_eq!(idle(&readers), 1, "one connection, reused");
        }
        writer.execute("DELETE FROM t WHERE k = 'a'", [])?;
        assert_eq!(value_of(&readers, "a")?, None, "a deletion is seen at once");
        Ok(())
    }

    #[test]
    fn a_read_does_not_wait_for_an_open_write_nor_see_it() -> Result<()> {
        let (_dir, path, mut writer) = file_with_writer();
        writer.execute("INSERT INTO t (k, v) VALUES ('a', 1)", [])?;
        let readers = Readers::new(&path);
        let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("UPDATE t SET v = 2 WHERE k = 'a'", [])?;
        let started = std::time::Instant::now();
        assert_eq!(
            value_of(&readers, "a")?,
            Some(1),
            "the last commit, not the open write"
        );
        assert!(
            started.elapsed() < READ_BUSY_TIMEOUT,
            "a WAL reader does not wait for the writer's lock"
        );
        tx.commit()?;
        assert_eq!(value_of(&readers, "a")?, Some(2));
        Ok(())
    }

    #[test]
    fn parameters_bind_by_their_number_wherever_they_appear() -> Result<()> {
        let (_dir, path, writer) = file_with_writer();
        writer.execute(
            "INSERT INTO t (k, v, b) VALUES ('a', 7, x'0102'), ('b', 8, NULL)",
            [],
        )?;
        let readers = Readers::new(&path);
        // `$2` first and twice, as `Db::lfs_download`'s query has it.
        let rows = readers.read(|conn| {
            query_rows(
                conn,
                "SELECT k, b FROM t WHERE v = $2 OR (k = $1 AND v <> $2) ORDER BY k",
                &[Arg::Text("b"), Arg::Int(7)],
                |row| {
                    Ok((
                        row.try_get::<String, _>("k")?,
                        row.try_get::<Option<Vec<u8>>, _>(1)?,
                    ))
                },
            )
        })?;
        assert_eq!(
            rows,
            vec![("a".to_owned(), Some(vec![1, 2])), ("b".to_owned(), None)]
        );
        let blob = readers.read(|conn| {
            query_rows(
                conn,
                "SELECT k FROM t WHERE b = $1",
                &[Arg::Blob(&[1, 2])],
                |row| row.try_get::<String, _>(0),
            )
        })?;
        assert_eq!(blob, vec!["a".to_owned()]);
        Ok(())
    }

    #[test]
    fn a_failed_read_is_an_error_and_its_connection_is_closed() -> Result<()> {
        let (_dir, path, writer) = file_with_writer();
        writer.execute("INSERT INTO t (k, v) VALUES ('a', 1)", [])?;
        let readers = Readers::new(&path);
        value_of(&readers, "a")?;
        assert_eq!(idle(&readers), 1);

        let bad_sql = readers.read(|conn| {
            query_rows(conn, "SELECT nope FROM t", &[], |row| {
                row.try_get::<i64, _>(0)
            })
        });
        assert!(matches!(bad_sql, Err(DbError::Reader(_))), "{bad_sql:?}");
        assert_eq!(
            idle(&readers),
            0,
            "a connection whose read failed is not kept"
        );

        let missing_arg = readers.read(|conn| {
            query_rows(conn, "SELECT v FROM t WHERE k = $1", &[], |row| {
                row.try_get::<i64, _>(0)
            })
        });
        assert!(
            matches!(missing_arg, Err(DbError::Reader(_))),
            "{missing_arg:?}"
        );

        let wrong_type = readers
            .read(|conn| query_rows(conn, "SELECT k FROM t", &[], |row| row.try_get::<i64, _>(0)));
        assert!(
            matches!(wrong_type, Err(DbError::Reader(_))),
            "{wrong_type:?}"
        );

        assert_eq!(value_of(&readers, "a")?, Some(1), "the next read works");
        Ok(())
    }

    #[test]
    fn a_reader_cannot_write() -> Result<()> {
        let (_dir, path, _writer) = file_with_writer();
        let readers = Readers::new(&path);
        let write = readers.read(|conn| {
            query_rows(
                conn,
                "INSERT INTO t (k, v) VALUES ($1, 1) RETURNING v",
                &[Arg::Text("x")],
                |row| row.try_get::<i64, _>(0),
            )
        });
        assert!(matches!(write, Err(DbError::Reader(_))), "{write:?}");
        assert_eq!(value_of(&readers, "x")?, None);
        Ok(())
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_new_database() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent.db");
        let readers = Readers::new(&path);
        assert!(matches!(value_of(&readers, "a"), Err(DbError::Reader(_))));
        assert!(!path.exists());
    }

    #[test]
    fn closed_readers_refuse_reads_and_keep_nothing() -> Result<()> {
        let (_dir, path, _writer) = file_with_writer();
        let readers = Readers::new(&path);
        value_of(&readers, "a")?;
        readers.close();
        assert_eq!(idle(&readers), 0);
        assert!(matches!(
            value_of(&readers, "a"),
            Err(DbError::Sqlx(sqlx::Error::PoolClosed))
        ));
        Ok(())
    }
}
