//! A repository's large files as its owners manage them: listing the LFS objects it links,
//! and deleting them permanently (the link goes, a deletion record stays; see the 0020
//! migration).

use crate::backend::{WritePool, with_pool};
use crate::db::Db;
use crate::error::Result;
use sqlx::Row;
use std::collections::HashSet;
use trove_types::Sha256Hex;

/// One LFS object a repository links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoLfsFile {
    pub oid: Sha256Hex,
    pub size: u64,
    /// When it was uploaded to or linked into the repository (milliseconds).
    pub pushed_at_ms: i64,
    /// The Xet hash of a verified Xet file holding its bytes, if any.
    pub xet_hash: Option<[u8; 32]>,
}

impl Db {
    /// A page of the LFS objects repository `repo_id` links, in oid order after `after`.
    pub async fn repo_lfs_files_page(
        &self,
        repo_id: i64,
        after: Option<&Sha256Hex>,
        limit: u32,
    ) -> Result<Vec<RepoLfsFile>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT l.sha256, o.size, l.created_at, \
                     (SELECT f.file_hash FROM xet_files f WHERE f.sha256 = l.sha256 \
                      ORDER BY f.created_at, f.file_hash LIMIT 1) \
                 FROM repo_lfs_objects l JOIN lfs_objects o ON o.sha256 = l.sha256 \
                 WHERE l.repo_id = $1 AND l.sha256 > $2 ORDER BY l.sha256 LIMIT $3",
            )
            .bind(repo_id)
            .bind(after.map_or("", |a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (oid, size, at, xet): (String, i64, i64, Option<Vec<u8>>) = (
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                );
                let Ok(oid) = Sha256Hex::parse(&oid) else {
                    continue;
                };
                out.push(RepoLfsFile {
                    oid,
                    size: u64::try_from(size).unwrap_or(0),
                    pushed_at_ms: at,
                    xet_hash: xet.and_then(|x| <[u8; 32]>::try_from(x.as_slice()).ok()),
                });
            }
            Ok(out)
        })
    }

    /// Deletes those of `oids` repository `repo_id` links, permanently: the links go and a
    /// deletion is recorded for each, in one transaction. Returns how many were linked.
    pub async fn delete_repo_lfs_files(
        &self,
        repo_id: i64,
        oids: &[Sha256Hex],
        now_ms: i64,
    ) -> Result<u64> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut deleted = 0;
            for oid in oids {
                let done = sqlx::query("DELETE FROM repo_lfs_objects WHERE repo_id = $1 AND sha256 = $2")
                    .bind(repo_id)
                    .bind(oid.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    continue;
                }
                deleted += 1;
                sqlx::query(
                    "INSERT INTO repo_lfs_deletions (repo_id, sha256, deleted_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (repo_id, sha256) DO UPDATE SET deleted_at = excluded.deleted_at",
                )
                .bind(repo_id)
                .bind(oid.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(deleted)
        })
    }

    /// Whether repository `repo_id`'s owners deleted LFS object `oid` permanently (and it
    /// was not uploaded to the repository again since).
    pub async fn repo_lfs_file_deleted(&self, repo_id: i64, oid: &Sha256Hex) -> Result<bool> {
        with_pool!(self, pool => {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM repo_lfs_deletions d WHERE d.repo_id = $1 AND d.sha256 = $2 \
                 AND NOT EXISTS (SELECT 1 FROM repo_lfs_objects l WHERE l.repo_id = d.repo_id AND l.sha256 = d.sha256)",
            )
            .bind(repo_id)
            .bind(oid.as_str())
            .fetch_optional(pool)
            .await?;
            Ok(found.is_some())
        })
    }

    /// Every LFS object deleted permanently from repository `repo_id` (and not linked again).
    pub async fn repo_lfs_deletions(&self, repo_id: i64) -> Result<HashSet<String>> {
        with_pool!(self, pool => {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT d.sha256 FROM repo_lfs_deletions d WHERE d.repo_id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM repo_lfs_objects l WHERE l.repo_id = d.repo_id AND l.sha256 = d.sha256)",
            )
            .bind(repo_id)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_types::{RepoId, RepoName, RepoType};

    crate::backend_tests! {
    async fn a_deletion_unlinks_and_lasts_until_linked_again(db) {
        let owner = db
            .create_user(&RepoName::parse("alice").expect("n"), None, false)
            .await
            .expect("user")
            .id;
        let id = RepoId::new(
            RepoName::parse("alice").expect("ns"),
            RepoName::parse("r").expect("name"),
        );
        let repo = db
            .create_repo(RepoType::Model, &id, false, owner, 1)
            .await
            .expect("repo")
            .id;
        let oid = Sha256Hex::parse(&"a".repeat(64)).expect("sha");
        let other = Sha256Hex::parse(&"b".repeat(64)).expect("sha");
        db.link_lfs_object_for_tests(repo, &oid, 5).await;
        let page = db.repo_lfs_files_page(repo, None, 10).await.expect("page");
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].size, 5);
        assert_eq!(
            db.delete_repo_lfs_files(repo, &[oid.clone(), other], 9)
                .await
                .expect("delete"),
            1
        );
        assert!(
            db.repo_lfs_files_page(repo, None, 10)
                .await
                .expect("page")
                .is_empty()
        );
        assert!(db.repo_lfs_file_deleted(repo, &oid).await.expect("q"));
        assert!(
            db.repo_lfs_deletions(repo)
                .await
                .expect("q")
                .contains(oid.as_str())
        );
        db.link_lfs_object_for_tests(repo, &oid, 5).await;
        assert!(!db.repo_lfs_file_deleted(repo, &oid).await.expect("q"));
        assert!(db.repo_lfs_deletions(repo).await.expect("q").is_empty());
    }
    }

    crate::backend_tests! {
    async fn linking_copies_links_recorded_objects_only_once(db) {
        let owner = db
            .create_user(&RepoName::parse("alice").expect("n"), None, false)
            .await
            .expect("user")
            .id;
        let id = RepoId::new(
            RepoName::parse("alice").expect("ns"),
            RepoName::parse("copy").expect("name"),
        );
        let repo = db
            .create_repo(RepoType::Model, &id, false, owner, 1)
            .await
            .expect("repo")
            .id;
        let held = Sha256Hex::parse(&"c".repeat(64)).expect("sha");
        let unknown = Sha256Hex::parse(&"d".repeat(64)).expect("sha");
        db.record_lfs_object(&held, 7, 1).await.expect("object");
        let both = [held.clone(), unknown.clone()];
        assert_eq!(db.link_repo_objects(repo, &both, 2).await.expect("link"), 1);
        assert_eq!(db.link_repo_objects(repo, &both, 3).await.expect("link"), 0);
        assert_eq!(db.repo_object_size(repo, &held).await.expect("q"), Some(7));
        assert_eq!(db.repo_object_size(repo, &unknown).await.expect("q"), None);
        // A copy undoes a permanent deletion, as uploading the bytes again does.
        db.delete_repo_lfs_files(repo, std::slice::from_ref(&held), 4)
            .await
            .expect("delete");
        assert!(db.repo_lfs_file_deleted(repo, &held).await.expect("q"));
        db.link_repo_objects(repo, &both, 5).await.expect("link");
        assert!(!db.repo_lfs_file_deleted(repo, &held).await.expect("q"));
    }
    }

    impl Db {
        async fn link_lfs_object_for_tests(&self, repo: i64, oid: &Sha256Hex, size: i64) {
            with_pool!(self, pool => {
                sqlx::query(
                    "INSERT INTO lfs_objects (sha256, size, created_at) VALUES ($1, $2, 1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(oid.as_str())
                .bind(size)
                .execute(pool)
                .await
                .expect("object");
                sqlx::query(
                    "INSERT INTO repo_lfs_objects (repo_id, sha256, created_at) VALUES ($1, $2, 2)",
                )
                .bind(repo)
                .bind(oid.as_str())
                .execute(pool)
                .await
                .expect("link");
            })
        }
    }
}
