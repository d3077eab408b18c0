//! Resolving the revisions the Hub accepts (branch, tag, full ref, full commit id) to commits.

use crate::Result;
use crate::repo::{GitRepo, to_git2};
use trove_types::GitOid;

/// The full ref namespaces a revision may name directly.
const REF_NAMESPACES: &[&str] = &["refs/heads/", "refs/tags/", "refs/pr/", "refs/convert/"];

impl GitRepo {
    /// Resolves `rev` to a commit id. Accepted: a branch (`main`, `dev/x`), a tag, a full ref
    /// under `refs/heads/`, `refs/tags/`, `refs/pr/` or `refs/convert/`, or a full 40-hex id
    /// of a commit of this repository. A branch wins over a tag of the same name; annotated
    /// tags peel to their commit.
    ///
    /// `Ok(None)` when nothing matches. Revspec syntax is never interpreted: no short ids,
    /// ranges, `^`, `~`, `@{…}` or `:path`, since revisions come straight from URLs.
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
        Ok(None)
    }
}
