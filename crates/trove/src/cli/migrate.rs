//! `trove migrate --to postgres://… --storage s3://… [--git-dir DIR]`: moves a stopped
//! embedded hub into the scale-out mode. Checks first, writing nothing (the hub is stopped,
//! the bucket answers with the credentials given, the database is reachable and empty or
//! holds this hub's interrupted run), then copies the metadata table by table
//! (`trove_db::hub_copy`), every object verified (`storage::relocate`), and the git
//! repositories when asked (`repos::relocate`). Every step is recorded in the target's
//! `migrate_progress`, so a run killed at any instant resumes where it stopped.

use crate::cli::args::MigrateArgs;
use crate::cli::progress::Progress;
use crate::config::{Config, ServeOverrides, StorageBackend};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use trove_db::{COPIED_TABLES, DatabaseUrl, Db};
use trove_store::{LocalStore, Store};

pub async fn run(
    data_dir: &Path,
    database: Option<String>,
    git_dir: Option<PathBuf>,
    args: MigrateArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = Config::load(
        data_dir,
        ServeOverrides {
            database,
            ..ServeOverrides::default()
        },
    )?;

    // The source: an embedded hub, stopped.
    let DatabaseUrl::Sqlite(db_file) = config.database.url(data_dir) else {
        anyhow::bail!(
            "trove migrate moves an embedded hub (SQLite); {} is already a PostgreSQL database",
            config.database.url(data_dir).redacted()
        );
    };
    anyhow::ensure!(
        db_file.exists(),
        "no Trove database at {}: pass the embedded hub's --data-dir",
        db_file.display()
    );
    let StorageBackend::Local(store_root) = config.storage.backend(data_dir)? else {
        anyhow::bail!(
            "trove migrate moves a hub whose objects are on local disk; this one's are in a bucket already"
        );
    };
    let hub = hub_identity(data_dir)?;
    let source = Db::open(&db_file)
        .await
        .with_context(|| format!("opening {}", db_file.display()))?;
    let serving = crate::cluster::nodes_serving(&source)
        .await
        .context("checking whether the hub is serving")?;
    anyhow::ensure!(
        serving.is_empty(),
        "the hub in {} is running (node {}): stop its server first; trove migrate copies a stopped hub",
        data_dir.display(),
        serving.join(", ")
    );
    source
        .check_tables_covered()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let source_store = LocalStore::open(store_root.clone())
        .await
        .with_context(|| format!("opening the store in {}", store_root.display()))?;
    let source_repos = config.repos_dir();

    // The targets, probed before anything is written to the database.
    let mut storage = config.storage.clone();
    storage.url = Some(args.storage.clone());
    let StorageBackend::S3(s3) = storage.backend(data_dir)? else {
        anyhow::bail!("--storage must name a bucket: s3://bucket[/prefix]?endpoint=…&region=…");
    };
    let location = s3.display_url();
    let endpoint = s3.endpoint.clone().unwrap_or_else(|| "AWS".into());
    // Staged copies go apart from the source objects: the staging store's clean-up must
    // never touch them.
    let staging = data_dir.join("migrate-staging");
    let target_store = Store::open_s3(staging.clone(), s3)
        .await
        .with_context(|| {
            format!("opening the object store {location} at {endpoint} (bucket, credentials and endpoint must be right)")
        })?;
    let target_url = DatabaseUrl::parse(&args.to)?;
    let DatabaseUrl::Postgres(_) = &target_url else {
        anyhow::bail!(
            "--to must name a PostgreSQL database (postgres://user:password@host:port/db), not {}",
            target_url.redacted()
        );
    };
    let target = Db::connect(&target_url, &config.database.connect_options())
        .await
        .with_context(|| format!("opening the target database {}", target_url.redacted()))?;
    let claim = target
        .claim_for_migration(&hub)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", target_url.redacted()))?;
    tracing::info!(
        hub = %hub,
        from = %data_dir.display(),
        db.url = %target_url.redacted(),
        storage = %location,
        resumed = claim.resumed,
        "migrate.start"
    );
    eprintln!(
        "migrating the hub in {} to {} and {location}{}",
        data_dir.display(),
        target_url.redacted(),
        if claim.resumed { " (resuming)" } else { "" }
    );

    // 1. Metadata, table by table, then the sequences.
    let mut rows_total = 0u64;
    let mut progress = Progress::new("migrate tables");
    for table in COPIED_TABLES {
        let step = format!("table:{table}");
        if claim.done.contains(&step) {
            rows_total += target.migration_step_count(&step).await?.unwrap_or(0);
            continue;
        }
        let rows = source
            .copy_table_to(&target, table, &hub, &mut |n| {
                progress.update(|| format!("{table}: {n} rows"));
            })
            .await
            .map_err(|e| anyhow::anyhow!("copying table {table}: {e}"))?;
        eprintln!("migrate: table {table}: {rows} rows");
        rows_total += rows;
    }
    progress.finish();
    for table in COPIED_TABLES {
        let (a, b) = (
            source.count_rows(table).await?,
            target.count_rows(table).await?,
        );
        anyhow::ensure!(
            a == b,
            "table {table}: {a} rows in the source, {b} in the target after the copy"
        );
    }
    let sequences = target
        .reset_sequences(&source)
        .await
        .map_err(|e| anyhow::anyhow!("moving the id sequences: {e}"))?;
    target
        .mark_migration_step(&hub, "sequences", sequences)
        .await?;

    // 2. Objects, each verified.
    let mut progress = Progress::new("migrate objects");
    let objects =
        crate::storage::relocate::copy_store(&source_store, &target_store, args.concurrency, |r| {
            progress.update(|| {
                format!(
                    "objects: {}/{} ({} copied, {} already there), {:.1}/{:.1} MiB",
                    r.copied + r.present,
                    r.total,
                    r.copied,
                    r.present,
                    (r.copied_bytes + r.present_bytes) as f64 / 1048576.0,
                    r.total_bytes as f64 / 1048576.0
                )
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("copying the objects to {location}: {e}"))?;
    progress.finish();
    target
        .mark_migration_step(&hub, "objects", objects.total)
        .await?;
    let _ = std::fs::remove_dir_all(&staging);

    // 3. Git repositories, when asked.
    let repos = source.all_repos().await?;
    let git_line = match git_dir {
        Some(dest) if !same_dir(&dest, &source_repos) => {
            std::fs::create_dir_all(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            let ids: Vec<i64> = repos.iter().map(|r| r.id).collect();
            let (from, to, git_bin) = (
                source_repos.clone(),
                dest.clone(),
                config.git.git_bin.clone(),
            );
            let copied = tokio::task::spawn_blocking(move || {
                let mut progress = Progress::new("migrate repositories");
                let report = crate::repos::relocate::copy_repos(&from, &to, &ids, &git_bin, |r| {
                    progress.update(|| format!("{} copied, {} already there", r.copied, r.present))
                });
                progress.finish();
                report
            })
            .await??;
            target
                .mark_migration_step(&hub, "repos", copied.copied + copied.present)
                .await?;
            format!(
                "{} git repositories copied to {} ({} already there, {:.1} MiB); start the nodes with --git-dir {}",
                copied.copied,
                dest.display(),
                copied.present,
                copied.bytes as f64 / 1048576.0,
                dest.display()
            )
        }
        _ => format!(
            "{} git repositories left in {}: start the nodes with --git-dir {}",
            repos.len(),
            source_repos.display(),
            source_repos.display()
        ),
    };

    // Every node signs URLs and Xet tokens with the key the database holds
    // (`UrlSigner::load`): this hub's own, so that what it signed before stays valid.
    if let Some(key) = crate::signing::read_key_file(data_dir)? {
        target
            .shared_secret(crate::signing::SHARED_KEY_NAME, &key)
            .await?;
    }

    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        hub = %hub,
        tables = COPIED_TABLES.len(),
        rows = rows_total,
        objects = objects.total,
        size_bytes = objects.total_bytes,
        secs,
        "migrate.done"
    );
    println!("Migrated the hub in {} in {secs:.1} s:", data_dir.display());
    println!(
        "  {} tables, {rows_total} rows into {}",
        COPIED_TABLES.len(),
        target_url.redacted()
    );
    println!(
        "  {} objects, {:.1} MiB into {location} ({} copied now, {} already there), each verified",
        objects.total,
        objects.total_bytes as f64 / 1048576.0,
        objects.copied,
        objects.present
    );
    if objects.copied_bytes > 0 && secs > 0.0 {
        println!(
            "  {:.1} MiB/s of objects copied",
            objects.copied_bytes as f64 / 1048576.0 / secs
        );
    }
    println!("  {git_line}");
    println!(
        "Next: start each node with --database (TROVE_DATABASE) set to the target and --storage '{}'; every node signs URLs with this hub's key, now in that database.",
        args.storage,
    );
    source.close().await;
    target.close().await;
    Ok(())
}

/// A name for the hub in `data_dir`, stable across runs and distinct between hubs: a hash
/// of its URL-signing key (32 random bytes made at its first start), never the key itself.
fn hub_identity(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("secret.key");
    let key = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (a hub that has served once has it): is {} a Trove data dir?",
            path.display(),
            data_dir.display()
        )
    })?;
    let mut hash = Sha256::new();
    hash.update(b"trove hub identity\0");
    hash.update(&key);
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
