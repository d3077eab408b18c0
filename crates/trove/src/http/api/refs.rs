//! Refs listing and branch/tag management: `GET /refs`, `POST|DELETE /branch/{branch}`,
//! `POST /tag/{rev}` (the segment is the revision being tagged) and `DELETE /tag/{tag}`.

use crate::auth::Caller;
use crate::clock::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams, repo_type_from_plural};
use crate::repos::lifecycle::system_signature;
use crate::repos::{find_readable, resolve, with_git};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use trove_git::{GitError, Signature};
use trove_types::BranchName;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): ApiPath<(String, String, String)>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    let include_prs = query.flag("include_prs");
    let refs = with_git(&state, &repo, |git| git.refs().map_err(ApiError::internal)).await?;
    let item = |name: String, full: String, target: String| json!({ "name": name, "ref": full, "targetCommit": target });
    let mut out = json!({
        "branches": refs.branches.into_iter().map(|(n, c)| item(n.clone(), format!("refs/heads/{n}"), c.to_string())).collect::<Vec<_>>(),
        "tags": refs.tags.into_iter().map(|(n, c)| item(n.clone(), format!("refs/tags/{n}"), c.to_string())).collect::<Vec<_>>(),
        "converts": refs.converts.into_iter().map(|(n, c)| item(n.clone(), format!("refs/convert/{n}"), c.to_string())).collect::<Vec<_>>(),
    });
    if include_prs {
        out["pullRequests"] = Value::Array(
            refs.pull_requests
                .into_iter()
                .map(|(n, c)| {
                    item(
                        format!("refs/pr/{n}"),
                        format!("refs/pr/{n}"),
                        c.to_string(),
                    )
                })
                .collect(),
        );
    }
    Ok(Json(out))
}

/// An optional JSON body: the client may send none, `null` or an object.
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: Option<T> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?;
    Ok(value.unwrap_or_default())
}

#[derive(Deserialize, Default)]
pub struct CreateBranch {
    #[serde(rename = "startingPoint")]
    starting_point: Option<String>,
}

fn signature_of(caller: &Caller) -> Signature {
    caller
        .user()
        .map(|u| Signature {
            name: u.name.clone(),
            email: u
                .email
                .clone()
                .unwrap_or_else(|| format!("{}@users.noreply.trove.local", u.name)),
        })
        .unwrap_or_else(system_signature)
}

fn ref_error(e: GitError, what: &str) -> ApiError {
    match e {
        GitError::AlreadyExists { .. } => ApiError::Conflict {
            message: format!("{what} already exists"),
            url: None,
        },
        GitError::RefNotFound { .. } => ApiError::RevisionNotFound {
            revision: what.to_owned(),
        },
        other => ApiError::internal(other),
    }
}

pub async fn create_branch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, branch)): ApiPath<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    repo.require_write(&caller)?;
    let body: CreateBranch = optional_json(&body)?;
    let branch = BranchName::parse(&branch).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let start = body.starting_point.unwrap_or_else(|| "main".to_owned());
    with_git(&state, &repo, move |git| {
        let target = resolve(git, &start)?;
        git.create_branch(&branch, &target)
            .map_err(|e| ref_error(e, &format!("Branch {}", branch.as_str())))
    })
    .await?;
    Ok(Json(json!({})))
}

pub async fn delete_branch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, branch)): ApiPath<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    repo.require_write(&caller)?;
    if branch == "main" {
        return Err(ApiError::Forbidden(
            "The default branch 'main' cannot be deleted".into(),
        ));
    }
    with_git(&state, &repo, move |git| {
        git.delete_branch(&branch)
            .map_err(|e| ref_error(e, &branch))
    })
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize, Default)]
pub struct CreateTag {
    tag: String,
    message: Option<String>,
}

pub async fn create_tag(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, rev)): ApiPath<(String, String, String, String)>,
    ApiJson(body): ApiJson<CreateTag>,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    repo.require_write(&caller)?;
    let tag = BranchName::parse(&body.tag).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tagger = signature_of(&caller);
    let message = body.message.filter(|m| !m.is_empty());
    with_git(&state, &repo, move |git| {
        let target = resolve(git, &rev)?;
        git.create_tag(
            &tag,
            &target,
            message.as_deref(),
            &tagger,
            now_secs() as i64,
        )
        .map_err(|e| ref_error(e, &format!("Tag {}", tag.as_str())))
    })
    .await?;
    Ok(Json(json!({})))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, tag)): ApiPath<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let repo = find_readable(&state, &caller, repo_type_from_plural(&t)?, &ns, &name).await?;
    repo.require_write(&caller)?;
    with_git(&state, &repo, move |git| {
        git.delete_tag(&tag).map_err(|e| ref_error(e, &tag))
    })
    .await?;
    Ok(Json(json!({})))
}
