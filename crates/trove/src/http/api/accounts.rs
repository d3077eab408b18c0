//! Users and organizations: `GET /api/users/{user}/overview`,
//! `GET /api/organizations/{org}/overview`, `GET /api/organizations/{org}/members`, the
//! audit log of an organization (its admins only), and the web login.

use crate::accounts::profile::{avatar_url, display_name};
use crate::accounts::sessions;
use crate::auth::{Access, Caller, client_ip};
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

fn org_summary(state: &AppState, org: &Org) -> Value {
    json!({
        "name": org.name,
        "fullname": org.fullname.clone().unwrap_or_else(|| org.name.clone()),
        "avatarUrl": avatar_url(state.public_url(), &org.name),
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
        "fullname": display_name(&user),
        "avatarUrl": avatar_url(state.public_url(), &user.name),
        "type": "user",
        "isPro": false,
        "createdAt": format_ms(user.created_at_ms),
        "numModels": models,
        "numDatasets": datasets,
        "numSpaces": spaces,
        "orgs": orgs.iter().map(|m| org_summary(&state, &m.org)).collect::<Vec<_>>(),
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
        "avatarUrl": avatar_url(state.public_url(), &org.name),
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
                    "fullname": display_name(&user),
                    "avatarUrl": avatar_url(state.public_url(), &user.name),
                    "user": user.name,
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

/// The request's `Cookie` header, when it is text.
pub fn cookie_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

/// `POST /api/login` `{"username", "password"}`: a session cookie for the web UI.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    // A page of another site could post this (a `text/plain` form passes for JSON) and sign
    // the visitor into the attacker's account: login CSRF.
    if crate::auth::from_another_site(&headers, state.public_url()) {
        return Err(ApiError::Forbidden(
            "Cross-site request refused: sign in from this hub's own page".into(),
        ));
    }
    let session = sessions::open(&state, ip, &body.username, &body.password).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, HeaderValue::from_str(&session.cookie)?);
    Ok((headers, Json(json!({ "name": session.user.name }))).into_response())
}

/// `POST /api/logout`: ends the session of the cookie, if any, and clears it.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let cleared = sessions::close(&state, cookie_header(&headers)).await?;
    let mut out = HeaderMap::new();
    out.insert(header::SET_COOKIE, HeaderValue::from_str(&cleared)?);
    Ok((out, Json(json!({}))).into_response())
}
