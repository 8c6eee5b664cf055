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
use crate::app::limits::{self, ClientKey, Peer};
use crate::app::session::{self, Session};
use crate::app::App;
use crate::domain::validate;
use crate::error::AppError;

/// Largest accepted request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    credentials(headers, "Bearer")
}

/// The credentials of an `Authorization: <scheme> <credentials>` header.
/// The scheme is matched without regard to case (RFC 9110 §11.1).
pub fn credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = v.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
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

/// A session that may write, within its write rates (per user, and per
/// client address for anonymous users).
pub struct Writer(pub Session);

impl FromRequestParts<Arc<App>> for Writer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let Reader(s) = Reader::from_request_parts(parts, app).await?;
        s.may_write(app, client_key(parts, app)).await?;
        Ok(Writer(s))
    }
}

/// The client's address as the per-address limits know it (see
/// [`limits::client_address`]); never refuses.
pub struct Client(pub ClientKey);

impl FromRequestParts<Arc<App>> for Client {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        Ok(Client(client_key(parts, app)))
    }
}

fn client_key(parts: &Parts, app: &App) -> ClientKey {
    limits::client_key(
        parts.extensions.get::<Peer>(),
        forwarded_for(&parts.headers),
        app.config.trusted_proxies,
    )
}

/// The `X-Forwarded-For` values of a request, in order.
fn forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
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

/// The body length a request declares (`Content-Length`), if readable.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// A request body of at most `limit` bytes, arriving within `timeout`:
/// `too_large` (a 413) when its declared `Content-Length` or what arrives
/// is larger, `408` when it is late. The one body reader of the API.
pub async fn read_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
    timeout: Duration,
    too_large: impl Fn() -> AppError,
) -> Result<bytes::Bytes, AppError> {
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| AppError::BodyTimeout)?
        .map_err(|_| too_large())
}

/// Reads a JSON body of at most `limit` bytes (413 beyond it).
async fn json_value(req: Request, timeout: Duration, limit: usize) -> Result<Value, AppError> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(&parts.headers, body, limit, timeout, || AppError::TooLarge).await?;
    serde_json::from_slice::<Value>(&bytes).map_err(|e| {
        // A number too large for a double is valid JSON that serde_json
        // refuses: answer it as the field it was given for (contract §5).
        match overflowing_field(&bytes, &e) {
            Some(field) => AppError::invalid(
                Some(field),
                format!("{field} holds a number too large to be used"),
            ),
            None => AppError::invalid(None, "the body is not valid JSON"),
        }
    })
}

/// Top-level fields a body may hold numbers in (directly or nested).
const NUMERIC_FIELDS: &[&str] = &["x", "y", "shape", "timestamp", "width", "height"];

/// When `e` is serde_json's "number out of range", the top-level field of
/// the object whose value holds that number, if it is one of
/// [`NUMERIC_FIELDS`].
fn overflowing_field(bytes: &[u8], e: &serde_json::Error) -> Option<&'static str> {
    if !e.is_syntax() || !e.to_string().starts_with("number out of range") {
        return None;
    }
    // serde_json counts lines from 1 and columns in bytes from 1.
    let line_start = if e.line() <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(e.line().checked_sub(2)?)?
            .0
            .checked_add(1)?
    };
    let at = line_start.checked_add(e.column())?.min(bytes.len());
    top_level_key(bytes.get(..at)?).and_then(|k| NUMERIC_FIELDS.iter().copied().find(|f| *f == k))
}

/// The key of the top-level object member being read where `prefix` ends.
fn top_level_key(prefix: &[u8]) -> Option<String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut start, mut last_string, mut key) = (0usize, None, None);
    for (i, &b) in prefix.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    last_string = prefix.get(start..i);
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                start = i + 1;
            }
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 => key = last_string,
            _ => {}
        }
    }
    key.and_then(|k| serde_json::from_slice::<String>(&[b"\"", k, b"\""].concat()).ok())
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
    /// The optional `attachments`: at most 4 distinct upload ids
    /// (contract §14). Whether they name the tenant's uploads is the
    /// store's check, inside the write.
    pub fn attachments(&self) -> Result<Option<Vec<String>>, AppError> {
        const K: &str = "attachments";
        let Some(v) = self.get(K) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(AppError::invalid(
                Some(K),
                "attachments must be an array of upload ids",
            ));
        };
        if items.len() > validate::MAX_ATTACHMENTS {
            return Err(AppError::invalid(
                Some(K),
                format!(
                    "at most {} attachments per comment",
                    validate::MAX_ATTACHMENTS
                ),
            ));
        }
        let mut ids: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let id = match item {
                Value::String(s) if crate::upload::is_upload_id(s) => s.clone(),
                _ => {
                    return Err(AppError::invalid(
                        Some(K),
                        "attachments must hold upload ids from POST /api/v1/uploads",
                    ))
                }
            };
            if ids.contains(&id) {
                return Err(AppError::invalid(
                    Some(K),
                    format!("attachments names {id} twice"),
                ));
            }
            ids.push(id);
        }
        Ok(Some(ids))
    }
    /// The optional `mentions`: user ids, at most
    /// [`validate::MAX_MENTIONS`], repeats dropped (contract §13). Whether
    /// each is in the directory is the store's to judge.
    ///
    /// Errors: `invalid_input` on `mentions` for anything but an array of
    /// user ids, too many, or an anonymous user's id.
    pub fn mentions(&self) -> Result<Option<Vec<String>>, AppError> {
        const K: &str = "mentions";
        let Some(v) = self.get(K) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(AppError::invalid(
                Some(K),
                "mentions must be an array of user ids",
            ));
        };
        let mut ids: Vec<String> = Vec::new();
        for item in items {
            let Value::String(id) = item else {
                return Err(AppError::invalid(
                    Some(K),
                    "mentions must be an array of user ids",
                ));
            };
            if id.is_empty() || id.len() > 256 || id.starts_with("anon:") {
                return Err(AppError::invalid(
                    Some(K),
                    "mentions names a user who is not in this site's directory",
                ));
            }
            if !ids.contains(id) {
                if ids.len() == validate::MAX_MENTIONS {
                    return Err(AppError::invalid(
                        Some(K),
                        format!("at most {} users per comment", validate::MAX_MENTIONS),
                    ));
                }
                ids.push(id.clone());
            }
        }
        Ok(Some(ids))
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
        // No id holds a refused character (a NUL, for one, PostgreSQL cannot
        // even compare): such a path names nothing, whatever the store.
        let decoded = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy();
        if decoded.chars().any(|c| validate::refused(c, false)) {
            return Err(AppError::NotFound("no such resource"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> Option<&'static str> {
        let e = serde_json::from_slice::<Value>(body.as_bytes()).expect_err(body);
        overflowing_field(body.as_bytes(), &e)
    }

    #[test]
    fn an_overflowing_number_is_blamed_on_the_top_level_field_holding_it() {
        assert_eq!(
            field_of(r#"{"urlId":"a:{\"x\"","x": 1e309,"y":1}"#),
            Some("x")
        );
        assert_eq!(field_of("{\"text\":\"a\",\n \"y\":\n -1e999}"), Some("y"));
        assert_eq!(
            field_of(r#"{"shape":{"type":"polygon","points":[[1,2],[3,1e400]]}}"#),
            Some("shape")
        );
        // Not a field that holds numbers, or not an overflow: no field.
        assert_eq!(field_of(r#"{"text": 1e999}"#), None);
        assert_eq!(field_of(r#"{"x": 1e9,"#), None);
        assert_eq!(field_of(r#"[1e999]"#), None);
    }
}
