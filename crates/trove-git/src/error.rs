//! The errors of this crate: one enum for reads and ref updates, one for building commits.

use std::path::PathBuf;
use trove_types::GitOid;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// No bare git repository at this path.
    #[error("no git repository at {path}")]
    RepoNotFound { path: PathBuf },
    /// [`crate::GitRepo::init_bare`] was asked to create a repository where something exists.
    #[error("cannot create a repository at {path}: it already exists")]
    RepoExists { path: PathBuf },
    /// A file path given to [`crate::GitRepo::init_bare`] is not a valid repository path.
    #[error("invalid path {path:?} in the initial commit: {reason}")]
    InvalidPath { path: String, reason: String },
    /// An object id that the caller gave does not name an object of this repository.
    #[error("object {oid} not found")]
    ObjectNotFound { oid: GitOid },
    /// The object exists but is not of the kind the operation needs.
    #[error("object {oid} is not a {expected}")]
    WrongObjectType { oid: GitOid, expected: &'static str },
    /// A branch or tag of that name already exists (or a ref beneath or above it collides).
    #[error("reference {name} already exists")]
    AlreadyExists { name: String },
    /// A full ref name that git refuses, or that is not under `refs/`.
    #[error("invalid ref name {name:?}")]
    InvalidRefName { name: String },
    /// No branch or tag of that name.
    #[error("reference {name} not found")]
    RefNotFound { name: String },
    /// The author, committer or tagger cannot be written into a git object
    /// (git forbids `<`, `>` and empty names or emails).
    #[error("invalid signature {name:?} <{email}>: {reason}")]
    InvalidSignature {
        name: String,
        email: String,
        reason: String,
    },
    /// A filesystem operation outside libgit2 failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// libgit2 failed; `action` says what we were doing.
    #[error("git: {action}: {source}")]
    Git {
        action: &'static str,
        source: git2::Error,
    },
}

impl GitError {
    /// Wraps a libgit2 error with what we were doing; used as `.map_err(GitError::git("…"))`.
    pub(crate) fn git(action: &'static str) -> impl FnOnce(git2::Error) -> GitError {
        move |source| GitError::Git { action, source }
    }
}

/// Why [`crate::GitRepo::commit`] wrote nothing. In every case the ref is left untouched.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A `DeleteFile` path is not a file, or a `DeleteFolder` path is not a folder, in the
    /// tree as it stands after the preceding operations.
    #[error("entry not found: {path}")]
    EntryNotFound { path: String },
    /// An `Upsert` would put a file where a folder is, or under a path that is a file.
    #[error("path conflicts with an existing file or folder: {path}")]
    PathConflict { path: String },
    /// An `Upsert` refers to a blob that is not in the object database.
    #[error("blob {blob} for {path} is not in the repository")]
    BlobNotFound { path: String, blob: GitOid },
    /// The ref does not point where the caller saw it (`expected`; `None` = absent): another
    /// writer got there first.
    #[error("{full_ref} moved: expected {expected:?}, found {actual:?}")]
    RefMoved {
        full_ref: String,
        expected: Option<GitOid>,
        actual: Option<GitOid>,
    },
    /// Another process holds the ref's lock right now; retrying may succeed.
    #[error("{full_ref} is locked by a concurrent update")]
    RefLocked { full_ref: String },
    /// The ref name is not a valid full ref name (`refs/…`).
    #[error("invalid ref name {full_ref:?}")]
    InvalidRef { full_ref: String },
    /// A merge found these paths changed on both sides.
    #[error("merge conflicts in {}", paths.join(", "))]
    MergeConflict { paths: Vec<String> },
    /// Reading or writing the repository failed.
    #[error(transparent)]
    Git {
        #[from]
        source: GitError,
    },
}
