//! What can go wrong in the store, with the details the HTTP layer needs to answer.

use std::io;
use std::path::PathBuf;
use trove_types::Sha256Hex;

/// A store operation failed. Variants other than [`StoreError::Io`] are the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The body was longer or shorter than announced. When too long, `actual` counts the
    /// bytes received before the store stopped reading, so it is a lower bound.
    #[error("expected {expected} bytes, received {actual}")]
    SizeMismatch { expected: u64, actual: u64 },

    /// The bytes did not hash to the announced oid.
    #[error("content hash mismatch: expected {expected}, computed {actual}")]
    HashMismatch {
        expected: Sha256Hex,
        actual: Sha256Hex,
    },

    /// Reading the request body failed (client went away, transport error).
    #[error("reading the body failed: {0}")]
    Body(#[source] io::Error),

    /// The byte range `[start, end)` is not inside an object of `size` bytes.
    #[error("range {start}..{end} is not within an object of {size} bytes")]
    RangeNotSatisfiable { start: u64, end: u64, size: u64 },

    /// An upload id that is not a lowercase hyphenated UUID.
    #[error("invalid upload id")]
    InvalidUploadId,

    /// No multipart upload with this id (never begun, completed, or aborted).
    #[error("no multipart upload {upload_id}")]
    UploadNotFound { upload_id: String },

    /// `part_size` is zero or would make more than [`MAX_PARTS`](crate::LocalStore::MAX_PARTS) parts.
    #[error("part size {part_size} is not usable for an object of {size} bytes")]
    InvalidPartSize { size: u64, part_size: u64 },

    /// A part number outside `1..=parts`.
    #[error("part {part} is not between 1 and {parts}")]
    InvalidPartNumber { part: u32, parts: u32 },

    /// A part body was not exactly the length of that part. When too long, `actual` is a lower bound.
    #[error("part {part}: expected {expected} bytes, received {actual}")]
    PartSizeMismatch {
        part: u32,
        expected: u64,
        actual: u64,
    },

    /// Completing an upload whose listed parts were never (fully) written.
    #[error("missing parts: {missing:?}")]
    MissingParts { missing: Vec<u32> },

    /// The state of a multipart upload on disk is unreadable; the upload cannot continue.
    #[error("multipart upload state at {} is corrupt: {reason}", path.display())]
    CorruptUpload { path: PathBuf, reason: String },

    /// The body ran past the most this kind of object may hold.
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: u64 },

    /// The object store (S3 backend) failed or refused: unreachable, wrong credentials,
    /// missing bucket, a 5xx after retries. A server fault, never the client's.
    #[error("object store {op} {key}: {message}")]
    Backend {
        op: &'static str,
        key: String,
        message: String,
    },

    /// The object store could not be reached: no connection, the connection lost, or no
    /// answer in time (after object_store's own retries). Retrying later may work.
    #[error("object store {op} {key}: unreachable: {message}")]
    Unreachable {
        op: &'static str,
        key: String,
        message: String,
    },

    /// The filesystem failed; a server fault, never the client's.
    #[error("I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Adapter for `map_err`: attach the path an I/O error happened on.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { path, source }
}
