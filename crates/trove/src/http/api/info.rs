//! `GET /api/{T}/{repo}` and `GET /api/{T}/{repo}/revision/{rev}`: model/dataset/space info,
//! with counters from the search index and card data, tags and safetensors counts derived
//! from the requested commit.

use crate::auth::Caller;
use crate::clock::{format_ms, format_secs};
use crate::error::ApiResult;
use crate::http::extract::{ApiPath, QueryParams, repo_type_from_plural};
use crate::repos::card::Meta;
use crate::repos::index::{analyze, safetensors_value, snapshot};
use crate::repos::{find_readable, resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use trove_git::EntryKind;
use trove_types::{LFS_POINTER_MAX_LEN, RepoType};

pub async fn info(
    state: State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): ApiPath<(String, String, String)>,
    query: QueryParams,
) -> ApiResult<Response> {
    build(state, caller, (t, ns, name, "main".to_owned()), query).await
}

pub async fn info_at_revision(
    state: State<AppState>,
    caller: Caller,
    ApiPath(params): ApiPath<(String, String, String, String)>,
    query: QueryParams,
) -> ApiResult<Response> {
    build(state, caller, params, query).await
}

async fn build(
    State(state): State<AppState>,
    caller: Caller,
    (t, ns, name, rev): (String, String, String, String),
    query: QueryParams,
) -> ApiResult<Response> {
    let repo_type = repo_type_from_plural(&t)?;
    let repo = find_readable(&state, &caller, repo_type, &ns, &name).await?;
    let files_metadata = query.flag("blobs");
    let expand: Vec<String> = query.all("expand").into_iter().map(str::to_owned).collect();
    let wants = |p: &str| expand.is_empty() || expand.iter().any(|e| e == p);

    let commit = with_git(&state, &repo, move |git| resolve(git, &rev)).await?;
    let snap = snapshot(&state, &repo, commit).await?;
    let indexed = state.db.repo_index(repo.repo.id).await?;
    // The index holds the parameter counts of main's head; other commits are read live.
    let indexed_here = indexed
        .as_ref()
        .is_some_and(|i| i.sha.as_deref() == Some(snap.commit.as_str()));
    let analysis = analyze(&state, &repo, &snap, wants("safetensors") && !indexed_here).await?;

    let mut out = Map::new();
    let id = format!("{}/{}", repo.repo.namespace, repo.repo.name);
    out.insert("_id".into(), json!(format!("{}", repo.repo.id)));
    out.insert("id".into(), json!(id));
    out.insert("author".into(), json!(repo.repo.namespace));
    out.insert("sha".into(), json!(snap.commit.to_string()));
    out.insert(
        "lastModified".into(),
        json!(format_secs(snap.commit_time_unix)),
    );
    out.insert(
        "createdAt".into(),
        json!(format_ms(repo.repo.created_at_ms)),
    );
    out.insert("private".into(), json!(repo.repo.private));
    out.insert(
        "gated".into(),
        repo.repo
            .gated
            .hub_value()
            .map_or(json!(false), |g| json!(g)),
    );
    out.insert("disabled".into(), json!(false));
    let counters = indexed.as_ref();
    if repo_type != RepoType::Space {
        out.insert(
            "downloads".into(),
            json!(counters.map_or(0, |i| i.downloads)),
        );
        out.insert(
            "downloadsAllTime".into(),
            json!(counters.map_or(0, |i| i.downloads_all_time)),
        );
    }
    out.insert("likes".into(), json!(counters.map_or(0, |i| i.likes)));
    out.insert(
        "trendingScore".into(),
        json!(counters.map_or(0, |i| i.trending_score)),
    );
    out.insert("tags".into(), json!(analysis.tags));
    match &analysis.card.meta {
        Meta::Model(m) => {
            if let Some(v) = &m.library_name {
                out.insert("library_name".into(), json!(v));
            }
            if let Some(v) = &m.pipeline_tag {
                out.insert("pipeline_tag".into(), json!(v));
            }
        }
        Meta::Space(s) => {
            if let Some(v) = &s.sdk {
                out.insert("sdk".into(), json!(v));
            }
        }
        Meta::Dataset(_) => {}
    }
    if let Some(card) = &analysis.card.data {
        if repo_type == RepoType::Model
            && let Some(v) = card.get("model-index")
        {
            out.insert("model-index".into(), v.clone());
        }
        out.insert("cardData".into(), Value::Object(card.clone()));
    }
    if repo_type == RepoType::Model {
        let safetensors = if indexed_here {
            counters
                .and_then(|i| i.safetensors_json.as_deref())
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        } else {
            analysis.safetensors.as_ref().map(safetensors_value)
        };
        if let Some(v) = safetensors {
            out.insert("safetensors".into(), v);
        }
        if let Some(v) = &analysis.config {
            out.insert("config".into(), v.clone());
        }
    }
    if repo_type == RepoType::Space {
        out.insert(
            "runtime".into(),
            json!({ "stage": "NO_APP_FILE", "hardware": { "current": null, "requested": null } }),
        );
    }
    if !analysis.warnings.is_empty() {
        out.insert("cardWarnings".into(), json!(analysis.warnings));
    }
    let mut used_storage: u64 = 0;
    let siblings: Vec<Value> = snap
        .files
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { blob, size, lfs } => {
                used_storage += size;
                let mut s = Map::new();
                s.insert("rfilename".into(), json!(e.path));
                if files_metadata {
                    s.insert("size".into(), json!(size));
                    s.insert("blobId".into(), json!(blob.to_string()));
                    if let Some(lfs) = lfs {
                        s.insert(
                            "lfs".into(),
                            json!({
                                "sha256": lfs.pointer.oid.to_string(),
                                "size": lfs.pointer.size,
                                "pointerSize": lfs.pointer_size.min(LFS_POINTER_MAX_LEN as u64),
                            }),
                        );
                    }
                }
                Some(Value::Object(s))
            }
            EntryKind::Dir { .. } => None,
        })
        .collect();
    out.insert("siblings".into(), Value::Array(siblings));
    out.insert("usedStorage".into(), json!(used_storage));

    if !expand.is_empty() {
        // With `expand`, the Hub returns the id plus exactly the requested properties.
        out.retain(|k, _| k == "_id" || k == "id" || expand.iter().any(|e| e == k));
    }
    let mut response = Json(Value::Object(out)).into_response();
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
