//! The one rule for the names in a tree: what the commit API accepts as a path segment
//! ([`RepoPath`]), applied to what a push brings and to what is served from stored trees.
//!
//! A tree entry name is a single segment: it may not contain `/`, and must be UTF-8 (the
//! Hub's paths are text). Everything else — `.`, `..`, `.git` and its spellings, NUL,
//! backslashes, lengths — is [`RepoPath`]'s to decide, so a rule added there holds for git
//! pushes and reads too.

use trove_types::RepoPath;

/// Why `name` may not be a tree entry of a hosted repository; `None` when it may.
pub fn entry_name_problem(name: &[u8]) -> Option<String> {
    let Ok(text) = std::str::from_utf8(name) else {
        return Some(format!(
            "Invalid path {:?}: not valid UTF-8",
            String::from_utf8_lossy(name)
        ));
    };
    if text.contains('/') {
        return Some(format!(
            "Invalid path {text:?}: a name in a tree may not contain '/'"
        ));
    }
    RepoPath::parse(text).err().map(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_commit_api_rule() {
        for ok in ["a", "README.md", ".gitattributes", "é.json", "with space"] {
            assert_eq!(entry_name_problem(ok.as_bytes()), None, "{ok}");
        }
        for bad in [
            &b".git"[..],
            b".GIT",
            b"..",
            b".",
            b"",
            b"a/b",
            b"..\\..\\x",
            b"a\0b",
            b"\xff\xfe",
        ] {
            assert!(
                entry_name_problem(bad).is_some(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
