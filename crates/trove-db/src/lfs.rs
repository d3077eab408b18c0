//! LFS objects (stored, verified large files) and the per-repository links that decide which
//! repository may reference which object.

use crate::backend::{WritePool, with_pool};
use crate::db::Db;
use crate::error::{DbError, Result, constraint_error};
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use trove_types::Sha256Hex;

/// Oids per query in [`Db::repo_objects_sizes`], well under SQLite's bound-parameter limit.
const OIDS_PER_QUERY: usize = 500;

fn size_to_sql(size: u64) -> Result<i64> {
    i64::try_from(size).map_err(|_| DbError::OutOfRange {
        what: "LFS object size",
        value: size,
    })
}

fn size_from_sql(size: i64) -> Result<u64> {
    u64::try_from(size).map_err(|_| DbError::Corrupt {
        what: "LFS object size",
        detail: size.to_string(),
    })
}

impl Db {
    /// Records that the object's bytes are stored and verified. Idempotent: recording an
    /// existing object again keeps the first row (and its size).
    pub async fn record_lfs_object(
        &self,
        sha256: &Sha256Hex,
        size: u64,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO lfs_objects (sha256, size, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(sha256.as_str())
            .bind(size_to_sql(size)?)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The recorded size of the object, if it is stored at all.
    pub async fn lfs_object_size(&self, sha256: &Sha256Hex) -> Result<Option<u64>> {
        with_pool!(self, pool => {
            let size: Option<i64> = sqlx::query_scalar("SELECT size FROM lfs_objects WHERE sha256 = $1")
                .bind(sha256.as_str())
                .fetch_optional(pool)
                .await?;
            size.map(size_from_sql).transpose()
        })
    }

    /// Allows the repository to reference the object. Idempotent. Fails with `NotFound` if
    /// the repository or the object record does not exist.
    pub async fn link_repo_object(
        &self,
        repo_id: i64,
        sha256: &Sha256Hex,
        now_ms: i64,
    ) -> Result<()> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO repo_lfs_objects (repo_id, sha256, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo_id, sha256) DO NOTHING",
            )
            .bind(repo_id)
            .bind(sha256.as_str())
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(constraint_error(
                "repo LFS object link",
                "repo or LFS object",
            ))?;
            Ok(())
        })
    }

    /// Links repository `repo_id` to every one of `oids` that is recorded, in one
    /// transaction (a copy from another repository: the bytes are shared, not copied).
    /// Returns how many links are new.
    pub async fn link_repo_objects(
        &self,
        repo_id: i64,
        oids: &[Sha256Hex],
        now_ms: i64,
    ) -> Result<u64> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut linked = 0;
            for oid in oids {
                let done = sqlx::query(
                    "INSERT INTO repo_lfs_objects (repo_id, sha256, created_at) \
                     SELECT $1, sha256, $2 FROM lfs_objects WHERE sha256 = $3 \
                     ON CONFLICT (repo_id, sha256) DO NOTHING",
                )
                .bind(repo_id)
                .bind(now_ms)
                .bind(oid.as_str())
                .execute(&mut *tx)
                .await
                .map_err(constraint_error("repo LFS object link", "repo"))?;
                linked += done.rows_affected();
            }
            tx.commit().await?;
            Ok(linked)
        })
    }

    /// The object's size if it is recorded *and* linked to this repository; `None` otherwise,
    /// whether or not other repositories hold it.
    pub async fn repo_object_size(&self, repo_id: i64, sha256: &Sha256Hex) -> Result<Option<u64>> {
        with_pool!(self, pool => {
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT lfs_objects.size FROM repo_lfs_objects \
                 JOIN lfs_objects ON lfs_objects.sha256 = repo_lfs_objects.sha256 \
                 WHERE repo_lfs_objects.repo_id = $1 AND repo_lfs_objects.sha256 = $2",
            )
            .bind(repo_id)
            .bind(sha256.as_str())
            .fetch_optional(pool)
            .await?;
            size.map(size_from_sql).transpose()
        })
    }

    /// Batch form of [`Db::repo_object_size`] (an LFS batch request names up to 1000
    /// objects): the sizes of those of `oids` that are linked to the repository. Oids that
    /// are absent or unlinked are simply missing from the map.
    pub async fn repo_objects_sizes(
        &self,
        repo_id: i64,
        oids: &[Sha256Hex],
    ) -> Result<HashMap<Sha256Hex, u64>> {
        with_pool!(self, pool => {
            // Keys come back from the caller's own values, so nothing read from the database
            // needs parsing as an oid.
            let wanted: HashMap<&str, &Sha256Hex> = oids.iter().map(|o| (o.as_str(), o)).collect();
            let mut sizes = HashMap::with_capacity(wanted.len());
            let unique: Vec<&str> = wanted.keys().copied().collect();
            for chunk in unique.chunks(OIDS_PER_QUERY) {
                let mut query = QueryBuilder::new(
                    "SELECT lfs_objects.sha256, lfs_objects.size FROM repo_lfs_objects \
                     JOIN lfs_objects ON lfs_objects.sha256 = repo_lfs_objects.sha256 \
                     WHERE repo_lfs_objects.repo_id = ",
                );
                query
                    .push_bind(repo_id)
                    .push(" AND repo_lfs_objects.sha256 IN (");
                let mut list = query.separated(", ");
                for oid in chunk {
                    list.push_bind(*oid);
                }
                list.push_unseparated(")");
                for row in query.build().fetch_all(pool).await? {
                    let oid: String = row.try_get(0)?;
                    let size = size_from_sql(row.try_get(1)?)?;
                    if let Some(&key) = wanted.get(oid.as_str()) {
                        sizes.insert(key.clone(), size);
                    }
                }
            }
            Ok(sizes)
        })
    }
}
