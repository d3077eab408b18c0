//! Merging a pull request's head into its base branch, and the patch a reviewer reads.
//!
//! A merge fast-forwards when the base has not moved since the pull request started, and
//! otherwise writes a merge commit from libgit2's in-memory three-way merge; either way the
//! base ref moves only by compare-and-swap, after the new objects are on disk.

use crate::Result;
use crate::durable;
use crate::error::{CommitError, GitError};
use crate::repo::{GitRepo, Signature, from_git2, to_git2};
use trove_types::GitOid;

/// What merging `head` into `base` would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergePlan {
    /// `head` is already contained in `base`: nothing to do.
    UpToDate,
    /// `base` is an ancestor of `head`: the branch moves to `head`.
    FastForward,
    /// Both moved; the three-way merge is clean.
    MergeCommit,
    /// Both moved and these paths conflict.
    Conflicts(Vec<String>),
}

impl GitRepo {
    /// How `head` would merge into `base`, without writing anything.
    pub fn merge_plan(&self, base: &GitOid, head: &GitOid) -> Result<MergePlan> {
        if base == head || self.is_ancestor(head, base)? {
            return Ok(MergePlan::UpToDate);
        }
        if self.is_ancestor(base, head)? {
            return Ok(MergePlan::FastForward);
        }
        let index = self.merged_index(base, head)?;
        let conflicts = conflict_paths(&index)?;
        Ok(if conflicts.is_empty() {
            MergePlan::MergeCommit
        } else {
            MergePlan::Conflicts(conflicts)
        })
    }

    /// Merges `head` into `full_ref`, which must point at `base`: fast-forward when possible,
    /// else a merge commit (parents `base`, `head`) authored by `author`. Returns the commit
    /// the ref points at afterwards. [`CommitError::MergeConflict`] when paths conflict,
    /// [`CommitError::RefMoved`] when the ref is no longer at `base`.
    pub fn merge_into(
        &mut self,
        full_ref: &str,
        base: &GitOid,
        head: &GitOid,
        message: &str,
        author: &Signature,
        time_unix: i64,
    ) -> Result<GitOid, CommitError> {
        match self.merge_plan(base, head)? {
            MergePlan::UpToDate => {
                if self.ref_target(full_ref)?.as_ref() != Some(base) {
                    return Err(CommitError::RefMoved {
                        full_ref: full_ref.to_owned(),
                        expected: Some(base.clone()),
                        actual: self.ref_target(full_ref)?,
                    });
                }
                Ok(base.clone())
            }
            MergePlan::FastForward => {
                self.move_ref(full_ref, Some(base), to_git2(head))?;
                Ok(head.clone())
            }
            MergePlan::Conflicts(paths) => Err(CommitError::MergeConflict { paths }),
            MergePlan::MergeCommit => {
                let mut index = self.merged_index(base, head)?;
                let tree_id = index
                    .write_tree_to(&self.repo)
                    .map_err(GitError::git("writing merged tree"))?;
                let base_commit = self.find_commit(base)?;
                let head_commit = self.find_commit(head)?;
                let tree = self
                    .repo
                    .find_tree(tree_id)
                    .map_err(GitError::git("reading merged tree"))?;
                let signature = author.to_git2(time_unix)?;
                let mut message = message.trim_end().to_owned();
                message.push('\n');
                let commit_id = self
                    .repo
                    .commit(
                        None,
                        &signature,
                        &signature,
                        &message,
                        &tree,
                        &[&base_commit, &head_commit],
                    )
                    .map_err(GitError::git("writing merge commit"))?;
                let mut written = Vec::new();
                self.new_trees(
                    &tree,
                    &[base_commit.tree_id(), head_commit.tree_id()],
                    &mut written,
                )?;
                written.push(commit_id);
                durable::sync_objects(self.path(), &written)?;
                self.move_ref(full_ref, Some(base), commit_id)?;
                Ok(from_git2(commit_id))
            }
        }
    }

