//! User accounts: creation, lookup by name (case-insensitive) or id, and disabling.

use crate::error::{Result, constraint_error};
use crate::{Db, unix_now_ms};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
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
}

pub(crate) const USER_COLUMNS: &str = "users.id, users.name, users.email, users.is_admin, \
                                       users.disabled, users.created_at";

impl User {
    /// Reads a row selected with [`USER_COLUMNS`], whose first column is at `offset`.
    pub(crate) fn from_row(row: &SqliteRow, offset: usize) -> Result<User> {
        Ok(User {
            id: row.try_get(offset)?,
            name: row.try_get(offset + 1)?,
            email: row.try_get(offset + 2)?,
            is_admin: row.try_get(offset + 3)?,
            disabled: row.try_get(offset + 4)?,
            created_at_ms: row.try_get(offset + 5)?,
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
        let sql = format!(
            "INSERT INTO users (name, email, is_admin, disabled, created_at) \
             VALUES (?, ?, ?, 0, ?) RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .bind(email)
            .bind(is_admin)
            .bind(unix_now_ms())
            .fetch_one(&self.pool)
            .await
            .map_err(constraint_error("user", "user"))?;
        User::from_row(&row, 0)
    }

    /// The user with this name, compared without regard to ASCII case.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| User::from_row(&row, 0)).transpose()
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| User::from_row(&row, 0)).transpose()
    }

    /// Number of accounts, disabled ones included (zero means a fresh install).
    pub async fn count_users(&self) -> Result<i64> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    /// Disables or re-enables an account; `false` if no such user exists.
    pub async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
