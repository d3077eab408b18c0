//! An in-memory editor of a git tree: loads only the trees along the touched paths, applies
//! file operations in order, and writes the changed trees bottom-up.
//!
//! We edit in memory rather than with libgit2's `git_tree_create_updated` so that every
//! file/folder conflict is detected and reported with the path the caller gave.

use crate::error::{CommitError, GitError};
use std::collections::BTreeMap;

/// Mode of every file this editor writes: a regular, non-executable file.
const MODE_FILE: i32 = 0o100644;
/// Mode of a subtree entry.
const MODE_TREE: i32 = 0o040000;

/// One entry of a directory being edited.
enum Node {
    /// Anything that is not a tree (file, symlink, submodule), kept with its mode.
    Leaf { oid: git2::Oid, mode: i32 },
    /// A subtree nobody has looked into: written back as it was.
    Tree(git2::Oid),
    /// A subtree loaded because an operation goes through it.
    Dir(Dir),
}

/// A directory being edited. Keys are raw names: pushed trees may hold non-UTF-8 names,
/// which must survive an edit of a sibling.
#[derive(Default)]
struct Dir {
    entries: BTreeMap<Vec<u8>, Node>,
}

impl Dir {
    fn load(repo: &git2::Repository, oid: git2::Oid) -> Result<Dir, GitError> {
        let tree = repo.find_tree(oid).map_err(GitError::git("reading tree"))?;
        let entries = tree
            .iter()
            .map(|entry| {
                let node = match entry.kind() {
                    Some(git2::ObjectType::Tree) => Node::Tree(entry.id()),
                    _ => Node::Leaf {
                        oid: entry.id(),
                        mode: entry.filemode(),
                    },
                };
                (entry.name_bytes().to_vec(), node)
            })
            .collect();
        Ok(Dir { entries })
    }

    /// A directory without files does not exist in git: one emptied by earlier operations
    /// counts as absent, as it will be once written.
    fn is_empty(&self) -> bool {
        self.entries
            .values()
            .all(|node| matches!(node, Node::Dir(dir) if dir.is_empty()))
    }
}

/// Where a walk to a path's parent directory ended.
enum Walk<'a> {
    Found(&'a mut Dir),
    Missing,
    /// A segment on the way is a file.
    BlockedByFile,
}

/// Loads and follows `segments` from `dir`; with `create`, missing directories are added.
fn walk<'a>(
    repo: &git2::Repository,
    mut dir: &'a mut Dir,
    segments: &[&str],
    create: bool,
) -> Result<Walk<'a>, GitError> {
    for segment in segments {
        if create {
            dir.entries
                .entry(segment.as_bytes().to_vec())
                .or_insert_with(|| Node::Dir(Dir::default()));
        }
        let Some(node) = dir.entries.get_mut(segment.as_bytes()) else {
            return Ok(Walk::Missing);
        };
        if let Node::Tree(oid) = *node {
            *node = Node::Dir(Dir::load(repo, oid)?);
        }
        match node {
            Node::Dir(child) => dir = child,
            _ => return Ok(Walk::BlockedByFile),
        }
    }
    Ok(Walk::Found(dir))
}

/// Splits a validated repository path into its parent segments and its last segment.
fn split(path: &str) -> (Vec<&str>, &str) {
    let mut segments: Vec<&str> = path.split('/').collect();
    let last = segments
        .pop()
        .expect("split always yields at least one segment");
    (segments, last)
}

/// A tree under edit. Paths given to it are validated `RepoPath`s: relative, no empty,
/// `.`, `..` or `.git` segments.
pub(crate) struct TreeEditor<'r> {
    repo: &'r git2::Repository,
    root: Dir,
}

impl<'r> TreeEditor<'r> {
    /// Starts from `base` (a tree id), or from the empty tree.
    pub(crate) fn new(
        repo: &'r git2::Repository,
        base: Option<git2::Oid>,
    ) -> Result<Self, GitError> {
        let root = match base {
            Some(oid) => Dir::load(repo, oid)?,
            None => Dir::default(),
        };
        Ok(Self { repo, root })
    }

