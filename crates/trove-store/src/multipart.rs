//! S3-style multipart uploads, as the Hugging Face client performs them: the server
//! announces fixed-size parts, the client PUTs parts 1..=n (retries may resend one), then
//! completes.
//!
//! An upload is a directory `multipart/<upload_id>/` holding `meta` (oid, size, part size;
//! written once), `data` (a sparse file of the final size, each part written at its offset)
//! and one `part-<n>` marker per part fully written and fsynced, containing its ETag. Markers
//! are created by atomic rename and removed before a part is rewritten, so a part cut off
//! midway never counts as done; one file per part also means concurrent parts never race on
//! a shared state file. The state survives a restart. Completion hashes the assembled bytes,
//! so whatever happened to the parts, a wrong object is never made visible.

use crate::durable::{self, PutOutcome, TempGuard, blocking, sync_dir};
use crate::error::{StoreError, io_at};
use crate::local::LocalStore;
use crate::stream::{StreamError, WRITE_BATCH, hash_into_file};
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use trove_types::Sha256Hex;
use uuid::Uuid;

const META_FILE: &str = "meta";
const DATA_FILE: &str = "data";
const META_MAGIC: &str = "trove-multipart 1";

/// What an upload is for, as recorded in its `meta` file.
#[derive(Debug)]
struct Meta {
    oid: Sha256Hex,
    size: u64,
    part_size: u64,
}

impl Meta {
    fn parts(&self) -> u32 {
        // Bounded by MAX_PARTS when the upload was begun, and checked again on decode.
        u32::try_from(self.size.div_ceil(self.part_size)).unwrap_or(u32::MAX)
    }

    /// Offset and length of part `part` (1-based, already range-checked).
    fn part_range(&self, part: u32) -> (u64, u64) {
        let offset = u64::from(part - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }

    fn encode(&self) -> String {
        format!(
            "{META_MAGIC}\noid {}\nsize {}\npart_size {}\n",
            self.oid, self.size, self.part_size
        )
    }

    fn decode(text: &str, path: &Path) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::CorruptUpload {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(META_MAGIC) {
            return Err(corrupt("unknown format"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name))
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| corrupt(&format!("missing {name}")))
        };
        let oid = Sha256Hex::parse(field("oid")?).map_err(|e| corrupt(&e.to_string()))?;
        let size = field("size")?.parse().map_err(|_| corrupt("bad size"))?;
        let part_size = field("part_size")?
            .parse()
            .map_err(|_| corrupt("bad part_size"))?;
        let meta = Meta {
            oid,
            size,
            part_size,
        };
        if !part_count_ok(size, part_size) {
            return Err(corrupt("bad part_size"));
        }
        Ok(meta)
    }
}

fn part_count_ok(size: u64, part_size: u64) -> bool {
    part_size > 0 && size.div_ceil(part_size) <= u64::from(LocalStore::MAX_PARTS)
}

/// Accept only the canonical form we hand out (lowercase, hyphenated UUID); the path is then
/// built from the parsed UUID, never from the caller's string.
fn parse_upload_id(s: &str) -> Result<Uuid, StoreError> {
    match Uuid::try_parse(s) {
        Ok(id) if id.hyphenated().to_string() == s => Ok(id),
        _ => Err(StoreError::InvalidUploadId),
    }
}

fn marker_name(part: u32) -> String {
    format!("part-{part}")
}

fn not_found_as(upload_id: &Uuid) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            StoreError::UploadNotFound {
                upload_id: upload_id.hyphenated().to_string(),
            }
        }
        other => other,
    }
}

impl LocalStore {
    /// Most parts an upload may have (the S3 limit, which the Hugging Face client respects).
    pub const MAX_PARTS: u32 = 10_000;

    /// Begin a multipart upload of object `oid` of `size` bytes in parts of `part_size`
    /// (the last one may be shorter). Returns the upload id, a UUID. The upload directory
    /// with its sparse data file appears atomically.
    pub async fn multipart_begin(
        &self,
        oid: &Sha256Hex,
        size: u64,
        part_size: u64,
    ) -> Result<String, StoreError> {
        if !part_count_ok(size, part_size) {
            return Err(StoreError::InvalidPartSize { size, part_size });
        }
        let id = Uuid::new_v4();
        let meta = Meta {
            oid: oid.clone(),
            size,
            part_size,
        };
        let staging = TempGuard::dir(self.new_tmp_path("begin"));
        let dest = self.upload_dir(&id);
        let multipart_dir = self.multipart_dir();
        blocking(move || {
            let dir = staging.path();
            fs::create_dir(dir).map_err(io_at(dir))?;
            write_synced(&dir.join(META_FILE), meta.encode().as_bytes())?;
            let data_path = dir.join(DATA_FILE);
            let data = fs::File::create_new(&data_path).map_err(io_at(&data_path))?;
            data.set_len(size)
                .and_then(|()| data.sync_all())
                .map_err(io_at(&data_path))?;
            sync_dir(dir)?;
            fs::rename(dir, &dest).map_err(io_at(&dest))?;
            let mut staging = staging;
            staging.disarm();
            sync_dir(&multipart_dir)
        })
        .await?;
        tracing::debug!(oid = %oid, size_bytes = size, part_size, upload.id = %id, "store.multipart_begin");
        Ok(id.hyphenated().to_string())
    }

