//! What a user shows of themselves: a display name they choose (the Hub's `fullname`) and
//! an avatar the hub draws from their name, served by the hub itself so that an air-gapped
//! install shows it too.

use crate::error::{ApiError, ApiResult};
use sha2::{Digest, Sha256};
use trove_db::{Db, User};

/// The longest display name accepted, in characters.
pub const MAX_FULLNAME_CHARS: usize = 100;

/// What a page or the API shows as the user's name: their full name, or their user name.
pub fn display_name(user: &User) -> String {
    user.fullname.clone().unwrap_or_else(|| user.name.clone())
}

/// The stable URL of the avatar of the user or organization `name`.
pub fn avatar_url(public_url: &str, name: &str) -> String {
    format!("{public_url}/api/avatars/{name}")
}

/// A full name as given: trimmed; empty means none. Refused (400) when longer than
/// [`MAX_FULLNAME_CHARS`] or holding a control character.
pub fn parse_fullname(raw: &str) -> ApiResult<Option<String>> {
    let name = raw.trim();
    if name.chars().count() > MAX_FULLNAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "Invalid full name: at most {MAX_FULLNAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "Invalid full name: control characters are not allowed",
        ));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// Sets (or clears, with an empty name) `user`'s full name, audited with `actor`.
pub async fn set_fullname(db: &Db, actor: &str, user: &User, raw: &str) -> ApiResult<()> {
    let fullname = parse_fullname(raw)?;
    if !db.set_user_fullname(user.id, fullname.as_deref()).await? {
        return Err(ApiError::NotFound(format!(
            "User {:?} not found",
            user.name
        )));
    }
    super::audit(
        db,
        actor,
        "user.fullname",
        Some(&user.name),
        Some(&user.name),
        fullname.as_deref(),
    )
    .await;
    Ok(())
}

/// A 5×5 identicon, mirrored left to right, in a colour taken from the name: the same name
/// (in any case) always draws the same picture.
pub fn identicon_svg(name: &str) -> String {
    let digest = Sha256::digest(name.to_ascii_lowercase().as_bytes());
    let hue = u16::from_be_bytes([digest[0], digest[1]]) % 360;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 70 70\" width=\"70\" \
         height=\"70\"><rect width=\"70\" height=\"70\" fill=\"hsl({hue},35%,92%)\"/>\
         <g fill=\"hsl({hue},55%,48%)\">"
    );
    for row in 0..5usize {
        for col in 0..3usize {
            let bit = row * 3 + col;
            if digest[2 + bit / 8] >> (bit % 8) & 1 == 1 {
                for x in [col, 4 - col] {
                    svg.push_str(&format!(
                        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\"/>",
                        5 + x * 12,
                        5 + row * 12
                    ));
                    if x == 2 {
                        break;
                    }
                }
            }
        }
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identicons_are_stable_symmetric_and_per_name() {
        let a = identicon_svg("alice");
        assert_eq!(a, identicon_svg("ALICE"));
        assert_ne!(a, identicon_svg("bob"));
        assert!(a.starts_with("<svg") && a.ends_with("</svg>"));
    }

    #[test]
    fn full_names_are_trimmed_bounded_and_printable() {
        assert_eq!(
            parse_fullname("  Ada Lovelace ").ok(),
            Some(Some("Ada Lovelace".into()))
        );
        assert_eq!(parse_fullname("   ").ok(), Some(None));
        assert!(parse_fullname("a\u{7}b").is_err());
        assert!(parse_fullname(&"x".repeat(101)).is_err());
        assert!(parse_fullname(&"é".repeat(100)).is_ok());
    }
}
