//! Discussions and pull requests (E37–E45): `/api/{T}/{repo}/discussions[/{num}[/…]]`, in
//! the JSON the client's `Discussion`, `DiscussionWithDetails` and event classes read.

use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams, repo_type_from_plural};
use crate::markdown;
use crate::repos::discussions::{self as use_case, event_id_text, parse_event_id};
use crate::repos::{RepoRef, find_readable};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trove_db::{Discussion, DiscussionFilter, DiscussionStatus, Event, EventKind};

/// Discussions per page of the listing (the client pages with `p`).
const PAGE: u32 = 50;

type RepoPath3 = ApiPath<(String, String, String)>;
type DiscussionPath = ApiPath<(String, String, String, String)>;
type CommentPath = ApiPath<(String, String, String, String, String)>;

fn author_json(name: Option<&str>) -> Option<Value> {
    name.map(|name| json!({ "name": name, "type": "user" }))
}

fn discussion_json(repo: &RepoRef, d: &Discussion) -> Value {
    let mut object = Map::new();
    object.insert("num".into(), json!(d.num));
    object.insert("title".into(), json!(d.title));
    object.insert("status".into(), json!(d.status.as_str()));
    object.insert("isPullRequest".into(), json!(d.is_pull_request));
    object.insert("createdAt".into(), json!(format_ms(d.created_at_ms)));
    object.insert("pinned".into(), json!(false));
    object.insert(
        "repo".into(),
        json!({
            "name": format!("{}/{}", repo.repo.namespace, repo.repo.name),
            "type": repo.repo_type.as_str(),
        }),
    );
    if let Some(author) = author_json(d.author.as_deref()) {
        object.insert("author".into(), author);
    }
    Value::Object(object)
}

fn event_json(event: &Event) -> Value {
    let (kind, data) = match &event.kind {
        EventKind::Comment {
            raw,
            hidden,
            edited,
            history,
        } => {
            let (updated_at, editor) = match edited {
                Some((at, editor)) => (*at, editor.as_deref()),
                None => (event.created_at_ms, event.author.as_deref()),
            };
            let mut latest = json!({
                "raw": raw,
                "html": markdown::render(raw),
                "updatedAt": format_ms(updated_at),
            });
            if let Some(author) = author_json(editor) {
                latest["author"] = author;
            }
            let history: Vec<Value> = history
                .iter()
                .map(|version| {
                    let mut v = json!({
                        "raw": version.raw,
                        "updatedAt": format_ms(version.created_at_ms),
                    });
                    if let Some(author) = author_json(version.author.as_deref()) {
                        v["author"] = author;
                    }
                    v
                })
                .collect();
            (
                "comment",
                json!({
                    "edited": edited.is_some(),
                    "hidden": hidden,
                    "latest": latest,
                    "numEdits": history.len(),
                    "history": history,
                }),
            )
        }
        EventKind::StatusChange { status } => {
            ("status-change", json!({ "status": status.as_str() }))
        }
        EventKind::Commit { subject, oid } => ("commit", json!({ "subject": subject, "oid": oid })),
        EventKind::TitleChange { from, to } => ("title-change", json!({ "from": from, "to": to })),
    };
    let mut object = json!({
        "id": event_id_text(event.id),
        "type": kind,
        "createdAt": format_ms(event.created_at_ms),
        "data": data,
    });
    if let Some(author) = author_json(event.author.as_deref()) {
        object["author"] = author;
    }
    object
}

async fn repo_for(
    state: &AppState,
    caller: &Caller,
    t: &str,
    ns: &str,
    name: &str,
) -> ApiResult<RepoRef> {
    find_readable(state, caller, repo_type_from_plural(t)?, ns, name).await
}

fn parse_num(num: &str) -> ApiResult<i64> {
    num.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("Discussion {num:?} not found")))
}

async fn repo_and_discussion(
    state: &AppState,
    caller: &Caller,
    (t, ns, name, num): &(String, String, String, String),
) -> ApiResult<(RepoRef, Discussion)> {
    let repo = repo_for(state, caller, t, ns, name).await?;
    let discussion = use_case::find(state, &repo, parse_num(num)?).await?;
    Ok((repo, discussion))
}

/// E37 `GET …/discussions?p=&type=&status=&author=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath3,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let repo = repo_for(&state, &caller, &t, &ns, &name).await?;
    let page: u32 = match query.get("p") {
        None => 0,
        Some(p) => p
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid page {p:?}")))?,
    };
    let pull_requests = match query.get("type") {
        None | Some("all") => None,
        Some("pull_request") => Some(true),
        Some("discussion") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid type {other:?}: use all, discussion or pull_request"
            )));
        }
    };
    let open = match query.get("status") {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid status {other:?}: use all, open or closed"
            )));
        }
    };
    let filter = DiscussionFilter {
        pull_requests,
        open,
        author: query.get("author").map(str::to_owned),
    };
    let start = page
        .checked_mul(PAGE)
        .ok_or_else(|| ApiError::bad_request("Page out of range"))?;
    let (items, count) = state
        .db
        .list_discussions(repo.repo.id, &filter, start, PAGE)
        .await?;
    let discussions: Vec<Value> = items.iter().map(|d| discussion_json(&repo, d)).collect();
    Ok(Json(json!({
        "discussions": discussions,
        "count": count,
        "start": start,
        "numClosedDiscussions": Value::Null,
    })))
}

