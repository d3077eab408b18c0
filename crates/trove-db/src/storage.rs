//! The chunk store seen as a whole: where chunks are (the chunk index), and what the store
//! holds against what repositories reference (storage statistics).

use crate::backend::{Backend, Conn, WritePool, with_pool};
use crate::db::Db;
use crate::error::Result;
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use trove_types::Sha256Hex;

/// Hashes per lookup query, well under SQLite's bound-parameter limit.
const HASHES_PER_QUERY: usize = 500;

/// Where a chunk can be read: its xorb and its index in that xorb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub xorb: [u8; 32],
    pub index: u32,
}

impl Db {
    /// The locations of those of `hashes` the chunk index holds.
    pub async fn chunk_locations(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], ChunkLocation>> {
        with_pool!(self, pool => {
            let mut out = HashMap::new();
            for batch in hashes.chunks(HASHES_PER_QUERY) {
                let mut q: QueryBuilder<'_, _> =
                    QueryBuilder::new("SELECT hash, xorb, idx FROM xet_chunks WHERE hash IN (");
                let mut sep = q.separated(", ");
                for h in batch {
                    sep.push_bind(h.as_slice());
                }
                q.push(")");
                for row in q.build().fetch_all(pool).await? {
                    let (hash, xorb, idx): (Vec<u8>, Vec<u8>, i64) =
                        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                    if let (Ok(hash), Ok(xorb), Ok(index)) = (
                        <[u8; 32]>::try_from(hash.as_slice()),
                        <[u8; 32]>::try_from(xorb.as_slice()),
                        u32::try_from(idx),
                    ) {
                        out.insert(hash, ChunkLocation { xorb, index });
                    }
                }
            }
            Ok(out)
        })
    }

    /// A page of LFS objects in oid order after `after` (`None` = from the start): each with
    /// its size and the last time it was uploaded or linked to a repository (milliseconds).
    pub async fn lfs_objects_page(
        &self,
        after: Option<&Sha256Hex>,
        limit: u32,
    ) -> Result<Vec<(Sha256Hex, u64, i64)>> {
        with_pool!(self, pool => {
            // The larger of two values: a scalar max() on SQLite, GREATEST() on PostgreSQL.
            let greatest = match self.backend() {
                Backend::Sqlite => "MAX",
                Backend::Postgres => "GREATEST",
            };
            let sql = format!(
                "SELECT o.sha256, o.size, {greatest}(o.created_at, \
                     COALESCE((SELECT MAX(r.created_at) FROM repo_lfs_objects r WHERE r.sha256 = o.sha256), 0)) \
                 FROM lfs_objects o WHERE o.sha256 > $1 ORDER BY o.sha256 LIMIT $2"
            );
            let rows = sqlx::query(&sql)
            .bind(after.map_or("", |a| a.as_str()))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (oid, size, touched): (String, i64, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                if let Ok(oid) = Sha256Hex::parse(&oid) {
                    out.push((oid, u64::try_from(size).unwrap_or(0), touched));
                }
            }
            Ok(out)
        })
    }

