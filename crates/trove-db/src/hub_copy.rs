//! Copying a whole hub's metadata from its SQLite database into a PostgreSQL database
//! (`trove migrate`): every table in dependency order, ids kept, rows streamed in bounded
//! batches, identity sequences moved past the copied ids, and a progress table
//! (`migrate_progress`) in the target so that a run killed at any instant resumes.
//!
//! Each table is copied in one PostgreSQL transaction that also records it done: a run
//! killed mid-table leaves nothing of that table, and the next run copies it again. User
//! triggers are disabled for the copy (inside the same transaction, so a crash cannot leave
//! them off): the derived rows they maintain (`repo_index`, `type_counts`, `facet_counts`,
//! counts of likes) are copied as the source holds them, not counted a second time.
//! Foreign keys stay checked.
//!
//! Values go through the types the PostgreSQL schema declares for each column (`BIGINT`,
//! `BOOLEAN`, `BYTEA`, `TEXT`): a SQLite value of another storage class than its column's
//! is refused with the table and column named, never coerced.

use crate::backend::{Pool, with_pool};
use crate::db::{Db, unix_now_ms};
use crate::error::{DbError, Result};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row};
use std::collections::HashSet;

/// The tables copied, parents before children (a test checks this order against the
/// foreign keys of the SQLite schema, and that every table is here or in [`SKIPPED_TABLES`]).
pub const COPIED_TABLES: &[&str] = &[
    "users",
    "orgs",
    "org_members",
    "tokens",
    "sessions",
    "repos",
    "token_scopes",
    "repo_redirects",
    "access_requests",
    "audit_log",
    "lfs_objects",
    "repo_lfs_objects",
    "repo_lfs_deletions",
    "lfs_locks",
    "xet_xorbs",
    "xet_chunks",
    "xet_repo_xorbs",
    "xet_user_xorbs",
    "xet_files",
    "xet_file_xorbs",
    "repo_index",
    "repo_tags",
    "facet_counts",
    "type_counts",
    "likes",
    "repo_downloads",
    "card_parses",
    "discussions",
    "discussion_events",
    "comment_edits",
    "collections",
    "collection_items",
    "webhooks",
    "webhook_watched",
    "webhook_deliveries",
    "space_settings",
    "space_env",
    "storage_gc_runs",
];

/// The tables of the SQLite schema that are not copied, and why.
pub const SKIPPED_TABLES: &[(&str, &str)] = &[
    (
        "repo_facets",
        "SQLite's FTS5 facet index; PostgreSQL answers facet filters from repo_tags",
    ),
    (
        "repo_search",
        "SQLite's FTS5 trigram index of names; PostgreSQL keeps a trigram GIN index on repos, built as the rows arrive",
    ),
    (
        "leases",
        "held by running nodes only; a stopped hub's leases are stale",
    ),
    (
        "shared_secrets",
        "empty in an embedded hub, which keeps its URL-signing key in secret.key; trove migrate stores that key in the target itself",
    ),
    (
        "migrate_progress",
        "trove migrate's own bookkeeping, kept by the target",
    ),
    (
        "_sqlx_migrations",
        "each database records the migrations applied to it",
    ),
];

/// Rows per INSERT, unless [`BATCH_BYTES`] is reached first.
const BATCH_ROWS: usize = 500;
/// Bytes of values per INSERT (chunk indices of xorbs are tens of KiB each).
const BATCH_BYTES: usize = 4 << 20;
/// PostgreSQL's limit on the bound parameters of one statement.
const MAX_PARAMS: usize = 65_535;

