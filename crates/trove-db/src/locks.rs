//! Git LFS file locks: who holds which path of which repository.

use crate::backend::with_pool;
use crate::db::Db;
use crate::error::{DbError, Result, constraint_error};

/// A held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LfsLock {
    pub id: i64,
    pub repo_id: i64,
    /// The locked file, as the client named it (a path from the repository root).
    pub path: String,
    /// The ref the client was on when locking, if it said.
    pub ref_name: Option<String>,
    pub owner_user_id: i64,
    pub owner_name: String,
    pub locked_at_ms: i64,
}

/// What [`Db::create_lfs_lock`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockOutcome {
    Created(LfsLock),
    /// The path was already locked; this is the lock that holds it.
    AlreadyLocked(LfsLock),
}

const LOCK_SELECT: &str = "SELECT lfs_locks.id, lfs_locks.repo_id, lfs_locks.path, \
     lfs_locks.ref_name, lfs_locks.owner_user_id, users.name, lfs_locks.locked_at \
     FROM lfs_locks JOIN users ON users.id = lfs_locks.owner_user_id";

impl LfsLock {
    fn from_row(row: &impl crate::backend::DbRow) -> Result<LfsLock> {
        Ok(LfsLock {
            id: row.try_get(0)?,
            repo_id: row.try_get(1)?,
            path: row.try_get(2)?,
            ref_name: row.try_get(3)?,
            owner_user_id: row.try_get(4)?,
            owner_name: row.try_get(5)?,
            locked_at_ms: row.try_get(6)?,
        })
    }
}

/// Which locks [`Db::list_lfs_locks`] returns: filters and one page.
#[derive(Clone, Debug, Default)]
pub struct LockQuery<'a> {
    pub path: Option<&'a str>,
    pub id: Option<i64>,
    pub owner_user_id: Option<i64>,
    /// Only locks with an id above this one (the page cursor).
    pub after_id: Option<i64>,
    pub limit: u32,
}

impl Db {
    /// Locks `path` in the repository for the user, unless it is locked already.
    pub async fn create_lfs_lock(
        &self,
        repo_id: i64,
        path: &str,
        ref_name: Option<&str>,
        owner_user_id: i64,
        now_ms: i64,
    ) -> Result<LockOutcome> {
        with_pool!(self, pool => {
            // A lock released between the insert and the read is retried once; a second miss
            // means the path is being locked and unlocked in a tight loop, reported as a conflict.
            for _ in 0..2 {
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO lfs_locks (repo_id, path, ref_name, owner_user_id, locked_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repo_id, path) DO NOTHING RETURNING id",
                )
                .bind(repo_id)
                .bind(path)
                .bind(ref_name)
                .bind(owner_user_id)
                .bind(now_ms)
                .fetch_optional(pool)
                .await
                .map_err(constraint_error("LFS lock", "repo or user"))?;
                if let Some(id) = inserted {
                    let lock = self.lfs_lock(repo_id, id).await?;
                    return lock.map(LockOutcome::Created).ok_or(DbError::NotFound {
                        what: "new LFS lock",
                    });
                }
                let sql = format!("{LOCK_SELECT} WHERE lfs_locks.repo_id = $1 AND lfs_locks.path = $2");
                let row = sqlx::query(&sql)
                    .bind(repo_id)
                    .bind(path)
                    .fetch_optional(pool)
                    .await?;
                if let Some(row) = row {
                    return Ok(LockOutcome::AlreadyLocked(LfsLock::from_row(&row)?));
                }
            }
            Err(DbError::Conflict { what: "LFS lock" })
        })
    }

    /// The lock `id` of the repository, if it exists.
    pub async fn lfs_lock(&self, repo_id: i64, id: i64) -> Result<Option<LfsLock>> {
        with_pool!(self, pool => {
            let sql = format!("{LOCK_SELECT} WHERE lfs_locks.repo_id = $1 AND lfs_locks.id = $2");
            let row = sqlx::query(&sql)
                .bind(repo_id)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(LfsLock::from_row).transpose()
        })
    }

    /// The repository's locks matching `query`, by increasing id, at most `query.limit`.
    pub async fn list_lfs_locks(
        &self,
        repo_id: i64,
        query: &LockQuery<'_>,
    ) -> Result<Vec<LfsLock>> {
        with_pool!(self, pool => {
            let sql = format!(
                "{LOCK_SELECT} WHERE lfs_locks.repo_id = $1 \
                 AND ($2 IS NULL OR lfs_locks.path = $3) \
                 AND ($4 IS NULL OR lfs_locks.id = $5) \
                 AND ($6 IS NULL OR lfs_locks.owner_user_id = $7) \
                 AND lfs_locks.id > $8 \
                 ORDER BY lfs_locks.id LIMIT $9"
            );
            let rows = sqlx::query(&sql)
                .bind(repo_id)
                .bind(query.path)
                .bind(query.path)
                .bind(query.id)
                .bind(query.id)
                .bind(query.owner_user_id)
                .bind(query.owner_user_id)
                .bind(query.after_id.unwrap_or(0))
                .bind(i64::from(query.limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(LfsLock::from_row).collect()
        })
    }

    /// Removes the lock; `false` if there was none with this id in the repository.
    pub async fn delete_lfs_lock(&self, repo_id: i64, id: i64) -> Result<bool> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM lfs_locks WHERE repo_id = $1 AND id = $2")
                .bind(repo_id)
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