    /// The patch from the merge base of `base` and `head` to `head` (what the pull request
    /// changes), cut after `max_bytes` with a note saying so.
    pub fn diff_since_merge_base(
        &self,
        base: &GitOid,
        head: &GitOid,
        max_bytes: usize,
    ) -> Result<String> {
        let from = match self.repo.merge_base(to_git2(base), to_git2(head)) {
            Ok(oid) => Some(
                self.find_commit(&from_git2(oid))?
                    .tree()
                    .map_err(GitError::git("reading tree"))?,
            ),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => {
                return Err(GitError::Git {
                    action: "finding merge base",
                    source: e,
                });
            }
        };
        let to = self
            .find_commit(head)?
            .tree()
            .map_err(GitError::git("reading tree"))?;
        let diff = self
            .repo
            .diff_tree_to_tree(from.as_ref(), Some(&to), None)
            .map_err(GitError::git("diffing trees"))?;
        let mut text: Vec<u8> = Vec::new();
        let mut truncated = false;
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            let prefix: &[u8] = match line.origin() {
                '+' => b"+",
                '-' => b"-",
                ' ' => b" ",
                _ => b"",
            };
            if text.len() + prefix.len() + line.content().len() > max_bytes {
                truncated = true;
                return false;
            }
            text.extend_from_slice(prefix);
            text.extend_from_slice(line.content());
            true
        })
        .or_else(|e| {
            // Returning false from the callback stops the walk; libgit2 reports that as a
            // user error, which is ours and expected.
            if truncated {
                Ok(())
            } else {
                Err(GitError::Git {
                    action: "printing diff",
                    source: e,
                })
            }
        })?;
        let mut text = String::from_utf8_lossy(&text).into_owned();
        if truncated {
            text.push_str("\n[diff truncated]\n");
        }
        Ok(text)
    }

    /// Is `ancestor` reachable from `descendant` (or equal to it)?
    fn is_ancestor(&self, ancestor: &GitOid, descendant: &GitOid) -> Result<bool> {
        if ancestor == descendant {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(to_git2(descendant), to_git2(ancestor))
            .map_err(GitError::git("walking history"))
    }

    fn merged_index(&self, base: &GitOid, head: &GitOid) -> Result<git2::Index> {
        let ours = self.find_commit(base)?;
        let theirs = self.find_commit(head)?;
        self.repo
            .merge_commits(&ours, &theirs, None)
            .map_err(GitError::git("merging"))
    }

    /// The trees under `tree` (itself included) that appear at the same path in none of
    /// `olds`: the ones a merge wrote, which must reach the disk before the ref moves.
    fn new_trees(
        &self,
        tree: &git2::Tree<'_>,
        olds: &[git2::Oid],
        out: &mut Vec<git2::Oid>,
    ) -> Result<()> {
        if olds.contains(&tree.id()) {
            return Ok(());
        }
        out.push(tree.id());
        let old_trees: Vec<git2::Tree<'_>> = olds
            .iter()
            .filter_map(|oid| self.repo.find_tree(*oid).ok())
            .collect();
        for entry in tree.iter() {
            if entry.kind() != Some(git2::ObjectType::Tree) {
                continue;
            }
            let same_path: Vec<git2::Oid> = old_trees
                .iter()
                .filter_map(|old| old.get_name_bytes(entry.name_bytes()).map(|e| e.id()))
                .collect();
            let subtree = self
                .repo
                .find_tree(entry.id())
                .map_err(GitError::git("reading merged tree"))?;
            self.new_trees(&subtree, &same_path, out)?;
        }
        Ok(())
    }
}

