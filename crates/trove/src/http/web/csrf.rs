//! CSRF protection for the web UI's forms. Every form a signed-in visitor submits carries a
//! hidden `csrf` field: an HMAC of their session secret under the installation key, so it is
//! per session, needs no storage, and cannot be computed by another site (which never sees
//! the `HttpOnly` cookie). Posts are also refused unless they come from this hub's origin
//! (checked for cookie writes by the `Caller` extractor) and the cookie is `SameSite=Strict`.
//!
//! Forms shown before there is a session (log in, sign in with a token, sign up) carry a
//! [`FormToken`] instead: an HMAC of a random nonce the page sets in its own `HttpOnly`,
//! `SameSite=Strict` cookie, so a post is accepted only from a browser that loaded the form.

use crate::auth::password::{FORM_COOKIE, cookie_value, session_from_cookies};
use crate::error::ApiError;
use crate::http::api::accounts::cookie_header;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The signature never expires on its own: it dies with its session.
const NEVER: u64 = u64::MAX;
const PURPOSE: &str = "web-csrf";

/// The CSRF token of the request's session; empty without one.
#[derive(Clone, Debug, Default)]
pub struct CsrfToken(pub String);

impl CsrfToken {
    fn of_session(state: &AppState, session: Option<&str>) -> CsrfToken {
        CsrfToken(
            session
                .map(|secret| state.signer.sign(&[PURPOSE, secret], NEVER))
                .unwrap_or_default(),
        )
    }

    /// Accepts `submitted` only if it is this session's token. Requests authenticated by a
    /// bearer token (scripts) have no session and need none: a browser never sends those.
    pub fn check(
        state: &AppState,
        headers: &axum::http::HeaderMap,
        submitted: &str,
    ) -> Result<(), ApiError> {
        let Some(secret) = cookie_header(headers).and_then(session_from_cookies) else {
            return Ok(());
        };
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Ok(());
        }
        if state.signer.verify(&[PURPOSE, secret], NEVER, submitted, 0) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "This form has expired or did not come from this hub: reload the page and try again"
                    .into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for CsrfToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(CsrfToken::of_session(
            state,
            cookie_header(&parts.headers).and_then(session_from_cookies),
        ))
    }
}

const FORM_PURPOSE: &str = "web-form-csrf";
/// The nonce cookie lives an hour: a login page left open longer is reloaded.
const FORM_COOKIE_SECS: u64 = 3600;

/// The token of a form shown before signing in, and the `Set-Cookie` that starts its nonce
/// when the browser has none yet.
#[derive(Clone, Debug)]
pub struct FormToken {
    pub token: String,
    pub set_cookie: Option<String>,
}

impl FormToken {
    /// Accepts `submitted` only with the nonce cookie it was made for.
    pub fn check(
        state: &AppState,
        headers: &axum::http::HeaderMap,
        submitted: &str,
    ) -> Result<(), ApiError> {
        let nonce = cookie_header(headers).and_then(|h| cookie_value(h, FORM_COOKIE));
        match nonce {
            Some(nonce) if state.signer.verify(&[FORM_PURPOSE, nonce], NEVER, submitted, 0) => {
                Ok(())
            }
            _ => Err(ApiError::Forbidden(
                "This form has expired or did not come from this hub: reload the page and try again"
                    .into(),
            )),
        }
    }

    /// Adds the nonce cookie to a response showing the form, when it is new.
    pub fn attach(&self, response: &mut axum::response::Response) {
        if let Some(cookie) = &self.set_cookie
            && let Ok(value) = axum::http::HeaderValue::from_str(cookie)
        {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, value);
        }
    }
}

impl FromRequestParts<AppState> for FormToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let existing = cookie_header(&parts.headers)
            .and_then(|h| cookie_value(h, FORM_COOKIE))
            .filter(|nonce| {
                nonce.len() == NONCE_LEN && nonce.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .map(str::to_owned);
        let (nonce, set_cookie) = match existing {
            Some(nonce) => (nonce, None),
            None => {
                let nonce = crate::auth::token::random_alphanumeric(NONCE_LEN);
                let secure = if state.public_url().starts_with("https://") {
                    "; Secure"
                } else {
                    ""
                };
                let cookie = format!(
                    "{FORM_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict; Max-Age={FORM_COOKIE_SECS}{secure}"
                );
                (nonce, Some(cookie))
            }
        };
        Ok(FormToken {
            token: state.signer.sign(&[FORM_PURPOSE, &nonce], NEVER),
            set_cookie,
        })
    }
}

const NONCE_LEN: usize = 32;
