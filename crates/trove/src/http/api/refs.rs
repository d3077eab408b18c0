//! Refs listing and branch/tag management: `GET /refs`, `POST|DELETE /branch/{branch}`,
//! `POST /tag/{rev}` (the segment is the revision being tagged) and `DELETE /tag/{tag}`.

use super::Empty;
use crate::auth::Caller;
use crate::clock::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams, RepoAt, RevParam};
use crate::repos::folders::system_signature;
use crate::repos::{resolve, with_git, write_git};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use trove_git::{GitError, Signature};
use trove_types::{BranchName, DEFAULT_BRANCH, GitOid, Revision};

/// A ref as `list_repo_refs` reads it into a `GitRefInfo`.
#[derive(Serialize)]
pub struct RefJson {
    name: String,
    #[serde(rename = "ref")]
    full: String,
    #[serde(rename = "targetCommit")]
    target_commit: String,
}

impl RefJson {
    fn under(prefix: &str, (name, target): (String, GitOid)) -> Self {
        RefJson {
            full: format!("{prefix}{name}"),
            name,
            target_commit: target.to_string(),
        }
    }
}

/// The refs of a repository; `pullRequests` only with `include_prs`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefsJson {
    branches: Vec<RefJson>,
    tags: Vec<RefJson>,
    converts: Vec<RefJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pull_requests: Option<Vec<RefJson>>,
}

pub async fn list(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    query: QueryParams,
) -> ApiResult<Json<RefsJson>> {
    let include_prs = query.flag("include_prs");
    let refs = with_git(&state, &repo, |git| Ok(git.refs()?)).await?;
    let under = |prefix: &str, refs: Vec<(String, GitOid)>| -> Vec<RefJson> {
        refs.into_iter()
            .map(|r| RefJson::under(prefix, r))
            .collect()
    };
    Ok(Json(RefsJson {
        branches: under("refs/heads/", refs.branches),
        tags: under("refs/tags/", refs.tags),
        converts: under("refs/convert/", refs.converts),
        // A pull request's name is its full ref.
        pull_requests: include_prs.then(|| {
            refs.pull_requests
                .into_iter()
                .map(|(n, c)| RefJson::under("", (format!("refs/pr/{n}"), c)))
                .collect()
        }),
    }))
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
    starting_point: Option<Revision>,
}

/// The `{branch}` of `/branch/{branch}`, checked as git would check it.
#[derive(Deserialize)]
pub struct BranchParam {
    branch: String,
}

/// The `{rev}` of `DELETE /tag/{rev}`: there, the tag's name.
#[derive(Deserialize)]
pub struct TagParam {
    rev: String,
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

/// A conflict names the full ref as the Hub does (`Reference refs/heads/dev already exists`).
fn ref_error(e: GitError, what: &str) -> ApiError {
    match e {
        GitError::AlreadyExists { .. } => ApiError::Conflict {
            message: format!("Reference {what} already exists"),
            url: None,
        },
        GitError::RefNotFound { .. } => ApiError::RevisionNotFound {
            revision: what.to_owned(),
        },
        other => other.into(),
    }
}

pub async fn create_branch(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(BranchParam { branch }): ApiPath<BranchParam>,
    body: Bytes,
) -> ApiResult<Json<Empty>> {
    repo.require_write(&caller)?;
    let body: CreateBranch = optional_json(&body)?;
    let branch = BranchName::parse(&branch).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let start = body.starting_point.unwrap_or_else(Revision::default_branch);
    let event =
        crate::events::Event::ref_created(&repo.repo, &format!("refs/heads/{}", branch.as_str()));
    write_git(&state, &repo, move |git| {
        let target = resolve(git, start.as_str())?;
        git.create_branch(&branch, &target)
            .map_err(|e| ref_error(e, &format!("refs/heads/{}", branch.as_str())))
    })
    .await?;
    state.emit([event]);
    Ok(Json(Empty {}))
}

pub async fn delete_branch(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(BranchParam { branch }): ApiPath<BranchParam>,
) -> ApiResult<Json<Empty>> {
    repo.require_write(&caller)?;
    if branch == DEFAULT_BRANCH {
        return Err(ApiError::Forbidden(format!(
            "Cannot delete refs/heads/{DEFAULT_BRANCH}"
        )));
    }
    let full_ref = format!("refs/heads/{branch}");
    let target = full_ref.clone();
    let old = write_git(&state, &repo, move |git| {
        let old = git.resolve_revision(&target)?;
        git.delete_branch(&branch)
            .map_err(|e| ref_error(e, &branch))?;
        Ok(old)
    })
    .await?;
    state.emit([crate::events::Event::ref_deleted(
        &repo.repo,
        &full_ref,
        old.as_ref(),
    )]);
    Ok(Json(Empty {}))
}

#[derive(Deserialize, Default)]
pub struct CreateTag {
    tag: String,
    message: Option<String>,
}

pub async fn create_tag(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    ApiJson(body): ApiJson<CreateTag>,
) -> ApiResult<Json<Empty>> {
    repo.require_write(&caller)?;
    let tagger = signature_of(&caller);
    let message = body.message.filter(|m| !m.is_empty());
    let tag_ref = write_git(&state, &repo, move |git| {
        // The revision first: a missing one is `RevisionNotFound` whatever the tag's name,
        // as on the Hub.
        let target = resolve(git, rev.as_str())?;
        let tag = BranchName::parse(&body.tag).map_err(|e| ApiError::bad_request(e.to_string()))?;
        git.create_tag(
            &tag,
            &target,
            message.as_deref(),
            &tagger,
            now_secs() as i64,
        )
        .map_err(|e| ref_error(e, &format!("refs/tags/{}", tag.as_str())))?;
        Ok(format!("refs/tags/{}", tag.as_str()))
    })
    .await?;
    let event = crate::events::Event::ref_created(&repo.repo, &tag_ref);
    state.emit([event]);
    Ok(Json(Empty {}))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(TagParam { rev: tag }): ApiPath<TagParam>,
) -> ApiResult<Json<Empty>> {
    repo.require_write(&caller)?;
    let full_ref = format!("refs/tags/{tag}");
    let target = full_ref.clone();
    let old = write_git(&state, &repo, move |git| {
        let old = git.resolve_revision(&target)?;
        git.delete_tag(&tag).map_err(|e| ref_error(e, &tag))?;
        Ok(old)
    })
    .await?;
    let event = crate::events::Event::ref_deleted(&repo.repo, &full_ref, old.as_ref());
    state.emit([event]);
    Ok(Json(Empty {}))
}

#[derive(Deserialize, Default)]
pub struct SquashBody {
    message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SquashAnswer {
    commit_id: String,
}

/// `POST /api/{t}/{ns}/{name}/super-squash/{rev}` (`super_squash_history`): the branch or
/// `refs/pr/N` becomes one commit with the same tree and the body's message.
pub async fn super_squash(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(RevParam { rev }): ApiPath<RevParam>,
    body: Bytes,
) -> ApiResult<Json<SquashAnswer>> {
    let body: SquashBody = optional_json(&body)?;
    let message = body
        .message
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("Super-squash branch '{}'", rev.as_str()));
    let commit =
        crate::repos::commit::super_squash(&state, &caller, &repo, rev.as_str(), &message).await?;
    Ok(Json(SquashAnswer {
        commit_id: commit.as_str().to_owned(),
    }))
}
