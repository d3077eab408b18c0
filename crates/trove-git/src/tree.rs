//! Reading trees: the entry at a path, and listings of a folder, with LFS pointers recognised.

use crate::Result;
use crate::blob_facts::{self, BlobFacts};
use crate::error::GitError;
use crate::repo::{GitRepo, from_git2, to_git2};
use trove_types::{GitOid, LFS_POINTER_MAX_LEN, LfsPointer};

/// A file or folder of a commit's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path from the repository root, `/`-separated; empty for the root folder.
    pub path: String,
    /// File or folder, with its object id.
    pub kind: EntryKind,
}

/// What an [`Entry`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A file (symlinks included, as git stores them: a blob holding the target).
    File {
        /// The blob holding the content (or the LFS pointer).
        blob: GitOid,
        /// Size of the content: for an LFS file, the size the pointer announces, not the
        /// pointer's own size.
        size: u64,
        /// Set when the blob is a Git LFS pointer.
        lfs: Option<LfsInfo>,
    },
    /// A folder.
    Dir {
        /// The tree object of the folder.
        tree: GitOid,
    },
}

/// The LFS side of a file whose blob is a Git LFS pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LfsInfo {
    /// The parsed pointer: the content's SHA-256 and size.
    pub pointer: LfsPointer,
    /// Size of the pointer blob itself.
    pub pointer_size: u64,
}

impl GitRepo {
    /// The entry at `path` in the tree of `commit`, or `None` when there is none. The empty
    /// path is the root folder. A trailing `/` is accepted; empty segments are not. A path
    /// through a name the path rule refuses ([`crate::entry_name_problem`]) is `None` even
    /// when a stored tree holds it.
    pub fn entry_at(&self, commit: &GitOid, path: &str) -> Result<Option<Entry>> {
        let root = self
            .find_commit(commit)?
            .tree()
            .map_err(GitError::git("reading root tree"))?;
        let path = path.strip_suffix('/').unwrap_or(path);
        if path.is_empty() {
            return Ok(Some(Entry {
                path: String::new(),
                kind: EntryKind::Dir {
                    tree: from_git2(root.id()),
                },
            }));
        }
        let mut tree = root;
        let mut segments = path.split('/').peekable();
        let mut at_root = true;
        while let Some(segment) = segments.next() {
            let problem = if at_root {
                crate::root_entry_name_problem(segment.as_bytes())
            } else {
                crate::entry_name_problem(segment.as_bytes())
            };
            at_root = false;
            if problem.is_some() {
                return Ok(None);
            }
            let Some(entry) = tree
                .get_name_bytes(segment.as_bytes())
                .map(|e| e.to_owned())
            else {
                return Ok(None);
            };
            if segments.peek().is_none() {
                return self.entry_from(path.to_owned(), &entry);
            }
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    tree = self
                        .repo
                        .find_tree(entry.id())
                        .map_err(GitError::git("reading tree"))?;
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The entries under the folder `dir` ("" = root) of `commit`'s tree, in git's tree order
    /// (which is path order, folders comparing as `name/`). Non-recursive: the direct children.
    /// Recursive: every file and every folder below, depth-first, each folder right before its
    /// content. `None` when `dir` does not exist or is a file.
    ///
    /// Blob contents are not read, except for blobs small enough to be LFS pointers.
    pub fn list_tree(
        &self,
        commit: &GitOid,
        dir: &str,
        recursive: bool,
    ) -> Result<Option<Vec<Entry>>> {
        let Some(Entry {
            path,
            kind: EntryKind::Dir { tree },
        }) = self.entry_at(commit, dir)?
        else {
            return Ok(None);
        };
        let mut entries = Vec::new();
        // An explicit stack rather than recursion, since a pushed tree may be nested arbitrarily
        // deep. Children go on in reverse so that they come off in order, each folder's
        // content right after the folder: depth-first, in path order.
        let mut pending = self.children(&path, &tree)?;
        pending.reverse();
        while let Some(entry) = pending.pop() {
            if recursive && let EntryKind::Dir { tree } = &entry.kind {
                let mut children = self.children(&entry.path, tree)?;
                children.reverse();
                pending.append(&mut children);
            }
            entries.push(entry);
        }
        Ok(Some(entries))
    }

    /// The direct children of the folder `dir_path` whose tree is `tree`, in tree order.
    fn children(&self, dir_path: &str, tree: &GitOid) -> Result<Vec<Entry>> {
        let tree = self
            .repo
            .find_tree(to_git2(tree))
            .map_err(GitError::git("reading tree"))?;
        let mut children = Vec::with_capacity(tree.len());
        for entry in tree.iter() {
            // Trees stored before the path rule held for pushes may hold names it refuses
            // (`..`, `.git`, `a/b`, not UTF-8); they are never served, and a folder of that
            // name is not descended into.
            let problem = if dir_path.is_empty() {
                crate::root_entry_name_problem(entry.name_bytes())
            } else {
                crate::entry_name_problem(entry.name_bytes())
            };
            if problem.is_some() {
                continue;
            }
            let name = String::from_utf8_lossy(entry.name_bytes());
            let path = if dir_path.is_empty() {
                name.into_owned()
            } else {
                format!("{dir_path}/{name}")
            };
            if let Some(child) = self.entry_from(path, &entry)? {
                children.push(child);
            }
        }
        Ok(children)
    }

    /// Describes a tree entry; `None` for submodules (commit entries), which the Hub does not
    /// show.
    fn entry_from(&self, path: String, entry: &git2::TreeEntry<'_>) -> Result<Option<Entry>> {
        let kind = match entry.kind() {
            Some(git2::ObjectType::Tree) => EntryKind::Dir {
                tree: from_git2(entry.id()),
            },
            Some(git2::ObjectType::Blob) => {
                let BlobFacts { size, pointer } = self.blob_facts(entry.id())?;
                let lfs = pointer.map(|pointer| LfsInfo {
                    pointer,
                    pointer_size: size,
                });
                EntryKind::File {
                    blob: from_git2(entry.id()),
                    size: lfs.as_ref().map_or(size, |info| info.pointer.size),
                    lfs,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Entry { path, kind }))
    }

    /// The size of blob `id` and its LFS pointer, if it is one: remembered
    /// ([`crate::blob_facts`]), or read — the header, and the content only when the header says
    /// it is small enough to be a pointer.
    fn blob_facts(&self, id: git2::Oid) -> Result<BlobFacts> {
        if let Some(facts) = blob_facts::remembered(&id) {
            return Ok(facts);
        }
        let Some((size, _)) = self.object_header(id)? else {
            return Err(GitError::ObjectNotFound { oid: from_git2(id) });
        };
        let pointer = if size <= LFS_POINTER_MAX_LEN {
            let blob = self
                .repo
                .find_blob(id)
                .map_err(GitError::git("reading blob"))?;
            LfsPointer::parse(blob.content())
        } else {
            None
        };
        let facts = BlobFacts {
            size: size as u64,
            pointer,
        };
        blob_facts::remember(id, facts.clone());
        Ok(facts)
    }
}
