//! Webhooks' subscriber to the hub's events ([`queue`]) and the Hub's payload (version 3)
//! built from each event. Queueing never blocks or fails the request that caused it: the
//! matching webhooks are found and their deliveries queued by a spawned task; the delivery
//! worker sends them.

use crate::clock::now_ms;
use crate::context::Context;
use crate::events::{Action, Event, UpdatedRef};
use crate::repos::{discussions, repo_url};
use crate::webhooks::delivery::OwnerView;
use serde_json::{Value, json};
use trove_db::{NewDelivery, Repo};

/// Queues the deliveries of `events` to every enabled webhook that watches their repository
/// (directly or through its namespace) and their domain, without waiting: the request that
/// caused them goes on. A failure to queue is logged, never returned.
/// Subscribed to the hub's event bus when the application state is built.
pub fn queue(state: &Context, events: &[Event]) {
    let events = events.to_vec();
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
pub async fn enqueue(state: &Context, event: &Event) -> anyhow::Result<usize> {
    let repo = match event {
        Event::Repo { repo, .. } => repo.clone(),
        Event::Discussion { discussion, .. } => {
            match state.db.repo_by_id(discussion.repo_id).await? {
                Some(repo) => repo,
                None => return Ok(0),
            }
        }
    };
    let webhooks = state
        .db
        .webhooks_watching(repo.repo_type.as_str(), &repo.namespace, &repo.name)
        .await?;
    let mut readable = Vec::with_capacity(webhooks.len());
    for w in webhooks {
        // A webhook watching a user or organization learns only of the repositories its
        // owner may see: nothing is queued (nor shown in its log) for the others.
        if w.domains.iter().any(|d| d == event.domain())
            && OwnerView::load(state, w.owner_user_id)
                .await?
                .may_read(state, &repo)
                .await?
        {
            readable.push(w);
        }
    }
    let webhooks = readable;
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
async fn with_targets(state: &Context, event: Event) -> Event {
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
async fn head_sha(state: &Context, repo: &Repo) -> Option<String> {
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
fn payload(state: &Context, event: &Event, repo: &Repo, head: Option<&str>) -> Value {
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
