//! [`LocalStore`]: objects as files in a local directory.

use crate::durable::{self, PutOutcome, TempGuard, blocking};
use crate::error::{StoreError, io_at};
use crate::stream::{StreamError, hash_into_file};
use bytes::Bytes;
use futures_util::Stream;
use std::fs;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use trove_types::Sha256Hex;

/// Temp entries older than this are leftovers of a crash and removed by [`LocalStore::open`].
const STALE_TMP: Duration = Duration::from_secs(24 * 60 * 60);
/// Multipart uploads untouched for this long are abandoned and removed by [`LocalStore::open`].
const STALE_MULTIPART: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A blob store in a local directory; see the crate docs for the layout and guarantees.
///
/// Cheap to clone; all state is on disk, so several clones (or processes) may share a root.
#[derive(Debug, Clone)]
pub struct LocalStore {
    pub(crate) root: PathBuf,
}

impl LocalStore {
    /// Open (creating if needed) a store at `root`, and remove temp files older than a day
    /// and multipart uploads untouched for a week.
    pub async fn open(root: PathBuf) -> Result<Self, StoreError> {
        let store = Self { root };
        let s = store.clone();
        blocking(move || {
            for dir in [s.objects_dir(), s.tmp_dir(), s.multipart_dir()] {
                fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            }
            remove_stale(&s.tmp_dir(), STALE_TMP);
            remove_stale(&s.multipart_dir(), STALE_MULTIPART);
            Ok(())
        })
        .await?;
        Ok(store)
    }

    /// Whether the store takes writes now (readiness checks): a small file is written,
    /// synced and removed in its temp folder, where every upload begins.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let path = self.new_tmp_path("probe");
        blocking(move || {
            let written = (|| {
                let mut file = fs::File::create(&path)?;
                io::Write::write_all(&mut file, b"probe")?;
                file.sync_all()
            })();
            let removed = fs::remove_file(&path);
            written.and(removed).map_err(io_at(&path))
        })
        .await
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stream `body` in as object `expected`. Succeeds only if exactly `expected_size` bytes
    /// hashing to `expected` arrived; stops reading as soon as the body runs past
    /// `expected_size`. On any error nothing is visible and no temp file remains.
    pub async fn put<S>(
        &self,
        expected: &Sha256Hex,
        expected_size: u64,
        body: S,
    ) -> Result<PutOutcome, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        let temp_path = self.new_tmp_path("put");
        let temp = TempGuard::file(temp_path.clone());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .await
            .map_err(io_at(&temp_path))?
            .into_std()
            .await;

        let streamed = hash_into_file(file, &temp_path, 0, body, expected_size)
            .await
            .map_err(|e| match e {
                StreamError::TooLong { received } => StoreError::SizeMismatch {
                    expected: expected_size,
                    actual: received,
                },
                StreamError::Body(e) => StoreError::Body(e),
                StreamError::Write(e) => io_at(&temp_path)(e),
            })?;
        if streamed.len != expected_size {
            return Err(StoreError::SizeMismatch {
                expected: expected_size,
                actual: streamed.len,
            });
        }
        let actual = Sha256Hex::from_digest(&streamed.digest);
        if actual != *expected {
            return Err(StoreError::HashMismatch {
                expected: expected.clone(),
                actual,
            });
        }

        let dest = self.local_path(expected);
        let outcome = blocking(move || {
            streamed.file.sync_all().map_err(io_at(temp.path()))?;
            drop(streamed.file);
            durable::publish(temp, &dest)
        })
        .await?;
        tracing::debug!(oid = %expected, size_bytes = expected_size, outcome = ?outcome, "store.put");
        Ok(outcome)
    }

    /// Size of a stored object, or `None` if absent.
    pub async fn size_of(&self, oid: &Sha256Hex) -> Result<Option<u64>, StoreError> {
        let path = self.local_path(oid);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    /// Delete whole-file object `oid` (once its bytes are held as xorbs, or freed). Missing
    /// is not an error. Readers that opened it already keep reading their handle.
    pub async fn remove_object(&self, oid: &Sha256Hex) -> Result<bool, StoreError> {
        let path = self.local_path(oid);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    /// Every whole-file object in the store, with its size (for migrating them into the
    /// chunk store). Names that are not oids are skipped.
    pub async fn whole_objects(&self) -> Result<Vec<(Sha256Hex, u64)>, StoreError> {
        let root = self.objects_dir();
        blocking(move || {
            let mut out = Vec::new();
            let mut dirs = vec![root];
            while let Some(dir) = dirs.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_at(&dir)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io_at(&dir))?;
                    let meta = entry.metadata().map_err(io_at(entry.path()))?;
                    if meta.is_dir() {
                        dirs.push(entry.path());
                    } else if let Some(oid) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| Sha256Hex::parse(n).ok())
                    {
                        out.push((oid, meta.len()));
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    /// Where object `oid` lives (or would live), for zero-copy serving by the local fast
    /// path. The file exists only if the object is stored; check with [`Self::size_of`] or
    /// handle `NotFound` on open.
    pub fn local_path(&self, oid: &Sha256Hex) -> PathBuf {
        let hex = oid.as_str();
        self.objects_dir()
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex)
    }

    /// Open object `oid` for reading the byte range `[start, end)`: a file positioned at
    /// `start` and the number of bytes to read (`end - start`). `None` if the object is absent;
    /// [`StoreError::RangeNotSatisfiable`] unless `start <= end <= size`.
    pub async fn open_range(
        &self,
        oid: &Sha256Hex,
        start: u64,
        end: u64,
    ) -> Result<Option<(tokio::fs::File, u64)>, StoreError> {
        // The open, the size and the seek run here rather than on a blocking thread each
        // (`tokio::fs`): three system calls on a file of this node's disk, metadata only —
        // less than the hand-offs to another thread and back would cost. The reads of its
        // bytes, the part that can take long, are the stream's, on blocking threads.
        let path = self.local_path(oid);
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(path)(e)),
        };
        let size = file.metadata().map_err(io_at(&path))?.len();
        if start > end || end > size {
            return Err(StoreError::RangeNotSatisfiable { start, end, size });
        }
        if start > 0 {
            io::Seek::seek(&mut file, SeekFrom::Start(start)).map_err(io_at(&path))?;
        }
        Ok(Some((tokio::fs::File::from_std(file), end - start)))
    }

    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn multipart_dir(&self) -> PathBuf {
        self.root.join("multipart")
    }
    /// A fresh, unique path under `tmp/` (same filesystem as the objects, so rename is atomic).
    pub(crate) fn new_tmp_path(&self, kind: &str) -> PathBuf {
        self.tmp_dir()
            .join(format!("{kind}-{}", uuid::Uuid::new_v4().hyphenated()))
    }
}

/// Remove entries of `dir` last modified more than `age` ago. Best effort: a failure is
/// logged and leaves the entry for the next start.
fn remove_stale(dir: &Path, age: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|d| d > age);
        if !old {
            continue;
        }
        let result = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => tracing::info!(path = %path.display(), "store.stale_removed"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "store.stale_remove_failed")
            }
        }
    }
}
