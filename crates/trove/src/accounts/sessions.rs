//! Web sessions: signing in with a user name and password (the JSON login and the web
//! form share it) or with an access token (the web form), and signing out. The session
//! secret travels in a cookie; the database keeps only its hash.

use crate::auth::password::{self, SESSION_COOKIE, SESSION_TTL_MS};
use crate::auth::token::random_alphanumeric;
use crate::auth::{failed, hash_token};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use std::time::Instant;
use trove_db::TokenRole;

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
        return Err(refused(state, ip, WRONG_PASSWORD));
    };
    start(state, user, ip, "session.login", None).await
}

/// Why a token sign-in failed when the token names no one: unknown, expired or revoked
/// look the same, as they do to the API.
pub const BAD_TOKEN: &str = "This token is not valid: it is unknown, expired or revoked";

/// Opens a web session for the owner of an access token (pasted into the login page). The
/// session may do whatever its user may, so only a token that may too — a write token —
/// opens one: a read or fine-grained token is refused rather than upgraded. Failures count
/// against the address's budget like wrong passwords.
pub async fn open_with_token(
    state: &Context,
    ip: Option<std::net::IpAddr>,
    secret: &str,
) -> ApiResult<Session> {
    if let Some(retry_after_secs) = state.auth.failures.blocked(ip, Instant::now()) {
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    let secret = secret.trim();
    let found = if secret.is_empty() {
        None
    } else {
        state
            .db
            .token_owner_by_hash(&hash_token(secret), crate::clock::now_ms())
            .await?
    };
    let Some((token, user)) = found else {
        return Err(refused(state, ip, BAD_TOKEN));
    };
    if let Err(why) = token_may_open_session(token.role) {
        return Err(refused(state, ip, why));
    }
    // The session stands for the token: it ends when the token is revoked or expires, and
    // may not mint tokens (trove-db migration 0031).
    start(state, user, ip, "session.login_token", Some(token.id)).await
}

/// Whether a token of this role may become a web session: only one that already grants
/// everything its user may do.
pub fn token_may_open_session(role: TokenRole) -> Result<(), &'static str> {
    match role {
        TokenRole::Write => Ok(()),
        TokenRole::Read => Err(
            "A read token cannot sign you in: a web session may write. Use a write token or your password",
        ),
        TokenRole::FineGrained => Err(
            "A fine-grained token cannot sign you in: a web session may do more than its scopes. Use a write token or your password",
        ),
    }
}

/// A failed sign-in: counted against the address, then 401 with `message` (or 429).
fn refused(state: &Context, ip: Option<std::net::IpAddr>, message: &str) -> ApiError {
    // A login sends no Authorization header: say what was wrong in its own terms.
    match failed(state, ip) {
        ApiError::InvalidCredentials => ApiError::Unauthenticated(message.to_owned()),
        other => other,
    }
}

/// Opens a session for a user already proven to be who they say (password, token, or a
/// fresh registration), writing `action` to the audit log; `token_id`: the token it was
/// opened with, which it stands for.
pub async fn start(
    state: &Context,
    user: trove_db::User,
    ip: Option<std::net::IpAddr>,
    action: &str,
    token_id: Option<i64>,
) -> ApiResult<Session> {
    super::audit(
        &state.db,
        &user.name,
        action,
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
            token_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_write_token_becomes_a_session() {
        assert!(token_may_open_session(TokenRole::Write).is_ok());
        assert!(
            token_may_open_session(TokenRole::Read).is_err_and(|why| why.contains("read token"))
        );
        assert!(
            token_may_open_session(TokenRole::FineGrained)
                .is_err_and(|why| why.contains("fine-grained"))
        );
    }
}
