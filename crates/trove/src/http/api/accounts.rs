//! Users and organizations: `GET /api/users/{user}/overview`,
//! `GET /api/organizations/{org}/overview`, `GET /api/organizations/{org}/members`, the
//! audit log of an organization (its admins only), and the web login.

use crate::auth::password::{self, SESSION_COOKIE, SESSION_TTL_MS};
use crate::auth::token::random_alphanumeric;
use crate::auth::{Access, Caller, client_ip, failed, hash_token};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, QueryParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Instant;
use trove_db::{Org, OrgRole};

async fn find_org(state: &AppState, name: &str) -> ApiResult<Org> {
    state
        .db
        .org_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Organization {name:?} not found")))
}

fn role_in(caller: &Caller, org: &Org) -> Option<OrgRole> {
    match caller {
        Caller::User { orgs, .. } => orgs.iter().find(|m| m.org.id == org.id).map(|m| m.role),
        Caller::Anonymous => None,
    }
}

fn org_summary(org: &Org) -> Value {
    json!({
        "name": org.name,
        "fullname": org.fullname.clone().unwrap_or_else(|| org.name.clone()),
        "avatarUrl": "",
        "type": "org",
    })
}

/// `GET /api/users/{user}/overview`.
pub async fn user_overview(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let user = state
        .db
        .user_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("User {name:?} not found")))?;
    // Counts of private repositories only for those who may see them.
    let sees_private = Access::in_namespace(&caller, &user.name) >= Access::Read;
    let (models, datasets, spaces) = state.db.count_repos_in(&user.name, sees_private).await?;
    let orgs = state.db.memberships(user.id).await?;
    Ok(Json(json!({
        "_id": user.id.to_string(),
        "user": user.name,
        "fullname": user.name,
        "avatarUrl": "",
        "type": "user",
        "isPro": false,
        "createdAt": format_ms(user.created_at_ms),
        "numModels": models,
        "numDatasets": datasets,
        "numSpaces": spaces,
        "orgs": orgs.iter().map(|m| org_summary(&m.org)).collect::<Vec<_>>(),
    })))
}

/// `GET /api/organizations/{org}/overview`.
pub async fn org_overview(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let org = find_org(&state, &name).await?;
    let sees_private = Access::in_namespace(&caller, &org.name) >= Access::Read;
    let (models, datasets, spaces) = state.db.count_repos_in(&org.name, sees_private).await?;
    let members = state.db.org_members(org.id).await?;
    Ok(Json(json!({
        "_id": format!("org-{}", org.id),
        "name": org.name,
        "fullname": org.fullname.clone().unwrap_or_else(|| org.name.clone()),
        "avatarUrl": "",
        "type": "org",
        "isVerified": false,
        "isFollowing": false,
        "numUsers": members.len(),
        "numModels": models,
        "numDatasets": datasets,
        "numSpaces": spaces,
    })))
}

/// `GET /api/organizations/{org}/members`: everyone sees who the members are; members also
/// see each one's role.
pub async fn org_members(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let org = find_org(&state, &name).await?;
    let show_roles = role_in(&caller, &org).is_some() || caller.user().is_some_and(|u| u.is_admin);
    let members = state.db.org_members(org.id).await?;
    Ok(Json(Value::Array(
        members
            .into_iter()
            .map(|(user, role)| {
                let mut v = json!({
                    "user": user.name,
                    "fullname": user.name,
                    "avatarUrl": "",
                    "type": "user",
                    "isFollowing": false,
                });
                if show_roles {
                    v["role"] = json!(role.as_str());
                }
                v
            })
            .collect(),
    )))
}

/// `GET /api/organizations/{org}/audit-log?limit=&before=`: the organization's security
/// events, newest first, for its admins (and site administrators).
pub async fn org_audit_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    query: QueryParams,
) -> ApiResult<Json<Value>> {
    caller.require_user()?;
    let org = find_org(&state, &name).await?;
    // The same rule as everything else: admin standing in the namespace, through a token
    // that may administer there.
    if Access::in_namespace(&caller, &org.name) < Access::Admin {
        return Err(ApiError::Forbidden(format!(
            "Only admins of {} may read its audit log",
            org.name
        )));
    }
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<u32>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let before = query.get("before").and_then(|b| b.parse::<i64>().ok());
    let events = state
        .db
        .audit_events(Some(&org.name), before, limit)
        .await?;
    Ok(Json(Value::Array(
        events
            .into_iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "at": format_ms(e.at_ms),
                    "actor": e.actor,
                    "action": e.action,
                    "namespace": e.namespace,
                    "target": e.target,
                    "detail": e.detail,
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// The client's address, for the failed-login limiter.
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// Why a login failed, whatever the reason (unknown user, wrong password, disabled account):
/// telling them apart would tell an attacker which names exist.
pub const WRONG_PASSWORD: &str = "Wrong user name or password";

/// Checks a user name and password and opens a web session: the user and the
/// `Set-Cookie` value (HttpOnly, SameSite=Strict). An address out of failed-attempt budget
/// gets 429 before any check; a wrong password counts against it.
pub async fn open_session(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    username: &str,
    password: &str,
) -> ApiResult<(trove_db::User, HeaderValue)> {
    if let Some(retry_after_secs) = state.auth.failures.blocked(ip, Instant::now()) {
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    let found = state.db.user_with_password(username).await?;
    let password = password.to_owned();
    let (user, ok) = match found {
        Some((user, phc)) => {
            let ok =
                tokio::task::spawn_blocking(move || password::verify_password(&password, &phc))
                    .await?;
            (Some(user), ok)
        }
        None => {
            // As slow as a real check, so timing does not tell which names exist.
            tokio::task::spawn_blocking(move || {
                password::verify_password(&password, password::dummy_hash())
            })
            .await?;
            (None, false)
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        // A login sends no Authorization header: say what was wrong in its own terms.
        return Err(match failed(state, ip) {
            ApiError::InvalidCredentials => ApiError::Unauthenticated(WRONG_PASSWORD.to_owned()),
            other => other,
        });
    };
    crate::accounts::audit(
        &state.db,
        &user.name,
        "session.login",
        Some(&user.name),
        None,
        ip.map(|ip| ip.to_string()).as_deref(),
    )
    .await;
    let secret = random_alphanumeric(43);
    state
        .db
        .create_session(
            user.id,
            &hash_token(&secret),
            crate::clock::now_ms() + SESSION_TTL_MS,
        )
        .await?;
    let secure = if state.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL_MS / 1000
    );
    Ok((user, HeaderValue::from_str(&cookie)?))
}

/// Ends the session of the request's cookie, if any; returns the `Set-Cookie` that clears it.
pub async fn close_session(state: &AppState, headers: &HeaderMap) -> ApiResult<HeaderValue> {
    if let Some(secret) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(password::session_from_cookies)
    {
        state.db.delete_session(&hash_token(secret)).await?;
    }
    Ok(HeaderValue::from_static(
        "trove_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
    ))
}

/// `POST /api/login` `{"username", "password"}`: a session cookie for the web UI.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    let (user, cookie) = open_session(&state, ip, &body.username, &body.password).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie);
    Ok((headers, Json(json!({ "name": user.name }))).into_response())
}

/// `POST /api/logout`: ends the session of the cookie, if any, and clears it.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let cleared = close_session(&state, &headers).await?;
    let mut out = HeaderMap::new();
    out.insert(header::SET_COOKIE, cleared);
    Ok((out, Json(json!({}))).into_response())
}
