//! Bearer secrets: generation, the at-rest hash, reading them from `Authorization`, and the
//! lifetimes the CLI accepts (`30d`, `12h`).

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Tokens look like the Hub's (`hf_` + 34 alphanumerics) so tools that sniff the prefix accept them.
pub fn generate_token() -> String {
    format!("hf_{}", random_alphanumeric(34))
}

/// A random secret of `len` alphanumerics (~5.95 bits each) from the OS-seeded CSPRNG.
pub fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Tokens carry ~200 bits of entropy, so a plain SHA-256 is a sound at-rest hash (no salt or
/// slow KDF needed, unlike passwords) and lets us look a token up by its hash. The lookup is
/// an index seek on the hash, never a comparison of secrets, so it leaks nothing by timing.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Extracts the secret from `Authorization: Bearer <token>` or, for git clients,
/// `Authorization: Basic base64(<any user>:<token>)`.
pub fn token_from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Parses a lifetime like `30d`, `12h`, `45m` or `90s` into milliseconds.
pub fn parse_lifetime(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit_ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_from_bearer_and_basic() {
        assert_eq!(
            token_from_header("Bearer hf_abc").as_deref(),
            Some("hf_abc")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("user:hf_xyz");
        assert_eq!(
            token_from_header(&format!("Basic {basic}")).as_deref(),
            Some("hf_xyz")
        );
        assert_eq!(token_from_header("Digest x"), None);
        assert_eq!(token_from_header("Basic !!!"), None);
        assert_eq!(token_from_header("Bearer"), None);
        let t = generate_token();
        assert!(t.starts_with("hf_") && t.len() == 37);
        assert_eq!(hash_token(&t).len(), 32);
        assert_ne!(generate_token(), t);
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d"), Some(30 * 86_400_000));
        assert_eq!(parse_lifetime("12h"), Some(12 * 3_600_000));
        assert_eq!(parse_lifetime("2s"), Some(2_000));
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1y",
            "1.5h",
            "h1",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_lifetime(bad), None, "{bad}");
        }
    }
}
