//! The REST API, pages and health/metrics endpoints, as one axum `Router`.
//!
//! Request checks follow the contract's order: token (401), origin (403),
//! tenant policy (403), write rate (429), body size (413), body and parameters
//! (400), existence (404), ownership (403). Handlers parse bodies themselves so
//! that order holds.

pub mod chats;
pub mod error;
pub mod pages;
pub mod sessions;
pub mod tenant;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::Router;
use serde_json::{Map, Value};

use crate::app::App;
use crate::domain::{now_ms, validate, Actor, Tenant};
pub use error::AppError;

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/sessions", post(sessions::create))
        .route("/api/v1/chats", get(chats::snapshot).post(chats::create))
        .route(
            "/api/v1/chats/{chat_id}",
            patch(chats::update).delete(chats::remove),
        )
        .route("/api/v1/chats/{chat_id}/comments", post(chats::add_comment))
        .route(
            "/api/v1/chats/{chat_id}/comments/{comment_id}",
            patch(chats::edit_comment).delete(chats::delete_comment),
        )
        .route("/api/v1/events", get(chats::events))
        .route("/api/v1/ws", get(crate::ws::upgrade))
        .route("/api/v1/admin/tenants", post(tenant::create_tenant))
        .route("/api/v1/tenant/login", post(tenant::login))
        .route("/api/v1/tenant/logout", post(tenant::logout))
        .route("/api/v1/tenant/me", get(tenant::me))
        .route("/api/v1/tenant/usage", get(tenant::usage))
        .route("/api/v1/tenant/live", get(tenant::live))
        .route("/api/v1/tenant/images", get(tenant::images))
        .route("/api/v1/tenant/chats", get(tenant::chats))
        .route(
            "/api/v1/tenant/chats/{chat_id}",
            delete(tenant::delete_chat),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(pages::index))
        .route("/admin", get(pages::admin))
        .route("/imagechat.js", get(pages::widget))
        .route("/static/{name}", get(pages::asset))
        .fallback(|| async { AppError::NotFound("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            observe,
        ))
        .with_state(app)
}

/// Set by a handler once the request's origin is allowed for its tenant;
/// only then does the response carry `Access-Control-Allow-Origin`.
#[derive(Clone, Default)]
pub struct CorsGrant(Arc<AtomicBool>);

impl CorsGrant {
    pub fn allow(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// CORS and request metrics around every route.
async fn observe(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        // A preflight cannot name its tenant: allow the shape of the call and
        // let the real request be judged.
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        if let Some(o) = origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        app.metrics.http_request("preflight", 204);
        return res;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let grant = CorsGrant::default();
    req.extensions_mut().insert(grant.clone());
    let mut res = next.run(req).await;
    let status = res.status();
    if let Some(o) = origin {
        // A 401 carries CORS too, so the widget can read why and get a new token.
        if grant.0.load(Ordering::Relaxed) || status == StatusCode::UNAUTHORIZED {
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("retry-after"),
            );
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    app.metrics.http_request(&route, status.as_u16());
    res
}

/// A request made with a valid session token, from an allowed origin, by a
/// user the tenant lets read.
pub struct Authed {
    pub actor: Actor,
    pub tenant: Arc<Tenant>,
}

pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
    grant: &CorsGrant,
) -> Result<Authed, AppError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized("a session token is required"))?;
    let actor = app
        .token_key()
        .verify(token.trim(), now_ms())
        .ok_or(AppError::Unauthorized(
            "the session token is invalid or expired",
        ))?;
    let tenant = app
        .tenant(&actor.tenant_id)
        .await?
        .ok_or(AppError::Unauthorized("the session's tenant is unknown"))?;
    check_origin(&tenant, headers, grant)?;
    if !actor.can_read(&tenant) {
        return Err(AppError::Forbidden(
            "this tenant does not allow anonymous users",
        ));
    }
    Ok(Authed { actor, tenant })
}

