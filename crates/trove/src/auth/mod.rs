//! Who is asking, and may they? Tokens are bearer secrets stored only as SHA-256 hashes;
//! every permission question about a repository is answered by [`Access::for_repo`].

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use trove_db::{Repo, TokenRole, User, Visibility};

/// Tokens look like the Hub's (`hf_` + 34 alphanumerics) so tools that sniff the prefix accept them.
pub fn generate_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let body: String = (0..34)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("hf_{body}")
}

/// Tokens carry ~200 bits of entropy, so a plain SHA-256 is a sound at-rest hash (no salt or
/// slow KDF needed, unlike passwords) and lets us look a token up by its hash.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The authenticated party of a request.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    User {
        user: User,
        role: TokenRole,
        token_name: String,
    },
}

impl Caller {
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Caller::Anonymous)
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Caller::User { user, .. } => Some(user),
            Caller::Anonymous => None,
        }
    }

    /// The user, or 401 for anonymous callers.
    pub fn require_user(&self) -> Result<&User, ApiError> {
        self.user().ok_or_else(|| {
            ApiError::Unauthenticated("You must be authenticated: pass a token (HF_TOKEN)".into())
        })
    }
}

/// Extracts the secret from `Authorization: Bearer <token>` or, for git clients,
/// `Authorization: Basic base64(<any user>:<token>)`.
fn token_from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let header = header.to_str().map_err(|_| ApiError::InvalidCredentials)?;
        let token = token_from_header(header).ok_or(ApiError::InvalidCredentials)?;
        match state
            .db
            .token_owner_by_hash(&hash_token(&token))
            .await
            .map_err(ApiError::internal)?
        {
            Some((token, user)) => Ok(Caller::User {
                user,
                role: token.role,
                token_name: token.name,
            }),
            None => Err(ApiError::InvalidCredentials),
        }
    }
}

/// What a caller may do with one repository, decided in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
}

impl Access {
    pub fn for_repo(caller: &Caller, repo: &Repo) -> Access {
        let Caller::User { user, role, .. } = caller else {
            return if repo.private {
                Access::None
            } else {
                Access::Read
            };
        };
        let owns = user.is_admin || repo.namespace.eq_ignore_ascii_case(&user.name);
        match (owns, role) {
            (true, TokenRole::Write) => Access::Write,
            (true, TokenRole::Read) => Access::Read,
            (false, _) if !repo.private => Access::Read,
            (false, _) => Access::None,
        }
    }

    /// Which repositories a listing may show `caller`: the same rule as [`Access::for_repo`]
    /// (public to all; private to the owning namespace and to admins), as a query filter.
    pub fn listing_visibility(caller: &Caller) -> Visibility {
        match caller {
            Caller::Anonymous => Visibility::Public,
            Caller::User { user, .. } if user.is_admin => Visibility::All,
            Caller::User { user, .. } => Visibility::PublicAndNamespace(user.name.clone()),
        }
    }

