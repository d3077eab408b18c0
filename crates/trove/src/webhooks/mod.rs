//! Webhooks: a user's subscriptions to what happens to repositories — watched one by one or
//! through the user or organization that owns them — for the `repo` domain (created,
//! deleted, moved, settings, content: commits, pushes, branches and tags) and the
//! `discussion` domain (discussions and pull requests opened, changed, commented).
//!
//! [`events`] turns what the use cases report into queued deliveries; [`delivery`] sends
//! them. This module holds the rules of managing webhooks: each belongs to the user who
//! created it, is seen and changed by that user only, and is validated here (target URL,
//! watched items, domains, secret) before anything is written. [`target`] says which
//! addresses deliveries may go to.

pub mod delivery;
pub mod events;
pub mod target;

pub use events::queue;

use crate::auth::{Access, Caller};
use crate::clock::now_ms;
use crate::context::Context;
use crate::error::{ApiError, ApiResult};
use target::TargetPolicy;
use trove_db::{Delivery, User, Watched, Webhook, WebhookSpec};
use trove_types::RepoName;

/// The most webhooks a user may have.
pub const MAX_WEBHOOKS_PER_USER: usize = 100;
/// The most items one webhook watches.
pub const MAX_WATCHED: usize = 100;
/// The longest target URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest secret, in bytes.
pub const MAX_SECRET_BYTES: usize = 256;
/// The domains a webhook may watch.
pub const DOMAINS: &[&str] = &["repo", "discussion"];

/// A webhook's settings as the client sends them, unvalidated.
#[derive(Clone, Debug, Default)]
pub struct WebhookInput {
    pub url: Option<String>,
    pub job_source_id: Option<String>,
    pub watched: Vec<(String, String)>,
    pub domains: Option<Vec<String>>,
    pub secret: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::NotFound("Webhook not found".into())
}

/// The signed-in caller, who must be able to write (a read token may only look).
fn manager(caller: &Caller) -> ApiResult<&User> {
    let user = caller.require_user()?;
    if Access::in_namespace(caller, &user.name) < Access::Write {
        return Err(ApiError::Forbidden(
            "Managing webhooks needs a token with write access".into(),
        ));
    }
    Ok(user)
}

/// The caller's webhook with this id (another user's is missing, as a missing one is).
async fn own(state: &Context, user: &User, id: &str) -> ApiResult<Webhook> {
    state
        .db
        .webhook_by_object_id(&id.to_ascii_lowercase())
        .await?
        .filter(|w| w.owner_user_id == user.id)
        .ok_or_else(not_found)
}

/// Validates a target URL: absolute `http` or `https` with a host, as the Hub requires, and
/// not a literal address or `localhost` name the target policy refuses (other names are
/// judged by the addresses they resolve to, at each delivery).
pub fn validate_url(url: &str, policy: &TargetPolicy) -> ApiResult<String> {
    let bad = |why: &str| ApiError::bad_request(format!("Invalid webhook URL: {why}"));
    if url.len() > MAX_URL_BYTES {
        return Err(bad(&format!("at most {MAX_URL_BYTES} bytes")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https URLs are accepted"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL needs a host"));
    }
    policy.check_url(&parsed).map_err(|refused| {
        ApiError::WebhookTargetNotAllowed(format!("Invalid webhook URL: {refused}"))
    })?;
    Ok(parsed.to_string())
}

fn validate_watched(watched: &[(String, String)]) -> ApiResult<Vec<Watched>> {
    if watched.is_empty() {
        return Err(ApiError::bad_request(
            "A webhook must watch at least one item",
        ));
    }
    if watched.len() > MAX_WATCHED {
        return Err(ApiError::bad_request(format!(
            "A webhook watches at most {MAX_WATCHED} items"
        )));
    }
    watched
        .iter()
        .map(|(kind, name)| {
            let bad = || ApiError::bad_request(format!("Invalid watched {kind} name {name:?}"));
            match kind.as_str() {
                "model" | "dataset" | "space" => {
                    let (ns, repo) = name.split_once('/').ok_or_else(bad)?;
                    RepoName::parse(ns).map_err(|_| bad())?;
                    RepoName::parse(repo).map_err(|_| bad())?;
                }
                "user" | "org" => {
                    RepoName::parse(name).map_err(|_| bad())?;
                }
                "bucket" => {
                    return Err(ApiError::bad_request(
                        "Buckets are not supported by this hub",
                    ));
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid watched type {other:?}: expected model, dataset, space, user or org"
                    )));
                }
            }
            Ok(Watched {
                kind: kind.clone(),
                name: name.clone(),
            })
        })
        .collect()
}

