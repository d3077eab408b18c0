//! Signing in and out of the web UI: `GET /login` (the form), `POST /login` (form fields
//! `username`, `password`, `next`, `csrf`), `POST /login/token` ("sign in with a token":
//! `token`, `next`, `csrf`), `GET`/`POST /signup` (self-registration, 404 unless
//! `[auth] allow_signup`) and `POST /logout`. The session is the same as the JSON login's;
//! every post must come from a page of this hub (`Origin`) that the browser loaded (the
//! pre-session [`FormToken`], or the session's CSRF token for logout), so another site can
//! neither sign a visitor in to an account of its choosing nor out.

use super::csrf::{CsrfToken, FormToken};
use super::{Nav, render};
use crate::accounts::{sessions, signup};
use crate::auth::password::MIN_PASSWORD_LEN;
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
    /// The error of the "sign in with a token" form, shown beside it (which stays open).
    pub token_error: Option<String>,
    pub username: String,
    pub next: String,
    /// The pre-session CSRF token both forms carry.
    pub form_csrf: String,
    pub allow_signup: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignupPage {
    pub nav: Nav,
    pub error: Option<String>,
    pub username: String,
    pub form_csrf: String,
    pub min_password: usize,
}

/// Where to go after signing in: a path of this hub, never another site (`//host`, `/\\host`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_owned(),
        _ => "/models".to_owned(),
    }
}

/// A path on this hub: `/` then no second `/`, and no backslash, whitespace or control
/// character anywhere — browsers read `/\host` as `//host`, and drop tabs and newlines
/// from a URL, so `/<tab>/host` would become `//host`, another site.
fn is_local_path(n: &str) -> bool {
    n.starts_with('/')
        && !n.starts_with("//")
        && !n
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn form(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    form_token: FormToken,
    Query(q): Query<NextQuery>,
) -> Response {
    let mut response = render(&LoginPage {
        nav: Nav::new("", &caller, &csrf),
        error: None,
        token_error: None,
        username: String::new(),
        next: safe_next(q.next.as_deref()),
        form_csrf: form_token.token.clone(),
        allow_signup: state.config.auth.allow_signup,
    });
    form_token.attach(&mut response);
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct TokenLoginForm {
    token: String,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct SignupForm {
    username: String,
    password: String,
    confirm: String,
    #[serde(default)]
    csrf: String,
}

fn cross_site() -> ApiError {
    ApiError::Forbidden("Cross-site request refused: sign in from this hub's own page".into())
}

/// A pre-session form's post must come from a page of this hub that the browser loaded.
fn check_origin_and_form(state: &AppState, headers: &HeaderMap, csrf: &str) -> ApiResult<()> {
    if !same_origin(headers, state.public_url()) {
        return Err(cross_site());
    }
    FormToken::check(state, headers, csrf)
}

/// The response to an opened session: its cookie, then `next`.
fn signed_in(session: &sessions::Session, next: &str) -> ApiResult<Response> {
    let mut response = Redirect::to(next).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&session.cookie)?);
    Ok(response)
}

/// A refused sign-in as the form again, with `status` and the message; `Retry-After` for
/// 429. Other errors stay errors.
fn refused_again(error: ApiError, page: impl FnOnce(String) -> Response) -> ApiResult<Response> {
    let (status, message, retry) = match error {
        ApiError::Unauthenticated(message) => {
            (StatusCode::UNAUTHORIZED, format!("{message}."), None)
        }
        ApiError::TooManyRequests { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many attempts: try again in {retry_after_secs} s."),
            Some(retry_after_secs),
        ),
        ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, format!("{message}."), None),
        ApiError::Conflict { message, .. } => (StatusCode::CONFLICT, format!("{message}."), None),
        other => return Err(other),
    };
    let mut response = page(message);
    *response.status_mut() = status;
    if let Some(secs) = retry
        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    form_token: FormToken,
    Form(form): Form<LoginForm>,
) -> ApiResult<Response> {
    check_origin_and_form(&state, &headers, &form.csrf)?;
    let next = safe_next(form.next.as_deref());
    match sessions::open(&state, ip, &form.username, &form.password).await {
        Ok(session) => signed_in(&session, &next),
        Err(error) => refused_again(error, |message| {
            render(&LoginPage {
                nav: Nav::anonymous(),
                error: Some(message),
                token_error: None,
                username: form.username.clone(),
                next: next.clone(),
                form_csrf: form_token.token.clone(),
                allow_signup: state.config.auth.allow_signup,
            })
        }),
    }
}

/// `POST /login/token`: "sign in with a token" — a write token pasted into the form opens a
/// session for its user.
pub async fn login_with_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    form_token: FormToken,
    Form(form): Form<TokenLoginForm>,
) -> ApiResult<Response> {
    check_origin_and_form(&state, &headers, &form.csrf)?;
    let next = safe_next(form.next.as_deref());
    match sessions::open_with_token(&state, ip, &form.token).await {
        Ok(session) => signed_in(&session, &next),
        Err(error) => refused_again(error, |message| {
            render(&LoginPage {
                nav: Nav::anonymous(),
                error: None,
                token_error: Some(message),
                username: String::new(),
                next: next.clone(),
                form_csrf: form_token.token.clone(),
                allow_signup: state.config.auth.allow_signup,
            })
        }),
    }
}

fn signup_enabled(state: &AppState) -> ApiResult<()> {
    if state.config.auth.allow_signup {
        Ok(())
    } else {
        Err(ApiError::NotFound(
            "Sign-up is not enabled on this hub".into(),
        ))
    }
}

/// `GET /signup`: the self-registration form; 404 unless `[auth] allow_signup` is on.
pub async fn signup_form(
    State(state): State<AppState>,
    caller: Caller,
    csrf: CsrfToken,
    form_token: FormToken,
) -> ApiResult<Response> {
    signup_enabled(&state)?;
    let mut response = render(&SignupPage {
        nav: Nav::new("", &caller, &csrf),
        error: None,
        username: String::new(),
        form_csrf: form_token.token.clone(),
        min_password: MIN_PASSWORD_LEN,
    });
    form_token.attach(&mut response);
    Ok(response)
}

/// `POST /signup`: creates the account through `accounts::signup` and signs it in.
pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    form_token: FormToken,
    Form(form): Form<SignupForm>,
) -> ApiResult<Response> {
    signup_enabled(&state)?;
    check_origin_and_form(&state, &headers, &form.csrf)?;
    match signup::register(&state, ip, &form.username, &form.password, &form.confirm).await {
        Ok(session) => signed_in(&session, &format!("/{}", session.user.name)),
        Err(error) => refused_again(error, |message| {
            render(&SignupPage {
                nav: Nav::anonymous(),
                error: Some(message),
                username: form.username.clone(),
                form_csrf: form_token.token.clone(),
                min_password: MIN_PASSWORD_LEN,
            })
        }),
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
        for sneaky in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/a\\b",
            "/\u{0}x",
        ] {
            assert_eq!(safe_next(Some(sneaky)), "/models", "{sneaky:?}");
        }
        assert_eq!(safe_next(Some("/a/b?c=d%2F%2F")), "/a/b?c=d%2F%2F");
        assert_eq!(safe_next(None), "/models");
    }
}
