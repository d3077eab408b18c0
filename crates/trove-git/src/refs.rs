//! Refs: listing them, reading one, and creating or deleting branches and tags.

use crate::Result;
use crate::durable;
use crate::error::{CommitError, GitError};
use crate::repo::{GitRepo, Signature, from_git2, to_git2};
use trove_types::{BranchName, GitOid};

/// Every ref of a repository that the Hub shows, each list sorted by name (pull requests by
/// number). Refs whose names are not UTF-8 or that do not lead to a commit are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// `refs/heads/*`: short name and commit.
    pub branches: Vec<(String, GitOid)>,
    /// `refs/tags/*`: short name and the commit the tag peels to.
    pub tags: Vec<(String, GitOid)>,
    /// `refs/pr/N`: pull request number and commit.
    pub pull_requests: Vec<(u64, GitOid)>,
    /// `refs/convert/*` (e.g. `parquet`): short name and commit.
    pub converts: Vec<(String, GitOid)>,
}

impl GitRepo {
    /// Lists branches, tags, pull request refs and conversion refs.
    pub fn refs(&self) -> Result<Refs> {
        let mut refs = Refs::default();
        let references = self
            .repo
            .references()
            .map_err(GitError::git("listing refs"))?;
        for reference in references {
            let reference = reference.map_err(GitError::git("listing refs"))?;
            let Some(name) = reference.name().map(str::to_owned) else {
                continue;
            };
            let Some(target) = self.ref_target(&name)? else {
                continue;
            };
            let Some(commit) = self.peel_to_commit(to_git2(&target))? else {
                continue;
            };
            if let Some(short) = name.strip_prefix("refs/heads/") {
                refs.branches.push((short.to_owned(), commit));
            } else if let Some(short) = name.strip_prefix("refs/tags/") {
                refs.tags.push((short.to_owned(), commit));
            } else if let Some(number) = name.strip_prefix("refs/pr/") {
                // Only refs/pr/<decimal> are pull requests; anything else there is ignored.
                if let Ok(number) = number.parse::<u64>() {
                    refs.pull_requests.push((number, commit));
                }
            } else if let Some(short) = name.strip_prefix("refs/convert/") {
                refs.converts.push((short.to_owned(), commit));
            }
        }
        refs.branches.sort();
        refs.tags.sort();
        refs.pull_requests.sort();
        refs.converts.sort();
        Ok(refs)
    }

    /// Every ref under `refs/` with the object it points at (symbolic refs resolved, tags not
    /// peeled), sorted by name: a cheap fingerprint to tell whether a push changed anything.
    pub fn ref_targets(&self) -> Result<Vec<(String, GitOid)>> {
        let mut all = Vec::new();
        let references = self
            .repo
            .references()
            .map_err(GitError::git("listing refs"))?;
        for reference in references {
            let reference = reference.map_err(GitError::git("listing refs"))?;
            let Some(name) = reference.name().filter(|n| n.starts_with("refs/")) else {
                continue;
            };
            if let Some(target) = reference.target() {
                all.push((name.to_owned(), from_git2(target)));
            }
        }
        all.sort();
        Ok(all)
    }

