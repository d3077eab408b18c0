//! The chunk store as a whole, across repositories and upload paths: plain LFS uploads
//! packed into the same xorbs as Xet uploads (`repos::ingest`), garbage collection ([`gc`]) and
//! the store's figures ([`stats`]), and moving whole-file objects into the chunk store
//! ([`migrate`]); checking it ([`fsck`]); answering global-dedup queries ([`dedup`]).

pub mod compact;
pub mod dedup;
pub mod duplicate;
pub mod fsck;
pub mod gc;
pub mod lfs_files;
pub mod metrics;
pub mod migrate;
pub mod relocate;
pub mod repair;
pub mod stats;