#[derive(Deserialize)]
pub struct NewDiscussionBody {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "pullRequest")]
    pull_request: bool,
}

/// E38 `POST …/discussions` `{title, description, pullRequest}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name)): RepoPath3,
    ApiJson(body): ApiJson<NewDiscussionBody>,
) -> ApiResult<Json<Value>> {
    let repo = repo_for(&state, &caller, &t, &ns, &name).await?;
    let discussion = use_case::open(
        &state,
        &caller,
        &repo,
        &body.title,
        body.description.as_deref().unwrap_or(""),
        body.pull_request,
    )
    .await?;
    Ok(Json(discussion_json(&repo, &discussion)))
}

/// E39 `GET …/discussions/{num}[?diff=1]`.
pub async fn details(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): DiscussionPath,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    let (repo, discussion) = repo_and_discussion(&state, &caller, &path).await?;
    let events = state.db.discussion_events(discussion.id).await?;
    let mut body = discussion_json(&repo, &discussion);
    body["events"] = Value::Array(events.iter().map(event_json).collect());
    if discussion.is_pull_request {
        let view =
            use_case::pull_request_view(&state, &repo, &discussion, query.flag("diff")).await?;
        let mut changes = json!({
            "base": discussion.base_ref.as_deref().unwrap_or("refs/heads/main"),
        });
        if let Some(merge) = &discussion.merge_commit {
            changes["mergeCommitId"] = json!(merge);
        }
        body["changes"] = changes;
        body["filesWithConflicts"] = json!(view.conflicts);
        if let Some(diff) = view.diff {
            body["diff"] = json!(diff);
        }
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct CommentBody {
    comment: String,
}

/// E40 `POST …/discussions/{num}/comment` `{comment}`.
pub async fn comment(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): DiscussionPath,
    ApiJson(body): ApiJson<CommentBody>,
) -> ApiResult<Json<Value>> {
    let (repo, discussion) = repo_and_discussion(&state, &caller, &path).await?;
    let event = use_case::comment(&state, &caller, &repo, &discussion, &body.comment).await?;
    Ok(Json(json!({ "newMessage": event_json(&event) })))
}

#[derive(Deserialize)]
pub struct StatusBody {
    status: String,
    #[serde(default)]
    comment: Option<String>,
}

/// E41 `POST …/discussions/{num}/status` `{status, comment?}`.
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): DiscussionPath,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<Json<Value>> {
    let (repo, discussion) = repo_and_discussion(&state, &caller, &path).await?;
    let status = DiscussionStatus::parse(&body.status)
        .filter(|s| matches!(s, DiscussionStatus::Open | DiscussionStatus::Closed))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid status {:?}: use open or closed",
                body.status
            ))
        })?;
    let event = use_case::change_status(
        &state,
        &caller,
        &repo,
        &discussion,
        status,
        body.comment.as_deref(),
    )
    .await?;
    Ok(Json(json!({ "newStatus": event_json(&event) })))
}

#[derive(Deserialize, Default)]
pub struct MergeBody {
    #[serde(default)]
    comment: Option<String>,
}

/// E42 `POST …/discussions/{num}/merge` with an optional `{comment}` (or no body at all).
pub async fn merge(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): DiscussionPath,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let (repo, discussion) = repo_and_discussion(&state, &caller, &path).await?;
    let body: MergeBody = if body.iter().all(u8::is_ascii_whitespace) {
        MergeBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?
    };
    let merged =
        use_case::merge(&state, &caller, &repo, &discussion, body.comment.as_deref()).await?;
    Ok(Json(json!({ "mergeCommitId": merged.to_string() })))
}

#[derive(Deserialize)]
pub struct TitleBody {
    title: String,
}

/// E43 `POST …/discussions/{num}/title` `{title}`.
pub async fn title(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): DiscussionPath,
    ApiJson(body): ApiJson<TitleBody>,
) -> ApiResult<Json<Value>> {
    let (repo, discussion) = repo_and_discussion(&state, &caller, &path).await?;
    let event = use_case::rename(&state, &caller, &repo, &discussion, &body.title).await?;
    Ok(Json(json!({ "newTitle": event_json(&event) })))
}

#[derive(Deserialize)]
pub struct EditBody {
    content: String,
}

async fn comment_target(
    state: &AppState,
    caller: &Caller,
    (t, ns, name, num, id): (String, String, String, String, String),
) -> ApiResult<(RepoRef, Discussion, i64)> {
    let (repo, discussion) = repo_and_discussion(state, caller, &(t, ns, name, num)).await?;
    Ok((repo, discussion, parse_event_id(&id)?))
}

/// E44 `POST …/discussions/{num}/comment/{id}/edit` `{content}`.
pub async fn edit_comment(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): CommentPath,
    ApiJson(body): ApiJson<EditBody>,
) -> ApiResult<Json<Value>> {
    let (repo, discussion, id) = comment_target(&state, &caller, path).await?;
    let event =
        use_case::edit_comment(&state, &caller, &repo, &discussion, id, &body.content).await?;
    Ok(Json(json!({ "updatedComment": event_json(&event) })))
}

/// E45 `POST …/discussions/{num}/comment/{id}/hide`.
pub async fn hide_comment(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): CommentPath,
) -> ApiResult<Json<Value>> {
    let (repo, discussion, id) = comment_target(&state, &caller, path).await?;
    let event = use_case::hide_comment(&state, &caller, &repo, &discussion, id).await?;
    Ok(Json(json!({ "updatedComment": event_json(&event) })))
}
