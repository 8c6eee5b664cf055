//! The operator call (creating tenants) and the tenant's own API: usage,
//! moderation and what the dashboard shows. Tenant calls take HTTP Basic
//! `tenantId:secret` or the dashboard's signed session cookie.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use super::{json_object, json_response, AppError, Fields, QueryMap};
use crate::app::App;
use crate::domain::auth::{constant_time_eq, sign_value, verify_value};
use crate::domain::chat::Authority;
use crate::domain::{now_ms, random_id, validate, AnonymousPolicy, Mutation, Tenant};
use crate::protocol::UsageDay;
use crate::store::UsageCounts;
use crate::usage::{format_day, parse_day};

const COOKIE: &str = "imagechat_tenant";
const COOKIE_PURPOSE: &str = "tenant-dashboard";
const COOKIE_HOURS: i64 = 12;
/// Longest usage range one call may ask for.
const MAX_USAGE_DAYS: i64 = 366;
const MAX_SECRET_CHARS: usize = 256;
const MAX_ORIGINS: usize = 100;

pub async fn create_tenant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let Some(key) = &app.config.admin_key else {
        return Err(AppError::NotFound("no such route"));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.trim().as_bytes(), key.as_bytes()) {
        return Err(AppError::Unauthorized("wrong operator key"));
    }
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let id = f.str("tenantId")?;
    validate::tenant_id(id)?;
    let anonymous = match f.opt_str("anonymous")? {
        None => AnonymousPolicy::None,
        Some(a) => AnonymousPolicy::parse(a).ok_or_else(|| {
            AppError::invalid(Some("anonymous"), "anonymous must be none, read or write")
        })?,
    };
    let origins = match obj.get("origins") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_ORIGINS => list
            .iter()
            .map(|o| {
                o.as_str()
                    .filter(|s| !s.is_empty() && s.len() <= 2048)
                    .map(str::to_owned)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                AppError::invalid(Some("origins"), "origins must be a list of origin strings")
            })?,
        Some(_) => {
            return Err(AppError::invalid(
                Some("origins"),
                format!("origins must be a list of at most {MAX_ORIGINS} strings"),
            ))
        }
    };
    let secret = match f.opt_str("secret")? {
        Some(s) if !s.is_empty() && s.chars().count() <= MAX_SECRET_CHARS => s.to_owned(),
        Some(_) => {
            return Err(AppError::invalid(
                Some("secret"),
                format!("secret must be 1..={MAX_SECRET_CHARS} characters"),
            ))
        }
        None => random_id(24),
    };
    let tenant = Tenant {
        id: id.to_owned(),
        secret,
        origins,
        anonymous,
    };
    app.store
        .create_tenant(&tenant)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => AppError::Conflict("that tenant exists"),
            other => other.into(),
        })?;
    let body = json!({"tenantId": tenant.id, "secret": tenant.secret});
    app.tenants.put(tenant);
    Ok(json_response(StatusCode::CREATED, body.to_string()))
}

/// The tenant a tenant call is made for.
async fn tenant_auth(app: &App, headers: &HeaderMap) -> Result<Arc<Tenant>, AppError> {
    const REFUSED: AppError = AppError::Unauthorized("tenant credentials are required");
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    if let Some(b64) = basic {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| REFUSED)?;
        let raw = String::from_utf8(raw).map_err(|_| REFUSED)?;
        let (id, secret) = raw.split_once(':').ok_or(REFUSED)?;
        let t = app.tenant(id).await?.ok_or(REFUSED)?;
        return if t.secret_matches(secret) {
            Ok(t)
        } else {
            Err(REFUSED)
        };
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
        })
        .ok_or(REFUSED)?;
    let value = verify_value(app.token_key(), COOKIE_PURPOSE, cookie).ok_or(REFUSED)?;
    let (id, expires) = value.split_once('\n').ok_or(REFUSED)?;
    if expires.parse::<i64>().map_err(|_| REFUSED)? <= now_ms() {
        return Err(REFUSED);
    }
    app.tenant(id).await?.ok_or(REFUSED)
}

fn cookie_header(app: &App, value: &str, max_age: i64) -> Result<HeaderValue, AppError> {
    let secure = if app.config.tls_cert.is_some() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .map_err(|_| AppError::Internal)
}