    /// Write part `part` (1-based) of an upload. The body must be exactly that part's length.
    /// Returns the part's ETag: the quoted hex SHA-256 of its bytes. Resending a part
    /// rewrites it; a part that fails midway is not counted as written.
    pub async fn multipart_put_part<S>(
        &self,
        upload_id: &str,
        part: u32,
        body: S,
    ) -> Result<String, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        let id = parse_upload_id(upload_id)?;
        let dir = self.upload_dir(&id);
        let meta = self.load_meta(&id).await?;
        let parts = meta.parts();
        if part == 0 || part > parts {
            return Err(StoreError::InvalidPartNumber { part, parts });
        }
        let (offset, len) = meta.part_range(part);
        let marker = dir.join(marker_name(part));
        let data_path = dir.join(DATA_FILE);

        let file = {
            let (dir, marker, data_path) = (dir.clone(), marker.clone(), data_path.clone());
            blocking(move || {
                // Un-count the part before touching its bytes.
                match fs::remove_file(&marker) {
                    Ok(()) => sync_dir(&dir)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_at(&marker)(e)),
                }
                fs::OpenOptions::new()
                    .write(true)
                    .open(&data_path)
                    .map_err(io_at(&data_path))
            })
            .await
            .map_err(not_found_as(&id))?
        };

        let streamed = hash_into_file(file, &data_path, offset, body, len)
            .await
            .map_err(|e| match e {
                StreamError::TooLong { received } => StoreError::PartSizeMismatch {
                    part,
                    expected: len,
                    actual: received,
                },
                StreamError::Body(e) => StoreError::Body(e),
                StreamError::Write(e) => io_at(&data_path)(e),
            })?;
        if streamed.len != len {
            return Err(StoreError::PartSizeMismatch {
                part,
                expected: len,
                actual: streamed.len,
            });
        }
        let etag = format!("\"{}\"", hex::encode(streamed.digest));

        let marker_tmp = dir.join(format!(
            "{}.{}.tmp",
            marker_name(part),
            Uuid::new_v4().hyphenated()
        ));
        let content = etag.clone();
        blocking(move || {
            streamed.file.sync_data().map_err(io_at(&data_path))?;
            drop(streamed.file);
            let mut temp = TempGuard::file(marker_tmp.clone());
            write_synced(&marker_tmp, content.as_bytes())?;
            fs::rename(&marker_tmp, &marker).map_err(io_at(&marker))?;
            temp.disarm();
            sync_dir(&dir)
        })
        .await
        .map_err(not_found_as(&id))?;
        tracing::debug!(upload.id = %id, part, size_bytes = len, "store.multipart_part");
        Ok(etag)
    }

    /// Finish an upload: every part must have been written; the assembled bytes are hashed
    /// and checked against the oid and size announced at begin, then published like a
    /// [`LocalStore::put`]. A missing part leaves the upload in place; any other failure
    /// discards it.
    pub async fn multipart_complete(&self, upload_id: &str) -> Result<PutOutcome, StoreError> {
        Ok(self.multipart_complete_oid(upload_id).await?.2)
    }

    /// [`Self::multipart_complete`], also naming the object it made visible (for the S3
    /// backend, which then publishes it into the bucket).
    pub(crate) async fn multipart_complete_oid(
        &self,
        upload_id: &str,
    ) -> Result<(Sha256Hex, u64, PutOutcome), StoreError> {
        let id = parse_upload_id(upload_id)?;
        let dir = self.upload_dir(&id);
        let meta = self.load_meta(&id).await?;

        let missing = {
            let (dir, parts) = (dir.clone(), meta.parts());
            blocking(move || missing_parts(&dir, parts))
                .await
                .map_err(not_found_as(&id))?
        };
        if !missing.is_empty() {
            return Err(StoreError::MissingParts { missing });
        }

        // Claim the upload: from here on no other complete, part or abort can find it.
        let claimed = self.new_tmp_path("complete");
        let dest = self.local_path(&meta.oid);
        let (oid, size) = (meta.oid.clone(), meta.size);
        let outcome = blocking(move || {
            fs::rename(&dir, &claimed).map_err(io_at(&dir))?;
            let claimed = TempGuard::dir(claimed);
            let data_path = claimed.path().join(DATA_FILE);
            let (digest, len) = hash_file(&data_path)?;
            if len != meta.size {
                return Err(StoreError::SizeMismatch {
                    expected: meta.size,
                    actual: len,
                });
            }
            let actual = Sha256Hex::from_digest(&digest);
            if actual != meta.oid {
                return Err(StoreError::HashMismatch {
                    expected: meta.oid,
                    actual,
                });
            }
            fs::File::open(&data_path)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&data_path))?;
            let outcome = durable::publish(TempGuard::file(data_path), &dest)?;
            drop(claimed);
            Ok(outcome)
        })
        .await
        .map_err(not_found_as(&id))?;
        tracing::debug!(upload.id = %id, outcome = ?outcome, "store.multipart_complete");
        Ok((oid, size, outcome))
    }

    /// Discard an upload and everything written for it.
    pub async fn multipart_abort(&self, upload_id: &str) -> Result<(), StoreError> {
        let id = parse_upload_id(upload_id)?;
        let dir = self.upload_dir(&id);
        let claimed = self.new_tmp_path("abort");
        blocking(move || {
            fs::rename(&dir, &claimed).map_err(io_at(&dir))?;
            fs::remove_dir_all(&claimed).map_err(io_at(&claimed))
        })
        .await
        .map_err(not_found_as(&id))?;
        tracing::debug!(upload.id = %id, "store.multipart_abort");
        Ok(())
    }

    fn upload_dir(&self, id: &Uuid) -> PathBuf {
        self.multipart_dir().join(id.hyphenated().to_string())
    }

    async fn load_meta(&self, id: &Uuid) -> Result<Meta, StoreError> {
        let path = self.upload_dir(id).join(META_FILE);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => Meta::decode(&text, &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::UploadNotFound {
                upload_id: id.hyphenated().to_string(),
            }),
            Err(e) => Err(io_at(path)(e)),
        }
    }
}

