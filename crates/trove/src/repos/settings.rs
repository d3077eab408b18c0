//! Changing who may see a repository: visibility, gating, discussions, and moves (rename or
//! transfer). Only the repository's admins may; every change is written to the audit log.

use super::{RepoRef, repo_url};
use crate::accounts::audit;
use crate::auth::{Access, Caller};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_db::{DbError, Gating, Repo};
use trove_types::RepoId;

/// Settings to change; `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change {
    pub private: Option<bool>,
    pub gated: Option<Gating>,
    pub discussions_disabled: Option<bool>,
    pub inference_disabled: Option<bool>,
}

fn actor(caller: &Caller) -> &str {
    caller.user().map_or("-", |u| u.name.as_str())
}

pub async fn update(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    change: Change,
) -> ApiResult<Repo> {
    repo.require_admin(caller)?;
    let before = &repo.repo;
    let after = state
        .db
        .update_repo_settings(
            before.id,
            change.private,
            change.gated,
            change.discussions_disabled,
            change.inference_disabled,
        )
        .await?;
    let target = format!("{}:{}/{}", repo.repo_type, after.namespace, after.name);
    let ns = Some(after.namespace.as_str());
    if before.private != after.private {
        let detail = if after.private { "private" } else { "public" };
        audit(
            &state.db,
            actor(caller),
            "repo.visibility",
            ns,
            Some(&target),
            Some(detail),
        )
        .await;
    }
    if before.gated != after.gated {
        audit(
            &state.db,
            actor(caller),
            "repo.gating",
            ns,
            Some(&target),
            Some(after.gated.as_str()),
        )
        .await;
    }
    // The switches that turn a feature off, audited as "disabled" / "enabled".
    let switches = [
        (
            "repo.inference",
            before.inference_disabled,
            after.inference_disabled,
        ),
        (
            "repo.discussions",
            before.discussions_disabled,
            after.discussions_disabled,
        ),
    ];
    for (action, was_disabled, disabled) in switches {
        if was_disabled != disabled {
            let detail = if disabled { "disabled" } else { "enabled" };
            audit(
                &state.db,
                actor(caller),
                action,
                ns,
                Some(&target),
                Some(detail),
            )
            .await;
        }
    }
    state.emit([crate::events::Event::repo_config(&after)]);
    Ok(after)
}

/// Moves the repository to `to` (`namespace/name`); returns its new URL. The caller must
/// administer the repository and be able to create repositories in the target namespace.
/// The old name redirects to the new one; history, likes and discussions hang on the
/// repository's id and move with it.
pub async fn move_repo(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    to: &str,
) -> ApiResult<String> {
    repo.require_admin(caller)?;
    let to = RepoId::parse(to).map_err(|e| ApiError::bad_request(format!("toRepo: {e}")))?;
    if Access::in_namespace(caller, to.namespace.as_str()) < Access::Write {
        return Err(ApiError::Forbidden(format!(
            "You don't have the rights to create a repo under the namespace {:?}",
            to.namespace.as_str()
        )));
    }
    let moved = match state
        .db
        .move_repo(repo.repo.id, &to, crate::clock::now_ms())
        .await
    {
        Ok(moved) => moved,
        Err(DbError::Conflict { .. }) => {
            return Err(ApiError::Conflict {
                message: format!("A {} repository called {to} already exists", repo.repo_type),
                url: None,
            });
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let from = format!(
        "{}:{}/{}",
        repo.repo_type, repo.repo.namespace, repo.repo.name
    );
    let detail = format!("to {}/{}", moved.namespace, moved.name);
    for ns in [repo.repo.namespace.as_str(), moved.namespace.as_str()] {
        audit(
            &state.db,
            actor(caller),
            "repo.move",
            Some(ns),
            Some(&from),
            Some(&detail),
        )
        .await;
        if repo.repo.namespace.eq_ignore_ascii_case(&moved.namespace) {
            break;
        }
    }
    state.emit([crate::events::Event::repo_moved(
        &repo.repo,
        &format!("{}/{}", moved.namespace, moved.name),
    )]);
    Ok(repo_url(
        state,
        repo.repo_type,
        &moved.namespace,
        &moved.name,
    ))
}
