//! Who is asking. A request carries a bearer token (or HTTP Basic with the token as password,
//! for git), or a web session cookie, or nothing. The [`Caller`] extractor turns that into the
//! user, their memberships and the token's limits; [`policy`] decides what they may do.
//! Failed authentications are limited per client address ([`crate::throttle::ratelimit`]); valid ones touch
//! the token's last-used time at most once a minute.

pub mod password;
pub mod policy;
pub mod token;

pub use crate::throttle::AuthRuntime;
pub use policy::Access;
pub use token::{generate_token, hash_token};

use crate::context::Context;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use trove_db::{Membership, TokenRole, TokenScope, User};

/// The credential a request authenticated with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The token's id; for a web session, the token it was opened with (`None`: a password
    /// sign-in).
    pub token_id: Option<i64>,
    /// The token's name (`displayName` in whoami), or `web-session`.
    pub name: String,
    pub role: TokenRole,
    /// Fine-grained tokens only.
    pub scopes: Vec<TokenScope>,
    /// When the token stops working (Unix milliseconds); `None`: never, or not a token.
    pub expires_at_ms: Option<i64>,
}

impl Credential {
    /// A token that may do whatever its user may (tests, sessions).
    pub fn full(name: &str) -> Credential {
        Credential {
            token_id: None,
            name: name.to_owned(),
            role: TokenRole::Write,
            scopes: Vec::new(),
            expires_at_ms: None,
        }
    }
}

/// The authenticated party of a request.
// One per request, moved along with it, never held in bulk: the room an anonymous caller
// leaves unused costs less than a box for every signed-in one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    User {
        user: User,
        token: Credential,
        /// The organizations the user belongs to, with their roles.
        orgs: Vec<Membership>,
    },
}

impl Caller {
    /// A user's own standing — enabled, with their memberships, through a credential
    /// `credential` that may do whatever they may — to judge on their behalf what no request
    /// of theirs asks now (a webhook's owner, a CAS token's holder); `None` for a user gone
    /// or disabled.
    pub async fn of_user(
        db: &trove_db::Db,
        user_id: i64,
        credential: &str,
    ) -> trove_db::Result<Option<Caller>> {
        let Some(user) = db.user_by_id(user_id).await?.filter(|u| !u.disabled) else {
            return Ok(None);
        };
        let orgs = db.memberships(user.id).await?;
        Ok(Some(Caller::User {
            user,
            token: Credential::full(credential),
            orgs,
        }))
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous)
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Caller::User { user, .. } => Some(user),
            Caller::Anonymous => None,
        }
    }

    /// The user, or 401 for anonymous callers.
    pub fn require_user(&self) -> Result<&User, ApiError> {
        self.user().ok_or_else(|| {
            ApiError::Unauthenticated("You must be authenticated: pass a token (HF_TOKEN)".into())
        })
    }
}

/// The client's address (the TCP peer), when the server recorded it.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Did the browser say this request comes from a page of this hub? `Origin` (sent by
/// browsers with every cross-origin request and every POST) must name the host the request
/// was sent to, or the configured public URL; without `Origin`, `Sec-Fetch-Site` must say
/// `same-origin` (or `none`: typed by the user). A request with neither is not from a
/// browser we can trust with a cookie, and is refused.
pub fn same_origin(headers: &axum::http::HeaderMap, public_url: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin") {
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let host_matches = header("host").is_some_and(|host| host.eq_ignore_ascii_case(authority));
        return host_matches || origin.eq_ignore_ascii_case(public_url.trim_end_matches('/'));
    }
    matches!(header("sec-fetch-site"), Some("same-origin" | "none"))
}

/// Did a browser send this request from another site? It names an `Origin` that is not
/// this hub, or says `Sec-Fetch-Site: cross-site` or `same-site` without one. API clients
/// that are not browsers send neither, and pass: for endpoints that take credentials in
/// their body (a JSON login), where a cookie is not what is at stake but the session a
/// forged form would plant.
pub fn from_another_site(headers: &axum::http::HeaderMap, public_url: &str) -> bool {
    if headers.contains_key(axum::http::header::ORIGIN) {
        return !same_origin(headers, public_url);
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    matches!(fetch_site, Some("cross-site" | "same-site"))
}

/// A failed authentication: 401, or 429 once the address is out of budget.
pub fn failed(state: &Context, ip: Option<IpAddr>) -> ApiError {
    match state.auth.failures.fail(ip, Instant::now()) {
        Some(retry_after_secs) => ApiError::TooManyRequests { retry_after_secs },
        None => ApiError::InvalidCredentials,
    }
}

/// The caller is identified once per request: extractors that need it too (`RepoAt`) find it
/// in the request's extensions instead of looking the token up again.
impl<S> FromRequestParts<S> for Caller
where
    S: AsRef<Context> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = state.as_ref();
        Ok(
            caller_and_repo(parts, state, None, state.db.account_epoch())
                .await?
                .0,
        )
    }
}

