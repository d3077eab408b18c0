//! API access tokens: read, write or fine-grained (with per-repository or per-namespace
//! scopes), optionally expiring. Only a hash of each secret is stored; the caller generates
//! the secret, hashes it, and shows it to the user once.

use crate::backend::{DbRow, Pool, WritePool, with_pool};
use crate::db::{Db, unix_now_ms};
use crate::error::{DbError, Result, constraint_error};
use crate::members::{MEMBERSHIP_COLUMNS, MEMBERSHIPS_JOIN, by_name, membership_at};
use crate::orgs::Membership;
use crate::reader::{Arg, query_rows, read_rows};
use crate::repos::{REPO_BY_NAME_SQL, Repo};
use crate::users::{USER_COLUMN_COUNT, USER_COLUMNS, User};
use std::fmt;
use std::sync::LazyLock;
use trove_types::{RepoId, RepoType};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenRole {
    Read,
    Write,
    /// Only what its scopes allow (plus what anyone may do).
    FineGrained,
}

impl TokenRole {
    /// The name stored in the database and used by the Hub (`"read"`, `"write"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Read => "read",
            TokenRole::Write => "write",
            TokenRole::FineGrained => "fineGrained",
        }
    }

    pub fn parse(s: &str) -> Option<TokenRole> {
        match s {
            "read" => Some(TokenRole::Read),
            "write" => Some(TokenRole::Write),
            "fineGrained" => Some(TokenRole::FineGrained),
            _ => None,
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's metadata. The hash never leaves the database, so it cannot leak through
/// `Debug` output or logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub role: TokenRole,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    /// The scopes of a fine-grained token (empty for the others).
    pub scopes: Vec<TokenScope>,
}

/// What one scope of a fine-grained token covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeTarget {
    /// One repository, by id; `namespace`/`name` are its current name.
    Repo {
        repo_id: i64,
        repo_type: RepoType,
        namespace: String,
        name: String,
    },
    /// Every repository of a user or organization.
    Namespace(String),
}

/// A scope of a fine-grained token: a target and the Hub's permission names on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    pub target: ScopeTarget,
    pub permissions: Vec<String>,
}

/// A scope to store: a repository by id or a namespace by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewScope {
    Repo {
        repo_id: i64,
        permissions: Vec<String>,
    },
    Namespace {
        namespace: String,
        permissions: Vec<String>,
    },
}

const TOKEN_COLUMNS: &str = "tokens.id, tokens.user_id, tokens.name, tokens.role, \
                             tokens.created_at, tokens.last_used_at, tokens.expires_at";
const TOKEN_COLUMN_COUNT: usize = 7;

/// A token, its owner and the owner's memberships (by name).
pub type TokenMember = (Token, User, Vec<Membership>);

/// [`Db::token_member_by_hash`]'s query (`$1` the hash, `$2` now), made once: every request
/// with a token runs it. One row per membership of the owner (one for none).
static TOKEN_MEMBER_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS}, {USER_COLUMNS}, {MEMBERSHIP_COLUMNS} FROM tokens \
         JOIN users ON users.id = tokens.user_id {MEMBERSHIPS_JOIN} \
         WHERE tokens.token_hash = $1 AND users.disabled = FALSE \
         AND (tokens.expires_at IS NULL OR tokens.expires_at > $2)"
    )
});

/// A fine-grained token's scopes (`$1` the token's id), in the order they were granted.
const TOKEN_SCOPES_SQL: &str = "SELECT s.repo_id, r.repo_type, r.namespace, r.name, s.namespace, \
     s.permissions FROM token_scopes s LEFT JOIN repos r ON r.id = s.repo_id \
     WHERE s.token_id = $1 ORDER BY s.id";

/// One row of [`TOKEN_MEMBER_SQL`].
fn member_row(row: &impl DbRow) -> Result<(Token, User, Option<Membership>)> {
    Ok((
        Token::from_row(row)?,
        User::from_row(row, TOKEN_COLUMN_COUNT)?,
        membership_at(row, TOKEN_COLUMN_COUNT + USER_COLUMN_COUNT)?,
    ))
}

