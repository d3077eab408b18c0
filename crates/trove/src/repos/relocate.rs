//! Copying a hub's git repositories into another folder (`trove migrate --git-dir DIR`):
//! each `<id>.git` is copied whole — objects, refs, config and hooks as the server left them —
//! into `DIR/.staging/`, every file and folder fsynced, checked (the copy's refs equal the
//! source's, `git fsck --connectivity-only` passes), then renamed into place in one step. A
//! run killed midway leaves at most a staged copy, which the next run (or the server's
//! start-up reconciliation) removes; repositories already in place with the same refs are
//! skipped.

use anyhow::Context as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitCopyReport {
    pub copied: u64,
    pub present: u64,
    pub bytes: u64,
}

/// Suffix of this module's staged copies in `<dest>/.staging/`.
const STAGED_SUFFIX: &str = ".git.migrating";

/// Copies repositories `ids` from `source` to `dest` (both folders of `<id>.git`
/// repositories), calling `progress` after each. Blocking: call from the blocking pool.
pub fn copy_repos(
    source: &Path,
    dest: &Path,
    ids: &[i64],
    git_bin: &Path,
    mut progress: impl FnMut(&GitCopyReport),
) -> anyhow::Result<GitCopyReport> {
    let staging = super::folders::staging_dir(dest);
    fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    for entry in fs::read_dir(&staging)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(STAGED_SUFFIX) {
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing the leftover {}", path.display()))?;
        }
    }
    let mut report = GitCopyReport::default();
    for id in ids {
        let name = format!("{id}.git");
        let from = source.join(&name);
        let to = dest.join(&name);
        let source_refs = refs(git_bin, &from)?;
        if to.exists() {
            anyhow::ensure!(
                refs(git_bin, &to)? == source_refs,
                "{} exists with other refs than {}: not overwritten",
                to.display(),
                from.display()
            );
            report.present += 1;
            progress(&report);
            continue;
        }
        let staged = staging.join(format!("{id}{STAGED_SUFFIX}"));
        report.bytes += copy_tree(&from, &staged)?;
        sync_dir(&staging)?;
        anyhow::ensure!(
            refs(git_bin, &staged)? == source_refs,
            "the copy of {} has other refs than the source",
            from.display()
        );
        run_git(
            git_bin,
            &staged,
            &["fsck", "--connectivity-only", "--no-progress"],
            || format!("git fsck of the copy of {}", from.display()),
        )?;
        fs::rename(&staged, &to)
            .with_context(|| format!("renaming {} to {}", staged.display(), to.display()))?;
        sync_dir(dest)?;
        report.copied += 1;
        progress(&report);
    }
    Ok(report)
}

/// Every ref of the repository at `dir` with its object, sorted (`git for-each-ref`).
fn refs(git_bin: &Path, dir: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(dir.is_dir(), "no git repository at {}", dir.display());
    let listed = run_git(
        git_bin,
        dir,
        &["for-each-ref", "--format=%(objectname) %(refname)"],
        || format!("git for-each-ref in {}", dir.display()),
    )?;
    let head = fs::read_to_string(dir.join("HEAD")).unwrap_or_default();
    Ok(format!(
        "{}HEAD {}",
        String::from_utf8_lossy(&listed),
        head.trim()
    ))
}

/// Runs `git args` on the repository at `dir` and returns its standard output; fails with
/// `what` and git's own message if git does.
fn run_git(
    git_bin: &Path,
    dir: &Path,
    args: &[&str],
    what: impl FnOnce() -> String,
) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(git_bin)
        .args(args)
        .env("GIT_DIR", dir)
        .output()
        .with_context(|| format!("running {}", git_bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{}: {}",
        what(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout)
}

/// Copies the folder `from` to `to` (which must not exist): files fsynced, symlinks kept,
/// folders fsynced after their entries. Returns the bytes copied.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
    let mut bytes = 0;
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(from.to_owned(), to.to_owned())];
    let mut dirs = Vec::new();
    while let Some((src, dst)) = stack.pop() {
        for entry in fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let target = dst.join(entry.file_name());
            if kind.is_dir() {
                fs::create_dir(&target)
                    .with_context(|| format!("creating {}", target.display()))?;
                stack.push((entry.path(), target));
            } else if kind.is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)
                    .with_context(|| format!("linking {}", target.display()))?;
            } else {
                bytes += fs::copy(entry.path(), &target)
                    .with_context(|| format!("copying {}", entry.path().display()))?;
                fs::File::open(&target)
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("syncing {}", target.display()))?;
            }
        }
        dirs.push(dst);
    }
    for dir in dirs.iter().rev() {
        sync_dir(dir)?;
    }
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}
