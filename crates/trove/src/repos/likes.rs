//! Likes: a user likes a repository they can read; likers and liked repositories are listed
//! newest first, and a private repository's likes are seen only by those who may read it.

use super::RepoRef;
use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_db::{Cursor, Page, Repo, User};

/// The user a like or unlike is for: a signed-in caller whose token may write (a like is
/// theirs to change, as an opened discussion is: a read token only reads).
fn liker<'c>(caller: &'c Caller, repo: &RepoRef) -> ApiResult<&'c User> {
    let user = caller.user().ok_or_else(|| {
        ApiError::Unauthenticated("You must be authenticated to like a repository".into())
    })?;
    repo.require_contribute(caller)?;
    Ok(user)
}

/// Adds the caller's like (idempotent).
pub async fn like(state: &Context, caller: &Caller, repo: &RepoRef) -> ApiResult<()> {
    let user = liker(caller, repo)?;
    let added = state.db.like(user.id, repo.repo.id, now_ms()).await?;
    tracing::info!(
        repo.id = repo.repo.id,
        user.id = user.id,
        added,
        "repo liked"
    );
    Ok(())
}

/// Withdraws the caller's like (idempotent).
pub async fn unlike(state: &Context, caller: &Caller, repo: &RepoRef) -> ApiResult<()> {
    let user = liker(caller, repo)?;
    let removed = state.db.unlike(user.id, repo.repo.id).await?;
    tracing::info!(
        repo.id = repo.repo.id,
        user.id = user.id,
        removed,
        "repo unliked"
    );
    Ok(())
}

/// The users who like a repository the caller may read.
pub async fn likers(
    state: &Context,
    repo: &RepoRef,
    after: Option<Cursor>,
    limit: u32,
) -> ApiResult<Page<(User, i64)>> {
    Ok(state.db.likers(repo.repo.id, after, limit).await?)
}

/// The repositories `user_name` likes, among those the caller may read.
pub async fn liked_by(
    state: &Context,
    caller: &Caller,
    user_name: &str,
    after: Option<Cursor>,
    limit: u32,
) -> ApiResult<Page<(Repo, i64)>> {
    let user = state
        .db
        .user_by_name(user_name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("User {user_name:?} not found")))?;
    Ok(state
        .db
        .liked_repos(user.id, &Access::listing_visibility(caller), after, limit)
        .await?)
}
