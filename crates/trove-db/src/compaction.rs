//! Garbage collection's compaction of mostly-dead xorbs: which xorbs files still name, which
//! files name one, and the one transaction that moves every file and chunk-index entry from
//! an old xorb to the new one holding its live chunks.

use crate::backend::{WritePool, with_pool};
use crate::db::Db;
use crate::error::Result;
use crate::xet::XorbRecord;
use sqlx::Row;
use std::collections::HashSet;

/// One xorb's replacement by a xorb holding only its live chunks (durably stored already).
#[derive(Debug, Clone)]
pub struct Compaction<'a> {
    pub old: [u8; 32],
    pub new: [u8; 32],
    pub record: &'a XorbRecord,
    /// Each live chunk: its hash and its index in the new xorb.
    pub moved_chunks: &'a [([u8; 32], u32)],
    /// Every file naming the old xorb, with its terms rewritten to name the new one.
    pub files: &'a [([u8; 32], Vec<u8>)],
    pub now_ms: i64,
}

impl Db {
    /// A page of xorbs (hash order, after `after`) created before `cutoff_ms` that some
    /// recorded file names: the candidates for compaction.
    pub async fn named_xorbs_page(
        &self,
        after: &[u8; 32],
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<[u8; 32]>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT x.hash FROM xet_xorbs x WHERE x.hash > $1 AND x.created_at < $2 \
                 AND EXISTS (SELECT 1 FROM xet_file_xorbs fx WHERE fx.xorb = x.hash) \
                 ORDER BY x.hash LIMIT $3",
            )
            .bind(after.as_slice())
            .bind(cutoff_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let hash: Vec<u8> = row.try_get(0)?;
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    out.push(hash);
                }
            }
            Ok(out)
        })
    }

    /// The files naming xorb `xorb`, with their terms.
    pub async fn files_naming_xorb(&self, xorb: &[u8; 32]) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT f.file_hash, f.terms FROM xet_file_xorbs fx \
                 JOIN xet_files f ON f.file_hash = fx.file_hash WHERE fx.xorb = $1 ORDER BY f.file_hash",
            )
            .bind(xorb.as_slice())
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (hash, terms): (Vec<u8>, Vec<u8>) = (row.try_get(0)?, row.try_get(1)?);
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    out.push((hash, terms));
                }
            }
            Ok(out)
        })
    }

    /// Replaces `c.old` by `c.new` in one transaction: records the new xorb, moves the live
    /// chunks' index entries to it and drops the old xorb's other entries (nothing new dedups
    /// against it), rewrites every file's terms and the xorbs it names, gives every
    /// repository referencing the old xorb and every user who uploaded it the new one too
    /// (see [`crate::XorbViewer`]), and marks the old one released
    /// now (the sweep keeps it through the grace period counted from then). Does nothing and
    /// returns false when the old xorb is gone or a file not in `c.files` names it (recorded
    /// meanwhile: the next run looks again).
    pub async fn compact_xorb(&self, c: &Compaction<'_>) -> Result<bool> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let held: Option<i32> = sqlx::query_scalar("SELECT 1 FROM xet_xorbs WHERE hash = $1")
                .bind(c.old.as_slice())
                .fetch_optional(&mut *tx)
                .await?;
            if held.is_none() {
                return Ok(false);
            }
            let naming: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT file_hash FROM xet_file_xorbs WHERE xorb = $1")
                    .bind(c.old.as_slice())
                    .fetch_all(&mut *tx)
                    .await?;
            let known: HashSet<&[u8]> = c.files.iter().map(|(h, _)| h.as_slice()).collect();
            if naming.iter().any(|h| !known.contains(h.as_slice())) {
                return Ok(false);
            }
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO xet_xorbs (hash, stored_bytes, raw_bytes, num_chunks, chunk_index, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO UPDATE SET released_at = NULL",
            )
            .bind(c.new.as_slice())
            .bind(n(c.record.stored_bytes))
            .bind(n(c.record.raw_bytes))
            .bind(i64::from(c.record.num_chunks))
            .bind(c.record.chunk_index.as_slice())
            .bind(c.now_ms)
            .execute(&mut *tx)
            .await?;
            for (hash, index) in c.moved_chunks {
                sqlx::query("UPDATE xet_chunks SET xorb = $1, idx = $2 WHERE hash = $3 AND xorb = $4")
                    .bind(c.new.as_slice())
                    .bind(i64::from(*index))
                    .bind(hash.as_slice())
                    .bind(c.old.as_slice())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO xet_chunks (hash, xorb, idx) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
                )
                .bind(hash.as_slice())
                .bind(c.new.as_slice())
                .bind(i64::from(*index))
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM xet_chunks WHERE xorb = $1")
                .bind(c.old.as_slice())
                .execute(&mut *tx)
                .await?;
            for (file, terms) in c.files {
                sqlx::query("UPDATE xet_files SET terms = $1 WHERE file_hash = $2")
                    .bind(terms.as_slice())
                    .bind(file.as_slice())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM xet_file_xorbs WHERE file_hash = $1 AND xorb = $2")
                    .bind(file.as_slice())
                    .bind(c.old.as_slice())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO xet_file_xorbs (file_hash, xorb) SELECT file_hash, $1 FROM xet_files \
                     WHERE file_hash = $2 ON CONFLICT (file_hash, xorb) DO NOTHING",
                )
                .bind(c.new.as_slice())
                .bind(file.as_slice())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO xet_repo_xorbs (repo_id, hash, created_at) \
                 SELECT repo_id, $1, $2 FROM xet_repo_xorbs WHERE hash = $3 \
                 ON CONFLICT (repo_id, hash) DO NOTHING",
            )
            .bind(c.new.as_slice())
            .bind(c.now_ms)
            .bind(c.old.as_slice())
            .execute(&mut *tx)
            .await?;
            // Its uploaders too: the new xorb holds a subset of the bytes they sent.
            sqlx::query(
                "INSERT INTO xet_user_xorbs (user_id, hash, created_at) \
                 SELECT user_id, $1, $2 FROM xet_user_xorbs WHERE hash = $3 \
                 ON CONFLICT (user_id, hash) DO NOTHING",
            )
            .bind(c.new.as_slice())
            .bind(c.now_ms)
            .bind(c.old.as_slice())
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE xet_xorbs SET released_at = $1 WHERE hash = $2")
                .bind(c.now_ms)
                .bind(c.old.as_slice())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xet::XetFile;
    use trove_types::{RepoId, RepoName, RepoType, Sha256Hex};

    fn record(chunks: u32) -> XorbRecord {
        XorbRecord {
            stored_bytes: 10,
            raw_bytes: 10,
            num_chunks: chunks,
            chunk_index: vec![1; 40 * chunks as usize],
        }
    }

    /// A repository of alice's naming xorb [1] in a file; alice uploaded the xorb. Returns
    /// the repository's id and alice's.
    async fn setup(db: Db) -> (Db, i64, i64) {
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
        // Old xorb [1]: chunks 7, 8, 9; the file needs only chunk 8.
        db.record_xorb(&[1; 32], &record(3), &[[7; 32], [8; 32], [9; 32]], 1)
            .await
            .expect("xorb");
        let uploader = crate::XorbViewer {
            repo_id: repo,
            user_id: Some(owner),
            whole_namespace: true,
        };
        db.link_uploaded_xorb(uploader, &[1; 32], 1)
            .await
            .expect("link");
        let file = XetFile {
            file_hash: [5; 32],
            size: 3,
            sha256: Sha256Hex::parse(&"a".repeat(64)).expect("sha"),
            terms: vec![1; 44],
        };
        db.record_xet_file(repo, &file, &[[1; 32]], 1)
            .await
            .expect("file");
        (db, repo, owner)
    }

    crate::backend_tests! {
    async fn compaction_repoints_files_and_index_and_the_old_xorb_waits_out_its_grace(db) {
        let (db, repo, alice) = setup(db).await;
        assert_eq!(
            db.named_xorbs_page(&[0; 32], 2, 10).await.expect("q"),
            vec![[1; 32]]
        );
        assert!(
            db.named_xorbs_page(&[0; 32], 1, 10)
                .await
                .expect("q")
                .is_empty(),
            "too new"
        );
        let files = [([5u8; 32], vec![2u8; 44])];
        let done = db
            .compact_xorb(&Compaction {
                old: [1; 32],
                new: [2; 32],
                record: &record(1),
                moved_chunks: &[([8; 32], 0)],
                files: &files,
                now_ms: 1000,
            })
            .await
            .expect("compact");
        assert!(done);
        let file = db.xet_file(&[5; 32]).await.expect("q").expect("file");
        assert_eq!(file.terms, vec![2u8; 44]);
        assert_eq!(db.files_naming_xorb(&[2; 32]).await.expect("q").len(), 1);
        assert!(db.files_naming_xorb(&[1; 32]).await.expect("q").is_empty());
        // The live chunk moved; the dead ones left the index (nothing dedups against them).
        let found = db
            .chunk_locations(&[[7; 32], [8; 32], [9; 32]])
            .await
            .expect("q");
        assert_eq!(found.len(), 1);
        assert_eq!((found[&[8; 32]].xorb, found[&[8; 32]].index), ([2; 32], 0));
        // The repository that referenced the old xorb references the new one.
        assert_eq!(
            db.visible_xorb_stored_bytes(
                crate::XorbViewer {
                    repo_id: repo,
                    user_id: None,
                    whole_namespace: false,
                },
                &[2; 32]
            )
            .await
            .expect("q"),
            Some(10)
        );
        // So does the user who uploaded it, in any repository they write to.
        assert!(db.user_uploaded_xorb(alice, &[2; 32]).await.expect("q"));
        // Created long ago, but released at 1000: kept until the cutoff reaches 1000.
        assert!(
            db.unreferenced_xorbs_page(&[0; 32], 999, 10)
                .await
                .expect("q")
                .is_empty()
        );
        assert_eq!(
            db.drop_xorb_if_unreferenced(&[1; 32], 999)
                .await
                .expect("q"),
            None
        );
        assert!(db.xorb_stored_bytes(&[1; 32]).await.expect("q").is_some());
        assert_eq!(
            db.unreferenced_xorbs_page(&[0; 32], 1000, 10)
                .await
                .expect("q"),
            vec![([1; 32], 10)]
        );
        assert_eq!(
            db.drop_xorb_if_unreferenced(&[1; 32], 1000)
                .await
                .expect("q"),
            Some(0)
        );
        assert!(!db.user_uploaded_xorb(alice, &[1; 32]).await.expect("q"));
        assert!(db.xorb_stored_bytes(&[2; 32]).await.expect("q").is_some());
    }
    }

    crate::backend_tests! {
    async fn a_file_recorded_meanwhile_stops_the_compaction_and_changes_nothing(db) {
        let (db, repo, alice) = setup(db).await;
        let late = XetFile {
            file_hash: [6; 32],
            size: 3,
            sha256: Sha256Hex::parse(&"b".repeat(64)).expect("sha"),
            terms: vec![1; 44],
        };
        db.record_xet_file(repo, &late, &[[1; 32]], 2)
            .await
            .expect("file");
        let files = [([5u8; 32], vec![2u8; 44])];
        let done = db
            .compact_xorb(&Compaction {
                old: [1; 32],
                new: [2; 32],
                record: &record(1),
                moved_chunks: &[([8; 32], 0)],
                files: &files,
                now_ms: 1000,
            })
            .await
            .expect("compact");
        assert!(!done);
        assert!(db.xorb_stored_bytes(&[2; 32]).await.expect("q").is_none());
        assert!(!db.user_uploaded_xorb(alice, &[2; 32]).await.expect("q"));
        assert_eq!(db.files_naming_xorb(&[1; 32]).await.expect("q").len(), 2);
        assert_eq!(
            db.xet_file(&[5; 32]).await.expect("q").expect("file").terms,
            vec![1u8; 44]
        );
        assert_eq!(db.chunk_locations(&[[7; 32]]).await.expect("q").len(), 1);
    }
    }
}