    /// Forgets LFS object `oid` — its repository links, the Xet files holding its bytes and
    /// the object itself — unless it was uploaded or linked at or after `cutoff_ms`.
    /// Returns whether it was forgotten. The xorbs those files named are left for
    /// [`Db::drop_xorb_if_unreferenced`].
    pub async fn forget_lfs_object(&self, oid: &Sha256Hex, cutoff_ms: i64) -> Result<bool> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let recent: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM lfs_objects WHERE sha256 = $1 AND (created_at >= $2 OR EXISTS \
                     (SELECT 1 FROM repo_lfs_objects WHERE sha256 = $3 AND created_at >= $4))",
            )
            .bind(oid.as_str())
            .bind(cutoff_ms)
            .bind(oid.as_str())
            .bind(cutoff_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if recent.is_some() {
                return Ok(false);
            }
            sqlx::query("DELETE FROM repo_lfs_objects WHERE sha256 = $1")
                .bind(oid.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM xet_file_xorbs WHERE file_hash IN (SELECT file_hash FROM xet_files WHERE sha256 = $1)",
            )
            .bind(oid.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM xet_files WHERE sha256 = $1")
                .bind(oid.as_str())
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM lfs_objects WHERE sha256 = $1")
                .bind(oid.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// A page of xorbs (hash order, after `after`) created before `cutoff_ms`, released by
    /// compaction (if ever) at or before it and last uploaded by a user (if ever) before it,
    /// that no recorded file names, with their stored size.
    pub async fn unreferenced_xorbs_page(
        &self,
        after: &[u8; 32],
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<([u8; 32], u64)>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT x.hash, x.stored_bytes FROM xet_xorbs x WHERE x.hash > $1 AND x.created_at < $2 \
                 AND COALESCE(x.released_at, 0) <= $3 AND NOT EXISTS (SELECT 1 FROM xet_file_xorbs fx WHERE fx.xorb = x.hash) \
                 AND NOT EXISTS (SELECT 1 FROM xet_user_xorbs u WHERE u.hash = x.hash AND u.created_at >= $4) \
                 ORDER BY x.hash LIMIT $5",
            )
            .bind(after.as_slice())
            .bind(cutoff_ms)
            .bind(cutoff_ms)
            .bind(cutoff_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (hash, bytes): (Vec<u8>, i64) = (row.try_get(0)?, row.try_get(1)?);
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    out.push((hash, u64::try_from(bytes).unwrap_or(0)));
                }
            }
            Ok(out)
        })
    }

    /// Drops xorb `hash` from the indices — its chunk-index entries first, then the
    /// repositories' references and its uploaders' (once it is gone, a shard naming it is
    /// refused like one naming an unknown xorb, whoever uploaded it), then the xorb — if it
    /// is still older than `cutoff_ms`, was neither released by compaction nor uploaded by a
    /// user after it (a client trusts what it uploaded for less than the grace period), and
    /// no file names it. One transaction, so a file recorded concurrently either names it
    /// first (and it stays) or finds it gone (and is refused, see [`Db::record_xet_file`]);
    /// an upload likewise renews its row first (and it stays) or fails to link it.
    /// Returns the number of chunk-index entries dropped, or `None` when the xorb stays.
    pub async fn drop_xorb_if_unreferenced(
        &self,
        hash: &[u8; 32],
        cutoff_ms: i64,
    ) -> Result<Option<u64>> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let still: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM xet_xorbs x WHERE x.hash = $1 AND x.created_at < $2 \
                 AND COALESCE(x.released_at, 0) <= $3 \
                 AND NOT EXISTS (SELECT 1 FROM xet_file_xorbs fx WHERE fx.xorb = x.hash) \
                 AND NOT EXISTS (SELECT 1 FROM xet_user_xorbs u WHERE u.hash = x.hash AND u.created_at >= $4)",
            )
            .bind(hash.as_slice())
            .bind(cutoff_ms)
            .bind(cutoff_ms)
            .bind(cutoff_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if still.is_none() {
                return Ok(None);
            }
            let chunks = sqlx::query("DELETE FROM xet_chunks WHERE xorb = $1")
                .bind(hash.as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            for sql in [
                "DELETE FROM xet_repo_xorbs WHERE hash = $1",
                "DELETE FROM xet_user_xorbs WHERE hash = $1",
                "DELETE FROM xet_xorbs WHERE hash = $1",
            ] {
                sqlx::query(sql)
                    .bind(hash.as_slice())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(chunks))
        })
    }

    /// Puts back the chunk-index entries of recorded xorb `xorb` (`chunk_hashes` in its
    /// order) that are missing; a chunk indexed elsewhere keeps its place. Nothing happens
    /// if the xorb is not recorded (garbage collection dropped it meanwhile). Returns the
    /// entries added.
    pub async fn reindex_xorb_chunks(
        &self,
        xorb: &[u8; 32],
        chunk_hashes: &[[u8; 32]],
    ) -> Result<u64> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let held: Option<i32> = sqlx::query_scalar("SELECT 1 FROM xet_xorbs WHERE hash = $1")
                .bind(xorb.as_slice())
                .fetch_optional(&mut *tx)
                .await?;
            if held.is_none() {
                return Ok(0);
            }
            let added =
                crate::xet::index_xorb_chunks(Conn::from(&mut *tx), xorb.as_slice(), chunk_hashes)
                    .await?;
            tx.commit().await?;
            Ok(added)
        })
    }

    /// Puts back the rows saying which xorbs file `file_hash` names (from its terms), if
    /// the file is recorded. Returns the rows added.
    pub async fn reindex_file_xorbs(
        &self,
        file_hash: &[u8; 32],
        xorbs: &[[u8; 32]],
    ) -> Result<u64> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut added = 0;
            for xorb in xorbs {
                added += sqlx::query(
                    "INSERT INTO xet_file_xorbs (file_hash, xorb) \
                     SELECT file_hash, $1 FROM xet_files WHERE file_hash = $2 \
                     ON CONFLICT (file_hash, xorb) DO NOTHING",
                )
                .bind(xorb.as_slice())
                .bind(file_hash.as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    /// Records one finished garbage collection.
    pub async fn record_gc_run(&self, run: &GcRun) -> Result<()> {
        with_pool!(self, pool => {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            sqlx::query(
                "INSERT INTO storage_gc_runs (started_at, finished_at, dry_run, xorbs_deleted, \
                 bytes_freed, chunks_freed, objects_forgotten) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(run.started_at_ms)
            .bind(run.finished_at_ms)
            .bind(run.dry_run)
            .bind(n(run.xorbs_deleted))
            .bind(n(run.bytes_freed))
            .bind(n(run.chunks_freed))
            .bind(n(run.objects_forgotten))
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Every garbage collection that changed something (dry runs excluded), summed, with
    /// when the last one finished.
    pub async fn gc_totals(&self) -> Result<GcTotals> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT COUNT(*), CAST(COALESCE(SUM(xorbs_deleted), 0) AS BIGINT), CAST(COALESCE(SUM(bytes_freed), 0) AS BIGINT), \
                        CAST(COALESCE(SUM(chunks_freed), 0) AS BIGINT), CAST(COALESCE(SUM(objects_forgotten), 0) AS BIGINT), \
                        COALESCE(MAX(finished_at), 0) \
                 FROM storage_gc_runs WHERE dry_run = FALSE",
            )
            .fetch_one(pool)
            .await?;
            let n = |i: usize| -> Result<u64> {
                let v: i64 = row.try_get(i)?;
                Ok(u64::try_from(v).unwrap_or(0))
            };
            Ok(GcTotals {
                runs: n(0)?,
                xorbs_deleted: n(1)?,
                bytes_freed: n(2)?,
                chunks_freed: n(3)?,
                objects_forgotten: n(4)?,
                last_finished_at_ms: row.try_get(5)?,
            })
        })
    }

    /// Logical bytes: every large file counted once per repository linking it.
    pub async fn storage_logical_bytes(&self) -> Result<u64> {
        with_pool!(self, pool => {
            let v: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(o.size), 0) AS BIGINT) FROM repo_lfs_objects l \
                 JOIN lfs_objects o ON o.sha256 = l.sha256",
            )
            .fetch_one(pool)
            .await?;
            Ok(u64::try_from(v).unwrap_or(0))
        })
    }

    /// The store's totals: (distinct LFS objects, their bytes, xorbs, xorb stored bytes,
    /// xorb raw bytes, chunks indexed).
    pub async fn storage_totals(&self) -> Result<StorageTotals> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM lfs_objects), (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM lfs_objects), \
                        (SELECT COUNT(*) FROM xet_xorbs), (SELECT CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) FROM xet_xorbs), \
                        (SELECT CAST(COALESCE(SUM(raw_bytes), 0) AS BIGINT) FROM xet_xorbs), (SELECT COUNT(*) FROM xet_chunks)",
            )
            .fetch_one(pool)
            .await?;
            let n = |i: usize| -> Result<u64> {
                let v: i64 = row.try_get(i)?;
                Ok(u64::try_from(v).unwrap_or(0))
            };
            Ok(StorageTotals {
                objects: n(0)?,
                object_bytes: n(1)?,
                xorbs: n(2)?,
                xorb_stored_bytes: n(3)?,
                xorb_raw_bytes: n(4)?,
                chunks: n(5)?,
            })
        })
    }

    /// Per repository: (type, namespace, name, LFS objects linked, their bytes), largest first.
    pub async fn storage_by_repo(&self) -> Result<Vec<RepoStorage>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT r.repo_type, r.namespace, r.name, COUNT(o.sha256), CAST(COALESCE(SUM(o.size), 0) AS BIGINT) \
                 FROM repos r JOIN repo_lfs_objects l ON l.repo_id = r.id \
                 JOIN lfs_objects o ON o.sha256 = l.sha256 \
                 GROUP BY r.id ORDER BY 5 DESC, r.namespace, r.name",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (objects, bytes): (i64, i64) = (row.try_get(3)?, row.try_get(4)?);
                out.push(RepoStorage {
                    repo_type: row.try_get(0)?,
                    namespace: row.try_get(1)?,
                    name: row.try_get(2)?,
                    objects: u64::try_from(objects).unwrap_or(0),
                    logical_bytes: u64::try_from(bytes).unwrap_or(0),
                });
            }
            Ok(out)
        })
    }

    /// Some repository LFS object `oid` is linked to, if any.
    pub async fn a_repo_linking(&self, oid: &Sha256Hex) -> Result<Option<i64>> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT repo_id FROM repo_lfs_objects WHERE sha256 = $1 ORDER BY repo_id LIMIT 1",
            )
            .bind(oid.as_str())
            .fetch_optional(pool)
            .await?)
        })
    }
}

