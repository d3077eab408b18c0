//! Opened repositories kept between reads, so that a read does not pay for libgit2's open
//! (the folder checked, its config file read and parsed, the object database set up, the pack
//! indexes found and mapped) every time.
//!
//! A handle kept here answers as a fresh open would, for what reads ask of it:
//!
//! - refs are never held in memory: libgit2 reads a loose ref's file at each lookup, and
//!   reads `packed-refs` again whenever its size, time or inode changed;
//! - an object libgit2 does not find in the loose objects or the packs it knows makes it scan
//!   the pack folder again before it answers "not found", so a pack written since (by a push
//!   through `git receive-pack`, by another node on the shared git dir) is found at the first
//!   read that needs it;
//! - objects are named by their content: one found in a pack the handle mapped earlier is the
//!   very object asked for, whichever copy holds it.
//!
//! So a push or a commit is seen by the next read through a kept handle, on this node and on
//! any other. Handles are only for reads ([`KeptRepos::take`] / [`KeptRepos::give_back`]); a
//! handle used by a read that panicked is dropped, never given back.
//!
//! Bounds: at most [`KeptRepos::new`]'s `max` idle handles over all repositories (a few
//! file descriptors and the pages of pack indexes each); when full, the handle given back
//! longest ago is closed. A repository is keyed by its folder and a generation the caller
//! chooses (the repository row's creation time), so that a folder made again under the same
//! path (a deleted repository's id used again) never gets the old one's handles.
//!
//! The folder itself is checked at each take: its device, inode and change time, read
//! before the handle was opened, must still be what they are now. A folder removed (by hand,
//! or lost) is then found missing by the open, as without kept handles, and one put back in
//! its place gets fresh handles, never those of the removed one — which would still answer
//! from the refs and packs they have open. One `stat` per take; the open it spares costs
//! far more.

use crate::GitRepo;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

/// What tells a repository's folder from another one made at the same path later: its
/// device, inode and change time. The time guards against an inode number used again; it
/// moves when an entry of the folder itself is added, removed or renamed (a rewrite of
/// `packed-refs`), which costs a fresh open and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FolderId {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FolderId {
    /// The folder at `path` now; `None` when it cannot be stat'ed (missing).
    fn of(path: &Path) -> Option<FolderId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FolderId {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        })
    }
}

struct Idle {
    generation: i64,
    folder: FolderId,
    repo: GitRepo,
}

/// A handle taken by [`KeptRepos::take`], to read through (it derefs to [`GitRepo`]) and give
/// back with [`KeptRepos::give_back`]; dropping it closes it.
pub struct KeptRepo {
    repo: GitRepo,
    /// The folder as it was before the handle was opened; `None` if it could not be
    /// stat'ed then (such a handle is never kept).
    folder: Option<FolderId>,
}

impl std::ops::Deref for KeptRepo {
    type Target = GitRepo;

    fn deref(&self) -> &GitRepo {
        &self.repo
    }
}

/// The idle handles, most recently given back first.
pub struct KeptRepos {
    max: usize,
    idle: Mutex<VecDeque<Idle>>,
}

impl std::fmt::Debug for KeptRepos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptRepos")
            .field("max", &self.max)
            .field("idle", &self.len())
            .finish()
    }
}

impl KeptRepos {
    /// Keeps at most `max` idle handles; 0 keeps none (every read opens).
    pub fn new(max: usize) -> KeptRepos {
        KeptRepos {
            max,
            idle: Mutex::new(VecDeque::with_capacity(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // Every operation leaves the list consistent, so a poisoned lock is still usable.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle handles now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no handle is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An idle handle on the repository at `path` of `generation` opened on the folder that
    /// is there now, taken out of the set (to be given back after the read), or a new one
    /// opened. Idle handles on a folder no longer there are closed.
    pub fn take(&self, path: &Path, generation: i64) -> crate::Result<KeptRepo> {
        // Read before any open: the identity a handle carries is never that of a folder
        // newer than the one it opened.
        let folder = FolderId::of(path);
        match self.take_idle_of(path, generation, folder) {
            Some(kept) => Ok(kept),
            None => Ok(KeptRepo {
                repo: GitRepo::open(path)?,
                folder,
            }),
        }
    }

    /// [`KeptRepos::take`] without the open: `None` when no handle on the repository is
    /// idle. Costs one `stat` of the folder and a look through the idle list, never a read
    /// of the repository's files, so it can run where an open could not (a caller on the
    /// async runtime's thread).
    pub fn take_idle(&self, path: &Path, generation: i64) -> Option<KeptRepo> {
        // A folder that cannot be stat'ed is the caller's to find with a real open.
        let folder = Some(FolderId::of(path)?);
        self.take_idle_of(path, generation, folder)
    }

    fn take_idle_of(
        &self,
        path: &Path,
        generation: i64,
        folder: Option<FolderId>,
    ) -> Option<KeptRepo> {
        let (kept, stale) = {
            let mut idle = self.lock();
            let is_stale = |i: &Idle| i.repo.path() == path && Some(i.folder) != folder;
            let mut stale = Vec::new();
            if idle.iter().any(is_stale) {
                let (gone, keep): (VecDeque<Idle>, VecDeque<Idle>) =
                    idle.drain(..).partition(is_stale);
                *idle = keep;
                stale.extend(gone);
            }
            let kept = idle
                .iter()
                .position(|i| i.generation == generation && i.repo.path() == path)
                .and_then(|at| idle.remove(at));
            (kept, stale)
        };
        // Closed outside the lock: closing unmaps and closes files.
        drop(stale);
        kept.map(|idle| KeptRepo {
            repo: idle.repo,
            folder: Some(idle.folder),
        })
    }

    /// Keeps `repo`, taken by [`KeptRepos::take`] for `generation`, for the next read; closes
    /// the handle idle longest when more than `max` would be.
    pub fn give_back(&self, repo: KeptRepo, generation: i64) {
        let KeptRepo { repo, folder } = repo;
        let Some(folder) = folder else {
            return;
        };
        if self.max == 0 {
            return;
        }
        let dropped = {
            let mut idle = self.lock();
            idle.push_front(Idle {
                generation,
                folder,
                repo,
            });
            if idle.len() > self.max {
                idle.pop_back()
            } else {
                None
            }
        };
        // Closed outside the lock: closing unmaps and closes files.
        drop(dropped);
    }

    /// Closes every idle handle on the repository at `path` (it is being deleted or moved:
    /// its files should not stay open).
    pub fn forget(&self, path: &Path) {
        let gone: Vec<Idle> = {
            let mut idle = self.lock();
            let (keep, gone): (VecDeque<Idle>, VecDeque<Idle>) =
                idle.drain(..).partition(|i| i.repo.path() != path);
            *idle = keep;
            gone.into_iter().collect()
        };
        drop(gone);
    }
}
