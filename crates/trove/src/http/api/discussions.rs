//! Discussions and pull requests (E37–E45): `/api/{T}/{repo}/discussions[/{num}[/…]]`, in
//! the JSON the client's `Discussion`, `DiscussionWithDetails` and event classes read.

use super::repo_json::RepoName;
use crate::accounts::profile::{avatar_url, display_name};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams, RepoAt};
use crate::markdown;
use crate::repos::RepoRef;
use crate::repos::discussions::{
    self as use_case, default_base_ref, event_id_text, parse_event_id,
};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use trove_db::{CommentVersion, Discussion, DiscussionFilter, DiscussionStatus, Event, EventKind};

/// Discussions per page of the listing (the client pages with `p`).
const PAGE: u32 = 50;

/// A user as discussions name them; [`complete_authors`] adds the full name and avatar.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorJson {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fullname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
}

fn author_json(name: Option<&str>) -> Option<AuthorJson> {
    name.map(|name| AuthorJson {
        name: name.to_owned(),
        kind: "user",
        fullname: None,
        avatar_url: None,
    })
}

/// Gives each author its full name and avatar, with one lookup for all of them.
async fn complete_authors(state: &AppState, authors: Vec<&mut AuthorJson>) -> ApiResult<()> {
    let mut names: Vec<String> = authors.iter().map(|a| a.name.clone()).collect();
    names.sort_unstable();
    names.dedup();
    let users = state.db.users_by_names(&names).await?;
    for author in authors {
        let user = users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(&author.name));
        author.fullname = Some(user.map_or_else(|| author.name.clone(), display_name));
        author.avatar_url = Some(avatar_url(state.public_url(), &author.name));
    }
    Ok(())
}

impl EventJson {
    /// Every author the event names: its own, and for a comment its editors'.
    fn authors_mut(&mut self) -> Vec<&mut AuthorJson> {
        let mut out: Vec<&mut AuthorJson> = self.author.iter_mut().collect();
        if let EventData::Comment(c) = &mut self.data {
            out.extend(c.latest.author.iter_mut());
            out.extend(c.history.iter_mut().filter_map(|h| h.author.as_mut()));
        }
        out
    }

    async fn completed(mut self, state: &AppState) -> ApiResult<Self> {
        complete_authors(state, self.authors_mut()).await?;
        Ok(self)
    }
}

/// A discussion as the client's `Discussion` reads it; `author` is absent once the
/// account is deleted.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionJson {
    num: i64,
    title: String,
    status: &'static str,
    is_pull_request: bool,
    created_at: String,
    pinned: bool,
    repo: RepoName,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<AuthorJson>,
}

impl DiscussionJson {
    fn new(repo: &RepoRef, d: &Discussion) -> Self {
        DiscussionJson {
            num: d.num,
            title: d.title.clone(),
            status: d.status.as_str(),
            is_pull_request: d.is_pull_request,
            created_at: format_ms(d.created_at_ms),
            pinned: false,
            repo: RepoName {
                name: format!("{}/{}", repo.repo.namespace, repo.repo.name),
                kind: repo.repo_type.as_str(),
            },
            author: author_json(d.author.as_deref()),
        }
    }
}

/// An event of a discussion, as the client's `DiscussionEvent` subclasses read it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    created_at: String,
    data: EventData,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<AuthorJson>,
}

/// The `data` of an event, by its `type`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum EventData {
    Comment(CommentData),
    StatusChange { status: &'static str },
    Commit { subject: String, oid: String },
    TitleChange { from: String, to: String },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentData {
    edited: bool,
    hidden: bool,
    latest: LatestText,
    num_edits: usize,
    history: Vec<EarlierText>,
}

/// The current text of a comment, raw and rendered.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestText {
    raw: String,
    html: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<AuthorJson>,
}

/// An earlier text of an edited comment.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EarlierText {
    raw: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<AuthorJson>,
}

impl From<&CommentVersion> for EarlierText {
    fn from(version: &CommentVersion) -> Self {
        EarlierText {
            raw: version.raw.clone(),
            updated_at: format_ms(version.created_at_ms),
            author: author_json(version.author.as_deref()),
        }
    }
}

