//! The error type of every query, with constraint violations turned into meaningful variants.

/// Result of a database operation.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row the operation needs does not exist.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A uniqueness rule refused the write (name taken, duplicate token name…).
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    /// A stored value cannot be read back as the type it should have.
    #[error("corrupt {what} in the database: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A value does not fit the column it is written to.
    #[error("{what} out of range: {value}")]
    OutOfRange { what: &'static str, value: u64 },
    /// The database server could not be reached or refused the credentials, at start.
    /// `target` is the URL with its password redacted.
    #[error("cannot connect to the database at {target}: {error}")]
    Connect { target: String, error: sqlx::Error },
    /// Applying the schema migrations failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database failure (I/O, locking, a bug in a query).
    #[error("database query failed")]
    Sqlx(#[from] sqlx::Error),
    /// The file of write epochs beside a SQLite database could not be opened or made
    /// (`shared_epochs.rs`).
    #[error("cannot open the epochs file {path}: {error}")]
    EpochsFile { path: String, error: std::io::Error },
    /// A read on a SQLite reader connection failed (see `reader.rs`).
    #[error("database read failed")]
    Reader(#[from] rusqlite::Error),
}

impl DbError {
    /// Whether the database could not be reached, or not in time, rather than refused the
    /// operation: no connection within the pool's timeout, a connection lost (I/O, TLS),
    /// PostgreSQL shutting down, starting up or out of connections (SQLSTATE classes 08 and
    /// 57P, and 53300), or SQLite's lock not had within the busy timeout (`SQLITE_BUSY`,
    /// `SQLITE_LOCKED`: another process — the admin CLI — holds the write lock). Retrying
    /// later may work: the API answers 503, not 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlx(err) => sqlx_unavailable(err),
            DbError::Reader(rusqlite::Error::SqliteFailure(failure, _)) => matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }

    /// Whether the database's disk (or quota) is full: SQLite's `SQLITE_FULL`, PostgreSQL's
    /// `disk_full` (53100), or the system's own error for it.
    pub fn is_storage_full(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::Database(db_err)) => match backend_code(db_err.as_ref()) {
                Some(Code::Sqlite(code)) => code == SQLITE_FULL,
                Some(Code::Postgres(state)) => state == "53100",
                None => false,
            },
            DbError::Sqlx(sqlx::Error::Io(io)) => is_storage_full_io(io),
            DbError::Reader(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }
}

// SQLite's primary result codes (an extended code carries one in its low byte).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;

/// A database error's code, read as its backend writes it.
enum Code {
    /// SQLite's primary result code.
    Sqlite(i32),
    /// PostgreSQL's SQLSTATE.
    Postgres(String),
}

fn backend_code(err: &dyn sqlx::error::DatabaseError) -> Option<Code> {
    let code = err.code()?;
    if err
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        return code.parse::<i32>().ok().map(|c| Code::Sqlite(c & 0xff));
    }
    Some(Code::Postgres(code.into_owned()))
}

/// Whether an I/O error says the disk (or a quota) is full: the one rule for the database's
/// errors and for those of the files the server writes itself.
pub fn is_storage_full_io(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db_err) => match backend_code(db_err.as_ref()) {
            Some(Code::Sqlite(code)) => code == SQLITE_BUSY || code == SQLITE_LOCKED,
            Some(Code::Postgres(state)) => {
                state.starts_with("08") || state.starts_with("57P") || state == "53300"
            }
            None => false,
        },
        _ => false,
    }
}

/// Turns a UNIQUE violation into [`DbError::Conflict`] and a foreign-key violation into
/// [`DbError::NotFound`] (naming `missing`); everything else stays [`DbError::Sqlx`].
pub(crate) fn constraint_error(
    conflict: &'static str,
    missing: &'static str,
) -> impl FnOnce(sqlx::Error) -> DbError {
    move |err| match &err {
        sqlx::Error::Database(db_err) => match db_err.kind() {
            sqlx::error::ErrorKind::UniqueViolation => DbError::Conflict { what: conflict },
            sqlx::error::ErrorKind::ForeignKeyViolation => DbError::NotFound { what: missing },
            // The namespace triggers (a name is a user or an organization) raise this (on
            // PostgreSQL with SQLSTATE 23505, a unique violation, which the arm above takes).
            _ if db_err.message().starts_with("UNIQUE constraint failed") => {
                DbError::Conflict { what: conflict }
            }
            _ => DbError::Sqlx(err),
        },
        _ => DbError::Sqlx(err),
    }
}

#[cfg(test)]
mod tests {
    use super::DbError;

    #[test]
    fn unreachable_databases_are_told_from_refused_operations() {
        assert!(DbError::Sqlx(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(DbError::Sqlx(sqlx::Error::PoolClosed).is_unavailable());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(DbError::Sqlx(sqlx::Error::Io(reset)).is_unavailable());
        assert!(!DbError::Sqlx(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!DbError::NotFound { what: "repo" }.is_unavailable());
        assert!(!DbError::Conflict { what: "repo" }.is_unavailable());
    }

    /// A real "database is locked": one connection holds SQLite's write lock, another with
    /// no busy timeout writes.
    #[tokio::test]
    async fn a_sqlite_write_lock_not_had_in_time_is_unavailable() {
        use sqlx::ConnectOptions;
        let dir = tempfile::tempdir().expect("tempdir");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("db.sqlite"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = options.connect().await.expect("connect");
        let mut other = options.connect().await.expect("connect");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut holder)
            .await
            .expect("create");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("lock");
        let err = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut other)
            .await
            .expect_err("locked");
        let err = DbError::Sqlx(err);
        assert!(err.is_unavailable(), "{err:?}");
        assert!(!err.is_storage_full());
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(DbError::Reader(busy).is_unavailable());
    }

    #[test]
    fn a_full_disk_under_the_database_is_told_apart() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(DbError::Reader(full).is_storage_full());
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(!DbError::Reader(busy).is_storage_full());
        let enospc = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(DbError::Sqlx(sqlx::Error::Io(enospc)).is_storage_full());
        assert!(!DbError::Sqlx(sqlx::Error::PoolTimedOut).is_storage_full());
    }
}
