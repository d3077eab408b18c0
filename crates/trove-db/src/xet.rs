//! The Xet chunk store's indices: xorbs and the files reconstructed from them. The formats
//! of the blobs (chunk index, terms) belong to `trove-xet`; here they are opaque bytes.

use crate::backend::{Conn, WritePool, with_conn, with_pool};
use crate::db::Db;
use crate::error::{DbError, Result};
use crate::reader::read_rows;
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use trove_types::Sha256Hex;

/// Hashes per query in [`Db::xorb_indices`], well under SQLite's bound-parameter limit.
const HASHES_PER_QUERY: usize = 500;

/// Who asks about a xorb through the CAS: the token's repository, the user the token was
/// issued to (`None` for an anonymous reader), and whether that user may read every
/// repository of the repository's namespace (`whole_namespace`: its owner, a member of its
/// organization, a site administrator, through a token that reaches the namespace). A xorb is
/// visible to them when it is referenced — uploaded for a repository, or making up a file
/// linked to one — by their repository, or, `whole_namespace`, by any repository of its
/// namespace; or when that user uploaded it (table `xet_user_xorbs`, migration 0030): the
/// user sent its bytes, so naming it tells them nothing about anybody else's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XorbViewer {
    pub repo_id: i64,
    pub user_id: Option<i64>,
    pub whole_namespace: bool,
}

/// The condition that repository `o` is in reach of the repository bound as `$2`: that
/// repository itself, or with `whole_namespace` any repository of its namespace.
fn repo_in_reach(whole_namespace: bool) -> &'static str {
    if whole_namespace {
        "o.namespace = (SELECT namespace FROM repos WHERE id = $2)"
    } else {
        "o.id = $2"
    }
}

/// Pushes the condition that xorb `x` is visible to `viewer` (see [`XorbViewer`]).
fn push_visible_to<'a, DB>(q: &mut QueryBuilder<'a, DB>, viewer: XorbViewer)
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let in_reach = |q: &mut QueryBuilder<'a, DB>| {
        if viewer.whole_namespace {
            q.push("o.namespace = (SELECT namespace FROM repos WHERE id = ")
                .push_bind(viewer.repo_id)
                .push(")");
        } else {
            q.push("o.id = ").push_bind(viewer.repo_id);
        }
    };
    q.push(
        "(EXISTS (SELECT 1 FROM xet_repo_xorbs r JOIN repos o ON o.id = r.repo_id \
         WHERE r.hash = x.hash AND ",
    );
    in_reach(q);
    q.push(
        ") OR EXISTS (SELECT 1 FROM xet_file_xorbs fx JOIN xet_files f ON f.file_hash = fx.file_hash \
         JOIN repo_lfs_objects l ON l.sha256 = f.sha256 JOIN repos o ON o.id = l.repo_id \
         WHERE fx.xorb = x.hash AND ",
    );
    in_reach(q);
    // A NULL user matches no row: a token without a user sees what its reach shows.
    q.push(") OR EXISTS (SELECT 1 FROM xet_user_xorbs u WHERE u.hash = x.hash AND u.user_id = ")
        .push_bind(viewer.user_id)
        .push("))");
}

/// The query for the chunk indices of the xorbs of `batch` that are recorded and, given a
/// viewer, visible to it.
fn indices_query<'a, DB>(batch: &'a [[u8; 32]], viewer: Option<XorbViewer>) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q =
        QueryBuilder::new("SELECT x.hash, x.chunk_index FROM xet_xorbs x WHERE x.hash IN (");
    let mut sep = q.separated(", ");
    for h in batch {
        sep.push_bind(h.as_slice());
    }
    q.push(")");
    if let Some(viewer) = viewer {
        q.push(" AND ");
        push_visible_to(&mut q, viewer);
    }
    q
}

/// A stored xorb as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorbRecord {
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub num_chunks: u32,
    pub chunk_index: Vec<u8>,
}

/// A verified Xet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XetFile {
    pub file_hash: [u8; 32],
    pub size: u64,
    pub sha256: Sha256Hex,
    pub terms: Vec<u8>,
}

/// What a download of an LFS object needs to know ([`Db::lfs_download`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsDownload {
    /// The repository's owners deleted the object permanently: its pointers remain, its
    /// bytes are not served.
    pub deleted: bool,
    /// The verified Xet file holding the object's bytes, if any.
    pub xet: Option<XetFile>,
}

fn to_sql(what: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| DbError::OutOfRange { what, value })
}