/// Why a copy cannot start or go on; the CLI shows these as they are.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target database holds a migration of another hub ({found}); this hub is {ours}: trove migrate never merges two hubs — use an empty database"
    )]
    OtherHub { ours: String, found: String },
    #[error(
        "the target database already holds data (table {table} has rows) and no migration of this hub: trove migrate copies into an empty database only"
    )]
    NotEmpty { table: String },
    #[error(
        "table {table} of the source database is neither copied nor skipped by trove migrate (this build does not know it)"
    )]
    UnknownTable { table: String },
    #[error("column {table}.{column} exists in the source but not in the target schema")]
    MissingColumn { table: String, column: String },
    #[error(
        "column {table}.{column} has type {pg_type} in the target, which trove migrate does not convert"
    )]
    UnsupportedType {
        table: String,
        column: String,
        pg_type: String,
    },
    #[error("reading {table}.{column} of the source: {error}")]
    Value {
        table: String,
        column: String,
        error: sqlx::Error,
    },
    #[error("the source must be a SQLite database and the target a PostgreSQL one")]
    Backends,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Db(DbError::Sqlx(e))
    }
}

/// How the target stands for this hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Steps finished by earlier runs (`table:users`, `objects`, …).
    pub done: HashSet<String>,
    /// Whether an earlier run of this hub had started.
    pub resumed: bool,
}

/// One SQL value, typed as the target column declares.
enum Cell {
    Int(Option<i64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    Text(Option<String>),
}

impl Cell {
    fn size(&self) -> usize {
        match self {
            Cell::Int(_) | Cell::Bool(_) => 8,
            Cell::Bytes(v) => v.as_ref().map_or(0, Vec::len),
            Cell::Text(v) => v.as_ref().map_or(0, String::len),
        }
    }
}

#[derive(Clone, Copy)]
enum ColumnType {
    Int,
    Bool,
    Bytes,
    Text,
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn pools<'a>(source: &'a Db, target: &'a Db) -> Result<(&'a SqlitePool, &'a PgPool), CopyError> {
    match (&source.pool, &target.pool) {
        (Pool::Sqlite(s), Pool::Postgres(t)) => Ok((s, t)),
        _ => Err(CopyError::Backends),
    }
}

impl Db {
    /// The ordinary tables and FTS tables of this SQLite database (FTS shadow tables and
    /// SQLite's own left out), by name.
    pub async fn sqlite_tables(&self) -> Result<Vec<String>> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let names = sqlx::query_scalar(
            "SELECT name FROM pragma_table_list WHERE schema = 'main' \
             AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(pool)
        .await?;
        Ok(names)
    }

    /// (child table, parent table) for every foreign key of this SQLite database.
    pub async fn sqlite_foreign_keys(&self) -> Result<Vec<(String, String)>> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT t.name, f.\"table\" FROM pragma_table_list t, pragma_foreign_key_list(t.name) f \
             WHERE t.schema = 'main' AND t.type = 'table'",
        )
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Checks that every table of this (source) database is copied or skipped.
    pub async fn check_tables_covered(&self) -> Result<(), CopyError> {
        for table in self.sqlite_tables().await? {
            let known = COPIED_TABLES.contains(&table.as_str())
                || SKIPPED_TABLES.iter().any(|(t, _)| *t == table);
            if !known {
                return Err(CopyError::UnknownTable { table });
            }
        }
        Ok(())
    }

