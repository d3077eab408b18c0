//! `GET /api/whoami-v2`: who the token belongs to (the client validates tokens with it).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    name: String,
    fullname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    email_verified: bool,
    is_pro: bool,
    can_pay: bool,
    orgs: Vec<serde_json::Value>,
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
}

pub async fn whoami(caller: Caller) -> ApiResult<Json<WhoAmI>> {
    let Caller::User {
        user,
        role,
        token_name,
    } = caller
    else {
        return Err(ApiError::Unauthenticated(
            "Invalid user token: none was given".into(),
        ));
    };
    Ok(Json(WhoAmI {
        kind: "user",
        id: user.id.to_string(),
        fullname: user.name.clone(),
        name: user.name,
        email_verified: user.email.is_some(),
        email: user.email,
        is_pro: false,
        can_pay: false,
        orgs: Vec::new(),
        auth: AuthInfo {
            kind: "access_token",
            access_token: AccessToken {
                display_name: token_name,
                role: role.as_str(),
            },
        },
    }))
}