fn from_sql(what: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| DbError::Corrupt {
        what,
        detail: value.to_string(),
    })
}

fn hash_from_sql(bytes: Vec<u8>) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| DbError::Corrupt {
        what: "xet hash",
        detail: format!("{} bytes", bytes.len()),
    })
}

fn file_from_row(row: &impl crate::backend::DbRow) -> Result<XetFile> {
    let sha: String = row.try_get("sha256")?;
    Ok(XetFile {
        file_hash: hash_from_sql(row.try_get("file_hash")?)?,
        size: from_sql("xet file size", row.try_get("size")?)?,
        sha256: Sha256Hex::parse(&sha).map_err(|_| DbError::Corrupt {
            what: "xet file sha256",
            detail: sha,
        })?,
        terms: row.try_get("terms")?,
    })
}

/// One row of [`Db::lfs_download`]'s query: the deletion flag, and a Xet file holding the
/// object with its creation time (to pick the oldest), if any.
fn download_from_row(row: &impl crate::backend::DbRow) -> Result<(bool, Option<(i64, XetFile)>)> {
    let held: Option<Vec<u8>> = row.try_get("file_hash")?;
    let deleted = row.try_get("deleted")?;
    let xet = match held {
        Some(_) => Some((row.try_get("created_at")?, file_from_row(row)?)),
        None => None,
    };
    Ok((deleted, xet))
}

