//! A file or folder path inside a repository, as sent in commit operations and URLs.

use crate::InvalidIdentifier;
use std::fmt;

/// A relative, normalised path inside a repository, safe to check out on every filesystem
/// git supports: no leading `/`, no empty, `.` or `..` segment, no segment that any
/// filesystem would take for `.git` (see [`RepoPath::parse`]), no NUL or control character,
/// a backslash only past the first segment and between valid segments (Windows splits on
/// it), segments of at most 255 bytes, at most 4096 bytes in all.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RepoPath(String);

/// Code points HFS+ ignores when it compares names, so that `.g\u{200c}it` opens `.git` on a
/// Mac (the list git's `is_hfs_dotgit` uses).
const HFS_IGNORABLE: &[char] = &[
    '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
    '\u{202e}', '\u{206a}', '\u{206b}', '\u{206c}', '\u{206d}', '\u{206e}', '\u{206f}', '\u{feff}',
];

impl RepoPath {
    pub const MAX_LEN: usize = 4096;
    /// The longest segment, in bytes: the limit of every common filesystem.
    pub const MAX_SEGMENT_LEN: usize = 255;

    /// Parses a path as a client sends it. Besides the structural rules, a segment is
    /// refused when a filesystem a clone may land on reads it as `.git` or as `.`/`..`:
    /// any ASCII case (`.GIT`), NTFS's trailing dots and spaces (`.git.`, `.git `), its
    /// 8.3 short name (`GIT~1`) and stream syntax (`.git::$INDEX_ALLOCATION`), and HFS+'s
    /// ignorable code points (`.g\u{200d}it`). Those code points stay allowed elsewhere:
    /// emoji sequences and Persian text need them.
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let fail = |why: &str| Err(InvalidIdentifier(format!("Invalid path {s:?}: {why}")));
        if s.is_empty() {
            return fail("empty path");
        }
        if s.len() > Self::MAX_LEN {
            return fail("path too long (the limit is 4096 bytes)");
        }
        if s.starts_with('/') {
            return fail("must be relative to the repository root");
        }
        // Windows reads `\\` as a separator, so a backslash is allowed only where every
        // part it delimits is itself a valid segment (checked below), and never in the first
        // segment (as on the Hub), so that no path can start with a drive or a UNC prefix.
        if s.split('/')
            .next()
            .is_some_and(|first| first.contains('\\'))
        {
            return fail("backslashes are not allowed in the first path segment");
        }
        if s.chars().any(char::is_control) {
            return fail("NUL and other control characters are not allowed");
        }
        // A name with backslashes is one file name on Unix: it too must fit.
        if s.split('/').any(|name| name.len() > Self::MAX_SEGMENT_LEN) {
            return fail("a path segment is longer than 255 bytes");
        }
        for segment in s.split(['/', '\\']) {
            if segment.is_empty() {
                return fail("empty path segment");
            }
            if segment.len() > Self::MAX_SEGMENT_LEN {
                return fail("a path segment is longer than 255 bytes");
            }
            let visible: String = segment
                .chars()
                .filter(|c| !HFS_IGNORABLE.contains(c))
                .collect();
            if visible.is_empty() || visible == "." || visible == ".." {
                return fail("'.' and '..' segments are not allowed");
            }
            if is_dot_git_alias(&visible) {
                return fail(
                    "'.git' segments (in any spelling a filesystem reads as '.git') are not allowed",
                );
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

/// Whether NTFS or a case-insensitive filesystem opens `segment` as `.git`: the name before
/// any `:` stream suffix, without trailing dots and spaces, is `.git` or `git~1` in any
/// ASCII case.
fn is_dot_git_alias(segment: &str) -> bool {
    let name = segment.split(':').next().unwrap_or(segment);
    let name = name.trim_end_matches(['.', ' ']);
    name.eq_ignore_ascii_case(".git") || name.eq_ignore_ascii_case("git~1")
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
            "d/a\\b.txt",
            "d/x\\y\\z",
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
            "..\\ddd",
            "d/..\\..\\x",
            "d/a\\",
            "d/\\a",
            "d/a\\\\b",
            "d/x\\.git\\config",
            "d/.\\x",
            "a\0",
            "a/",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn refused(path: &str) -> bool {
        RepoPath::parse(path).is_err()
    }

    #[test]
    fn refuses_control_characters() {
        for bad in [
            "a\u{1}b", "a/\tb", "a\nb", "a\rb", "a\u{7f}", "a\u{85}b", "\0",
        ] {
            assert!(refused(bad), "{bad:?}");
        }
    }

    #[test]
    fn refuses_ntfs_aliases_of_dot_git() {
        for bad in [
            ".git./config",
            ".git../config",
            ".git /config",
            ".git . ./config",
            "GIT~1/config",
            "a/git~1",
            ".git::$INDEX_ALLOCATION/config",
            ".GIT:stream",
            ".git.:x",
        ] {
            assert!(refused(bad), "{bad:?}");
        }
        // Near misses are ordinary names.
        for ok in [
            ".gitx",
            "x.git",
            "git~2",
            ".git~1",
            "git",
            "a:b",
            "weights:v1.bin",
        ] {
            assert!(RepoPath::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn refuses_hfs_aliases_of_dot_git_and_dot_dot() {
        for bad in [
            ".git\u{200c}/config",
            ".g\u{200d}it/config",
            "\u{feff}.git/config",
            "a/.\u{202e}GIT",
            "\u{206a}.\u{206f}git\u{200e}",
            ".\u{200c}./x",
            "\u{200f}/x",
        ] {
            assert!(refused(bad), "{bad:?}");
        }
        // Outside a '.git' look-alike these code points are text (emoji, Persian).
        for ok in [
            "\u{1f468}\u{200d}\u{1f469}.txt",
            "\u{645}\u{200c}\u{6cc}.md",
        ] {
            assert!(RepoPath::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn segments_are_at_most_255_bytes() {
        let at_limit = "x".repeat(255);
        assert!(RepoPath::parse(&format!("a/{at_limit}")).is_ok());
        assert!(refused(&format!("a/{at_limit}y")));
        // Bytes, not characters: 128 two-byte characters are 256 bytes.
        assert!(refused(&"\u{e9}".repeat(128)));
        let long_path = vec!["d".repeat(200); 21].join("/");
        assert!(long_path.len() > RepoPath::MAX_LEN && refused(&long_path));
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
