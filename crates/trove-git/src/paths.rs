//! The one rule for the names in a tree: what the commit API accepts as a path segment
//! ([`RepoPath`]), applied to what a push brings and to what is served from stored trees.
//!
//! A tree entry name is a single segment: it may not contain `/`, and must be UTF-8 (the
//! Hub's paths are text); the root's entries may not contain `\`, which a path allows only
//! past its first segment. Everything else — `.`, `..`, `.git` and its spellings, NUL,
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
    if !text.contains('\\') {
        return RepoPath::parse(text).err().map(|e| e.0);
    }
    // A backslash is allowed past the first segment (see `RepoPath`): checked as such.
    RepoPath::parse(&format!("d/{text}")).err().map(|_| {
        format!("Invalid path {text:?}: each part between backslashes must be a valid name")
    })
}

/// [`entry_name_problem`] for an entry at the root of a tree, where no backslash is allowed
/// (a path's first segment never holds one).
pub fn root_entry_name_problem(name: &[u8]) -> Option<String> {
    entry_name_problem(name).or_else(|| {
        name.contains(&b'\\').then(|| {
            format!(
                "Invalid path {:?}: backslashes are not allowed in the first path segment",
                String::from_utf8_lossy(name)
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_commit_api_rule() {
        for ok in [
            "a",
            "README.md",
            ".gitattributes",
            "é.json",
            "with space",
            "a\\b",
        ] {
            assert_eq!(entry_name_problem(ok.as_bytes()), None, "{ok}");
        }
        assert!(root_entry_name_problem(b"a\\b").is_some());
        assert_eq!(root_entry_name_problem(b"ab"), None);
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
