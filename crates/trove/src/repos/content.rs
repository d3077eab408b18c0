//! Where a file's bytes are, answered once for every reader: a git blob, an LFS object held
//! whole in the store, or an LFS object held as a Xet file and rebuilt from its xorbs as it
//! streams. Downloads (resolve, the LFS download action) stream [`open`]; server-side
//! readers (card, safetensors headers) take a bounded [`read_range`] built on it.
//!
//! [`CanSendFiles`]: crate::repos::file_ranges::CanSendFiles

use super::RepoRef;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::file_ranges::FileRanges;
use crate::repos::rebuild::{plan_file, stream_plan, stream_plan_remote};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::io;
use std::pin::Pin;
use trove_db::LfsDownload;
use trove_git::EntryKind;
use trove_types::{GitOid, Sha256Hex};

/// A file's bytes as they stream out.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// Which bytes a file is made of.
#[derive(Debug, Clone)]
pub enum FileBytes {
    /// A regular file: a blob of repository `repo_id`'s git objects.
    Blob {
        repo_id: i64,
        blob: GitOid,
        size: u64,
    },
    /// A large file of repository `repo_id`: the LFS object `oid`, whichever way the store
    /// holds it.
    Lfs {
        repo_id: i64,
        oid: Sha256Hex,
        size: u64,
    },
}

impl FileBytes {
    /// The bytes of a tree entry of `repo`; `None` for anything but a file.
    pub fn of(repo: &RepoRef, entry: &EntryKind) -> Option<Self> {
        let EntryKind::File { blob, size, lfs } = entry else {
            return None;
        };
        Some(match lfs {
            Some(lfs) => FileBytes::Lfs {
                repo_id: repo.repo.id,
                oid: lfs.pointer.oid.clone(),
                size: lfs.pointer.size,
            },
            None => FileBytes::Blob {
                repo_id: repo.repo.id,
                blob: blob.clone(),
                size: *size,
            },
        })
    }

    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        match self {
            FileBytes::Blob { size, .. } | FileBytes::Lfs { size, .. } => *size,
        }
    }
}

/// A presigned bucket URL of LFS object `oid` of repository `repo_id`, when downloads are
/// redirected (`[storage] redirect_downloads`, S3 backend) and the object is stored whole in
/// the bucket; `None` means "stream it". Only for a caller already allowed to read the file:
/// the URL is self-authenticating. Xet-held files (every LFS upload is chunked into xorbs)
/// have no single object to point at; their direct path is the Xet protocol, whose fetch
/// URLs are presigned too.
pub async fn direct_url(
    state: &Context,
    repo_id: i64,
    oid: &Sha256Hex,
) -> ApiResult<Option<String>> {
    if !state.config.storage.redirect_downloads || !state.store.is_remote() {
        return Ok(None);
    }
    if state.db.repo_lfs_file_deleted(repo_id, oid).await? {
        return Ok(None);
    }
    if state.store.size_of(oid).await?.is_none() {
        return Ok(None);
    }
    let ttl = std::time::Duration::from_secs(state.config.storage.presign_ttl_secs);
    Ok(state.store.presign_object(oid, ttl).await?)
}

/// An opened file: `len` bytes (the whole file or the range asked for) as a stream, and,
/// when asked for and possible, the same bytes as file ranges to `sendfile`.
pub struct Opened {
    pub len: u64,
    pub stream: ByteStream,
    pub files: Option<FileRanges>,
}

impl Opened {
    /// `[start, end)` (clamped) of a git blob read whole.
    pub fn blob(bytes: impl Into<Bytes>, start: u64, end: u64) -> Opened {
        let bytes: Bytes = bytes.into();
        let end = (end as usize).min(bytes.len());
        let start = (start as usize).min(end);
        let slice = bytes.slice(start..end);
        Opened {
            len: slice.len() as u64,
            stream: Box::pin(futures_util::stream::once(async move { Ok(slice) })),
            files: None,
        }
    }
}

/// Opens `range` (`[start, end)` within the file; `None` = all of it) of a file's bytes.
/// `Ok(None)` when the bytes are not held at all (an LFS object the store lost, or one never
/// uploaded): the caller says so in its own terms. Nothing is read before the stream is
/// polled, except a git blob, which comes out of git whole (regular files are small; large
/// ones are LFS objects).
pub async fn open(
    state: &Context,
    file: &FileBytes,
    range: Option<(u64, u64)>,
) -> ApiResult<Option<Opened>> {
    open_with(state, file, range, None, false).await
}

