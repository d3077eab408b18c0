//! A model repository at one revision, as inference sees it: its card's task and switch,
//! its `config.json`, which weights run (safetensors, or the GGUF file chosen), their size,
//! and the bytes of every file a model needs, read through the hub's own content path (git
//! blobs, LFS objects, Xet files alike).
//!
//! Which GGUF file: the one the request names (`?gguf_file=`, or a chat request's `model`
//! ending in `.gguf`), else the one the card names (`gguf_file:` in its front matter, the
//! name transformers gives the argument), else — when the repository has no safetensors
//! weights with a `config.json` — its only `.gguf` file at the top level. Several without a
//! choice is a 400 that lists them.

use crate::context::Context;
use crate::error::{ApiError, ApiResult, Refusal};
use crate::repos::card::{Meta, read_card};
use crate::repos::content::read_range;
use crate::repos::safetensors::{self, INDEX_FILE, SINGLE_FILE};
use crate::repos::{RepoRef, read_git, resolve};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use trove_git::{Entry, EntryKind};
use trove_infer::{GGUF_MAX_HEADER_BYTES, ModelFiles};
use trove_types::{GitOid, RepoType};

/// JSON side files larger than this are refused (real tokenizers are a few MiB).
const MAX_JSON_FILE: u64 = 64 << 20;
/// Cards larger than this are read only this far (the front matter is at the top).
const MAX_CARD: u64 = 1 << 20;
/// The first read of a GGUF header; a larger header is read again, four times as far each
/// time, up to the GGUF header budget.
const GGUF_FIRST_READ: u64 = 1 << 20;

/// What inference knows of a repository at a commit before loading anything.
pub struct Source {
    pub repo: RepoRef,
    pub commit: GitOid,
    located: Arc<Located>,
}

/// What a commit's files say to inference: all of it follows from the commit (its tree,
/// the files' contents) and the request's GGUF choice, so it is remembered by those
/// ([`LOCATED`]) and a request after the first costs one revision resolve.
struct Located {
    pipeline_tag: Option<String>,
    /// `inference: false` in the card.
    disabled: bool,
    /// `config.json`; an empty object for a GGUF model without one.
    config: Value,
    /// Bytes the weights should take once loaded: safetensors parameters × 4 (loaded as
    /// f32), or what the GGUF's header says (0 when there are no weights).
    estimated_bytes: u64,
    /// The GGUF file the weights come from, when the model runs from one.
    gguf: Option<String>,
    /// The top-level entries of the commit's tree, by name.
    files: HashMap<String, EntryKind>,
}

impl Source {
    pub fn repo_id(&self) -> String {
        format!("{}/{}", self.repo.repo.namespace, self.repo.repo.name)
    }

    /// The card's `pipeline_tag`.
    pub fn pipeline_tag(&self) -> Option<&str> {
        self.located.pipeline_tag.as_deref()
    }

    /// `inference: false` in the card.
    pub fn disabled(&self) -> bool {
        self.located.disabled
    }

    /// `config.json`; an empty object for a GGUF model without one.
    pub fn config(&self) -> &Value {
        &self.located.config
    }

    /// Bytes the weights should take once loaded: safetensors parameters × 4 (loaded as
    /// f32), or what the GGUF's header says (0 when there are no weights).
    pub fn estimated_bytes(&self) -> u64 {
        self.located.estimated_bytes
    }

    /// The GGUF file the weights come from, when the model runs from one.
    pub fn gguf(&self) -> Option<&str> {
        self.located.gguf.as_deref()
    }

    fn files(&self) -> &HashMap<String, EntryKind> {
        &self.located.files
    }
}

/// Which [`Located`]: the repository (its content store holds the files' bytes), the
/// commit, and the GGUF file the request named.
type LocatedKey = (i64, GitOid, Option<String>);

/// Commits already located. A branch or tag is resolved on every request — refs move, and
/// the next request after a push must run the new commit — but a commit's tree never
/// changes, so the listing and the facts read from its files are kept. The resolve (and
/// every git read here) runs on a repository handle kept between reads (`read_git`), not a
/// fresh open: such a handle reads the ref's file at each lookup and looks for new packs
/// when an object is missing, so it sees a push as an open would, and what it keeps — the
/// open's work, parsed objects by id — cannot go stale (opening and resolving were 15% of
/// the hub's CPU under a stream of single-sentence requests to a tiny encoder). Without this every
/// request re-listed the root tree and looked the card, `config.json` and the weights' sizes
/// up again (a tenth of the hub's CPU under a stream of small requests).
static LOCATED: Remembered<LocatedKey, Arc<Located>> = Remembered::new(1024);

