//! A file or folder path inside a repository, as sent in commit operations and URLs.

use crate::InvalidIdentifier;
use std::fmt;

/// A relative, normalised path inside a repository: no leading `/`, no empty, `.` or `..`
/// segments, no `.git` segment, no NUL, at most 4096 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RepoPath(String);

impl RepoPath {
    pub const MAX_LEN: usize = 4096;

    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let fail = |why: &str| Err(InvalidIdentifier(format!("Invalid path {s:?}: {why}")));
        if s.is_empty() {
            return fail("empty path");
        }
        if s.len() > Self::MAX_LEN {
            return fail("path too long");
        }
        if s.starts_with('/') {
            return fail("must be relative to the repository root");
        }
        if s.contains('\0') || s.contains('\\') {
            return fail("NUL and backslash are not allowed");
        }
        for segment in s.split('/') {
            match segment {
                "" => return fail("empty path segment"),
                "." | ".." => return fail("'.' and '..' segments are not allowed"),
                _ if segment.eq_ignore_ascii_case(".git") => {
                    return fail("'.git' segments are not allowed");
                }
                _ => {}
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Parses a folder path as sent by `deletedFolder`, which may end with `/`.
    pub fn parse_folder(s: &str) -> Result<Self, InvalidIdentifier> {
        Self::parse(s.strip_suffix('/').unwrap_or(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nested_and_unicode_paths() {
        for ok in [
            "a",
            "a/b/c.txt",
            "weights/model.safetensors",
            "dir with space/é.json",
            ".gitattributes",
            "a/.gitignore",
        ] {
            assert!(RepoPath::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_and_git_internals() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            ".git/config",
            "a/.GIT/hooks",
            "a\\b",
            "a\0",
            "a/",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn folder_may_end_with_slash() {
        assert_eq!(
            RepoPath::parse_folder("data/").map(|p| p.to_string()),
            Ok("data".into())
        );
        assert!(RepoPath::parse_folder("/").is_err());
    }
}
