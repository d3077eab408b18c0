//! Identifiers that cross crate boundaries, each constructible only through validation
//! ("parse, don't validate"): repository types and ids, revisions, paths inside a repo,
//! content hashes, and the Git LFS pointer format.

mod hashes;
mod lfs_pointer;
mod repo_id;
mod repo_path;
mod revision;

pub use hashes::{GitOid, Sha256Hex};
pub use lfs_pointer::{LFS_POINTER_MAX_LEN, LfsPointer};
pub use repo_id::{RepoId, RepoName, RepoType};
pub use repo_path::RepoPath;
pub use revision::{BranchName, DEFAULT_BRANCH, REVISION_MAX_LEN, Revision};

/// Why an identifier was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdentifier(pub String);
