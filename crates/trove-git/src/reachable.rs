//! Which LFS objects a repository still needs: every pointer in every tree of every commit
//! reachable from any ref (branches, tags, `refs/pr/*`, anything under `refs/`). Garbage
//! collection of the chunk store marks from this.

use crate::Result;
use crate::error::GitError;
use crate::repo::GitRepo;
use std::collections::{HashMap, HashSet};
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

    /// Where each LFS object reachable from a ref is used: for every oid, one path naming it
    /// and the ref it was found from. Refs are walked branches first (the default branch
    /// before others), then tags, then the rest; each tree is read once, so an object is
    /// attributed to the first ref whose history holds it.
    pub fn lfs_pointer_places(&self, default_branch: &str) -> Result<HashMap<String, LfsPlace>> {
        let mut names: Vec<String> = Vec::new();
        for reference in self
            .repo
            .references()
            .map_err(GitError::git("listing refs"))?
        {
            let reference = reference.map_err(GitError::git("listing refs"))?;
            if let Some(name) = reference.name().filter(|n| n.starts_with("refs/")) {
                names.push(name.to_owned());
            }
        }
        let default_ref = format!("refs/heads/{default_branch}");
        names.sort_by_key(|n| {
            let rank = if *n == default_ref {
                0
            } else if n.starts_with("refs/heads/") {
                1
            } else if n.starts_with("refs/tags/") {
                2
            } else {
                3
            };
            (rank, n.clone())
        });
        let odb = self.repo.odb().map_err(GitError::git("opening odb"))?;
        let mut seen: HashSet<git2::Oid> = HashSet::new();
        let mut out: HashMap<String, LfsPlace> = HashMap::new();
        for name in names {
            let Ok(reference) = self.repo.find_reference(&name) else {
                continue;
            };
            let Ok(commit) = reference.peel_to_commit() else {
                continue;
            };
            let mut walk = self
                .repo
                .revwalk()
                .map_err(GitError::git("starting history walk"))?;
            walk.push(commit.id())
                .map_err(GitError::git("starting history walk"))?;
            for id in walk {
                let id = id.map_err(GitError::git("walking history"))?;
                let commit = self
                    .repo
                    .find_commit(id)
                    .map_err(GitError::git("reading commit"))?;
                let mut trees = vec![(commit.tree_id(), String::new())];
                while let Some((tree_id, prefix)) = trees.pop() {
                    if !seen.insert(tree_id) {
                        continue;
                    }
                    let tree = self
                        .repo
                        .find_tree(tree_id)
                        .map_err(GitError::git("reading tree"))?;
                    for entry in tree.iter() {
                        let path =
                            format!("{prefix}{}", String::from_utf8_lossy(entry.name_bytes()));
                        match entry.kind() {
                            Some(git2::ObjectType::Tree) => {
                                trees.push((entry.id(), format!("{path}/")))
                            }
                            Some(git2::ObjectType::Blob) => {
                                let blob_id = entry.id();
                                if !seen.insert(blob_id) {
                                    continue;
                                }
                                let (size, _) = odb
                                    .read_header(blob_id)
                                    .map_err(GitError::git("reading blob header"))?;
                                if size > LFS_POINTER_MAX_LEN {
                                    continue;
                                }
                                let blob = self
                                    .repo
                                    .find_blob(blob_id)
                                    .map_err(GitError::git("reading blob"))?;
                                if let Some(pointer) = LfsPointer::parse(blob.content()) {
                                    out.entry(pointer.oid.as_str().to_owned()).or_insert_with(
                                        || LfsPlace {
                                            path,
                                            reference: name.clone(),
                                        },
                                    );
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Where an LFS object is used: a path naming it, and the ref whose history holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsPlace {
    pub path: String,
    pub reference: String,
}
