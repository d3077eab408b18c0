//! Webhooks, what they watch, and their deliveries: a durable queue the delivery worker
//! drains (due rows first), which doubles as each webhook's delivery log.

use crate::backend::{Conn, WritePool, with_conn, with_pool};
use crate::db::Db;
use crate::error::{DbError, Result};
use sqlx::Row;

/// A webhook with what it watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub object_id: String,
    pub owner_user_id: i64,
    pub url: String,
    pub secret: Option<String>,
    /// `repo`, `discussion`.
    pub domains: Vec<String>,
    pub disabled: bool,
    pub watched: Vec<Watched>,
}

/// One watched item: `kind` is `model`, `dataset`, `space` (name `namespace/name`), `user`
/// or `org` (name a namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub kind: String,
    pub name: String,
}

/// A webhook's settings as written (create and update).
#[derive(Clone, Debug)]
pub struct WebhookSpec {
    pub url: String,
    pub secret: Option<String>,
    pub domains: Vec<String>,
    pub watched: Vec<Watched>,
}

/// A delivery to enqueue.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub webhook_id: i64,
    /// `action scope`, for the log.
    pub event: String,
    pub repo_id: Option<i64>,
    pub repo_namespace: String,
    pub repo_private: bool,
    pub payload: String,
}

/// A delivery as the worker and the log read it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event: String,
    pub repo_id: Option<i64>,
    pub repo_namespace: String,
    pub repo_private: bool,
    pub payload: String,
    /// `pending`, `delivered`, `failed` (attempts exhausted) or `skipped` (not sent).
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub struct AttemptOutcome {
    /// `delivered`, `failed`, `skipped`, or `pending` again (with `next_attempt_at`).
    pub state: &'static str,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub next_attempt_at: i64,
}

const WEBHOOK_COLUMNS: &str = "id, object_id, owner_user_id, url, secret, domains, disabled";
const DELIVERY_COLUMNS: &str = "id, webhook_id, event, repo_id, repo_namespace, repo_private, \
     payload, state, attempts, last_status, last_error, last_duration_ms, created_at, updated_at";

fn webhook_from_row(row: &impl crate::backend::DbRow) -> Result<Webhook> {
    let domains: String = row.try_get(5)?;
    Ok(Webhook {
        id: row.try_get(0)?,
        object_id: row.try_get(1)?,
        owner_user_id: row.try_get(2)?,
        url: row.try_get(3)?,
        secret: row.try_get(4)?,
        domains: domains
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        disabled: row.try_get(6)?,
        watched: Vec::new(),
    })
}

fn delivery_from_row(row: &impl crate::backend::DbRow) -> Result<Delivery> {
    Ok(Delivery {
        id: row.try_get(0)?,
        webhook_id: row.try_get(1)?,
        event: row.try_get(2)?,
        repo_id: row.try_get(3)?,
        repo_namespace: row.try_get(4)?,
        repo_private: row.try_get(5)?,
        payload: row.try_get(6)?,
        state: row.try_get(7)?,
        attempts: row.try_get(8)?,
        last_status: row.try_get(9)?,
        last_error: row.try_get(10)?,
        last_duration_ms: row.try_get(11)?,
        created_at_ms: row.try_get(12)?,
        updated_at_ms: row.try_get(13)?,
    })
}

