//! Hex-encoded content hashes: SHA-256 (LFS oids) and git object ids (SHA-1).

use crate::InvalidIdentifier;
use std::fmt;

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A SHA-256 digest as 64 lowercase hex characters: the LFS object id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let lower = s.to_ascii_lowercase();
        if lower.len() == 64 && is_lower_hex(&lower) {
            Ok(Self(lower))
        } else {
            Err(InvalidIdentifier(format!("invalid sha256 oid: {s:?}")))
        }
    }
    pub fn from_digest(bytes: &[u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({})", self.0)
    }
}

/// A git object id (SHA-1) as 40 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct GitOid(String);

impl GitOid {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let lower = s.to_ascii_lowercase();
        if lower.len() == 40 && is_lower_hex(&lower) {
            Ok(Self(lower))
        } else {
            Err(InvalidIdentifier(format!("invalid git object id: {s:?}")))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True when `s` looks like a full 40-hex commit id (used to tell commit ids from ref names).
    pub fn is_full_hex(s: &str) -> bool {
        s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl fmt::Display for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitOid({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_normalised_to_lowercase() {
        let upper = "A".repeat(64);
        assert_eq!(
            Sha256Hex::parse(&upper).map(|h| h.to_string()),
            Ok("a".repeat(64))
        );
    }

    #[test]
    fn sha256_rejects_wrong_length_and_non_hex() {
        assert!(Sha256Hex::parse(&"a".repeat(63)).is_err());
        assert!(Sha256Hex::parse(&"g".repeat(64)).is_err());
        assert!(Sha256Hex::parse("../../etc/passwd").is_err());
    }

    #[test]
    fn git_oid_needs_40_hex() {
        assert!(GitOid::parse(&"0".repeat(40)).is_ok());
        assert!(GitOid::parse(&"0".repeat(39)).is_err());
        assert!(GitOid::is_full_hex(&"f".repeat(40)));
        assert!(!GitOid::is_full_hex("main"));
    }
}
