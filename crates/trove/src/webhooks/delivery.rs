//! The delivery worker: a task started by `trove serve` that drains the queue in the
//! database (so deliveries queued before a restart are sent after it), POSTs each payload
//! with the webhook's `X-Webhook-Secret`, retries failures with exponential backoff up to
//! `[webhooks] max_attempts`, and records every outcome in the webhook's delivery log.
//! Deliveries to different webhooks go out in parallel (at most
//! `max_concurrent_deliveries`), one webhook's in turn, so a slow receiver holds back only
//! its own. Before each attempt it asks the one authorization policy whether the webhook's
//! owner may still read the repository; if not, the delivery is dropped: never sent, and
//! gone from the log (which would show what happened to a repository they may not see).
//! Only addresses the [`TargetPolicy`] allows are connected to; a refused target is a failed
//! attempt whose log names the refusal and nothing else (no connection was made).

use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::config::WebhooksConfig;
use crate::context::Context;
use crate::webhooks::target::{GuardedResolver, Refused, TargetPolicy};
use anyhow::Context as _;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use trove_db::{AttemptOutcome, Delivery, Gating, Repo};
use trove_types::RepoType;

/// How long a receiver has to answer.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished deliveries kept per webhook (the log).
pub const LOG_KEPT: u32 = 50;
/// How often the queue is looked at.
const POLL: Duration = Duration::from_millis(250);
/// Deliveries taken from the queue at a time, besides those in flight.
const BATCH: usize = 16;
/// The longest error text kept in the log.
const MAX_ERROR_CHARS: usize = 300;

/// Starts the worker on the current runtime. Fails (so `serve` does not start) when the
/// HTTP client cannot be built, e.g. an unreadable `extra_ca_file`.
pub fn spawn(state: Context) -> anyhow::Result<()> {
    let deliverer = Deliverer::new(&state.config.webhooks)?;
    tracing::info!(
        max_concurrent = state.config.webhooks.max_concurrent_deliveries,
        max_attempts = state.config.webhooks.max_attempts,
        extra_ca_file = ?state.config.webhooks.extra_ca_file,
        allow_private_targets = state.config.webhooks.allow_private_targets,
        allowed_targets = ?state.config.webhooks.allowed_targets,
        "webhooks.worker_started"
    );
    let deliverer = Arc::new(deliverer);
    let (db, node) = (state.db.clone(), state.node.clone());
    // On several nodes sharing the queue, one drains it: the one holding the lease. A node
    // that loses it mid-attempt finishes that attempt; the queue is at-least-once.
    tokio::spawn(crate::cluster::run_while_leased(
        db,
        node,
        crate::cluster::leases::WEBHOOKS,
        move || {
            let (state, deliverer) = (state.clone(), deliverer.clone());
            async move { drain_forever(&state, &deliverer).await }
        },
    ));
    Ok(())
}