/// The rows of [`TOKEN_MEMBER_SQL`] as one token with its owner and their memberships (by
/// name); `None` for no row. A fine-grained token's scopes are not read here.
fn token_member(rows: Vec<(Token, User, Option<Membership>)>) -> Option<TokenMember> {
    // Each row has the same token and owner.
    let mut rows = rows.into_iter();
    let (token, user, first) = rows.next()?;
    let mut orgs: Vec<Membership> = first
        .into_iter()
        .chain(rows.filter_map(|(_, _, m)| m))
        .collect();
    by_name(&mut orgs);
    Some((token, user, orgs))
}

impl Token {
    fn from_row(row: &impl crate::backend::DbRow) -> Result<Token> {
        let role: String = row.try_get(3)?;
        let role = TokenRole::parse(&role).ok_or_else(|| DbError::Corrupt {
            what: "token role",
            detail: role.clone(),
        })?;
        Ok(Token {
            id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            name: row.try_get(2)?,
            role,
            created_at_ms: row.try_get(4)?,
            last_used_at_ms: row.try_get(5)?,
            expires_at_ms: row.try_get(6)?,
            scopes: Vec::new(),
        })
    }
}

fn scope_from_row(row: &impl crate::backend::DbRow) -> Result<TokenScope> {
    let permissions: String = row.try_get(5)?;
    let permissions = permissions.split_whitespace().map(str::to_owned).collect();
    let target = match row.try_get::<Option<i64>, _>(0)? {
        Some(repo_id) => {
            let t: String = row.try_get(1)?;
            ScopeTarget::Repo {
                repo_id,
                repo_type: RepoType::from_singular(&t).ok_or(DbError::Corrupt {
                    what: "repo type",
                    detail: t.clone(),
                })?,
                namespace: row.try_get(2)?,
                name: row.try_get(3)?,
            }
        }
        None => ScopeTarget::Namespace(row.try_get(4)?),
    };
    Ok(TokenScope {
        target,
        permissions,
    })
}