/// Reads what inference needs to decide about `repo` at `revision`; `gguf_file` is the
/// request's choice of a GGUF file.
pub async fn locate(
    state: &Context,
    repo: RepoRef,
    revision: &str,
    gguf_file: Option<&str>,
) -> ApiResult<Source> {
    let revision = revision.to_owned();
    let commit = read_git(state, &repo, move |git| resolve(git, &revision)).await?;
    let key = (repo.repo.id, commit.clone(), gguf_file.map(str::to_owned));
    if let Some(located) = LOCATED.get(&key) {
        return Ok(Source {
            repo,
            commit,
            located,
        });
    }
    let located = Arc::new(read_located(state, &repo, &commit, gguf_file).await?);
    LOCATED.insert(key, located.clone());
    Ok(Source {
        repo,
        commit,
        located,
    })
}

/// Lists the commit's root tree and reads what inference needs from its files.
async fn read_located(
    state: &Context,
    repo: &RepoRef,
    commit: &GitOid,
    gguf_file: Option<&str>,
) -> ApiResult<Located> {
    let listed = commit.clone();
    let root = read_git(state, repo, move |git| {
        Ok(git.list_tree(&listed, "", false)?.unwrap_or_default())
    })
    .await?;
    let files: HashMap<String, EntryKind> = root
        .iter()
        .map(|e| (e.path.clone(), e.kind.clone()))
        .collect();
    let model_id = format!("{}/{}", repo.repo.namespace, repo.repo.name);
    let CardFacts {
        pipeline_tag,
        disabled,
        gguf: card_gguf,
    } = match files.get("README.md") {
        Some(entry) => card_facts(state, repo, entry).await?,
        None => CardFacts::default(),
    };
    let config = match files.get("config.json") {
        Some(entry) => Some(config_json(state, repo, entry).await?),
        None => None,
    };
    let safetensors =
        config.is_some() && (files.contains_key(SINGLE_FILE) || files.contains_key(INDEX_FILE));
    let gguf = choose_gguf(
        &model_id,
        &files,
        gguf_file,
        card_gguf.as_deref(),
        safetensors,
    )?;
    let (config, estimated_bytes) = match (&gguf, config) {
        (Some(path), config) => {
            let entry = files.get(path).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("a chosen GGUF file left the listing"))
            })?;
            let facts = gguf_header(state, repo, path, entry).await?;
            (
                config.unwrap_or_else(|| Value::Object(Default::default())),
                facts,
            )
        }
        (None, Some(config)) => (config, safetensors_bytes(state, repo, &root).await?),
        (None, None) => {
            return Err(broken(format!(
                "Model {model_id} has no config.json and no GGUF file: it cannot be run"
            )));
        }
    };
    Ok(Located {
        pipeline_tag,
        disabled,
        config,
        estimated_bytes,
        gguf,
        files,
    })
}

/// The GGUF file a model runs from, if any (the rule is in the module's documentation).
fn choose_gguf(
    model_id: &str,
    files: &HashMap<String, EntryKind>,
    requested: Option<&str>,
    card: Option<&str>,
    safetensors: bool,
) -> ApiResult<Option<String>> {
    let mut ggufs: Vec<&str> = files
        .iter()
        .filter(|(path, kind)| {
            path.to_ascii_lowercase().ends_with(".gguf") && matches!(kind, EntryKind::File { .. })
        })
        .map(|(path, _)| path.as_str())
        .collect();
    ggufs.sort_unstable();
    let named = |name: &str, by: &str| -> ApiResult<Option<String>> {
        if ggufs.contains(&name) {
            Ok(Some(name.to_owned()))
        } else {
            Err(ApiError::refused(
                Refusal::InvalidRequest,
                format!(
                    "Model {model_id} has no GGUF file {name:?} ({by}); its GGUF files: [{}]",
                    ggufs.join(", ")
                ),
            ))
        }
    };
    if let Some(name) = requested {
        return named(name, "named by the request");
    }
    if let Some(name) = card {
        return named(name, "named by `gguf_file` in its card");
    }
    match ggufs.as_slice() {
        _ if safetensors => Ok(None),
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        several => Err(ApiError::refused(
            Refusal::InvalidRequest,
            format!(
                "Model {model_id} has several GGUF files ({}): name one with ?gguf_file= in the \
             request or `gguf_file:` in the model card",
                several.join(", ")
            ),
        )),
    }
}

