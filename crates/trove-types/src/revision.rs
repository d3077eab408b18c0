//! Branch names as git accepts them (`git check-ref-format`), for branch and tag creation.

use crate::InvalidIdentifier;

/// A branch or tag short name that git accepts under `refs/heads/` or `refs/tags/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BranchName(String);

impl BranchName {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let fail = |why: &str| {
            Err(InvalidIdentifier(format!(
                "Invalid reference name {s:?}: {why}"
            )))
        };
        if s.is_empty() || s.len() > 255 {
            return fail("must be 1 to 255 characters long");
        }
        if s.starts_with("refs/") {
            return fail("give the short name, without 'refs/'");
        }
        if s.bytes()
            .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
        {
            return fail("contains a character git forbids");
        }
        if s.contains("..") || s.contains("@{") || s.contains("//") || s == "@" {
            return fail("contains a sequence git forbids");
        }
        if s.starts_with(['/', '-']) || s.ends_with(['/', '.']) || s.ends_with(".lock") {
            return fail("starts or ends in a way git forbids");
        }
        if s.split('/')
            .any(|seg| seg.starts_with('.') || seg.ends_with(".lock"))
        {
            return fail("a path component starts with '.' or ends with '.lock'");
        }
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return fail("looks like a commit id");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_branch_names() {
        for ok in ["main", "dev/x", "v1.0", "release-2024_01", "feature/a.b"] {
            assert!(BranchName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_git_refuses() {
        let hex = "a".repeat(40);
        for bad in [
            "",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "/a",
            "a/",
            "a.",
            "a.lock",
            "a/.b",
            "-a",
            "a@{1}",
            "@",
            "refs/heads/x",
            "a//b",
            &hex,
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
