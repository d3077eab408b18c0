//! An account read together with the organizations it belongs to, in one query: what every
//! signed-in request needs (a session cookie here, a token in `tokens.rs`).

use crate::backend::with_reader;
use crate::db::Db;
use crate::error::Result;
use crate::orgs::{Membership, ORG_COLUMN_COUNT, Org, role_at};
use crate::users::{USER_COLUMN_COUNT, USER_COLUMNS, User};

/// What a query that reads an account with its memberships in one go appends to its select
/// list ([`MEMBERSHIPS_JOIN`] in its `FROM`, `ORDER BY orgs.name`): the organization's
/// columns and the member's role, all NULL for an account in no organization.
pub(crate) const MEMBERSHIP_COLUMNS: &str =
    "orgs.id, orgs.name, orgs.fullname, orgs.created_at, m.role";
/// The joins that go with [`MEMBERSHIP_COLUMNS`], after a join of `users`.
pub(crate) const MEMBERSHIPS_JOIN: &str = "LEFT JOIN org_members m ON m.user_id = users.id \
                                           LEFT JOIN orgs ON orgs.id = m.org_id";

/// The memberships of the rows of a query built with [`MEMBERSHIP_COLUMNS`] at `offset`: one
/// row per membership, or one row of NULLs for none.
pub(crate) fn memberships_at<R: crate::backend::DbRow>(
    rows: &[R],
    offset: usize,
) -> Result<Vec<Membership>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let role: Option<String> = row.try_get(offset + ORG_COLUMN_COUNT)?;
        if role.is_none() {
            continue;
        }
        out.push(Membership {
            org: Org::from_row_at(row, offset)?,
            role: role_at(row, offset + ORG_COLUMN_COUNT)?,
        });
    }
    Ok(out)
}

impl Db {
    /// The enabled user of an unexpired session and the organizations they belong to (by
    /// name), in one query: what every request made with a session cookie needs.
    pub async fn session_member(
        &self,
        secret_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<(User, Vec<Membership>)>> {
        // Every request of a signed-in browser asks this: a reader connection, one round
        // trip (see `backend::Readers`).
        with_reader!(self, pool => {
            let sql = format!(
                "SELECT {USER_COLUMNS}, {MEMBERSHIP_COLUMNS} FROM sessions s \
                 JOIN users ON users.id = s.user_id {MEMBERSHIPS_JOIN} \
                 WHERE s.secret_hash = $1 AND s.expires_at > $2 AND users.disabled = FALSE \
                 ORDER BY orgs.name"
            );
            let rows = sqlx::query(&sql)
                .bind(secret_hash)
                .bind(now_ms)
                .fetch_all(pool)
                .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            Ok(Some((
                User::from_row(first, 0)?,
                memberships_at(&rows, USER_COLUMN_COUNT)?,
            )))
        })
    }
}