    /// The object a full ref name (`refs/heads/main`) points at, following symbolic refs but
    /// not peeling tags (this is the value a compare-and-swap compares). `None` when the ref
    /// does not exist or the name is not a valid ref name.
    pub fn ref_target(&self, full_ref: &str) -> Result<Option<GitOid>> {
        let reference = match self.repo.find_reference(full_ref) {
            Ok(reference) => reference,
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::NotFound | git2::ErrorCode::InvalidSpec
                ) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(GitError::Git {
                    action: "reading ref",
                    source: e,
                });
            }
        };
        // A direct ref already names its object: resolving it would look it up (read its
        // file) a second time.
        if let Some(target) = reference.target() {
            return Ok(Some(from_git2(target)));
        }
        let direct = match reference.resolve() {
            Ok(direct) => direct,
            // A symbolic ref to a branch that does not exist (HEAD of an empty repository).
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => {
                return Err(GitError::Git {
                    action: "resolving symbolic ref",
                    source: e,
                });
            }
        };
        Ok(direct.target().map(from_git2))
    }

    /// Creates the branch `refs/heads/<name>` at the commit `target`.
    /// [`GitError::AlreadyExists`] if it exists, or if a branch above or below it in the
    /// name hierarchy does (`dev` blocks `dev/x`, as in git).
    pub fn create_branch(&mut self, name: &BranchName, target: &GitOid) -> Result<()> {
        let commit = self.find_commit(target)?;
        let full_ref = format!("refs/heads/{}", name.as_str());
        self.check_no_collision(&full_ref)?;
        self.repo
            .reference(&full_ref, commit.id(), false, "branch: created (trove)")
            .map_err(|e| create_error(e, full_ref.clone()))?;
        durable::sync_ref(self.path(), &full_ref)
    }

    /// Deletes the branch `refs/heads/<name>`; [`GitError::RefNotFound`] if there is none.
    /// Deleting the branch HEAD points to is the caller's decision to refuse.
    pub fn delete_branch(&mut self, name: &str) -> Result<()> {
        self.delete_ref(format!("refs/heads/{name}"))
    }

    /// Creates the tag `refs/tags/<name>` on the commit `target`: an annotated tag object
    /// (tagger and time as given) when `message` is given, a lightweight tag otherwise.
    /// [`GitError::AlreadyExists`] if the tag exists.
    pub fn create_tag(
        &mut self,
        name: &BranchName,
        target: &GitOid,
        message: Option<&str>,
        tagger: &Signature,
        time_unix: i64,
    ) -> Result<()> {
        let commit = self.find_commit(target)?;
        let full_ref = format!("refs/tags/{}", name.as_str());
        self.check_no_collision(&full_ref)?;
        match message {
            Some(message) => {
                let signature = tagger.to_git2(time_unix)?;
                // `git tag -m` ends the message with a newline; do the same.
                let mut message = message.trim_end().to_owned();
                message.push('\n');
                // libgit2 writes the tag object and its ref in one call, so the object can only
                // be synced afterwards; until this returns, nobody has been told of the tag.
                let tag = self
                    .repo
                    .tag(
                        name.as_str(),
                        commit.as_object(),
                        &signature,
                        &message,
                        false,
                    )
                    .map_err(|e| create_error(e, full_ref.clone()))?;
                durable::sync_objects(self.path(), &[tag])?;
            }
            None => {
                self.repo
                    .reference(&full_ref, commit.id(), false, "tag: created (trove)")
                    .map_err(|e| create_error(e, full_ref.clone()))?;
            }
        }
        durable::sync_ref(self.path(), &full_ref)
    }

    /// Deletes the tag `refs/tags/<name>` (the tag object, if any, stays until garbage
    /// collection); [`GitError::RefNotFound`] if there is none.
    pub fn delete_tag(&mut self, name: &str) -> Result<()> {
        self.delete_ref(format!("refs/tags/{name}"))
    }

    /// Creates any ref under `refs/` (a pull request's `refs/pr/N`, a `refs/convert/*`) at
    /// the commit `target`; [`GitError::AlreadyExists`] if it exists.
    pub fn create_ref(&mut self, full_ref: &str, target: &GitOid) -> Result<()> {
        if !full_ref.starts_with("refs/") || !git2::Reference::is_valid_name(full_ref) {
            return Err(GitError::InvalidRefName {
                name: full_ref.to_owned(),
            });
        }
        let commit = self.find_commit(target)?;
        self.check_no_collision(full_ref)?;
        self.repo
            .reference(full_ref, commit.id(), false, "ref: created (trove)")
            .map_err(|e| create_error(e, full_ref.to_owned()))?;
        durable::sync_ref(self.path(), full_ref)
    }

    /// Deletes any ref under `refs/` (undoing a pull request whose first commit failed);
    /// `false` when it did not exist.
    pub fn delete_ref_if_present(&mut self, full_ref: &str) -> Result<bool> {
        match self.delete_ref(full_ref.to_owned()) {
            Ok(()) => Ok(true),
            Err(GitError::RefNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves `full_ref` from `expected` (`None` = absent) to the commit `new` by
    /// compare-and-swap, e.g. to fast-forward a branch when merging;
    /// [`CommitError::RefMoved`] when it no longer points at `expected`.
    pub fn update_ref(
        &mut self,
        full_ref: &str,
        expected: Option<&GitOid>,
        new: &GitOid,
    ) -> Result<(), CommitError> {
        if !full_ref.starts_with("refs/") || !git2::Reference::is_valid_name(full_ref) {
            return Err(CommitError::InvalidRef {
                full_ref: full_ref.to_owned(),
            });
        }
        let commit = self.find_commit(new)?;
        self.move_ref(full_ref, expected, commit.id())
    }

    /// Moves `full_ref` from `base` to `new`, atomically: libgit2 takes the ref's lock file,
    /// compares, writes and renames.
    pub(crate) fn move_ref(
        &self,
        full_ref: &str,
        base: Option<&GitOid>,
        new: git2::Oid,
    ) -> Result<(), CommitError> {
        let log_message = "ref: moved (trove)";
        let result = match base {
            Some(base) => {
                self.repo
                    .reference_matching(full_ref, new, true, to_git2(base), log_message)
            }
            None => {
                self.check_no_collision(full_ref)?;
                self.repo.reference(full_ref, new, false, log_message)
            }
        };
        match result {
            Ok(_) => Ok(durable::sync_ref(self.path(), full_ref)?),
            Err(e) => match e.code() {
                git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::NotFound => {
                    Err(CommitError::RefMoved {
                        full_ref: full_ref.to_owned(),
                        expected: base.cloned(),
                        actual: self.ref_target(full_ref)?,
                    })
                }
                git2::ErrorCode::Locked => Err(CommitError::RefLocked {
                    full_ref: full_ref.to_owned(),
                }),
                _ => Err(GitError::Git {
                    action: "updating ref",
                    source: e,
                }
                .into()),
            },
        }
    }

    /// [`GitError::AlreadyExists`] when a ref above or below `full_ref` exists (`refs/heads/dev`
    /// blocks `refs/heads/dev/x` and the reverse): git stores loose refs as files, so one
    /// name cannot be both a file and a folder, and libgit2 reports that only as a generic
    /// filesystem error.
    pub(crate) fn check_no_collision(&self, full_ref: &str) -> Result<()> {
        let collision = || GitError::AlreadyExists {
            name: full_ref.to_owned(),
        };
        let mut prefix_end = full_ref.find('/');
        while let Some(end) = prefix_end {
            let ancestor = &full_ref[..end];
            // "refs" and "refs/heads" are folders, never refs; checking them is harmless.
            if self.ref_target(ancestor)?.is_some() {
                return Err(collision());
            }
            prefix_end = full_ref[end + 1..].find('/').map(|i| end + 1 + i);
        }
        let below = format!("{full_ref}/*");
        let mut refs = self
            .repo
            .references_glob(&below)
            .map_err(GitError::git("listing refs"))?;
        if refs.next().is_some() {
            return Err(collision());
        }
        Ok(())
    }

    fn delete_ref(&self, full_ref: String) -> Result<()> {
        let not_found = |e: &git2::Error| {
            matches!(
                e.code(),
                git2::ErrorCode::NotFound | git2::ErrorCode::InvalidSpec
            )
        };
        let mut reference = match self.repo.find_reference(&full_ref) {
            Ok(reference) => reference,
            Err(e) if not_found(&e) => return Err(GitError::RefNotFound { name: full_ref }),
            Err(e) => {
                return Err(GitError::Git {
                    action: "reading ref",
                    source: e,
                });
            }
        };
        match reference.delete() {
            Ok(()) => Ok(()),
            // Deleted by someone else in the meantime.
            Err(e) if not_found(&e) => Err(GitError::RefNotFound { name: full_ref }),
            Err(e) => Err(GitError::Git {
                action: "deleting ref",
                source: e,
            }),
        }
    }

    /// The commit `oid` leads to through annotated tags; `None` when it leads to a tree or a
    /// blob, or to an object missing from the repository.
    pub(crate) fn peel_to_commit(&self, oid: git2::Oid) -> Result<Option<GitOid>> {
        let mut object = match self.repo.find_object(oid, None) {
            Ok(object) => object,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => {
                return Err(GitError::Git {
                    action: "reading object",
                    source: e,
                });
            }
        };
        // Tag chains end: objects are content-addressed, so a tag cannot point back at itself.
        loop {
            match object.kind() {
                Some(git2::ObjectType::Commit) => return Ok(Some(from_git2(object.id()))),
                Some(git2::ObjectType::Tag) => {
                    let tag = object
                        .into_tag()
                        .expect("object kind was checked to be a tag");
                    object = match tag.target() {
                        Ok(target) => target,
                        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
                        Err(e) => {
                            return Err(GitError::Git {
                                action: "peeling tag",
                                source: e,
                            });
                        }
                    };
                }
                _ => return Ok(None),
            }
        }
    }
}

/// Maps a failed ref creation: "exists" (including a name collision in the hierarchy) is
/// [`GitError::AlreadyExists`].
fn create_error(e: git2::Error, full_ref: String) -> GitError {
    match e.code() {
        git2::ErrorCode::Exists => GitError::AlreadyExists { name: full_ref },
        _ => GitError::Git {
            action: "creating ref",
            source: e,
        },
    }
}