/// The chunk store's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageTotals {
    pub objects: u64,
    pub object_bytes: u64,
    pub xorbs: u64,
    pub xorb_stored_bytes: u64,
    pub xorb_raw_bytes: u64,
    pub chunks: u64,
}

/// One finished garbage collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcRun {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub dry_run: bool,
    pub xorbs_deleted: u64,
    pub bytes_freed: u64,
    pub chunks_freed: u64,
    pub objects_forgotten: u64,
}

/// Garbage collections that changed something, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcTotals {
    pub runs: u64,
    pub xorbs_deleted: u64,
    pub bytes_freed: u64,
    pub chunks_freed: u64,
    pub objects_forgotten: u64,
    pub last_finished_at_ms: i64,
}

/// One repository's large files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStorage {
    pub repo_type: String,
    pub namespace: String,
    pub name: String,
    pub objects: u64,
    pub logical_bytes: u64,
}

#[cfg(test)]
mod tests {
    use crate::xet::XorbRecord;

    crate::backend_tests! {
    async fn recording_a_xorb_indexes_its_chunks_once(db) {
        let rec = XorbRecord {
            stored_bytes: 10,
            raw_bytes: 10,
            num_chunks: 2,
            chunk_index: vec![1; 80],
        };
        db.record_xorb(&[1; 32], &rec, &[[7; 32], [8; 32]], 1)
            .await
            .expect("first");
        // A second xorb holding chunk 8 again does not move its location.
        db.record_xorb(&[2; 32], &rec, &[[8; 32], [9; 32]], 2)
            .await
            .expect("second");
        let found = db
            .chunk_locations(&[[7; 32], [8; 32], [9; 32], [6; 32]])
            .await
            .expect("lookup");
        assert_eq!(found.len(), 3);
        assert_eq!(found[&[8; 32]].xorb, [1; 32]);
        assert_eq!(found[&[8; 32]].index, 1);
        assert_eq!(found[&[9; 32]].xorb, [2; 32]);
        assert_eq!(found[&[9; 32]].index, 1);
    }
    }

