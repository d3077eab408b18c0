//! The audit log: security events (tokens, members, visibility, gating, moves, deletions),
//! append-only. Names are copied into each row so the log outlives what it names.

use crate::backend::with_pool;
use crate::db::{Db, unix_now_ms};
use crate::error::Result;
use sqlx::Row;

/// One event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent<'a> {
    /// Who did it (a user name, or `cli` for the admin command line).
    pub actor: &'a str,
    /// What happened, dotted: `token.create`, `org.member.add`, `repo.visibility`…
    pub action: &'a str,
    /// The user or organization the event concerns (whose admins may read it).
    pub namespace: Option<&'a str>,
    /// What it was done to: a repository id, a token name, a member's name.
    pub target: Option<&'a str>,
    /// Anything else worth keeping, as short text (a role, old → new name…).
    pub detail: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub at_ms: i64,
    pub actor: Option<String>,
    pub action: String,
    pub namespace: Option<String>,
    pub target: Option<String>,
    pub detail: Option<String>,
}

impl Db {
    pub async fn audit(&self, event: NewAuditEvent<'_>) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, namespace, target, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(unix_now_ms())
            .bind(event.actor)
            .bind(event.action)
            .bind(event.namespace)
            .bind(event.target)
            .bind(event.detail)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The newest events first, of one namespace or of all; at most `limit`, before `before_id`.
    pub async fn audit_events(
        &self,
        namespace: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, at, actor, action, namespace, target, detail FROM audit_log \
                 WHERE ($1 IS NULL OR namespace = $2) AND id < $3 ORDER BY id DESC LIMIT $4",
            )
            .bind(namespace)
            .bind(namespace)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(AuditEvent {
                        id: row.try_get(0)?,
                        at_ms: row.try_get(1)?,
                        actor: row.try_get(2)?,
                        action: row.try_get(3)?,
                        namespace: row.try_get(4)?,
                        target: row.try_get(5)?,
                        detail: row.try_get(6)?,
                    })
                })
                .collect()
        })
    }
}
