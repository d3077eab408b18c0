//! A model repository at one revision, as inference sees it: its card's task and switch,
//! its `config.json`, the size of its weights, and the bytes of every file a model needs,
//! read through the hub's own content path (git blobs, LFS objects, Xet files alike).

use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::repos::card::{Meta, read_card};
use crate::repos::content::read_range;
use crate::repos::safetensors::{self, INDEX_FILE, SINGLE_FILE};
use crate::repos::{RepoRef, resolve, with_git};
use serde_json::Value;
use std::collections::HashMap;
use trove_git::{Entry, EntryKind};
use trove_infer::ModelFiles;
use trove_types::{GitOid, RepoType};

/// JSON side files larger than this are refused (real tokenizers are a few MiB).
const MAX_JSON_FILE: u64 = 64 << 20;
/// Cards larger than this are read only this far (the front matter is at the top).
const MAX_CARD: u64 = 1 << 20;

/// What inference knows of a repository at a commit before loading anything.
pub struct Source {
    pub repo: RepoRef,
    pub commit: GitOid,
    pub pipeline_tag: Option<String>,
    /// `inference: false` in the card.
    pub disabled: bool,
    pub config: Value,
    /// Parameters of the safetensors weights (0 when there are none).
    pub parameters: u64,
    files: HashMap<String, EntryKind>,
}

impl Source {
    pub fn repo_id(&self) -> String {
        format!("{}/{}", self.repo.repo.namespace, self.repo.repo.name)
    }
}

/// Reads what inference needs to decide about `repo` at `revision`.
pub async fn locate(state: &Context, repo: RepoRef, revision: &str) -> ApiResult<Source> {
    let revision = revision.to_owned();
    let (commit, root) = with_git(state, &repo, move |git| {
        let commit = resolve(git, &revision)?;
        let root = git.list_tree(&commit, "", false)?.unwrap_or_default();
        Ok((commit, root))
    })
    .await?;
    let files: HashMap<String, EntryKind> = root
        .iter()
        .map(|e| (e.path.clone(), e.kind.clone()))
        .collect();
    let (pipeline_tag, disabled) = match files.get("README.md") {
        Some(entry) => {
            let bytes = read_range(state, &repo, entry, 0, MAX_CARD)
                .await?
                .unwrap_or_default();
            let card = read_card(RepoType::Model, &String::from_utf8_lossy(&bytes));
            let disabled = card
                .data
                .as_ref()
                .and_then(|d| d.get("inference"))
                .is_some_and(|v| v == &Value::Bool(false));
            let tag = match card.meta {
                Meta::Model(m) => m.pipeline_tag,
                _ => None,
            };
            (tag, disabled)
        }
        None => (None, false),
    };
    let Some(config_entry) = files.get("config.json") else {
        return Err(ApiError::BadRequest(format!(
            "Model {}/{} has no config.json: it cannot be run",
            repo.repo.namespace, repo.repo.name
        )));
    };
    let config = read_json(state, &repo, "config.json", config_entry).await?;
    let parameters = match safetensors::summarize(state, &repo, &root).await? {
        Some(Ok(summary)) => summary.total,
        Some(Err(e)) => {
            return Err(ApiError::BadRequest(format!(
                "cannot read the weights: {e}"
            )));
        }
        None => 0,
    };
    Ok(Source {
        repo,
        commit,
        pipeline_tag,
        disabled,
        config,
        parameters,
        files,
    })
}

/// Reads every file the model needs into memory.
pub async fn read_files(state: &Context, source: &Source) -> ApiResult<ModelFiles> {
    let repo = &source.repo;
    let tokenizer = match source.files.get("tokenizer.json") {
        Some(entry) => read_whole(state, repo, "tokenizer.json", entry, MAX_JSON_FILE).await?,
        None => {
            return Err(ApiError::BadRequest(
                "the model has no tokenizer.json: it cannot be run".into(),
            ));
        }
    };
    let tokenizer_config = optional_json(state, source, "tokenizer_config.json").await?;
    let st_modules = optional_json(state, source, "modules.json").await?;
    let st_pooling = match pooling_path(st_modules.as_ref()) {
        Some(dir) => {
            let path = format!("{dir}/config.json");
            let commit = source.commit.clone();
            let lookup = path.clone();
            let entry: Option<Entry> =
                with_git(state, repo, move |git| Ok(git.entry_at(&commit, &lookup)?)).await?;
            match entry {
                Some(entry) => Some(read_json(state, repo, &path, &entry.kind).await?),
                None => None,
            }
        }
        None => None,
    };
    let mut weights = Vec::new();
    for path in weight_files(state, source).await? {
        let Some(entry) = source.files.get(&path) else {
            return Err(ApiError::BadRequest(format!(
                "{path}, named by {INDEX_FILE}, is missing"
            )));
        };
        weights.push(read_whole(state, repo, &path, entry, u64::MAX).await?);
    }
    if weights.is_empty() {
        return Err(ApiError::BadRequest(
            "the model has no safetensors weights (model.safetensors): it cannot be run".into(),
        ));
    }
    Ok(ModelFiles {
        config: source.config.clone(),
        tokenizer,
        tokenizer_config,
        st_modules,
        st_pooling,
        weights,
    })
}

/// The folder of the sentence-transformers pooling module (`1_Pooling`), if any.
fn pooling_path(modules: Option<&Value>) -> Option<String> {
    modules?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("type").and_then(Value::as_str) == Some("sentence_transformers.models.Pooling")
        })
        .and_then(|m| m.get("path"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty() && !p.contains(".."))
        .map(str::to_owned)
}

async fn weight_files(state: &Context, source: &Source) -> ApiResult<Vec<String>> {
    if let Some(entry) = source.files.get(INDEX_FILE) {
        let index = read_json(state, &source.repo, INDEX_FILE, entry).await?;
        let shards = safetensors::shards_of_index(&index)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        return Ok(shards.into_iter().collect());
    }
    Ok(if source.files.contains_key(SINGLE_FILE) {
        vec![SINGLE_FILE.to_owned()]
    } else {
        Vec::new()
    })
}

async fn optional_json(state: &Context, source: &Source, path: &str) -> ApiResult<Option<Value>> {
    match source.files.get(path) {
        Some(entry) => Ok(Some(read_json(state, &source.repo, path, entry).await?)),
        None => Ok(None),
    }
}

async fn read_json(
    state: &Context,
    repo: &RepoRef,
    path: &str,
    entry: &EntryKind,
) -> ApiResult<Value> {
    let bytes = read_whole(state, repo, path, entry, MAX_JSON_FILE).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("{path} is not valid JSON: {e}")))
}

/// A whole file, refused past `limit` bytes.
async fn read_whole(
    state: &Context,
    repo: &RepoRef,
    path: &str,
    entry: &EntryKind,
    limit: u64,
) -> ApiResult<Vec<u8>> {
    let EntryKind::File { size, lfs, .. } = entry else {
        return Err(ApiError::BadRequest(format!("{path} is a folder")));
    };
    let size = lfs.as_ref().map_or(*size, |l| l.pointer.size);
    if size > limit {
        return Err(ApiError::BadRequest(format!(
            "{path} is {size} bytes, more than the {limit} read for inference"
        )));
    }
    read_range(state, repo, entry, 0, size)
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest(format!("{path}: its content is not stored on this server"))
        })
}
