//! Garbage collection of the chunk store, while the server serves.
//!
//! 1. **Mark**: every LFS pointer reachable from any ref of any repository (branches, tags,
//!    `refs/pr/*`; the whole history behind them) is live. So is anything uploaded or linked
//!    to a repository within the grace period (uploads not committed yet, and xorbs a client
//!    may still name from its own shard cache: the default grace outlives that cache).
//! 2. **Forget** LFS objects not marked: their repository links, the Xet files holding them
//!    and any whole-file copy. Before that, the refs of every repository are read again, and
//!    a repository whose refs moved during the mark is walked again.
//! 3. **Compact** xorbs files still name but whose live bytes are below `[storage]
//!    compact_below` of their size: their live chunks are rewritten into a new xorb, every
//!    file and chunk-index entry moves to it in one transaction, and the old xorb is
//!    released — swept like any unreferenced xorb once the grace period has passed since
//!    (`storage::compact`).
//! 4. **Sweep** xorbs no remaining file names, older than the grace period and not uploaded
//!    by a user within it (the client names what it uploaded from its cache, to any
//!    repository, for less than that): the file is moved aside, then one transaction
//!    removes its chunk-index entries first (so no new upload dedups against it), its
//!    repositories' and uploaders' references and its record — only if still unreferenced.
//!    The file is then deleted, or put back if the transaction found it referenced again.
//!    A run that stops midway leaves moved-aside xorbs; the next run puts back those still
//!    recorded and deletes the rest.
//!
//! Memory: the set of live oids (one per distinct LFS object referenced) and one page of
//! candidates at a time, never the chunk or xorb tables whole.

use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::storage::compact;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use trove_git::GitRepo;
use trove_types::{GitOid, Sha256Hex};
use trove_xet::XetHash;

/// The default grace period: longer than clients trust xorbs from their shard cache (three
/// weeks, plus a week of slack).
pub const DEFAULT_GRACE_MS: i64 = 28 * 24 * 3600 * 1000;

/// Rows read per page while scanning.
const PAGE: u32 = 1000;

/// What a collection found and (unless it was a dry run) freed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub repos_scanned: u64,
    pub live_objects: u64,
    pub objects_forgotten: u64,
    pub object_bytes_forgotten: u64,
    pub xorbs_deleted: u64,
    pub xorb_bytes_freed: u64,
    pub chunks_freed: u64,
    pub whole_objects_deleted: u64,
    pub trash_restored: u64,
    /// Xorbs whose live chunks were rewritten into a new xorb.
    pub xorbs_compacted: u64,
    /// Stored bytes of the xorbs compaction wrote.
    pub compact_bytes_rewritten: u64,
    /// Stored bytes of the xorbs compaction released: freed by the sweep once the grace
    /// period has passed since (in this run with `--grace 0s`).
    pub compact_bytes_to_free: u64,
}

type RefSnapshot = HashMap<i64, Vec<(String, GitOid)>>;

/// One repository's refs and the oids reachable from them.
type Walked = (Vec<(String, GitOid)>, Vec<String>);

/// Runs one collection with `grace_ms` of grace. A dry run reports what would be freed by the
/// forget step and counts xorbs unreferenced already, changing nothing.
pub async fn collect(state: &Context, grace_ms: i64, dry_run: bool) -> ApiResult<GcReport> {
    collect_with_progress(state, grace_ms, dry_run, &mut |_: &GcReport| {}).await
}

/// [`collect`], calling `progress` after each object forgotten and each xorb swept. The
/// run is recorded (`storage_gc_runs`) for `/metrics` once it finishes.
pub async fn collect_with_progress(
    state: &Context,
    grace_ms: i64,
    dry_run: bool,
    progress: &mut (dyn FnMut(&GcReport) + Send),
) -> ApiResult<GcReport> {
    if dry_run {
        return run(state, grace_ms, dry_run, progress).await;
    }
    // One collection at a time across the nodes of a hub (and beside `trove gc`).
    let leased = crate::cluster::run_once_leased(
        &state.db,
        &state.node,
        crate::cluster::leases::GC,
        run(state, grace_ms, dry_run, progress),
    )
    .await;
    leased.unwrap_or_else(|held| {
        Err(ApiError::Conflict {
            message: format!(
                "A garbage collection is already running (on node {}); try again when it ends",
                held.holder
            ),
            url: None,
        })
    })
}