    crate::backend_tests! {
    async fn reindexing_restores_missing_entries_only_for_recorded_xorbs(db) {
        let rec = XorbRecord {
            stored_bytes: 10,
            raw_bytes: 10,
            num_chunks: 2,
            chunk_index: vec![1; 80],
        };
        db.record_xorb(&[1; 32], &rec, &[[7; 32], [8; 32]], 1)
            .await
            .expect("first");
        db.record_xorb(&[2; 32], &rec, &[[8; 32], [9; 32]], 2)
            .await
            .expect("second");
        crate::backend::with_pool!(db, pool => {
            sqlx::query("DELETE FROM xet_chunks WHERE hash IN ($1, $2)")
                .bind([7u8; 32].as_slice())
                .bind([9u8; 32].as_slice())
                .execute(pool)
                .await
                .expect("delete");
        });
        // A xorb that is not recorded gets no entries.
        assert_eq!(
            db.reindex_xorb_chunks(&[3; 32], &[[5; 32]])
                .await
                .expect("q"),
            0
        );
        assert_eq!(
            db.reindex_xorb_chunks(&[2; 32], &[[8; 32], [9; 32]])
                .await
                .expect("q"),
            1
        );
        assert_eq!(
            db.reindex_xorb_chunks(&[1; 32], &[[7; 32], [8; 32]])
                .await
                .expect("q"),
            1
        );
        // Again: nothing to add.
        assert_eq!(
            db.reindex_xorb_chunks(&[1; 32], &[[7; 32], [8; 32]])
                .await
                .expect("q"),
            0
        );
        let found = db
            .chunk_locations(&[[5; 32], [7; 32], [8; 32], [9; 32]])
            .await
            .expect("lookup");
        assert_eq!(found.len(), 3);
        assert_eq!(found[&[8; 32]].xorb, [1; 32], "an entry kept its place");
        assert_eq!((found[&[9; 32]].xorb, found[&[9; 32]].index), ([2; 32], 1));
        assert_eq!((found[&[7; 32]].xorb, found[&[7; 32]].index), ([1; 32], 0));
    }
    }

    crate::backend_tests! {
    async fn gc_runs_sum_without_dry_runs(db) {
        assert_eq!(db.gc_totals().await.expect("q"), crate::storage::GcTotals::default());
        for (dry_run, bytes) in [(false, 10), (true, 1000), (false, 5)] {
            db.record_gc_run(&crate::storage::GcRun {
                started_at_ms: 1,
                finished_at_ms: 7,
                dry_run,
                xorbs_deleted: 1,
                bytes_freed: bytes,
                chunks_freed: 2,
                objects_forgotten: 3,
            })
            .await
            .expect("record");
        }
        let t = db.gc_totals().await.expect("q");
        assert_eq!(
            (t.runs, t.bytes_freed, t.chunks_freed, t.xorbs_deleted),
            (2, 15, 4, 2)
        );
        assert_eq!(t.last_finished_at_ms, 7);
    }
    }
}
