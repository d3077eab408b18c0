//! Access requests to gated repositories: a user asks (accepted at once when the gate is
//! `auto`), the repository's admins list, accept, reject or cancel them, or grant access
//! outright. Decisions are audited.

use super::RepoRef;
use crate::accounts::audit;
use crate::auth::Caller;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_db::{AccessRequest, Gating, RequestStatus};

fn not_gated(repo: &RepoRef) -> ApiError {
    ApiError::bad_request(format!(
        "{}/{} is not a gated repository",
        repo.repo.namespace, repo.repo.name
    ))
}

/// Records the caller's request; returns where it stands.
pub async fn ask(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    fields: Option<&str>,
) -> ApiResult<RequestStatus> {
    let user = caller.require_user()?;
    if !repo.repo.gated.is_gated() {
        return Err(not_gated(repo));
    }
    let current = state
        .db
        .access_request_status(repo.repo.id, user.id)
        .await?;
    let status = match (current, repo.repo.gated) {
        // A decision stands; asking again does not reopen it.
        (Some(done @ (RequestStatus::Accepted | RequestStatus::Rejected)), _) => return Ok(done),
        (_, Gating::Auto) => RequestStatus::Accepted,
        _ => RequestStatus::Pending,
    };
    state
        .db
        .set_access_request(
            repo.repo.id,
            user.id,
            status,
            fields,
            crate::clock::now_ms(),
        )
        .await?;
    let target = format!(
        "{}:{}/{}",
        repo.repo_type, repo.repo.namespace, repo.repo.name
    );
    let action = if status == RequestStatus::Accepted {
        "gate.auto_accept"
    } else {
        "gate.request"
    };
    audit(
        &state.db,
        &user.name,
        action,
        Some(&repo.repo.namespace),
        Some(&target),
        Some(&user.name),
    )
    .await;
    Ok(status)
}

pub async fn list(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    status: RequestStatus,
) -> ApiResult<Vec<AccessRequest>> {
    repo.require_admin(caller)?;
    if !repo.repo.gated.is_gated() {
        return Err(not_gated(repo));
    }
    Ok(state.db.access_requests(repo.repo.id, status).await?)
}

/// Whose request: by user name, or by request id (the user's id).
pub enum Who {
    Name(String),
    Id(i64),
}

/// Sets the user's request to `status`. Without `create`, the request must exist
/// (handle); with it, one is made (grant).
pub async fn decide(
    state: &Context,
    caller: &Caller,
    repo: &RepoRef,
    who: Who,
    status: RequestStatus,
    reason: Option<&str>,
    create: bool,
) -> ApiResult<()> {
    repo.require_admin(caller)?;
    if !repo.repo.gated.is_gated() {
        return Err(not_gated(repo));
    }
    let user = match &who {
        Who::Name(name) => state.db.user_by_name(name).await,
        Who::Id(id) => state.db.user_by_id(*id).await,
    }?
    .ok_or_else(|| ApiError::NotFound("No such user or access request".into()))?;
    let current = state
        .db
        .access_request_status(repo.repo.id, user.id)
        .await?;
    if current.is_none() && !create {
        return Err(ApiError::NotFound(format!(
            "{} has not asked for access to this repository",
            user.name
        )));
    }
    state
        .db
        .set_access_request(repo.repo.id, user.id, status, None, crate::clock::now_ms())
        .await?;
    let target = format!(
        "{}:{}/{}",
        repo.repo_type, repo.repo.namespace, repo.repo.name
    );
    let detail = match reason {
        Some(r) => format!("{} {}: {r}", user.name, status.as_str()),
        None => format!("{} {}", user.name, status.as_str()),
    };
    let actor = caller.user().map_or("-", |u| u.name.as_str());
    let action = if create { "gate.grant" } else { "gate.decide" };
    audit(
        &state.db,
        actor,
        action,
        Some(&repo.repo.namespace),
        Some(&target),
        Some(&detail),
    )
    .await;
    Ok(())
}
