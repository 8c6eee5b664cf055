//! The REST edge's extractors. Their order in a handler's arguments is the
//! contract's order of judgement (§5), so it holds by construction:
//!
//! 1. [`Reader`] / [`Writer`]: the session (401), origin (403), tenant
//!    policy (403) and, for writers, write permission (403) and the write
//!    rate (429), all before the body is read;
//! 2. [`Json`]: the body's size (413) and fields (400 with `field`);
//! 3. [`Params`] and [`Ids`]: query and path parameters (400);
//! 4. then the handler: existence (404) and ownership (403).
//!
//! Every rejection is an [`AppError`], so every error has the contract's
//! JSON shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::CorsGrant;
use crate::app::session::{self, Session};
use crate::app::App;
use crate::domain::validate;
use crate::error::AppError;

/// Largest accepted request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The request's `Origin`, if any.
pub fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

fn grant(parts: &Parts) -> CorsGrant {
    parts
        .extensions
        .get::<CorsGrant>()
        .cloned()
        .unwrap_or_default()
}

/// A session that may read: see [`session::authenticate`].
pub struct Reader(pub Session);

impl FromRequestParts<Arc<App>> for Reader {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let grant = grant(parts);
        session::authenticate(app, bearer(&parts.headers), origin(&parts.headers), || {
            grant.allow()
        })
        .await
        .map(Reader)
    }
}

/// A session that may write, within its write rate.
pub struct Writer(pub Session);

impl FromRequestParts<Arc<App>> for Writer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let Reader(s) = Reader::from_request_parts(parts, app).await?;
        s.may_write(app).await?;
        Ok(Writer(s))
    }
}

/// A request type read from a JSON object body, field by field, so each
/// refusal names its field.
pub trait FromJson: Sized {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError>;
}

/// A JSON object body of at most [`MAX_BODY`] bytes, arriving within
/// `--body-timeout` seconds, read into `T`.
pub struct Json<T>(pub T);

impl<T: FromJson> FromRequest<Arc<App>> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, AppError> {
        let map = json_object(req, Duration::from_secs(app.config.body_timeout)).await?;
        T::from_json(&Fields(&map)).map(Json)
    }
}

/// Reads a JSON object body.
async fn json_object(req: Request, timeout: Duration) -> Result<Map<String, Value>, AppError> {
    match json_value(req, timeout, MAX_BODY).await? {
        Value::Object(m) => Ok(m),
        _ => Err(AppError::invalid(None, "the body must be a JSON object")),
    }
}

/// Reads a JSON body of at most `limit` bytes (413 beyond it).
async fn json_value(req: Request, timeout: Duration, limit: usize) -> Result<Value, AppError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::TooLarge);
    }
    let body = req.into_body();
    let bytes = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| AppError::BodyTimeout)?
        .map_err(|_| AppError::TooLarge)?;
    serde_json::from_slice::<Value>(&bytes)
        .map_err(|_| AppError::invalid(None, "the body is not valid JSON"))
}

/// Largest body of a bulk call (an annotation import), in bytes.
pub const MAX_BULK_BODY: usize = 4 * 1024 * 1024;

/// Any JSON body of at most [`MAX_BULK_BODY`] bytes, for bulk calls.
pub struct BulkJson(pub Value);

impl FromRequest<Arc<App>> for BulkJson {
    type Rejection = AppError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, AppError> {
        let timeout = Duration::from_secs(app.config.body_timeout);
        json_value(req, timeout, MAX_BULK_BODY).await.map(BulkJson)
    }
}

/// Typed access to body fields with errors that name the field. `null`
/// counts as absent; unknown fields are ignored.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    pub fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }
    pub fn str(&self, k: &'static str) -> Result<String, AppError> {
        self.opt_str(k)?
            .ok_or_else(|| AppError::invalid(Some(k), format!("{k} is required")))
    }
    pub fn opt_str(&self, k: &'static str) -> Result<Option<String>, AppError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
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
    /// Any JSON value of a field, decoded as `T`; `message` on failure.
    pub fn opt_value<T: DeserializeOwned>(
        &self,
        k: &'static str,
        message: &'static str,
    ) -> Result<Option<T>, AppError> {
        self.get(k)
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|_| AppError::invalid(Some(k), message))
            })
            .transpose()
    }
    /// The optional `broadcastId`, validated.
    pub fn broadcast_id(&self) -> Result<Option<String>, AppError> {
        broadcast_id(self.opt_str("broadcastId")?)
    }
}

pub fn broadcast_id(raw: Option<String>) -> Result<Option<String>, AppError> {
    if let Some(b) = &raw {
        validate::broadcast_id(b)?;
    }
    Ok(raw)
}

/// Decoded query parameters (percent-decoding, `+` as space).
pub type QueryMap = HashMap<String, String>;

/// A request type read from the query string.
pub trait FromQuery: Sized {
    fn from_query(q: &QueryMap) -> Result<Self, AppError>;
}

/// Query parameters read into `T`.
pub struct Params<T>(pub T);

impl<T: FromQuery, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Query(q) = Query::<QueryMap>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::invalid(None, "the query string is malformed"))?;
        T::from_query(&q).map(Params)
    }
}

/// Path parameters (ids), decoded; a bad encoding is a 400 in the
/// contract's shape.
pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Ids<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Ids(t))
            .map_err(|_| AppError::invalid(None, "the path is malformed"))
    }
}

/// The query parameter `k`, required.
pub fn required<'a>(q: &'a QueryMap, k: &'static str) -> Result<&'a str, AppError> {
    q.get(k)
        .map(String::as_str)
        .ok_or_else(|| AppError::invalid(Some(k), format!("{k} is required")))
}
