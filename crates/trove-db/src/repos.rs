//! Repositories: creation, lookup by type and `namespace/name` (case-insensitive), deletion.

use crate::backend::{Conn, WritePool, with_conn, with_pool};
use crate::db::Db;
use crate::error::{DbError, Result, constraint_error};
use crate::reader::read_rows;
use sqlx::Row;
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
    /// Whether downloads need an accepted access request.
    pub gated: Gating,
    pub discussions_disabled: bool,
    /// Whether hosted inference is turned off for the repository (a setting).
    pub inference_disabled: bool,
}

/// A repository's id and the two times that tell whether it was ever written after its
/// creation ([`Db::repo_stamps_after`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoStamp {
    pub id: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A repository's gate: off, or requests accepted at once (`auto`) or by an admin (`manual`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gating {
    Off,
    Auto,
    Manual,
}

impl Gating {
    /// The stored name (`off`, `auto`, `manual`).
    pub fn as_str(self) -> &'static str {
        match self {
            Gating::Off => "off",
            Gating::Auto => "auto",
            Gating::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Gating> {
        match s {
            "off" => Some(Gating::Off),
            "auto" => Some(Gating::Auto),
            "manual" => Some(Gating::Manual),
            _ => None,
        }
    }

    pub fn is_gated(self) -> bool {
        self != Gating::Off
    }

    /// As the Hub's `gated` field shows it: `false`, `"auto"` or `"manual"`.
    pub fn hub_value(self) -> Option<&'static str> {
        match self {
            Gating::Off => None,
            Gating::Auto => Some("auto"),
            Gating::Manual => Some("manual"),
        }
    }
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

    pub(crate) fn from_row(row: &impl crate::backend::DbRow) -> Result<Repo> {
        Repo::from_row_at(row, 0)
    }

    /// Reads a row selected with [`REPO_COLUMNS_R`] (or `REPO_COLUMNS`) whose first column
    /// is at `o`.
    pub(crate) fn from_row_at(row: &impl crate::backend::DbRow, o: usize) -> Result<Repo> {
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
            gated: {
                let g: String = row.try_get(o + 8)?;
                Gating::parse(&g).ok_or(DbError::Corrupt {
                    what: "repo gating",
                    detail: g,
                })?
            },
            discussions_disabled: row.try_get(o + 9)?,
            inference_disabled: row.try_get(o + 10)?,
        })
    }
}

const REPO_COLUMNS: &str = "id, repo_type, namespace, name, private, owner_user_id, created_at, \
     updated_at, gated, discussions_disabled, inference_disabled";

/// [`Db::repo_by_name`]'s query (`$1` the type, `$2` the namespace, `$3` the name), made once:
/// every request that names a repository runs it.
pub(crate) static REPO_BY_NAME_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {REPO_COLUMNS} FROM repos WHERE repo_type = $1 AND namespace = $2 AND name = $3"
    )
});

/// [`REPO_COLUMNS`] of a `repos` table aliased `r`, for joins.
pub(crate) const REPO_COLUMNS_R: &str = "r.id, r.repo_type, r.namespace, r.name, r.private, \
     r.owner_user_id, r.created_at, r.updated_at, r.gated, r.discussions_disabled, r.inference_disabled";

/// How many columns [`REPO_COLUMNS_R`] selects.
pub(crate) const REPO_COLUMN_COUNT: usize = 11;

/// The row of a repository being created, inserted by [`Db::create_repo`] and
/// [`Db::create_repo_with`].
struct NewRepo<'a> {
    repo_type: RepoType,
    id: &'a RepoId,
    private: bool,
    owner_user_id: i64,
    now_ms: i64,
}

