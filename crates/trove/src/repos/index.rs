//! The search index of a repository: its card, tags, files and safetensors parameter counts
//! at the head of `main`, derived from git and written to the database.
//!
//! Every write path calls [`reindex_repo`] after it moves a ref (API commits, repository
//! creation, pushes); a start-up job indexes repositories that never were. Reindexing never
//! fails the write that triggered it: problems are logged, and card problems are stored as
//! warnings shown on the repo.

use super::card::{
    Card, FileFacts, FrontMatter, Meta, card_from_parse, derive_tags, hidden_facets,
    parse_front_matter,
};
use super::safetensors::{self, Summary};
use super::{RepoRef, read_git, with_git};
use crate::context::Context;
use crate::error::ApiResult;
use serde_json::{Map, Value, json};
use std::time::Duration;
use trove_db::{CardParse, IndexUpdate, Repo};
use trove_git::{Entry, EntryKind};
use trove_types::{GitOid, RepoType};

/// README.md and config.json larger than this are not read.
const MAX_CARD_FILE: u64 = 1 << 20;
/// Repositories indexed per batch by the start-up job.
const BACKFILL_BATCH: u32 = 100;
/// How often download and trending counters roll over.
const ROLLING_PERIOD: Duration = Duration::from_secs(3600);

/// What a commit holds that the index needs, read from git in one go.
pub struct Snapshot {
    pub commit: GitOid,
    pub commit_time_unix: i64,
    pub files: Vec<Entry>,
    pub readme: Option<Readme>,
    pub config_json: Option<Vec<u8>>,
}

/// The README.md of a commit, not read yet: its front matter is parsed once per blob and
/// stored ([`front_matter`]).
pub enum Readme {
    /// A regular file small enough to read.
    Blob(GitOid),
    /// Why it is not read (too large).
    Unreadable(String),
}

/// Reads the snapshot of `commit` (blocking git work off the async threads).
pub async fn snapshot(state: &Context, repo: &RepoRef, commit: GitOid) -> ApiResult<Snapshot> {
    read_git(state, repo, move |git| {
        let info = git.commit_info(&commit)?;
        let files: Vec<Entry> = git
            .list_tree(&commit, "", true)?
            .unwrap_or_default()
            .into_iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
            .collect();
        let small_regular = |path: &str| {
            files.iter().find_map(|e| match &e.kind {
                EntryKind::File {
                    blob,
                    size,
                    lfs: None,
                } if e.path == path => Some((blob.clone(), *size)),
                EntryKind::File { lfs: Some(_), .. } if e.path == path => None,
                _ => None,
            })
        };
        let readme = match small_regular("README.md") {
            Some((_, size)) if size > MAX_CARD_FILE => Some(Readme::Unreadable(format!(
                "README.md is {size} bytes; metadata is read from cards up to 1 MiB"
            ))),
            Some((blob, _)) => Some(Readme::Blob(blob)),
            None => None,
        };
        let config_json = match small_regular("config.json") {
            Some((blob, size)) if size <= MAX_CARD_FILE => Some(git.read_blob(&blob)?),
            _ => None,
        };
        Ok(Snapshot {
            commit,
            commit_time_unix: info.time_unix,
            files,
            readme,
            config_json,
        })
    })
    .await
}

/// Everything derived from a snapshot.
pub struct Analysis {
    pub card: Card,
    pub tags: Vec<String>,
    pub facets: Vec<String>,
    /// Card and file problems, for the repo's warning.
    pub warnings: Vec<String>,
    /// `None` when not asked for, or when the repo has no safetensors weights.
    pub safetensors: Option<Summary>,
    pub config: Option<Value>,
}

