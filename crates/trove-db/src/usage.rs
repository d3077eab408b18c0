//! What each repository of a namespace holds in the large-file store, newest first: the
//! storage listing of a user's or organization's settings.

use crate::backend::with_pool;
use crate::db::Db;
use crate::error::Result;
use crate::repos::Repo;
use crate::repos::{REPO_COLUMN_COUNT, REPO_COLUMNS_R};
use crate::search::{Cursor, Page};
use sqlx::Row;

/// A repository and the bytes of the large files linked to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoUsage {
    pub repo: Repo,
    pub lfs_bytes: u64,
}

impl Db {
    /// The repositories of `namespace` (any case), most recently updated first, after
    /// `after` (a cursor of `(updated_at, id)`), at most `limit`.
    pub async fn namespace_usage(
        &self,
        namespace: &str,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<RepoUsage>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {REPO_COLUMNS_R}, \
                   CAST(COALESCE((SELECT SUM(o.size) FROM repo_lfs_objects l \
                             JOIN lfs_objects o ON o.sha256 = l.sha256 \
                             WHERE l.repo_id = r.id), 0) AS BIGINT) \
                 FROM repos r WHERE r.namespace = $1 AND (r.updated_at, r.id) < ($2, $3) \
                 ORDER BY r.updated_at DESC, r.id DESC LIMIT $4"
            );
            let (value, id) = after.map_or((i64::MAX, i64::MAX), |c| (c.value, c.id));
            let rows = sqlx::query(&sql)
                .bind(namespace)
                .bind(value)
                .bind(id)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let bytes: i64 = row.try_get(REPO_COLUMN_COUNT)?;
                items.push(RepoUsage {
                    repo: Repo::from_row_at(row, 0)?,
                    lfs_bytes: u64::try_from(bytes).unwrap_or(0),
                });
            }
            let next = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|u| Cursor {
                    value: u.repo.updated_at_ms,
                    id: u.repo.id,
                })
            } else {
                None
            };
            Ok(Page { items, next })
        })
    }

    /// The bytes of the large files linked to the repositories of `namespace`, each file
    /// counted once per repository (the denominator of a repository's share).
    pub async fn namespace_lfs_bytes(&self, namespace: &str) -> Result<u64> {
        with_pool!(self, pool => {
            let bytes: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(o.size), 0) AS BIGINT) FROM repos r \
                 JOIN repo_lfs_objects l ON l.repo_id = r.id \
                 JOIN lfs_objects o ON o.sha256 = l.sha256 WHERE r.namespace = $1",
            )
            .bind(namespace)
            .fetch_one(pool)
            .await?;
            Ok(u64::try_from(bytes).unwrap_or(0))
        })
    }
}
