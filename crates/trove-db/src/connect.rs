//! Where the database is: a parsed `--database` URL, shown only with its password redacted,
//! and the pool options a PostgreSQL connection is made with.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Connections per node to PostgreSQL unless configured: enough for a node's concurrent
/// requests, few enough that several nodes stay under the server's default
/// `max_connections` (100).
const PG_MAX_CONNECTIONS: u32 = 16;

/// A database location, from `--database`, `TROVE_DATABASE` or `[database] url`:
/// `sqlite://<path>` (or `sqlite:<path>`), or `postgres://user:password@host:port/db`
/// (`postgresql://` too, with libpq's query parameters such as `sslmode`).
///
/// `Debug` and [`DatabaseUrl::redacted`] never show the password.
#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(Box<PostgresUrl>),
}

/// A parsed PostgreSQL URL and its redacted spelling.
#[derive(Clone)]
pub struct PostgresUrl {
    options: PgConnectOptions,
    url: String,
    redacted: String,
}

/// Why a database URL was refused; the message shows the URL redacted.
#[derive(Debug, thiserror::Error)]
#[error("invalid database URL {url}: {reason}")]
pub struct InvalidDatabaseUrl {
    pub url: String,
    pub reason: String,
}

impl DatabaseUrl {
    /// Parses a URL; a bare path is not accepted (say `sqlite://<path>`), so that a typo in
    /// a PostgreSQL URL never silently creates a SQLite file.
    pub fn parse(url: &str) -> Result<DatabaseUrl, InvalidDatabaseUrl> {
        let invalid = |reason: String| InvalidDatabaseUrl {
            url: redact(url),
            reason,
        };
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(invalid("no file path after `sqlite://`".to_owned()));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| invalid(redact(&e.to_string())))?
                .application_name("trove");
            return Ok(DatabaseUrl::Postgres(Box::new(PostgresUrl {
                options,
                url: url.to_owned(),
                redacted: redact(url),
            })));
        }
        Err(invalid(
            "expected sqlite://<path> or postgres://user@host:port/database".to_owned(),
        ))
    }

    /// The URL as given, password included: only for handing it to a child process (the git
    /// hook), never for display.
    pub fn secret_url(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(pg) => pg.url.clone(),
        }
    }

    /// The URL with any password replaced by `***`, for logs and error messages.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(pg) => pg.redacted.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How a database is connected to.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Pool size; `None`: 8 for SQLite (one writer at a time anyway), 16 for PostgreSQL.
    pub max_connections: Option<u32>,
    /// How long opening (and later, waiting for a free connection) may take before it fails.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Connects a pool and makes its first connection, within `options.connect_timeout`.
///
/// One connection is tried first on its own: the pool retries a refused connection until
/// its timeout and then reports only that it timed out, where the server's own answer
/// (connection refused, password authentication failed, database does not exist) is what
/// an operator needs to read.
pub(crate) async fn postgres_pool(
    url: &PostgresUrl,
    options: &ConnectOptions,
) -> Result<PgPool, sqlx::Error> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let probe = tokio::time::timeout(options.connect_timeout, url.options.connect())
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer within {} s",
                    options.connect_timeout.as_secs_f32()
                ),
            ))
        })??;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(PG_MAX_CONNECTIONS))
        .acquire_timeout(options.connect_timeout)
        .connect_with(url.options.clone())
        .await
}

/// `scheme://user:password@host…` with the password (and a `password=` query parameter)
/// replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = DatabaseUrl::parse("postgres://trove:s3cret@db.example:5433/hub?sslmode=require")
            .expect("valid");
        assert_eq!(
            url.redacted(),
            "postgres://trove:***@db.example:5433/hub?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!url.to_string().contains("s3cret"));
        assert_eq!(
            redact("postgresql://db/hub?user=t&password=s3cret"),
            "postgresql://db/hub?user=t&password=***"
        );
        assert_eq!(redact("postgres://trove@db/hub"), "postgres://trove@db/hub");
        // A password holding `@` and `/` (percent-encoding is optional in practice).
        assert_eq!(
            redact("postgres://u:p@ss@db/hub"),
            "postgres://u:***@db/hub"
        );
    }

    #[test]
    fn schemes_are_explicit() {
        assert!(matches!(
            DatabaseUrl::parse("sqlite:///var/lib/trove/trove.db"),
            Ok(DatabaseUrl::Sqlite(p)) if p == std::path::Path::new("/var/lib/trove/trove.db")
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://trove@localhost/trove"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        for bad in [
            "/var/lib/trove.db",
            "mysql://x@y/z",
            "sqlite://",
            "postgres://u:pw@h:notaport/d",
        ] {
            let err = DatabaseUrl::parse(bad).expect_err(bad);
            assert!(!err.to_string().contains(":pw@"), "{err}");
        }
    }
}
