//! `GET /api/{T}/{repo}` and `GET /api/{T}/{repo}/revision/{rev}`: model/dataset/space info.

use super::{ApiPath, QueryParams, repo_type_from_plural};
use crate::auth::Caller;
use crate::clock::{format_ms, format_secs};
use crate::error::{ApiError, ApiResult};
use crate::repos::card::{derived_tags, parse_card};
use crate::repos::{find_readable, resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use trove_git::EntryKind;
use trove_types::{LFS_POINTER_MAX_LEN, RepoType};

/// README.md files larger than this are not parsed for card data.
const MAX_README_BYTES: u64 = 1 << 20;

pub async fn info(
    state: State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): ApiPath<(String, String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    build(state, caller, (t, ns, name, "main".to_owned()), query).await
}

pub async fn info_at_revision(
    state: State<AppState>,
    caller: Caller,
    ApiPath(params): ApiPath<(String, String, String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    build(state, caller, params, query).await
}

async fn build(
    State(state): State<AppState>,
    caller: Caller,
    (t, ns, name, rev): (String, String, String, String),
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let repo_type = repo_type_from_plural(&t)?;
    let repo = find_readable(&state, &caller, repo_type, &ns, &name).await?;
    let files_metadata = query.flag("blobs");
    let expand: Vec<String> = query.all("expand").into_iter().map(str::to_owned).collect();

    let snapshot = with_git(&state, &repo, move |git| {
        let commit = resolve(git, &rev)?;
        let info = git.commit_info(&commit).map_err(ApiError::internal)?;
        let files = git
            .list_tree(&commit, "", true)
            .map_err(ApiError::internal)?
            .unwrap_or_default();
        let readme = files.iter().find_map(|e| match &e.kind {
            EntryKind::File {
                blob,
                size,
                lfs: None,
            } if e.path == "README.md" && *size <= MAX_README_BYTES => Some(blob.clone()),
            _ => None,
        });
        let readme = match readme {
            Some(blob) => Some(git.read_blob(&blob).map_err(ApiError::internal)?),
            None => None,
        };
        Ok((commit, info, files, readme))
    })
    .await?;
    let (commit, commit_info, files, readme) = snapshot;

    let card = readme
        .as_deref()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| parse_card(text).ok().flatten());

    let mut out = Map::new();
    let id = format!("{}/{}", repo.repo.namespace, repo.repo.name);
    out.insert("_id".into(), json!(format!("{}", repo.repo.id)));
    out.insert("id".into(), json!(id));
    out.insert("author".into(), json!(repo.repo.namespace));
    out.insert("sha".into(), json!(commit.to_string()));
    out.insert(
        "lastModified".into(),
        json!(format_secs(commit_info.time_unix)),
    );
    out.insert(
        "createdAt".into(),
        json!(format_ms(repo.repo.created_at_ms)),
    );
    out.insert("private".into(), json!(repo.repo.private));
    out.insert("gated".into(), json!(false));
    out.insert("disabled".into(), json!(false));
    out.insert("downloads".into(), json!(0));
    out.insert("downloadsAllTime".into(), json!(0));
    out.insert("likes".into(), json!(0));
    out.insert(
        "tags".into(),
        json!(card.as_ref().map(derived_tags).unwrap_or_default()),
    );
    if let Some(card) = &card {
        if repo_type == RepoType::Model {
            for key in ["library_name", "pipeline_tag"] {
                if let Some(v) = card.get(key).filter(|v| v.is_string()) {
                    out.insert(key.into(), v.clone());
                }
            }
        }
        if repo_type == RepoType::Space {
            if let Some(v) = card.get("sdk").filter(|v| v.is_string()) {
                out.insert("sdk".into(), v.clone());
            }
        }
        out.insert("cardData".into(), Value::Object(card.clone()));
    }
    if repo_type == RepoType::Space {
        out.insert(
            "runtime".into(),
            json!({ "stage": "NO_APP_FILE", "hardware": { "current": null, "requested": null } }),
        );
    }
    let mut used_storage: u64 = 0;
    let siblings: Vec<Value> = files
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
    Ok(Json(Value::Object(out)))
}
