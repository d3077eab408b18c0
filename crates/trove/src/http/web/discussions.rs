//! Discussions and pull requests in the browser: `/{repo}/discussions` (filtered by
//! `status` = open | closed | all and `type` = discussion | pull_request | all) and
//! `/{repo}/discussions/{num}` (description, events, comments as sanitized Markdown, a pull
//! request's diff and conflicts) with one form (`POST`, field `action` = comment | close |
//! reopen | merge) whose actions are the API's use cases, so the same people may do them.

use super::csrf::CsrfToken;
use super::head::RepoHead;
use super::history::{FileView, file_views};
use super::{Nav, render, repo_path, section_of};
use crate::auth::{Access, Caller};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, RepoAt};
use crate::markdown;
use crate::repos::discussions::{self as use_case, default_base_ref, pr_ref};
use crate::repos::{RepoRef, browse};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use trove_db::{DiscussionFilter, DiscussionStatus, EventKind};

/// Discussions per list page.
const PAGE: u32 = 50;

pub struct Filter {
    pub label: &'static str,
    pub href: String,
    pub active: bool,
}

pub struct Row {
    pub num: i64,
    pub title: String,
    pub href: String,
    pub status: &'static str,
    pub pull_request: bool,
    pub author: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "discussions.html")]
pub struct ListPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub statuses: Vec<Filter>,
    pub kinds: Vec<Filter>,
    pub rows: Vec<Row>,
    pub total: u64,
}

fn when(ms: i64) -> String {
    format_ms(ms)
        .get(..16)
        .unwrap_or_default()
        .replace('T', " ")
}

pub async fn list(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    query: QueryParams,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let status = query.get("status").unwrap_or("open");
        let kind = query.get("type").unwrap_or("all");
        let open = match status {
            "open" => Some(true),
            "closed" => Some(false),
            "all" => None,
            other => return Err(ApiError::bad_request(format!("Invalid status {other:?}"))),
        };
        let pull_requests = match kind {
            "pull_request" => Some(true),
            "discussion" => Some(false),
            "all" => None,
            other => return Err(ApiError::bad_request(format!("Invalid type {other:?}"))),
        };
        let filter = DiscussionFilter {
            pull_requests,
            open,
            author: None,
        };
        let (items, total) = state
            .db
            .list_discussions(repo.repo.id, &filter, 0, PAGE)
            .await?;
        let base = repo_path(&repo);
        let link = |s: &str, k: &str| format!("{base}/discussions?status={s}&type={k}");
        let statuses = [("open", "Open"), ("closed", "Closed"), ("all", "All")]
            .into_iter()
            .map(|(key, label)| Filter {
                label,
                href: link(key, kind),
                active: key == status,
            })
            .collect();
        let kinds = [
            ("all", "Everything"),
            ("discussion", "Discussions"),
            ("pull_request", "Pull requests"),
        ]
        .into_iter()
        .map(|(key, label)| Filter {
            label,
            href: link(status, key),
            active: key == kind,
        })
        .collect();
        let rows = items
            .iter()
            .map(|d| Row {
                num: d.num,
                title: d.title.clone(),
                href: format!("{base}/discussions/{}", d.num),
                status: d.status.as_str(),
                pull_request: d.is_pull_request,
                author: d.author.clone().unwrap_or_else(|| "deleted".into()),
                when: when(d.created_at_ms),
            })
            .collect();
        let (section, _) = section_of(repo.repo_type);
        Ok(render(&ListPage {
            nav: Nav::new(section, &caller, &csrf),
            head: RepoHead::of(&repo, "discussions", trove_types::DEFAULT_BRANCH),
            statuses,
            kinds,
            rows,
            total,
        }))
    }
    .await
    .unwrap_or_else(super::error_page)
}

pub enum EventView {
    Comment {
        author: String,
        when: String,
        html: String,
        hidden: bool,
    },
    Status {
        author: String,
        when: String,
        status: &'static str,
    },
    Commit {
        author: String,
        when: String,
        subject: String,
        href: String,
    },
    Title {
        author: String,
        when: String,
        from: String,
        to: String,
    },
}

#[derive(Template)]
#[template(path = "discussion.html")]
pub struct DiscussionPage {
    pub nav: Nav,
    pub head: RepoHead,
    pub num: i64,
    pub title: String,
    pub status: &'static str,
    pub pull_request: bool,
    pub author: String,
    pub base: String,
    pub events: Vec<EventView>,
    pub conflicts: Vec<String>,
    pub files: Vec<FileView>,
    pub more_files: usize,
    pub can_comment: bool,
    pub can_merge: bool,
    pub can_close: bool,
    pub can_reopen: bool,
    pub action: String,
    pub error: Option<String>,
}

#[derive(Deserialize)]
pub struct NumOnly {
    num: String,
}

fn parse_num(num: &str) -> ApiResult<i64> {
    num.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::NotFound(format!("Discussion {num} not found")))
}