impl Db {
    /// Stores a new token for `user_id`, with its scopes, in one transaction. Fails with
    /// `Conflict` if the user already has a token of that name (or, absurdly, the hash
    /// exists), `NotFound` if the user or a scoped repository does not exist.
    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        role: TokenRole,
        token_hash: &[u8],
        expires_at_ms: Option<i64>,
        scopes: &[NewScope],
    ) -> Result<Token> {
        with_pool!(self, pool => {
            let sql = format!(
                "INSERT INTO tokens (user_id, name, role, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
            );
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query(&sql)
                .bind(user_id)
                .bind(name)
                .bind(role.as_str())
                .bind(token_hash)
                .bind(unix_now_ms())
                .bind(expires_at_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err(constraint_error("token", "user"))?;
            let token = Token::from_row(&row)?;
            for scope in scopes {
                let (repo_id, namespace, permissions) = match scope {
                    NewScope::Repo {
                        repo_id,
                        permissions,
                    } => (Some(*repo_id), None, permissions),
                    NewScope::Namespace {
                        namespace,
                        permissions,
                    } => (None, Some(namespace.as_str()), permissions),
                };
                sqlx::query(
                    "INSERT INTO token_scopes (token_id, repo_id, namespace, permissions) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token.id)
                .bind(repo_id)
                .bind(namespace)
                .bind(permissions.join(" "))
                .execute(&mut *tx)
                .await
                .map_err(constraint_error("token scope", "repository"))?;
            }
            tx.commit().await?;
            let mut token = token;
            token.scopes = self.token_scopes(token.id).await?;
            Ok(token)
        })
    }

    /// A token's scopes; on the calling thread (see `reader.rs`), as each request made with a
    /// fine-grained token reads them.
    async fn token_scopes(&self, token_id: i64) -> Result<Vec<TokenScope>> {
        read_rows!(self, TOKEN_SCOPES_SQL, [token_id], row => scope_from_row(row))
    }

    /// The token with this hash and its owner, unless the owner is disabled or the token
    /// expired at `now_ms`.
    pub async fn token_owner_by_hash(
        &self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<(Token, User)>> {
        Ok(self
            .token_member_by_hash(token_hash, now_ms)
            .await?
            .map(|(token, user, _)| (token, user)))
    }

    /// [`Db::token_owner_by_hash`] with the organizations the owner belongs to (by name), in
    /// one query (a second for a fine-grained token's scopes): what every request made with
    /// a token needs.
    pub async fn token_member_by_hash(
        &self,
        token_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<TokenMember>> {
        // Every request with a token asks this: on the calling thread (see `reader.rs`).
        let rows =
            read_rows!(self, &TOKEN_MEMBER_SQL, [token_hash, now_ms], row => member_row(row))?;
        let Some((mut token, user, orgs)) = token_member(rows) else {
            return Ok(None);
        };
        if token.role == TokenRole::FineGrained {
            token.scopes = self.token_scopes(token.id).await?;
        }
        Ok(Some((token, user, orgs)))
    }

    /// [`Db::token_member_by_hash`] and [`Db::repo_by_name`] together, as a request made with
    /// a token to a repository's route asks them. On a SQLite file the statements run in one
    /// read transaction on one reader connection: one snapshot of the newest commit for both
    /// (a token revoked or a repository made private before it began is seen by both), and
    /// the WAL read lock taken and released once instead of once per statement. Elsewhere,
    /// the two reads one after the other.
    pub async fn token_member_and_repo(
        &self,
        token_hash: &[u8],
        now_ms: i64,
        repo_type: RepoType,
        id: &RepoId,
    ) -> Result<(Option<TokenMember>, Option<Repo>)> {
        let (Pool::Sqlite(_), Some(readers)) = (&self.pool, &self.readers) else {
            let member = self.token_member_by_hash(token_hash, now_ms).await?;
            return Ok((member, self.repo_by_name(repo_type, id).await?));
        };
        readers.read(|conn| {
            // Deferred: the first SELECT takes the read lock, COMMIT gives it back. A failure
            // in between leaves the connection in the transaction, and `Readers::read` closes
            // a connection that is not in autocommit.
            conn.prepare_cached("BEGIN")?.execute([])?;
            let rows = query_rows(
                conn,
                &TOKEN_MEMBER_SQL,
                &[Arg::from(token_hash), Arg::from(now_ms)],
                |row| member_row(row),
            )?;
            let mut member = token_member(rows);
            if let Some((token, _, _)) = &mut member
                && token.role == TokenRole::FineGrained
            {
                token.scopes = query_rows(conn, TOKEN_SCOPES_SQL, &[Arg::from(token.id)], |row| {
                    scope_from_row(row)
                })?;
            }
            let repo = query_rows(
                conn,
                &REPO_BY_NAME_SQL,
                &[
                    Arg::from(repo_type.as_str()),
                    Arg::from(id.namespace.as_str()),
                    Arg::from(id.name.as_str()),
                ],
                |row| Repo::from_row(row),
            )?;
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok((member, repo.into_iter().next()))
        })
    }

    /// The user's tokens, oldest first.
    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<Token>> {
        with_pool!(self, pool => {
            let sql =
                format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 ORDER BY created_at, id");
            let rows = sqlx::query(&sql)
                .bind(user_id)
                .fetch_all(pool)
                .await?;
            let mut tokens = rows
                .iter()
                .map(Token::from_row)
                .collect::<Result<Vec<_>>>()?;
            for token in &mut tokens {
                token.scopes = self.token_scopes(token.id).await?;
            }
            Ok(tokens)
        })
    }

    /// Deletes the user's token named `name`; `false` if there was none.
    pub async fn revoke_token(&self, user_id: i64, name: &str) -> Result<bool> {
        let _changing = self.changing_accounts();
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM tokens WHERE user_id = $1 AND name = $2")
                .bind(user_id)
                .bind(name)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Records that the token was used at `now_ms`, never moving the time backwards.
    /// Best effort: the caller throttles calls and may log and ignore a failure.
    pub async fn touch_token(&self, token_id: i64, now_ms: i64) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "UPDATE tokens SET last_used_at = $1 \
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now_ms)
            .bind(token_id)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
