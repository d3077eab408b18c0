//! The building blocks of crash-safe writes: temp paths removed on drop, directory fsync,
//! and publishing a verified temp file under its final name.

use crate::error::{StoreError, io_at};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A temp file or directory that is deleted when dropped, unless [`TempGuard::disarm`]ed
/// after it was renamed into place. Every failure path (errors, panics, a dropped future)
/// therefore cleans up after itself.
#[derive(Debug)]
pub(crate) struct TempGuard {
    path: PathBuf,
    is_dir: bool,
    armed: bool,
}

impl TempGuard {
    pub(crate) fn file(path: PathBuf) -> Self {
        Self {
            path,
            is_dir: false,
            armed: true,
        }
    }
    pub(crate) fn dir(path: PathBuf) -> Self {
        Self {
            path,
            is_dir: true,
            armed: true,
        }
    }
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
    /// The path now belongs to someone else (it was renamed away); do not delete it.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let result = if self.is_dir {
            fs::remove_dir_all(&self.path)
        } else {
            fs::remove_file(&self.path)
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "store.temp_cleanup_failed")
            }
        }
    }
}

/// Make a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// Create `dir` (and its parent) if missing, fsyncing each parent whose entries changed, so
/// the directory chain of a new object survives a crash along with the object itself.
fn ensure_dir_durable(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut chain = Vec::new();
    let mut cur = dir;
    while !cur.is_dir() {
        chain.push(cur);
        cur = match cur.parent() {
            Some(p) => p,
            None => break,
        };
    }
    for d in chain.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {
                if let Some(parent) = d.parent() {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_at(d)(e)),
        }
    }
    Ok(())
}

/// Whether an object was written by this call or was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written and is now visible.
    Stored,
    /// An identical object (same oid) already existed; the upload was verified and discarded.
    AlreadyPresent,
}

/// Move a verified, fsynced temp file to `dest` and fsync the directory. Blocking.
///
/// If `dest` already exists the temp is discarded: same oid, same bytes. A concurrent writer
/// of the same oid may still slip in between the check and the rename; rename replaces
/// atomically with identical content, so readers never see a partial object either way.
pub(crate) fn publish(mut temp: TempGuard, dest: &Path) -> Result<PutOutcome, StoreError> {
    match fs::symlink_metadata(dest) {
        Ok(_) => return Ok(PutOutcome::AlreadyPresent),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(dest)(e)),
    }
    let dir = dest.parent().ok_or_else(|| StoreError::Io {
        path: dest.to_owned(),
        source: io::Error::other("object path has no parent"),
    })?;
    ensure_dir_durable(dir)?;
    fs::rename(temp.path(), dest).map_err(io_at(dest))?;
    temp.disarm();
    sync_dir(dir)?;
    Ok(PutOutcome::Stored)
}

/// Run blocking filesystem work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match crate::stream::joined(tokio::task::spawn_blocking(f).await) {
        Ok(result) => result,
        Err(source) => Err(StoreError::Io {
            path: PathBuf::new(),
            source,
        }),
    }
}
