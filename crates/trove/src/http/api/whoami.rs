//! `GET /api/whoami-v2`: who the token belongs to (the client validates tokens with it).

use crate::accounts::profile::{avatar_url, display_name};
use crate::auth::{Caller, Credential};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use trove_db::{Membership, ScopeTarget, TokenRole};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    name: String,
    fullname: String,
    avatar_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    email_verified: bool,
    is_pro: bool,
    can_pay: bool,
    orgs: Vec<OrgJson>,
    auth: AuthInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthInfo {
    #[serde(rename = "type")]
    kind: &'static str,
    access_token: AccessToken,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessToken {
    display_name: String,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fine_grained: Option<FineGrained>,
}

/// The Hub's description of a fine-grained token's scopes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FineGrained {
    global: Vec<String>,
    scoped: Vec<Scoped>,
    can_read_gated_repos: bool,
}

#[derive(Serialize)]
struct Scoped {
    entity: Entity,
    permissions: Vec<String>,
}

#[derive(Serialize)]
struct Entity {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
}

/// An organization the user belongs to; `email` is always `null`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgJson {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    name: String,
    fullname: String,
    email: Option<String>,
    can_pay: bool,
    is_enterprise: bool,
    role_in_org: &'static str,
    avatar_url: String,
}

fn org_json(public_url: &str, m: &Membership) -> OrgJson {
    OrgJson {
        kind: "org",
        id: format!("org-{}", m.org.id),
        name: m.org.name.clone(),
        fullname: m.org.fullname.clone().unwrap_or_else(|| m.org.name.clone()),
        email: None,
        can_pay: false,
        is_enterprise: false,
        role_in_org: m.role.as_str(),
        avatar_url: avatar_url(public_url, &m.org.name),
    }
}

/// A namespace scope names an organization the user belongs to, or a user.
fn fine_grained(token: &Credential, orgs: &[Membership]) -> Option<FineGrained> {
    (token.role == TokenRole::FineGrained).then(|| FineGrained {
        global: Vec::new(),
        scoped: token
            .scopes
            .iter()
            .map(|scope| Scoped {
                entity: match &scope.target {
                    ScopeTarget::Repo {
                        repo_type,
                        namespace,
                        name,
                        ..
                    } => Entity {
                        kind: repo_type.as_str(),
                        name: format!("{namespace}/{name}"),
                    },
                    ScopeTarget::Namespace(ns) => Entity {
                        kind: if orgs.iter().any(|m| m.org.name.eq_ignore_ascii_case(ns)) {
                            "org"
                        } else {
                            "user"
                        },
                        name: ns.clone(),
                    },
                },
                permissions: scope.permissions.clone(),
            })
            .collect(),
        can_read_gated_repos: false,
    })
}

pub async fn whoami(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<WhoAmI>> {
    let Caller::User { user, token, orgs } = caller else {
        return Err(ApiError::Unauthenticated(
            "Invalid user token: none was given".into(),
        ));
    };
    Ok(Json(WhoAmI {
        kind: "user",
        id: user.id.to_string(),
        fullname: display_name(&user),
        avatar_url: avatar_url(state.public_url(), &user.name),
        name: user.name,
        email_verified: user.email.is_some(),
        email: user.email,
        is_pro: false,
        can_pay: false,
        orgs: orgs
            .iter()
            .map(|m| org_json(state.public_url(), m))
            .collect(),
        auth: AuthInfo {
            kind: "access_token",
            access_token: AccessToken {
                fine_grained: fine_grained(&token, &orgs),
                display_name: token.name,
                role: token.role.as_str(),
            },
        },
    }))
}