impl Db {
    /// Creates a webhook owned by `owner_user_id`.
    pub async fn create_webhook(
        &self,
        object_id: &str,
        owner_user_id: i64,
        spec: &WebhookSpec,
        now_ms: i64,
    ) -> Result<Webhook> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO webhooks (object_id, owner_user_id, url, secret, domains, disabled, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7) RETURNING id",
            )
            .bind(object_id)
            .bind(owner_user_id)
            .bind(&spec.url)
            .bind(spec.secret.as_deref())
            .bind(spec.domains.join(","))
            .bind(now_ms)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(crate::error::constraint_error("webhook", "user"))?;
            write_watched(Conn::from(&mut *tx), id, &spec.watched).await?;
            tx.commit().await?;
            self.webhook_by_id(id)
                .await?
                .ok_or(DbError::NotFound { what: "webhook" })
        })
    }

    /// Replaces a webhook's settings; `secret: None` keeps the current secret.
    pub async fn update_webhook(
        &self,
        id: i64,
        spec: &WebhookSpec,
        now_ms: i64,
    ) -> Result<Webhook> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE webhooks SET url = $1, secret = COALESCE($2, secret), domains = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(&spec.url)
            .bind(spec.secret.as_deref())
            .bind(spec.domains.join(","))
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM webhook_watched WHERE webhook_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            write_watched(Conn::from(&mut *tx), id, &spec.watched).await?;
            tx.commit().await?;
            self.webhook_by_id(id)
                .await?
                .ok_or(DbError::NotFound { what: "webhook" })
        })
    }

    pub async fn set_webhook_disabled(&self, id: i64, disabled: bool, now_ms: i64) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("UPDATE webhooks SET disabled = $1, updated_at = $2 WHERE id = $3")
                .bind(disabled)
                .bind(now_ms)
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    pub async fn delete_webhook(&self, id: i64) -> Result<bool> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The webhook with this database id, if it exists.
    pub async fn webhook_by_id(&self, id: i64) -> Result<Option<Webhook>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
            let row = sqlx::query(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(self.with_watched(webhook_from_row(&row)?).await?)),
                None => Ok(None),
            }
        })
    }

    /// The webhook with this object id, if it exists.
    pub async fn webhook_by_object_id(&self, object_id: &str) -> Result<Option<Webhook>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE object_id = $1");
            let row = sqlx::query(&sql)
                .bind(object_id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(self.with_watched(webhook_from_row(&row)?).await?)),
                None => Ok(None),
            }
        })
    }

    /// A user's webhooks, oldest first.
    pub async fn webhooks_of(&self, owner_user_id: i64) -> Result<Vec<Webhook>> {
        with_pool!(self, pool => {
            let sql =
                format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner_user_id = $1 ORDER BY id");
            let rows = sqlx::query(&sql)
                .bind(owner_user_id)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(self.with_watched(webhook_from_row(row)?).await?);
            }
            Ok(out)
        })
    }

    /// The enabled webhooks watching a repository `{namespace}/{name}` of `kind` (`model`,
    /// `dataset`, `space`), directly or through its namespace (as a user or an organization).
    pub async fn webhooks_watching(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<Webhook>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE disabled = FALSE AND id IN \
                 (SELECT webhook_id FROM webhook_watched WHERE (kind = $1 AND name = $2) \
                  OR (kind IN ('user', 'org') AND name = $3)) ORDER BY id"
            );
            let rows = sqlx::query(&sql)
                .bind(kind)
                .bind(format!("{namespace}/{name}"))
                .bind(namespace)
                .fetch_all(pool)
                .await?;
            rows.iter().map(webhook_from_row).collect()
        })
    }

    async fn with_watched(&self, mut webhook: Webhook) -> Result<Webhook> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT kind, name FROM webhook_watched WHERE webhook_id = $1 ORDER BY position",
            )
            .bind(webhook.id)
            .fetch_all(pool)
            .await?;
            webhook.watched = rows
                .iter()
                .map(|r| {
                    Ok(Watched {
                        kind: r.try_get(0)?,
                        name: r.try_get(1)?,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(webhook)
        })
    }

    /// Queues deliveries, due now.
    pub async fn enqueue_deliveries(&self, deliveries: &[NewDelivery], now_ms: i64) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for d in deliveries {
                sqlx::query(
                    "INSERT INTO webhook_deliveries (webhook_id, event, repo_id, repo_namespace, \
                     repo_private, payload, state, attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $9)",
                )
                .bind(d.webhook_id)
                .bind(&d.event)
                .bind(d.repo_id)
                .bind(&d.repo_namespace)
                .bind(d.repo_private)
                .bind(&d.payload)
                .bind(now_ms)
                .bind(now_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Pending deliveries due at `now_ms`, oldest first, at most one per webhook (its
    /// oldest due one), so that one webhook's backlog never fills the batch.
    pub async fn due_deliveries(&self, now_ms: i64, limit: u32) -> Result<Vec<Delivery>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id IN \
                 (SELECT MIN(id) FROM webhook_deliveries \
                  WHERE state = 'pending' AND next_attempt_at <= $1 GROUP BY webhook_id) \
                 ORDER BY next_attempt_at, id LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(delivery_from_row).collect()
        })
    }

    /// Records an attempt; a finished delivery prunes its webhook's log to the last `keep`.
    pub async fn record_attempt(
        &self,
        delivery_id: i64,
        outcome: &AttemptOutcome,
        now_ms: i64,
        keep: u32,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let webhook_id: Option<i64> = sqlx::query_scalar(
                "UPDATE webhook_deliveries SET state = $1, attempts = attempts + $2, last_status = $3, \
                 last_error = $4, last_duration_ms = $5, next_attempt_at = $6, updated_at = $7 \
                 WHERE id = $8 RETURNING webhook_id",
            )
            .bind(outcome.state)
            .bind(i64::from(outcome.state != "skipped"))
            .bind(outcome.status)
            .bind(outcome.error.as_deref())
            .bind(outcome.duration_ms)
            .bind(outcome.next_attempt_at)
            .bind(now_ms)
            .bind(delivery_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(webhook_id) = webhook_id
                && outcome.state != "pending"
            {
                sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND state != 'pending' \
                     AND id NOT IN (SELECT id FROM webhook_deliveries WHERE webhook_id = $2 \
                     AND state != 'pending' ORDER BY id DESC LIMIT $3)",
                )
                .bind(webhook_id)
                .bind(webhook_id)
                .bind(i64::from(keep))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Removes a delivery, whatever its state (one its webhook's owner may no longer see).
    pub async fn forget_delivery(&self, delivery_id: i64) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1")
                .bind(delivery_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// A webhook's deliveries, newest first.
    pub async fn webhook_deliveries(&self, webhook_id: i64, limit: u32) -> Result<Vec<Delivery>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
                 ORDER BY id DESC LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(webhook_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(delivery_from_row).collect()
        })
    }
}

async fn write_watched(conn: Conn<'_>, webhook_id: i64, watched: &[Watched]) -> Result<()> {
    with_conn!(conn, c => for (position, w) in watched.iter().enumerate() {
        sqlx::query(
            "INSERT INTO webhook_watched (webhook_id, kind, name, position) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (webhook_id, kind, name) DO NOTHING",
        )
        .bind(webhook_id)
        .bind(&w.kind)
        .bind(&w.name)
        .bind(position as i64)
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}
