//! The delivery worker: a task started by `trove serve` that drains the queue in the
//! database (so deliveries queued before a restart are sent after it), POSTs each payload
//! with the webhook's `X-Webhook-Secret`, retries failures with exponential backoff up to
//! [`MAX_ATTEMPTS`], and records every outcome in the webhook's delivery log. Before each
//! attempt it asks the one authorization policy whether the webhook's owner may still read
//! the repository; if not, the delivery is skipped, never sent.

use crate::auth::{Access, Caller, Credential};
use crate::clock::now_ms;
use crate::context::Context;
use std::time::{Duration, Instant};
use trove_db::{AttemptOutcome, Delivery, Gating, Repo};
use trove_types::RepoType;

/// Attempts per delivery before it is logged as failed.
pub const MAX_ATTEMPTS: i64 = 4;
/// The wait before the second attempt; each later one waits twice as long.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How long a receiver has to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished deliveries kept per webhook (the log).
pub const LOG_KEPT: u32 = 50;
/// How often the queue is looked at.
const POLL: Duration = Duration::from_millis(250);
/// Deliveries taken from the queue at a time.
const BATCH: u32 = 16;
/// The longest error text kept in the log.
const MAX_ERROR_CHARS: usize = 300;

/// Starts the worker on the current runtime.
pub fn spawn(state: Context) {
    tokio::spawn(async move {
        let client = match client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks.worker_not_started");
                return;
            }
        };
        tracing::info!("webhooks.worker_started");
        loop {
            match run_due(&state, &client).await {
                Ok(0) => tokio::time::sleep(POLL).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "webhooks.queue_failed");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    });
}

/// The HTTP client deliveries go out with: a timeout per delivery, no redirects followed
/// (a receiver's redirect is its answer).
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("trove-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Makes one attempt at every delivery that is due; returns how many it handled.
pub async fn run_due(state: &Context, client: &reqwest::Client) -> anyhow::Result<usize> {
    let due = state.db.due_deliveries(now_ms(), BATCH).await?;
    for delivery in &due {
        let outcome = attempt(state, client, delivery).await?;
        tracing::info!(
            webhook.id = delivery.webhook_id,
            delivery.id = delivery.id,
            event = %delivery.event,
            state = outcome.state,
            status = outcome.status,
            duration_ms = outcome.duration_ms,
            error = outcome.error.as_deref().unwrap_or(""),
            "webhooks.delivery"
        );
        state
            .db
            .record_attempt(delivery.id, &outcome, now_ms(), LOG_KEPT)
            .await?;
    }
    Ok(due.len())
}

fn skipped(reason: &str) -> AttemptOutcome {
    AttemptOutcome {
        state: "skipped",
        status: None,
        error: Some(reason.to_owned()),
        duration_ms: None,
        next_attempt_at: 0,
    }
}

async fn attempt(
    state: &Context,
    client: &reqwest::Client,
    delivery: &Delivery,
) -> anyhow::Result<AttemptOutcome> {
    let Some(webhook) = state.db.webhook_by_id(delivery.webhook_id).await? else {
        return Ok(skipped("the webhook was deleted"));
    };
    if webhook.disabled {
        return Ok(skipped("the webhook is disabled"));
    }
    if !owner_may_read(state, webhook.owner_user_id, delivery).await? {
        return Ok(skipped("the webhook's owner may not read this repository"));
    }
    let mut request = client
        .post(&webhook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(delivery.payload.clone());
    if let Some(secret) = &webhook.secret {
        request = request.header("X-Webhook-Secret", secret);
    }
    let started = Instant::now();
    let result = request.send().await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status, error) = match result {
        Ok(response) if response.status().is_success() => {
            return Ok(AttemptOutcome {
                state: "delivered",
                status: Some(i64::from(response.status().as_u16())),
                error: None,
                duration_ms: Some(duration_ms),
                next_attempt_at: 0,
            });
        }
        Ok(response) => (
            Some(i64::from(response.status().as_u16())),
            format!("the receiver answered {}", response.status()),
        ),
        Err(e) => (None, describe(&e)),
    };
    let attempts = delivery.attempts + 1;
    let (state_after, next) = if attempts >= MAX_ATTEMPTS {
        ("failed", 0)
    } else {
        let wait = FIRST_RETRY.saturating_mul(1 << (attempts - 1).clamp(0, 16));
        (
            "pending",
            now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        )
    };
    Ok(AttemptOutcome {
        state: state_after,
        status,
        error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        duration_ms: Some(duration_ms),
        next_attempt_at: next,
    })
}

/// The error of a failed request, with its causes (reqwest's own text names only the
/// outermost one).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the webhook's owner may, now, read the repository of `delivery` — the policy
/// the API applies, for the owner's own standing (a webhook is not a token).
async fn owner_may_read(
    state: &Context,
    owner_id: i64,
    delivery: &Delivery,
) -> anyhow::Result<bool> {
    let Some(user) = state.db.user_by_id(owner_id).await? else {
        return Ok(false);
    };
    if user.disabled {
        return Ok(false);
    }
    let repo = match delivery.repo_id {
        Some(id) => state.db.repo_for_delivery(id).await?,
        None => None,
    };
    // A deleted repository is judged by the namespace and visibility it had.
    let repo = repo.unwrap_or_else(|| Repo {
        id: 0,
        repo_type: RepoType::Model,
        namespace: delivery.repo_namespace.clone(),
        name: String::new(),
        private: delivery.repo_private,
        owner_user_id: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        gated: Gating::Off,
        discussions_disabled: false,
    });
    let orgs = state.db.memberships(user.id).await?;
    let caller = Caller::User {
        user,
        token: Credential::full("webhook"),
        orgs,
    };
    Ok(crate::repos::access_to(state, &caller, &repo)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        != Access::None)
}
