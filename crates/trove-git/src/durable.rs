//! Flushing to disk what libgit2 wrote, before a ref move publishes it.
//!
//! libgit2 writes objects and refs without fsync unless a process-wide option is set, and that
//! option is reachable only through unsafe FFI. Instead we fsync, in safe code, the loose
//! objects a write produced and then the ref file, so that a crash after a commit was
//! acknowledged cannot leave a ref pointing at objects that never reached the disk.

use crate::Result;
use crate::error::GitError;
use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

/// Fsyncs the loose files of `oids` and their fan-out folders. An object without a loose file
/// already existed in a pack, which is durable already.
pub(crate) fn sync_objects(git_dir: &Path, oids: &[git2::Oid]) -> Result<()> {
    let mut folders: Vec<String> = Vec::with_capacity(oids.len());
    for oid in oids {
        let hex = oid.to_string();
        let (folder, file) = hex.split_at(2);
        sync_path(&git_dir.join("objects").join(folder).join(file))?;
        folders.push(folder.to_owned());
    }
    folders.sort();
    folders.dedup();
    for folder in folders {
        // The new file's directory entry must be durable too, or the file may vanish.
        sync_path(&git_dir.join("objects").join(folder))?;
    }
    Ok(())
}

/// Fsyncs a loose ref file and its folder after a move. A ref written as a loose file is
/// renamed into place by libgit2, so the folder holds the durable name.
pub(crate) fn sync_ref(git_dir: &Path, full_ref: &str) -> Result<()> {
    let file = git_dir.join(full_ref);
    sync_path(&file)?;
    match file.parent() {
        Some(folder) => sync_path(folder),
        None => Ok(()),
    }
}

/// Fsyncs a file or a folder; a path that does not exist is skipped.
fn sync_path(path: &Path) -> Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(GitError::Io {
                action: "opening for fsync",
                path: path.to_owned(),
                source,
            });
        }
    };
    file.sync_all().map_err(|source| GitError::Io {
        action: "fsync",
        path: path.to_owned(),
        source,
    })
}
