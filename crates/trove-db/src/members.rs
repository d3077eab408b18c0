//! An account read together with the organizations it belongs to, in one query: what every
//! signed-in request needs (a session cookie here, a token in `tokens.rs`).

use crate::backend::DbRow;
use crate::db::Db;
use crate::error::Result;
use crate::orgs::{Membership, ORG_COLUMN_COUNT, Org, role_at};
use crate::reader::read_rows;
use crate::users::{USER_COLUMN_COUNT, USER_COLUMNS, User};

/// What a query that reads an account with its memberships in one go appends to its select
/// list ([`MEMBERSHIPS_JOIN`] in its `FROM`; [`by_name`] orders the memberships): the
/// organization's columns and the member's role, all NULL for an account in no organization.
pub(crate) const MEMBERSHIP_COLUMNS: &str =
    "orgs.id, orgs.name, orgs.fullname, orgs.created_at, m.role";
/// How many columns [`MEMBERSHIP_COLUMNS`] selects.
const MEMBERSHIP_COLUMN_COUNT: usize = ORG_COLUMN_COUNT + 1;
/// The joins that go with [`MEMBERSHIP_COLUMNS`], after a join of `users`.
pub(crate) const MEMBERSHIPS_JOIN: &str = "LEFT JOIN org_members m ON m.user_id = users.id \
                                           LEFT JOIN orgs ON orgs.id = m.org_id";

/// The membership of one row of a query built with [`MEMBERSHIP_COLUMNS`] at `offset`:
/// one row per membership, or one row of NULLs (`None`) for an account in none.
pub(crate) fn membership_at(
    row: &impl crate::backend::DbRow,
    offset: usize,
) -> Result<Option<Membership>> {
    let role: Option<String> = row.try_get(offset + ORG_COLUMN_COUNT)?;
    if role.is_none() {
        return Ok(None);
    }
    Ok(Some(Membership {
        org: Org::from_row_at(row, offset)?,
        role: role_at(row, offset + ORG_COLUMN_COUNT)?,
    }))
}

/// Sorts memberships by organization name as SQLite's `NOCASE` does (ASCII letters folded),
/// on both backends. Sorted here rather than with an `ORDER BY` in the query: SQLite opens a
/// sorter for it on every request, even for an account in no organization.
pub(crate) fn by_name(memberships: &mut [Membership]) {
    memberships.sort_by(|a, b| {
        let fold = |m: &Membership| m.org.name.to_ascii_lowercase();
        fold(a)
            .cmp(&fold(b))
            .then_with(|| a.org.name.cmp(&b.org.name))
    });
}

/// Who a session cookie stands for ([`Db::session_member`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMember {
    pub user: User,
    pub orgs: Vec<Membership>,
    /// The access token the session was opened with; `None` for a password sign-in.
    pub token_id: Option<i64>,
}

impl Db {
    /// The enabled user of an unexpired session, the organizations they belong to (by
    /// name), and the access token the session was opened with (if any: then unexpired
    /// too), in one query: what every request made with a session cookie needs.
    pub async fn session_member(
        &self,
        secret_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<SessionMember>> {
        // Every request of a signed-in browser asks this: on the calling thread (see
        // `reader.rs`).
        let sql = format!(
            "SELECT {USER_COLUMNS}, {MEMBERSHIP_COLUMNS}, s.token_id FROM sessions s \
             JOIN users ON users.id = s.user_id {MEMBERSHIPS_JOIN} \
             WHERE s.secret_hash = $1 AND s.expires_at > $2 AND users.disabled = FALSE \
             AND (s.token_id IS NULL OR EXISTS (SELECT 1 FROM tokens t WHERE t.id = s.token_id \
                  AND t.user_id = s.user_id AND (t.expires_at IS NULL OR t.expires_at > $2)))"
        );
        let rows = read_rows!(self, &sql, [secret_hash, now_ms], row => Ok((
            User::from_row(row, 0)?,
            membership_at(row, USER_COLUMN_COUNT)?,
            row.try_get::<Option<i64>, _>(USER_COLUMN_COUNT + MEMBERSHIP_COLUMN_COUNT)?,
        )))?;
        let mut rows = rows.into_iter();
        let Some((user, first, token_id)) = rows.next() else {
            return Ok(None);
        };
        let mut orgs: Vec<Membership> = first
            .into_iter()
            .chain(rows.filter_map(|(_, m, _)| m))
            .collect();
        by_name(&mut orgs);
        Ok(Some(SessionMember {
            user,
            orgs,
            token_id,
        }))
    }
}
