//! `GET /api/models/{repo}/safetensors-metadata/{index file}` (E18,
//! `get_sharded_safetensors_metadata`): the index and every shard's header in one answer,
//! read on `main` with range reads.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, repo_type_from_plural};
use crate::repos::index::snapshot;
use crate::repos::safetensors::{read_header, read_index, shards_of_index};
use crate::repos::{find_readable, resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use trove_types::RepoType;

pub async fn sharded_metadata(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, path)): ApiPath<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let repo_type = repo_type_from_plural(&t)?;
    if repo_type != RepoType::Model {
        return Err(ApiError::NotImplemented(
            "safetensors metadata is served for models only".into(),
        ));
    }
    let repo = find_readable(&state, &caller, repo_type, &ns, &name).await?;
    repo.require_content(&caller)?;
    let commit = with_git(&state, &repo, |git| resolve(git, "main")).await?;
    let snap = snapshot(&state, &repo, commit.clone()).await?;
    let find = |p: &str| snap.files.iter().find(|e| e.path == p).map(|e| &e.kind);
    let Some(index_file) = find(&path) else {
        return Err(ApiError::entry_not_found(&path, Some(commit)));
    };
    let unreadable =
        |e: crate::repos::safetensors::HeaderError| ApiError::UnprocessableEntity(e.to_string());
    let index = read_index(&state, &repo, index_file)
        .await?
        .map_err(unreadable)?;
    // Shard names are relative to the index's folder.
    let folder = path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let mut headers = Map::new();
    for shard in shards_of_index(&index).map_err(unreadable)? {
        let full = format!("{folder}{shard}");
        let Some(kind) = find(&full) else {
            return Err(ApiError::entry_not_found(&full, Some(commit)));
        };
        let header = read_header(&state, &repo, &full, kind)
            .await?
            .map_err(unreadable)?;
        headers.insert(shard, Value::Object(header));
    }
    Ok(Json(json!({ "index": index, "headers": headers })))
}
