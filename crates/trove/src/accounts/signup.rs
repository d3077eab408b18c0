//! Self-registration (`[auth] allow_signup`, off by default): a visitor picks a user name
//! and a password and gets an account and a web session. The name follows the rules of
//! every account name (`RepoName::parse_namespace`, as `trove user create` and the API
//! apply them), the password the admin CLI's policy; every attempt, good or bad, spends the
//! address's sign-in budget, so a script cannot mint accounts or probe names in bulk.

use super::sessions::{self, Session};
use crate::auth::password::{self, MIN_PASSWORD_LEN};
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use std::time::Instant;
use trove_types::RepoName;

/// Why a sign-up form is refused, in the words the page shows.
#[derive(Debug, PartialEq, Eq)]
pub enum SignupRefusal {
    /// The name breaks the account-name rules.
    Name(String),
    /// The password is too short, or differs from its confirmation.
    Password(String),
}

/// Checks the form's fields before anything is written.
pub fn check_fields(name: &str, password: &str, confirm: &str) -> Result<RepoName, SignupRefusal> {
    let name = RepoName::parse_namespace(name).map_err(|e| {
        let why = e.0.rsplit_once(": ").map_or(e.0.as_str(), |(_, why)| why);
        SignupRefusal::Name(format!("This user name cannot be used: {why}"))
    })?;
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(SignupRefusal::Password(format!(
            "The password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password != confirm {
        return Err(SignupRefusal::Password(
            "The two passwords differ".to_owned(),
        ));
    }
    Ok(name)
}

/// Creates the account and opens its session. 404 when sign-up is off; 429 once the
/// address is out of budget; 400 for a refused field; 409 when the name is taken (by a
/// user or an organization).
pub async fn register(
    state: &Context,
    ip: Option<std::net::IpAddr>,
    name: &str,
    password: &str,
    confirm: &str,
) -> ApiResult<Session> {
    if !state.config.auth.allow_signup {
        return Err(ApiError::NotFound(
            "Sign-up is not enabled on this hub".into(),
        ));
    }
    if let Some(retry_after_secs) = state.auth.failures.spend(ip, Instant::now()) {
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    let name = check_fields(name, password, confirm).map_err(|refusal| match refusal {
        SignupRefusal::Name(m) | SignupRefusal::Password(m) => ApiError::BadRequest(m),
    })?;
    let owned = password.to_owned();
    let phc = tokio::task::spawn_blocking(move || password::hash_password(&owned))
        .await?
        .map_err(ApiError::internal)?;
    let user = state
        .db
        .create_user(&name, None, false)
        .await
        .map_err(|e| match e {
            trove_db::DbError::Conflict { .. } => ApiError::Conflict {
                message: format!("The name {name} is taken: choose another one"),
                url: None,
            },
            other => other.into(),
        })?;
    state.db.set_password_hash(user.id, &phc).await?;
    super::audit(
        &state.db,
        &user.name,
        "user.signup",
        Some(&user.name),
        Some(&user.name),
        ip.map(|ip| ip.to_string()).as_deref(),
    )
    .await;
    sessions::start(state, user, ip, "session.login", None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_account_rules() {
        assert!(check_fields("ada", "long enough", "long enough").is_ok());
        for bad in [
            "",
            "a/b",
            "-ada",
            "ada..x",
            "api",
            "signup",
            "x".repeat(200).as_str(),
        ] {
            assert!(
                matches!(
                    check_fields(bad, "long enough", "long enough"),
                    Err(SignupRefusal::Name(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn passwords_follow_the_cli_policy_and_must_match() {
        assert!(matches!(
            check_fields("ada", "short", "short"),
            Err(SignupRefusal::Password(m)) if m.contains("at least 8")
        ));
        assert!(matches!(
            check_fields("ada", "long enough", "long enougH"),
            Err(SignupRefusal::Password(m)) if m.contains("differ")
        ));
        // Characters, not bytes: eight accented letters are enough.
        assert!(check_fields("ada", "éééééééé", "éééééééé").is_ok());
    }
}
