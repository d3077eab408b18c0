//! The extractors every surface shares, each rejecting in the Hub's error format: path
//! segments, JSON bodies, query parameters with repeated keys, and [`RepoAt`] — the
//! repository a request names, found and authorized once.

use crate::auth::{Caller, caller_and_repo};
use crate::error::ApiError;
use crate::repos::{RepoRef, find_readable_id};
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use trove_types::{RepoId, RepoName, RepoType, Revision};

/// `axum::extract::Path` whose rejection is our 400.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))
    }
}

/// `axum::Json` whose rejection is our 400 (bodies are capped by the router's body limit).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("Could not read the request body: {e}")))?;
        // Content types vary (application/json, application/vnd.git-lfs+json…), so parse
        // whatever arrives as JSON rather than insisting on one header.
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
    }
}

/// The `{T}` of `/api/{T}/...`: `models`, `datasets` or `spaces`.
pub fn repo_type_from_plural(segment: &str) -> Result<RepoType, ApiError> {
    RepoType::from_plural(segment).ok_or_else(|| {
        ApiError::NotImplemented(format!("Repository type {segment:?} is not supported"))
    })
}

/// The repository type of a non-API route, from the route's prefix (`/datasets/…`,
/// `/spaces/…`, none for models): one handler then serves the three routes.
pub struct UrlRepoType(pub RepoType);

impl<S: Send + Sync> FromRequestParts<S> for UrlRepoType {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let matched = axum::extract::MatchedPath::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::internal(anyhow::anyhow!("route without a matched path")))?;
        Ok(UrlRepoType(repo_type_of_route(matched.as_str())))
    }
}

/// `/datasets/{ns}/…` → dataset, `/spaces/{ns}/…` → space, anything else → model. Only
/// route templates are given, so a model namespace spelled `datasets` is `{ns}` here.
fn repo_type_of_route(template: &str) -> RepoType {
    if template.starts_with("/datasets/") {
        RepoType::Dataset
    } else if template.starts_with("/spaces/") {
        RepoType::Space
    } else {
        RepoType::Model
    }
}

/// Query parameters with repeated keys kept (`expand=a&expand=b`).
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn from_uri(uri: &Uri) -> Self {
        Self::parse(uri.query().unwrap_or(""))
    }

    pub fn parse(query: &str) -> Self {
        Self(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `true`/`1` are true; absent or anything else is false.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_uri(&parts.uri))
    }
}

/// The `{t}` segment of `/api/{t}/…`; see [`repo_type_from_plural`].
#[derive(serde::Deserialize)]
pub struct TypeParam {
    t: String,
}

impl TypeParam {
    pub fn repo_type(&self) -> Result<RepoType, ApiError> {
        repo_type_from_plural(&self.t)
    }
}

/// The `{rev}` segment of a route, validated (see [`Revision`]); other segments are ignored.
#[derive(serde::Deserialize)]
pub struct RevParam {
    pub rev: Revision,
}

/// The repository a request's path names, found for the caller: the repo type from the `{t}`
/// segment (`/api/{t}/{ns}/{name}/…`) or from the route's prefix (`/datasets/…`,
/// `/spaces/…`, none for models), `{ns}` and `{name}` with a trailing `.git` dropped. A repo
/// the caller may not see answers `RepoNotFound`, exactly as a missing one (see
/// `repos::find_readable`); what the caller may do with it is in `repo.access`.
pub struct RepoAt {
    pub repo: RepoRef,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for RepoAt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The repository is named before the caller is identified, so that a token looked up
        // in the database is read in one transaction with the repository's row; a path that
        // names none is refused after the caller, as before.
        let named = repo_named(parts, state).await;
        // Read once, before the first lookup, for every cache this request consults.
        let epochs = state.db.epochs();
        let id = match &named {
            Ok((repo_type, Some(id))) => Some((*repo_type, id)),
            _ => None,
        };
        let account_epoch = epochs.map(|e| e.account);
        let (caller, row) = caller_and_repo(parts, state.as_ref(), id, account_epoch).await?;
        let repo = match named? {
            (repo_type, Some(id)) => {
                find_readable_id(state, &caller, repo_type, &id, row, epochs).await?
            }
            // Not a valid repository name: no repository has it.
            (_, None) => {
                return Err(ApiError::RepoNotFound {
                    anonymous: caller.is_anonymous(),
                });
            }
        };
        Ok(RepoAt { repo, caller })
    }
}

/// The type and name of the repository a route names (`{t}` or the route's prefix, `{ns}`,
/// `{name}` with a trailing `.git` dropped); `None` for a name no repository can have.
async fn repo_named(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(RepoType, Option<RepoId>), ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}")))?;
    let (mut plural, mut namespace, mut name) = (None, None, None);
    for (key, value) in &params {
        match key {
            "t" => plural = Some(value),
            "ns" => namespace = Some(value),
            "name" => name = Some(value),
            _ => {}
        }
    }
    let (Some(namespace), Some(name)) = (namespace, name) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "RepoAt on a route without {{ns}} and {{name}}"
        )));
    };
    let repo_type = match plural {
        Some(plural) => repo_type_from_plural(plural)?,
        None => UrlRepoType::from_request_parts(parts, state).await?.0,
    };
    let name = name.strip_suffix(".git").unwrap_or(name);
    let id = match (RepoName::parse(namespace), RepoName::parse(name)) {
        (Ok(namespace), Ok(name)) => Some(RepoId::new(namespace, name)),
        _ => None,
    };
    Ok((repo_type, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_give_the_repo_type() {
        assert_eq!(
            repo_type_of_route("/{ns}/{name}/info/lfs/locks"),
            RepoType::Model
        );
        assert_eq!(
            repo_type_of_route("/datasets/{ns}/{name}/info/lfs/locks"),
            RepoType::Dataset
        );
        assert_eq!(
            repo_type_of_route("/spaces/{ns}/{name}/info/lfs/locks/verify"),
            RepoType::Space
        );
    }

    #[test]
    fn repeated_query_keys_are_kept() {
        let q = QueryParams::parse("expand=a&expand=b&recursive=true&x=1");
        assert_eq!(q.all("expand"), vec!["a", "b"]);
        assert!(q.flag("recursive"));
        assert!(q.flag("x"));
        assert!(!q.flag("missing"));
    }
}
