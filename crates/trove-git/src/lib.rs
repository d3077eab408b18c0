//! Bare git repositories, read and written in process with libgit2 (through `git2`).
//!
//! Every repository Trove hosts is a bare git repository; this crate is the only place that
//! touches one. It reads (revisions, trees, blobs, history, refs) and writes (blobs, commits
//! built from file operations, branches and tags) and knows nothing of HTTP or SQL.
//!
//! It also holds the glue for git's smart HTTP protocol ([`smart_http`]: the exact
//! `upload-pack`/`receive-pack` command lines) and what a push's `pre-receive` hook inspects
//! ([`PushView`]).
//!
//! Everything here is synchronous and blocking: async callers run it in `spawn_blocking`.
//! A [`GitRepo`] is `Send` but not `Sync`, so open one per task, or take one of the handles
//! [`KeptRepos`] keeps between reads.
//!
//! Writes follow "write, fsync, then publish": objects are written to the object database and
//! flushed to disk first, and a commit becomes visible only when its ref moves, by
//! compare-and-swap, in [`GitRepo::commit`].

mod blob_facts;
mod commit;
mod diff;
mod durable;
mod edit;
mod error;
mod fsck;
mod gitmodules;
mod inflate_head;
mod kept;
mod log;
mod merge;
mod pack_headers;
mod pack_read;
mod paths;
mod push;
mod reachable;
mod recovery;
mod refs;
mod repo;
mod revision;
pub mod smart_http;
mod tree;
mod tree_op;

pub use diff::{ChangeKind, DiffLimits, DiffLine, FileDiff, TreeDiff};
pub use error::{CommitError, GitError};
pub use gitmodules::{GITMODULES_MAX_BYTES, gitmodules_problem, is_gitmodules_name};
pub use kept::{KeptRepo, KeptRepos};
pub use log::CommitInfo;
pub use merge::MergePlan;
pub use paths::{entry_name_problem, root_entry_name_problem};
pub use push::{BadName, NewObjects, PushView, RefMove};
pub use reachable::LfsPlace;
pub use recovery::remove_leftovers;
pub use refs::Refs;
pub use repo::{GitRepo, Signature, ignore_user_config};
pub use revision::MIN_SHORT_ID;
pub use smart_http::GitChecks;
pub use tree::{Entry, EntryKind, LfsInfo};
pub use tree_op::TreeOp;

/// Result of the read and ref operations of this crate.
pub type Result<T, E = GitError> = std::result::Result<T, E>;
