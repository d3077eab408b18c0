//! Access requests to gated repositories: one per user and repository, pending, accepted or
//! rejected.

use crate::backend::with_pool;
use crate::db::Db;
use crate::error::{DbError, Result, constraint_error};
use crate::users::{USER_COLUMN_COUNT, USER_COLUMNS, User};
use sqlx::Row;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    Pending,
    Accepted,
    Rejected,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<RequestStatus> {
        match s {
            "pending" => Some(RequestStatus::Pending),
            "accepted" => Some(RequestStatus::Accepted),
            "rejected" => Some(RequestStatus::Rejected),
            _ => None,
        }
    }
}

/// A request and who made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    pub user: User,
    pub status: RequestStatus,
    /// The form fields the user sent, as JSON text.
    pub fields: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Db {
    /// Records a request, or moves an existing one to `status` (keeping its fields unless
    /// new ones are given). `NotFound` if the repository or user does not exist.
    pub async fn set_access_request(
        &self,
        repo_id: i64,
        user_id: i64,
        status: RequestStatus,
        fields: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO access_requests (repo_id, user_id, status, fields, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repo_id, user_id) DO UPDATE SET \
                 status = excluded.status, fields = coalesce(excluded.fields, access_requests.fields), \
                 updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(user_id)
            .bind(status.as_str())
            .bind(fields)
            .bind(now_ms)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(constraint_error("access request", "repo or user"))?;
            Ok(())
        })
    }

    /// The status of this user's request for this repository, if any.
    pub async fn access_request_status(
        &self,
        repo_id: i64,
        user_id: i64,
    ) -> Result<Option<RequestStatus>> {
        with_pool!(self, pool => {
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM access_requests WHERE repo_id = $1 AND user_id = $2",
            )
            .bind(repo_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            status
                .map(|s| {
                    RequestStatus::parse(&s).ok_or(DbError::Corrupt {
                        what: "access request status",
                        detail: s,
                    })
                })
                .transpose()
        })
    }

    /// A repository's requests in one status, oldest first.
    pub async fn access_requests(
        &self,
        repo_id: i64,
        status: RequestStatus,
    ) -> Result<Vec<AccessRequest>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {USER_COLUMNS}, a.fields, a.created_at, a.updated_at FROM access_requests a \
                 JOIN users ON users.id = a.user_id WHERE a.repo_id = $1 AND a.status = $2 \
                 ORDER BY a.created_at, users.id"
            );
            let rows = sqlx::query(&sql)
                .bind(repo_id)
                .bind(status.as_str())
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(AccessRequest {
                        user: User::from_row(row, 0)?,
                        status,
                        fields: row.try_get(USER_COLUMN_COUNT)?,
                        created_at_ms: row.try_get(USER_COLUMN_COUNT + 1)?,
                        updated_at_ms: row.try_get(USER_COLUMN_COUNT + 2)?,
                    })
                })
                .collect()
        })
    }
}
