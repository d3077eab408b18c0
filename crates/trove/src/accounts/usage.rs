//! The storage listing of a namespace's settings (`list_user_repos`, `hf repos ls`): every
//! repository of the caller's own namespace or of an organization they belong to, with the
//! bytes of its large files.

use crate::auth::{Access, Caller};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use trove_db::{Cursor, Page, RepoUsage};

/// A page of `namespace`'s repositories (the caller's own when `None`) and the namespace's
/// total, for each repository's share. Members of any role may list; others get 403 (401
/// anonymous), an unknown organization 404.
pub async fn repositories(
    state: &Context,
    caller: &Caller,
    namespace: Option<&str>,
    after: Option<Cursor>,
    limit: u32,
) -> ApiResult<(Page<RepoUsage>, u64)> {
    let Caller::User { user, .. } = caller else {
        return Err(ApiError::Unauthenticated(
            "You must be authenticated to list a namespace's repositories".into(),
        ));
    };
    let namespace = match namespace {
        None => user.name.clone(),
        Some(ns) => {
            let org = state
                .db
                .org_by_name(ns)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Organization {ns:?} not found")))?;
            org.name
        }
    };
    if Access::in_namespace(caller, &namespace) < Access::Read {
        return Err(ApiError::Forbidden(format!(
            "You must be a member of {namespace} to list its repositories"
        )));
    }
    let page = state.db.namespace_usage(&namespace, after, limit).await?;
    let total = state.db.namespace_lfs_bytes(&namespace).await?;
    Ok((page, total))
}
