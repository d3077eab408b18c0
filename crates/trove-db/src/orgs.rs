//! Organizations and their members. An organization is a namespace like a user's; the
//! schema refuses a name that is already a user (and the reverse).

use crate::backend::with_pool;
use crate::db::{Db, unix_now_ms};
use crate::error::{DbError, Result, constraint_error};
use crate::users::{USER_COLUMNS, User};
use std::fmt;
use trove_types::RepoName;

/// A member's role, as on the Hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrgRole {
    /// Reads the organization's private repositories.
    Read,
    /// Reads, and opens discussions and pull requests.
    Contributor,
    /// Pushes to every repository of the organization and creates new ones.
    Write,
    /// Manages members, settings, moves and deletions.
    Admin,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Read => "read",
            OrgRole::Contributor => "contributor",
            OrgRole::Write => "write",
            OrgRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<OrgRole> {
        match s {
            "read" => Some(OrgRole::Read),
            "contributor" => Some(OrgRole::Contributor),
            "write" => Some(OrgRole::Write),
            "admin" => Some(OrgRole::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub fullname: Option<String>,
    pub created_at_ms: i64,
}

/// One organization a user belongs to, with the user's role there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub org: Org,
    pub role: OrgRole,
}

const ORG_COLUMNS: &str = "orgs.id, orgs.name, orgs.fullname, orgs.created_at";
pub(crate) const ORG_COLUMN_COUNT: usize = 4;

pub(crate) fn role_at(row: &impl crate::backend::DbRow, i: usize) -> Result<OrgRole> {
    let role: String = row.try_get(i)?;
    OrgRole::parse(&role).ok_or(DbError::Corrupt {
        what: "member role",
        detail: role,
    })
}

impl Org {
    fn from_row(row: &impl crate::backend::DbRow) -> Result<Org> {
        Self::from_row_at(row, 0)
    }

    /// Reads a row selected with [`ORG_COLUMNS`], whose first column is at `offset`.
    pub(crate) fn from_row_at(row: &impl crate::backend::DbRow, offset: usize) -> Result<Org> {
        Ok(Org {
            id: row.try_get(offset)?,
            name: row.try_get(offset + 1)?,
            fullname: row.try_get(offset + 2)?,
            created_at_ms: row.try_get(offset + 3)?,
        })
    }
}

impl Db {
    /// Creates an organization. `Conflict` if the name is taken by an organization or a user.
    pub async fn create_org(&self, name: &RepoName, fullname: Option<&str>) -> Result<Org> {
        with_pool!(self, pool => {
            let sql = format!(
                "INSERT INTO orgs (name, fullname, created_at) VALUES ($1, $2, $3) RETURNING {ORG_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(name.as_str())
                .bind(fullname)
                .bind(unix_now_ms())
                .fetch_one(pool)
                .await
                .map_err(constraint_error("namespace", "org"))?;
            Org::from_row(&row)
        })
    }

    /// The organization with this name (ASCII case ignored).
    pub async fn org_by_name(&self, name: &str) -> Result<Option<Org>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {ORG_COLUMNS} FROM orgs WHERE name = $1");
            let row = sqlx::query(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(Org::from_row).transpose()
        })
    }

    pub async fn list_orgs(&self) -> Result<Vec<Org>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY name");
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(Org::from_row).collect()
        })
    }

    /// Adds a member or changes their role. `NotFound` if the org or user does not exist.
    pub async fn set_org_member(&self, org_id: i64, user_id: i64, role: OrgRole) -> Result<()> {
        let _changing = self.changing_accounts();
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(unix_now_ms())
            .execute(pool)
            .await
            .map_err(constraint_error("member", "org or user"))?;
            Ok(())
        })
    }

    /// Removes a member; `false` if they were not one.
    pub async fn remove_org_member(&self, org_id: i64, user_id: i64) -> Result<bool> {
        let _changing = self.changing_accounts();
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// How many admins the organization has (an org keeps at least one).
    pub async fn count_org_admins(&self, org_id: i64) -> Result<i64> {
        with_pool!(self, pool => {
            let n = sqlx::query_scalar(
                "SELECT COUNT(*) FROM org_members WHERE org_id = $1 AND role = 'admin'",
            )
            .bind(org_id)
            .fetch_one(pool)
            .await?;
            Ok(n)
        })
    }

    /// The members of an organization with their roles, by name.
    pub async fn org_members(&self, org_id: i64) -> Result<Vec<(User, OrgRole)>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {USER_COLUMNS}, m.role FROM org_members m JOIN users ON users.id = m.user_id \
                 WHERE m.org_id = $1 ORDER BY users.name"
            );
            let rows = sqlx::query(&sql).bind(org_id).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        User::from_row(row, 0)?,
                        role_at(row, crate::users::USER_COLUMN_COUNT)?,
                    ))
                })
                .collect()
        })
    }

    /// The organizations a user belongs to, by name.
    pub async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {ORG_COLUMNS}, m.role FROM org_members m JOIN orgs ON orgs.id = m.org_id \
                 WHERE m.user_id = $1 ORDER BY orgs.name"
            );
            let rows = sqlx::query(&sql)
                .bind(user_id)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(Membership {
                        org: Org::from_row(row)?,
                        role: role_at(row, ORG_COLUMN_COUNT)?,
                    })
                })
                .collect()
        })
    }
}