/// [`open`], for a caller that already asked the database about an LFS file's object
/// (`known`: what [`trove_db::Db::lfs_download`] answered for it), so that it is not asked
/// twice. With `want_files` (the server can `sendfile`: [`CanSendFiles`]), an LFS file held
/// on this node's disk, whole or as uncompressed chunks, also comes as [`FileRanges`]; the
/// stream then reads nothing unless it is polled.
pub async fn open_with(
    state: &Context,
    file: &FileBytes,
    range: Option<(u64, u64)>,
    known: Option<LfsDownload>,
    want_files: bool,
) -> ApiResult<Option<Opened>> {
    let (start, end) = range.unwrap_or((0, file.size()));
    match file {
        FileBytes::Blob { repo_id, blob, .. } => {
            let blob = blob.clone();
            let bytes = crate::repos::reconcile::with_repo(state, *repo_id, move |git| {
                Ok(git.read_blob(&blob)?)
            })
            .await?;
            Ok(Some(Opened::blob(bytes, start, end)))
        }
        FileBytes::Lfs { repo_id, oid, .. } => {
            let LfsDownload { deleted, xet } = match known {
                Some(known) => known,
                None => {
                    state
                        .auth
                        .lfs_downloads
                        .lfs_download(&state.db, *repo_id, oid, None)
                        .await?
                }
            };
            // Deleted permanently from this repository: its pointers remain, its bytes do not.
            if deleted {
                return Ok(None);
            }
            // For the kernel: one open, the handle handed to `sendfile`; the stream (never
            // polled when the ranges are sent) opens the object again only if polled.
            if want_files && let Some(file) = state.store.local_object_file(oid)? {
                let size = file.metadata().map_err(ApiError::internal)?.len();
                if start > end || end > size {
                    return Err(ApiError::RangeNotSatisfiable { size });
                }
                let store = state.store.clone();
                let oid = oid.clone();
                let stream = futures_util::stream::once(async move {
                    match store.open_range(&oid, start, end).await {
                        Ok(Some((stream, _))) => stream,
                        Ok(None) => gone_stream(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("LFS object {oid} left the store"),
                        )),
                        Err(e) => gone_stream(io::Error::other(e)),
                    }
                })
                .flatten();
                return Ok(Some(Opened {
                    len: end - start,
                    stream: Box::pin(stream),
                    files: Some(FileRanges::whole(file, start, end)),
                }));
            }
            // Stored whole? Already answered above for this node's disk: a Xet file's download
            // does not ask again (through the blocking pool, a thread hand-off each way, to
            // find the same nothing).
            let looked_here = want_files && !state.store.is_remote();
            if !(looked_here && xet.is_some())
                && let Some((stream, len)) = state.store.open_range(oid, start, end).await?
            {
                return Ok(Some(Opened {
                    len,
                    stream,
                    files: None,
                }));
            }
            let Some(xet) = xet else {
                return Ok(None);
            };
            // Held as xorbs only (uploaded through Xet): the bytes are rebuilt as they stream.
            let (plan, _) = plan_file(state, &xet, range).await?;
            let plan_len = plan.length;
            let files = match want_files {
                // A few chunks (a small file, or a small range): an open and a read of a
                // header per chunk from the page cache, here — less than the blocking pool's
                // hand-off to another thread and back would cost.
                true if plan_chunks(&plan) <= INLINE_CHUNK_HEADERS => {
                    FileRanges::of_plan(&state.store, &plan).map_err(ApiError::internal)?
                }
                true => {
                    let store = state.store.clone();
                    let plan = plan.clone();
                    tokio::task::spawn_blocking(move || FileRanges::of_plan(&store, &plan))
                        .await
                        .map_err(ApiError::internal)?
                        .map_err(ApiError::internal)?
                }
                false => None,
            };
            // One line per download rebuilt from xorbs for a plain HTTP client, whichever
            // way its bytes then go out.
            tracing::info!(
                terms = plan.terms.len(),
                bytes = plan_len,
                sendfile_ranges = files.as_ref().map_or(0, |f| f.ranges().len()),
                "xet.bridge"
            );
            let store = (*state.store).clone();
            let blocks = state.read_blocks.clone();
            // Started when first polled: a response sent as file ranges never polls it.
            let stream = futures_util::stream::once(async move {
                if store.is_remote() {
                    stream_plan_remote(store, plan).left_stream()
                } else {
                    stream_plan(store, blocks, plan).right_stream()
                }
            })
            .flatten();
            Ok(Some(Opened {
                len: plan_len,
                stream: Box::pin(stream),
                files,
            }))
        }
    }
}

/// Chunk headers [`FileRanges::of_plan`] may read on the calling thread; more go to the
/// blocking pool.
const INLINE_CHUNK_HEADERS: u64 = 8;

/// How many chunks `plan`'s terms span (an upper bound of the headers read for it).
fn plan_chunks(plan: &trove_xet::plan::Plan) -> u64 {
    plan.terms
        .iter()
        .map(|t| u64::from(t.chunk_end.saturating_sub(t.chunk_start)))
        .sum()
}

/// A stream whose only item is `e`.
fn gone_stream(e: io::Error) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Err(e) }))
}

/// Reads `[start, start + len)` of a file (clamped to its size) into memory. `len` is the
/// caller's bound on memory; `Ok(None)` when the file's bytes are not held at all.
pub async fn read_range(
    state: &Context,
    repo: &RepoRef,
    entry: &EntryKind,
    start: u64,
    len: u64,
) -> ApiResult<Option<Vec<u8>>> {
    let Some(file) = FileBytes::of(repo, entry) else {
        return Ok(None);
    };
    let end = start.saturating_add(len).min(file.size());
    if start >= end {
        return Ok(Some(Vec::new()));
    }
    let Some(mut opened) = open(state, &file, Some((start, end))).await? else {
        return Ok(None);
    };
    Ok(Some(read_whole(&mut opened, end - start).await?.to_vec()))
}

/// The bytes of an opened file, read into memory: at most `bound` of them (a longer stream
/// is cut there; callers that know the length compare it).
pub async fn read_whole(opened: &mut Opened, bound: u64) -> ApiResult<Bytes> {
    let mut out = BytesMut::with_capacity(opened.len.min(bound) as usize);
    while (out.len() as u64) < bound {
        let Some(chunk) = opened.stream.next().await else {
            break;
        };
        let chunk = chunk?;
        let room = usize::try_from(bound - out.len() as u64).unwrap_or(usize::MAX);
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(out.freeze())
}
