//! Discussions and pull requests: opening them, commenting, changing status or title,
//! commits pushed to a pull request, and merging.
//!
//! A pull request `N` is a discussion plus the git ref `refs/pr/N`, started at the head of its
//! base branch (`main`). Who may do what:
//! - read: whoever may read the repository;
//! - open, comment: any signed-in reader with a write-capable token (contributors need not
//!   have write access, as on the Hub);
//! - commit to `refs/pr/N`: the pull request's author or a repository writer, while it is
//!   open or draft;
//! - change status or title: the author or a repository writer; merged is final;
//! - merge: repository writers;
//! - edit a comment: its author; hide a comment: its author or a repository writer.

use super::commit::{PendingCommit, commit_to_ref};
use super::{RepoRef, resolve, with_git, write_git};
use crate::auth::{Access, Caller};
use crate::clock::{now_ms, now_secs};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_db::{
    DbError, Discussion, DiscussionChanges, DiscussionStatus, Event, NewDiscussion, NewEvent,
};
use trove_git::{CommitError, MergePlan};
use trove_types::GitOid;

/// Longest title accepted, in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest comment or description accepted, in bytes.
pub const MAX_COMMENT_BYTES: usize = 65_536;
/// The diff shown with a pull request is cut after this many bytes.
pub const MAX_DIFF_BYTES: usize = 1 << 20;
/// The branch every pull request merges into.
/// The full ref pull requests merge into: the default branch.
pub fn default_base_ref() -> String {
    format!("refs/heads/{}", trove_types::DEFAULT_BRANCH)
}

/// `refs/pr/N` → `N`.
pub fn pr_number(revision: &str) -> Option<i64> {
    let number = revision.strip_prefix("refs/pr/")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || number.starts_with('0') {
        return None;
    }
    number.parse().ok().filter(|n| *n > 0)
}

pub fn pr_ref(num: i64) -> String {
    format!("refs/pr/{num}")
}

