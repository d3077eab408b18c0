//! The HTTP contract checked in process: the real router on a temporary data dir, driven
//! request by request, with snapshots of the main responses (volatile values redacted).
//! One test binary; each module tests one surface.

mod app;
mod cards;
mod collections;
mod content;
mod contract;
mod driver;
mod fresh_reads;
mod git_http;
mod hostile;
mod layering;
mod limits;
mod listing_cache;
mod preview;
mod recovery;
mod recovery_cluster;
mod spaces;
mod storage;
mod storage_gc;
mod storage_lfs_files;
mod token_cache;
mod web;
mod webhooks;
mod xet_uploads;