/// Facts read from files, by the blobs that name their content (for an LFS file its
/// pointer, which holds the SHA-256): they depend on the bytes only, so they hold in every
/// repository and never go stale. Without them every request re-opened and re-read the
/// card, `config.json` and the safetensors headers (through the Xet reconstruction for a
/// Xet-stored file) before anything else — the larger part of a small model's request.
/// Bounded: emptied when `kept` entries are reached.
struct Remembered<K, V> {
    facts: Mutex<Option<HashMap<K, V>>>,
    kept: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> Remembered<K, V> {
    const fn new(kept: usize) -> Self {
        Remembered {
            facts: Mutex::new(None),
            kept,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.facts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|f| f.get(key).cloned())
    }

    fn insert(&self, key: K, value: V) {
        let mut facts = self.facts.lock().unwrap_or_else(PoisonError::into_inner);
        let facts = facts.get_or_insert_with(HashMap::new);
        if facts.len() >= self.kept {
            facts.clear();
        }
        facts.insert(key, value);
    }
}

/// What a model card says to inference.
#[derive(Clone, Default)]
struct CardFacts {
    pipeline_tag: Option<String>,
    /// `inference: false`.
    disabled: bool,
    /// `gguf_file:`.
    gguf: Option<String>,
}

static CARDS: Remembered<GitOid, CardFacts> = Remembered::new(4096);
static CONFIGS: Remembered<GitOid, Value> = Remembered::new(1024);
/// Estimated bytes by the blobs of every safetensors file and index at the top level.
static SAFETENSORS_BYTES: Remembered<Vec<GitOid>, u64> = Remembered::new(4096);

fn blob_of(entry: &EntryKind) -> Option<&GitOid> {
    match entry {
        EntryKind::File { blob, .. } => Some(blob),
        _ => None,
    }
}

/// Whether a model card's `inference` value (its metadata's, if any) is `false`: the Hub's
/// switch that turns off the inference API and the page's widget.
pub fn card_turns_inference_off(inference: Option<&Value>) -> bool {
    inference == Some(&Value::Bool(false))
}

async fn card_facts(state: &Context, repo: &RepoRef, entry: &EntryKind) -> ApiResult<CardFacts> {
    if let Some(facts) = blob_of(entry).and_then(|b| CARDS.get(b)) {
        return Ok(facts);
    }
    let bytes = read_range(state, repo, entry, 0, MAX_CARD)
        .await?
        .unwrap_or_default();
    let card = read_card(RepoType::Model, &String::from_utf8_lossy(&bytes));
    let disabled = card_turns_inference_off(card.data.as_ref().and_then(|d| d.get("inference")));
    let gguf = card
        .data
        .as_ref()
        .and_then(|d| d.get("gguf_file"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let pipeline_tag = match card.meta {
        Meta::Model(m) => m.pipeline_tag,
        _ => None,
    };
    let facts = CardFacts {
        pipeline_tag,
        disabled,
        gguf,
    };
    if let Some(blob) = blob_of(entry) {
        CARDS.insert(blob.clone(), facts.clone());
    }
    Ok(facts)
}

async fn config_json(state: &Context, repo: &RepoRef, entry: &EntryKind) -> ApiResult<Value> {
    if let Some(config) = blob_of(entry).and_then(|b| CONFIGS.get(b)) {
        return Ok(config);
    }
    let config = read_json(state, repo, "config.json", entry).await?;
    if let Some(blob) = blob_of(entry) {
        CONFIGS.insert(blob.clone(), config.clone());
    }
    Ok(config)
}

/// Mask tokens found, by the blobs of `tokenizer_config.json` and `tokenizer.json` (a
/// model page shows its widget on every view; a tokenizer is read once per content).
static MASK_TOKENS: Remembered<(Option<GitOid>, Option<GitOid>), Option<String>> =
    Remembered::new(1024);

/// The mask token of the fill-mask model whose root folder is `root`, by the rule the model
/// runs with (`trove_infer::mask_token`): `tokenizer_config.json`'s `mask_token`, else
/// `[MASK]` or `<mask>`, whichever `tokenizer.json` has. `None` when neither says (the
/// request would fail to load the model) or the files cannot be read.
pub async fn mask_token(state: &Context, repo: &RepoRef, root: &[Entry]) -> Option<String> {
    let entry = |path: &str| root.iter().find(|e| e.path == path).map(|e| &e.kind);
    let (config, tokenizer) = (entry("tokenizer_config.json"), entry("tokenizer.json"));
    let key = (
        config.and_then(blob_of).cloned(),
        tokenizer.and_then(blob_of).cloned(),
    );
    if let Some(found) = MASK_TOKENS.get(&key) {
        return found;
    }
    let config = match config {
        Some(entry) => Some(
            read_json(state, repo, "tokenizer_config.json", entry)
                .await
                .ok()?,
        ),
        None => None,
    };
    let from_config = trove_infer::mask_token(config.as_ref(), |_| false);
    let found = match (from_config, tokenizer) {
        (Some(token), _) => Some(token),
        (None, Some(entry)) => {
            let tokenizer = read_json(state, repo, "tokenizer.json", entry).await.ok()?;
            trove_infer::mask_token(None, |t| trove_infer::tokenizer_json_has(&tokenizer, t))
        }
        (None, None) => None,
    };
    MASK_TOKENS.insert(key, found.clone());
    found
}

/// The memory safetensors weights will take once loaded (0 without weights), from their
/// headers' parameter counts.
async fn safetensors_bytes(state: &Context, repo: &RepoRef, root: &[Entry]) -> ApiResult<u64> {
    let mut blobs: Vec<GitOid> = root
        .iter()
        .filter(|e| e.path.ends_with(".safetensors") || e.path == INDEX_FILE)
        .filter_map(|e| blob_of(&e.kind).cloned())
        .collect();
    blobs.sort_unstable();
    if let Some(bytes) = SAFETENSORS_BYTES.get(&blobs) {
        return Ok(bytes);
    }
    let parameters = match safetensors::summarize(state, repo, root).await? {
        Some(Ok(summary)) => summary.total,
        Some(Err(e)) => {
            return Err(broken(format!("cannot read the weights: {e}")));
        }
        None => 0,
    };
    let bytes = trove_infer::estimated_bytes(parameters);
    SAFETENSORS_BYTES.insert(blobs, bytes);
    Ok(bytes)
}

/// What the headers of GGUF files already read said (the memory their weights take), by the
/// blob that names the content (for an LFS file its pointer, which holds the SHA-256): the
/// answer depends on the bytes only, so it holds in every repository and never goes stale.
/// Without it every request re-read a header of up to 16 MiB (a large vocabulary) before
/// anything else. Bounded: emptied when [`GGUF_FACTS_KEPT`] entries are reached.
static GGUF_FACTS: LazyLock<Mutex<HashMap<GitOid, u64>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// GGUF headers remembered at most.
const GGUF_FACTS_KEPT: usize = 4096;

fn remembered_gguf(blob: &GitOid) -> Option<u64> {
    GGUF_FACTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(blob)
        .copied()
}

fn remember_gguf(blob: GitOid, memory_bytes: u64) {
    let mut facts = GGUF_FACTS.lock().unwrap_or_else(PoisonError::into_inner);
    if facts.len() >= GGUF_FACTS_KEPT {
        facts.clear();
    }
    facts.insert(blob, memory_bytes);
}

/// The memory a GGUF file's weights will take, from its header: remembered, or read — as
/// far as it goes, within the header budget — and checked.
async fn gguf_header(
    state: &Context,
    repo: &RepoRef,
    path: &str,
    entry: &EntryKind,
) -> ApiResult<u64> {
    let EntryKind::File { blob, .. } = entry else {
        return Err(broken(format!("{path} is a folder")));
    };
    if let Some(memory_bytes) = remembered_gguf(blob) {
        return Ok(memory_bytes);
    }
    let memory_bytes = read_gguf_header(state, repo, path, entry).await?;
    remember_gguf(blob.clone(), memory_bytes);
    Ok(memory_bytes)
}

/// Reads a GGUF file's header — as far as it goes, within the header budget — and checks it;
/// the memory its weights will take.
async fn read_gguf_header(
    state: &Context,
    repo: &RepoRef,
    path: &str,
    entry: &EntryKind,
) -> ApiResult<u64> {
    let EntryKind::File { size, lfs, .. } = entry else {
        return Err(broken(format!("{path} is a folder")));
    };
    let size = lfs.as_ref().map_or(*size, |l| l.pointer.size);
    let mut want = GGUF_FIRST_READ.min(size);
    loop {
        let head = read_range(state, repo, entry, 0, want)
            .await?
            .ok_or_else(|| broken(format!("{path}: its content is not stored on this server")))?;
        match trove_infer::inspect_gguf(&head, size) {
            Ok(Some(facts)) => return Ok(facts.memory_bytes),
            Ok(None) => {
                let next = want.saturating_mul(4).min(size).min(GGUF_MAX_HEADER_BYTES);
                if next <= want {
                    return Err(broken(format!(
                        "{path}: GGUF: the header does not end within {want} bytes"
                    )));
                }
                want = next;
            }
            Err(e) => return Err(broken(format!("{path}: {e}"))),
        }
    }
}

/// Reads every file the model needs into memory.
pub async fn read_files(state: &Context, source: &Source) -> ApiResult<ModelFiles> {
    let repo = &source.repo;
    let tokenizer = match source.files().get("tokenizer.json") {
        Some(entry) => read_whole(state, repo, "tokenizer.json", entry, MAX_JSON_FILE).await?,
        None if source.gguf().is_some() => {
            return Err(broken(
                "the model has no tokenizer.json: this hub runs a GGUF model with the \
                 repository's tokenizer.json, not the vocabulary inside the GGUF file",
            ));
        }
        None => {
            return Err(broken("the model has no tokenizer.json: it cannot be run"));
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
                read_git(state, repo, move |git| Ok(git.entry_at(&commit, &lookup)?)).await?;
            match entry {
                Some(entry) => Some(read_json(state, repo, &path, &entry.kind).await?),
                None => None,
            }
        }
        None => None,
    };
    if let Some(path) = source.gguf() {
        let entry = source.files().get(path).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("a chosen GGUF file left the listing"))
        })?;
        let gguf = read_whole(state, repo, path, entry, u64::MAX).await?;
        return Ok(ModelFiles {
            config: source.config().clone(),
            tokenizer,
            tokenizer_config,
            st_modules: None,
            st_pooling: None,
            weights: Vec::new(),
            gguf: Some(gguf),
        });
    }
    let mut weights = Vec::new();
    for path in weight_files(state, source).await? {
        let Some(entry) = source.files().get(&path) else {
            return Err(broken(format!("{path}, named by {INDEX_FILE}, is missing")));
        };
        weights.push(read_whole(state, repo, &path, entry, u64::MAX).await?);
    }
    if weights.is_empty() {
        return Err(broken(
            "the model has no safetensors weights (model.safetensors): it cannot be run",
        ));
    }
    Ok(ModelFiles {
        config: source.config().clone(),
        tokenizer,
        tokenizer_config,
        st_modules,
        st_pooling,
        weights,
        gguf: None,
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
    if let Some(entry) = source.files().get(INDEX_FILE) {
        let index = read_json(state, &source.repo, INDEX_FILE, entry).await?;
        let shards = safetensors::shards_of_index(&index).map_err(|e| broken(e.to_string()))?;
        return Ok(shards.into_iter().collect());
    }
    Ok(if source.files().contains_key(SINGLE_FILE) {
        vec![SINGLE_FILE.to_owned()]
    } else {
        Vec::new()
    })
}

async fn optional_json(state: &Context, source: &Source, path: &str) -> ApiResult<Option<Value>> {
    match source.files().get(path) {
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
    serde_json::from_slice(&bytes).map_err(|e| broken(format!("{path} is not valid JSON: {e}")))
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
        return Err(broken(format!("{path} is a folder")));
    };
    let size = lfs.as_ref().map_or(*size, |l| l.pointer.size);
    if size > limit {
        return Err(broken(format!(
            "{path} is {size} bytes, more than the {limit} read for inference"
        )));
    }
    read_range(state, repo, entry, 0, size)
        .await?
        .ok_or_else(|| broken(format!("{path}: its content is not stored on this server")))
}

/// The repository's files do not make a model this hub can run.
fn broken(message: impl Into<String>) -> ApiError {
    ApiError::refused(Refusal::ModelLoadFailed, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gguf_header_is_remembered_by_its_blob_and_the_memory_stays_bounded() {
        let oid = |n: usize| GitOid::parse(&format!("{n:040x}")).expect("oid");
        // Far from the first ids, so no other test's blob is taken for one of these.
        let first = oid(1 << 40);
        assert_eq!(remembered_gguf(&first), None);
        remember_gguf(first.clone(), 123);
        assert_eq!(remembered_gguf(&first), Some(123));
        for n in 0..GGUF_FACTS_KEPT {
            remember_gguf(oid((1 << 41) + n), n as u64);
        }
        let kept = GGUF_FACTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert!(kept <= GGUF_FACTS_KEPT, "{kept} entries kept");
        let last = oid((1 << 41) + GGUF_FACTS_KEPT - 1);
        assert_eq!(remembered_gguf(&last), Some(GGUF_FACTS_KEPT as u64 - 1));
    }

    fn listing(paths: &[&str]) -> HashMap<String, EntryKind> {
        let blob = GitOid::parse(&"a".repeat(40)).expect("oid");
        paths
            .iter()
            .map(|p| {
                let kind = if p.ends_with('/') {
                    EntryKind::Dir { tree: blob.clone() }
                } else {
                    EntryKind::File {
                        blob: blob.clone(),
                        size: 1,
                        lfs: None,
                    }
                };
                (p.trim_end_matches('/').to_owned(), kind)
            })
            .collect()
    }

    fn error(r: ApiResult<Option<String>>) -> String {
        match r {
            Err(ApiError::InferenceRefused {
                refusal: Refusal::InvalidRequest,
                message,
            }) => message,
            other => panic!("not a 400: {:?}", other.map_err(|e| e.to_string())),
        }
    }

    #[test]
    fn the_request_then_the_card_then_the_only_file_choose_the_gguf() {
        let one = listing(&["m.Q8_0.gguf", "tokenizer.json", "dir.gguf/"]);
        let two = listing(&["a.gguf", "b.GGUF", "tokenizer.json"]);
        let none = listing(&["x"]);
        let choose = |files, request, card, st| choose_gguf("a/b", files, request, card, st);
        assert_eq!(
            choose(&one, None, None, false).expect("ok"),
            Some("m.Q8_0.gguf".into())
        );
        assert_eq!(choose(&one, None, None, true).expect("ok"), None);
        assert_eq!(
            choose(&one, Some("m.Q8_0.gguf"), None, true).expect("ok"),
            Some("m.Q8_0.gguf".into()),
            "a named file runs even beside safetensors"
        );
        assert_eq!(choose(&none, None, None, false).expect("ok"), None);
        let several = error(choose(&two, None, None, false));
        assert!(
            several.contains("several GGUF files (a.gguf, b.GGUF)"),
            "{several}"
        );
        assert_eq!(
            choose(&two, None, Some("b.GGUF"), false).expect("ok"),
            Some("b.GGUF".into())
        );
        assert_eq!(
            choose(&two, Some("a.gguf"), Some("b.GGUF"), false).expect("ok"),
            Some("a.gguf".into()),
            "the request wins over the card"
        );
        let missing = error(choose(&two, Some("c.gguf"), None, false));
        assert!(missing.contains("no GGUF file \"c.gguf\""), "{missing}");
        let from_card = error(choose(&two, None, Some("tokenizer.json"), false));
        assert!(from_card.contains("`gguf_file` in its card"), "{from_card}");
        let folder = error(choose(&one, Some("dir.gguf"), None, false));
        assert!(folder.contains("no GGUF file"), "{folder}");
    }

    #[test]
    fn remembered_facts_are_bounded() {
        let facts: Remembered<u32, &str> = Remembered::new(2);
        assert_eq!(facts.get(&1), None);
        facts.insert(1, "a");
        facts.insert(2, "b");
        assert_eq!((facts.get(&1), facts.get(&2)), (Some("a"), Some("b")));
        facts.insert(3, "c");
        assert_eq!(facts.get(&1), None, "emptied at the bound");
        assert_eq!(facts.get(&3), Some("c"));
    }
}
