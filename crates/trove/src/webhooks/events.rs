//! What happened, as the use cases report it ([`emit`]), and the Hub's payload (version 3)
//! built from it. Emitting never blocks or fails the request that caused it: the matching
//! webhooks are found and their deliveries queued by a spawned task; the delivery worker
//! sends them.

use crate::clock::now_ms;
use crate::repos::{discussions, repo_url};
use crate::state::AppState;
use serde_json::{Value, json};
use trove_db::{Discussion, DiscussionChanges, EventKind, NewDelivery, Repo};
use trove_types::GitOid;

/// The Hub's event actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Delete,
    Move,
    Update,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Delete => "delete",
            Action::Move => "move",
            Action::Update => "update",
        }
    }
}

/// One ref a change moved: `None` on the old side for a new ref, on the new side for a
/// deleted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdatedRef {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Something that happened to a repository or one of its discussions.
#[derive(Clone, Debug)]
pub enum Event {
    /// `repo` (create, delete, move), `repo.config` (settings), `repo.content` (refs).
    Repo {
        action: Action,
        scope: &'static str,
        /// The row as it was when the event happened (a deleted repository's last state).
        repo: Repo,
        updated_refs: Vec<UpdatedRef>,
        /// For a move: the new `namespace/name`.
        moved_to: Option<String>,
        /// Fill each updated ref's `new` from the repository when queueing (refs created
        /// through the API, whose handlers do not see the target).
        read_targets: bool,
    },
    /// `discussion` (opened, status or title changed) or `discussion.comment` (posted).
    Discussion {
        action: Action,
        scope: &'static str,
        discussion: Discussion,
        comment: Option<Comment>,
    },
}

/// A comment as a payload names it.
#[derive(Clone, Debug)]
pub struct Comment {
    pub id: i64,
    pub author: Option<String>,
    pub content: String,
    pub hidden: bool,
}

impl Event {
    pub fn repo_created(repo: &Repo) -> Event {
        Event::repo(Action::Create, "repo", repo)
    }

    pub fn repo_deleted(repo: &Repo) -> Event {
        Event::repo(Action::Delete, "repo", repo)
    }

    /// Settings changed (visibility, gating, discussions).
    pub fn repo_config(repo: &Repo) -> Event {
        Event::repo(Action::Update, "repo.config", repo)
    }

    /// `repo` (before the move) now lives at `to` (`namespace/name`).
    pub fn repo_moved(repo: &Repo, to: &str) -> Event {
        Event::Repo {
            action: Action::Move,
            scope: "repo",
            repo: repo.clone(),
            updated_refs: Vec::new(),
            moved_to: Some(to.to_owned()),
            read_targets: false,
        }
    }

    /// A commit moved `revision` (a branch name or a full ref) to `new`.
    pub fn committed(repo: &Repo, revision: &str, new: &GitOid) -> Event {
        Event::content(
            repo,
            vec![UpdatedRef {
                name: full_ref(revision),
                old: None,
                new: Some(new.to_string()),
            }],
        )
    }

    /// A branch or tag (`full_ref`) was created through the API; its target is read when
    /// the event is queued.
    pub fn ref_created(repo: &Repo, full_ref: &str) -> Event {
        Event::Repo {
            action: Action::Update,
            scope: "repo.content",
            repo: repo.clone(),
            updated_refs: vec![UpdatedRef {
                name: full_ref.to_owned(),
                old: None,
                new: None,
            }],
            moved_to: None,
            read_targets: true,
        }
    }

    /// A branch or tag (`full_ref`) was deleted through the API.
    pub fn ref_deleted(repo: &Repo, full_ref: &str) -> Event {
        Event::content(
            repo,
            vec![UpdatedRef {
                name: full_ref.to_owned(),
                old: None,
                new: None,
            }],
        )
    }

