//! The Xet formats as Trove's CAS needs them, and nothing of the client side.
//!
//! Every byte format goes through the pinned `xet-core-structures` crate (hashes, the
//! aggregated Merkle tree, chunk headers and compression, shard records), wrapped here so the
//! rest of Trove never names it:
//!
//! - [`hash`]: the 32-byte Xet hash in the protocol's hex convention.
//! - [`xorb`]: validating an uploaded xorb (every chunk decompressed and hashed, the Merkle
//!   root compared with the announced hash), the per-chunk index we keep for it, and a
//!   bounded cache of decoded indices for the download paths.
//! - [`shard`]: parsing an uploaded shard with a memory budget, and checking each file's
//!   terms against the xorbs we hold.
//! - [`pack`]: packing chunks into xorbs on the server (plain LFS uploads).
//! - [`plan`]: which stored bytes reconstruct a file or a byte range of it.
//! - [`chunk`]: content-defined chunking with the Xet clients' boundaries.
//! - [`decode`]: turning stored xorb bytes back into file bytes, chunk by chunk.
//! - [`dedup`]: answering global-dedup queries with a keyed shard of xorbs.

pub mod chunk;
pub mod decode;
pub mod dedup;
pub mod hash;
pub mod pack;
pub mod plan;
pub mod shard;
pub mod xorb;

pub use hash::XetHash;