fn validate_title(title: &str) -> ApiResult<&str> {
    let title = title.trim();
    if title.is_empty() {
        return Err(ApiError::bad_request("The title must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::bad_request(format!(
            "The title is longer than {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title)
}

fn validate_comment(text: &str) -> ApiResult<()> {
    if text.len() > MAX_COMMENT_BYTES {
        return Err(ApiError::bad_request(format!(
            "The comment is longer than {MAX_COMMENT_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The signed-in user id of a caller allowed to contribute (open, comment, push to their own
/// pull request): a reader with a write-capable token.
fn contributor(caller: &Caller, repo: &RepoRef) -> ApiResult<i64> {
    let user = caller.require_user()?;
    if !Access::may_contribute(caller, &repo.repo, repo.access) {
        return Err(ApiError::Forbidden(
            "This token is read-only: a write token is needed".into(),
        ));
    }
    if repo.repo.discussions_disabled {
        return Err(ApiError::Forbidden(
            "Discussions and pull requests are disabled for this repository".into(),
        ));
    }
    Ok(user.id)
}

fn is_author(caller: &Caller, discussion: &Discussion) -> bool {
    caller
        .user()
        .is_some_and(|u| Some(u.id) == discussion.author_user_id)
}

/// 403 unless the caller wrote the discussion or may write the repository.
fn require_author_or_writer(
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    what: &str,
) -> ApiResult<i64> {
    let user_id = contributor(caller, repo)?;
    if repo.access >= Access::Write || is_author(caller, discussion) {
        Ok(user_id)
    } else {
        Err(ApiError::Forbidden(format!(
            "Only the author or a writer of this repository may {what}"
        )))
    }
}

fn db_error(e: DbError) -> ApiError {
    match e {
        DbError::Conflict { .. } => ApiError::Conflict {
            message: "The discussion changed meanwhile; reload and try again".into(),
            url: None,
        },
        other => ApiError::internal(other),
    }
}

/// Records `events` (with `changes` to the discussion) and returns the last one.
async fn record(
    state: &Context,
    discussion: &Discussion,
    user_id: Option<i64>,
    changes: &DiscussionChanges<'_>,
    events: &[NewEvent<'_>],
) -> ApiResult<Event> {
    let mut recorded = state
        .db
        .record_discussion_events(discussion, user_id, changes, events, now_ms())
        .await
        .map_err(db_error)?;
    state.emit(crate::events::Event::discussion_events(
        discussion, changes, &recorded,
    ));
    recorded
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("discussion event not recorded")))
}

/// The comment that may come with a status change or a merge: trimmed, empty = none.
fn optional_comment(comment: Option<&str>) -> ApiResult<Option<&str>> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if let Some(comment) = comment {
        validate_comment(comment)?;
    }
    Ok(comment)
}

/// The discussion `num` of a repository the caller may read, or 404.
pub async fn find(state: &Context, repo: &RepoRef, num: i64) -> ApiResult<Discussion> {
    state
        .db
        .discussion(repo.repo.id, num)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Discussion #{num} not found")))
}

/// Opens a discussion, or a draft pull request whose `refs/pr/N` starts at `main`'s head.
pub async fn open(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    title: &str,
    description: &str,
    pull_request: bool,
) -> ApiResult<Discussion> {
    let user_id = contributor(caller, repo)?;
    let title = validate_title(title)?;
    validate_comment(description)?;
    if !pull_request {
        return create_row(state, repo, user_id, title, description, None).await;
    }
    let base = with_git(state, repo, |git| resolve(git, &default_base_ref())).await?;
    let discussion = create_row(
        state,
        repo,
        user_id,
        title,
        description,
        Some(DiscussionStatus::Draft),
    )
    .await?;
    let full_ref = pr_ref(discussion.num);
    let created = write_git(
        state,
        repo,
        move |git| Ok(git.create_ref(&full_ref, &base)?),
    )
    .await;
    if let Err(e) = created {
        undo_open(state, &discussion).await;
        return Err(e);
    }
    Ok(discussion)
}

async fn create_row(
    state: &Context,
    repo: &RepoRef,
    user_id: i64,
    title: &str,
    description: &str,
    pr_status: Option<DiscussionStatus>,
) -> ApiResult<Discussion> {
    let base = default_base_ref();
    let created = state
        .db
        .create_discussion(&NewDiscussion {
            repo_id: repo.repo.id,
            author_user_id: user_id,
            title,
            is_pull_request: pr_status.is_some(),
            status: pr_status.unwrap_or(DiscussionStatus::Open),
            base_ref: pr_status.map(|_| base.as_str()),
            description,
            now_ms: now_ms(),
        })
        .await?;
    state.emit([crate::events::Event::discussion_opened(&created)]);
    Ok(created)
}

async fn undo_open(state: &Context, discussion: &Discussion) {
    if let Err(e) = state.db.delete_discussion(discussion.id).await {
        tracing::error!(error = %e, discussion.id, "could not undo a failed pull request");
    }
}

/// `create_commit(create_pr=True)`: a pull request from `revision`'s head with `pending` as
/// its first commit, titled by the commit's summary. Nothing stays behind if the commit
/// fails.
pub async fn open_with_commit(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    revision: &str,
    pending: PendingCommit,
) -> ApiResult<(GitOid, Discussion)> {
    let user_id = contributor(caller, repo)?;
    let title = validate_title(&pending.summary)?.to_owned();
    // Pull requests open against branches: a tag, a commit id or another ref is
    // `RevisionNotFound`, as on the Hub.
    let branch_ref = if revision.starts_with("refs/heads/") {
        revision.to_owned()
    } else if revision.starts_with("refs/") {
        return Err(ApiError::RevisionNotFound {
            revision: revision.to_owned(),
        });
    } else {
        format!("refs/heads/{revision}")
    };
    let revision = revision.to_owned();
    let base = with_git(state, repo, move |git| {
        let is_branch = git.ref_target(&branch_ref)?.is_some();
        if !is_branch {
            return Err(ApiError::RevisionNotFound { revision });
        }
        resolve(git, &branch_ref)
    })
    .await?;
    let discussion = create_row(
        state,
        repo,
        user_id,
        &title,
        &pending.description,
        Some(DiscussionStatus::Draft),
    )
    .await?;
    let full_ref = pr_ref(discussion.num);
    let ref_for_git = full_ref.clone();
    let result = async {
        write_git(state, repo, move |git| {
            Ok(git.create_ref(&ref_for_git, &base)?)
        })
        .await?;
        commit_to_ref(state, caller, repo, &full_ref, pending).await
    }
    .await;
    let oid = match result {
        Ok(oid) => oid,
        Err(e) => {
            let full_ref = full_ref.clone();
            let _ = write_git(state, repo, move |git| {
                Ok(git.delete_ref_if_present(&full_ref)?)
            })
            .await;
            undo_open(state, &discussion).await;
            return Err(e);
        }
    };
    // A pull request opened together with its commit is open at once, as on the Hub; a draft
    // made by `create_pull_request` stays a draft through its commits until it is opened.
    let discussion =
        record_commit_with(state, caller, repo, discussion, &oid, &title, true).await?;
    Ok((oid, discussion))
}

/// Checks that the caller may commit to the pull request `num` and returns it.
pub async fn pull_request_for_commit(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    num: i64,
) -> ApiResult<Discussion> {
    let discussion = find(state, repo, num).await?;
    if !discussion.is_pull_request {
        return Err(ApiError::bad_request(format!(
            "#{num} is not a pull request"
        )));
    }
    require_author_or_writer(caller, repo, &discussion, "push to this pull request")?;
    if matches!(
        discussion.status,
        DiscussionStatus::Closed | DiscussionStatus::Merged
    ) {
        return Err(ApiError::Forbidden(format!(
            "Pull request #{num} is {}: reopen it to push",
            discussion.status.as_str()
        )));
    }
    Ok(discussion)
}

/// Adds the `commit` event of a commit pushed to a pull request; its status stays as it is
/// (a draft is opened only by a status change).
pub async fn record_commit(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: Discussion,
    oid: &GitOid,
    summary: &str,
) -> ApiResult<Discussion> {
    record_commit_with(state, caller, repo, discussion, oid, summary, false).await
}

async fn record_commit_with(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: Discussion,
    oid: &GitOid,
    summary: &str,
    open_draft: bool,
) -> ApiResult<Discussion> {
    // Re-read: the status may have moved while the commit was being written.
    let discussion = find(state, repo, discussion.num).await?;
    let changes = DiscussionChanges {
        status: (open_draft && discussion.status == DiscussionStatus::Draft)
            .then_some(DiscussionStatus::Open),
        ..Default::default()
    };
    record(
        state,
        &discussion,
        caller.user().map(|u| u.id),
        &changes,
        &[NewEvent::Commit {
            subject: summary,
            oid: oid.as_str(),
        }],
    )
    .await?;
    find(state, repo, discussion.num).await
}

pub async fn comment(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    text: &str,
) -> ApiResult<Event> {
    let user_id = contributor(caller, repo)?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("The comment must not be empty"));
    }
    validate_comment(text)?;
    record(
        state,
        discussion,
        Some(user_id),
        &DiscussionChanges::default(),
        &[NewEvent::Comment(text)],
    )
    .await
}

/// Opens or closes a discussion, with an optional comment; returns the status-change event.
pub async fn change_status(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    status: DiscussionStatus,
    comment: Option<&str>,
) -> ApiResult<Event> {
    let user_id = require_author_or_writer(caller, repo, discussion, "change its status")?;
    if !matches!(status, DiscussionStatus::Open | DiscussionStatus::Closed) {
        return Err(ApiError::bad_request(
            "The status can only be set to \"open\" or \"closed\"",
        ));
    }
    if discussion.status == DiscussionStatus::Merged {
        return Err(ApiError::bad_request(
            "This pull request is merged; its status cannot change",
        ));
    }
    if discussion.status == status {
        return Err(ApiError::bad_request(format!(
            "The discussion is already {}",
            status.as_str()
        )));
    }
    let comment = optional_comment(comment)?;
    let mut events: Vec<NewEvent<'_>> = comment.map(NewEvent::Comment).into_iter().collect();
    events.push(NewEvent::StatusChange(status));
    let changes = DiscussionChanges {
        status: Some(status),
        ..Default::default()
    };
    record(state, discussion, Some(user_id), &changes, &events).await
}

pub async fn rename(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    title: &str,
) -> ApiResult<Event> {
    let user_id = require_author_or_writer(caller, repo, discussion, "rename it")?;
    let title = validate_title(title)?;
    let changes = DiscussionChanges {
        title: Some(title),
        ..Default::default()
    };
    record(
        state,
        discussion,
        Some(user_id),
        &changes,
        &[NewEvent::TitleChange {
            from: &discussion.title,
            to: title,
        }],
    )
    .await
}

/// Parses a comment id as the API shows it (24 hex digits).
pub fn parse_event_id(id: &str) -> ApiResult<i64> {
    let not_found = || ApiError::NotFound(format!("Comment {id} not found"));
    if id.len() != 24 {
        return Err(not_found());
    }
    i64::from_str_radix(id, 16).map_err(|_| not_found())
}

pub fn event_id_text(id: i64) -> String {
    format!("{id:024x}")
}

pub async fn edit_comment(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    event_id: i64,
    text: &str,
) -> ApiResult<Event> {
    let user_id = contributor(caller, repo)?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("The comment must not be empty"));
    }
    validate_comment(text)?;
    let author = comment_author(state, discussion, event_id).await?;
    if author != Some(user_id) {
        return Err(ApiError::Forbidden(
            "Only its author may edit a comment".into(),
        ));
    }
    if !state
        .db
        .edit_comment(discussion.id, event_id, text, user_id, now_ms())
        .await?
    {
        return Err(comment_not_found(event_id));
    }
    event(state, discussion, event_id).await
}

pub async fn hide_comment(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    event_id: i64,
) -> ApiResult<Event> {
    let user_id = contributor(caller, repo)?;
    let author = comment_author(state, discussion, event_id).await?;
    if repo.access < Access::Write && author != Some(user_id) {
        return Err(ApiError::Forbidden(
            "Only its author or a writer of this repository may hide a comment".into(),
        ));
    }
    if !state.db.hide_comment(discussion.id, event_id).await? {
        return Err(comment_not_found(event_id));
    }
    event(state, discussion, event_id).await
}

fn comment_not_found(event_id: i64) -> ApiError {
    ApiError::NotFound(format!("Comment {} not found", event_id_text(event_id)))
}

/// Who wrote event `event_id` of the discussion (`None`: a deleted account); 404 when the
/// discussion has no such event.
async fn comment_author(
    state: &Context,
    discussion: &Discussion,
    event_id: i64,
) -> ApiResult<Option<i64>> {
    state
        .db
        .event_author_id(discussion.id, event_id)
        .await?
        .ok_or_else(|| comment_not_found(event_id))
}

async fn event(state: &Context, discussion: &Discussion, event_id: i64) -> ApiResult<Event> {
    state
        .db
        .discussion_event(discussion.id, event_id)
        .await?
        .ok_or_else(|| comment_not_found(event_id))
}

/// What a reviewer sees of a pull request besides its events.
pub struct PullRequestView {
    pub conflicts: Vec<String>,
    pub diff: Option<String>,
}

/// Conflicting files (for open pull requests) and, when asked, the diff since the merge base.
pub async fn pull_request_view(
    state: &Context,
    repo: &RepoRef,
    discussion: &Discussion,
    with_diff: bool,
) -> ApiResult<PullRequestView> {
    let base_ref = discussion.base_ref.clone().unwrap_or_else(default_base_ref);
    let head_ref = pr_ref(discussion.num);
    let open = matches!(
        discussion.status,
        DiscussionStatus::Open | DiscussionStatus::Draft
    );
    with_git(state, repo, move |git| {
        let head = git.resolve_revision(&head_ref)?;
        let base = git.resolve_revision(&base_ref)?;
        let (Some(head), Some(base)) = (head, base) else {
            return Ok(PullRequestView {
                conflicts: Vec::new(),
                diff: None,
            });
        };
        let conflicts = if open {
            match git.merge_plan(&base, &head)? {
                MergePlan::Conflicts(paths) => paths,
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let diff = with_diff
            .then(|| git.diff_since_merge_base(&base, &head, MAX_DIFF_BYTES))
            .transpose()?;
        Ok(PullRequestView { conflicts, diff })
    })
    .await
}

/// Merges pull request `discussion` into its base branch (fast-forward or merge commit),
/// marks it merged, and reindexes `main`. Conflicts answer 409 and change nothing.
pub async fn merge(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    discussion: &Discussion,
    comment: Option<&str>,
) -> ApiResult<GitOid> {
    repo.require_write(caller)?;
    let user_id = caller.require_user()?.id;
    if !discussion.is_pull_request {
        return Err(ApiError::bad_request(format!(
            "#{} is a discussion, not a pull request",
            discussion.num
        )));
    }
    if discussion.status != DiscussionStatus::Open && discussion.status != DiscussionStatus::Draft {
        return Err(ApiError::bad_request(format!(
            "Pull request #{} is {}",
            discussion.num,
            discussion.status.as_str()
        )));
    }
    let comment = optional_comment(comment)?;
    let author = super::commit::author_of(caller)?;
    let base_ref = discussion.base_ref.clone().unwrap_or_else(default_base_ref);
    let head_ref = pr_ref(discussion.num);
    let merged_into = base_ref.clone();
    let message = format!(
        "Merge pull request #{}: {}",
        discussion.num, discussion.title
    );
    let guard = state.lock_repo(repo.repo.id).await?;
    let (base, merged) = write_git(state, repo, move |git| {
        let head = resolve(git, &head_ref)?;
        let base = resolve(git, &base_ref)?;
        let merged = git
            .merge_into(
                &base_ref,
                &base,
                &head,
                &message,
                &author,
                now_secs() as i64,
            )
            .map_err(|e| match e {
                CommitError::MergeConflict { paths } => ApiError::Conflict {
                    message: format!(
                        "This pull request has conflicts with {base_ref}: {}",
                        paths.join(", ")
                    ),
                    url: None,
                },
                CommitError::RefMoved { .. } | CommitError::RefLocked { .. } => {
                    ApiError::Conflict {
                        message: "The base branch moved while merging; please retry".into(),
                        url: None,
                    }
                }
                other => ApiError::internal(other),
            })?;
        Ok((base, merged))
    })
    .await?;
    drop(guard);
    let mut events: Vec<NewEvent<'_>> = comment.map(NewEvent::Comment).into_iter().collect();
    events.push(NewEvent::StatusChange(DiscussionStatus::Merged));
    let merged_text = merged.to_string();
    let changes = DiscussionChanges {
        status: Some(DiscussionStatus::Merged),
        merge_commit: Some(&merged_text),
        ..Default::default()
    };
    record(state, discussion, Some(user_id), &changes, &events).await?;
    state.db.touch_repo(repo.repo.id, now_ms()).await?;
    state.emit([crate::events::Event::committed(
        &repo.repo,
        &merged_into,
        Some(&base),
        &merged,
    )]);
    super::index::reindex_after_write(state, &repo.repo).await;
    tracing::info!(repo.id = repo.repo.id, pr = discussion.num, commit = %merged, "pull request merged");
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_refs_name_positive_decimal_numbers_only() {
        assert_eq!(pr_number("refs/pr/1"), Some(1));
        assert_eq!(pr_number("refs/pr/42"), Some(42));
        assert_eq!(pr_number("refs/pr/0"), None);
        assert_eq!(pr_number("refs/pr/01"), None);
        assert_eq!(pr_number("refs/pr/"), None);
        assert_eq!(pr_number("refs/pr/1a"), None);
        assert_eq!(pr_number("refs/pr/-1"), None);
        assert_eq!(pr_number("refs/pr/99999999999999999999"), None);
        assert_eq!(pr_number("main"), None);
    }

    #[test]
    fn comment_ids_round_trip_as_24_hex_digits() {
        let text = event_id_text(255);
        assert_eq!(text, "0000000000000000000000ff");
        assert_eq!(parse_event_id(&text).expect("id"), 255);
        assert!(parse_event_id("ff").is_err());
        assert!(parse_event_id("zzzzzzzzzzzzzzzzzzzzzzzz").is_err());
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(validate_title("  Fix  ").expect("valid"), "Fix");
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"x".repeat(201)).is_err());
        assert!(validate_title(&"é".repeat(200)).is_ok());
    }
}
