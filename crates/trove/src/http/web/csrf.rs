//! CSRF protection for the web UI's forms. Every form a signed-in visitor submits carries a
//! hidden `csrf` field: an HMAC of their session secret under the installation key, so it is
//! per session, needs no storage, and cannot be computed by another site (which never sees
//! the `HttpOnly` cookie). Posts are also refused unless they come from this hub's origin
//! (checked for cookie writes by the `Caller` extractor) and the cookie is `SameSite=Strict`.

use crate::auth::password::session_from_cookies;
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
