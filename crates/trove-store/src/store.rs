//! [`Store`]: the one storage interface, chosen once at the state boundary. Both backends
//! have the same methods; this enum forwards to the one in use. Staging (temp files, LFS
//! multipart parts, xorbs being validated or packed) is local in both.

use crate::durable::PutOutcome;
use crate::error::StoreError;
use crate::local::LocalStore;
use crate::read::read_chunks;
use crate::s3::{ByteStream, LocalCopy, S3Config, S3Store, XorbBuffer, XorbPieces};
use crate::xorbs::StagedXorb;
use bytes::Bytes;
use futures_util::Stream;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;
use trove_types::Sha256Hex;

/// Where the bytes live: a local directory, or a bucket (with local staging).
#[derive(Debug, Clone)]
pub enum Store {
    Local(LocalStore),
    S3(S3Store),
}

impl From<LocalStore> for Store {
    fn from(s: LocalStore) -> Self {
        Store::Local(s)
    }
}

/// A packed xorb made durable but not yet visible (see [`Store::ready_xorb`]).
#[derive(Debug)]
pub enum ReadyXorb {
    /// Fsynced in local staging, to be renamed into place.
    Local(StagedXorb),
    /// In the bucket already: whether this upload put it there.
    Remote(PutOutcome),
}

/// A client's xorb body received, not yet published (see [`Store::receive_xorb`]).
#[derive(Debug)]
pub enum ReceivedXorb {
    /// In a local staging file.
    Staged(StagedXorb),
    /// In memory, as the pieces it arrived in (S3 mode).
    Memory(XorbPieces),
}

/// A xorb that garbage collection moved aside (see [`Store::trash_xorb`]).
#[derive(Debug, Clone)]
pub enum TrashedXorb {
    Local(PathBuf),
    S3(object_store::path::Path),
}

impl Store {
    /// The local store in `root` (the embedded mode).
    pub async fn open_local(root: PathBuf) -> Result<Self, StoreError> {
        Ok(Store::Local(LocalStore::open(root).await?))
    }

    /// The bucket `config` names, staging in `staging_root`; probed before it is returned.
    pub async fn open_s3(staging_root: PathBuf, config: S3Config) -> Result<Self, StoreError> {
        Ok(Store::S3(S3Store::open(staging_root, config).await?))
    }

    /// The local store every upload is staged in (the whole store in the embedded mode).
    pub fn staging(&self) -> &LocalStore {
        match self {
            Store::Local(s) => s,
            Store::S3(s) => s.staging(),
        }
    }

    /// The local staging directory (`tmp/` in it is where uploads begin).
    pub fn root(&self) -> &Path {
        self.staging().root()
    }

    /// Whether objects live in a bucket.
    pub fn is_remote(&self) -> bool {
        matches!(self, Store::S3(_))
    }