pub async fn page(
    State(state): State<AppState>,
    csrf: CsrfToken,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<NumOnly>>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(NumOnly { num }) = path?;
        discussion_page(&state, &caller, &csrf, &repo, parse_num(&num)?, None).await
    }
    .await
    .unwrap_or_else(super::error_page)
}

async fn discussion_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfToken,
    repo: &RepoRef,
    num: i64,
    error: Option<String>,
) -> ApiResult<Response> {
    let discussion = use_case::find(state, repo, num).await?;
    let events = state.db.discussion_events(discussion.id).await?;
    let base = repo_path(repo);
    let events = events
        .into_iter()
        .map(|e| {
            let author = e.author.clone().unwrap_or_else(|| "deleted".into());
            let when = when(e.created_at_ms);
            match e.kind {
                EventKind::Comment { raw, hidden, .. } => EventView::Comment {
                    author,
                    when,
                    html: if hidden {
                        String::new()
                    } else {
                        markdown::render(&raw)
                    },
                    hidden,
                },
                EventKind::StatusChange { status } => EventView::Status {
                    author,
                    when,
                    status: status.as_str(),
                },
                EventKind::Commit { subject, oid } => EventView::Commit {
                    author,
                    when,
                    subject,
                    href: format!("{base}/commit/{oid}"),
                },
                EventKind::TitleChange { from, to } => EventView::Title {
                    author,
                    when,
                    from,
                    to,
                },
            }
        })
        .collect();
    let (mut conflicts, mut files, mut more_files) = (Vec::new(), Vec::new(), 0);
    if discussion.is_pull_request {
        conflicts = use_case::pull_request_view(state, repo, &discussion, false)
            .await?
            .conflicts;
        let base_ref = discussion.base_ref.clone().unwrap_or_else(default_base_ref);
        if repo.access >= Access::Read
            && let Some(diff) =
                browse::revisions_diff(state, repo, &base_ref, &pr_ref(discussion.num)).await?
        {
            files = file_views(&diff);
            more_files = diff.more_files;
        }
    }
    let signed_in = caller.user();
    let is_author = signed_in.is_some_and(|u| Some(u.id) == discussion.author_user_id);
    let writer = repo.access >= Access::Write;
    let open = matches!(
        discussion.status,
        DiscussionStatus::Open | DiscussionStatus::Draft
    );
    let (section, _) = section_of(repo.repo_type);
    Ok(render(&DiscussionPage {
        nav: Nav::new(section, caller, csrf),
        head: RepoHead::of(repo, "discussions", trove_types::DEFAULT_BRANCH),
        num,
        title: discussion.title.clone(),
        status: discussion.status.as_str(),
        pull_request: discussion.is_pull_request,
        author: discussion
            .author
            .clone()
            .unwrap_or_else(|| "deleted".into()),
        base: discussion
            .base_ref
            .clone()
            .unwrap_or_else(default_base_ref)
            .trim_start_matches("refs/heads/")
            .to_owned(),
        events,
        can_merge: writer
            && discussion.is_pull_request
            && discussion.status == DiscussionStatus::Open
            && conflicts.is_empty(),
        conflicts,
        files,
        more_files,
        can_comment: signed_in.is_some() && Access::may_contribute(caller, &repo.repo, repo.access),
        can_close: open && (writer || is_author),
        can_reopen: discussion.status == DiscussionStatus::Closed && (writer || is_author),
        action: format!("{base}/discussions/{num}"),
        error,
    }))
}

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    comment: String,
}

/// `POST /{repo}/discussions/{num}`: comment, close, reopen or merge, then back to the page.
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    repo_at: ApiResult<RepoAt>,
    path: ApiResult<ApiPath<NumOnly>>,
    form: Result<Form<ActForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    async {
        let RepoAt { repo, caller } = repo_at?;
        let ApiPath(NumOnly { num }) = path?;
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let num = parse_num(&num)?;
        let discussion = use_case::find(&state, &repo, num).await?;
        let comment = Some(form.comment.as_str()).filter(|c| !c.trim().is_empty());
        match form.action.as_str() {
            "comment" => {
                use_case::comment(&state, &caller, &repo, &discussion, &form.comment).await?;
            }
            "close" => {
                use_case::change_status(
                    &state,
                    &caller,
                    &repo,
                    &discussion,
                    DiscussionStatus::Closed,
                    comment,
                )
                .await?;
            }
            "reopen" => {
                use_case::change_status(
                    &state,
                    &caller,
                    &repo,
                    &discussion,
                    DiscussionStatus::Open,
                    comment,
                )
                .await?;
            }
            "merge" => {
                use_case::merge(&state, &caller, &repo, &discussion, comment).await?;
            }
            other => return Err(ApiError::bad_request(format!("Unknown action {other:?}"))),
        }
        Ok(Redirect::to(&format!("{}/discussions/{num}", repo_path(&repo))).into_response())
    }
    .await
    .unwrap_or_else(super::error_page)
}