/// Puts back what a stopped collection moved aside ([`recover_trash`]) unless a collection
/// is running now on another node (whose moved-aside xorbs are in flight, not left over);
/// `Ok(None)` then.
pub async fn recover_trash_unless_running(state: &Context) -> ApiResult<Option<u64>> {
    let leased = crate::cluster::run_once_leased(
        &state.db,
        &state.node,
        crate::cluster::leases::GC,
        recover_trash(state),
    )
    .await;
    match leased {
        Ok(restored) => restored.map(Some),
        Err(_) => Ok(None),
    }
}

async fn run(
    state: &Context,
    grace_ms: i64,
    dry_run: bool,
    progress: &mut (dyn FnMut(&GcReport) + Send),
) -> ApiResult<GcReport> {
    let started_at_ms = now_ms();
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    if !dry_run {
        report.trash_restored = recover_trash(state).await?;
    }
    let cutoff = now_ms().saturating_sub(grace_ms.max(0));
    let (mut live, refs) = mark(state, None).await?;
    report.repos_scanned = refs.len() as u64;

    // Candidates for forgetting, then a second look at repositories whose refs moved.
    let mut dead = Vec::new();
    let mut after: Option<Sha256Hex> = None;
    loop {
        let page = state.db.lfs_objects_page(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.0.clone());
        for (oid, size, touched) in page {
            if touched < cutoff && !live.contains(oid.as_str()) {
                dead.push((oid, size));
            }
        }
    }
    if !dead.is_empty() {
        let (again, _) = mark(state, Some(&refs)).await?;
        live.extend(again);
        dead.retain(|(oid, _)| !live.contains(oid.as_str()));
    }
    report.live_objects = live.len() as u64;

    for (oid, size) in dead {
        if dry_run {
            report.objects_forgotten += 1;
            report.object_bytes_forgotten += size;
            continue;
        }
        if state.db.forget_lfs_object(&oid, cutoff).await? {
            report.objects_forgotten += 1;
            report.object_bytes_forgotten += size;
            if state.store.remove_object(&oid).await? {
                report.whole_objects_deleted += 1;
            }
        }
        progress(&report);
    }

    let below = state.config.storage.compact_below;
    if below > 0.0 {
        let mut after = [0u8; 32];
        loop {
            let page = state.db.named_xorbs_page(&after, cutoff, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = *last;
            for hash in page {
                if let Some(done) = compact::compact_xorb(state, &hash, below, dry_run).await? {
                    report.xorbs_compacted += 1;
                    report.compact_bytes_rewritten += done.bytes_rewritten;
                    report.compact_bytes_to_free += done.bytes_to_free;
                    progress(&report);
                }
            }
        }
    }

    // Counted again: xorbs compaction released just now are due at once with no grace.
    let cutoff = now_ms().saturating_sub(grace_ms.max(0));
    let mut after = [0u8; 32];
    loop {
        let page = state
            .db
            .unreferenced_xorbs_page(&after, cutoff, PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (hash, bytes) in page {
            if dry_run {
                report.xorbs_deleted += 1;
                report.xorb_bytes_freed += bytes;
                continue;
            }
            if let Some(chunks) = sweep_xorb(state, &hash, cutoff).await? {
                report.xorbs_deleted += 1;
                report.xorb_bytes_freed += bytes;
                report.chunks_freed += chunks;
            }
            progress(&report);
        }
    }
    state
        .db
        .record_gc_run(&trove_db::GcRun {
            started_at_ms,
            finished_at_ms: now_ms(),
            dry_run,
            xorbs_deleted: report.xorbs_deleted,
            bytes_freed: report.xorb_bytes_freed,
            chunks_freed: report.chunks_freed,
            objects_forgotten: report.objects_forgotten,
        })
        .await?;
    tracing::info!(
        dry_run,
        repos = report.repos_scanned,
        live_objects = report.live_objects,
        objects_forgotten = report.objects_forgotten,
        xorbs_deleted = report.xorbs_deleted,
        xorbs_compacted = report.xorbs_compacted,
        xorb_bytes_freed = report.xorb_bytes_freed,
        "storage.gc_done"
    );
    Ok(report)
}

/// Removes one unreferenced xorb: moved aside, dropped from the indices if still
/// unreferenced, then deleted (or put back). Returns the chunks it held when it went.
async fn sweep_xorb(state: &Context, hash: &[u8; 32], cutoff: i64) -> ApiResult<Option<u64>> {
    let hex = XetHash::from_bytes(*hash).hex();
    let trashed = state.store.trash_xorb(&hex).await?;
    let dropped = state.db.drop_xorb_if_unreferenced(hash, cutoff).await?;
    match (trashed, dropped) {
        (Some(trashed), Some(_)) => state.store.discard_trashed_xorb(trashed).await?,
        (Some(trashed), None) => state.store.restore_xorb(&hex, trashed).await?,
        (None, _) => {}
    }
    Ok(dropped)
}

/// Puts back moved-aside xorbs that are still recorded; deletes the others. Each run starts
/// with it, and so does `trove serve`: a run killed between moving a xorb aside and dropping
/// its record must not leave the chunk index naming bytes nobody can read until the next
/// run. Returns how many were put back.
pub async fn recover_trash(state: &Context) -> ApiResult<u64> {
    let mut restored = 0;
    for (hex, path) in state.store.trashed_xorbs().await? {
        let recorded = match XetHash::parse(&hex) {
            Ok(h) => state.db.xorb_stored_bytes(&h.to_bytes()).await?.is_some(),
            Err(_) => false,
        };
        if recorded {
            state.store.restore_xorb(&hex, path).await?;
            restored += 1;
        } else {
            state.store.discard_trashed_xorb(path).await?;
        }
    }
    Ok(restored)
}

/// The oids reachable from every repository's refs, and the refs read. With `only_moved`,
/// walks only repositories whose refs differ from that snapshot (or are new).
async fn mark(
    state: &Context,
    only_moved: Option<&RefSnapshot>,
) -> ApiResult<(HashSet<String>, RefSnapshot)> {
    let repos = state.db.all_repos().await?;
    let mut live = HashSet::new();
    let mut refs = RefSnapshot::new();
    for repo in repos {
        let path = crate::repos::reconcile::checked_git_dir(state, repo.id).await?;
        let before = only_moved.and_then(|s| s.get(&repo.id)).cloned();
        let walked = tokio::task::spawn_blocking(move || -> ApiResult<Option<Walked>> {
            let git = match GitRepo::open(&path) {
                Ok(git) => git,
                // A repository deleted since it was listed references nothing.
                Err(_) if !path.exists() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let targets = git.ref_targets()?;
            if before.as_ref() == Some(&targets) {
                return Ok(Some((targets, Vec::new())));
            }
            let mut oids = Vec::new();
            git.for_each_reachable_lfs_pointer(|p| oids.push(p.oid.as_str().to_owned()))?;
            Ok(Some((targets, oids)))
        })
        .await??;
        if let Some((targets, oids)) = walked {
            // What the repository's owners deleted permanently, it no longer needs, though
            // its history still names it.
            let deleted = state.db.repo_lfs_deletions(repo.id).await?;
            refs.insert(repo.id, targets);
            live.extend(oids.into_iter().filter(|o| !deleted.contains(o)));
        }
    }
    Ok((live, refs))
}

/// A grace period as `trove gc --grace` and the admin API take it: `30s`, `90m`, `12h`,
/// `28d`, `4w` (or a bare number of seconds), in milliseconds.
pub fn parse_grace_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (e.g. 0s, 90m, 12h, 28d)"))?;
    let unit_ms: i64 = match unit {
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} in {text:?}: use s, m, h, d or w"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("duration too long: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_grace_ms;

    #[test]
    fn grace_periods_parse_with_their_units_and_bad_ones_are_refused() {
        assert_eq!(parse_grace_ms("0s"), Ok(0));
        assert_eq!(parse_grace_ms("90"), Ok(90_000));
        assert_eq!(parse_grace_ms("90m"), Ok(5_400_000));
        assert_eq!(parse_grace_ms(" 12h "), Ok(43_200_000));
        assert_eq!(parse_grace_ms("28d"), Ok(super::DEFAULT_GRACE_MS));
        assert_eq!(parse_grace_ms("1w"), Ok(604_800_000));
        for bad in [
            "",
            "s",
            "-1s",
            "1y",
            "1.5h",
            "99999999999999999999d",
            "3d2h",
        ] {
            assert!(parse_grace_ms(bad).is_err(), "{bad:?}");
        }
    }
}
