//! Passwords (argon2id, for the web login) and web sessions (a random secret in a cookie,
//! stored as its SHA-256 like tokens).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "trove_session";
/// The cookie holding the nonce that the CSRF token of the forms shown before signing in
/// (log in, sign up) is bound to.
pub const FORM_COOKIE: &str = "trove_form";
/// How long a web session lasts.
pub const SESSION_TTL_MS: i64 = 30 * 86_400_000;
pub const MIN_PASSWORD_LEN: usize = 8;

/// An argon2id PHC string (`$argon2id$v=19$...`) with a fresh salt and the crate's default
/// (OWASP-recommended) cost.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(super::token::random_alphanumeric(22).as_bytes())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// Checks a password against a stored PHC string (argon2 compares in constant time).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of something that is not a password, verified when the user does not exist so a
/// failed login takes as long whether or not the name is known.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

/// The session secret from a `Cookie` header, if present.
pub fn session_from_cookies(header: &str) -> Option<&str> {
    cookie_value(header, SESSION_COOKIE)
}

/// The non-empty value of the cookie `wanted` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, wanted: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == wanted && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_and_salts_differ() {
        let a = hash_password("correct horse").expect("hash");
        let b = hash_password("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn cookies() {
        assert_eq!(
            session_from_cookies("a=b; trove_session=xyz; c=d"),
            Some("xyz")
        );
        assert_eq!(session_from_cookies("trove_session="), None);
        assert_eq!(session_from_cookies("other=1"), None);
    }
}
