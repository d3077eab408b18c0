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

use crate::GitRepo;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

struct Idle {
    generation: i64,
    repo: GitRepo,
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

    /// An idle handle on the repository at `path` of `generation`, taken out of the set (to
    /// be given back after the read), or a new one opened.
    pub fn take(&self, path: &Path, generation: i64) -> crate::Result<GitRepo> {
        let kept = {
            let mut idle = self.lock();
            idle.iter()
                .position(|i| i.generation == generation && i.repo.path() == path)
                .and_then(|at| idle.remove(at))
        };
        match kept {
            Some(idle) => Ok(idle.repo),
            None => GitRepo::open(path),
        }
    }

    /// Keeps `repo`, taken by [`KeptRepos::take`] for `generation`, for the next read; closes
    /// the handle idle longest when more than `max` would be.
    pub fn give_back(&self, repo: GitRepo, generation: i64) {
        if self.max == 0 {
            return;
        }
        let dropped = {
            let mut idle = self.lock();
            idle.push_front(Idle { generation, repo });
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
