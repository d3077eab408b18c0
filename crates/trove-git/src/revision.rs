//! Resolving the revisions the Hub accepts (branch, tag, full ref, full or abbreviated commit
//! id) to commits.

use crate::Result;
use crate::repo::{GitRepo, from_git2, to_git2};
use trove_types::GitOid;

/// The full ref namespaces a revision may name directly.
const REF_NAMESPACES: &[&str] = &["refs/heads/", "refs/tags/", "refs/pr/", "refs/convert/"];

impl GitRepo {
    /// Resolves `rev` to a commit id. Accepted: a branch (`main`, `dev/x`), a tag, a full ref
    /// under `refs/heads/`, `refs/tags/`, `refs/pr/` or `refs/convert/`, or a full 40-hex id
    /// of a commit of this repository, or an abbreviated one (at least
    /// [`MIN_SHORT_ID`] lowercase hex digits naming exactly one commit). A branch wins over a
    /// tag of the same name, and both over an abbreviated id; annotated tags peel to their
    /// commit.
    ///
    /// `Ok(None)` when nothing matches or a short id is ambiguous. Revspec syntax is never
    /// interpreted: no ranges, `^`, `~`, `@{…}` or `:path`, since revisions come straight from
    /// URLs.
    pub fn resolve_revision(&self, rev: &str) -> Result<Option<GitOid>> {
        if GitOid::is_full_hex(rev) {
            let oid = GitOid::parse(rev).expect("checked to be 40 hex digits");
            return Ok(match self.object_header(to_git2(&oid))? {
                Some((_, git2::ObjectType::Commit)) => Some(oid),
                _ => None,
            });
        }
        let candidates = if rev.starts_with("refs/") {
            if !REF_NAMESPACES
                .iter()
                .any(|namespace| rev.len() > namespace.len() && rev.starts_with(namespace))
            {
                return Ok(None);
            }
            vec![rev.to_owned()]
        } else {
            vec![format!("refs/heads/{rev}"), format!("refs/tags/{rev}")]
        };
        for full_ref in candidates {
            // git's ref name rules refuse every revspec operator, so a valid name is only a name.
            if !git2::Reference::is_valid_name(&full_ref) {
                return Ok(None);
            }
            if let Some(target) = self.ref_target(&full_ref)? {
                return self.peel_to_commit(to_git2(&target));
            }
        }
        self.resolve_short_id(rev)
    }

    /// The one commit whose id starts with `rev`, if `rev` is an abbreviated id.
    fn resolve_short_id(&self, rev: &str) -> Result<Option<GitOid>> {
        let is_short_hex = (MIN_SHORT_ID..40).contains(&rev.len())
            && rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_short_hex {
            return Ok(None);
        }
        match self
            .repo
            .find_object_by_prefix(rev, Some(git2::ObjectType::Commit))
        {
            Ok(object) => Ok(Some(from_git2(object.id()))),
            // Missing, ambiguous, or not a commit: none of them names one commit.
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::NotFound
                        | git2::ErrorCode::Ambiguous
                        | git2::ErrorCode::Peel
                        | git2::ErrorCode::InvalidSpec
                ) || e.class() == git2::ErrorClass::Object =>
            {
                Ok(None)
            }
            Err(e) => Err(crate::GitError::Git {
                action: "resolving an abbreviated commit id",
                source: e,
            }),
        }
    }
}

/// The fewest hex digits of an abbreviated commit id that are looked up (as git's default
/// abbreviation).
pub const MIN_SHORT_ID: usize = 7;
