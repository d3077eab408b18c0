//! Signing in and out of the web UI: `GET /login` (the form), `POST /login` (form fields
//! `username`, `password`, `next`) and `POST /logout`. The session is the same as the JSON
//! login's; both posts must come from a page of this hub (`Origin`), so another site can
//! neither sign a visitor in to an account of its choosing nor out.

use super::csrf::CsrfToken;
use super::{Nav, render};
use crate::accounts::sessions;
use crate::auth::{Caller, same_origin};
use crate::error::{ApiError, ApiResult};
use crate::http::api::accounts::{ClientIp, cookie_header};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub nav: Nav,
    pub error: Option<String>,
    pub username: String,
    pub next: String,
}

/// Where to go after signing in: a path of this hub, never another site (`//host`, `/\\host`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.to_owned()
        }
        _ => "/models".to_owned(),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn form(caller: Caller, csrf: CsrfToken, Query(q): Query<NextQuery>) -> Response {
    render(&LoginPage {
        nav: Nav::new("", &caller, &csrf),
        error: None,
        username: String::new(),
        next: safe_next(q.next.as_deref()),
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

fn cross_site() -> ApiError {
    ApiError::Forbidden("Cross-site request refused: sign in from this hub's own page".into())
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Form(form): Form<LoginForm>,
) -> ApiResult<Response> {
    if !same_origin(&headers, state.public_url()) {
        return Err(cross_site());
    }
    let next = safe_next(form.next.as_deref());
    let again = |status: StatusCode, message: String| {
        let mut response = render(&LoginPage {
            nav: Nav::anonymous(),
            error: Some(message),
            username: form.username.clone(),
            next: next.clone(),
        });
        *response.status_mut() = status;
        response
    };
    match sessions::open(&state, ip, &form.username, &form.password).await {
        Ok(session) => {
            let mut response = Redirect::to(&next).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_str(&session.cookie)?);
            Ok(response)
        }
        Err(ApiError::Unauthenticated(message)) => {
            Ok(again(StatusCode::UNAUTHORIZED, format!("{message}.")))
        }
        Err(ApiError::TooManyRequests { retry_after_secs }) => {
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed attempts: try again in {retry_after_secs} s."),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<Response> {
    if !same_origin(&headers, state.public_url()) {
        return Err(cross_site());
    }
    // A post without the form (or without its token) is refused like a forged one.
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    CsrfToken::check(&state, &headers, &csrf)?;
    let cleared = sessions::close(&state, cookie_header(&headers)).await?;
    let mut response = Redirect::to("/models").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&cleared)?);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_hub() {
        assert_eq!(safe_next(Some("/acme/detector")), "/acme/detector");
        assert_eq!(safe_next(Some("//evil.example/x")), "/models");
        assert_eq!(safe_next(Some("/\\evil.example")), "/models");
        assert_eq!(safe_next(Some("https://evil.example")), "/models");
        assert_eq!(safe_next(None), "/models");
    }
}