    /// Where the objects live, for logs: a path or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self {
            Store::Local(s) => s.root().display().to_string(),
            Store::S3(s) => s.location().to_owned(),
        }
    }

    /// Readiness: the store takes writes now (local: a temp file; S3: put+get+delete).
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self {
            Store::Local(s) => s.probe().await,
            Store::S3(s) => s.probe().await,
        }
    }

    /// See [`LocalStore::put`]: nothing is visible unless size and hash match.
    pub async fn put<S>(
        &self,
        expected: &Sha256Hex,
        size: u64,
        body: S,
    ) -> Result<PutOutcome, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        match self {
            Store::Local(s) => s.put(expected, size, body).await,
            Store::S3(s) => s.put(expected, size, body).await,
        }
    }

    pub async fn multipart_begin(
        &self,
        oid: &Sha256Hex,
        size: u64,
        part_size: u64,
    ) -> Result<String, StoreError> {
        self.staging().multipart_begin(oid, size, part_size).await
    }

    pub async fn multipart_put_part<S>(
        &self,
        upload_id: &str,
        part: u32,
        body: S,
    ) -> Result<String, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        self.staging()
            .multipart_put_part(upload_id, part, body)
            .await
    }

    pub async fn multipart_complete(&self, upload_id: &str) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Local(s) => s.multipart_complete(upload_id).await,
            Store::S3(s) => s.multipart_complete(upload_id).await,
        }
    }

    pub async fn multipart_abort(&self, upload_id: &str) -> Result<(), StoreError> {
        self.staging().multipart_abort(upload_id).await
    }

    pub async fn size_of(&self, oid: &Sha256Hex) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Local(s) => s.size_of(oid).await,
            Store::S3(s) => s.size_of(oid).await,
        }
    }

    pub async fn remove_object(&self, oid: &Sha256Hex) -> Result<bool, StoreError> {
        match self {
            Store::Local(s) => s.remove_object(oid).await,
            Store::S3(s) => s.remove_object(oid).await,
        }
    }

    pub async fn whole_objects(&self) -> Result<Vec<(Sha256Hex, u64)>, StoreError> {
        match self {
            Store::Local(s) => s.whole_objects().await,
            Store::S3(s) => s.whole_objects().await,
        }
    }

    /// Bytes `[start, end)` of object `oid` as a stream, and their count. `None` if absent;
    /// [`StoreError::RangeNotSatisfiable`] unless `start <= end <= size`.
    pub async fn open_range(
        &self,
        oid: &Sha256Hex,
        start: u64,
        end: u64,
    ) -> Result<Option<(ByteStream, u64)>, StoreError> {
        match self {
            Store::Local(s) => Ok(s
                .open_range(oid, start, end)
                .await?
                .map(|(file, len)| (Box::pin(read_chunks(file, len)) as ByteStream, len))),
            Store::S3(s) => s.open_range(oid, start, end).await,
        }
    }

    /// Object `oid` as an open file of this node's disk, for a server that hands file ranges
    /// to the kernel (`sendfile`); `None` when it is not stored here whole (absent, or the
    /// store is a bucket). A handle, never a path: the bytes stay readable through it even if
    /// garbage collection moves the object aside meanwhile.
    pub fn local_object_file(&self, oid: &Sha256Hex) -> Result<Option<fs::File>, StoreError> {
        match self {
            Store::Local(s) => open_if_present(s.local_path(oid)),
            Store::S3(_) => Ok(None),
        }
    }

    /// Xorb `hash_hex` as an open file of this node's disk (see [`Self::local_object_file`]);
    /// `None` when absent or the store is a bucket.
    pub fn local_xorb_file(&self, hash_hex: &str) -> Result<Option<fs::File>, StoreError> {
        match self {
            Store::Local(s) => open_if_present(s.xorb_path(hash_hex)),
            Store::S3(_) => Ok(None),
        }
    }

    /// A local file with object `oid`'s bytes, for readers that need a file (LFS ingest):
    /// the object itself locally; in S3 mode this node's staged copy, else a download that
    /// is removed when the returned value drops. `None` if the object is not stored.
    pub async fn local_copy(&self, oid: &Sha256Hex) -> Result<Option<LocalCopy>, StoreError> {
        match self {
            Store::Local(s) => {
                let path = s.local_path(oid);
                match tokio::fs::metadata(&path).await {
                    Ok(_) => Ok(Some(LocalCopy::kept(path))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StoreError::Io { path, source: e }),
                }
            }
            Store::S3(s) => s.local_copy(oid).await,
        }
    }

    /// A URL the client may GET object `oid` from directly for `ttl`: `None` in the local
    /// mode (downloads stream through Trove).
    pub async fn presign_object(
        &self,
        oid: &Sha256Hex,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Store::Local(_) => Ok(None),
            Store::S3(s) => s.presign_object(oid, ttl).await.map(Some),
        }
    }

    /// A URL the client may GET xorb `hash_hex` from directly (with its own `Range`).
    /// With `range` (inclusive), the URL is valid only with `Range: bytes=start-end`.
    pub async fn presign_xorb(
        &self,
        hash_hex: &str,
        range: Option<(u64, u64)>,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Store::Local(_) => Ok(None),
            Store::S3(s) => s.presign_xorb(hash_hex, range, ttl).await.map(Some),
        }
    }

    // --- xorbs -------------------------------------------------------------------------------

    pub async fn stage_xorb<S>(&self, body: S, limit: u64) -> Result<StagedXorb, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        self.staging().stage_xorb(body, limit).await
    }

    /// Receives a client's xorb body of at most `limit` bytes to be validated and then
    /// published ([`Self::publish_received_xorb`]). In S3 mode it is held in memory while the
    /// node's budget for xorbs has room (it never waits), so that its PUT sends the pieces as
    /// they arrived; otherwise (and always locally) it is staged in a file.
    pub async fn receive_xorb<S>(&self, mut body: S, limit: u64) -> Result<ReceivedXorb, StoreError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        if let Store::S3(s) = self
            && let Some(mut held) = s.xorb_pieces(limit)
        {
            while let Some(piece) = futures_util::StreamExt::next(&mut body).await {
                held.push(piece.map_err(StoreError::Body)?)?;
            }
            return Ok(ReceivedXorb::Memory(held));
        }
        Ok(ReceivedXorb::Staged(self.stage_xorb(body, limit).await?))
    }

    /// Publishes a validated xorb [`Self::receive_xorb`] received (its first `content_len`
    /// bytes), as [`Self::publish_xorb`] does.
    pub async fn publish_received_xorb(
        &self,
        received: ReceivedXorb,
        hash_hex: &str,
        content_len: u64,
    ) -> Result<PutOutcome, StoreError> {
        match (self, received) {
            (_, ReceivedXorb::Staged(staged)) => {
                self.publish_xorb(staged, hash_hex, content_len).await
            }
            (Store::S3(s), ReceivedXorb::Memory(held)) => {
                s.publish_received_xorb(held, hash_hex, content_len).await
            }
            (Store::Local(_), ReceivedXorb::Memory(_)) => Err(mismatched()),
        }
    }

    /// See [`LocalStore::create_staged_xorb`] (blocking).
    pub fn create_staged_xorb(&self) -> Result<(StagedXorb, fs::File), StoreError> {
        self.staging().create_staged_xorb()
    }

    pub async fn publish_xorb(
        &self,
        staged: StagedXorb,
        hash_hex: &str,
        content_len: u64,
    ) -> Result<PutOutcome, StoreError> {
        match self {
            Store::Local(s) => s.publish_xorb(staged, hash_hex, content_len).await,
            Store::S3(s) => s.publish_xorb(staged, hash_hex, content_len).await,
        }
    }

    /// The first half of publishing a xorb the server packed from an upload that is still
    /// arriving: made durable where it will stay, not yet found by anyone. Locally its
    /// staging file is truncated to `content_len` and fsynced; in S3 mode it is uploaded to
    /// its key in the bucket (create-if-absent), which readers only reach once the database
    /// records it. Then [`Self::publish_ready_xorb`] once the upload is verified.
    pub async fn ready_xorb(
        &self,
        staged: StagedXorb,
        hash_hex: &str,
        content_len: u64,
    ) -> Result<ReadyXorb, StoreError> {
        match self {
            Store::Local(s) => Ok(ReadyXorb::Local(
                s.sync_staged_xorb(staged, content_len).await?,
            )),
            Store::S3(s) => Ok(ReadyXorb::Remote(
                s.publish_xorb(staged, hash_hex, content_len).await?,
            )),
        }
    }

    /// Room in memory for one xorb of at most `max_len` bytes the server packs from an
    /// upload, where that saves work: in S3 mode, while the node's budget for it has room (it
    /// never waits). `None`: pack into a staging file ([`Self::create_staged_xorb`]) —
    /// always locally, where the xorb must reach the disk anyway.
    pub fn xorb_buffer(&self, max_len: u64) -> Option<XorbBuffer> {
        match self {
            Store::Local(_) => None,
            Store::S3(s) => s.xorb_buffer(max_len),
        }
    }

    /// Room in memory for one xorb of at most `limit` bytes the server packs from an upload
    /// and stores raw, held as the pieces it is made of (each record's header, then the
    /// chunk's bytes as received) and put as those pieces: no copy into a buffer. As
    /// [`Self::xorb_buffer`]: S3 mode only, within the node's budget, never waiting.
    pub fn xorb_pieces(&self, limit: u64) -> Option<XorbPieces> {
        match self {
            Store::Local(_) => None,
            Store::S3(s) => s.xorb_pieces(limit),
        }
    }

    /// [`Self::ready_xorb`] for a xorb held as [`XorbPieces`] ([`Self::xorb_pieces`]):
    /// uploaded to its key in the bucket (create-if-absent, one PUT of its pieces), reached
    /// by readers only once the database records it.
    pub async fn ready_xorb_pieces(
        &self,
        pieces: XorbPieces,
        hash_hex: &str,
    ) -> Result<ReadyXorb, StoreError> {
        match self {
            Store::Local(_) => Err(mismatched()),
            Store::S3(s) => {
                let len = pieces.len();
                Ok(ReadyXorb::Remote(
                    s.publish_received_xorb(pieces, hash_hex, len).await?,
                ))
            }
        }
    }

    /// [`Self::ready_xorb`] for a xorb packed in a [`XorbBuffer`]: uploaded to its key in
    /// the bucket (create-if-absent), reached by readers only once the database records it.
    pub async fn ready_xorb_buffer(
        &self,
        buffer: XorbBuffer,
        hash_hex: &str,
    ) -> Result<ReadyXorb, StoreError> {
        match self {
            Store::Local(_) => Err(mismatched()),
            Store::S3(s) => Ok(ReadyXorb::Remote(
                s.publish_xorb_buffer(buffer, hash_hex).await?,
            )),
        }
    }

    /// Makes a ready xorb visible under `hash_hex` (locally a rename; in S3 mode it is in
    /// place already). Dropping a [`ReadyXorb`] instead removes its local staging file.
    pub async fn publish_ready_xorb(
        &self,
        ready: ReadyXorb,
        hash_hex: &str,
    ) -> Result<PutOutcome, StoreError> {
        match (self, ready) {
            (Store::Local(s), ReadyXorb::Local(staged)) => {
                s.publish_synced_xorb(staged, hash_hex).await
            }
            (Store::S3(_), ReadyXorb::Remote(outcome)) => Ok(outcome),
            _ => Err(mismatched()),
        }
    }

    pub async fn has_xorb(&self, hash_hex: &str) -> Result<bool, StoreError> {
        match self {
            Store::Local(s) => s.has_xorb(hash_hex).await,
            Store::S3(s) => s.has_xorb(hash_hex).await,
        }
    }

    /// Stored size of xorb `hash_hex`, `None` if absent.
    pub async fn xorb_size(&self, hash_hex: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Local(s) => {
                let path = s.xorb_path(hash_hex);
                match tokio::fs::metadata(&path).await {
                    Ok(m) => Ok(Some(m.len())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StoreError::Io { path, source: e }),
                }
            }
            Store::S3(s) => s.xorb_size(hash_hex).await,
        }
    }

    /// Bytes `[start, end)` of xorb `hash_hex` as a stream (the caller checked the range
    /// against [`Self::xorb_size`]); `None` if absent.
    pub async fn open_xorb_range(
        &self,
        hash_hex: &str,
        start: u64,
        end: u64,
    ) -> Result<Option<ByteStream>, StoreError> {
        match self {
            Store::Local(s) => {
                let Some(file) = s.open_xorb_at(hash_hex, start)? else {
                    return Ok(None);
                };
                Ok(Some(Box::pin(read_chunks(
                    tokio::fs::File::from_std(file),
                    end.saturating_sub(start),
                ))))
            }
            Store::S3(s) => s.open_xorb_range(hash_hex, start, end).await,
        }
    }

    /// Xorb `hash_hex` from byte `start` on as a blocking reader; `None` if absent. Call it
    /// from the blocking pool or any plain thread, never from an async task: the S3 store
    /// waits on the runtime it was opened in (see [`S3Store::open_xorb_at`]).
    pub fn open_xorb_at(
        &self,
        hash_hex: &str,
        start: u64,
    ) -> Result<Option<Box<dyn Read + Send>>, StoreError> {
        match self {
            Store::Local(s) => Ok(s
                .open_xorb_at(hash_hex, start)?
                .map(|f| Box::new(f) as Box<dyn Read + Send>)),
            Store::S3(s) => s.open_xorb_at(hash_hex, start),
        }
    }

    /// Move xorb `hash_hex` aside so readers no longer find it (local: one rename; S3: copy
    /// to `gc-trash/`, delete the original). `None` if it is not stored.
    pub async fn trash_xorb(&self, hash_hex: &str) -> Result<Option<TrashedXorb>, StoreError> {
        match self {
            Store::Local(s) => Ok(s.trash_xorb(hash_hex).await?.map(TrashedXorb::Local)),
            Store::S3(s) => Ok(s.trash_xorb(hash_hex).await?.map(TrashedXorb::S3)),
        }
    }

    pub async fn restore_xorb(
        &self,
        hash_hex: &str,
        trashed: TrashedXorb,
    ) -> Result<(), StoreError> {
        match (self, trashed) {
            (Store::Local(s), TrashedXorb::Local(p)) => s.restore_xorb(hash_hex, p).await,
            (Store::S3(s), TrashedXorb::S3(k)) => s.restore_xorb(hash_hex, &k).await,
            _ => Err(mismatched()),
        }
    }

    pub async fn discard_trashed_xorb(&self, trashed: TrashedXorb) -> Result<(), StoreError> {
        match (self, trashed) {
            (Store::Local(s), TrashedXorb::Local(p)) => s.discard_trashed_xorb(p).await,
            (Store::S3(s), TrashedXorb::S3(k)) => s.discard_trashed_xorb(&k).await,
            _ => Err(mismatched()),
        }
    }

    /// Xorbs left aside by a collection that stopped midway: (hash hex, where).
    pub async fn trashed_xorbs(&self) -> Result<Vec<(String, TrashedXorb)>, StoreError> {
        match self {
            Store::Local(s) => Ok(s
                .trashed_xorbs()
                .await?
                .into_iter()
                .map(|(h, p)| (h, TrashedXorb::Local(p)))
                .collect()),
            Store::S3(s) => Ok(s
                .trashed_xorbs()
                .await?
                .into_iter()
                .map(|(h, k)| (h, TrashedXorb::S3(k)))
                .collect()),
        }
    }

    /// Every stored xorb: (hash hex, bytes).
    pub async fn stored_xorbs(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            Store::Local(s) => s.stored_xorbs().await,
            Store::S3(s) => s.stored_xorbs().await,
        }
    }
}

fn mismatched() -> StoreError {
    StoreError::Io {
        path: PathBuf::new(),
        source: io::Error::other("a xorb handle of another backend"),
    }
}

fn open_if_present(path: PathBuf) -> Result<Option<fs::File>, StoreError> {
    match fs::File::open(&path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}