    /// On the target: claims it for hub `hub`, or finds this hub's earlier run. Refuses a
    /// database holding another hub's migration, or data without any migration.
    pub async fn claim_for_migration(&self, hub: &str) -> Result<Claim, CopyError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Err(CopyError::Backends);
        };
        let mut tx = pool.begin().await?;
        // One claimer at a time: two runs started together must not both find it empty.
        sqlx::query("LOCK TABLE migrate_progress IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query("SELECT step, hub FROM migrate_progress")
            .fetch_all(&mut *tx)
            .await?;
        let mut done = HashSet::new();
        for row in &rows {
            let step: String = row.try_get(0)?;
            let found: String = row.try_get(1)?;
            if found != hub {
                return Err(CopyError::OtherHub {
                    ours: hub.to_owned(),
                    found,
                });
            }
            done.insert(step);
        }
        if !rows.is_empty() {
            tx.commit().await?;
            return Ok(Claim {
                done,
                resumed: true,
            });
        }
        for table in COPIED_TABLES {
            let any: bool =
                sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(table)))
                    .fetch_one(&mut *tx)
                    .await?;
            if any {
                return Err(CopyError::NotEmpty {
                    table: (*table).to_owned(),
                });
            }
        }
        sqlx::query(
            "INSERT INTO migrate_progress (step, hub, count, done_at) VALUES ('hub', $1, 0, $2)",
        )
        .bind(hub)
        .bind(unix_now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claim {
            done,
            resumed: false,
        })
    }

    /// On the target: records step `step` of hub `hub` done with `count` items.
    pub async fn mark_migration_step(&self, hub: &str, step: &str, count: u64) -> Result<()> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO migrate_progress (step, hub, count, done_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (step) DO UPDATE SET count = EXCLUDED.count, done_at = EXCLUDED.done_at",
        )
        .bind(step)
        .bind(hub)
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .bind(unix_now_ms())
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Rows recorded for step `step` on the target, if it is done.
    pub async fn migration_step_count(&self, step: &str) -> Result<Option<u64>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let count: Option<i64> =
            sqlx::query_scalar("SELECT count FROM migrate_progress WHERE step = $1")
                .bind(step)
                .fetch_optional(pool)
                .await?;
        Ok(count.map(|c| u64::try_from(c).unwrap_or(0)))
    }

    /// Copies every row of `table` from this SQLite database into `target` (PostgreSQL)
    /// in one transaction that also records `table:<table>` done for hub `hub`. Calls
    /// `progress` with the rows copied so far after each batch. Returns the row count.
    pub async fn copy_table_to(
        &self,
        target: &Db,
        table: &str,
        hub: &str,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64, CopyError> {
        let (source, dest) = pools(self, target)?;
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(source)
                .await?;
        let declared: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_all(dest)
        .await?;
        let mut types = Vec::with_capacity(columns.len());
        for column in &columns {
            let Some((_, pg_type)) = declared.iter().find(|(c, _)| c == column) else {
                return Err(CopyError::MissingColumn {
                    table: table.to_owned(),
                    column: column.clone(),
                });
            };
            types.push(match pg_type.as_str() {
                "bigint" | "integer" | "smallint" => ColumnType::Int,
                "boolean" => ColumnType::Bool,
                "bytea" => ColumnType::Bytes,
                "text" | "character varying" => ColumnType::Text,
                other => {
                    return Err(CopyError::UnsupportedType {
                        table: table.to_owned(),
                        column: column.clone(),
                        pg_type: other.to_owned(),
                    });
                }
            });
        }
        let column_list = columns
            .iter()
            .map(|c| quoted(c))
            .collect::<Vec<_>>()
            .join(", ");
        let select = format!("SELECT {column_list} FROM {}", quoted(table));
        let insert_head = format!("INSERT INTO {} ({column_list}) ", quoted(table));
        let max_rows = BATCH_ROWS.min(MAX_PARAMS / columns.len().max(1));

        let mut tx = dest.begin().await?;
        sqlx::query(&format!(
            "ALTER TABLE {} DISABLE TRIGGER USER",
            quoted(table)
        ))
        .execute(&mut *tx)
        .await?;
        // Leftovers of nothing: a table is only ever written inside this transaction.
        let mut rows = sqlx::query(&select).fetch(source);
        let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(max_rows);
        let mut batch_bytes = 0usize;
        let mut copied = 0u64;
        while let Some(row) = rows.try_next().await? {
            let cells = read_row(&row, table, &columns, &types)?;
            batch_bytes += cells.iter().map(Cell::size).sum::<usize>();
            batch.push(cells);
            if batch.len() >= max_rows || batch_bytes >= BATCH_BYTES {
                copied += insert_batch(&mut tx, &insert_head, &mut batch).await?;
                batch_bytes = 0;
                progress(copied);
            }
        }
        drop(rows);
        if !batch.is_empty() {
            copied += insert_batch(&mut tx, &insert_head, &mut batch).await?;
            progress(copied);
        }
        sqlx::query(&format!(
            "ALTER TABLE {} ENABLE TRIGGER USER",
            quoted(table)
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO migrate_progress (step, hub, count, done_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(format!("table:{table}"))
        .bind(hub)
        .bind(i64::try_from(copied).unwrap_or(i64::MAX))
        .bind(unix_now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(copied)
    }

    /// On the target: moves every identity sequence of the copied tables past the largest
    /// id copied (and past SQLite's AUTOINCREMENT high-water mark, so that an id a deleted
    /// row once had is never handed out again). `source` is the SQLite database copied from.
    /// Returns the sequences set.
    pub async fn reset_sequences(&self, source: &Db) -> Result<u64, CopyError> {
        let (source, dest) = pools(source, self)?;
        let identities: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name",
        )
        .fetch_all(dest)
        .await?;
        let mut set = 0;
        for (table, column) in identities {
            if !COPIED_TABLES.contains(&table.as_str()) {
                continue;
            }
            let high_water: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = $1")
                    .bind(&table)
                    .fetch_optional(source)
                    .await
                    // No AUTOINCREMENT table at all: sqlite_sequence does not exist.
                    .unwrap_or(None);
            let max_id: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT MAX({}) FROM {}",
                quoted(&column),
                quoted(&table)
            ))
            .fetch_one(dest)
            .await?;
            let last = max_id.unwrap_or(0).max(high_water.unwrap_or(0));
            // setval(seq, n, true): the next id is n + 1; (seq, 1, false): the next is 1.
            sqlx::query("SELECT setval(pg_get_serial_sequence($1, $2), $3, $4)")
                .bind(quoted(&table))
                .bind(&column)
                .bind(last.max(1))
                .bind(last > 0)
                .execute(dest)
                .await?;
            set += 1;
        }
        Ok(set)
    }

    /// Rows of `table` (either backend), for checks after a copy.
    pub async fn count_rows(&self, table: &str) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM {}", quoted(table));
        let n: i64 = with_pool!(self, pool => {
            sqlx::query_scalar(&sql).fetch_one(pool).await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn read_row(
    row: &SqliteRow,
    table: &str,
    columns: &[String],
    types: &[ColumnType],
) -> Result<Vec<Cell>, CopyError> {
    let mut cells = Vec::with_capacity(columns.len());
    for (i, ty) in types.iter().enumerate() {
        let value = match ty {
            ColumnType::Int => row.try_get(i).map(Cell::Int),
            ColumnType::Bool => row.try_get::<Option<i64>, _>(i).and_then(|v| match v {
                None => Ok(Cell::Bool(None)),
                Some(0) => Ok(Cell::Bool(Some(false))),
                Some(1) => Ok(Cell::Bool(Some(true))),
                Some(other) => Err(sqlx::Error::Decode(
                    format!("{other} is not a boolean (0 or 1)").into(),
                )),
            }),
            ColumnType::Bytes => row.try_get(i).map(Cell::Bytes),
            ColumnType::Text => row.try_get(i).map(Cell::Text),
        };
        cells.push(value.map_err(|error| CopyError::Value {
            table: table.to_owned(),
            column: columns[i].clone(),
            error,
        })?);
    }
    Ok(cells)
}

async fn insert_batch(
    tx: &mut sqlx::Transaction<'static, Postgres>,
    insert_head: &str,
    batch: &mut Vec<Vec<Cell>>,
) -> Result<u64, CopyError> {
    let n = batch.len() as u64;
    let mut query = QueryBuilder::<Postgres>::new(insert_head);
    query.push_values(batch.drain(..), |mut values, cells| {
        for cell in cells {
            match cell {
                Cell::Int(v) => values.push_bind(v),
                Cell::Bool(v) => values.push_bind(v),
                Cell::Bytes(v) => values.push_bind(v),
                Cell::Text(v) => values.push_bind(v),
            };
        }
    });
    query.build().execute(&mut **tx).await?;
    Ok(n)
}