/// Part numbers in `1..=parts` without a marker in `dir`. Blocking.
fn missing_parts(dir: &Path, parts: u32) -> Result<Vec<u32>, StoreError> {
    let mut done = vec![false; parts as usize];
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|s| s.strip_prefix("part-")) else {
            continue;
        };
        // Only the exact names we write: no leading zeros, no temp suffix.
        if let Ok(n) = n.parse::<u32>()
            && name.to_str() == Some(marker_name(n).as_str())
            && (1..=parts).contains(&n)
        {
            done[(n - 1) as usize] = true;
        }
    }
    Ok((1..=parts).filter(|n| !done[(*n - 1) as usize]).collect())
}

/// SHA-256 and length of a whole file, read in large blocks. Blocking.
fn hash_file(path: &Path) -> Result<([u8; 32], u64), StoreError> {
    let mut file = fs::File::open(path).map_err(io_at(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; WRITE_BATCH];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(path)(e)),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hasher.finalize().into(), len))
}

/// Create `path` with `bytes` and fsync it. Blocking.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = fs::File::create_new(path).map_err(io_at(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_splits_parts() {
        let meta = Meta {
            oid: Sha256Hex::parse(&"ab".repeat(32)).expect("oid"),
            size: 25,
            part_size: 10,
        };
        let back = Meta::decode(&meta.encode(), Path::new("meta")).expect("decode");
        assert_eq!(
            (back.oid, back.size, back.part_size),
            (meta.oid.clone(), 25, 10)
        );
        assert_eq!(meta.parts(), 3);
        assert_eq!(
            [meta.part_range(1), meta.part_range(2), meta.part_range(3)],
            [(0, 10), (10, 10), (20, 5)]
        );
    }

    #[test]
    fn corrupt_meta_is_reported() {
        for text in [
            "",
            "trove-multipart 1\noid zz\n",
            "trove-multipart 1\noid {h}\nsize 10\npart_size 0\n",
        ] {
            let text = text.replace("{h}", &"ab".repeat(32));
            assert!(
                matches!(
                    Meta::decode(&text, Path::new("m")),
                    Err(StoreError::CorruptUpload { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn only_canonical_upload_ids_parse() {
        let id = Uuid::new_v4().hyphenated().to_string();
        assert!(parse_upload_id(&id).is_ok());
        assert!(parse_upload_id(&id.to_uppercase()).is_err());
        assert!(parse_upload_id("../../etc").is_err());
    }
}
