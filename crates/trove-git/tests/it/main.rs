//! Integration tests of trove-git: repositories built in temporary directories, checked
//! through the public API and against the real git CLI.

mod commit;
mod history;
mod hostile;
mod init;
mod interop;
mod kept;
mod push;
mod refs;
mod revision;
mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;
use trove_git::{GitRepo, Signature, TreeOp};
use trove_types::{GitOid, RepoPath};

/// A fixed clock: tests are deterministic.
pub const T0: i64 = 1_700_000_000;

pub const GITATTRIBUTES: &[u8] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n";

pub fn alice() -> Signature {
    Signature {
        name: "Alice Example".into(),
        email: "alice@example.com".into(),
    }
}

/// A fresh repository with its initial commit, in a directory removed on drop.
pub struct Fixture {
    pub dir: TempDir,
    pub repo: GitRepo,
    pub initial: GitOid,
}

impl Fixture {
    pub fn init() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let (repo, initial) = GitRepo::init_bare(
            &dir.path().join("repos/alice/model.git"),
            &[(".gitattributes", GITATTRIBUTES)],
            &alice(),
            T0,
        )
        .expect("init");
        Self { dir, repo, initial }
    }

    pub fn path(&self) -> PathBuf {
        self.repo.path().to_owned()
    }

    pub fn main(&self) -> GitOid {
        self.repo
            .ref_target("refs/heads/main")
            .expect("read ref")
            .expect("main exists")
    }

    /// Commits `files` onto main (from its current head) at `T0 + tick`.
    pub fn commit_files(&mut self, files: &[(&str, &[u8])], summary: &str, tick: i64) -> GitOid {
        let ops: Vec<TreeOp> = files
            .iter()
            .map(|(p, content)| TreeOp::Upsert {
                path: path(p),
                blob: self.repo.write_blob(content).expect("blob"),
            })
            .collect();
        self.apply(&ops, summary, tick)
    }

    pub fn apply(&mut self, ops: &[TreeOp], summary: &str, tick: i64) -> GitOid {
        self.repo
            .commit(
                "refs/heads/main",
                Some(&self.main()),
                ops,
                summary,
                "",
                &alice(),
                T0 + tick,
            )
            .expect("commit")
    }

    /// Paths of a recursive listing of the root of `commit`.
    pub fn all_paths(&self, commit: &GitOid) -> Vec<String> {
        self.repo
            .list_tree(commit, "", true)
            .expect("list")
            .expect("root exists")
            .into_iter()
            .map(|e| e.path)
            .collect()
    }
}

/// How git's own object checks run in these tests: the `git` on `PATH`, scratch files in
/// `scratch`.
pub fn git_checks(scratch: &Path) -> trove_git::GitChecks {
    trove_git::GitChecks {
        git_bin: "git".into(),
        path_env: std::env::var_os("PATH").unwrap_or_default(),
        scratch: scratch.to_owned(),
    }
}

pub fn path(s: &str) -> RepoPath {
    RepoPath::parse(s).expect("valid test path")
}

/// Runs the real git CLI, isolated from the machine's and the user's configuration.
pub fn git(cwd: &Path, args: &[&str]) -> Output {
    let binary = if Path::new("/usr/local/bin/git").exists() {
        "/usr/local/bin/git"
    } else {
        "git"
    };
    let output = Command::new(binary)
        .current_dir(cwd)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", cwd)
        .env("GIT_AUTHOR_NAME", "Bob")
        .env("GIT_AUTHOR_EMAIL", "bob@example.com")
        .env("GIT_COMMITTER_NAME", "Bob")
        .env("GIT_COMMITTER_EMAIL", "bob@example.com")
        .env("GIT_AUTHOR_DATE", "1700000900 +0000")
        .env("GIT_COMMITTER_DATE", "1700000900 +0000")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}
