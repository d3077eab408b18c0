//! What a commit or a pull request changes, file by file, within budgets: a page shows a
//! diff, so the walk stops at a number of files and of lines, and says where it stopped.

use crate::Result;
use crate::error::GitError;
use crate::repo::{GitRepo, from_git2, to_git2};
use trove_types::GitOid;

/// How much of a diff to produce.
#[derive(Clone, Copy, Debug)]
pub struct DiffLimits {
    /// Files listed at most; the rest are counted only.
    pub max_files: usize,
    /// Lines kept per file; a longer file diff is cut (and marked).
    pub max_lines_per_file: usize,
    /// Lines kept over all files; files past it are listed without lines.
    pub max_total_lines: usize,
}

/// How a file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Deleted,
    Modified,
    Renamed,
    /// Type changes and anything else libgit2 reports.
    Other,
}

/// One line of a file's diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffLine {
    /// `+`, `-`, ` ` (context) or `@` (a hunk header).
    pub origin: char,
    pub text: String,
}

/// One changed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiff {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub kind: ChangeKind,
    /// Binary content: no lines, only sizes.
    pub binary: bool,
    /// Either side is a Git LFS pointer (the lines are the pointers').
    pub lfs: bool,
    pub old_size: u64,
    pub new_size: u64,
    pub additions: usize,
    pub deletions: usize,
    pub lines: Vec<DiffLine>,
    /// Lines were left out (per-file or total budget).
    pub truncated: bool,
}

impl FileDiff {
    /// The path to show: the new one, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

/// The files a diff changes, within [`DiffLimits`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeDiff {
    pub files: Vec<FileDiff>,
    /// Changed files beyond `max_files`, not listed.
    pub more_files: usize,
}

const LFS_SPEC: &str = "version https://git-lfs.github.com/spec/";

