//! Creating and revoking tokens: the secret is generated here, shown once by the caller and
//! stored only as its hash; fine-grained scopes are checked against real repositories.

use crate::auth::policy::KNOWN_PERMISSIONS;
use crate::auth::{generate_token, hash_token};
use trove_db::{Db, NewScope, Token, TokenRole, User};
use trove_types::{RepoId, RepoType};

/// What a new token should be.
#[derive(Clone, Debug, Default)]
pub struct TokenSpec {
    pub name: String,
    pub role: Option<TokenRole>,
    /// `TYPE:NS/NAME` of each repository a fine-grained token covers.
    pub repos: Vec<String>,
    pub namespaces: Vec<String>,
    pub permissions: Vec<String>,
    pub lifetime_ms: Option<i64>,
}

/// Creates the token; returns its secret (to show once) and its row.
pub async fn create(
    db: &Db,
    actor: &str,
    user: &User,
    spec: TokenSpec,
) -> anyhow::Result<(String, Token)> {
    let role = spec.role.unwrap_or(TokenRole::Write);
    let scoped = !spec.repos.is_empty() || !spec.namespaces.is_empty();
    anyhow::ensure!(
        role == TokenRole::FineGrained || (!scoped && spec.permissions.is_empty()),
        "--repo, --namespace and --permission are for fine-grained tokens"
    );
    let mut scopes = Vec::new();
    if role == TokenRole::FineGrained {
        anyhow::ensure!(
            scoped && !spec.permissions.is_empty(),
            "a fine-grained token needs at least one --repo or --namespace and one --permission"
        );
        for p in &spec.permissions {
            anyhow::ensure!(
                KNOWN_PERMISSIONS.contains(&p.as_str()),
                "unknown permission {p:?} (known: {})",
                KNOWN_PERMISSIONS.join(", ")
            );
        }
        for text in &spec.repos {
            let (repo_type, id) = parse_repo(text)?;
            let repo = db
                .repo_by_name(repo_type, &id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no {repo_type} repository {id}"))?;
            scopes.push(NewScope::Repo {
                repo_id: repo.id,
                permissions: spec.permissions.clone(),
            });
        }
        for ns in &spec.namespaces {
            anyhow::ensure!(
                db.user_by_name(ns).await?.is_some() || db.org_by_name(ns).await?.is_some(),
                "no user or organization named {ns:?}"
            );
            scopes.push(NewScope::Namespace {
                namespace: ns.clone(),
                permissions: spec.permissions.clone(),
            });
        }
    }
    let expires_at_ms = spec
        .lifetime_ms
        .map(|ms| trove_db::unix_now_ms().saturating_add(ms));
    let secret = generate_token();
    let token = db
        .create_token(
            user.id,
            &spec.name,
            role,
            &hash_token(&secret),
            expires_at_ms,
            &scopes,
        )
        .await?;
    let detail = format!("role {}", role.as_str());
    super::audit(
        db,
        actor,
        "token.create",
        Some(&user.name),
        Some(&spec.name),
        Some(&detail),
    )
    .await;
    Ok((secret, token))
}

/// Revokes a token by name; `false` if the user has none of that name.
pub async fn revoke(db: &Db, actor: &str, user: &User, name: &str) -> anyhow::Result<bool> {
    let done = db.revoke_token(user.id, name).await?;
    if done {
        super::audit(
            db,
            actor,
            "token.revoke",
            Some(&user.name),
            Some(name),
            None,
        )
        .await;
    }
    Ok(done)
}

/// `model:acme/detector`, `dataset:ns/name`, `space:ns/name`, or `ns/name` for a model.
pub fn parse_repo(text: &str) -> anyhow::Result<(RepoType, RepoId)> {
    let (repo_type, id) = match text.split_once(':') {
        Some((t, id)) => (
            RepoType::from_singular(t).ok_or_else(|| anyhow::anyhow!("unknown repo type {t:?}"))?,
            id,
        ),
        None => (RepoType::Model, text),
    };
    let id = RepoId::parse(id).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    Ok((repo_type, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_scopes_parse() {
        let (t, id) = parse_repo("model:acme/detector").expect("parses");
        assert_eq!(
            (t, id.to_string().as_str()),
            (RepoType::Model, "acme/detector")
        );
        let (t, _) = parse_repo("dataset:a/b").expect("parses");
        assert_eq!(t, RepoType::Dataset);
        assert_eq!(parse_repo("a/b").expect("parses").0, RepoType::Model);
        assert!(parse_repo("kernel:a/b").is_err());
        assert!(parse_repo("model:nope").is_err());
    }
}
