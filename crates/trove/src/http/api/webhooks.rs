//! Webhooks (E56): `GET|POST /api/settings/webhooks`, `GET|POST|DELETE
//! /api/settings/webhooks/{id}`, `POST …/{id}/enable|disable`, in the JSON the client parses
//! into `WebhookInfo`; and `GET …/{id}/deliveries`, the delivery log (Trove's own).

use super::Empty;
use crate::auth::Caller;
use crate::clock::format_ms;
use crate::error::ApiResult;
use crate::http::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::webhooks::{self, WebhookInput};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use trove_db::{Delivery, Webhook};

#[derive(Serialize, Deserialize)]
pub struct WatchedJson {
    #[serde(rename = "type")]
    kind: String,
    name: String,
}

#[derive(Serialize)]
pub struct WebhookJson {
    id: String,
    url: String,
    watched: Vec<WatchedJson>,
    domains: Vec<String>,
    disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<Webhook> for WebhookJson {
    fn from(w: Webhook) -> Self {
        WebhookJson {
            id: w.object_id,
            url: w.url,
            watched: w
                .watched
                .into_iter()
                .map(|x| WatchedJson {
                    kind: x.kind,
                    name: x.name,
                })
                .collect(),
            domains: w.domains,
            disabled: w.disabled,
            secret: w.secret,
        }
    }
}

/// `{"webhook": …}`, the envelope of every single-webhook answer.
#[derive(Serialize)]
pub struct Envelope {
    webhook: WebhookJson,
}

fn envelope(w: Webhook) -> Json<Envelope> {
    Json(Envelope { webhook: w.into() })
}

#[derive(Deserialize)]
pub struct IdParam {
    id: String,
}

#[derive(Deserialize)]
pub struct Body {
    #[serde(default)]
    watched: Vec<WatchedJson>,
    url: Option<String>,
    #[serde(rename = "jobSourceId")]
    job_source_id: Option<String>,
    domains: Option<Vec<String>>,
    secret: Option<String>,
}

impl From<Body> for WebhookInput {
    fn from(b: Body) -> Self {
        WebhookInput {
            url: b.url,
            job_source_id: b.job_source_id,
            watched: b.watched.into_iter().map(|w| (w.kind, w.name)).collect(),
            domains: b.domains,
            secret: b.secret,
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<WebhookJson>>> {
    let hooks = webhooks::list(&state, &caller).await?;
    Ok(Json(hooks.into_iter().map(Into::into).collect()))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(IdParam { id }): ApiPath<IdParam>,
) -> ApiResult<Json<Envelope>> {
    Ok(envelope(webhooks::get(&state, &caller, &id).await?))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Body>,
) -> ApiResult<Json<Envelope>> {
    Ok(envelope(
        webhooks::create(&state, &caller, body.into()).await?,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(IdParam { id }): ApiPath<IdParam>,
    ApiJson(body): ApiJson<Body>,
) -> ApiResult<Json<Envelope>> {
    Ok(envelope(
        webhooks::update(&state, &caller, &id, body.into()).await?,
    ))
}

pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(IdParam { id }): ApiPath<IdParam>,
) -> ApiResult<Json<Envelope>> {
    Ok(envelope(
        webhooks::set_disabled(&state, &caller, &id, false).await?,
    ))
}

pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(IdParam { id }): ApiPath<IdParam>,
) -> ApiResult<Json<Envelope>> {
    Ok(envelope(
        webhooks::set_disabled(&state, &caller, &id, true).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(IdParam { id }): ApiPath<IdParam>,
) -> ApiResult<Json<Empty>> {
    webhooks::delete(&state, &caller, &id).await?;
    Ok(Json(Empty {}))
}

/// One entry of the delivery log.
#[derive(Serialize)]
pub struct DeliveryJson {
    id: i64,
    event: String,
    /// `pending`, `delivered`, `failed` or `skipped`.
    state: String,
    attempts: i64,
    /// The receiver's last HTTP status, if it answered.
    status: Option<i64>,
    #[serde(rename = "durationMs")]
    duration_ms: Option<i64>,
    error: Option<String>,
    #[serde(rename = "createdAt")]
    created_at: String,
    #[serde(rename = "updatedAt")]
    updated_at: String,
    payload: serde_json::Value,
}

impl From<Delivery> for DeliveryJson {
    fn from(d: Delivery) -> Self {
        DeliveryJson {
            id: d.id,
            event: d.event,
            state: d.state,
            attempts: d.attempts,
            status: d.last_status,
            duration_ms: d.last_duration_ms,
            error: d.last_error,
            created_at: format_ms(d.created_at_ms),
            updated_at: format_ms(d.updated_at_ms),
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(IdParam { id }): ApiPath<IdParam>,
) -> ApiResult<Json<Vec<DeliveryJson>>> {
    let log = webhooks::deliveries(&state, &caller, &id).await?;
    Ok(Json(log.into_iter().map(Into::into).collect()))
}