    /// Puts `blob` at `path` as a regular file, creating parent folders as needed.
    pub(crate) fn upsert(&mut self, path: &str, blob: git2::Oid) -> Result<(), CommitError> {
        let conflict = || CommitError::PathConflict {
            path: path.to_owned(),
        };
        let (parents, name) = split(path);
        let dir = match walk(self.repo, &mut self.root, &parents, true)? {
            Walk::Found(dir) => dir,
            Walk::Missing | Walk::BlockedByFile => return Err(conflict()),
        };
        let is_folder = match dir.entries.get(name.as_bytes()) {
            Some(Node::Tree(_)) => true,
            Some(Node::Dir(existing)) => !existing.is_empty(),
            Some(Node::Leaf { .. }) | None => false,
        };
        if is_folder {
            return Err(conflict());
        }
        dir.entries.insert(
            name.as_bytes().to_vec(),
            Node::Leaf {
                oid: blob,
                mode: MODE_FILE,
            },
        );
        Ok(())
    }

    /// Removes the file at `path`.
    ///
    /// A folder of that name is removed with everything under it, as the Hub does for a
    /// `deletedFile` naming a folder.
    pub(crate) fn delete_file(&mut self, path: &str) -> Result<(), CommitError> {
        let (parents, name) = split(path);
        if let Walk::Found(dir) = walk(self.repo, &mut self.root, &parents, false)?
            && let Some(Node::Leaf { .. }) = dir.entries.get(name.as_bytes())
        {
            dir.entries.remove(name.as_bytes());
            return Ok(());
        }
        self.delete_folder(path)
    }

    /// Removes the folder at `path` and everything under it.
    pub(crate) fn delete_folder(&mut self, path: &str) -> Result<(), CommitError> {
        let (parents, name) = split(path);
        if let Walk::Found(dir) = walk(self.repo, &mut self.root, &parents, false)? {
            let is_folder = match dir.entries.get(name.as_bytes()) {
                Some(Node::Tree(_)) => true,
                Some(Node::Dir(existing)) => !existing.is_empty(),
                Some(Node::Leaf { .. }) | None => false,
            };
            if is_folder {
                dir.entries.remove(name.as_bytes());
                return Ok(());
            }
        }
        Err(CommitError::EntryNotFound {
            path: path.to_owned(),
        })
    }

    /// Writes the edited trees, bottom-up, and returns the root tree id with the ids of every
    /// tree written (to be made durable). Folders left without files are dropped; a root
    /// without files is the empty tree.
    pub(crate) fn write(self) -> Result<(git2::Oid, Vec<git2::Oid>), GitError> {
        let mut written = Vec::new();
        let root = match write_dir(self.repo, self.root, &mut written)? {
            Some(oid) => oid,
            None => {
                let builder = self
                    .repo
                    .treebuilder(None)
                    .map_err(GitError::git("creating tree"))?;
                let oid = builder.write().map_err(GitError::git("writing tree"))?;
                written.push(oid);
                oid
            }
        };
        Ok((root, written))
    }
}

/// Writes `dir` and its loaded subdirectories, noting their ids in `written`; `None` when it
/// holds nothing.
fn write_dir(
    repo: &git2::Repository,
    dir: Dir,
    written: &mut Vec<git2::Oid>,
) -> Result<Option<git2::Oid>, GitError> {
    // TreeBuilder sorts entries the way git requires (folders compare as "name/").
    let mut builder = repo
        .treebuilder(None)
        .map_err(GitError::git("creating tree"))?;
    for (name, node) in dir.entries {
        let (oid, mode) = match node {
            Node::Leaf { oid, mode } => (oid, mode),
            Node::Tree(oid) => (oid, MODE_TREE),
            Node::Dir(child) => match write_dir(repo, child, written)? {
                Some(oid) => (oid, MODE_TREE),
                None => continue,
            },
        };
        builder
            .insert(name, oid, mode)
            .map_err(GitError::git("adding tree entry"))?;
    }
    if builder.is_empty() {
        return Ok(None);
    }
    let oid = builder.write().map_err(GitError::git("writing tree"))?;
    written.push(oid);
    Ok(Some(oid))
}
