//! Per-Space subdomains over HTTP (see `spaces::subdomain` for the rules): every request for
//! `{label}.{subdomain_base}` answered by that Space's app at `/` (`http::every_request`
//! asks [`space_label`] before routing), and
//! the hub's `/spaces/{ns}/{name}/subdomain`, which sends a visitor there with a grant.
//!
//! On a Space's origin the caller is a token (`Authorization`) or the origin's own access
//! cookie; the hub's session cookie is never honoured there (it is not meant to be sent
//! there, and is stripped if it is).

use crate::auth::password::SESSION_COOKIE;
use crate::auth::{Caller, Credential};
use crate::error::{ApiError, ApiResult};
use crate::http::body_limit::declared_length;
use crate::http::extract::RepoAt;
use crate::repos::{self, RepoRef};
use crate::spaces::subdomain::{self, GRANT_PATH, PassKind};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use trove_db::TokenRole;
use trove_types::RepoType;

pub(super) fn now_secs() -> u64 {
    u64::try_from(trove_db::unix_now_ms() / 1000).unwrap_or(0)
}

/// The same answer for a Space that does not exist, one the caller may not see, an
/// ambiguous label and a bad grant: nothing about private Spaces leaks.
fn not_found() -> ApiError {
    ApiError::NotFound("No Space is served at this address".into())
}

/// The label of the Space whose origin the request is for (`{label}.{subdomain_base}`),
/// when subdomains are on; `None` for the hub's own origin.
pub fn space_label(state: &AppState, request: &Request) -> Option<String> {
    let base = state.config.spaces.subdomain_base.as_deref()?;
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .and_then(|host| subdomain::label_from_host(host, base))
}

/// Answers a request for the origin of the Space `label` names ([`space_label`]).
pub async fn serve_space(state: &AppState, label: &str, request: Request) -> Response {
    match serve(state, label, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// The one Space a label names, if exactly one does.
async fn space_of_label(state: &AppState, label: &str) -> ApiResult<trove_db::Repo> {
    let mut found = state.db.spaces_by_label(label).await?;
    if found.len() != 1 {
        return Err(not_found());
    }
    found.pop().ok_or_else(not_found)
}

async fn serve(state: &AppState, label: &str, request: Request) -> ApiResult<Response> {
    let space = space_of_label(state, label).await?;
    let (mut parts, body) = request.into_parts();
    drop_session_cookie(&mut parts.headers);
    if parts.uri.path() == GRANT_PATH {
        return take_grant(state, &space, &parts).await;
    }
    let caller = caller(state, &mut parts, space.id).await?;
    let access = repos::access_to(state, &caller, &space).await?;
    let repo = RepoRef {
        page_url: repos::repo_url(state, RepoType::Space, &space.namespace, &space.name),
        repo: space,
        access,
        repo_type: RepoType::Space,
        epochs: None,
    };
    if repo.require_content(&caller).is_err() {
        return Err(not_found());
    }
    let limit = state.config.limits.max_commit_bytes;
    if declared_length(&parts.headers).is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Apps told their path prefix (Gradio's root path) also link under it: both work.
    let path = parts.uri.path().to_owned();
    let prefix = crate::spaces::app_prefix(&repo.repo);
    let rest = match path.strip_prefix(&prefix) {
        Some("") => "/".to_owned(),
        Some(r) if r.starts_with('/') => r.to_owned(),
        _ => path,
    };
    let request = Request::from_parts(parts, body);
    let mut response = super::serve_app(state, &repo, request, &rest).await?;
    super::sandbox::nosniff(&mut response);
    Ok(response)
}

/// Who asks on a Space's origin: a token, else the origin's access cookie, else nobody.
async fn caller(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
    space_id: i64,
) -> ApiResult<Caller> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return <Caller as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            parts, state,
        )
        .await;
    }
    let cookies = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let now = now_secs();
    let user_id = subdomain::access_passes(&cookies)
        .find_map(|pass| subdomain::check(&state.signer, PassKind::Access, pass, space_id, now));
    let Some(user_id) = user_id else {
        return Ok(Caller::Anonymous);
    };
    user_caller(state, user_id).await
}

