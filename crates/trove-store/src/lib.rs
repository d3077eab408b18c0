//! The content-addressed large-file (LFS) blob store.
//!
//! Objects are addressed by the SHA-256 of their bytes (the LFS oid, [`Sha256Hex`]) and are
//! immutable once visible. Every write follows the same path: stream the body into a temp
//! file under the store root while hashing it, verify hash and size, `fsync` the file, rename
//! it into place, `fsync` the directory. Only then is the object visible, so a crash at any
//! instant leaves either no object or a complete, verified one. Nothing large is held in
//! memory: bodies move in batches of about [`WRITE_BATCH`] bytes, hashed and written side by
//! side, written with `O_DIRECT` where the filesystem allows it (so each byte is copied once
//! and written once, and the final `fsync` has little left to do). Reads for downloads go
//! out in chunks of [`READ_CHUNK`] bytes ([`read_chunks`]).
//!
//! # Backends
//!
//! Two backends sit behind one enum, [`Store`], chosen once at the state boundary, with the
//! same method names (an enum rather than a trait object: the methods take generic body
//! streams). [`LocalStore`] keeps everything in a local directory (the embedded mode);
//! [`S3Store`] keeps visible objects and xorbs in an S3-compatible bucket and stages uploads
//! in a [`LocalStore`] under the data dir (see `s3.rs` for its keys and GC semantics).
//! Readers never touch a path: they get streams ([`Store::open_range`],
//! [`Store::open_xorb_range`]) or blocking readers ([`Store::open_xorb_at`]).
//!
//! # Layout on disk
//!
//! ```text
//! root/objects/ab/cd/<sha256>     visible objects (ab, cd: the first two hex pairs)
//! root/tmp/                       in-flight writes; anything older than a day is removed by open
//! root/multipart/<upload_id>/     one S3-style multipart upload: `meta`, `data`, `part-<n>` markers
//! root/xorbs/ab/<xorb hash>       Xet xorbs: validated chunk records, no footer (see `xorbs`)
//! root/gc-trash/<xorb hash>       xorbs garbage collection moved aside while it decides
//! ```

mod durable;
mod error;
mod local;
mod multipart;
mod read;
mod s3;
mod store;
mod stream;
mod xorbs;

pub use durable::PutOutcome;
pub use error::StoreError;
pub use local::LocalStore;
pub use read::{READ_CHUNK, read_chunks};
pub use s3::{
    ByteStream, DEFAULT_S3_MEMORY, LocalCopy, S3Checksum, S3Config, S3Store, SINGLE_PUT_MAX,
    SMALL_S3_MEMORY, XorbBuffer, XorbPieces,
};
pub use store::{ReadyXorb, ReceivedXorb, Store, TrashedXorb};
pub use stream::{DirectWriter, WRITE_BATCH};
pub use trove_types::Sha256Hex;
pub use xorbs::StagedXorb;