impl NewRepo<'_> {
    async fn insert(&self, conn: Conn<'_>) -> Result<Repo> {
        let sql = format!(
            "INSERT INTO repos \
             (repo_type, namespace, name, private, owner_user_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {REPO_COLUMNS}"
        );
        with_conn!(conn, c => {
            let row = sqlx::query(&sql)
                .bind(self.repo_type.as_str())
                .bind(self.id.namespace.as_str())
                .bind(self.id.name.as_str())
                .bind(self.private)
                .bind(self.owner_user_id)
                .bind(self.now_ms)
                .bind(self.now_ms)
                .fetch_one(c)
                .await
                .map_err(constraint_error("repo", "user"))?;
            Repo::from_row(&row)
        })
    }
}

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
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let new = NewRepo {
                repo_type,
                id,
                private,
                owner_user_id,
                now_ms,
            };
            let mut conn = pool.acquire().await?;
            new.insert(Conn::from(&mut *conn)).await
        })
    }

    /// Creates a repository row as [`Db::create_repo`] does, and runs `place` with it before
    /// the row is committed: the row becomes visible only once `place` has succeeded, and
    /// not at all when it fails or the process dies first. `place` puts into position what
    /// the row stands for (the git repository); it must be quick, since the database's one
    /// writer waits for it.
    pub async fn create_repo_with<E, F, Fut>(
        &self,
        repo_type: RepoType,
        id: &RepoId,
        private: bool,
        owner_user_id: i64,
        now_ms: i64,
        place: F,
    ) -> std::result::Result<Repo, E>
    where
        E: From<DbError>,
        F: FnOnce(Repo) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), E>>,
    {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write()
                .await
                .map_err(DbError::from)?;
            let new = NewRepo {
                repo_type,
                id,
                private,
                owner_user_id,
                now_ms,
            };
            let repo = new.insert(Conn::from(&mut *tx)).await?;
            // Dropping `tx` on an error rolls the insert back.
            place(repo.clone()).await?;
            tx.commit().await.map_err(DbError::from)?;
            Ok(repo)
        })
    }

    /// Every repository, in id order (for the start-up check of the data directory).
    pub async fn all_repos(&self) -> Result<Vec<Repo>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {REPO_COLUMNS} FROM repos ORDER BY id");
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(Repo::from_row).collect()
        })
    }

    /// Every repository of one type, in id order (the Spaces supervisor's start: a few
    /// rows of a hub's many, read through the `(repo_type, namespace, name)` index).
    pub async fn repos_of_type(&self, repo_type: RepoType) -> Result<Vec<Repo>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {REPO_COLUMNS} FROM repos WHERE repo_type = $1 ORDER BY id"
            );
            // Row by row: the decoded rows of every Space at once (a copy of each value made
            // on the connection's thread) were the start-up's largest transient allocation,
            // and the heap they grew stayed with the process.
            let mut rows = sqlx::query(&sql).bind(repo_type.as_str()).fetch(pool);
            let mut repos = Vec::new();
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                repos.push(Repo::from_row(&row)?);
            }
            Ok(repos)
        })
    }

    /// Up to `limit` repositories with an id above `after`, in id order, as the start-up
    /// check of the data directory needs them: a page of a walk over every repository that
    /// holds one page in memory, not the whole table.
    pub async fn repo_stamps_after(&self, after: i64, limit: i64) -> Result<Vec<RepoStamp>> {
        with_pool!(self, pool => {
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT id, created_at, updated_at FROM repos \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, created_at_ms, updated_at_ms)| RepoStamp {
                    id,
                    created_at_ms,
                    updated_at_ms,
                })
                .collect())
        })
    }

    /// A repository by its id (what outlives renames: a webhook delivery, a CAS token).
    pub async fn repo_by_id(&self, repo_id: i64) -> Result<Option<Repo>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {REPO_COLUMNS_R} FROM repos r WHERE r.id = $1");
            let row = sqlx::query(&sql)
                .bind(repo_id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| Repo::from_row_at(&r, 0)).transpose()
        })
    }

    /// The repository of this type with this id, compared without regard to ASCII case.
    pub async fn repo_by_name(&self, repo_type: RepoType, id: &RepoId) -> Result<Option<Repo>> {
        // Every request naming a repository asks this: on the calling thread (see
        // `reader.rs`).
        let rows = read_rows!(
            self,
            &REPO_BY_NAME_SQL,
            [repo_type.as_str(), id.namespace.as_str(), id.name.as_str()],
            row => Repo::from_row(row)
        )?;
        Ok(rows.into_iter().next())
    }

    /// The Spaces whose subdomain label is `label`: `{namespace}-{name}` lowercased with
    /// `_` and `.` written `-` (at most two: more than one makes the label ambiguous).
    pub async fn spaces_by_label(&self, label: &str) -> Result<Vec<Repo>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {REPO_COLUMNS} FROM repos WHERE repo_type = 'space' AND \
                 lower(replace(replace(namespace || '-' || name, '_', '-'), '.', '-')) = $1 \
                 ORDER BY id LIMIT 2"
            );
            let rows = sqlx::query(&sql).bind(label).fetch_all(pool).await?;
            rows.iter().map(Repo::from_row).collect()
        })
    }

    /// Deletes the repository row and, by cascade, its LFS object links (the objects stay
    /// until garbage collection). `false` if there was no such repository.
    pub async fn delete_repo(&self, repo_id: i64) -> Result<bool> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM repos WHERE id = $1")
                .bind(repo_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Sets `updated_at` to `now_ms`, never moving it backwards.
    pub async fn touch_repo(&self, repo_id: i64, now_ms: i64) -> Result<()> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            sqlx::query("UPDATE repos SET updated_at = $1 WHERE id = $2 AND updated_at < $3")
                .bind(now_ms)
                .bind(repo_id)
                .bind(now_ms)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Records a push that moved refs: `updated_at` as [`Db::touch_repo`] sets it and, when
    /// the push moved the branch the search index reads, the index entry marked out of date
    /// (its `sha` cleared) in the same transaction. The reindex that follows sets it again;
    /// one lost to a crash is redone by the index backfill, which indexes every entry
    /// without a `sha` ([`Db::repos_never_indexed`]).
    pub async fn record_push(&self, repo_id: i64, now_ms: i64, unindexed: bool) -> Result<()> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE repos SET updated_at = $1 WHERE id = $2 AND updated_at < $3")
                .bind(now_ms)
                .bind(repo_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            if unindexed {
                sqlx::query("UPDATE repo_index SET sha = NULL WHERE repo_id = $1")
                    .bind(repo_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The repository that `id` names now, or the one that last left that name (a move).
    /// The second value is `true` when the name is an old one.
    pub async fn repo_by_name_or_redirect(
        &self,
        repo_type: RepoType,
        id: &RepoId,
    ) -> Result<Option<(Repo, bool)>> {
        with_pool!(self, pool => {
            if let Some(repo) = self.repo_by_name(repo_type, id).await? {
                return Ok(Some((repo, false)));
            }
            let sql = format!(
                "SELECT {REPO_COLUMNS_R} FROM repo_redirects d JOIN repos r ON r.id = d.repo_id \
                 WHERE d.repo_type = $1 AND d.namespace = $2 AND d.name = $3"
            );
            let row = sqlx::query(&sql)
                .bind(repo_type.as_str())
                .bind(id.namespace.as_str())
                .bind(id.name.as_str())
                .fetch_optional(pool)
                .await?;
            row.map(|row| Ok((Repo::from_row(&row)?, true))).transpose()
        })
    }

    /// Renames a repository (any namespace) and leaves a redirect at the old name, in one
    /// transaction. `Conflict` if a repository of this type already has the new name.
    pub async fn move_repo(&self, repo_id: i64, to: &RepoId, now_ms: i64) -> Result<Repo> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            // It reads, then writes: taking the write lock first means a write committed by
            // another connection in between (a token's last-used time, say) makes this wait
            // for the busy timeout instead of failing with "database is locked".
            let mut tx = pool.begin_write().await?;
            let sql = format!("SELECT {REPO_COLUMNS} FROM repos WHERE id = $1");
            let old = sqlx::query(&sql)
                .bind(repo_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(DbError::NotFound { what: "repo" })?;
            let old = Repo::from_row(&old)?;
            let sql = format!(
                "UPDATE repos SET namespace = $1, name = $2, updated_at = $3 WHERE id = $4 \
                 RETURNING {REPO_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(to.namespace.as_str())
                .bind(to.name.as_str())
                .bind(now_ms)
                .bind(repo_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(constraint_error("repo", "repo"))?;
            // The new name is a live repository now: a redirect there would be shadowed anyway.
            sqlx::query(
                "DELETE FROM repo_redirects WHERE repo_type = $1 AND namespace = $2 AND name = $3",
            )
            .bind(old.repo_type.as_str())
            .bind(to.namespace.as_str())
            .bind(to.name.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO repo_redirects (repo_type, namespace, name, repo_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (repo_type, namespace, name) \
                 DO UPDATE SET repo_id = excluded.repo_id, created_at = excluded.created_at",
            )
            .bind(old.repo_type.as_str())
            .bind(&old.namespace)
            .bind(&old.name)
            .bind(repo_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Repo::from_row(&row)
        })
    }

    /// Changes a repository's settings; `None` leaves a setting as it is.
    pub async fn update_repo_settings(
        &self,
        repo_id: i64,
        private: Option<bool>,
        gated: Option<Gating>,
        discussions_disabled: Option<bool>,
        inference_disabled: Option<bool>,
    ) -> Result<Repo> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let sql = format!(
                "UPDATE repos SET private = coalesce($1, private), gated = coalesce($2, gated), \
                 discussions_disabled = coalesce($3, discussions_disabled), \
                 inference_disabled = coalesce($4, inference_disabled) WHERE id = $5 \
                 RETURNING {REPO_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(private)
                .bind(gated.map(Gating::as_str))
                .bind(discussions_disabled)
                .bind(inference_disabled)
                .bind(repo_id)
                .fetch_optional(pool)
                .await?
                .ok_or(DbError::NotFound { what: "repo" })?;
            Repo::from_row(&row)
        })
    }

    /// How many repositories of each type a namespace has that `visible_private` lets the
    /// reader count: (models, datasets, spaces).
    pub async fn count_repos_in(
        &self,
        namespace: &str,
        visible_private: bool,
    ) -> Result<(i64, i64, i64)> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT repo_type, COUNT(*) FROM repos WHERE namespace = $1 \
                 AND (private = FALSE OR $2) GROUP BY repo_type",
            )
            .bind(namespace)
            .bind(visible_private)
            .fetch_all(pool)
            .await?;
            let mut counts = (0, 0, 0);
            for row in rows {
                let t: String = row.try_get(0)?;
                let n: i64 = row.try_get(1)?;
                match t.as_str() {
                    "model" => counts.0 = n,
                    "dataset" => counts.1 = n,
                    _ => counts.2 = n,
                }
            }
            Ok(counts)
        })
    }
}
