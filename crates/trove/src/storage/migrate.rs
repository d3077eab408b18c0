//! Moving whole-file LFS objects stored before the chunk store existed into it
//! (`trove storage migrate`). Each object goes through the same ingestion as a new upload, so
//! an interrupted run leaves every object either whole or ingested, and running again carries
//! on with what is left. Objects no repository links are left for garbage collection.

use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::ingest::ingest_object;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    pub migrated: u64,
    pub migrated_bytes: u64,
    pub unlinked_skipped: u64,
    pub failed: u64,
}

/// Ingests every whole-file object some repository links. `progress` is called after each.
pub async fn migrate(
    state: &Context,
    mut progress: impl FnMut(&MigrateReport, u64),
) -> ApiResult<MigrateReport> {
    let objects = state.store.whole_objects().await?;
    let total = objects.len() as u64;
    let mut report = MigrateReport::default();
    for (oid, size) in objects {
        if size == 0 {
            continue;
        }
        let Some(repo_id) = state.db.a_repo_linking(&oid).await? else {
            report.unlinked_skipped += 1;
            continue;
        };
        match ingest_object(state, repo_id, &oid, size).await {
            Ok(_) => {
                report.migrated += 1;
                report.migrated_bytes += size;
            }
            Err(e) => {
                tracing::warn!(oid = %oid, error = ?e, "storage.migrate_failed");
                report.failed += 1;
            }
        }
        progress(&report, total);
    }
    Ok(report)
}