/// `authenticate`, then write permission and the write rate: the start of
/// every mutation.
pub async fn authenticate_writer(
    app: &App,
    headers: &HeaderMap,
    grant: &CorsGrant,
) -> Result<Authed, AppError> {
    let a = authenticate(app, headers, grant).await?;
    a.may_write(app).await?;
    Ok(a)
}

pub fn check_origin(
    tenant: &Tenant,
    headers: &HeaderMap,
    grant: &CorsGrant,
) -> Result<(), AppError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !tenant.allows_origin(origin) {
        return Err(AppError::Forbidden("this origin may not use this tenant"));
    }
    grant.allow();
    Ok(())
}

impl Authed {
    /// Write permission, then the write rate. Every mutation request that
    /// gets this far counts against the rate, accepted or not. The bucket is
    /// shared by all nodes when the broker keeps one; if the broker cannot
    /// answer, this node's own bucket decides.
    pub async fn may_write(&self, app: &App) -> Result<(), AppError> {
        if !self.actor.can_write(&self.tenant) {
            return Err(AppError::Forbidden(
                "this tenant lets anonymous users read only",
            ));
        }
        let (per_minute, burst) = (app.config.write_rate_per_minute, app.config.write_burst);
        if per_minute == 0 {
            return Ok(());
        }
        let key = format!("{}\n{}", self.tenant.id, self.actor.user.id);
        let verdict = match app.broker.take_write(&key, per_minute, burst).await {
            Ok(Some(v)) => v,
            Ok(None) => app.limiter.check(&key),
            Err(e) => {
                app.metrics
                    .broker_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, "shared rate limit unavailable; using this node's");
                app.limiter.check(&key)
            }
        };
        verdict.map_err(|retry_after| AppError::RateLimited { retry_after })
    }
}

/// Reads a JSON object body of at most `MAX_BODY` bytes.
pub async fn json_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(AppError::TooLarge);
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| AppError::TooLarge)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AppError::invalid(None, "the body must be a JSON object")),
        Err(_) => Err(AppError::invalid(None, "the body is not valid JSON")),
    }
}

/// Typed access to body fields with errors that name the field. `null`
/// counts as absent.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    pub fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }
    pub fn str(&self, k: &'static str) -> Result<&str, AppError> {
        self.opt_str(k)?
            .ok_or_else(|| AppError::invalid(Some(k), format!("{k} is required")))
    }
    pub fn opt_str(&self, k: &'static str) -> Result<Option<&str>, AppError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AppError::invalid(Some(k), format!("{k} must be a string"))),
        }
    }
    pub fn coordinate(&self, k: &'static str) -> Result<f64, AppError> {
        match self.get(k) {
            None => Err(AppError::invalid(Some(k), format!("{k} is required"))),
            Some(Value::Number(n)) => Ok(validate::coordinate(k, n.as_f64().unwrap_or(f64::NAN))?),
            Some(_) => Err(AppError::invalid(Some(k), format!("{k} must be a number"))),
        }
    }
    pub fn opt_bool(&self, k: &'static str) -> Result<Option<bool>, AppError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(AppError::invalid(
                Some(k),
                format!("{k} must be true or false"),
            )),
        }
    }
    pub fn broadcast_id(&self) -> Result<Option<String>, AppError> {
        broadcast_id(self.opt_str("broadcastId")?)
    }
}

pub fn broadcast_id(raw: Option<&str>) -> Result<Option<String>, AppError> {
    match raw {
        None => Ok(None),
        Some(b) => {
            validate::broadcast_id(b)?;
            Ok(Some(b.to_owned()))
        }
    }
}

pub type QueryMap = HashMap<String, String>;

pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.into())
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let store = app.store.ping().await.is_ok();
    let broker = app.broker.ping().await.is_ok();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if store && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        serde_json::json!({"store": word(store), "broker": word(broker)}).to_string(),
    )
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut res = app.metrics.render(&app).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