/// The caller a pass names: the user with read rights only (a pass lets one look at an
/// app, nothing more); nobody when the account is gone or disabled.
pub(super) async fn user_caller(state: &AppState, user_id: i64) -> ApiResult<Caller> {
    let Some(user) = state.db.user_by_id(user_id).await? else {
        return Ok(Caller::Anonymous);
    };
    if user.disabled {
        return Ok(Caller::Anonymous);
    }
    let orgs = state.db.memberships(user.id).await?;
    Ok(Caller::User {
        user,
        token: Credential {
            token_id: None,
            name: "space-access".into(),
            role: TokenRole::Read,
            scopes: Vec::new(),
            expires_at_ms: None,
        },
        orgs,
    })
}

/// `GET {GRANT_PATH}?grant=…` on a Space's origin: a genuine grant of a user who may read
/// the Space becomes the origin's access cookie, and the visitor goes to the app's root.
async fn take_grant(
    state: &AppState,
    space: &trove_db::Repo,
    parts: &axum::http::request::Parts,
) -> ApiResult<Response> {
    let query = parts.uri.query().unwrap_or("");
    let grant = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "grant")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(not_found)?;
    let now = now_secs();
    let user_id = subdomain::check(&state.signer, PassKind::Grant, &grant, space.id, now)
        .ok_or_else(not_found)?;
    let caller = user_caller(state, user_id).await?;
    if repos::access_to(state, &caller, space).await? < crate::auth::Access::Read {
        return Err(not_found());
    }
    let pass = subdomain::issue(&state.signer, PassKind::Access, space.id, user_id, now);
    let secure = state.public_url().starts_with("https://");
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&subdomain::access_cookie(&pass, secure))
            .map_err(|e| ApiError::internal(anyhow::anyhow!("access cookie: {e}")))?,
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Removes the hub's session cookie from a request for a Space's origin.
fn drop_session_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split('=').next().map(str::trim) != Some(SESSION_COOKIE))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// `GET /spaces/{ns}/{name}/subdomain`: to the Space's own origin — with a grant for a
/// signed-in caller (so a private Space opens for its members), plainly for anyone else.
pub async fn open(
    State(state): State<AppState>,
    RepoAt { repo, caller }: RepoAt,
) -> ApiResult<Response> {
    if repo.repo_type != RepoType::Space {
        return Err(ApiError::NotFound("Only Spaces have an app".into()));
    }
    repo.require_content(&caller)?;
    let Some(base) = state.config.spaces.subdomain_base.as_deref() else {
        return Err(ApiError::NotFound(
            "This hub serves Spaces under their path only (no subdomain_base)".into(),
        ));
    };
    let Some(label) = subdomain::label(&repo.repo.namespace, &repo.repo.name) else {
        return Err(ApiError::NotFound(
            "This Space's name is too long for a subdomain: use its path URL".into(),
        ));
    };
    if space_of_label(&state, &label).await.is_err() {
        return Err(ApiError::NotFound(
            "Another Space has the same subdomain: use this one's path URL".into(),
        ));
    }
    let origin = subdomain::origin(state.public_url(), base, &label);
    let location = match caller.user() {
        Some(user) => {
            let grant = subdomain::issue(
                &state.signer,
                PassKind::Grant,
                repo.repo.id,
                user.id,
                now_secs(),
            );
            format!("{origin}{GRANT_PATH}?grant={grant}")
        }
        None => format!("{origin}/"),
    };
    let mut response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response();
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_never_goes_on() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; trove_session=s"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("trove_space_access=p"),
        );
        drop_session_cookie(&mut h);
        assert_eq!(
            h.get(header::COOKIE).map(|v| v.as_bytes()),
            Some(&b"a=1; trove_space_access=p"[..])
        );
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("trove_session=s"));
        drop_session_cookie(&mut only);
        assert!(only.get(header::COOKIE).is_none());
    }
}
