//! The REST API, pages and health/metrics endpoints, as one axum `Router`
//! whose OpenAPI document is built with it (`GET /api/v1/openapi.json`).
//!
//! Request checks follow the contract's order, by construction: see
//! [`extract`]. Errors are [`AppError`]s, answered in one JSON shape.

pub mod annotations;
pub mod chats;
pub mod error;
pub mod extract;
pub mod notify;
pub mod openapi;
pub mod pages;
pub mod sessions;
pub mod tenant;
pub mod uploads;
pub mod webhooks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::protocol::{Health, Readiness};
pub use error::AppError;
pub use extract::MAX_BODY;

/// Every route with its OpenAPI entry, and the document they make.
pub fn routes() -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(sessions::create))
        .routes(routes!(chats::snapshot, chats::create))
        .routes(routes!(chats::update, chats::remove))
        .routes(routes!(chats::add_comment))
        .routes(routes!(chats::edit_comment, chats::delete_comment))
        .routes(routes!(chats::events))
        .routes(routes!(annotations::export))
        .routes(routes!(annotations::one_chat))
        .routes(routes!(annotations::one_reply))
        .routes(routes!(annotations::import))
        .routes(routes!(notify::users))
        .routes(routes!(notify::follow, notify::unfollow, notify::following))
        .routes(routes!(notify::notifications))
        .routes(routes!(notify::read))
        .routes(routes!(notify::unsubscribe_page, notify::unsubscribe))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::events))
        .routes(routes!(uploads::create))
        .routes(routes!(uploads::get))
        .routes(routes!(crate::ws::upgrade))
        .routes(routes!(tenant::create_tenant))
        .routes(routes!(tenant::login))
        .routes(routes!(tenant::logout))
        .routes(routes!(tenant::me))
        .routes(routes!(tenant::usage))
        .routes(routes!(tenant::live))
        .routes(routes!(tenant::images))
        .routes(routes!(tenant::chats))
        .routes(routes!(tenant::delete_chat))
        .routes(routes!(tenant::delete_upload))
        .routes(routes!(openapi_json))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(pages::index))
        .routes(routes!(pages::admin))
        .routes(routes!(pages::share_new))
        .routes(routes!(pages::share))
        .routes(routes!(pages::widget))
        .routes(routes!(pages::widget_part))
        .routes(routes!(pages::asset))
        .split_for_parts()
}

/// The OpenAPI document, serialized once.
static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn router(app: Arc<App>) -> Router {
    let (router, doc) = routes();
    DOCUMENT.get_or_init(|| doc.to_json().unwrap_or_default());
    router
        .fallback(|| async { AppError::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
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

/// Largest request head (request line and headers) in bytes: far above
/// any real browser's; a larger one is answered 431 before anything else.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Whether a header value is shaped like a web origin
/// (`scheme://host[:port]`, at most 2048 bytes, or `null`): only such a
/// value is ever reflected in `Access-Control-Allow-Origin`.
fn is_origin(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    if b == b"null" {
        return true;
    }
    let Some(rest) = std::str::from_utf8(b)
        .ok()
        .filter(|s| s.len() <= 2048)
        .and_then(|s| s.split_once("://"))
    else {
        return false;
    };
    let (scheme, host) = rest;
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        && !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-.:[]".contains(&c))
}

/// CORS and request metrics around every route.
async fn observe(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let uri = req.uri();
    let head: usize = uri.path().len()
        + uri.query().map_or(0, str::len)
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if head > MAX_HEAD_BYTES {
        app.metrics
            .http_request("unmatched", 431, std::time::Duration::ZERO);
        return AppError::HeadTooLarge.into_response();
    }
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
        if let Some(o) = origin.filter(is_origin) {
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
        app.metrics
            .http_request("preflight", 204, std::time::Duration::ZERO);
        return res;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let grant = CorsGrant::default();
    req.extensions_mut().insert(grant.clone());
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let took = started.elapsed();
    let status = res.status();
    if let Some(o) = origin.filter(is_origin) {
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
    app.metrics.http_request(&route, status.as_u16(), took);
    res
}

/// A JSON answer of a typed body.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_string(body) {
        Ok(s) => json_response(status, s),
        Err(e) => {
            tracing::error!(error = %e, "an answer could not be serialized");
            AppError::Internal.into_response()
        }
    }
}

/// An image's snapshot answer, from the snapshot cache when it is current
/// (see `app::snapshots`): the same bytes either way.
pub async fn current_snapshot(
    app: &crate::app::App,
    tenant: &str,
    url_id: &str,
) -> Result<Response, AppError> {
    let image = crate::domain::ImageKey::new(tenant, url_id);
    let body = app
        .snapshots
        .get(app.store.as_ref(), &image, || async {
            let s = app.store.snapshot(&image).await?;
            let seq = s.seq;
            let body = serde_json::to_vec(&crate::protocol::SnapshotAnswer {
                url_id,
                epoch: app.store.epoch(),
                seq: s.seq,
                image_url: s.image_url,
                page_url: s.page_url,
                chats: s.chats,
            })
            .map_err(|e| crate::store::StoreError::Unavailable(e.to_string()))?;
            Ok((seq, bytes::Bytes::from(body)))
        })
        .await?;
    Ok(json_response(StatusCode::OK, body))
}

/// A JSON answer already serialized.
pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut res = (status, body.into()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"),
        (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
async fn openapi_json() -> Response {
    json_response(StatusCode::OK, DOCUMENT.get().cloned().unwrap_or_default())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "node",
    responses((status = 200, body = Health), (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
async fn healthz() -> Response {
    json(StatusCode::OK, &Health { status: "ok" })
}

/// Readiness: storage and broker answer (after a failed write, storage must
/// take a write again). Take the node out of rotation on 503.
#[utoipa::path(get, path = "/readyz", tag = "node",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    let store = app.store.ping().await.is_ok();
    let broker = app.broker.ping().await.is_ok();
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        app.uploads.storage.ping(),
    );
    let uploads = match probe.await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the upload storage refuses writes");
            false
        }
        Err(_) => {
            tracing::warn!("the upload storage did not answer within 2 s");
            false
        }
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if store && broker && uploads {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &Readiness {
            store: word(store),
            broker: word(broker),
            uploads: word(uploads),
        },
    )
}

/// Prometheus metrics, text exposition format 0.0.4. With `--metrics-listen`
/// they are served only on that address, and this path answers 404.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 404, body = crate::protocol::ErrorBody, description = "served on `--metrics-listen` instead"),
        (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    if app.config.metrics_listen.is_some() {
        return AppError::NotFound("no such route").into_response();
    }
    metrics_text(&app)
}

/// The metrics router of `--metrics-listen`: `/metrics` (any path) and
/// nothing else, for a private address.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new().fallback(move || {
        let app = Arc::clone(&app);
        async move { metrics_text(&app) }
    })
}

fn metrics_text(app: &App) -> Response {
    let mut res = app.metrics.render(app).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
