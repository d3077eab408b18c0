//! Building a commit from file operations and publishing it with a compare-and-swap ref move.

use crate::durable;
use crate::edit::TreeEditor;
use crate::error::{CommitError, GitError};
use crate::repo::{GitRepo, Signature, from_git2, to_git2};
use crate::tree_op::TreeOp;
use trove_types::GitOid;

impl GitRepo {
    /// Builds a commit on `full_ref` (e.g. `refs/heads/main`, `refs/pr/3`) and moves the ref to it.
    ///
    /// The new tree is the tree of `base` (the head the caller observed; `None` = start from
    /// the empty tree with no parent, and the ref must not exist) with `ops` applied in order.
    /// The commit is authored and committed by `author` at `time_unix`; its message is
    /// `summary`, followed by a blank line and `description` when that is not empty.
    ///
    /// Nothing becomes visible until the ref moves, and it moves only if it still points at
    /// `base`: otherwise [`CommitError::RefMoved`]. On every error the ref is left untouched
    /// (objects already written stay unreferenced until git's garbage collection).
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the Hub's commit request, field for field"
    )]
    pub fn commit(
        &mut self,
        full_ref: &str,
        base: Option<&GitOid>,
        ops: &[TreeOp],
        summary: &str,
        description: &str,
        author: &Signature,
        time_unix: i64,
    ) -> Result<GitOid, CommitError> {
        if !full_ref.starts_with("refs/") || !git2::Reference::is_valid_name(full_ref) {
            return Err(CommitError::InvalidRef {
                full_ref: full_ref.to_owned(),
            });
        }
        // Fail early on a stale base so the caller hears about the conflict before any
        // complaint about its operations; the compare-and-swap below is what guarantees it.
        self.check_ref_at(full_ref, base)?;

        let parent = base.map(|oid| self.find_commit(oid)).transpose()?;
        let base_tree = parent.as_ref().map(|commit| commit.tree_id());
        let mut editor = TreeEditor::new(&self.repo, base_tree)?;
        for op in ops {
            match op {
                TreeOp::Upsert { path, blob } => {
                    let blob_id = to_git2(blob);
                    if !matches!(
                        self.object_header(blob_id)?,
                        Some((_, git2::ObjectType::Blob))
                    ) {
                        return Err(CommitError::BlobNotFound {
                            path: path.to_string(),
                            blob: blob.clone(),
                        });
                    }
                    editor.upsert(path.as_str(), blob_id)?;
                }
                TreeOp::DeleteFile { path } => editor.delete_file(path.as_str())?,
                TreeOp::DeleteFolder { path } => editor.delete_folder(path.as_str())?,
            }
        }
        let (tree_id, written_trees) = editor.write()?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(GitError::git("reading new tree"))?;

        let signature = author.to_git2(time_unix)?;
        let message = commit_message(summary, description);
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let commit_id = self
            .repo
            .commit(None, &signature, &signature, &message, &tree, &parents)
            .map_err(GitError::git("writing commit"))?;

        // Write, fsync, then publish: the ref moves only once everything it leads to is on disk.
        let mut written = written_trees;
        written.push(commit_id);
        durable::sync_objects(self.path(), &written)?;
        self.move_ref(full_ref, base, commit_id)?;
        Ok(from_git2(commit_id))
    }

    /// Replaces the history of `full_ref` by one commit without parents whose tree is the
    /// tree of `head` (the commit the ref points at, as the caller observed it): a
    /// super-squash. The ref moves by compare-and-swap from `head`, as in [`GitRepo::commit`];
    /// the old commits stay in the object database, unreferenced, until git's gc.
    pub fn squash(
        &mut self,
        full_ref: &str,
        head: &GitOid,
        message: &str,
        author: &Signature,
        time_unix: i64,
    ) -> Result<GitOid, CommitError> {
        if !full_ref.starts_with("refs/") || !git2::Reference::is_valid_name(full_ref) {
            return Err(CommitError::InvalidRef {
                full_ref: full_ref.to_owned(),
            });
        }
        self.check_ref_at(full_ref, Some(head))?;
        let tree = self
            .find_commit(head)?
            .tree()
            .map_err(GitError::git("reading the tree to squash"))?;
        let signature = author.to_git2(time_unix)?;
        let message = commit_message(message, "");
        let commit_id = self
            .repo
            .commit(None, &signature, &signature, &message, &tree, &[])
            .map_err(GitError::git("writing the squashed commit"))?;
        durable::sync_objects(self.path(), &[commit_id])?;
        self.move_ref(full_ref, Some(head), commit_id)?;
        Ok(from_git2(commit_id))
    }

    /// [`CommitError::RefMoved`] unless `full_ref` points at `expected` (`None` = absent).
    fn check_ref_at(&self, full_ref: &str, expected: Option<&GitOid>) -> Result<(), CommitError> {
        let actual = self.ref_target(full_ref)?;
        if actual.as_ref() == expected {
            Ok(())
        } else {
            Err(CommitError::RefMoved {
                full_ref: full_ref.to_owned(),
                expected: expected.cloned(),
                actual,
            })
        }
    }
}

/// The commit message: summary, then the description after a blank line; ended by a newline
/// as `git commit` does, so that `git log` and other tools show it as they would their own.
fn commit_message(summary: &str, description: &str) -> String {
    let mut message = summary.trim_end().to_owned();
    if !description.trim().is_empty() {
        message.push_str("\n\n");
        message.push_str(description.trim_end());
    }
    message.push('\n');
    message
}

#[cfg(test)]
mod tests {
    use super::commit_message;

    #[test]
    fn message_joins_summary_and_description_like_git() {
        assert_eq!(commit_message("Add x", ""), "Add x\n");
        assert_eq!(commit_message("Add x  ", "  \n"), "Add x\n");
        assert_eq!(
            commit_message("Add x", "  indented\nbody\n\n"),
            "Add x\n\n  indented\nbody\n"
        );
    }
}