pub async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let (id, secret) = (f.str("tenantId")?, f.str("secret")?);
    let tenant = app
        .tenant(id)
        .await?
        .filter(|t| t.secret_matches(secret))
        .ok_or(AppError::Unauthorized("wrong tenant id or secret"))?;
    let expires = now_ms() + COOKIE_HOURS * 3_600_000;
    let signed = sign_value(
        app.token_key(),
        COOKIE_PURPOSE,
        &format!("{}\n{expires}", tenant.id),
    );
    let mut res = json_response(StatusCode::OK, json!({"tenantId": tenant.id}).to_string());
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie_header(&app, &signed, COOKIE_HOURS * 3600)?,
    );
    Ok(res)
}

pub async fn logout(State(app): State<Arc<App>>) -> Result<Response, AppError> {
    let mut res = json_response(StatusCode::OK, "{}".into());
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie_header(&app, "", 0)?);
    Ok(res)
}

pub async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, AppError> {
    let t = tenant_auth(&app, &headers).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"tenantId": t.id}).to_string(),
    ))
}

pub async fn usage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<QueryMap>, QueryRejection>,
) -> Result<Response, AppError> {
    let t = tenant_auth(&app, &headers).await?;
    let Query(q) = q.map_err(|_| AppError::invalid(None, "the query string is malformed"))?;
    let day = |k: &'static str| {
        q.get(k)
            .and_then(|v| parse_day(v))
            .ok_or_else(|| AppError::invalid(Some(k), format!("{k} must be a date YYYY-MM-DD")))
    };
    let (from, to) = (day("from")?, day("to")?);
    if to < from || to - from >= MAX_USAGE_DAYS {
        return Err(AppError::invalid(
            Some("to"),
            format!("to must be on or after from, at most {MAX_USAGE_DAYS} days in all"),
        ));
    }
    // Counters waiting for the periodic flush belong in the answer too.
    if let Err(e) = app.usage.flush(app.store.as_ref()).await {
        tracing::warn!(error = %e, "usage flush failed");
    }
    let rows = app
        .store
        .usage(&t.id, &format_day(from), &format_day(to))
        .await?;
    let mut rows = rows.into_iter().peekable();
    let mut days = Vec::new();
    for d in from..=to {
        let date = format_day(d);
        let mut c = UsageCounts::default();
        while let Some((_, counts)) = rows.next_if(|(day, _)| *day == date) {
            c.merge(&counts);
        }
        days.push(UsageDay {
            date,
            pub_sub_message_count: c.messages,
            pub_sub_bandwidth: c.bandwidth,
            conversation_create_count: c.conversations,
            comment_create_count: c.comments,
            peak_connections: c.peak_connections,
        });
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"tenantId": t.id, "days": days}).to_string(),
    ))
}

pub async fn live(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, AppError> {
    use std::sync::atomic::Ordering::Relaxed;
    let t = tenant_auth(&app, &headers).await?;
    let l = app.usage.tenant(&t.id);
    let body = json!({
        "connections": l.connections.load(Relaxed),
        "subscriptions": l.subscriptions.load(Relaxed),
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

pub async fn images(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, AppError> {
    let t = tenant_auth(&app, &headers).await?;
    let list = app.store.images(&t.id, 500).await?;
    let images: Vec<Value> = list
        .into_iter()
        .map(|i| json!({"urlId": i.url_id, "chatCount": i.chat_count, "lastActivity": i.last_activity, "seq": i.seq}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({"images": images}).to_string(),
    ))
}

pub async fn chats(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<QueryMap>, QueryRejection>,
) -> Result<Response, AppError> {
    let t = tenant_auth(&app, &headers).await?;
    let Query(q) = q.map_err(|_| AppError::invalid(None, "the query string is malformed"))?;
    let url_id = q
        .get("urlId")
        .ok_or_else(|| AppError::invalid(Some("urlId"), "urlId is required"))?;
    validate::url_id(url_id)?;
    let (seq, chats) = app.store.snapshot(&t.id, url_id).await?;
    let body = json!({"urlId": url_id, "epoch": app.store.epoch(), "seq": seq, "chats": chats});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

pub async fn delete_chat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
) -> Result<Response, AppError> {
    let t = tenant_auth(&app, &headers).await?;
    let c = app
        .store
        .apply(
            &t.id,
            &Mutation::DeleteChat { chat_id },
            &Authority::Tenant,
            None,
        )
        .await?;
    app.publish(&t.id, &c).await;
    Ok(json_response(
        StatusCode::OK,
        json!({"seq": c.seq}).to_string(),
    ))
}
