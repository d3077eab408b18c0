//! Opening and creating bare repositories, and the object-level helpers the other modules share.

use crate::Result;
use crate::durable;
use crate::error::{CommitError, GitError};
use crate::tree_op::TreeOp;
use std::path::{Path, PathBuf};
use trove_types::{GitOid, RepoPath};

/// The branch every new repository starts on, and where its HEAD points.
pub(crate) const DEFAULT_BRANCH_REF: &str = "refs/heads/main";

/// An open bare repository.
pub struct GitRepo {
    pub(crate) repo: git2::Repository,
    path: PathBuf,
}

/// Who authored, committed or tagged something. Times are passed separately, always UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Display name, e.g. "Alice Example".
    pub name: String,
    /// Email address, written between angle brackets in git objects.
    pub email: String,
}

impl Signature {
    /// The libgit2 signature at `time_unix` (UTC); libgit2 refuses angle brackets and empty
    /// fields because they would corrupt the object header.
    pub(crate) fn to_git2(&self, time_unix: i64) -> Result<git2::Signature<'static>> {
        git2::Signature::new(&self.name, &self.email, &git2::Time::new(time_unix, 0)).map_err(|e| {
            GitError::InvalidSignature {
                name: self.name.clone(),
                email: self.email.clone(),
                reason: e.message().to_owned(),
            }
        })
    }
}

impl GitRepo {
    /// Creates a bare repository at `path` (which must not exist; parents are created) whose
    /// HEAD is `refs/heads/main`, holding one commit "initial commit" with the given files
    /// (paths from the root, e.g. `.gitattributes`), authored and committed by `author` at
    /// `time_unix`. Returns the repository and the commit id.
    pub fn init_bare(
        path: &Path,
        files: &[(&str, &[u8])],
        author: &Signature,
        time_unix: i64,
    ) -> Result<(GitRepo, GitOid)> {
        // Checked here for a clear error; `no_reinit` below closes the race with a concurrent init.
        if path.exists() {
            return Err(GitError::RepoExists {
                path: path.to_owned(),
            });
        }
        let repo = git2::Repository::init_opts(
            path,
            git2::RepositoryInitOptions::new()
                .bare(true)
                .no_reinit(true)
                .mkpath(true)
                .initial_head(DEFAULT_BRANCH_REF),
        )
        .map_err(|e| match e.code() {
            git2::ErrorCode::Exists => GitError::RepoExists {
                path: path.to_owned(),
            },
            _ => GitError::Git {
                action: "initialising repository",
                source: e,
            },
        })?;
        let mut repo = GitRepo {
            repo,
            path: path.to_owned(),
        };
        match repo.initial_commit(files, author, time_unix) {
            Ok(commit) => Ok((repo, commit)),
            Err(e) => {
                // The directory did not exist before this call, so nothing of anyone else's is
                // lost; leaving a repository without its initial commit would only confuse.
                drop(repo);
                let _ = std::fs::remove_dir_all(path);
                Err(e)
            }
        }
    }

    fn initial_commit(
        &mut self,
        files: &[(&str, &[u8])],
        author: &Signature,
        time_unix: i64,
    ) -> Result<GitOid> {
        let mut ops = Vec::with_capacity(files.len());
        for (file, content) in files {
            let file_path = RepoPath::parse(file).map_err(|e| GitError::InvalidPath {
                path: (*file).to_owned(),
                reason: e.0,
            })?;
            ops.push(TreeOp::Upsert {
                path: file_path,
                blob: self.write_blob(content)?,
            });
        }
        self.commit(
            DEFAULT_BRANCH_REF,
            None,
            &ops,
            "initial commit",
            "",
            author,
            time_unix,
        )
        .map_err(|e| match e {
            CommitError::Git { source } => source,
            CommitError::PathConflict { path } => GitError::InvalidPath {
                path,
                reason: "a file and a folder would share this path".to_owned(),
            },
            // The repository is new and every blob was just written: the remaining cases
            // cannot happen, but are reported rather than hidden if they ever do.
            other => GitError::InvalidPath {
                path: String::new(),
                reason: other.to_string(),
            },
        })
    }

