//! What the chunk store holds against what repositories reference.
//!
//! Logical bytes count every large file once per repository it is linked to (what a store
//! without any dedup would keep if each repository held its own copies); distinct bytes count
//! each file once; stored bytes are the xorbs on disk. The dedup ratio is logical / stored.

use crate::context::Context;
use crate::error::ApiResult;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct StorageStats {
    pub logical_bytes: u64,
    pub distinct_bytes: u64,
    pub stored_bytes: u64,
    pub dedup_ratio: f64,
    pub lfs_objects: u64,
    pub xorbs: u64,
    pub chunks: u64,
    pub namespaces: Vec<Usage>,
    pub repos: Vec<Usage>,
}

/// One namespace's or repository's large files.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub name: String,
    pub files: u64,
    pub logical_bytes: u64,
}

fn ratio(logical: u64, stored: u64) -> f64 {
    if stored == 0 {
        return 0.0;
    }
    ((logical as f64 / stored as f64) * 1000.0).round() / 1000.0
}

pub async fn stats(state: &Context) -> ApiResult<StorageStats> {
    let totals = state.db.storage_totals().await?;
    let per_repo = state.db.storage_by_repo().await?;
    let mut namespaces: BTreeMap<String, Usage> = BTreeMap::new();
    let mut repos = Vec::with_capacity(per_repo.len());
    let mut logical = 0u64;
    for r in per_repo {
        logical += r.logical_bytes;
        let ns = namespaces.entry(r.namespace.clone()).or_insert(Usage {
            name: r.namespace.clone(),
            files: 0,
            logical_bytes: 0,
        });
        ns.files += r.objects;
        ns.logical_bytes += r.logical_bytes;
        repos.push(Usage {
            name: format!("{}:{}/{}", r.repo_type, r.namespace, r.name),
            files: r.objects,
            logical_bytes: r.logical_bytes,
        });
    }
    let mut namespaces: Vec<Usage> = namespaces.into_values().collect();
    namespaces.sort_by_key(|u| std::cmp::Reverse(u.logical_bytes));
    Ok(StorageStats {
        logical_bytes: logical,
        distinct_bytes: totals.object_bytes,
        stored_bytes: totals.xorb_stored_bytes,
        dedup_ratio: ratio(logical, totals.xorb_stored_bytes),
        lfs_objects: totals.objects,
        xorbs: totals.xorbs,
        chunks: totals.chunks,
        namespaces,
        repos,
    })
}
