//! Revisions as requests name them, and branch names as git accepts them (`git
//! check-ref-format`), for branch and tag creation.

use crate::InvalidIdentifier;
use std::fmt;

/// The branch every repository is created with, and the revision meant when none is named.
pub const DEFAULT_BRANCH: &str = "main";

/// The longest revision accepted, in bytes: git refuses longer ref names on most filesystems
/// (a component is at most 255 bytes), and a commit id is 40.
pub const REVISION_MAX_LEN: usize = 255;

/// A revision as a request names it — a branch or tag name, a full ref (`refs/pr/1`) or a
/// commit id, full or abbreviated — checked at the edge so that nothing unvalidated reaches
/// git: 1 to 255 bytes, no NUL or other control character, no leading `-`. Whether it
/// exists is for git to say.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Revision(String);

impl Revision {
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        if s.is_empty() || s.len() > REVISION_MAX_LEN {
            return Err(InvalidIdentifier(format!(
                "Invalid revision: must be 1 to {REVISION_MAX_LEN} bytes long"
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidIdentifier(
                "Invalid revision: contains a control character".to_owned(),
            ));
        }
        // No ref git accepts starts with '-', and one that did would read as an option on
        // a git command line.
        if s.starts_with('-') {
            return Err(InvalidIdentifier(
                "Invalid revision: must not start with '-'".to_owned(),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// [`DEFAULT_BRANCH`].
    pub fn default_branch() -> Self {
        Self(DEFAULT_BRANCH.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this names the default branch, short or full.
    pub fn is_default_branch(&self) -> bool {
        self.0 == DEFAULT_BRANCH || self.0.strip_prefix("refs/heads/") == Some(DEFAULT_BRANCH)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Revision({:?})", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Revision::parse(&s).map_err(serde::de::Error::custom)
    }
}

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
        // Control characters beyond ASCII (U+0080–U+009F) too: git would take them, but a
        // `Revision` cannot name them.
        if s.chars().any(char::is_control) || s.bytes().any(|b| b" ~^:?*[\\".contains(&b)) {
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
    fn revisions_refuse_what_git_cannot_take() {
        for ok in [
            "main",
            "refs/pr/1",
            "v1.0",
            "abc1234",
            &"a".repeat(40),
            &"x".repeat(255),
        ] {
            assert!(Revision::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "main\0",
            "\0",
            "a\nb",
            "main\r",
            "\u{7f}",
            "a\u{85}",
            "-main",
            "--upload-pack=x",
            &"x".repeat(256),
            // 255 bytes is the limit, not 255 characters.
            &"\u{e9}".repeat(128),
            &"x".repeat(5000),
        ] {
            assert!(Revision::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Revision::default_branch().is_default_branch());
        assert!(
            Revision::parse("refs/heads/main")
                .expect("valid")
                .is_default_branch()
        );
        assert!(
            !Revision::parse("refs/pr/1")
                .expect("valid")
                .is_default_branch()
        );
    }

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
            "heil\u{87}",
            "a\u{9f}b",
            &hex,
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
