//! Xet xorbs in the local store: staged to a temp file while the upload arrives, validated by
//! the caller, then published under their hash create-if-absent.
//!
//! A xorb is immutable and named by the Merkle hash of its chunks, so two uploads of the same
//! name hold the same chunks; the first to publish wins and later ones are discarded.

use crate::durable::{self, PutOutcome, TempGuard, blocking};
use crate::error::{StoreError, io_at};
use crate::local::LocalStore;
use crate::stream::joined;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a body gathered before they are written in one go: large enough that the
/// blocking-pool hop per batch is amortized.
const STAGE_BATCH: usize = 1 << 20;

/// A staging file, or the job writing a batch of pieces into it.
enum BatchWriter {
    Idle(fs::File),
    Busy(tokio::task::JoinHandle<io::Result<fs::File>>),
    Failed,
}

impl BatchWriter {
    /// Waits for the batch in flight, if any, and takes the file back.
    async fn reclaim(&mut self, path: &Path) -> Result<fs::File, StoreError> {
        match std::mem::replace(self, BatchWriter::Failed) {
            BatchWriter::Idle(file) => Ok(file),
            BatchWriter::Busy(job) => joined(job.await).and_then(|r| r).map_err(io_at(path)),
            BatchWriter::Failed => Err(io_at(path)(io::Error::other(
                "an earlier write to this file failed",
            ))),
        }
    }

    /// Writes `batch` after the batch in flight, without waiting for it.
    async fn submit(&mut self, batch: Vec<Bytes>, path: &Path) -> Result<(), StoreError> {
        let mut file = self.reclaim(path).await?;
        *self = BatchWriter::Busy(tokio::task::spawn_blocking(move || {
            write_pieces(&mut file, &batch)?;
            Ok(file)
        }));
        Ok(())
    }
}