    /// A push moved refs from `before` to `after` (every ref with its target).
    pub fn pushed(repo: &Repo, before: &[(String, GitOid)], after: &[(String, GitOid)]) -> Event {
        let target = |refs: &[(String, GitOid)], name: &str| {
            refs.iter()
                .find(|(n, _)| n == name)
                .map(|(_, oid)| oid.to_string())
        };
        let mut names: Vec<&str> = after
            .iter()
            .chain(before)
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let updated_refs = names
            .into_iter()
            .filter_map(|name| {
                let (old, new) = (target(before, name), target(after, name));
                (old != new).then(|| UpdatedRef {
                    name: name.to_owned(),
                    old,
                    new,
                })
            })
            .collect();
        Event::content(repo, updated_refs)
    }

    fn content(repo: &Repo, updated_refs: Vec<UpdatedRef>) -> Event {
        Event::Repo {
            action: Action::Update,
            scope: "repo.content",
            repo: repo.clone(),
            updated_refs,
            moved_to: None,
            read_targets: false,
        }
    }

    fn repo(action: Action, scope: &'static str, repo: &Repo) -> Event {
        Event::Repo {
            action,
            scope,
            repo: repo.clone(),
            updated_refs: Vec::new(),
            moved_to: None,
            read_targets: false,
        }
    }

    /// A discussion or pull request was opened.
    pub fn discussion_opened(discussion: &Discussion) -> Event {
        Event::Discussion {
            action: Action::Create,
            scope: "discussion",
            discussion: discussion.clone(),
            comment: None,
        }
    }

    /// What recording `events` with `changes` on `discussion` means to webhooks: a new
    /// comment, or a change of the discussion (shown as it is after `changes`). Commits on
    /// a pull request are reported as content changes by the commit itself.
    pub fn discussion_events(
        discussion: &Discussion,
        changes: &DiscussionChanges<'_>,
        events: &[trove_db::Event],
    ) -> Vec<Event> {
        let mut after = discussion.clone();
        if let Some(status) = changes.status {
            after.status = status;
        }
        if let Some(title) = changes.title {
            after.title = title.to_owned();
        }
        if let Some(merged) = changes.merge_commit {
            after.merge_commit = Some(merged.to_owned());
        }
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Comment { raw, hidden, .. } => Some(Event::Discussion {
                    action: Action::Create,
                    scope: "discussion.comment",
                    discussion: after.clone(),
                    comment: Some(Comment {
                        id: e.id,
                        author: e.author.clone(),
                        content: raw.clone(),
                        hidden: *hidden,
                    }),
                }),
                EventKind::StatusChange { .. } | EventKind::TitleChange { .. } => {
                    Some(Event::Discussion {
                        action: Action::Update,
                        scope: "discussion",
                        discussion: after.clone(),
                        comment: None,
                    })
                }
                EventKind::Commit { .. } => None,
            })
            .collect()
    }

    fn domain(&self) -> &'static str {
        match self {
            Event::Repo { .. } => "repo",
            Event::Discussion { .. } => "discussion",
        }
    }
}

fn full_ref(revision: &str) -> String {
    if revision.starts_with("refs/") {
        revision.to_owned()
    } else {
        format!("refs/heads/{revision}")
    }
}

/// Queues the deliveries of `events` to every enabled webhook that watches their repository
/// (directly or through its namespace) and their domain, without waiting: the request that
/// caused them goes on. A failure to queue is logged, never returned.
pub fn emit(state: &AppState, events: impl IntoIterator<Item = Event>) {
    let events: Vec<Event> = events.into_iter().collect();
    crate::spaces::observe(state, &events);
    if events.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        for event in events {
            if let Err(e) = enqueue(&state, &event).await {
                tracing::error!(error = %e, "webhooks.enqueue_failed");
            }
        }
    });
}