impl GitRepo {
    /// The merge base of two commits; `None` when their histories are unrelated.
    pub fn merge_base(&self, a: &GitOid, b: &GitOid) -> Result<Option<GitOid>> {
        match self.repo.merge_base(to_git2(a), to_git2(b)) {
            Ok(oid) => Ok(Some(from_git2(oid))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(GitError::Git {
                action: "finding merge base",
                source: e,
            }),
        }
    }

    /// What `to` changes relative to `from` (`None`: the empty tree, as for a root commit).
    pub fn diff_commits(
        &self,
        from: Option<&GitOid>,
        to: &GitOid,
        limits: DiffLimits,
    ) -> Result<TreeDiff> {
        let old_tree = from
            .map(|c| {
                self.find_commit(c)?
                    .tree()
                    .map_err(GitError::git("reading tree"))
            })
            .transpose()?;
        let new_tree = self
            .find_commit(to)?
            .tree()
            .map_err(GitError::git("reading tree"))?;
        let mut diff = self
            .repo
            .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)
            .map_err(GitError::git("diffing trees"))?;
        let mut find = git2::DiffFindOptions::new();
        find.renames(true);
        diff.find_similar(Some(&mut find))
            .map_err(GitError::git("finding renames"))?;
        let count = diff.deltas().len();
        let mut out = TreeDiff {
            files: Vec::with_capacity(count.min(limits.max_files)),
            more_files: count.saturating_sub(limits.max_files),
        };
        let mut total_lines = 0usize;
        for index in 0..count.min(limits.max_files) {
            let Some(delta) = diff.get_delta(index) else {
                continue;
            };
            let path_of = |file: git2::DiffFile<'_>| {
                (!file.id().is_zero())
                    .then(|| {
                        file.path_bytes()
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                    })
                    .flatten()
            };
            let kind = match delta.status() {
                git2::Delta::Added => ChangeKind::Added,
                git2::Delta::Deleted => ChangeKind::Deleted,
                git2::Delta::Modified => ChangeKind::Modified,
                git2::Delta::Renamed => ChangeKind::Renamed,
                _ => ChangeKind::Other,
            };
            let mut file = FileDiff {
                old_path: path_of(delta.old_file()),
                new_path: path_of(delta.new_file()),
                kind,
                binary: false,
                lfs: false,
                old_size: delta.old_file().size(),
                new_size: delta.new_file().size(),
                additions: 0,
                deletions: 0,
                lines: Vec::new(),
                truncated: false,
            };
            let patch = git2::Patch::from_diff(&diff, index)
                .map_err(GitError::git("computing a file's diff"))?;
            match patch {
                None => file.binary = true,
                Some(patch) => {
                    file.binary = patch.delta().flags().is_binary();
                    let (_, additions, deletions) = patch
                        .line_stats()
                        .map_err(GitError::git("counting diff lines"))?;
                    file.additions = additions;
                    file.deletions = deletions;
                    if !file.binary {
                        self.collect_lines(&patch, &mut file, limits, &mut total_lines)?;
                    }
                }
            }
            out.files.push(file);
        }
        Ok(out)
    }

    fn collect_lines(
        &self,
        patch: &git2::Patch<'_>,
        file: &mut FileDiff,
        limits: DiffLimits,
        total_lines: &mut usize,
    ) -> Result<()> {
        let budget = limits
            .max_lines_per_file
            .min(limits.max_total_lines.saturating_sub(*total_lines));
        'hunks: for h in 0..patch.num_hunks() {
            let (hunk, lines) = patch.hunk(h).map_err(GitError::git("reading a hunk"))?;
            if file.lines.len() >= budget {
                file.truncated = true;
                break;
            }
            file.lines.push(DiffLine {
                origin: '@',
                text: String::from_utf8_lossy(hunk.header()).trim_end().to_owned(),
            });
            for l in 0..lines {
                if file.lines.len() >= budget {
                    file.truncated = true;
                    break 'hunks;
                }
                let line = patch
                    .line_in_hunk(h, l)
                    .map_err(GitError::git("reading a diff line"))?;
                let text = String::from_utf8_lossy(line.content())
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if text.starts_with(LFS_SPEC) {
                    file.lfs = true;
                }
                let origin = match line.origin() {
                    '+' | '-' | ' ' => line.origin(),
                    // "\ No newline at end of file" and the like.
                    _ => ' ',
                };
                file.lines.push(DiffLine { origin, text });
            }
        }
        *total_lines += file.lines.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Signature;
    use crate::{DiffLimits, TreeOp};
    use trove_types::RepoPath;

    fn author() -> Signature {
        Signature {
            name: "alice".into(),
            email: "alice@example.com".into(),
        }
    }

    const WIDE: DiffLimits = DiffLimits {
        max_files: 100,
        max_lines_per_file: 1000,
        max_total_lines: 1000,
    };

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

    fn commit(repo: &mut GitRepo, base: &GitOid, files: &[(&str, &[u8])]) -> GitOid {
        let ops: Vec<TreeOp> = files
            .iter()
            .map(|(path, content)| TreeOp::Upsert {
                path: RepoPath::parse(path).expect("path"),
                blob: repo.write_blob(content).expect("blob"),
            })
            .collect();
        repo.commit(
            "refs/heads/main",
            Some(base),
            &ops,
            "edit",
            "",
            &author(),
            1_700_000_001,
        )
        .expect("commit")
    }

    #[test]
    fn a_commit_diff_lists_files_lines_and_binaries() {
        let (_dir, mut repo, initial) = setup();
        let head = commit(
            &mut repo,
            &initial,
            &[
                ("README.md", b"hello\nworld\n"),
                ("blob.bin", b"\0\x01\x02binary"),
                (
                    "model.bin",
                    b"version https://git-lfs.github.com/spec/v1\noid sha256:aa\nsize 3\n",
                ),
            ],
        );
        let diff = repo
            .diff_commits(Some(&initial), &head, WIDE)
            .expect("diff");
        let by_path = |p: &str| diff.files.iter().find(|f| f.path() == p).expect(p);
        let readme = by_path("README.md");
        assert_eq!(readme.kind, ChangeKind::Modified);
        assert_eq!((readme.additions, readme.deletions), (1, 0));
        assert!(
            readme
                .lines
                .iter()
                .any(|l| l.origin == '+' && l.text == "world")
        );
        assert!(readme.lines.first().is_some_and(|l| l.origin == '@'));
        assert!(by_path("blob.bin").binary && by_path("blob.bin").lines.is_empty());
        assert!(by_path("model.bin").lfs);
        assert_eq!(by_path("model.bin").kind, ChangeKind::Added);
        let root = repo.diff_commits(None, &initial, WIDE).expect("root diff");
        assert_eq!(root.files.len(), 1);
    }

    #[test]
    fn diffs_stop_at_their_budgets() {
        let (_dir, mut repo, initial) = setup();
        let long: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let head = commit(
            &mut repo,
            &initial,
            &[
                ("a.txt", long.as_bytes()),
                ("b.txt", long.as_bytes()),
                ("c.txt", b"c\n"),
            ],
        );
        let limits = DiffLimits {
            max_files: 2,
            max_lines_per_file: 10,
            max_total_lines: 15,
        };
        let diff = repo
            .diff_commits(Some(&initial), &head, limits)
            .expect("diff");
        assert_eq!(diff.files.len(), 2);
        assert_eq!(diff.more_files, 1);
        assert_eq!(diff.files[0].lines.len(), 10);
        assert!(diff.files[0].truncated);
        assert_eq!(diff.files[1].lines.len(), 5, "what the total budget leaves");
        assert!(diff.files[1].truncated);
        assert_eq!(diff.files[0].additions, 50, "counts are whole");
    }
}
