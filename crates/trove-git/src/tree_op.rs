//! One change to a tree, as commits and merges apply them.

use trove_types::{GitOid, RepoPath};

/// One change to the tree of a commit. Operations apply in order, each to the tree left by
/// the ones before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeOp {
    /// Write `blob` (already in the object database) at `path` as a regular file (mode
    /// 100644), replacing a file that is there and creating missing parent folders.
    Upsert { path: RepoPath, blob: GitOid },
    /// Remove the file at `path`.
    DeleteFile { path: RepoPath },
    /// Remove the folder at `path` with everything under it.
    DeleteFolder { path: RepoPath },
}
