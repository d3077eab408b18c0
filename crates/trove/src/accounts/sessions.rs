//! Web sessions: signing in with a user name and password (the JSON login and the web
//! form share it) and signing out. The session secret travels in a cookie; the database
//! keeps only its hash.

use crate::auth::password::{self, SESSION_COOKIE, SESSION_TTL_MS};
use crate::auth::token::random_alphanumeric;
use crate::auth::{failed, hash_token};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use std::time::Instant;

/// Why a login failed, whatever the reason (unknown user, wrong password, disabled account):
/// telling them apart would tell an attacker which names exist.
pub const WRONG_PASSWORD: &str = "Wrong user name or password";

/// An opened web session.
pub struct Session {
    pub user: trove_db::User,
    /// The `Set-Cookie` value that carries it (HttpOnly, SameSite=Strict).
    pub cookie: String,
}

/// Checks a user name and password and opens a web session. An address out of
/// failed-attempt budget gets 429 before any check; a wrong password counts against it.
pub async fn open(
    state: &Context,
    ip: Option<std::net::IpAddr>,
    username: &str,
    password: &str,
) -> ApiResult<Session> {
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
    super::audit(
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
    Ok(Session { user, cookie })
}

/// Ends the session named by a request's `Cookie` header, if any; returns the `Set-Cookie`
/// value that clears it.
pub async fn close(state: &Context, cookie_header: Option<&str>) -> ApiResult<String> {
    if let Some(secret) = cookie_header.and_then(password::session_from_cookies) {
        state.db.delete_session(&hash_token(secret)).await?;
    }
    Ok(format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}
