//! A tenant's webhook endpoints and its event log (contract §12).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::chats::{events_answer, EventsQuery, ImageQuery, Position};
use super::extract::{Fields, FromJson, Ids, Json, Params};
use super::openapi::{TenantErrors, TenantEventsErrors, TenantWriteErrors};
use super::tenant::TenantCaller;
use super::{json, AppError};
use crate::app::App;
use crate::domain::now_ms;
use crate::protocol::{
    DeliveryInfo, DeliveryList, WebhookCreated, WebhookInfo, WebhookList, WebhookRequest,
};
use crate::store::{Attempt, Webhook};
use crate::webhook::{self, guard, EVENT_TYPES, MAX_PER_TENANT};

impl FromJson for WebhookRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        let url = f.str("url")?;
        let events = match f.get("events") {
            None => None,
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out: Vec<String> = Vec::with_capacity(items.len());
                for v in items {
                    match v.as_str() {
                        Some(t) if EVENT_TYPES.contains(&t) => {
                            if !out.iter().any(|o| o == t) {
                                out.push(t.to_owned());
                            }
                        }
                        _ => {
                            return Err(AppError::invalid(
                                Some("events"),
                                format!("events holds event types: {}", EVENT_TYPES.join(", ")),
                            ))
                        }
                    }
                }
                Some(out)
            }
            Some(_) => {
                return Err(AppError::invalid(
                    Some("events"),
                    "events must be a non-empty list of event types",
                ))
            }
        };
        Ok(WebhookRequest { url, events })
    }
}

fn info(w: Webhook) -> WebhookInfo {
    WebhookInfo {
        id: w.id,
        url: w.url,
        events: w.events,
        created_at: w.created_at,
    }
}

/// Adds an endpoint; its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/tenant/webhooks", tag = "tenant",
    request_body = WebhookRequest, security(("tenant" = []), ("dashboard" = [])),
    responses((status = 201, body = WebhookCreated), TenantWriteErrors))]
pub async fn create(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Json(r): Json<WebhookRequest>,
) -> Result<Response, AppError> {
    // Kept as the URL parser writes it, the form it is requested in.
    let url = guard::check_url(&r.url, app.config.webhook_allow_private)
        .map_err(|e| AppError::invalid(Some("url"), e.to_string()))?
        .to_string();
    let w = Webhook {
        id: format!("wh_{}", crate::domain::random_id(12)),
        tenant_id: t.id.to_string(),
        url,
        events: r
            .events
            .unwrap_or_else(|| EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect()),
        secret: webhook::new_secret(),
        created_at: now_ms(),
    };
    app.store
        .create_webhook(&w, MAX_PER_TENANT)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => {
                AppError::Conflict("a site has at most 10 webhook endpoints")
            }
            e => e.into(),
        })?;
    Ok(json(
        StatusCode::CREATED,
        &WebhookCreated {
            id: w.id,
            url: w.url,
            events: w.events,
            secret: w.secret,
        },
    ))
}

/// The tenant's endpoints, oldest first, without their secrets.
#[utoipa::path(get, path = "/api/v1/tenant/webhooks", tag = "tenant",
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = WebhookList), TenantErrors))]
pub async fn list(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
) -> Result<Response, AppError> {
    let webhooks = app.store.webhooks(&t.id).await?;
    Ok(json(
        StatusCode::OK,
        &WebhookList {
            webhooks: webhooks.into_iter().map(info).collect(),
        },
    ))
}

async fn find(app: &App, tenant: &str, id: &str) -> Result<Webhook, AppError> {
    app.store
        .webhooks(tenant)
        .await?
        .into_iter()
        .find(|w| w.id == id)
        .ok_or(AppError::NotFound("no such webhook"))
}

/// Deletes an endpoint and what was still to be delivered to it.
#[utoipa::path(delete, path = "/api/v1/tenant/webhooks/{webhookId}", tag = "tenant",
    params(("webhookId" = String, Path)), security(("tenant" = []), ("dashboard" = [])),
    responses((status = 204, description = "deleted"), TenantErrors))]
pub async fn delete(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Ids(id): Ids<String>,
) -> Result<Response, AppError> {
    if !app.store.delete_webhook(&t.id, &id).await? {
        return Err(AppError::NotFound("no such webhook"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn delivery(a: Attempt) -> DeliveryInfo {
    DeliveryInfo {
        at: a.at,
        webhook_id: a.msg_id,
        status: a.status,
        error: a.error,
        duration_ms: a.duration_ms,
    }
}

/// The endpoint's latest 100 attempts, newest first.
#[utoipa::path(get, path = "/api/v1/tenant/webhooks/{webhookId}/deliveries", tag = "tenant",
    params(("webhookId" = String, Path)), security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = DeliveryList), TenantErrors))]
pub async fn deliveries(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Ids(id): Ids<String>,
) -> Result<Response, AppError> {
    let w = find(&app, &t.id, &id).await?;
    let attempts = app.store.attempts(&w.id, webhook::KEPT_ATTEMPTS).await?;
    Ok(json(
        StatusCode::OK,
        &DeliveryList {
            deliveries: attempts.into_iter().map(delivery).collect(),
        },
    ))
}

/// Sends the endpoint one signed `ping` message now (no retries) and
/// answers how it went; the attempt is listed with the others.
#[utoipa::path(post, path = "/api/v1/tenant/webhooks/{webhookId}/test", tag = "tenant",
    params(("webhookId" = String, Path)), security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = DeliveryInfo), TenantErrors))]
pub async fn test(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Ids(id): Ids<String>,
) -> Result<Response, AppError> {
    let w = find(&app, &t.id, &id).await?;
    let allow_private = app.config.webhook_allow_private;
    let client = webhook::client(allow_private).map_err(|_| AppError::Internal)?;
    let msg_id = webhook::message_id();
    let body = serde_json::json!({
        "type": "ping",
        "timestamp": crate::annotation::export::iso(now_ms()),
        "data": {"tenantId": t.id.as_str(), "webhookId": w.id},
    })
    .to_string();
    let a = webhook::attempt(&client, allow_private, &w, &msg_id, &body).await;
    app.metrics.webhook_attempt(webhook::succeeded(&a));
    app.store.record_attempt(&w.id, &a).await?;
    Ok(json(StatusCode::OK, &delivery(a)))
}

/// The logged events of one of the tenant's images after a position: the
/// answer of `GET /api/v1/events`, with tenant credentials, so a webhook
/// receiver can fill a gap.
#[utoipa::path(get, path = "/api/v1/tenant/events", tag = "tenant",
    params(ImageQuery, EventsQuery), security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = crate::protocol::EventsAnswer), TenantEventsErrors))]
pub async fn events(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Params(p): Params<Position>,
) -> Result<Response, AppError> {
    events_answer(&app, &t.id, &p).await
}