impl Db {
    /// Records a validated, durably stored xorb. Returns whether this call inserted it
    /// (false: it was already recorded, which is not an error).
    pub async fn record_xorb(
        &self,
        hash: &[u8; 32],
        xorb: &XorbRecord,
        chunk_hashes: &[[u8; 32]],
        now_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = insert_xorb(Conn::from(&mut *tx), hash, xorb, chunk_hashes, now_ms).await?;
            tx.commit().await?;
            Ok(inserted)
        })
    }

    /// Records what an LFS upload packed on the server, in one transaction: its new xorbs
    /// (with their chunks, each linked to `repo_id` as an upload of that repository), then
    /// `file` naming `xorbs` (new ones and ones held before) as with
    /// [`Self::record_xet_file`]. Either all of it is recorded or none.
    pub async fn record_ingested_file(
        &self,
        repo_id: i64,
        new_xorbs: &[NewXorb],
        file: &XetFile,
        xorbs: &[[u8; 32]],
        now_ms: i64,
    ) -> Result<()> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for x in new_xorbs {
                insert_xorb(Conn::from(&mut *tx), &x.hash, &x.record, &x.chunk_hashes, now_ms).await?;
                insert_repo_xorb(Conn::from(&mut *tx), repo_id, &x.hash, now_ms).await?;
            }
            insert_xet_file(Conn::from(&mut *tx), repo_id, file, xorbs, now_ms).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The stored size of a recorded xorb, if any.
    pub async fn xorb_stored_bytes(&self, hash: &[u8; 32]) -> Result<Option<u64>> {
        with_pool!(self, pool => {
            let n: Option<i64> =
                sqlx::query_scalar("SELECT stored_bytes FROM xet_xorbs WHERE hash = $1")
                    .bind(hash.as_slice())
                    .fetch_optional(pool)
                    .await?;
            n.map(|n| from_sql("xorb stored bytes", n)).transpose()
        })
    }

    /// The chunk indices of those of `hashes` that are recorded.
    pub async fn xorb_indices(&self, hashes: &[[u8; 32]]) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        self.indices(hashes, None).await
    }

    /// The chunk indices of those of `hashes` that are recorded and, given a viewer, visible
    /// to it, in batches of [`HASHES_PER_QUERY`].
    async fn indices(
        &self,
        hashes: &[[u8; 32]],
        viewer: Option<XorbViewer>,
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        with_pool!(self, pool => {
            let mut out = HashMap::with_capacity(hashes.len());
            for batch in hashes.chunks(HASHES_PER_QUERY) {
                for row in indices_query(batch, viewer).build().fetch_all(pool).await? {
                    out.insert(
                        hash_from_sql(row.try_get("hash")?)?,
                        row.try_get("chunk_index")?,
                    );
                }
            }
            Ok(out)
        })
    }

    /// Makes repository `repo_id` reference a stored xorb (its token uploaded the bytes).
    /// Returns whether the link is new. Fails with `NotFound` if the xorb is not recorded.
    pub async fn link_repo_xorb(&self, repo_id: i64, hash: &[u8; 32], now_ms: i64) -> Result<bool> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            insert_repo_xorb(Conn::from(&mut *conn), repo_id, hash, now_ms).await
        })
    }

    /// Records an accepted CAS upload of stored xorb `hash`: repository `viewer.repo_id`
    /// references it, and user `viewer.user_id` (if any) uploaded it at `now_ms` (their last
    /// upload of it, which garbage collection counts its grace period from), in one
    /// transaction. Returns whether the repository's link is new. Fails with `NotFound` if
    /// the xorb is not recorded (garbage collection dropped it meanwhile).
    pub async fn link_uploaded_xorb(
        &self,
        viewer: XorbViewer,
        hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let linked = insert_repo_xorb(Conn::from(&mut *tx), viewer.repo_id, hash, now_ms).await?;
            if let Some(user_id) = viewer.user_id {
                sqlx::query(
                    "INSERT INTO xet_user_xorbs (user_id, hash, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, hash) DO UPDATE SET created_at = excluded.created_at \
                     WHERE xet_user_xorbs.created_at < excluded.created_at",
                )
                .bind(user_id)
                .bind(hash.as_slice())
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(crate::error::constraint_error("user xorb link", "user or xorb"))?;
            }
            tx.commit().await?;
            Ok(linked)
        })
    }

    /// Whether user `user_id` uploaded stored xorb `hash` through the CAS.
    pub async fn user_uploaded_xorb(&self, user_id: i64, hash: &[u8; 32]) -> Result<bool> {
        with_pool!(self, pool => {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM xet_user_xorbs WHERE user_id = $1 AND hash = $2",
            )
            .bind(user_id)
            .bind(hash.as_slice())
            .fetch_optional(pool)
            .await?;
            Ok(found.is_some())
        })
    }

    /// The stored size of a xorb visible to `viewer` (see [`XorbViewer`]); `None` whether the
    /// xorb is unknown or held for others only.
    pub async fn visible_xorb_stored_bytes(
        &self,
        viewer: XorbViewer,
        hash: &[u8; 32],
    ) -> Result<Option<u64>> {
        with_pool!(self, pool => {
            let mut q = QueryBuilder::new("SELECT x.stored_bytes FROM xet_xorbs x WHERE x.hash = ");
            q.push_bind(hash.as_slice()).push(" AND ");
            push_visible_to(&mut q, viewer);
            let row = q.build().fetch_optional(pool).await?;
            row.map(|row| from_sql("xorb stored bytes", row.try_get("stored_bytes")?))
                .transpose()
        })
    }

    /// [`Db::xorb_indices`] limited to the xorbs visible to `viewer` (see [`XorbViewer`]).
    pub async fn visible_xorb_indices(
        &self,
        viewer: XorbViewer,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        self.indices(hashes, Some(viewer)).await
    }

    /// Whether xorb `hash` was uploaded to repository `repo_id` (or, `namespace_wide`, to a
    /// repository of its namespace): linked by an upload, whether or not a file names it yet.
    pub async fn xorb_uploaded_to(
        &self,
        hash: &[u8; 32],
        repo_id: i64,
        namespace_wide: bool,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let scope = repo_in_reach(namespace_wide);
            let found: Option<i32> = sqlx::query_scalar(&format!(
                "SELECT 1 FROM repos o JOIN xet_repo_xorbs r ON r.repo_id = o.id AND r.hash = $1 \
                 WHERE {scope} LIMIT 1"
            ))
            .bind(hash.as_slice())
            .bind(repo_id)
            .fetch_optional(pool)
            .await?;
            Ok(found.is_some())
        })
    }

    /// Records a file whose bytes the server reconstructed and hashed, with the xorbs its
    /// terms name, and makes it an LFS object linked to `repo_id` (which thereby references
    /// those xorbs), all in one transaction. Idempotent; returns whether the repository's
    /// link to the object is new.
    pub async fn record_xet_file(
        &self,
        repo_id: i64,
        file: &XetFile,
        xorbs: &[[u8; 32]],
        now_ms: i64,
    ) -> Result<bool> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let linked = insert_xet_file(Conn::from(&mut *tx), repo_id, file, xorbs, now_ms).await?;
            tx.commit().await?;
            Ok(linked)
        })
    }

    /// Whether Xet file `file_hash` holds the bytes of an LFS object of a repository in
    /// `viewer`'s reach: its repository, or with `whole_namespace` any of its namespace (the
    /// user rule of [`XorbViewer`] does not apply: files are not recorded per user).
    pub async fn xet_file_in_reach(
        &self,
        viewer: XorbViewer,
        file_hash: &[u8; 32],
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let reach = repo_in_reach(viewer.whole_namespace);
            let found: Option<i32> = sqlx::query_scalar(&format!(
                "SELECT 1 FROM xet_files f JOIN repo_lfs_objects l ON l.sha256 = f.sha256 \
                 JOIN repos o ON o.id = l.repo_id WHERE f.file_hash = $1 AND {reach} LIMIT 1"
            ))
            .bind(file_hash.as_slice())
            .bind(viewer.repo_id)
            .fetch_optional(pool)
            .await?;
            Ok(found.is_some())
        })
    }

    /// A page of recorded xorbs in hash order after `after`: (hash, chunk index).
    pub async fn xorbs_page(
        &self,
        after: &[u8; 32],
        limit: u32,
    ) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT hash, chunk_index FROM xet_xorbs WHERE hash > $1 ORDER BY hash LIMIT $2",
            )
            .bind(after.as_slice())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        hash_from_sql(row.try_get("hash")?)?,
                        row.try_get("chunk_index")?,
                    ))
                })
                .collect()
        })
    }

    /// A page of Xet files in file-hash order after `after`.
    pub async fn xet_files_page(&self, after: &[u8; 32], limit: u32) -> Result<Vec<XetFile>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT file_hash, size, sha256, terms FROM xet_files WHERE file_hash > $1 \
                 ORDER BY file_hash LIMIT $2",
            )
            .bind(after.as_slice())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(file_from_row).collect()
        })
    }

    /// A verified Xet file by its Xet hash.
    pub async fn xet_file(&self, file_hash: &[u8; 32]) -> Result<Option<XetFile>> {
        with_pool!(self, pool => {
            let row =
                sqlx::query("SELECT file_hash, size, sha256, terms FROM xet_files WHERE file_hash = $1")
                    .bind(file_hash.as_slice())
                    .fetch_optional(pool)
                    .await?;
            row.as_ref().map(file_from_row).transpose()
        })
    }

    /// A verified Xet file holding the bytes of LFS object `sha256`, if any (the oldest, when
    /// several chunkings of the same bytes exist).
    pub async fn xet_file_by_sha256(&self, sha256: &Sha256Hex) -> Result<Option<XetFile>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT file_hash, size, sha256, terms FROM xet_files WHERE sha256 = $1 \
                 ORDER BY created_at, file_hash LIMIT 1",
            )
            .bind(sha256.as_str())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(file_from_row).transpose()
        })
    }

    /// What a download of LFS object `sha256` from repository `repo_id` needs to know, in one
    /// query: [`Db::repo_lfs_file_deleted`] and [`Db::xet_file_by_sha256`].
    pub async fn lfs_download(&self, repo_id: i64, sha256: &Sha256Hex) -> Result<LfsDownload> {
        // Every LFS download asks this: on the calling thread (see `reader.rs`).
        // Every Xet file of the object, usually one, and the oldest kept here: an `ORDER BY
        // ... LIMIT 1` in the query made SQLite materialize the subquery and sort it in a
        // temporary b-tree on every download.
        let rows = read_rows!(
            self,
            "SELECT EXISTS (SELECT 1 FROM repo_lfs_deletions d \
               WHERE d.repo_id = $1 AND d.sha256 = $2 AND NOT EXISTS \
               (SELECT 1 FROM repo_lfs_objects l WHERE l.repo_id = d.repo_id AND l.sha256 = d.sha256)) \
               AS deleted, f.file_hash, f.size, f.sha256, f.terms, f.created_at \
             FROM (SELECT 1 AS one) o LEFT JOIN xet_files f ON f.sha256 = $2",
            [repo_id, sha256.as_str()],
            row => download_from_row(row)
        )?;
        let deleted = match rows.first() {
            Some((deleted, _)) => *deleted,
            None => {
                return Err(DbError::Corrupt {
                    what: "lfs download",
                    detail: "the query of at least one row answered none".into(),
                });
            }
        };
        let xet = rows
            .into_iter()
            .filter_map(|(_, file)| file)
            .min_by(|(a_at, a), (b_at, b)| (a_at, a.file_hash).cmp(&(b_at, b.file_hash)))
            .map(|(_, file)| file);
        Ok(LfsDownload { deleted, xet })
    }

    /// Whether repository `repo_id` may read Xet file `file_hash`: the file's bytes are an
    /// LFS object linked to that repository.
    pub async fn repo_may_read_xet_file(&self, repo_id: i64, file_hash: &[u8; 32]) -> Result<bool> {
        with_pool!(self, pool => {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM xet_files f JOIN repo_lfs_objects r ON r.sha256 = f.sha256 \
                 WHERE f.file_hash = $1 AND r.repo_id = $2 LIMIT 1",
            )
            .bind(file_hash.as_slice())
            .bind(repo_id)
            .fetch_optional(pool)
            .await?;
            Ok(found.is_some())
        })
    }

    /// The newest files (at most `limit`, newest first) whose terms name xorb `xorb` and
    /// that a global-dedup query of repository `repo_id` may learn about: linked to that
    /// repository, or with `namespace_wide` to any repository of its namespace.
    pub async fn dedup_files_naming(
        &self,
        xorb: &[u8; 32],
        repo_id: i64,
        namespace_wide: bool,
        limit: u32,
    ) -> Result<Vec<XetFile>> {
        with_pool!(self, pool => {
            let scope = repo_in_reach(namespace_wide);
            let rows = sqlx::query(&format!(
                "SELECT f.file_hash, f.size, f.sha256, f.terms FROM xet_file_xorbs fx \
                 JOIN xet_files f ON f.file_hash = fx.file_hash \
                 WHERE fx.xorb = $1 AND EXISTS (SELECT 1 FROM repo_lfs_objects l \
                     JOIN repos o ON o.id = l.repo_id WHERE l.sha256 = f.sha256 AND {scope}) \
                 ORDER BY f.created_at DESC, f.file_hash DESC LIMIT $3"
            ))
            .bind(xorb.as_slice())
            .bind(repo_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(file_from_row).collect()
        })
    }

    /// For each of `oids` held by a verified Xet file, that file's hash (the oldest, when
    /// several exist). Oids without one are missing from the map.
    pub async fn xet_hashes_by_sha256(
        &self,
        oids: &[Sha256Hex],
    ) -> Result<HashMap<Sha256Hex, [u8; 32]>> {
        with_pool!(self, pool => {
            let mut out = HashMap::with_capacity(oids.len());
            for batch in oids.chunks(HASHES_PER_QUERY) {
                let mut q: QueryBuilder<'_, _> =
                    QueryBuilder::new("SELECT sha256, file_hash FROM xet_files WHERE sha256 IN (");
                let mut sep = q.separated(", ");
                for oid in batch {
                    sep.push_bind(oid.as_str());
                }
                q.push(") ORDER BY created_at DESC, file_hash DESC");
                for row in q.build().fetch_all(pool).await? {
                    let sha: String = row.try_get("sha256")?;
                    let Some(oid) = batch.iter().find(|o| o.as_str() == sha) else {
                        continue;
                    };
                    // Rows come newest first, so the last insert for an oid is its oldest file.
                    out.insert(oid.clone(), hash_from_sql(row.try_get("file_hash")?)?);
                }
            }
            Ok(out)
        })
    }
}