/// The caller ([`Caller`]'s extractor) and, when `repo` names the repository the request is
/// for, its row if it was read along with the caller's token — one read transaction for both
/// (`Db::token_member_and_repo`) where the token is looked up in the database. `None` when
/// the row was not read (the caller known already, a cached token, a session, no credential,
/// or the repository not found by that name): the caller then reads it as before.
pub(crate) async fn caller_and_repo(
    parts: &mut Parts,
    state: &Context,
    repo: Option<(trove_types::RepoType, &trove_types::RepoId)>,
    account_epoch: Option<u64>,
) -> Result<(Caller, Option<trove_db::Repo>), ApiError> {
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok((caller.clone(), None));
    }
    let (caller, row) = identify(parts, state, repo, account_epoch).await?;
    if let (Some(slot), Caller::User { user, .. }) = (parts.extensions.get::<CallerSlot>(), &caller)
    {
        let _ = slot.0.set(user.name.clone());
    }
    parts.extensions.insert(caller.clone());
    Ok((caller, row))
}

/// Records that token `token_id` was used at `now` (`now_ms`): in the database, off the
/// request's path, at most once a minute per token (`throttle::AuthRuntime::should_touch`).
pub fn note_token_use(state: &Context, token_id: i64, now: Instant, now_ms: i64) {
    if state.auth.should_touch(token_id, now) {
        let db = state.db.clone();
        tokio::spawn(async move {
            if let Err(e) = db.touch_token(token_id, now_ms).await {
                tracing::debug!(error = %e, token.id = token_id, "could not record token use");
            }
        });
    }
}

/// Where a request's access-log line learns who asked: the router puts an empty slot in
/// each request and the `Caller` extractor fills it with the user's name once identified
/// (never with a credential).
#[derive(Clone, Debug, Default)]
pub struct CallerSlot(std::sync::Arc<std::sync::OnceLock<String>>);

impl CallerSlot {
    /// The signed-in user's name, if the request was identified as one.
    pub fn user(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Who is asking: a bearer or Basic token, else a web session cookie, else nobody; with the
/// row of `repo` when it was read in the same transaction as the token (see
/// [`caller_and_repo`]). `account_epoch` was read ([`trove_db::Db::account_epoch`]) before
/// this call: a resolution is kept only if no account write completed since (see
/// throttle/token_cache.rs).
async fn identify(
    parts: &Parts,
    state: &Context,
    repo: Option<(trove_types::RepoType, &trove_types::RepoId)>,
    account_epoch: Option<u64>,
) -> Result<(Caller, Option<trove_db::Repo>), ApiError> {
    {
        let ip = client_ip(parts);
        let now_ms = trove_db::unix_now_ms();
        if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let Some(secret) = header.to_str().ok().and_then(token::token_from_header) else {
                return Err(failed(state, ip));
            };
            let token_hash = hash_token(&secret);
            let now = Instant::now();
            let epoch = account_epoch;
            let mut repo_row = None;
            let resolved = match state.auth.tokens.get(&token_hash, epoch, now, now_ms) {
                Some(hit) => hit,
                None => {
                    let found = match repo {
                        Some((repo_type, id)) => {
                            let (found, row) = state
                                .db
                                .token_member_and_repo(&token_hash, now_ms, repo_type, id)
                                .await?;
                            repo_row = row;
                            found
                        }
                        None => state.db.token_member_by_hash(&token_hash, now_ms).await?,
                    };
                    let Some((token, user, orgs)) = found else {
                        return Err(failed(state, ip));
                    };
                    let resolved = crate::throttle::token_cache::Resolved { token, user, orgs };
                    state
                        .auth
                        .tokens
                        .put(&token_hash, epoch, resolved.clone(), now);
                    resolved
                }
            };
            let crate::throttle::token_cache::Resolved { token, user, orgs } = resolved;
            note_token_use(state, token.id, now, now_ms);
            let credential = Credential {
                token_id: Some(token.id),
                name: token.name,
                role: token.role,
                scopes: token.scopes,
                expires_at_ms: token.expires_at_ms,
            };
            let caller = Caller::User {
                user,
                token: credential,
                orgs,
            };
            return Ok((caller, repo_row));
        }
        let session = parts
            .headers
            .get(axum::http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(password::session_from_cookies);
        if let Some(secret) = session {
            // Browsers attach the cookie to requests other sites make too: a write with it
            // must come from a page of this hub.
            if !parts.method.is_safe() && !same_origin(&parts.headers, state.public_url()) {
                return Err(ApiError::Forbidden(
                    "Cross-site request refused: a web session may only be used by pages of \
                     this hub (API clients send a token instead)"
                        .into(),
                ));
            }
            // A stale cookie is not an attack: the request goes on as anonymous.
            if let Some(member) = state.db.session_member(&hash_token(secret), now_ms).await? {
                // A session opened with a token stands for it (so it may not mint tokens).
                let token = Credential {
                    token_id: member.token_id,
                    ..Credential::full("web-session")
                };
                let caller = Caller::User {
                    user: member.user,
                    token,
                    orgs: member.orgs,
                };
                return Ok((caller, None));
            }
        }
        Ok((Caller::Anonymous, None))
    }
}
