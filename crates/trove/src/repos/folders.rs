//! The git folders of repositories on disk: a new repository initialised with its first
//! commit, staged under `repos/.staging/` and published under its id with a durable rename,
//! and folders moved to the trash. Shared by creation and deletion ([`super::lifecycle`]),
//! the start-up check ([`super::reconcile`]) and moves between data dirs.

use super::gitattributes::DEFAULT_GITATTRIBUTES;
use crate::clock::now_secs;
use std::path::{Path, PathBuf};
use trove_git::{GitRepo, Signature};

/// The author of commits made by the server itself (a repository re-initialised at start, a
/// tag made without a user).
pub fn system_signature() -> Signature {
    Signature {
        name: "system".into(),
        email: "system@trove.local".into(),
    }
}

/// Where repositories are initialised before they are published under their id.
pub fn staging_dir(repos_dir: &Path) -> PathBuf {
    repos_dir.join(".staging")
}

/// What the initial commit of a new repository holds besides `.gitattributes`, and who
/// authors it.
pub(crate) struct InitialCommit {
    pub(crate) readme: Option<String>,
    pub(crate) author: Signature,
}

/// A new repository with its initial commit, at `dir`.
pub(crate) fn init_repo(dir: &Path, initial: &InitialCommit) -> Result<(), trove_git::GitError> {
    let mut files: Vec<(&str, &[u8])> = vec![(".gitattributes", DEFAULT_GITATTRIBUTES.as_bytes())];
    if let Some(readme) = &initial.readme {
        files.push(("README.md", readme.as_bytes()));
    }
    GitRepo::init_bare(dir, &files, &initial.author, now_secs() as i64)?;
    Ok(())
}

/// Moves the staged repository to `dir` and makes the move durable. Whatever is at `dir`
/// has no row (the id is being given out now): a deleted repository's leftovers, or an
/// earlier creation that crashed before its commit; it goes to the trash.
pub(super) fn publish(staged: &Path, dir: &Path, trash: &Path) -> std::io::Result<()> {
    if dir.exists() {
        move_to_trash(dir, trash)?;
    }
    std::fs::rename(staged, dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Moves `dir` into the trash under a fresh name; `None` when there is no such folder.
pub(crate) fn move_to_trash(dir: &Path, trash: &Path) -> std::io::Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(trash)?;
    let target = trash.join(uuid::Uuid::new_v4().to_string());
    std::fs::rename(dir, &target)?;
    Ok(Some(target))
}