    /// Opens the bare repository at `path`, without searching parent directories.
    pub fn open(path: &Path) -> Result<GitRepo> {
        let repo = git2::Repository::open_bare(path).map_err(|e| match e.code() {
            git2::ErrorCode::NotFound => GitError::RepoNotFound {
                path: path.to_owned(),
            },
            _ => GitError::Git {
                action: "opening repository",
                source: e,
            },
        })?;
        Ok(GitRepo {
            repo,
            path: path.to_owned(),
        })
    }

    /// The directory of the repository (the git directory itself: it is bare).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The full content of a blob. Meant for small files: it is read into memory at once.
    pub fn read_blob(&self, blob: &GitOid) -> Result<Vec<u8>> {
        let object = self.find_object(blob)?;
        let blob_obj = object.as_blob().ok_or_else(|| GitError::WrongObjectType {
            oid: blob.clone(),
            expected: "blob",
        })?;
        Ok(blob_obj.content().to_vec())
    }

    /// Writes `content` as a blob into the object database, durably, and returns its id.
    pub fn write_blob(&self, content: &[u8]) -> Result<GitOid> {
        let oid = self
            .repo
            .blob(content)
            .map_err(GitError::git("writing blob"))?;
        durable::sync_objects(&self.path, &[oid])?;
        Ok(from_git2(oid))
    }

    /// The object `oid`, or [`GitError::ObjectNotFound`].
    pub(crate) fn find_object(&self, oid: &GitOid) -> Result<git2::Object<'_>> {
        self.repo
            .find_object(to_git2(oid), None)
            .map_err(|e| match e.code() {
                git2::ErrorCode::NotFound => GitError::ObjectNotFound { oid: oid.clone() },
                _ => GitError::Git {
                    action: "reading object",
                    source: e,
                },
            })
    }

    /// The commit `oid`, or [`GitError::ObjectNotFound`] / [`GitError::WrongObjectType`].
    pub(crate) fn find_commit(&self, oid: &GitOid) -> Result<git2::Commit<'_>> {
        self.find_object(oid)?
            .into_commit()
            .map_err(|_| GitError::WrongObjectType {
                oid: oid.clone(),
                expected: "commit",
            })
    }

    /// The object's type and size from the object database header, without reading the content.
    pub(crate) fn object_header(
        &self,
        oid: git2::Oid,
    ) -> Result<Option<(usize, git2::ObjectType)>> {
        let odb = self
            .repo
            .odb()
            .map_err(GitError::git("opening object database"))?;
        match odb.read_header(oid) {
            Ok((size, kind)) => Ok(Some((size, kind))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(GitError::Git {
                action: "reading object header",
                source: e,
            }),
        }
    }
}

/// Makes libgit2 read no configuration but each repository's own `config` file: no system
/// (`/etc/gitconfig`), global (`~/.gitconfig`) or XDG (`~/.config/git/config`) file is looked
/// for, stat'ed or read when a repository is opened. The git processes Trove runs see none of
/// those files either (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`), so the server
/// reads and writes the same with whatever the account running it has configured; and each
/// open no longer searches the file system for them (a tenth of a small download's CPU).
///
/// # Safety
///
/// libgit2 keeps these search paths in process-wide state that its calls read without a
/// lock: this must be called before any other thread exists that could call libgit2 (the
/// first thing `main` does), and never again afterwards.
#[expect(
    unsafe_code,
    reason = "git2::opts::set_search_path writes libgit2's global state; the caller's contract says when"
)]
pub unsafe fn ignore_user_config() -> Result<()> {
    for level in [
        git2::ConfigLevel::System,
        git2::ConfigLevel::XDG,
        git2::ConfigLevel::Global,
        git2::ConfigLevel::ProgramData,
    ] {
        // SAFETY: our caller guarantees that no other thread uses libgit2 during this call
        // (see `# Safety` above); the path is an owned, NUL-free string that libgit2 copies.
        unsafe { git2::opts::set_search_path(level, "") }.map_err(GitError::git(
            "clearing libgit2's configuration search path",
        ))?;
    }
    Ok(())
}

/// Converts a libgit2 id; libgit2 ids always render as 40 lowercase hex digits.
pub(crate) fn from_git2(oid: git2::Oid) -> GitOid {
    GitOid::parse(&oid.to_string()).expect("libgit2 renders object ids as 40 hex digits")
}

/// Converts to a libgit2 id; a `GitOid` is always 40 hex digits.
pub(crate) fn to_git2(oid: &GitOid) -> git2::Oid {
    git2::Oid::from_str(oid.as_str()).expect("GitOid holds 40 hex digits")
}
