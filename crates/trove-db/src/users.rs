//! User accounts: creation, lookup by name (case-insensitive) or id, disabling, passwords
//! (stored as the caller's argon2id PHC string) and web sessions (stored hashed).

use crate::backend::{WritePool, with_pool};
use crate::db::{Db, unix_now_ms};
use crate::error::{Result, constraint_error};
use sqlx::Row;
use trove_types::RepoName;

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    /// As spelled at creation; lookups ignore ASCII case.
    pub name: String,
    pub email: Option<String>,
    pub is_admin: bool,
    /// A disabled user keeps their data but cannot authenticate.
    pub disabled: bool,
    pub created_at_ms: i64,
    /// The display name the user chose, if any.
    pub fullname: Option<String>,
}

pub(crate) const USER_COLUMNS: &str = "users.id, users.name, users.email, users.is_admin, \
                                       users.disabled, users.created_at, users.fullname";
pub(crate) const USER_COLUMN_COUNT: usize = 7;

impl User {
    /// Reads a row selected with [`USER_COLUMNS`], whose first column is at `offset`.
    pub(crate) fn from_row(row: &impl crate::backend::DbRow, offset: usize) -> Result<User> {
        Ok(User {
            id: row.try_get(offset)?,
            name: row.try_get(offset + 1)?,
            email: row.try_get(offset + 2)?,
            is_admin: row.try_get(offset + 3)?,
            disabled: row.try_get(offset + 4)?,
            created_at_ms: row.try_get(offset + 5)?,
            fullname: row.try_get(offset + 6)?,
        })
    }
}

impl Db {
    /// Creates a user. `name` is validated by the caller (`RepoName::parse_namespace`, since a
    /// user name is also a namespace). Fails with `Conflict` if the name is taken in any case.
    pub async fn create_user(
        &self,
        name: &RepoName,
        email: Option<&str>,
        is_admin: bool,
    ) -> Result<User> {
        with_pool!(self, pool => {
            let sql = format!(
                "INSERT INTO users (name, email, is_admin, disabled, created_at) \
                 VALUES ($1, $2, $3, FALSE, $4) RETURNING {USER_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(name.as_str())
                .bind(email)
                .bind(is_admin)
                .bind(unix_now_ms())
                .fetch_one(pool)
                .await
                .map_err(constraint_error("user", "user"))?;
            User::from_row(&row, 0)
        })
    }

    /// The user with this name, compared without regard to ASCII case.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
            let row = sqlx::query(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.map(|row| User::from_row(&row, 0)).transpose()
        })
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
            let row = sqlx::query(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(|row| User::from_row(&row, 0)).transpose()
        })
    }

    /// Number of accounts, disabled ones included (zero means a fresh install).
    pub async fn count_users(&self) -> Result<i64> {
        with_pool!(self, pool => {
            let count = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?;
            Ok(count)
        })
    }

    /// Sets (or with `None` clears) a user's display name, validated by the caller;
    /// `false` if no such user exists.
    pub async fn set_user_fullname(&self, user_id: i64, fullname: Option<&str>) -> Result<bool> {
        let _changing = self.changing_accounts();
        with_pool!(self, pool => {
            let done = sqlx::query("UPDATE users SET fullname = $1 WHERE id = $2")
                .bind(fullname)
                .bind(user_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The users with these names (any case); names without an account are left out.
    pub async fn users_by_names(&self, names: &[String]) -> Result<Vec<User>> {
        with_pool!(self, pool => {
            if names.is_empty() {
                return Ok(Vec::new());
            }
            let marks = (1..=names.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name IN ({marks})");
            let mut query = sqlx::query(&sql);
            for name in names {
                query = query.bind(name);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(|row| User::from_row(row, 0)).collect()
        })
    }

    /// Disables or re-enables an account; `false` if no such user exists.
    pub async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool> {
        let _changing = self.changing_accounts();
        with_pool!(self, pool => {
            let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(disabled)
                .bind(user_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(|row| User::from_row(row, 0)).collect()
        })
    }

    /// Stores a password hash (a PHC string made by the caller) and ends the user's web
    /// sessions, in one transaction: a new password shuts out whoever held the old one.
    /// `false` if no such user.
    pub async fn set_password_hash(&self, user_id: i64, phc: &str) -> Result<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(phc)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// An enabled user and their password hash, if they have one.
    pub async fn user_with_password(&self, name: &str) -> Result<Option<(User, String)>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {USER_COLUMNS}, users.password_hash FROM users \
                 WHERE name = $1 AND disabled = FALSE AND password_hash IS NOT NULL"
            );
            let row = sqlx::query(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.map(|row| Ok((User::from_row(&row, 0)?, row.try_get(USER_COLUMN_COUNT)?)))
                .transpose()
        })
    }

    /// Stores a web session by the hash of its secret; `token_id`: the access token it was
    /// opened with, whose revocation or expiry ends it.
    pub async fn create_session(
        &self,
        user_id: i64,
        secret_hash: &[u8],
        expires_at_ms: i64,
        token_id: Option<i64>,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions (user_id, secret_hash, created_at, expires_at, token_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(secret_hash)
            .bind(unix_now_ms())
            .bind(expires_at_ms)
            .bind(token_id)
            .execute(pool)
            .await
            .map_err(constraint_error("session", "user"))?;
            Ok(())
        })
    }

    /// Ends a session (logout); `false` if there was none.
    pub async fn delete_session(&self, secret_hash: &[u8]) -> Result<bool> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM sessions WHERE secret_hash = $1")
                .bind(secret_hash)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Disabling a user also ends their sessions.
    pub async fn delete_sessions_of(&self, user_id: i64) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
