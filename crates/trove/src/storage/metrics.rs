//! The chunk store's figures for monitoring (`GET /metrics`): what it holds against what
//! repositories reference, and what garbage collection has freed (every run, the CLI's
//! and the admin API's, is recorded in the database).

use crate::context::Context;
use crate::error::ApiResult;

/// One scrape's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StorageMetrics {
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub lfs_objects: u64,
    pub xorbs: u64,
    pub chunks: u64,
    pub gc_runs: u64,
    pub gc_xorbs_deleted: u64,
    pub gc_bytes_freed: u64,
    pub gc_chunks_freed: u64,
    pub gc_objects_forgotten: u64,
    /// Unix seconds, 0 before the first run.
    pub gc_last_finished_secs: f64,
}

impl StorageMetrics {
    /// Logical / stored bytes; 0 for an empty store.
    pub fn dedup_ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            0.0
        } else {
            self.logical_bytes as f64 / self.stored_bytes as f64
        }
    }
}

pub async fn gather(state: &Context) -> ApiResult<StorageMetrics> {
    let totals = state.db.storage_totals().await?;
    let gc = state.db.gc_totals().await?;
    Ok(StorageMetrics {
        logical_bytes: state.db.storage_logical_bytes().await?,
        stored_bytes: totals.xorb_stored_bytes,
        raw_bytes: totals.xorb_raw_bytes,
        lfs_objects: totals.objects,
        xorbs: totals.xorbs,
        chunks: totals.chunks,
        gc_runs: gc.runs,
        gc_xorbs_deleted: gc.xorbs_deleted,
        gc_bytes_freed: gc.bytes_freed,
        gc_chunks_freed: gc.chunks_freed,
        gc_objects_forgotten: gc.objects_forgotten,
        gc_last_finished_secs: gc.last_finished_at_ms as f64 / 1000.0,
    })
}
