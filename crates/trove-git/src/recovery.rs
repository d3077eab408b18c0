//! Clearing what a killed process leaves in a bare repository: git's lock files and the
//! temporary objects of a push or pack that never finished.
//!
//! git and libgit2 take a lock by creating `<file>.lock` and release it by renaming or
//! removing it; a process killed in between leaves the lock, and every later writer of that
//! file fails on it. Only a caller that knows no other process uses the repository (a server
//! at start-up, before it serves anything) may call [`remove_leftovers`].

use crate::Result;
use crate::error::GitError;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Lock files git takes at the top of a bare repository.
const TOP_LEVEL_LOCKS: &[&str] = &[
    "config.lock",
    "packed-refs.lock",
    "index.lock",
    "HEAD.lock",
    "shallow.lock",
    "FETCH_HEAD.lock",
];

/// Removes stale lock files (`*.lock` under `refs/`, and [`TOP_LEVEL_LOCKS`]), receive-pack
/// quarantines (`objects/tmp_objdir-*`) and half-written packs (`objects/pack/tmp_*`) of the
/// repository at `git_dir`. Returns what was removed. Nothing else is touched: objects and
/// refs stay as they are.
pub fn remove_leftovers(git_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for name in TOP_LEVEL_LOCKS {
        remove_file(&git_dir.join(name), &mut removed)?;
    }
    // An explicit stack: ref folders nest as deep as ref names do.
    let mut folders = vec![git_dir.join("refs")];
    while let Some(folder) = folders.pop() {
        for entry in read_dir(&folder)? {
            let path = entry.path();
            let kind = entry.file_type().map_err(io("reading", &path))?;
            if kind.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "lock") {
                remove_file(&path, &mut removed)?;
            }
        }
    }
    for entry in read_dir(&git_dir.join("objects"))? {
        let path = entry.path();
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("tmp_objdir-")
        {
            std::fs::remove_dir_all(&path).map_err(io("removing", &path))?;
            removed.push(path);
        }
    }
    for entry in read_dir(&git_dir.join("objects").join("pack"))? {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with("tmp_") {
            remove_file(&path, &mut removed)?;
        }
    }
    Ok(removed)
}

/// The entries of `folder`; none when it does not exist.
fn read_dir(folder: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(folder) {
        Ok(entries) => entries
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io("listing", folder)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io("listing", folder)(e)),
    }
}

fn remove_file(path: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            removed.push(path.to_owned());
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", path)(e)),
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GitError {
    let path = path.to_owned();
    move |source| GitError::Io {
        action,
        path,
        source,
    }
}
