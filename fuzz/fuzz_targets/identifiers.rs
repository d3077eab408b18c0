//! Identifiers from URLs and bodies: paths, revisions, branch names, repo ids. What is
//! accepted keeps the promises of its type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trove_types::{BranchName, RepoId, RepoPath, Revision};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = RepoPath::parse(s) {
        assert_eq!(path.as_str(), s);
        assert!(!s.starts_with('/') && !s.chars().any(char::is_control));
        // A backslash may stand past the first segment, and only between valid segments:
        // whether a checkout splits on it (Windows) or not, no part is empty, `.`, `..` or
        // `.git`, and the first segment can never be a drive or UNC prefix.
        assert!(!s.split('/').next().unwrap_or_default().contains('\\'));
        for name in s.split('/') {
            assert!(name.len() <= 255);
        }
        for segment in s.split(['/', '\\']) {
            assert!(!segment.is_empty() && segment.len() <= 255);
            assert!(segment != "." && segment != ".." && !segment.eq_ignore_ascii_case(".git"));
        }
    }
    let _ = RepoPath::parse_folder(s);
    if let Ok(rev) = Revision::parse(s) {
        assert!(!rev.as_str().is_empty() && rev.as_str().len() <= 255);
        assert!(!rev.as_str().contains('\0'));
    }
    if let Ok(branch) = BranchName::parse(s) {
        assert!(Revision::parse(branch.as_str()).is_ok());
    }
    let _ = RepoId::parse(s);
});
