//! CAS access tokens: short-lived, signed by the server, scoped to one repository and to
//! read or write. The Hub endpoints `xet-{read,write}-token` hand them out after checking
//! the caller's Hub permissions; every CAS request presents one as a Bearer token.

use crate::auth::Caller;
use crate::clock::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiPath, QueryParams, repo_type_from_plural};
use crate::repos::{find_readable, resolve, with_git};
use crate::signing::UrlSigner;
use crate::state::AppState;
use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// How long a CAS token lives; the client refreshes through the same route before expiry.
pub const CAS_TOKEN_TTL_SECS: u64 = 3600;
const TOKEN_PREFIX: &str = "xet1";

/// What a CAS token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// A verified CAS token: the bearer may act on `repo_id` within `scope` (write implies read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasGrant {
    pub repo_id: i64,
    pub scope: Scope,
}

impl CasGrant {
    pub fn may_write(&self) -> bool {
        self.scope == Scope::Write
    }

    pub fn require_write(&self) -> ApiResult<()> {
        match self.scope {
            Scope::Write => Ok(()),
            Scope::Read => Err(ApiError::Forbidden("This CAS token is read-only".into())),
        }
    }
}

fn signed_fields(repo_id: &str, scope: &str) -> [String; 3] {
    ["xet-cas".to_owned(), repo_id.to_owned(), scope.to_owned()]
}

/// Issue a token for `grant` expiring at `exp` (unix seconds).
pub fn issue(signer: &UrlSigner, grant: CasGrant, exp: u64) -> String {
    let repo = grant.repo_id.to_string();
    let fields = signed_fields(&repo, grant.scope.as_str());
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    let sig = signer.sign(&refs, exp);
    format!("{TOKEN_PREFIX}.{repo}.{}.{exp}.{sig}", grant.scope.as_str())
}

/// Check a presented token: well formed, signed by us, not expired.
pub fn verify(signer: &UrlSigner, token: &str, now: u64) -> Option<CasGrant> {
    let mut parts = token.split('.');
    let (prefix, repo, scope, exp, sig) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if prefix != TOKEN_PREFIX || parts.next().is_some() {
        return None;
    }
    let exp: u64 = exp.parse().ok()?;
    let fields = signed_fields(repo, scope);
    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
    if !signer.verify(&refs, exp, sig, now) {
        return None;
    }
    Some(CasGrant {
        repo_id: repo.parse().ok()?,
        scope: Scope::parse(scope)?,
    })
}

impl FromRequestParts<AppState> for CasGrant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthenticated("A CAS access token is required".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::Unauthenticated("A CAS access token is required".into()))?;
        verify(&state.signer, token.trim(), now_secs())
            .ok_or_else(|| ApiError::Unauthenticated("Invalid or expired CAS access token".into()))
    }
}

/// The CAS base URL the client talks to: the hub's own origin, under `/xet`.
pub fn cas_url(state: &AppState) -> String {
    format!("{}/xet", state.public_url())
}

/// `GET /api/{T}/{repo}/xet-read-token/{rev}`.
pub async fn read_token(
    state: axum::extract::State<AppState>,
    caller: Caller,
    path: ApiPath<(String, String, String, String)>,
    query: QueryParams,
) -> ApiResult<Response> {
    token_endpoint(state, caller, path, query, Scope::Read).await
}

/// `GET /api/{T}/{repo}/xet-write-token/{rev}` (also `None?create_pr=1` for a new PR).
pub async fn write_token(
    state: axum::extract::State<AppState>,
    caller: Caller,
    path: ApiPath<(String, String, String, String)>,
    query: QueryParams,
) -> ApiResult<Response> {
    token_endpoint(state, caller, path, query, Scope::Write).await
}

async fn token_endpoint(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    ApiPath((t, ns, name, rev)): ApiPath<(String, String, String, String)>,
    query: QueryParams,
    scope: Scope,
) -> ApiResult<Response> {
    let repo_type = repo_type_from_plural(&t)?;
    let repo = find_readable(&state, &caller, repo_type, &ns, &name).await?;
    match scope {
        // Uploading is contributing (a pull request's files); branches are guarded at commit.
        Scope::Write => repo.require_contribute(&caller)?,
        Scope::Read => repo.require_content(&caller)?,
    }
    // A PR that does not exist yet is named by the literal revision "None"; any other
    // revision must resolve, as on the Hub.
    let new_pr = rev == "None" && query.flag("create_pr");
    if !new_pr {
        with_git(&state, &repo, move |git| resolve(git, &rev).map(|_| ())).await?;
    }
    let exp = now_secs() + CAS_TOKEN_TTL_SECS;
    let token = issue(
        &state.signer,
        CasGrant {
            repo_id: repo.repo.id,
            scope,
        },
        exp,
    );
    let cas = cas_url(&state);
    let mut response =
        Json(json!({ "accessToken": token, "exp": exp, "casUrl": cas })).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-xet-cas-url", cas.as_str()),
        ("x-xet-access-token", token.as_str()),
        ("x-xet-token-expiration", &exp.to_string()),
    ] {
        headers.insert(name, HeaderValue::from_str(value)?);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_unaltered_and_unexpired() {
        let signer = UrlSigner::new(b"k".to_vec());
        let grant = CasGrant {
            repo_id: 42,
            scope: Scope::Read,
        };
        let token = issue(&signer, grant, 1000);
        assert_eq!(verify(&signer, &token, 999), Some(grant));
        assert_eq!(verify(&signer, &token, 1001), None, "expired");
        let upgraded = token.replace(".read.", ".write.");
        assert_eq!(verify(&signer, &upgraded, 999), None, "scope is signed");
        let other_repo = token.replacen(".42.", ".43.", 1);
        assert_eq!(verify(&signer, &other_repo, 999), None, "repo is signed");
        let later = token.replace(".1000.", ".2000.");
        assert_eq!(verify(&signer, &later, 999), None, "expiry is signed");
        assert_eq!(verify(&signer, "garbage", 0), None);
        assert_eq!(verify(&signer, &format!("{token}.x"), 999), None);
    }
}