impl From<&Event> for EventJson {
    fn from(event: &Event) -> Self {
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
                let history: Vec<EarlierText> = history.iter().map(EarlierText::from).collect();
                (
                    "comment",
                    EventData::Comment(CommentData {
                        edited: edited.is_some(),
                        hidden: *hidden,
                        latest: LatestText {
                            raw: raw.clone(),
                            html: markdown::render(raw),
                            updated_at: format_ms(updated_at),
                            author: author_json(editor),
                        },
                        num_edits: history.len(),
                        history,
                    }),
                )
            }
            EventKind::StatusChange { status } => (
                "status-change",
                EventData::StatusChange {
                    status: status.as_str(),
                },
            ),
            EventKind::Commit { subject, oid } => (
                "commit",
                EventData::Commit {
                    subject: subject.clone(),
                    oid: oid.clone(),
                },
            ),
            EventKind::TitleChange { from, to } => (
                "title-change",
                EventData::TitleChange {
                    from: from.clone(),
                    to: to.clone(),
                },
            ),
        };
        EventJson {
            id: event_id_text(event.id),
            kind,
            created_at: format_ms(event.created_at_ms),
            data,
            author: author_json(event.author.as_deref()),
        }
    }
}

/// A page of the listing. `numClosedDiscussions` is not counted: `null`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionList {
    discussions: Vec<DiscussionJson>,
    count: u64,
    start: u32,
    num_closed_discussions: Option<u64>,
}

/// A discussion with its events, and for a pull request its changes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscussionDetails {
    #[serde(flatten)]
    discussion: DiscussionJson,
    events: Vec<EventJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Changes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files_with_conflicts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

/// What a pull request merges into, and once merged, the commit it made.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    base: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    merge_commit_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    new_message: EventJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewStatus {
    new_status: EventJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTitle {
    new_title: EventJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedComment {
    updated_comment: EventJson,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Merged {
    merge_commit_id: String,
}

/// The `{num}` of `/discussions/{num}`.
#[derive(Deserialize)]
pub struct NumParam {
    num: String,
}

/// The `{num}` and `{id}` of `/discussions/{num}/comment/{id}/…`.
#[derive(Deserialize)]
pub struct CommentParam {
    num: String,
    id: String,
}

/// The discussion `num` of `repo`; anything but a positive number is a missing discussion.
async fn discussion(state: &AppState, repo: &RepoRef, num: &str) -> ApiResult<Discussion> {
    let number = num
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("Discussion {num:?} not found")))?;
    use_case::find(state, repo, number).await
}

/// E37 `GET …/discussions?p=&type=&status=&author=`.
pub async fn list(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    query: QueryParams,
) -> ApiResult<Json<DiscussionList>> {
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
    let mut discussions: Vec<DiscussionJson> = items
        .iter()
        .map(|d| DiscussionJson::new(&repo, d))
        .collect();
    complete_authors(
        &state,
        discussions
            .iter_mut()
            .filter_map(|d| d.author.as_mut())
            .collect(),
    )
    .await?;
    Ok(Json(DiscussionList {
        discussions,
        count,
        start,
        num_closed_discussions: None,
    }))
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
    RepoAt { repo, caller }: RepoAt,
    ApiJson(body): ApiJson<NewDiscussionBody>,
) -> ApiResult<Json<DiscussionJson>> {
    let discussion = use_case::open(
        &state,
        &caller,
        &repo,
        &body.title,
        body.description.as_deref().unwrap_or(""),
        body.pull_request,
    )
    .await?;
    let mut json = DiscussionJson::new(&repo, &discussion);
    complete_authors(&state, json.author.iter_mut().collect()).await?;
    Ok(Json(json))
}

