//! Secrets every node of a hub must hold alike (`shared_secrets`): a hub on PostgreSQL keeps
//! its URL-signing key here, so that an upload URL or a Xet token signed by one node is
//! accepted by every other node behind the same load balancer.
//!
//! The first node to ask stores its candidate and every node — that one included — gets
//! back what is stored: one `INSERT … ON CONFLICT DO NOTHING` and one read, so of nodes
//! starting at once all end with the same value. A stored secret is never replaced.

use crate::backend::with_pool;
use crate::db::{Db, unix_now_ms};
use crate::error::{DbError, Result};

impl Db {
    /// The secret `name`: the one stored, or `candidate` once it is stored when none was.
    pub async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let now = unix_now_ms();
        let stored: Option<Vec<u8>> = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO shared_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(pool)
            .await?;
            sqlx::query_scalar("SELECT value FROM shared_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        stored.ok_or(DbError::NotFound {
            what: "shared secret",
        })
    }
}