    /// May `caller` create repositories under `namespace`?
    pub fn may_create_in(caller: &Caller, namespace: &str) -> Result<(), ApiError> {
        let Caller::User { user, role, .. } = caller else {
            return Err(ApiError::Unauthenticated(
                "You must be authenticated to create a repo".into(),
            ));
        };
        if *role != TokenRole::Write {
            return Err(ApiError::Forbidden(
                "This token is read-only: a write token is needed".into(),
            ));
        }
        if user.is_admin || namespace.eq_ignore_ascii_case(&user.name) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "You don't have the rights to create a repo under the namespace {namespace:?}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_types::RepoType;

    fn user(name: &str, is_admin: bool) -> User {
        User {
            id: 1,
            name: name.into(),
            email: None,
            is_admin,
            disabled: false,
            created_at_ms: 0,
        }
    }

    fn repo(namespace: &str, private: bool) -> Repo {
        Repo {
            id: 1,
            repo_type: RepoType::Model,
            namespace: namespace.into(),
            name: "m".into(),
            private,
            owner_user_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn anonymous_reads_public_only() {
        assert_eq!(
            Access::for_repo(&Caller::Anonymous, &repo("a", false)),
            Access::Read
        );
        assert_eq!(
            Access::for_repo(&Caller::Anonymous, &repo("a", true)),
            Access::None
        );
    }

    #[test]
    fn owners_write_with_a_write_token_only() {
        let w = Caller::User {
            user: user("alice", false),
            role: TokenRole::Write,
            token_name: String::new(),
        };
        let r = Caller::User {
            user: user("alice", false),
            role: TokenRole::Read,
            token_name: String::new(),
        };
        assert_eq!(Access::for_repo(&w, &repo("alice", true)), Access::Write);
        assert_eq!(Access::for_repo(&r, &repo("alice", true)), Access::Read);
        assert_eq!(Access::for_repo(&w, &repo("ALICE", true)), Access::Write);
    }

    #[test]
    fn strangers_see_public_repos_read_only_and_private_ones_not_at_all() {
        let bob = Caller::User {
            user: user("bob", false),
            role: TokenRole::Write,
            token_name: String::new(),
        };
        assert_eq!(Access::for_repo(&bob, &repo("alice", false)), Access::Read);
        assert_eq!(Access::for_repo(&bob, &repo("alice", true)), Access::None);
    }

    #[test]
    fn listing_visibility_agrees_with_per_repo_access() {
        let callers = [
            Caller::Anonymous,
            Caller::User {
                user: user("alice", false),
                role: TokenRole::Read,
                token_name: String::new(),
            },
            Caller::User {
                user: user("root", true),
                role: TokenRole::Write,
                token_name: String::new(),
            },
        ];
        for caller in &callers {
            let visibility = Access::listing_visibility(caller);
            for r in [repo("alice", true), repo("alice", false), repo("bob", true)] {
                let listed = match &visibility {
                    Visibility::Public => !r.private,
                    Visibility::PublicAndNamespace(ns) => {
                        !r.private || r.namespace.eq_ignore_ascii_case(ns)
                    }
                    Visibility::All => true,
                };
                assert_eq!(listed, Access::for_repo(caller, &r) != Access::None, "{caller:?} {r:?}");
            }
        }
    }

    #[test]
    fn admins_write_everywhere() {
        let admin = Caller::User {
            user: user("root", true),
            role: TokenRole::Write,
            token_name: String::new(),
        };
        assert_eq!(
            Access::for_repo(&admin, &repo("alice", true)),
            Access::Write
        );
        assert!(Access::may_create_in(&admin, "alice").is_ok());
    }

    #[test]
    fn creating_needs_write_token_in_own_namespace() {
        let w = Caller::User {
            user: user("alice", false),
            role: TokenRole::Write,
            token_name: String::new(),
        };
        let r = Caller::User {
            user: user("alice", false),
            role: TokenRole::Read,
            token_name: String::new(),
        };
        assert!(Access::may_create_in(&w, "alice").is_ok());
        assert!(matches!(
            Access::may_create_in(&w, "bob"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            Access::may_create_in(&r, "alice"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            Access::may_create_in(&Caller::Anonymous, "alice"),
            Err(ApiError::Unauthenticated(_))
        ));
    }

    #[test]
    fn tokens_parse_from_bearer_and_basic() {
        assert_eq!(
            token_from_header("Bearer hf_abc").as_deref(),
            Some("hf_abc")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("user:hf_xyz");
        assert_eq!(
            token_from_header(&format!("Basic {basic}")).as_deref(),
            Some("hf_xyz")
        );
        assert_eq!(token_from_header("Digest x"), None);
        let t = generate_token();
        assert!(t.starts_with("hf_") && t.len() == 37);
        assert_eq!(hash_token(&t).len(), 32);
    }
}
