//! `GET /api/{T}/{repo}` and `GET /api/{T}/{repo}/revision/{rev}`: model/dataset/space info,
//! with counters from the search index and card data, tags and safetensors counts derived
//! from the requested commit.

use super::repo_json::{GatedJson, RepoJson, Sibling, SiblingLfs};
use crate::clock::{format_ms, format_secs};
use crate::error::ApiResult;
use crate::http::extract::{ApiPath, QueryParams, RepoAt, RevParam};
use crate::inference::{Described, is_top_level_gguf};
use crate::repos::card::Meta;
use crate::repos::index::{analyze, safetensors_value, snapshot};
use crate::repos::{RepoRef, read_git, resolve};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use trove_git::EntryKind;
use trove_types::{LFS_POINTER_MAX_LEN, RepoType, Revision};

/// `GET /api/{T}/{repo}`: the repository at its default branch.
pub async fn info(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    query: QueryParams,
) -> ApiResult<Response> {
    build(&state, &repo, Revision::default_branch(), &query).await
}

/// `GET /api/{T}/{repo}/revision/{rev}`.
pub async fn info_at_revision(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    query: QueryParams,
) -> ApiResult<Response> {
    build(&state, &repo, rev, &query).await
}

async fn build(
    state: &AppState,
    repo: &RepoRef,
    rev: Revision,
    query: &QueryParams,
) -> ApiResult<Response> {
    let repo_type = repo.repo_type;
    let files_metadata = query.flag("blobs");
    let expand: Vec<String> = query.all("expand").into_iter().map(str::to_owned).collect();
    let wants = |p: &str| expand.is_empty() || expand.iter().any(|e| e == p);

    let commit = read_git(state, repo, move |git| resolve(git, rev.as_str())).await?;
    let snap = snapshot(state, repo, commit).await?;
    let indexed = state.db.repo_index(repo.repo.id).await?;
    // The index holds the parameter counts of main's head; other commits are read live.
    let indexed_here = indexed
        .as_ref()
        .is_some_and(|i| i.sha.as_deref() == Some(snap.commit.as_str()));
    let analysis = analyze(state, repo, &snap, wants("safetensors") && !indexed_here).await?;
    let counters = indexed.as_ref();
    let is_model = repo_type == RepoType::Model;

    let mut out = RepoJson {
        object_id: repo.repo.id.to_string(),
        id: format!("{}/{}", repo.repo.namespace, repo.repo.name),
        author: Some(repo.repo.namespace.clone()),
        sha: Some(snap.commit.to_string()),
        last_modified: Some(format_secs(snap.commit_time_unix)),
        created_at: Some(format_ms(repo.repo.created_at_ms)),
        private: Some(repo.repo.private),
        gated: Some(GatedJson::from(repo.repo.gated)),
        disabled: Some(false),
        likes: Some(counters.map_or(0, |i| i.likes)),
        trending_score: Some(counters.map_or(0, |i| i.trending_score)),
        tags: Some(Value::from(analysis.tags.clone())),
        ..RepoJson::default()
    };
    if repo_type != RepoType::Space {
        out.downloads = Some(counters.map_or(0, |i| i.downloads));
        out.downloads_all_time = Some(counters.map_or(0, |i| i.downloads_all_time));
    }
    match &analysis.card.meta {
        Meta::Model(m) => {
            out.library_name = m.library_name.clone();
            out.pipeline_tag = m.pipeline_tag.clone();
        }
        Meta::Space(s) => out.sdk = s.sdk.clone(),
        Meta::Dataset(_) => {}
    }
    if let Some(card) = &analysis.card.data {
        if is_model {
            out.model_index = card.get("model-index").cloned();
        }
        out.card_data = Some(Value::Object(card.clone()));
    }
    if is_model {
        out.safetensors = if indexed_here {
            counters
                .and_then(|i| i.safetensors_json.as_deref())
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        } else {
            analysis.safetensors.as_ref().map(safetensors_value)
        };
        out.config = analysis.config.clone();
    }
    if repo_type == RepoType::Space {
        let (host, subdomain) = crate::spaces::app_host(&state.config, &repo.repo);
        out.host = Some(host);
        out.subdomain = subdomain;
        out.runtime = Some(super::repo_json::Runtime::current(
            &state.spaces,
            repo.repo.id,
        ));
    }
    if !analysis.warnings.is_empty() {
        out.card_warnings = Some(analysis.warnings.clone());
    }
    let has_gguf = snap.files.iter().any(|e| is_top_level_gguf(&e.path));
    let mut used_storage: u64 = 0;
    let siblings: Vec<Sibling> = snap
        .files
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { blob, size, lfs } => {
                used_storage += size;
                let mut sibling = Sibling::name_only(e.path);
                if files_metadata {
                    sibling.size = Some(size);
                    sibling.blob_id = Some(blob.to_string());
                    sibling.lfs = lfs.map(|lfs| SiblingLfs {
                        sha256: lfs.pointer.oid.to_string(),
                        size: lfs.pointer.size,
                        pointer_size: lfs.pointer_size.min(LFS_POINTER_MAX_LEN as u64),
                    });
                }
                Some(sibling)
            }
            EntryKind::Dir { .. } => None,
        })
        .collect();
    out.siblings = Some(siblings);
    out.used_storage = Some(used_storage);

    if is_model && expand.iter().any(|e| e == "inference") {
        out.inference = state.inference.listed_status(
            &repo.repo,
            Described {
                card_data: analysis.card.data.as_ref(),
                pipeline_tag: out.pipeline_tag.as_deref(),
                config: analysis.config.as_ref(),
                has_gguf,
            },
        );
    }
    if !expand.is_empty() {
        // With `expand`, the Hub returns the id plus exactly the requested properties.
        out.retain(|p| expand.iter().any(|e| e == p));
    }
    let mut response = Json(out).into_response();
    if let Some(warning) = card_warning_header(&analysis.warnings) {
        response.headers_mut().insert("x-hf-warning", warning);
    }
    Ok(response)
}

/// `X-HF-Warning: card; …`: the client prints it once per process, so a bad card shows up
/// wherever the repo is looked at.
fn card_warning_header(warnings: &[String]) -> Option<HeaderValue> {
    if warnings.is_empty() {
        return None;
    }
    HeaderValue::from_str(&crate::error::header_text(&format!(
        "card; {}",
        warnings.join(" / ")
    )))
    .ok()
}