/// Finds the webhooks an event concerns and queues one delivery for each.
pub async fn enqueue(state: &AppState, event: &Event) -> anyhow::Result<usize> {
    let repo = match event {
        Event::Repo { repo, .. } => repo.clone(),
        Event::Discussion { discussion, .. } => {
            match state.db.repo_for_delivery(discussion.repo_id).await? {
                Some(repo) => repo,
                None => return Ok(0),
            }
        }
    };
    let webhooks = state
        .db
        .webhooks_watching(repo.repo_type.as_str(), &repo.namespace, &repo.name)
        .await?;
    let webhooks: Vec<_> = webhooks
        .into_iter()
        .filter(|w| w.domains.iter().any(|d| d == event.domain()))
        .collect();
    if webhooks.is_empty() {
        return Ok(0);
    }
    let head = match event {
        Event::Repo {
            action: Action::Delete,
            ..
        } => None,
        _ => head_sha(state, &repo).await,
    };
    let filled;
    let event = match event {
        Event::Repo {
            read_targets: true, ..
        } => {
            filled = with_targets(state, event.clone()).await;
            &filled
        }
        _ => event,
    };
    let base = payload(state, event, &repo, head.as_deref());
    let deliveries: Vec<NewDelivery> = webhooks
        .iter()
        .map(|w| {
            let mut body = base.clone();
            body["webhook"] = json!({"id": w.object_id, "version": 3});
            NewDelivery {
                webhook_id: w.id,
                event: event_name(event),
                repo_id: Some(repo.id),
                repo_namespace: repo.namespace.clone(),
                repo_private: repo.private,
                payload: body.to_string(),
            }
        })
        .collect();
    // A deleted repository's row is gone: the delivery keeps its namespace and visibility.
    let deliveries: Vec<NewDelivery> = match event {
        Event::Repo {
            action: Action::Delete,
            ..
        } => deliveries
            .into_iter()
            .map(|d| NewDelivery { repo_id: None, ..d })
            .collect(),
        _ => deliveries,
    };
    state.db.enqueue_deliveries(&deliveries, now_ms()).await?;
    tracing::debug!(
        repo.id = repo.id,
        event = %event_name(event),
        deliveries = deliveries.len(),
        "webhooks.enqueued"
    );
    Ok(deliveries.len())
}

fn event_name(event: &Event) -> String {
    match event {
        Event::Repo { action, scope, .. } | Event::Discussion { action, scope, .. } => {
            format!("{} {scope}", action.as_str())
        }
    }
}

