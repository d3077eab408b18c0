//! The one authorization decision: what a caller may do with a repository, with a
//! namespace, and which repositories a listing may show them. Pure functions of the caller
//! (user, memberships, token) and the repository row, so every surface — API, resolve, git,
//! the pre-receive hook, LFS, Xet, listings, likes — gets the same answer.

use super::{Caller, Credential};
use trove_db::{Membership, OrgRole, Repo, ScopeTarget, TokenRole, User, Visibility};

/// What a caller may do with one repository, from nothing to everything. Ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// The repository does not exist for them (404 `RepoNotFound`).
    None,
    /// A gated repository whose gate they have not passed: its metadata, not its files.
    Gated,
    Read,
    Write,
    /// Settings, moves, deletion, access requests, history rewrites.
    Admin,
}

/// The Hub's fine-grained permission names that grant repository access.
pub const PERM_CONTENT_READ: &str = "repo.content.read";
pub const PERM_WRITE: &str = "repo.write";
/// Opening and commenting discussions and pull requests.
pub const PERM_DISCUSSION_WRITE: &str = "discussion.write";
/// Names a fine-grained scope may carry (others are refused at creation).
pub const KNOWN_PERMISSIONS: &[&str] = &[PERM_CONTENT_READ, PERM_WRITE, PERM_DISCUSSION_WRITE];

impl Access {
    /// Decides `caller`'s access to `repo`. `gate_passed`: the caller's access request to
    /// this (gated) repository was accepted.
    pub fn for_repo(caller: &Caller, repo: &Repo, gate_passed: bool) -> Access {
        let anyone = if repo.private {
            Access::None
        } else if repo.gated.is_gated() {
            Access::Gated
        } else {
            Access::Read
        };
        let Caller::User { user, token, orgs } = caller else {
            return anyone;
        };
        let as_user = match standing(user, orgs, &repo.namespace) {
            Some(access) => access,
            None if anyone == Access::Gated && gate_passed => Access::Read,
            None => anyone,
        };
        anyone.max(as_user.min(token_cap(token, Some(repo), &repo.namespace)))
    }

    /// May `caller`, holding `access` to `repo`, contribute to it — open discussions and pull
    /// requests, comment, upload the files of a pull request? Any signed-in caller who sees
    /// the repository, through a token that may write: a write token, or a fine-grained one
    /// with `discussion.write` or `repo.write` for this repository or its namespace. What
    /// lands on a branch still needs [`Access::Write`].
    pub fn may_contribute(caller: &Caller, repo: &Repo, access: Access) -> bool {
        let Caller::User { token, .. } = caller else {
            return false;
        };
        if access == Access::None {
            return false;
        }
        match token.role {
            TokenRole::Read => false,
            TokenRole::Write => true,
            TokenRole::FineGrained => token.scopes.iter().any(|scope| {
                let covers = match &scope.target {
                    ScopeTarget::Namespace(ns) => ns.eq_ignore_ascii_case(&repo.namespace),
                    ScopeTarget::Repo { repo_id, .. } => *repo_id == repo.id,
                };
                covers
                    && scope
                        .permissions
                        .iter()
                        .any(|p| p == PERM_WRITE || p == PERM_DISCUSSION_WRITE)
            }),
        }
    }

    /// What `caller` may do with every repository of `namespace` at once: at least
    /// [`Access::Write`] to create repositories there, at least [`Access::Read`] to read all
    /// of them, private ones included (the same rule as [`Access::for_repo`]: standing in the
    /// namespace, through a token that reaches the whole namespace, not one repository).
    pub fn in_namespace(caller: &Caller, namespace: &str) -> Access {
        let Caller::User { user, token, orgs } = caller else {
            return Access::None;
        };
        standing(user, orgs, namespace)
            .unwrap_or(Access::None)
            .min(token_cap(token, None, namespace))
    }

    /// What `caller` may do with the whole site (storage statistics, garbage collection,
    /// fsck, metrics): a site administrator's read token reads, a write token administers;
    /// fine-grained tokens are scoped to namespaces and repositories, never the site.
    pub fn on_site(caller: &Caller) -> Access {
        let Caller::User { user, token, .. } = caller else {
            return Access::None;
        };
        if !user.is_admin {
            return Access::None;
        }
        match token.role {
            TokenRole::Read => Access::Read,
            TokenRole::Write => Access::Admin,
            TokenRole::FineGrained => Access::None,
        }
    }

    /// Which repositories a listing may show `caller`: exactly those [`Access::for_repo`]
    /// lets them see (public and gated ones to all; private ones per namespace or scope).
    pub fn listing_visibility(caller: &Caller) -> Visibility {
        let Caller::User { user, token, orgs } = caller else {
            return Visibility::Public;
        };
        let mine = |ns: &str| user.is_admin || standing(user, orgs, ns).is_some();
        match token.role {
            TokenRole::Read | TokenRole::Write if user.is_admin => Visibility::All,
            TokenRole::Read | TokenRole::Write => Visibility::PublicAnd {
                namespaces: std::iter::once(user.name.clone())
                    .chain(orgs.iter().map(|m| m.org.name.clone()))
                    .collect(),
                repo_ids: Vec::new(),
            },
            TokenRole::FineGrained => {
                let mut namespaces = Vec::new();
                let mut repo_ids = Vec::new();
                for scope in &token.scopes {
                    if scope_grant(&scope.permissions) < Access::Read {
                        continue;
                    }
                    match &scope.target {
                        ScopeTarget::Namespace(ns) if mine(ns) => namespaces.push(ns.clone()),
                        ScopeTarget::Repo {
                            repo_id, namespace, ..
                        } if mine(namespace) => repo_ids.push(*repo_id),
                        _ => {}
                    }
                }
                Visibility::PublicAnd {
                    namespaces,
                    repo_ids,
                }
            }
        }
    }
}

/// What the user may do in a namespace by who they are: everything in their own and as a
/// site administrator, their role's worth in an organization, nothing special elsewhere.
fn standing(user: &User, orgs: &[Membership], namespace: &str) -> Option<Access> {
    if user.is_admin || user.name.eq_ignore_ascii_case(namespace) {
        return Some(Access::Admin);
    }
    orgs.iter()
        .find(|m| m.org.name.eq_ignore_ascii_case(namespace))
        .map(|m| match m.role {
            OrgRole::Admin => Access::Admin,
            OrgRole::Write => Access::Write,
            OrgRole::Contributor | OrgRole::Read => Access::Read,
        })
}

/// The most a token lets its user do with a repository (`repo`) or a namespace.
fn token_cap(token: &Credential, repo: Option<&Repo>, namespace: &str) -> Access {
    match token.role {
        TokenRole::Read => Access::Read,
        TokenRole::Write => Access::Admin,
        TokenRole::FineGrained => token
            .scopes
            .iter()
            .filter(|scope| match &scope.target {
                ScopeTarget::Namespace(ns) => ns.eq_ignore_ascii_case(namespace),
                ScopeTarget::Repo { repo_id, .. } => repo.is_some_and(|r| r.id == *repo_id),
            })
            .map(|scope| scope_grant(&scope.permissions))
            .max()
            .unwrap_or(Access::None),
    }
}

/// `repo.write` is the Hub's "write and manage" permission; `repo.content.read` reads.
fn scope_grant(permissions: &[String]) -> Access {
    if permissions.iter().any(|p| p == PERM_WRITE) {
        Access::Admin
    } else if permissions.iter().any(|p| p == PERM_CONTENT_READ) {
        Access::Read
    } else {
        Access::None
    }
}

#[cfg(test)]
mod tests;
