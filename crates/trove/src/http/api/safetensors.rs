//! `GET /api/models/{repo}/safetensors-metadata/{index file}` (E18,
//! `get_sharded_safetensors_metadata`): the index and every shard's header in one answer,
//! read on `main` with range reads.

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, RepoAt, TypeParam};
use crate::repos::index::snapshot;
use crate::repos::safetensors::{read_header, read_index, shards_of_index};
use crate::repos::{resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trove_types::{DEFAULT_BRANCH, RepoType};

/// The `{*path}` of the route: the index file.
#[derive(Deserialize)]
pub struct IndexPath {
    path: String,
}

/// The index and each shard's header, by shard file name.
#[derive(Serialize)]
pub struct ShardedMetadata {
    index: Value,
    headers: Map<String, Value>,
}

/// Other repository types answer 501 before the repository is looked up.
pub async fn sharded_metadata(
    State(state): State<AppState>,
    ApiPath(t): ApiPath<TypeParam>,
    ApiPath(IndexPath { path }): ApiPath<IndexPath>,
    repo_at: ApiResult<RepoAt>,
) -> ApiResult<Json<ShardedMetadata>> {
    if t.repo_type()? != RepoType::Model {
        return Err(ApiError::NotImplemented(
            "safetensors metadata is served for models only".into(),
        ));
    }
    let RepoAt { repo, caller } = repo_at?;
    repo.require_content(&caller)?;
    let commit = with_git(&state, &repo, |git| resolve(git, DEFAULT_BRANCH)).await?;
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
    Ok(Json(ShardedMetadata { index, headers }))
}