/// Derives card data, tags and (when `with_safetensors`) parameter counts from a snapshot.
pub async fn analyze(
    state: &Context,
    repo: &RepoRef,
    snap: &Snapshot,
    with_safetensors: bool,
) -> ApiResult<Analysis> {
    let mut warnings = Vec::new();
    let parsed = match &snap.readme {
        Some(Readme::Blob(blob)) => front_matter(state, repo, blob).await?,
        Some(Readme::Unreadable(problem)) => {
            warnings.push(problem.clone());
            Ok(None)
        }
        None => Ok(None),
    };
    let card = card_from_parse(repo.repo_type, parsed);
    warnings.extend(card.warnings.iter().cloned());
    let facts = FileFacts::from_paths(repo.repo_type, snap.files.iter().map(|e| e.path.as_str()));
    let tags = derive_tags(&card, &facts);
    let mut facets = tags.clone();
    facets.extend(hidden_facets(&card));
    let safetensors = if with_safetensors && repo.repo_type == RepoType::Model {
        match safetensors::summarize(state, repo, &snap.files).await? {
            Some(Ok(summary)) => Some(summary),
            Some(Err(e)) => {
                warnings.push(format!("safetensors metadata unavailable: {e}"));
                None
            }
            None => None,
        }
    } else {
        None
    };
    let config = snap.config_json.as_deref().and_then(config_summary);
    Ok(Analysis {
        card,
        tags,
        facets,
        warnings,
        safetensors,
        config,
    })
}

/// The front matter of a README.md blob, parsed by its first reader (the reindex of the
/// commit that brought it, for `main`) and stored, so that reads never parse YAML.
async fn front_matter(state: &Context, repo: &RepoRef, blob: &GitOid) -> ApiResult<FrontMatter> {
    let repo_id = repo.repo.id;
    if let Some(stored) = state.db.card_parse(repo_id, blob.as_str()).await? {
        match from_stored(stored) {
            Some(parsed) => return Ok(parsed),
            None => tracing::warn!(
                repo.id = repo_id,
                blob = %blob,
                "stored card parse is not a JSON object; parsing again"
            ),
        }
    }
    let to_read = blob.clone();
    let parsed = with_git(state, repo, move |git| {
        let bytes = git.read_blob(&to_read)?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => parse_front_matter(&text),
            Err(_) => Err("README.md is not UTF-8 text".to_owned()),
        })
    })
    .await?;
    let stored = CardParse {
        data_json: parsed.as_ref().ok().and_then(Option::as_ref).map(json_text),
        warning: parsed.as_ref().err().cloned(),
    };
    // The parse is derived data: failing to keep it costs a parse later, not this read.
    if let Err(e) = state
        .db
        .save_card_parse(repo_id, blob.as_str(), &stored)
        .await
    {
        tracing::warn!(repo.id = repo_id, error = %e, "could not store a card parse");
    }
    Ok(parsed)
}

/// A stored parse back as a [`FrontMatter`]; `None` if its JSON is not an object.
fn from_stored(stored: CardParse) -> Option<FrontMatter> {
    if let Some(warning) = stored.warning {
        return Some(Err(warning));
    }
    match stored.data_json {
        None => Some(Ok(None)),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Some(Ok(Some(map))),
            _ => None,
        },
    }
}

