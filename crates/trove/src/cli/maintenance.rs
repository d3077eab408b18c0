//! Admin commands that do server work on a data dir (with or without the server running):
//! `trove reindex`, `trove gc`, `trove storage stats`, `trove storage migrate`,
//! `trove fsck`.

use crate::cli::progress::Progress;
use crate::config::Config;
use crate::repos::index::reindex_repo;
use crate::signing::UrlSigner;
use crate::state::AppState;
use anyhow::Context;
use trove_types::{RepoId, RepoType};

/// Repositories read per batch of a full reindex.
const BATCH: u32 = 500;

/// `model:ns/name`, `dataset:ns/name`, `space:ns/name`, or `ns/name` (a model).
fn parse_repo(spec: &str) -> anyhow::Result<(RepoType, RepoId)> {
    let (repo_type, id) = match spec.split_once(':') {
        Some((kind, id)) => (
            RepoType::from_singular(kind).with_context(|| {
                format!("unknown repo type {kind:?}: use model, dataset or space")
            })?,
            id,
        ),
        None => (RepoType::Model, spec),
    };
    Ok((
        repo_type,
        RepoId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

/// Re-derives the index entry of one repository, or of every repository.
/// How often (in repositories) `reindex` reports progress on a terminal.
const PROGRESS_EVERY: u64 = 100;

pub async fn reindex(config: Config, repo: Option<&str>) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    if let Some(spec) = repo {
        let (repo_type, id) = parse_repo(spec)?;
        let repo = state
            .db
            .repo_by_name(repo_type, &id)
            .await?
            .with_context(|| format!("no {} named {id}", repo_type.as_str()))?;
        reindex_repo(&state, &repo)
            .await
            .map_err(|e| anyhow::anyhow!("reindexing {id}: {e}"))?;
        eprintln!("reindexed {} {id}", repo_type.as_str());
        return Ok(());
    }
    let (mut done, mut failed, mut after) = (0u64, 0u64, 0i64);
    // Progress only for a person watching; logs and scripts get the summary.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = std::time::Instant::now();
    loop {
        let batch = state.db.repos_after(after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for repo in &batch {
            match reindex_repo(&state, repo).await {
                Ok(()) => done += 1,
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "{} {}/{}: {e}",
                        repo.repo_type.as_str(),
                        repo.namespace,
                        repo.name
                    );
                }
            }
            if progress && (done + failed) % PROGRESS_EVERY == 0 {
                eprintln!("… {} repositories so far", done + failed);
            }
        }
    }
    eprintln!(
        "reindexed {done} repositories in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    anyhow::ensure!(failed == 0, "{failed} repositories could not be reindexed");
    Ok(())
}

/// The state of a data dir for a maintenance command (the server may be running too).
pub async fn open_state(config: Config) -> anyhow::Result<AppState> {
    let db = crate::cli::admin::open_existing_db(&config).await?;
    // A hub's local store exists from its first start on: a missing one means the wrong
    // data dir (on PostgreSQL the database check above cannot tell), and opening it would
    // create an empty store there for the command to examine or collect.
    if let crate::config::StorageBackend::Local(root) = config.storage.backend(&config.data_dir)? {
        anyhow::ensure!(
            root.is_dir(),
            "no Trove object store at {}: pass the hub's --data-dir DIR (or set TROVE_DATA_DIR, \
             or TROVE_STORAGE when its objects live elsewhere)",
            root.display()
        );
    }
    let store = crate::cli::serve::open_store(&config).await?;
    let signer = UrlSigner::load(&db, &config.data_dir).await?;
    AppState::new(config, db, store, signer)
}

/// `trove gc`: one garbage collection of the chunk store.
pub async fn gc(config: Config, dry_run: bool, grace: Option<&str>) -> anyhow::Result<()> {
    let grace_ms = match grace {
        Some(g) => crate::storage::gc::parse_grace_ms(g).map_err(anyhow::Error::msg)?,
        None => crate::storage::gc::DEFAULT_GRACE_MS,
    };
    let state = open_state(config).await?;
    let mut progress = Progress::new("gc");
    let report = crate::storage::gc::collect_with_progress(&state, grace_ms, dry_run, &mut |r| {
        progress.update(|| {
            format!(
                "{} objects forgotten, {} xorbs compacted, {} xorbs deleted ({} B, {} chunks)",
                r.objects_forgotten,
                r.xorbs_compacted,
                r.xorbs_deleted,
                r.xorb_bytes_freed,
                r.chunks_freed
            )
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("garbage collection: {e}"))?;
    progress.finish();
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `trove storage stats`.
pub async fn storage_stats(config: Config, json: bool) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    let stats = crate::storage::stats::stats(&state)
        .await
        .map_err(|e| anyhow::anyhow!("storage stats: {e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!(
        "logical {} B, distinct {} B, stored {} B, dedup ratio {:.3}",
        stats.logical_bytes, stats.distinct_bytes, stats.stored_bytes, stats.dedup_ratio
    );
    println!(
        "{} LFS objects, {} xorbs, {} chunks indexed",
        stats.lfs_objects, stats.xorbs, stats.chunks
    );
    println!(
        "\n{:<50} {:>8} {:>16}",
        "namespace", "files", "logical bytes"
    );
    for u in &stats.namespaces {
        println!("{:<50} {:>8} {:>16}", u.name, u.files, u.logical_bytes);
    }
    println!(
        "\n{:<50} {:>8} {:>16}",
        "repository", "files", "logical bytes"
    );
    for u in &stats.repos {
        println!("{:<50} {:>8} {:>16}", u.name, u.files, u.logical_bytes);
    }
    Ok(())
}

/// `trove storage migrate`.
pub async fn storage_migrate(config: Config) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    let mut progress = Progress::new("migrate");
    let report = crate::storage::migrate::migrate(&state, |r, total| {
        progress.update(|| {
            format!(
                "migrated {} of {total} objects ({} bytes)",
                r.migrated, r.migrated_bytes
            )
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("migration: {e}"))?;
    progress.finish();
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.failed > 0 {
        anyhow::bail!(
            "{} objects could not be migrated (see the log)",
            report.failed
        );
    }
    Ok(())
}

/// `trove fsck [--repair-index]`.
pub async fn fsck(config: Config, repair_index: bool) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    if repair_index {
        let mut progress = Progress::new("repair-index");
        let report = crate::storage::repair::repair_index(&state, &mut |r| {
            progress.update(|| {
                format!(
                    "{} xorbs, {} files seen; {} chunks reindexed, {} xorbs recorded, {} file links restored",
                    r.xorbs_seen, r.files_seen, r.chunks_reindexed, r.xorbs_recorded, r.file_links_restored
                )
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("repairing the index: {e}"))?;
        progress.finish();
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let mut progress = Progress::new("fsck");
    let report = crate::storage::fsck::check_with_progress(&state, &mut |r| {
        progress.update(|| {
            format!(
                "{} xorbs, {} chunks, {} files checked; {} damaged",
                r.xorbs_checked,
                r.chunks_checked,
                r.files_checked,
                r.damaged_xorbs.len() + r.damaged_files.len()
            )
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("fsck: {e}"))?;
    progress.finish();
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.is_clean() {
        anyhow::bail!(
            "{} damaged xorbs, {} damaged files",
            report.damaged_xorbs.len(),
            report.damaged_files.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_repo;
    use trove_types::RepoType;

    #[test]
    fn repo_specs() {
        assert_eq!(parse_repo("acme/m").expect("ok").0, RepoType::Model);
        assert_eq!(
            parse_repo("dataset:acme/d").expect("ok").0,
            RepoType::Dataset
        );
        assert_eq!(
            parse_repo("space:acme/s").expect("ok").1.to_string(),
            "acme/s"
        );
        assert!(parse_repo("table:acme/x").is_err());
        assert!(parse_repo("no-slash").is_err());
    }
}
