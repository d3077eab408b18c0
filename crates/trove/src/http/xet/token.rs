//! CAS access tokens: short-lived, signed by the server, scoped to one repository and to
//! read or write, naming the user they were issued to (none for an anonymous reader) and
//! whether that user, through the token they asked with, may read every repository of the
//! repository's namespace (the reach of `repos::xet`'s visibility rule).
//! The Hub endpoints `xet-{read,write}-token` hand them out after checking the caller's Hub
//! permissions; every CAS request presents one as a Bearer token.

use crate::auth::{Access, Caller};
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
use trove_db::XorbViewer;

/// How long a CAS token lives; the client refreshes through the same route before expiry.
pub const CAS_TOKEN_TTL_SECS: u64 = 3600;
/// Tokens naming their user and reach:
/// `xet3.{repo}.{user or -}.{ns or repo}.{scope}.{exp}.{sig}`.
const TOKEN_PREFIX: &str = "xet3";
/// Tokens of earlier versions, accepted until they expire (an hour) so that an upgrade, or
/// a node of an older version, does not break uploads under way; they reach their
/// repository only, whoever holds them (the safe reading of a token that does not say):
/// `xet2.{repo}.{user or -}.{scope}.{exp}.{sig}` names its user,
const NO_REACH_PREFIX: &str = "xet2";
/// and `xet1.{repo}.{scope}.{exp}.{sig}` names none.
const USERLESS_PREFIX: &str = "xet1";
/// The user field of a token issued to nobody.
const NO_USER: &str = "-";
/// The reach field: the whole namespace, or the repository alone.
const WHOLE_NAMESPACE: &str = "ns";
const REPOSITORY_ONLY: &str = "repo";

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

/// A verified CAS token: the bearer may act on `repo_id` within `scope` (write implies
/// read), for user `user_id` (`None`: an anonymous reader, or an older token), who may
/// (`whole_namespace`) or may not read every repository of `repo_id`'s namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasGrant {
    pub repo_id: i64,
    pub scope: Scope,
    pub user_id: Option<i64>,
    pub whole_namespace: bool,
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

    /// Who asks about xorbs with this token (`repos::xet`'s visibility rule).
    pub fn viewer(&self) -> XorbViewer {
        XorbViewer {
            repo_id: self.repo_id,
            user_id: self.user_id,
            whole_namespace: self.whole_namespace,
        }
    }
}

/// Issue a token for `grant` expiring at `exp` (unix seconds).
pub fn issue(signer: &UrlSigner, grant: CasGrant, exp: u64) -> String {
    let repo = grant.repo_id.to_string();
    let user = grant
        .user_id
        .map_or_else(|| NO_USER.to_owned(), |id| id.to_string());
    let reach = if grant.whole_namespace {
        WHOLE_NAMESPACE
    } else {
        REPOSITORY_ONLY
    };
    let scope = grant.scope.as_str();
    let sig = signer.sign(&["xet-cas-3", &repo, &user, reach, scope], exp);
    format!("{TOKEN_PREFIX}.{repo}.{user}.{reach}.{scope}.{exp}.{sig}")
}