/// Writes every byte of `pieces`, in order, with as few `writev` calls as the kernel allows.
fn write_pieces(file: &mut fs::File, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = pieces
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| io::IoSlice::new(p))
        .collect();
    let mut left: &mut [io::IoSlice<'_>] = &mut slices;
    while !left.is_empty() {
        match file.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An uploaded xorb body in a temp file, not yet visible. Dropping it deletes the file.
#[derive(Debug)]
pub struct StagedXorb {
    temp: TempGuard,
    len: u64,
}

impl StagedXorb {
    /// The temp file, for the caller to validate.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }
    /// Bytes received.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes the caller wrote into a staged xorb it built (see
    /// [`LocalStore::create_staged_xorb`]).
    pub fn set_len(&mut self, len: u64) {
        self.len = len;
    }
}

impl LocalStore {
    /// Where xorb `hash_hex` lives (or would live).
    pub fn xorb_path(&self, hash_hex: &str) -> PathBuf {
        let prefix = hash_hex.get(0..2).unwrap_or("__");
        self.root.join("xorbs").join(prefix).join(hash_hex)
    }

    /// Stream `body` into a temp file, refusing to read more than `limit` bytes. The pieces
    /// are written as they arrived (`writev`, no copy of ours), a batch of about
    /// [`STAGE_BATCH`] bytes at a time on the blocking pool while the next one is received.
    pub async fn stage_xorb<S>(&self, mut body: S, limit: u64) -> Result<StagedXorb, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        let path = self.new_tmp_path("xorb");
        let temp = TempGuard::file(path.clone());
        let file = {
            let path = path.clone();
            blocking(move || {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_at(&path))
            })
            .await?
        };
        let mut writer = BatchWriter::Idle(file);
        let mut batch = Vec::new();
        let mut batch_len = 0usize;
        let mut len = 0u64;
        let received: Result<(), StoreError> = async {
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(StoreError::Body)?;
                len += piece.len() as u64;
                if len > limit {
                    return Err(StoreError::TooLarge { limit });
                }
                batch_len += piece.len();
                batch.push(piece);
                if batch_len >= STAGE_BATCH {
                    writer.submit(std::mem::take(&mut batch), &path).await?;
                    batch_len = 0;
                }
            }
            if !batch.is_empty() {
                writer.submit(batch, &path).await?;
            }
            Ok(())
        }
        .await;
        // Nothing writes to the file once this returns, whether or not the body ended well.
        let written = writer.reclaim(&path).await;
        received?;
        written?;
        Ok(StagedXorb { temp, len })
    }

    /// A new, empty staged xorb for the server to write itself (packing a plain LFS upload),
    /// with the file open for writing. Blocking: call from the blocking pool. The caller
    /// records how much it wrote with [`StagedXorb::set_len`] before publishing.
    pub fn create_staged_xorb(&self) -> Result<(StagedXorb, fs::File), StoreError> {
        let path = self.new_tmp_path("pack");
        let temp = TempGuard::file(path.clone());
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        Ok((StagedXorb { temp, len: 0 }, file))
    }

    /// Make a validated staged xorb visible as `hash_hex`, keeping only its first
    /// `content_len` bytes (the chunk records; a client's footer is dropped). Fsyncs the file
    /// and its directory before returning. Blocking work runs off the async threads.
    pub async fn publish_xorb(
        &self,
        staged: StagedXorb,
        hash_hex: &str,
        content_len: u64,
    ) -> Result<PutOutcome, StoreError> {
        let dest = self.xorb_path(hash_hex);
        blocking(move || {
            let StagedXorb { temp, .. } = staged;
            let file = fs::OpenOptions::new()
                .write(true)
                .open(temp.path())
                .map_err(io_at(temp.path()))?;
            file.set_len(content_len).map_err(io_at(temp.path()))?;
            file.sync_all().map_err(io_at(temp.path()))?;
            drop(file);
            durable::publish(temp, &dest)
        })
        .await
    }

    /// Makes a staged xorb the server packed durable without making it visible: its first
    /// `content_len` bytes kept, fsynced. [`Self::publish_synced_xorb`] later only renames it.
    /// Lets an upload fsync its xorbs while the rest of its body arrives and publish them
    /// once the body is verified.
    pub async fn sync_staged_xorb(
        &self,
        staged: StagedXorb,
        content_len: u64,
    ) -> Result<StagedXorb, StoreError> {
        blocking(move || {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(staged.path())
                .map_err(io_at(staged.path()))?;
            file.set_len(content_len).map_err(io_at(staged.path()))?;
            file.sync_all().map_err(io_at(staged.path()))?;
            Ok(StagedXorb {
                len: content_len,
                ..staged
            })
        })
        .await
    }

    /// Makes a xorb [`Self::sync_staged_xorb`] made durable visible as `hash_hex` (a rename
    /// and a directory fsync).
    pub async fn publish_synced_xorb(
        &self,
        staged: StagedXorb,
        hash_hex: &str,
    ) -> Result<PutOutcome, StoreError> {
        let dest = self.xorb_path(hash_hex);
        blocking(move || durable::publish(staged.temp, &dest)).await
    }

    /// Open xorb `hash_hex` positioned at byte `start` (blocking; for readers that run on the
    /// blocking pool). `None` if the xorb is not stored.
    pub fn open_xorb_at(&self, hash_hex: &str, start: u64) -> Result<Option<fs::File>, StoreError> {
        let path = self.xorb_path(hash_hex);
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(path)(e)),
        };
        file.seek(SeekFrom::Start(start)).map_err(io_at(&path))?;
        Ok(Some(file))
    }

    /// Moves xorb `hash_hex` aside into `gc-trash/` (one atomic rename), so that readers no
    /// longer find it while garbage collection decides in the database; `None` if it is not
    /// stored. Afterwards either [`Self::restore_xorb`] or [`Self::discard_trashed_xorb`].
    pub async fn trash_xorb(&self, hash_hex: &str) -> Result<Option<PathBuf>, StoreError> {
        let from = self.xorb_path(hash_hex);
        let dir = self.root.join("gc-trash");
        let to = dir.join(hash_hex);
        blocking(move || {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            match fs::rename(&from, &to) {
                Ok(()) => Ok(Some(to)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_at(&from)(e)),
            }
        })
        .await
    }

    /// Puts a trashed xorb back, unless a new copy was published meanwhile (then the trashed
    /// one is dropped: both hold the same chunks).
    pub async fn restore_xorb(&self, hash_hex: &str, trashed: PathBuf) -> Result<(), StoreError> {
        let dest = self.xorb_path(hash_hex);
        blocking(move || {
            match fs::hard_link(&trashed, &dest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_at(&dest)(e)),
            }
            fs::remove_file(&trashed).map_err(io_at(&trashed))?;
            if let Some(dir) = dest.parent() {
                durable::sync_dir(dir)?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes a trashed xorb for good.
    pub async fn discard_trashed_xorb(&self, trashed: PathBuf) -> Result<(), StoreError> {
        match tokio::fs::remove_file(&trashed).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(trashed)(e)),
        }
    }

    /// Xorbs left in `gc-trash/` by a collection that stopped midway: (hash hex, path).
    pub async fn trashed_xorbs(&self) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let dir = self.root.join("gc-trash");
        blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_at(&dir)(e)),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io_at(&dir))?;
                if let Some(name) = entry.file_name().to_str() {
                    out.push((name.to_owned(), entry.path()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every stored xorb file: (hash hex, bytes). For storage checks (fsck, stats).
    pub async fn stored_xorbs(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let dir = self.root.join("xorbs");
        blocking(move || {
            let mut out = Vec::new();
            let prefixes = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io_at(&dir)(e)),
            };
            for prefix in prefixes {
                let prefix = prefix.map_err(io_at(&dir))?.path();
                for entry in fs::read_dir(&prefix).map_err(io_at(&prefix))? {
                    let entry = entry.map_err(io_at(&prefix))?;
                    let len = entry.metadata().map_err(io_at(entry.path()))?.len();
                    if let Some(name) = entry.file_name().to_str() {
                        out.push((name.to_owned(), len));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Whether xorb `hash_hex` is stored.
    pub async fn has_xorb(&self, hash_hex: &str) -> Result<bool, StoreError> {
        let path = self.xorb_path(hash_hex);
        match tokio::fs::metadata(&path).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn body(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn staged_xorb_is_published_truncated_and_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().to_owned()).await.expect("open");
        let staged = store
            .stage_xorb(body(&[b"chunks", b"FOOTER"]), 100)
            .await
            .expect("stage");
        assert_eq!(staged.len(), 12);
        let tmp = staged.path().to_owned();
        let hex = "ab".repeat(32);
        assert_eq!(
            store.publish_xorb(staged, &hex, 6).await.expect("publish"),
            PutOutcome::Stored
        );
        assert!(!tmp.exists(), "temp file moved away");
        assert!(store.has_xorb(&hex).await.expect("has"));
        let mut f = store.open_xorb_at(&hex, 2).expect("open").expect("present");
        let mut s = String::new();
        f.read_to_string(&mut s).expect("read");
        assert_eq!(s, "unks");

        let again = store
            .stage_xorb(body(&[b"chunks"]), 100)
            .await
            .expect("stage");
        assert_eq!(
            store.publish_xorb(again, &hex, 6).await.expect("publish"),
            PutOutcome::AlreadyPresent
        );
    }

    #[tokio::test]
    async fn thousands_of_small_pieces_over_several_batches_are_staged_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().to_owned()).await.expect("open");
        // 5,000 pieces of 1..=997 bytes: more pieces than one `writev` takes, more bytes
        // than one batch, pieces cut anywhere.
        let pieces: Vec<Bytes> = (0..5_000u32)
            .map(|i| {
                let n = (i * 7919 % 997 + 1) as usize;
                Bytes::from(
                    (0..n)
                        .map(|j| ((i as usize * 31 + j) % 251) as u8)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let expected: Vec<u8> = pieces.concat();
        assert!(expected.len() > 2 * STAGE_BATCH);
        let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, io::Error>));
        let staged = store.stage_xorb(stream, 1 << 30).await.expect("stage");
        assert_eq!(staged.len(), expected.len() as u64);
        assert_eq!(fs::read(staged.path()).expect("read"), expected);
    }

    #[tokio::test]
    async fn a_body_failing_after_a_batch_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().to_owned()).await.expect("open");
        let parts = vec![
            Ok(Bytes::from(vec![1u8; STAGE_BATCH + 1])),
            Ok(Bytes::from(vec![2u8; 10])),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut")),
        ];
        let err = store
            .stage_xorb(futures_util::stream::iter(parts), 1 << 30)
            .await
            .expect_err("cut short");
        assert!(matches!(err, StoreError::Body(_)), "{err:?}");
        assert_eq!(fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0);
    }

    #[tokio::test]
    async fn oversize_body_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().to_owned()).await.expect("open");
        let err = store
            .stage_xorb(body(&[b"0123456789", b"x"]), 10)
            .await
            .expect_err("too large");
        assert!(matches!(err, StoreError::TooLarge { limit: 10 }));
        assert_eq!(fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0);
        assert!(
            store
                .open_xorb_at(&"cd".repeat(32), 0)
                .expect("open")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_trashed_xorb_is_hidden_until_restored_or_discarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().to_owned()).await.expect("open");
        let hex = "ef".repeat(32);
        let staged = store
            .stage_xorb(body(&[b"chunks"]), 100)
            .await
            .expect("stage");
        store.publish_xorb(staged, &hex, 6).await.expect("publish");
        let trashed = store
            .trash_xorb(&hex)
            .await
            .expect("trash")
            .expect("was stored");
        assert!(!store.has_xorb(&hex).await.expect("has"));
        assert_eq!(store.trashed_xorbs().await.expect("list").len(), 1);
        store.restore_xorb(&hex, trashed).await.expect("restore");
        assert!(store.has_xorb(&hex).await.expect("has"));
        assert!(store.trashed_xorbs().await.expect("list").is_empty());
        let trashed = store
            .trash_xorb(&hex)
            .await
            .expect("trash")
            .expect("was stored");
        store.discard_trashed_xorb(trashed).await.expect("discard");
        assert!(!store.has_xorb(&hex).await.expect("has"));
        assert!(store.trash_xorb(&hex).await.expect("trash").is_none());
        assert!(store.trashed_xorbs().await.expect("list").is_empty());
    }
}
