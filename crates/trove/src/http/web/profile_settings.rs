//! `/settings/profile`: the signed-in user sets the full name shown beside their user name,
//! through the same accounts use case as `trove user set`; their avatar is drawn by the hub.

use super::csrf::CsrfToken;
use super::{Nav, render};
use crate::accounts::profile::{self, MAX_FULLNAME_CHARS};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "profile_settings.html")]
pub struct ProfileSettingsPage {
    pub nav: Nav,
    pub name: String,
    pub fullname: String,
    pub avatar_url: String,
    pub max_chars: usize,
    pub saved: bool,
    pub error: Option<String>,
}

fn login_first(caller: &Caller) -> Option<Response> {
    caller
        .is_anonymous()
        .then(|| Redirect::to("/login?next=/settings/profile").into_response())
}

async fn profile_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfToken,
    saved: bool,
    error: Option<String>,
) -> ApiResult<Response> {
    let user = caller.require_user()?;
    // Read back from the database: the caller's copy predates a save.
    let user = state
        .db
        .user_by_id(user.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("User not found".into()))?;
    let mut response = render(&ProfileSettingsPage {
        nav: Nav::new("", caller, csrf),
        avatar_url: profile::avatar_url(state.public_url(), &user.name),
        fullname: user.fullname.clone().unwrap_or_default(),
        name: user.name,
        max_chars: MAX_FULLNAME_CHARS,
        saved,
        error: error.clone(),
    });
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

pub async fn page(State(state): State<AppState>, caller: Caller, csrf: CsrfToken) -> Response {
    if let Some(redirect) = login_first(&caller) {
        return redirect;
    }
    profile_page(&state, &caller, &csrf, false, None)
        .await
        .unwrap_or_else(super::error_page)
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    fullname: String,
}

pub async fn save(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    headers: HeaderMap,
    form: Result<Form<ProfileForm>, FormRejection>,
) -> Response {
    if let Some(redirect) = login_first(&caller) {
        return redirect;
    }
    async {
        let form = super::form_fields(form)?;
        CsrfToken::check(&state, &headers, &form.csrf)?;
        let user = caller.require_user()?;
        match profile::set_fullname(&state.db, &user.name, user, &form.fullname).await {
            Ok(()) => profile_page(&state, &caller, &csrf, true, None).await,
            Err(ApiError::BadRequest(message)) => {
                profile_page(&state, &caller, &csrf, false, Some(message)).await
            }
            Err(e) => Err(e),
        }
    }
    .await
    .unwrap_or_else(super::error_page)
}