/// Check a presented token: well formed, signed by us, not expired.
pub fn verify(signer: &UrlSigner, token: &str, now: u64) -> Option<CasGrant> {
    let parts: Vec<&str> = token.split('.').collect();
    let (repo, user, reach, scope, exp, sig, signed) = match parts[..] {
        [TOKEN_PREFIX, repo, user, reach, scope, exp, sig] => (
            repo,
            Some(user),
            reach,
            scope,
            exp,
            sig,
            vec!["xet-cas-3", repo, user, reach, scope],
        ),
        [NO_REACH_PREFIX, repo, user, scope, exp, sig] => (
            repo,
            Some(user),
            REPOSITORY_ONLY,
            scope,
            exp,
            sig,
            vec!["xet-cas-2", repo, user, scope],
        ),
        [USERLESS_PREFIX, repo, scope, exp, sig] => (
            repo,
            None,
            REPOSITORY_ONLY,
            scope,
            exp,
            sig,
            vec!["xet-cas", repo, scope],
        ),
        _ => return None,
    };
    let exp: u64 = exp.parse().ok()?;
    if !signer.verify(&signed, exp, sig, now) {
        return None;
    }
    let user_id = match user {
        None | Some(NO_USER) => None,
        Some(id) => Some(id.parse().ok()?),
    };
    let whole_namespace = match reach {
        WHOLE_NAMESPACE => true,
        REPOSITORY_ONLY => false,
        _ => return None,
    };
    Some(CasGrant {
        repo_id: repo.parse().ok()?,
        scope: Scope::parse(scope)?,
        user_id,
        whole_namespace,
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
        let grant = verify(&state.signer, token.trim(), now_secs()).ok_or_else(|| {
            ApiError::Unauthenticated("Invalid or expired CAS access token".into())
        })?;
        if !still_allowed(state, &grant).await? {
            return Err(ApiError::Unauthenticated(
                "This CAS access token's holder may no longer read the repository".into(),
            ));
        }
        Ok(grant)
    }
}

/// Whether the holder of `grant` may still read its repository: the token is signed and
/// stateless, so a user disabled, removed from the organization, or a repository made
/// private since it was issued is judged again here, on every CAS request, by the API's
/// policy for the user's standing (their Hub token's own limits were judged at issue).
async fn still_allowed(state: &AppState, grant: &CasGrant) -> ApiResult<bool> {
    let Some(repo) = state.db.repo_by_id(grant.repo_id).await? else {
        return Ok(false);
    };
    let caller = match grant.user_id {
        None => Caller::Anonymous,
        Some(user_id) => match Caller::of_user(&state.db, user_id, "cas-token").await? {
            Some(caller) => caller,
            None => return Ok(false),
        },
    };
    // A write token also serves a contributor's pull request, which needs only to see the
    // repository (branches are guarded at commit).
    let needed = match grant.scope {
        Scope::Read => Access::Read,
        Scope::Write => Access::Gated,
    };
    Ok(crate::repos::access_to(state, &caller, &repo).await? >= needed)
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
            user_id: caller.user().map(|u| u.id),
            // Seeing what the namespace's other repositories hold is for those who may read
            // them all; a reader of one public repository, or a contributor to it, sees its
            // own xorbs and what they uploaded.
            whole_namespace: Access::in_namespace(&caller, &repo.repo.namespace) >= Access::Read,
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
            user_id: None,
            whole_namespace: false,
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

    #[test]
    fn the_user_and_reach_are_signed_and_older_tokens_reach_their_repository_only() {
        let signer = UrlSigner::new(b"k".to_vec());
        let grant = CasGrant {
            repo_id: 42,
            scope: Scope::Write,
            user_id: Some(7),
            whole_namespace: true,
        };
        let token = issue(&signer, grant, 1000);
        assert_eq!(verify(&signer, &token, 999), Some(grant));
        // Another user's xorbs cannot be claimed by editing the token, nor the user dropped.
        let other_user = token.replacen(".7.", ".8.", 1);
        assert_eq!(verify(&signer, &other_user, 999), None, "user is signed");
        let no_user = token.replacen(".7.", ".-.", 1);
        assert_eq!(verify(&signer, &no_user, 999), None, "user is signed");
        // A member's token cannot be narrowed, nor a reader's widened, by editing it.
        let narrowed = token.replacen(".ns.", ".repo.", 1);
        assert_eq!(verify(&signer, &narrowed, 999), None, "reach is signed");
        let reader = issue(
            &signer,
            CasGrant {
                whole_namespace: false,
                ..grant
            },
            1000,
        );
        assert!(reader.contains(".repo."), "{reader}");
        let widened = reader.replacen(".repo.", ".ns.", 1);
        assert_eq!(verify(&signer, &widened, 999), None, "reach is signed");
        assert_eq!(
            verify(&signer, &reader.replacen(".repo.", ".all.", 1), 999),
            None
        );
        // Tokens of earlier formats, issued before an upgrade, reach their repository only;
        // the oldest names no user.
        let sig = signer.sign(&["xet-cas-2", "42", "7", "write"], 1000);
        let named = format!("xet2.42.7.write.1000.{sig}");
        assert_eq!(
            verify(&signer, &named, 999),
            Some(CasGrant {
                whole_namespace: false,
                ..grant
            })
        );
        let sig = signer.sign(&["xet-cas", "42", "write"], 1000);
        let older = format!("xet1.42.write.1000.{sig}");
        assert_eq!(
            verify(&signer, &older, 999),
            Some(CasGrant {
                user_id: None,
                whole_namespace: false,
                ..grant
            })
        );
        assert_eq!(
            verify(&signer, &older.replacen("xet1.", "xet2.", 1), 999),
            None
        );
        assert_eq!(
            verify(&signer, &named.replacen("xet2.", "xet3.", 1), 999),
            None
        );
    }
}