/// The event with each updated ref's current target read from the repository.
async fn with_targets(state: &AppState, event: Event) -> Event {
    let Event::Repo {
        action,
        scope,
        repo,
        updated_refs,
        moved_to,
        ..
    } = event
    else {
        return event;
    };
    let path = state.git_dir(repo.id);
    let names: Vec<String> = updated_refs.iter().map(|r| r.name.clone()).collect();
    let targets = tokio::task::spawn_blocking(move || {
        let git = trove_git::GitRepo::open(&path).ok();
        names
            .iter()
            .map(|name| {
                git.as_ref()
                    .and_then(|g| g.resolve_revision(name).ok().flatten())
                    .map(|oid| oid.to_string())
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let updated_refs = updated_refs
        .into_iter()
        .enumerate()
        .map(|(i, r)| UpdatedRef {
            new: targets.get(i).cloned().flatten(),
            ..r
        })
        .collect();
    Event::Repo {
        action,
        scope,
        repo,
        updated_refs,
        moved_to,
        read_targets: false,
    }
}

/// The head of the default branch, if the repository has one.
async fn head_sha(state: &AppState, repo: &Repo) -> Option<String> {
    let path = state.git_dir(repo.id);
    tokio::task::spawn_blocking(move || {
        let git = trove_git::GitRepo::open(&path).ok()?;
        git.resolve_revision(&format!("refs/heads/{}", trove_types::DEFAULT_BRANCH))
            .ok()
            .flatten()
            .map(|oid| oid.to_string())
    })
    .await
    .ok()
    .flatten()
}

/// The payload, without its `webhook` member (set per webhook).
fn payload(state: &AppState, event: &Event, repo: &Repo, head: Option<&str>) -> Value {
    let name = format!("{}/{}", repo.namespace, repo.name);
    let web = repo_url(state, repo.repo_type, &repo.namespace, &repo.name);
    let api = format!(
        "{}/api/{}/{name}",
        state.public_url(),
        repo.repo_type.plural()
    );
    let mut repo_json = json!({
        "type": repo.repo_type.as_str(),
        "name": name,
        "id": repo.id.to_string(),
        "private": repo.private,
        "owner": {"id": repo.namespace},
        "url": {"web": web, "api": api},
    });
    if let Some(head) = head {
        repo_json["headSha"] = json!(head);
        // The client's own payload model spells it so.
        repo_json["head_sha"] = json!(head);
    }
    let (action, scope) = match event {
        Event::Repo { action, scope, .. } | Event::Discussion { action, scope, .. } => {
            (action.as_str(), *scope)
        }
    };
    let mut body = json!({
        "event": {"action": action, "scope": scope},
        "repo": repo_json,
    });
    match event {
        Event::Repo {
            updated_refs,
            moved_to,
            ..
        } => {
            if !updated_refs.is_empty() {
                body["updatedRefs"] = updated_refs
                    .iter()
                    .map(|r| json!({"ref": r.name, "oldSha": r.old, "newSha": r.new}))
                    .collect();
            }
            if let Some(to) = moved_to {
                let owner = to.split('/').next().unwrap_or_default();
                body["movedTo"] = json!({"name": to, "owner": {"id": owner}});
            }
        }
        Event::Discussion {
            discussion,
            comment,
            ..
        } => {
            let d_web = format!("{web}/discussions/{}", discussion.num);
            let d_api = format!("{api}/discussions/{}", discussion.num);
            let mut d = json!({
                "id": discussion.id.to_string(),
                "num": discussion.num,
                "author": {"id": discussion.author.clone().unwrap_or_default()},
                "url": {"web": d_web, "api": d_api},
                "title": discussion.title,
                "isPullRequest": discussion.is_pull_request,
                "status": discussion.status.as_str(),
            });
            if discussion.is_pull_request {
                let mut changes = json!({
                    "base": discussion.base_ref.clone().unwrap_or_else(discussions::default_base_ref),
                });
                if let Some(merged) = &discussion.merge_commit {
                    changes["mergeCommitId"] = json!(merged);
                }
                d["changes"] = changes;
            }
            body["discussion"] = d;
            if let Some(c) = comment {
                let id = discussions::event_id_text(c.id);
                body["comment"] = json!({
                    "id": id,
                    "author": {"id": c.author.clone().unwrap_or_default()},
                    "hidden": c.hidden,
                    "content": c.content,
                    "url": {"web": format!("{d_web}#{id}")},
                });
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> GitOid {
        GitOid::parse(&c.to_string().repeat(40)).expect("oid")
    }

    #[test]
    fn a_push_reports_exactly_the_refs_it_moved() {
        let before = vec![
            ("refs/heads/main".to_owned(), oid('a')),
            ("refs/heads/old".to_owned(), oid('b')),
            ("refs/tags/v1".to_owned(), oid('c')),
        ];
        let after = vec![
            ("refs/heads/main".to_owned(), oid('d')),
            ("refs/heads/new".to_owned(), oid('e')),
            ("refs/tags/v1".to_owned(), oid('c')),
        ];
        let repo = Repo {
            id: 1,
            repo_type: trove_types::RepoType::Model,
            namespace: "a".into(),
            name: "b".into(),
            private: false,
            owner_user_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            gated: trove_db::Gating::Off,
            discussions_disabled: false,
        };
        let Event::Repo { updated_refs, .. } = Event::pushed(&repo, &before, &after) else {
            panic!("a repo event");
        };
        let names: Vec<_> = updated_refs
            .iter()
            .map(|r| (r.name.as_str(), r.old.is_some(), r.new.is_some()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("refs/heads/main", true, true),
                ("refs/heads/new", false, true),
                ("refs/heads/old", true, false),
            ]
        );
    }
}