/// The paths of an in-memory merge's conflicts, sorted, each once.
fn conflict_paths(index: &git2::Index) -> Result<Vec<String>> {
    if !index.has_conflicts() {
        return Ok(Vec::new());
    }
    let mut paths = Vec::new();
    for conflict in index
        .conflicts()
        .map_err(GitError::git("reading conflicts"))?
    {
        let conflict = conflict.map_err(GitError::git("reading conflicts"))?;
        let entry = conflict.our.or(conflict.their).or(conflict.ancestor);
        if let Some(entry) = entry {
            paths.push(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TreeOp;
    use trove_types::RepoPath;

    fn author() -> Signature {
        Signature {
            name: "alice".into(),
            email: "alice@example.com".into(),
        }
    }

    fn write(
        repo: &mut GitRepo,
        full_ref: &str,
        base: &GitOid,
        path: &str,
        content: &str,
    ) -> GitOid {
        let blob = repo.write_blob(content.as_bytes()).expect("blob");
        let ops = [TreeOp::Upsert {
            path: RepoPath::parse(path).expect("path"),
            blob,
        }];
        repo.commit(
            full_ref,
            Some(base),
            &ops,
            "edit",
            "",
            &author(),
            1_700_000_000,
        )
        .expect("commit")
    }

    fn setup() -> (tempfile::TempDir, GitRepo, GitOid) {
        let dir = tempfile::tempdir().expect("tmp");
        let (repo, initial) = GitRepo::init_bare(
            &dir.path().join("r.git"),
            &[("README.md", b"hello\n".as_slice())],
            &author(),
            1_700_000_000,
        )
        .expect("init");
        (dir, repo, initial)
    }

    #[test]
    fn fast_forward_then_up_to_date() {
        let (_dir, mut repo, initial) = setup();
        repo.create_ref("refs/pr/1", &initial).expect("pr ref");
        let head = write(&mut repo, "refs/pr/1", &initial, "a.txt", "a\n");
        assert_eq!(
            repo.merge_plan(&initial, &head).expect("plan"),
            MergePlan::FastForward
        );
        let diff = repo
            .diff_since_merge_base(&initial, &head, 1 << 20)
            .expect("diff");
        assert!(diff.contains("+a"), "{diff}");
        assert!(diff.contains("a.txt"), "{diff}");
        let merged = repo
            .merge_into(
                "refs/heads/main",
                &initial,
                &head,
                "Merge",
                &author(),
                1_700_000_001,
            )
            .expect("merge");
        assert_eq!(merged, head);
        assert_eq!(
            repo.merge_plan(&head, &head).expect("plan"),
            MergePlan::UpToDate
        );
    }

    #[test]
    fn diverged_branches_merge_cleanly_or_report_conflicts() {
        let (_dir, mut repo, initial) = setup();
        repo.create_ref("refs/pr/1", &initial).expect("pr ref");
        repo.create_ref("refs/pr/2", &initial).expect("pr ref");
        let pr1 = write(&mut repo, "refs/pr/1", &initial, "a.txt", "a\n");
        let pr2 = write(
            &mut repo,
            "refs/pr/2",
            &initial,
            "README.md",
            "changed by pr2\n",
        );
        let main = write(
            &mut repo,
            "refs/heads/main",
            &initial,
            "README.md",
            "changed on main\n",
        );
        assert_eq!(
            repo.merge_plan(&main, &pr1).expect("plan"),
            MergePlan::MergeCommit
        );
        assert_eq!(
            repo.merge_plan(&main, &pr2).expect("plan"),
            MergePlan::Conflicts(vec!["README.md".into()])
        );
        let stale = repo.merge_into("refs/heads/main", &initial, &pr1, "Merge", &author(), 2);
        assert!(matches!(stale, Err(CommitError::RefMoved { .. })));
        let merged = repo
            .merge_into("refs/heads/main", &main, &pr1, "Merge #1", &author(), 2)
            .expect("merge");
        assert_eq!(
            repo.ref_target("refs/heads/main").expect("ref"),
            Some(merged.clone())
        );
        {
            let commit = repo.find_commit(&merged).expect("commit");
            assert_eq!(commit.parent_count(), 2);
            let tree = commit.tree().expect("tree");
            assert!(tree.get_name("a.txt").is_some());
            assert!(tree.get_name("README.md").is_some());
        }
        let conflict = repo.merge_into("refs/heads/main", &merged, &pr2, "Merge #2", &author(), 3);
        assert!(matches!(conflict, Err(CommitError::MergeConflict { .. })));
        assert_eq!(
            repo.ref_target("refs/heads/main").expect("ref"),
            Some(merged)
        );
    }

    #[test]
    fn long_diffs_are_cut() {
        let (_dir, mut repo, initial) = setup();
        repo.create_ref("refs/pr/1", &initial).expect("pr ref");
        let head = write(
            &mut repo,
            "refs/pr/1",
            &initial,
            "big.txt",
            &"line\n".repeat(10_000),
        );
        let diff = repo
            .diff_since_merge_base(&initial, &head, 1000)
            .expect("diff");
        assert!(diff.len() < 1100);
        assert!(diff.ends_with("[diff truncated]\n"));
    }
}