fn validate_domains(domains: Option<&[String]>) -> ApiResult<Vec<String>> {
    let Some(domains) = domains else {
        return Ok(DOMAINS.iter().map(|d| (*d).to_owned()).collect());
    };
    if domains.is_empty() {
        return Err(ApiError::bad_request(
            "A webhook needs at least one domain: repo, discussion",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for d in domains {
        if !DOMAINS.contains(&d.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Invalid domain {d:?}: expected repo or discussion"
            )));
        }
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    Ok(out)
}

fn validate_secret(secret: Option<&str>) -> ApiResult<Option<String>> {
    let Some(secret) = secret else {
        return Ok(None);
    };
    if secret.len() > MAX_SECRET_BYTES {
        return Err(ApiError::bad_request(format!(
            "A webhook secret is at most {MAX_SECRET_BYTES} bytes"
        )));
    }
    // It travels as a header value.
    if !secret.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::bad_request("A webhook secret is printable ASCII"));
    }
    Ok(Some(secret.to_owned()))
}

fn spec(
    input: &WebhookInput,
    current: Option<&Webhook>,
    policy: &TargetPolicy,
) -> ApiResult<WebhookSpec> {
    if input.job_source_id.is_some() {
        return Err(ApiError::bad_request(
            "Webhooks that trigger Jobs are not supported by this hub: give a url",
        ));
    }
    let url = match (&input.url, current) {
        (Some(url), _) => validate_url(url, policy)?,
        (None, Some(current)) => current.url.clone(),
        (None, None) => return Err(ApiError::bad_request("A webhook needs a url")),
    };
    let domains = match (&input.domains, current) {
        (None, Some(current)) => current.domains.clone(),
        (domains, _) => validate_domains(domains.as_deref())?,
    };
    Ok(WebhookSpec {
        url,
        secret: validate_secret(input.secret.as_deref())?,
        domains,
        watched: validate_watched(&input.watched)?,
    })
}

pub async fn list(state: &Context, caller: &Caller) -> ApiResult<Vec<Webhook>> {
    let user = caller.require_user()?;
    Ok(state.db.webhooks_of(user.id).await?)
}

pub async fn get(state: &Context, caller: &Caller, id: &str) -> ApiResult<Webhook> {
    let user = caller.require_user()?;
    own(state, user, id).await
}

pub async fn create(state: &Context, caller: &Caller, input: WebhookInput) -> ApiResult<Webhook> {
    let user = manager(caller)?;
    let spec = spec(
        &input,
        None,
        &TargetPolicy::from_config(&state.config.webhooks),
    )?;
    if state.db.webhooks_of(user.id).await?.len() >= MAX_WEBHOOKS_PER_USER {
        return Err(ApiError::bad_request(format!(
            "A user may have at most {MAX_WEBHOOKS_PER_USER} webhooks"
        )));
    }
    let object_id = hex::encode(rand::random::<[u8; 12]>());
    let webhook = state
        .db
        .create_webhook(&object_id, user.id, &spec, now_ms())
        .await?;
    tracing::info!(webhook.id = %webhook.object_id, user.id = user.id, "webhook created");
    Ok(webhook)
}

pub async fn update(
    state: &Context,
    caller: &Caller,
    id: &str,
    input: WebhookInput,
) -> ApiResult<Webhook> {
    let user = manager(caller)?;
    let current = own(state, user, id).await?;
    let spec = spec(
        &input,
        Some(&current),
        &TargetPolicy::from_config(&state.config.webhooks),
    )?;
    Ok(state.db.update_webhook(current.id, &spec, now_ms()).await?)
}

pub async fn set_disabled(
    state: &Context,
    caller: &Caller,
    id: &str,
    disabled: bool,
) -> ApiResult<Webhook> {
    let user = manager(caller)?;
    let current = own(state, user, id).await?;
    state
        .db
        .set_webhook_disabled(current.id, disabled, now_ms())
        .await?;
    own(state, user, id).await
}

pub async fn delete(state: &Context, caller: &Caller, id: &str) -> ApiResult<()> {
    let user = manager(caller)?;
    let current = own(state, user, id).await?;
    state.db.delete_webhook(current.id).await?;
    tracing::info!(webhook.id = %current.object_id, "webhook deleted");
    Ok(())
}

/// The webhook's delivery log, newest first.
pub async fn deliveries(state: &Context, caller: &Caller, id: &str) -> ApiResult<Vec<Delivery>> {
    let user = caller.require_user()?;
    let webhook = own(state, user, id).await?;
    let log = state
        .db
        .webhook_deliveries(webhook.id, delivery::LOG_KEPT)
        .await?;
    // Deliveries queued before the repository left the owner's sight (made private, the
    // owner removed from its organization) are not shown; the worker drops them.
    let owner = delivery::OwnerView::load(state, user.id)
        .await
        .map_err(ApiError::internal)?;
    let mut shown = Vec::with_capacity(log.len());
    for d in log {
        if owner
            .may_read_delivery(state, &d)
            .await
            .map_err(ApiError::internal)?
        {
            shown.push(d);
        }
    }
    Ok(shown)
}
