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
    /// Whether the database could not be reached rather than refused the operation: no
    /// connection within the pool's timeout, a connection lost (I/O, TLS), or the server
    /// shutting down, starting up or out of connections (PostgreSQL's SQLSTATE classes 08 and
    /// 57P, and 53300). Retrying later may work: the API answers 503, not 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlx(err) => sqlx_unavailable(err),
            _ => false,
        }
    }

    /// Whether the database's disk (or quota) is full: SQLite's `SQLITE_FULL`, PostgreSQL's
    /// `disk_full` (53100), or the system's own error for it.
    pub fn is_storage_full(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::Database(db_err)) => {
                matches!(db_err.code().as_deref(), Some("13" | "53100"))
            }
            DbError::Sqlx(sqlx::Error::Io(io)) => storage_full_io(io),
            DbError::Reader(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }
}

fn storage_full_io(err: &std::io::Error) -> bool {
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
        sqlx::Error::Database(db_err) => db_err.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
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
