//! Which LFS objects a repository still needs: every pointer in every tree of every commit
//! reachable from any ref (branches, tags, `refs/pr/*`, anything under `refs/`). Garbage
//! collection of the chunk store marks from this.

use crate::Result;
use crate::error::GitError;
use crate::repo::GitRepo;
use std::collections::HashSet;
use trove_types::{LFS_POINTER_MAX_LEN, LfsPointer};

impl GitRepo {
    /// Calls `found` with every LFS pointer reachable from any ref, each distinct blob once.
    /// Memory: the ids of the trees and pointer-sized blobs seen (20 bytes each), so each is
    /// read once however many commits share it.
    pub fn for_each_reachable_lfs_pointer(&self, mut found: impl FnMut(LfsPointer)) -> Result<()> {
        let mut walk = self
            .repo
            .revwalk()
            .map_err(GitError::git("starting history walk"))?;
        let references = self
            .repo
            .references()
            .map_err(GitError::git("listing refs"))?;
        for reference in references {
            let reference = reference.map_err(GitError::git("listing refs"))?;
            if !reference.name().is_some_and(|n| n.starts_with("refs/")) {
                continue;
            }
            // Tags may point at tag objects; what matters is the commit they name.
            let Ok(commit) = reference.peel_to_commit() else {
                continue;
            };
            walk.push(commit.id())
                .map_err(GitError::git("starting history walk"))?;
        }
        let odb = self.repo.odb().map_err(GitError::git("opening odb"))?;
        let mut seen: HashSet<git2::Oid> = HashSet::new();
        let mut trees = Vec::new();
        for id in walk {
            let id = id.map_err(GitError::git("walking history"))?;
            let commit = self
                .repo
                .find_commit(id)
                .map_err(GitError::git("reading commit"))?;
            trees.push(commit.tree_id());
            while let Some(tree_id) = trees.pop() {
                if !seen.insert(tree_id) {
                    continue;
                }
                let tree = self
                    .repo
                    .find_tree(tree_id)
                    .map_err(GitError::git("reading tree"))?;
                for entry in tree.iter() {
                    match entry.kind() {
                        Some(git2::ObjectType::Tree) => trees.push(entry.id()),
                        Some(git2::ObjectType::Blob) => {
                            let blob_id = entry.id();
                            if seen.contains(&blob_id) {
                                continue;
                            }
                            let (size, _) = odb
                                .read_header(blob_id)
                                .map_err(GitError::git("reading blob header"))?;
                            if size > LFS_POINTER_MAX_LEN {
                                seen.insert(blob_id);
                                continue;
                            }
                            seen.insert(blob_id);
                            let blob = self
                                .repo
                                .find_blob(blob_id)
                                .map_err(GitError::git("reading blob"))?;
                            if let Some(pointer) = LfsPointer::parse(blob.content()) {
                                found(pointer);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}
