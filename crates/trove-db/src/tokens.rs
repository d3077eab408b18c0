//! API access tokens. Only a hash of each secret is stored; the caller generates the secret,
//! hashes it, and shows it to the user once.

use crate::error::{DbError, Result, constraint_error};
use crate::users::{USER_COLUMNS, User};
use crate::{Db, unix_now_ms};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::fmt;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenRole {
    Read,
    Write,
}

impl TokenRole {
    /// The name stored in the database and used by the Hub (`"read"`, `"write"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Read => "read",
            TokenRole::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<TokenRole> {
        match s {
            "read" => Some(TokenRole::Read),
            "write" => Some(TokenRole::Write),
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
}

const TOKEN_COLUMNS: &str = "tokens.id, tokens.user_id, tokens.name, tokens.role, \
                             tokens.created_at, tokens.last_used_at";
const TOKEN_COLUMN_COUNT: usize = 6;

impl Token {
    fn from_row(row: &SqliteRow) -> Result<Token> {
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
        })
    }
}

impl Db {
    /// Stores a new token for `user_id`. Fails with `Conflict` if the user already has a token
    /// of that name (or, absurdly, the hash exists), `NotFound` if the user does not exist.
    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        role: TokenRole,
        token_hash: &[u8],
    ) -> Result<Token> {
        let sql = format!(
            "INSERT INTO tokens (user_id, name, role, token_hash, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(name)
            .bind(role.as_str())
            .bind(token_hash)
            .bind(unix_now_ms())
            .fetch_one(&self.pool)
            .await
            .map_err(constraint_error("token", "user"))?;
        Token::from_row(&row)
    }

    /// The token with this hash and its owner, unless the owner is disabled.
    pub async fn token_owner_by_hash(&self, token_hash: &[u8]) -> Result<Option<(Token, User)>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS}, {USER_COLUMNS} FROM tokens \
             JOIN users ON users.id = tokens.user_id \
             WHERE tokens.token_hash = ? AND users.disabled = 0"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            Token::from_row(&row)?,
            User::from_row(&row, TOKEN_COLUMN_COUNT)?,
        )))
    }

    /// The user's tokens, oldest first.
    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<Token>> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = ? ORDER BY created_at, id");
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Token::from_row).collect()
    }

    /// Deletes the user's token named `name`; `false` if there was none.
    pub async fn revoke_token(&self, user_id: i64, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE user_id = ? AND name = ?")
            .bind(user_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that the token was used at `now_ms`, never moving the time backwards.
    /// Best effort: the caller throttles calls and may log and ignore a failure.
    pub async fn touch_token(&self, token_id: i64, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE tokens SET last_used_at = ? \
             WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(now_ms)
        .bind(token_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
