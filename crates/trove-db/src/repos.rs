//! Repositories: creation, lookup by type and `namespace/name` (case-insensitive), deletion.

use crate::Db;
use crate::error::{DbError, Result, constraint_error};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use trove_types::{RepoId, RepoName, RepoType};

/// A repository's metadata row. Its git repository and blobs are addressed by `id`, so a
/// rename only changes this row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    pub id: i64,
    pub repo_type: RepoType,
    /// As spelled at creation; lookups ignore ASCII case.
    pub namespace: String,
    pub name: String,
    pub private: bool,
    /// The creating user; `None` once that account is deleted.
    pub owner_user_id: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Repo {
    /// `namespace/name` as a validated id. Fails only if the row was edited by hand into an
    /// invalid name, since [`Db::create_repo`] takes validated names.
    pub fn repo_id(&self) -> Result<RepoId> {
        let corrupt = |e: trove_types::InvalidIdentifier| DbError::Corrupt {
            what: "repo name",
            detail: e.0,
        };
        Ok(RepoId::new(
            RepoName::parse(&self.namespace).map_err(corrupt)?,
            RepoName::parse(&self.name).map_err(corrupt)?,
        ))
    }

    fn from_row(row: &SqliteRow) -> Result<Repo> {
        Repo::from_row_at(row, 0)
    }

    /// Reads a row selected with [`REPO_COLUMNS_R`] (or `REPO_COLUMNS`) whose first column
    /// is at `o`.
    pub(crate) fn from_row_at(row: &SqliteRow, o: usize) -> Result<Repo> {
        let repo_type: String = row.try_get(o + 1)?;
        let repo_type = RepoType::from_singular(&repo_type).ok_or_else(|| DbError::Corrupt {
            what: "repo type",
            detail: repo_type.clone(),
        })?;
        Ok(Repo {
            id: row.try_get(o)?,
            repo_type,
            namespace: row.try_get(o + 2)?,
            name: row.try_get(o + 3)?,
            private: row.try_get(o + 4)?,
            owner_user_id: row.try_get(o + 5)?,
            created_at_ms: row.try_get(o + 6)?,
            updated_at_ms: row.try_get(o + 7)?,
        })
    }
}

const REPO_COLUMNS: &str =
    "id, repo_type, namespace, name, private, owner_user_id, created_at, updated_at";

/// [`REPO_COLUMNS`] of a `repos` table aliased `r`, for joins.
pub(crate) const REPO_COLUMNS_R: &str = "r.id, r.repo_type, r.namespace, r.name, r.private, \
     r.owner_user_id, r.created_at, r.updated_at";

impl Db {
    /// Creates a repository row. Fails with `Conflict` if a repository of this type already
    /// has this id in any case, `NotFound` if the owner does not exist.
    pub async fn create_repo(
        &self,
        repo_type: RepoType,
        id: &RepoId,
        private: bool,
        owner_user_id: i64,
        now_ms: i64,
    ) -> Result<Repo> {
        let sql = format!(
            "INSERT INTO repos \
             (repo_type, namespace, name, private, owner_user_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {REPO_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(repo_type.as_str())
            .bind(id.namespace.as_str())
            .bind(id.name.as_str())
            .bind(private)
            .bind(owner_user_id)
            .bind(now_ms)
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(constraint_error("repo", "user"))?;
        Repo::from_row(&row)
    }

    /// The repository of this type with this id, compared without regard to ASCII case.
    pub async fn repo_by_name(&self, repo_type: RepoType, id: &RepoId) -> Result<Option<Repo>> {
        let sql = format!(
            "SELECT {REPO_COLUMNS} FROM repos \
             WHERE repo_type = ? AND namespace = ? AND name = ?"
        );
        let row = sqlx::query(&sql)
            .bind(repo_type.as_str())
            .bind(id.namespace.as_str())
            .bind(id.name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Repo::from_row).transpose()
    }

    /// Deletes the repository row and, by cascade, its LFS object links (the objects stay
    /// until garbage collection). `false` if there was no such repository.
    pub async fn delete_repo(&self, repo_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM repos WHERE id = ?")
            .bind(repo_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets `updated_at` to `now_ms`, never moving it backwards.
    pub async fn touch_repo(&self, repo_id: i64, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE repos SET updated_at = ? WHERE id = ? AND updated_at < ?")
            .bind(now_ms)
            .bind(repo_id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