async fn drain_forever(state: &Context, deliverer: &Deliverer) {
    loop {
        match deliverer.dispatch_due(state).await {
            Ok(0) => tokio::time::sleep(POLL).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "webhooks.queue_failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// The HTTP client deliveries go out with: TLS through rustls with the `ring` provider,
/// trusting the system's roots plus the certificates of `extra_ca_file`; a timeout per
/// delivery; no redirects followed (a receiver's redirect is its answer); names resolved
/// to the addresses `policy` allows only; no proxy from the environment (the policy must
/// judge the address connected to, and a proxy would connect for us).
pub fn client(
    config: &WebhooksConfig,
    policy: Arc<TargetPolicy>,
) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a provider of its own (`rustls-no-provider`); the process
    // default is `ring`. Installing fails only when one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .user_agent(concat!("trove-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.extra_ca_file {
        builder = builder.tls_certs_merge(extra_roots(path)?);
    }
    Ok(builder.build()?)
}

/// The CA certificates of a PEM file; a file with none is an error (a typo in the path
/// of a bundle should not silently trust nothing new).
fn extra_roots(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("reading webhooks.extra_ca_file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("parsing webhooks.extra_ca_file {}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "webhooks.extra_ca_file {} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// When and how often a failed delivery is tried again.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_retry: Duration,
}

impl RetryPolicy {
    pub fn from_config(config: &WebhooksConfig) -> Self {
        RetryPolicy {
            max_attempts: config.max_attempts.max(1),
            first_retry: Duration::from_secs(config.first_retry_secs),
        }
    }

    /// The wait after failed attempt number `attempts` (1-based), or `None` when it was
    /// the last one.
    pub fn wait_after(&self, attempts: i64) -> Option<Duration> {
        if attempts >= i64::from(self.max_attempts) {
            return None;
        }
        let doublings = u32::try_from((attempts - 1).clamp(0, 16)).unwrap_or(16);
        Some(self.first_retry.saturating_mul(1 << doublings))
    }
}

/// Sends due deliveries in parallel: at most `max_concurrent_deliveries` at once and one
/// per webhook at a time.
pub struct Deliverer {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
    concurrency: u32,
    /// Webhooks with a delivery in flight.
    busy: Arc<Mutex<HashSet<i64>>>,
}

impl Deliverer {
    pub fn new(config: &WebhooksConfig) -> anyhow::Result<Self> {
        let concurrency = config.max_concurrent_deliveries.clamp(1, 256);
        let policy = Arc::new(TargetPolicy::from_config(config));
        Ok(Deliverer {
            client: client(config, policy.clone())?,
            policy,
            retry: RetryPolicy::from_config(config),
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency: u32::try_from(concurrency).unwrap_or(1),
            busy: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Starts an attempt at every due delivery whose webhook has none in flight, while
    /// permits last; returns how many it started (each finishes on its own task).
    pub async fn dispatch_due(&self, state: &Context) -> anyhow::Result<usize> {
        let in_flight = self.busy.lock().map(|b| b.len()).unwrap_or(0);
        let limit = u32::try_from(BATCH + in_flight).unwrap_or(u32::MAX);
        let due = state.db.due_deliveries(now_ms(), limit).await?;
        let mut started = 0;
        for delivery in due {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            {
                let Ok(mut busy) = self.busy.lock() else {
                    anyhow::bail!("the webhook worker's bookkeeping is poisoned");
                };
                if !busy.insert(delivery.webhook_id) {
                    continue;
                }
            }
            started += 1;
            let (state, sender, busy) = (
                state.clone(),
                Sender {
                    client: self.client.clone(),
                    policy: self.policy.clone(),
                    retry: self.retry,
                },
                self.busy.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = deliver(&state, &sender, &delivery).await {
                    tracing::error!(delivery.id = delivery.id, error = %e, "webhooks.record_failed");
                }
                if let Ok(mut busy) = busy.lock() {
                    busy.remove(&delivery.webhook_id);
                }
                drop(permit);
            });
        }
        Ok(started)
    }

    /// Waits until no delivery is in flight.
    pub async fn idle(&self) {
        if let Ok(all) = self.permits.acquire_many(self.concurrency).await {
            drop(all);
        }
    }

    /// One pass: starts what is due and waits for it to finish (tests and tools).
    pub async fn run_due(&self, state: &Context) -> anyhow::Result<usize> {
        let started = self.dispatch_due(state).await?;
        self.idle().await;
        Ok(started)
    }
}

/// What one attempt needs of the [`Deliverer`].
struct Sender {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    retry: RetryPolicy,
}

/// Makes one attempt at `delivery` and records it.
async fn deliver(state: &Context, sender: &Sender, delivery: &Delivery) -> anyhow::Result<()> {
    let Some(outcome) = attempt(state, sender, delivery).await? else {
        tracing::info!(
            webhook.id = delivery.webhook_id,
            delivery.id = delivery.id,
            "webhooks.delivery_dropped_not_readable"
        );
        state.db.forget_delivery(delivery.id).await?;
        return Ok(());
    };
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
    Ok(())
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

/// Makes one attempt at `delivery`: its outcome, or `None` when the webhook's owner may no
/// longer read the repository (the delivery is then dropped, never sent nor logged: the log
/// must not show what happened to a repository its owner may not see).
async fn attempt(
    state: &Context,
    sender: &Sender,
    delivery: &Delivery,
) -> anyhow::Result<Option<AttemptOutcome>> {
    let Some(webhook) = state.db.webhook_by_id(delivery.webhook_id).await? else {
        return Ok(Some(skipped("the webhook was deleted")));
    };
    if webhook.disabled {
        return Ok(Some(skipped("the webhook is disabled")));
    }
    if !OwnerView::load(state, webhook.owner_user_id)
        .await?
        .may_read_delivery(state, delivery)
        .await?
    {
        return Ok(None);
    }
    // A URL naming an address never reaches the resolver: judge it here (a webhook made
    // while its address was allowed included).
    if let Some(refused) = reqwest::Url::parse(&webhook.url)
        .ok()
        .and_then(|url| sender.policy.check_address_in_url(&url).err())
    {
        return Ok(Some(failed_attempt(
            sender.retry,
            delivery,
            None,
            refused.to_string(),
            None,
        )));
    }
    let mut request = sender
        .client
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
            return Ok(Some(AttemptOutcome {
                state: "delivered",
                status: Some(i64::from(response.status().as_u16())),
                error: None,
                duration_ms: Some(duration_ms),
                next_attempt_at: 0,
            }));
        }
        Ok(response) => (
            Some(i64::from(response.status().as_u16())),
            format!("the receiver answered {}", response.status()),
        ),
        Err(e) => (None, describe(&e)),
    };
    Ok(Some(failed_attempt(
        sender.retry,
        delivery,
        status,
        error,
        Some(duration_ms),
    )))
}

/// A failed attempt: `pending` again after the policy's wait, or `failed` when it was the
/// last one.
fn failed_attempt(
    retry: RetryPolicy,
    delivery: &Delivery,
    status: Option<i64>,
    error: String,
    duration_ms: Option<i64>,
) -> AttemptOutcome {
    let attempts = delivery.attempts + 1;
    let (state_after, next) = match retry.wait_after(attempts) {
        None => ("failed", 0),
        Some(wait) => (
            "pending",
            now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        ),
    };
    AttemptOutcome {
        state: state_after,
        status,
        error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        duration_ms,
        next_attempt_at: next,
    }
}

/// The error of a failed request, with its causes (reqwest's own text names only the
/// outermost one). A target the policy refused is named alone: nothing was connected to.
fn describe(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        source = cause.source();
    }
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

/// A webhook owner's standing, loaded once, against which deliveries are judged: the policy
/// the API applies, for the owner's own standing (a webhook is not a token).
pub struct OwnerView {
    /// `None`: the owner is gone or disabled, and may read nothing.
    caller: Option<Caller>,
}

impl OwnerView {
    pub async fn load(state: &Context, owner_id: i64) -> anyhow::Result<OwnerView> {
        let caller = Caller::of_user(&state.db, owner_id, "webhook").await?;
        Ok(OwnerView { caller })
    }

    /// Whether the owner may, now, see `repo` (for events, and anything in a delivery's
    /// payload: its name, what happened to it).
    pub async fn may_read(&self, state: &Context, repo: &Repo) -> anyhow::Result<bool> {
        let Some(caller) = &self.caller else {
            return Ok(false);
        };
        Ok(crate::repos::access_to(state, caller, repo)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            != Access::None)
    }

    /// [`Self::may_read`] for the repository of `delivery`; a deleted repository is judged
    /// by the namespace and visibility it had.
    pub async fn may_read_delivery(
        &self,
        state: &Context,
        delivery: &Delivery,
    ) -> anyhow::Result<bool> {
        if self.caller.is_none() {
            return Ok(false);
        }
        let repo = match delivery.repo_id {
            Some(id) => state.db.repo_by_id(id).await?,
            None => None,
        };
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
            inference_disabled: false,
        });
        self.may_read(state, &repo).await
    }
}