/// A xorb the server packed, to record with [`Db::record_ingested_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewXorb {
    pub hash: [u8; 32],
    pub record: XorbRecord,
    /// Its chunks' hashes in order.
    pub chunk_hashes: Vec<[u8; 32]>,
}

/// Inserts a xorb and indexes its chunks (inside the caller's transaction). Returns whether
/// it was new.
async fn insert_xorb(
    conn: Conn<'_>,
    hash: &[u8; 32],
    xorb: &XorbRecord,
    chunk_hashes: &[[u8; 32]],
    now_ms: i64,
) -> Result<bool> {
    let inserted = with_conn!(conn, c => {
        let done = sqlx::query(
            "INSERT INTO xet_xorbs (hash, stored_bytes, raw_bytes, num_chunks, chunk_index, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash.as_slice())
        .bind(to_sql("xorb stored bytes", xorb.stored_bytes)?)
        .bind(to_sql("xorb raw bytes", xorb.raw_bytes)?)
        .bind(xorb.num_chunks as i64)
        .bind(xorb.chunk_index.as_slice())
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
        // The chunk index learns the xorb's chunks in the same transaction, so an entry never
        // names a xorb the index does not hold.
        index_xorb_chunks(Conn::from(&mut *c), hash.as_slice(), chunk_hashes).await?;
        done.rows_affected() == 1
    });
    Ok(inserted)
}

/// Links a recorded xorb to a repository; whether the link is new.
async fn insert_repo_xorb(
    conn: Conn<'_>,
    repo_id: i64,
    hash: &[u8; 32],
    now_ms: i64,
) -> Result<bool> {
    with_conn!(conn, c => {
        let done = sqlx::query(
            "INSERT INTO xet_repo_xorbs (repo_id, hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo_id, hash) DO NOTHING",
        )
        .bind(repo_id)
        .bind(hash.as_slice())
        .bind(now_ms)
        .execute(&mut *c)
        .await
        .map_err(crate::error::constraint_error(
            "repo xorb link",
            "repo or xorb",
        ))?;
        Ok(done.rows_affected() == 1)
    })
}

/// The body of [`Db::record_xet_file`], inside the caller's transaction.
async fn insert_xet_file(
    conn: Conn<'_>,
    repo_id: i64,
    file: &XetFile,
    xorbs: &[[u8; 32]],
    now_ms: i64,
) -> Result<bool> {
    with_conn!(conn, c => {
        sqlx::query(
            "INSERT INTO xet_files (file_hash, size, sha256, terms, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (file_hash) DO NOTHING",
        )
        .bind(file.file_hash.as_slice())
        .bind(to_sql("xet file size", file.size)?)
        .bind(file.sha256.as_str())
        .bind(file.terms.as_slice())
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
        for xorb in xorbs {
            // Garbage collection drops unreferenced xorbs in a transaction of its own: a
            // file must not name one that went meanwhile.
            let held: Option<i32> = sqlx::query_scalar("SELECT 1 FROM xet_xorbs WHERE hash = $1")
                .bind(xorb.as_slice())
                .fetch_optional(&mut *c)
                .await?;
            if held.is_none() {
                return Err(DbError::NotFound {
                    what: "xorb (garbage-collected meanwhile)",
                });
            }
            sqlx::query(
                "INSERT INTO xet_file_xorbs (file_hash, xorb) VALUES ($1, $2) \
                 ON CONFLICT (file_hash, xorb) DO NOTHING",
            )
            .bind(file.file_hash.as_slice())
            .bind(xorb.as_slice())
            .execute(&mut *c)
            .await?;
        }
        sqlx::query(
            "INSERT INTO lfs_objects (sha256, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(file.sha256.as_str())
        .bind(to_sql("xet file size", file.size)?)
        .bind(now_ms)
        .execute(&mut *c)
        .await?;
        let linked = sqlx::query(
            "INSERT INTO repo_lfs_objects (repo_id, sha256, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repo_id, sha256) DO NOTHING",
        )
        .bind(repo_id)
        .bind(file.sha256.as_str())
        .bind(now_ms)
        .execute(&mut *c)
        .await
        .map_err(crate::error::constraint_error(
            "repo_lfs_object",
            "repository",
        ))?;
        Ok(linked.rows_affected() > 0)
    })
}

/// Adds `xorb`'s chunks to the chunk index (`chunk_hashes` in its order), inside the caller's
/// transaction; chunks the index already places elsewhere keep their entry. Returns how many
/// entries were added.
pub(crate) async fn index_xorb_chunks(
    conn: Conn<'_>,
    xorb: &[u8],
    chunk_hashes: &[[u8; 32]],
) -> Result<u64> {
    let mut added = 0;
    with_conn!(conn, c => {
        for (i, batch) in chunk_hashes.chunks(HASHES_PER_QUERY / 2).enumerate() {
            let mut q: QueryBuilder<'_, _> =
                QueryBuilder::new("INSERT INTO xet_chunks (hash, xorb, idx) ");
            let base = i * (HASHES_PER_QUERY / 2);
            q.push_values(batch.iter().enumerate(), |mut row, (j, h)| {
                row.push_bind(h.as_slice())
                    .push_bind(xorb)
                    .push_bind((base + j) as i64);
            });
            q.push(" ON CONFLICT (hash) DO NOTHING");
            added += q.build().execute(&mut *c).await?.rows_affected();
        }
    });
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_types::{RepoId, RepoName, RepoType};

    fn sha(c: char) -> Sha256Hex {
        Sha256Hex::parse(&c.to_string().repeat(64)).expect("valid sha")
    }

    async fn repo(db: &Db, owner: i64, name: &str, private: bool) -> i64 {
        let id = RepoId::new(
            RepoName::parse("alice").expect("ns"),
            RepoName::parse(name).expect("name"),
        );
        db.create_repo(RepoType::Model, &id, private, owner, 1)
            .await
            .expect("repo")
            .id
    }

    crate::backend_tests! {
    async fn xorbs_are_recorded_once_and_found_in_batches(db) {
        let rec = XorbRecord {
            stored_bytes: 10,
            raw_bytes: 20,
            num_chunks: 1,
            chunk_index: vec![1; 40],
        };
        assert!(
            db.record_xorb(&[1; 32], &rec, &[[9; 32]], 1)
                .await
                .expect("insert")
        );
        assert!(
            !db.record_xorb(&[1; 32], &rec, &[[9; 32]], 2)
                .await
                .expect("again")
        );
        assert_eq!(db.xorb_stored_bytes(&[1; 32]).await.expect("q"), Some(10));
        assert_eq!(db.xorb_stored_bytes(&[2; 32]).await.expect("q"), None);
        let found = db.xorb_indices(&[[1; 32], [2; 32]]).await.expect("q");
        assert_eq!(found.len(), 1);
        assert_eq!(found[&[1; 32]], vec![1; 40]);
    }
    }

    crate::backend_tests! {
    async fn a_user_sees_the_xorbs_they_uploaded_in_any_namespace_until_collected(db) {
        let user = |name: &str| RepoName::parse(name).expect("name");
        let alice = db.create_user(&user("alice"), None, false).await.expect("user").id;
        let bob = db.create_user(&user("bob"), None, false).await.expect("user").id;
        db.create_org(&user("acme"), None).await.expect("org");
        let mut repos = Vec::new();
        for (owner, ns) in [(alice, "alice"), (alice, "acme"), (bob, "bob")] {
            let id = RepoId::new(user(ns), user("r"));
            let created = db.create_repo(RepoType::Model, &id, true, owner, 1).await;
            repos.push(created.expect("repo").id);
        }
        let (own, org, bobs) = (repos[0], repos[1], repos[2]);
        // Tokens that reach their whole namespace: the user rule is what this test is about.
        let viewer = |repo_id, user_id| XorbViewer {
            repo_id,
            user_id,
            whole_namespace: true,
        };
        let rec = XorbRecord {
            stored_bytes: 10,
            raw_bytes: 20,
            num_chunks: 1,
            chunk_index: vec![1; 40],
        };
        db.record_xorb(&[1; 32], &rec, &[[9; 32]], 1).await.expect("xorb");
        assert!(
            db.link_uploaded_xorb(viewer(own, Some(alice)), &[1; 32], 1)
                .await
                .expect("link")
        );
        let sees = async |v: XorbViewer| {
            let size = db.visible_xorb_stored_bytes(v, &[1; 32]).await.expect("q");
            let found = db.visible_xorb_indices(v, &[[1; 32], [2; 32]]).await.expect("q");
            assert_eq!(size.is_some(), found.contains_key(&[1; 32]), "{v:?}");
            assert!(!found.contains_key(&[2; 32]), "never an unrecorded xorb");
            size.is_some()
        };
        // Alice sees her upload from a repository of another namespace (her organization's),
        // which its namespace alone does not: her client names it from its cache.
        assert!(sees(viewer(org, Some(alice))).await);
        assert!(!sees(viewer(org, None)).await);
        // Bob does not, from his repository, whatever he claims to know.
        assert!(!sees(viewer(bobs, Some(bob))).await);
        // The repository it went to is deleted: still hers.
        assert!(db.delete_repo(own).await.expect("delete"));
        assert!(sees(viewer(org, Some(alice))).await);
        // Her uploads keep it through the grace period counted from the last one, never
        // counted from an earlier one, and no longer.
        for at in [5, 4] {
            db.link_uploaded_xorb(viewer(org, Some(alice)), &[1; 32], at)
                .await
                .expect("upload again");
        }
        assert!(db.unreferenced_xorbs_page(&[0; 32], 5, 10).await.expect("q").is_empty());
        assert_eq!(db.drop_xorb_if_unreferenced(&[1; 32], 5).await.expect("gc"), None);
        assert_eq!(
            db.unreferenced_xorbs_page(&[0; 32], 6, 10).await.expect("q"),
            vec![([1; 32], 10)]
        );
        // Collected: her row goes with it, and a later upload of the same bytes by bob
        // does not make it hers again.
        assert_eq!(
            db.drop_xorb_if_unreferenced(&[1; 32], 6).await.expect("gc"),
            Some(1)
        );
        assert!(!db.user_uploaded_xorb(alice, &[1; 32]).await.expect("q"));
        assert!(!sees(viewer(org, Some(alice))).await);
        db.record_xorb(&[1; 32], &rec, &[[9; 32]], 7).await.expect("again");
        db.link_uploaded_xorb(viewer(bobs, Some(bob)), &[1; 32], 7)
            .await
            .expect("link");
        assert!(sees(viewer(bobs, Some(bob))).await);
        assert!(!sees(viewer(org, Some(alice))).await);
        // A link to a xorb that is not recorded (collected meanwhile) is refused.
        assert!(matches!(
            db.link_uploaded_xorb(viewer(org, Some(alice)), &[3; 32], 8).await,
            Err(DbError::NotFound { .. })
        ));
        assert!(!db.user_uploaded_xorb(alice, &[3; 32]).await.expect("q"));
    }
    }

    crate::backend_tests! {
    async fn only_a_token_reaching_the_namespace_sees_its_other_repositories_xorbs(db) {
        let alice = db
            .create_user(&RepoName::parse("alice").expect("name"), None, false)
            .await
            .expect("user")
            .id;
        let secret = repo(&db, alice, "secret", true).await;
        let public = repo(&db, alice, "public", false).await;
        let rec = XorbRecord {
            stored_bytes: 10,
            raw_bytes: 20,
            num_chunks: 1,
            chunk_index: vec![1; 40],
        };
        // [1] uploaded for the private repository; [2] makes up a file linked to it.
        for h in [[1; 32], [2; 32]] {
            db.record_xorb(&h, &rec, &[h], 1).await.expect("xorb");
        }
        let uploader = XorbViewer {
            repo_id: secret,
            user_id: Some(alice),
            whole_namespace: true,
        };
        db.link_uploaded_xorb(uploader, &[1; 32], 1).await.expect("link");
        let file = XetFile {
            file_hash: [7; 32],
            size: 5,
            sha256: sha('b'),
            terms: vec![0; 44],
        };
        db.record_xet_file(secret, &file, &[[2; 32]], 1).await.expect("file");
        let sees = async |repo_id, whole_namespace| {
            // Bob's token: his user uploaded neither.
            let v = XorbViewer { repo_id, user_id: Some(alice + 100), whole_namespace };
            let found = db.visible_xorb_indices(v, &[[1; 32], [2; 32]]).await.expect("q");
            for h in [[1; 32], [2; 32]] {
                let size = db.visible_xorb_stored_bytes(v, &h).await.expect("q");
                assert_eq!(size.is_some(), found.contains_key(&h), "{v:?}");
            }
            found.len()
        };
        // Their own repository's token sees both, whatever its reach.
        assert_eq!(sees(secret, false).await, 2);
        assert_eq!(sees(secret, true).await, 2);
        // The public repository's: only when it reaches the namespace (a member's), not
        // when it reaches that repository alone (an anonymous reader's, a contributor's).
        assert_eq!(sees(public, true).await, 2);
        assert_eq!(sees(public, false).await, 0);
        // The file the private repository holds is in reach the same way.
        for (repo_id, whole_namespace, expected) in [
            (secret, false, true),
            (public, true, true),
            (public, false, false),
        ] {
            let v = XorbViewer { repo_id, user_id: None, whole_namespace };
            assert_eq!(db.xet_file_in_reach(v, &[7; 32]).await.expect("q"), expected, "{v:?}");
        }
    }
    }

    crate::backend_tests! {
    async fn a_xet_file_becomes_an_lfs_object_of_its_repo_only(db) {
        let alice = db
            .create_user(&RepoName::parse("alice").expect("name"), None, false)
            .await
            .expect("user");
        let a = repo(&db, alice.id, "a", false).await;
        let b = repo(&db, alice.id, "b", true).await;
        let file = XetFile {
            file_hash: [7; 32],
            size: 5,
            sha256: sha('a'),
            terms: vec![0; 44],
        };
        db.record_xet_file(a, &file, &[], 1).await.expect("record");
        db.record_xet_file(a, &file, &[], 2)
            .await
            .expect("idempotent");
        assert_eq!(db.repo_object_size(a, &sha('a')).await.expect("q"), Some(5));
        assert_eq!(db.repo_object_size(b, &sha('a')).await.expect("q"), None);
        assert!(db.repo_may_read_xet_file(a, &[7; 32]).await.expect("q"));
        assert!(!db.repo_may_read_xet_file(b, &[7; 32]).await.expect("q"));
        assert_eq!(db.xet_file(&[7; 32]).await.expect("q"), Some(file.clone()));
        assert_eq!(
            db.xet_file_by_sha256(&sha('a')).await.expect("q"),
            Some(file)
        );
        let hashes = db
            .xet_hashes_by_sha256(&[sha('a'), sha('b')])
            .await
            .expect("q");
        assert_eq!(hashes.len(), 1);
        assert_eq!(hashes[&sha('a')], [7; 32]);
    }
    }
}