/// The part of config.json the Hub shows as `config`.
fn config_summary(bytes: &[u8]) -> Option<Value> {
    let Ok(Value::Object(config)) = serde_json::from_slice::<Value>(bytes) else {
        return None;
    };
    let mut out = Map::new();
    for key in ["architectures", "model_type"] {
        if let Some(v) = config.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Some(Value::Object(out))
}

/// Re-derives the index entry of `repo` from the head of its `main` branch. Call it after
/// any ref move; concurrent calls for one repository are serialised so the last to run
/// always reads the newest head.
pub async fn reindex_repo(state: &Context, repo: &Repo) -> ApiResult<()> {
    let _guard = state.lock_repo_index(repo.id).await?;
    let repo = RepoRef::for_server(state, repo);
    let head = with_git(state, &repo, |git| {
        Ok(git.resolve_revision(&format!("refs/heads/{}", trove_types::DEFAULT_BRANCH))?)
    })
    .await?;
    let Some(head) = head else {
        tracing::warn!(
            repo.id = repo.repo.id,
            "reindex: the repo has no main branch"
        );
        return Ok(());
    };
    let snap = snapshot(state, &repo, head).await?;
    let analysis = analyze(state, &repo, &snap, true).await?;
    let update = index_update(&snap, &analysis);
    let written = state.db.write_repo_index(repo.repo.id, &update).await?;
    tracing::debug!(
        repo.id = repo.repo.id,
        commit = %snap.commit,
        tags = analysis.tags.len(),
        warnings = analysis.warnings.len(),
        written,
        "repo indexed"
    );
    Ok(())
}

/// [`reindex_repo`] for write paths: a failure is logged, never returned, because the write
/// itself already succeeded.
pub async fn reindex_after_write(state: &Context, repo: &Repo) {
    if let Err(e) = reindex_repo(state, repo).await {
        tracing::warn!(repo.id = repo.id, error = %e, "reindex failed; the next write to main retries");
    }
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn index_update(snap: &Snapshot, a: &Analysis) -> IndexUpdate {
    let (pipeline_tag, library_name, sdk) = match &a.card.meta {
        Meta::Model(m) => (m.pipeline_tag.clone(), m.library_name.clone(), None),
        Meta::Space(s) => (None, None, s.sdk.clone()),
        Meta::Dataset(_) => (None, None, None),
    };
    let siblings: Vec<&str> = snap.files.iter().map(|e| e.path.as_str()).collect();
    let used_storage: u64 = snap
        .files
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File { size, .. } => *size,
            EntryKind::Dir { .. } => 0,
        })
        .sum();
    IndexUpdate {
        sha: snap.commit.to_string(),
        last_modified_ms: snap.commit_time_unix.saturating_mul(1000),
        pipeline_tag,
        library_name,
        sdk,
        tags_json: json_text(&a.tags),
        facets: a.facets.clone(),
        card_data_json: a.card.data.as_ref().map(json_text),
        card_warnings_json: json_text(&a.warnings),
        siblings_json: json_text(&siblings),
        used_storage: i64::try_from(used_storage).unwrap_or(i64::MAX),
        safetensors_json: a.safetensors.as_ref().map(json_text),
        params_total: a
            .safetensors
            .as_ref()
            .map(|s| i64::try_from(s.total).unwrap_or(i64::MAX)),
        config_json: a.config.as_ref().map(json_text),
    }
}

/// The `safetensors` JSON value of a summary.
pub fn safetensors_value(s: &Summary) -> Value {
    json!({ "parameters": s.parameters, "total": s.total })
}

/// Background jobs of the index: index repositories never indexed (created before this
/// version, or whose reindex failed), then roll the download and trending counters over
/// every hour. Both are idempotent.
pub fn spawn_jobs(state: Context) {
    let (db, node) = (state.db.clone(), state.node.clone());
    // On several nodes, one runs them: the one holding the index lease.
    tokio::spawn(crate::cluster::run_while_leased(
        db,
        node,
        crate::cluster::leases::INDEX,
        move || {
            let state = state.clone();
            async move { run_jobs(&state).await }
        },
    ));
}

async fn run_jobs(state: &Context) {
    backfill(state).await;
    let mut tick = tokio::time::interval(ROLLING_PERIOD);
    loop {
        tick.tick().await;
        let today = crate::clock::now_ms() / 86_400_000;
        match state.db.refresh_rolling_counters(today).await {
            Ok(changed) => tracing::info!(repos = changed, "index.counters_rolled"),
            Err(e) => tracing::warn!(error = %e, "index.counters_roll_failed"),
        }
    }
}

async fn backfill(state: &Context) {
    let mut after_id = 0;
    loop {
        let repos = match state.db.repos_never_indexed(after_id, BACKFILL_BATCH).await {
            Ok(repos) => repos,
            Err(e) => {
                tracing::warn!(error = %e, "index.backfill_failed");
                return;
            }
        };
        let Some(last) = repos.last() else {
            break;
        };
        after_id = last.id;
        for repo in repos {
            if let Err(e) = reindex_repo(state, &repo).await {
                tracing::warn!(repo.id = repo.id, error = %e, "index.backfill_repo_failed");
            }
        }
    }
    if let Err(e) = state.db.optimize().await {
        tracing::warn!(error = %e, "index.optimize_failed");
    }
}
