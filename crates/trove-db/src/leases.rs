//! Leases: one row per piece of background work that must run on one node at a time when
//! several Trove nodes share a PostgreSQL database (the search index's jobs, webhook
//! delivery, garbage collection). A node holds a lease until `expires_at` and renews it
//! before then; a lease whose holder stopped renewing (the node died) is taken over by the
//! next node that asks once it has expired. On SQLite the same rows work for the one node
//! (and for an admin command run beside it).
//!
//! Taking, renewing and taking over are one `INSERT … ON CONFLICT DO UPDATE … WHERE`
//! statement, atomic on both engines: of two nodes asking at once, exactly one gets it.

use crate::backend::with_pool;
use crate::db::Db;
use crate::error::Result;

/// Who holds a lease, as [`Db::lease`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    /// The node id of the holder.
    pub holder: String,
    /// When this holder took it (renewals keep it), unix ms.
    pub taken_at: i64,
    /// When it lapses unless renewed, unix ms.
    pub expires_at: i64,
}

impl Db {
    /// Takes the lease `name` for `holder` until `now_ms + ttl_ms`, or renews it when
    /// `holder` has it already. Returns whether `holder` holds it now: `false` when another
    /// holder's lease has not expired.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let expires_at = now_ms.saturating_add(ttl_ms.max(1));
        let sql = "INSERT INTO leases (name, holder, taken_at, expires_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name) DO UPDATE SET \
                     taken_at = CASE WHEN leases.holder = excluded.holder \
                                     THEN leases.taken_at ELSE excluded.taken_at END, \
                     holder = excluded.holder, expires_at = excluded.expires_at \
                   WHERE leases.holder = excluded.holder OR leases.expires_at <= $3";
        let affected = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(name)
                .bind(holder)
                .bind(now_ms)
                .bind(expires_at)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Gives the lease `name` up if `holder` has it, so that another node may take it at
    /// once rather than after it expires. Returns whether it was held.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let affected = with_pool!(self, pool => {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// The lease `name` if someone holds it at `now_ms` (expired leases are nobody's).
    pub async fn lease(&self, name: &str, now_ms: i64) -> Result<Option<Lease>> {
        let sql = "SELECT name, holder, taken_at, expires_at FROM leases \
                   WHERE name = $1 AND expires_at > $2";
        let row: Option<(String, String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(name).bind(now_ms).fetch_optional(pool).await?
        });
        Ok(row.map(|(name, holder, taken_at, expires_at)| Lease {
            name,
            holder,
            taken_at,
            expires_at,
        }))
    }

    /// Every lease held at `now_ms`, by name (the admin's view of who runs what).
    pub async fn leases(&self, now_ms: i64) -> Result<Vec<Lease>> {
        let sql = "SELECT name, holder, taken_at, expires_at FROM leases \
                   WHERE expires_at > $1 ORDER BY name";
        let rows: Vec<(String, String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(sql).bind(now_ms).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, holder, taken_at, expires_at)| Lease {
                name,
                holder,
                taken_at,
                expires_at,
            })
            .collect())
    }
}