/// E39 `GET …/discussions/{num}[?diff=1]`.
pub async fn details(
    State(state): State<AppState>,
    RepoAt { repo, .. }: RepoAt,
    ApiPath(NumParam { num }): ApiPath<NumParam>,
    query: QueryParams,
) -> ApiResult<Json<DiscussionDetails>> {
    let discussion = discussion(&state, &repo, &num).await?;
    let events = state.db.discussion_events(discussion.id).await?;
    let mut body = DiscussionDetails {
        discussion: DiscussionJson::new(&repo, &discussion),
        events: events.iter().map(EventJson::from).collect(),
        changes: None,
        files_with_conflicts: None,
        diff: None,
    };
    let mut authors: Vec<&mut AuthorJson> = body.discussion.author.iter_mut().collect();
    for event in &mut body.events {
        authors.extend(event.authors_mut());
    }
    complete_authors(&state, authors).await?;
    if discussion.is_pull_request {
        let view =
            use_case::pull_request_view(&state, &repo, &discussion, query.flag("diff")).await?;
        body.changes = Some(Changes {
            base: discussion.base_ref.clone().unwrap_or_else(default_base_ref),
            merge_commit_id: discussion.merge_commit.clone(),
        });
        body.files_with_conflicts = Some(view.conflicts);
        body.diff = view.diff;
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
    RepoAt { repo, caller }: RepoAt,
    ApiPath(NumParam { num }): ApiPath<NumParam>,
    ApiJson(body): ApiJson<CommentBody>,
) -> ApiResult<Json<NewMessage>> {
    let discussion = discussion(&state, &repo, &num).await?;
    let event = use_case::comment(&state, &caller, &repo, &discussion, &body.comment).await?;
    Ok(Json(NewMessage {
        new_message: EventJson::from(&event).completed(&state).await?,
    }))
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
    RepoAt { repo, caller }: RepoAt,
    ApiPath(NumParam { num }): ApiPath<NumParam>,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<Json<NewStatus>> {
    let discussion = discussion(&state, &repo, &num).await?;
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
    Ok(Json(NewStatus {
        new_status: EventJson::from(&event).completed(&state).await?,
    }))
}

#[derive(Deserialize, Default)]
pub struct MergeBody {
    #[serde(default)]
    comment: Option<String>,
}

/// E42 `POST …/discussions/{num}/merge` with an optional `{comment}` (or no body at all).
pub async fn merge(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(NumParam { num }): ApiPath<NumParam>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Merged>> {
    let discussion = discussion(&state, &repo, &num).await?;
    let body: MergeBody = if body.iter().all(u8::is_ascii_whitespace) {
        MergeBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))?
    };
    let merged =
        use_case::merge(&state, &caller, &repo, &discussion, body.comment.as_deref()).await?;
    Ok(Json(Merged {
        merge_commit_id: merged.to_string(),
    }))
}

#[derive(Deserialize)]
pub struct TitleBody {
    title: String,
}

/// E43 `POST …/discussions/{num}/title` `{title}`.
pub async fn title(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(NumParam { num }): ApiPath<NumParam>,
    ApiJson(body): ApiJson<TitleBody>,
) -> ApiResult<Json<NewTitle>> {
    let discussion = discussion(&state, &repo, &num).await?;
    let event = use_case::rename(&state, &caller, &repo, &discussion, &body.title).await?;
    Ok(Json(NewTitle {
        new_title: EventJson::from(&event).completed(&state).await?,
    }))
}

#[derive(Deserialize)]
pub struct EditBody {
    content: String,
}

/// E44 `POST …/discussions/{num}/comment/{id}/edit` `{content}`.
pub async fn edit_comment(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(CommentParam { num, id }): ApiPath<CommentParam>,
    ApiJson(body): ApiJson<EditBody>,
) -> ApiResult<Json<UpdatedComment>> {
    let discussion = discussion(&state, &repo, &num).await?;
    let id = parse_event_id(&id)?;
    let event =
        use_case::edit_comment(&state, &caller, &repo, &discussion, id, &body.content).await?;
    Ok(Json(UpdatedComment {
        updated_comment: EventJson::from(&event).completed(&state).await?,
    }))
}

/// E45 `POST …/discussions/{num}/comment/{id}/hide`.
pub async fn hide_comment(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
    ApiPath(CommentParam { num, id }): ApiPath<CommentParam>,
) -> ApiResult<Json<UpdatedComment>> {
    let discussion = discussion(&state, &repo, &num).await?;
    let id = parse_event_id(&id)?;
    let event = use_case::hide_comment(&state, &caller, &repo, &discussion, id).await?;
    Ok(Json(UpdatedComment {
        updated_comment: EventJson::from(&event).completed(&state).await?,
    }))
}
