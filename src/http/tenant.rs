//! The operator call (creating tenants) and the tenant's own API: usage,
//! moderation and what the dashboard shows. Tenant calls take HTTP Basic
//! `tenantId:secret` or the dashboard's signed session cookie.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::Value;

use super::extract::{
    credentials, Client, Fields, FromJson, FromQuery, Ids, Json, Params, QueryMap,
};
use super::openapi::{OperatorErrors, TenantErrors};
use super::{json, AppError};
use crate::app::limits::ClientKey;
use crate::app::{write, App};
use crate::domain::auth::{constant_time_eq, sign_value, verify_value};
use crate::domain::chat::Authority;
use crate::domain::{now_ms, random_id, validate, AnonymousPolicy, ChatId, Mutation, Tenant};
use crate::protocol::{
    CreateTenantRequest, Empty, ImagesAnswer, LiveAnswer, LoginRequest, SeqAnswer, SnapshotAnswer,
    TenantAnswer, TenantCreated, UsageAnswer, UsageDay,
};
use crate::store::UsageCounts;
use crate::usage::{format_day, parse_day};

const COOKIE: &str = "imagechat_tenant";
const COOKIE_PURPOSE: &str = "tenant-dashboard";
const COOKIE_HOURS: i64 = 12;
/// Longest usage range one call may ask for.
const MAX_USAGE_DAYS: i64 = 366;
const MAX_SECRET_CHARS: usize = 256;
const MAX_ORIGINS: usize = 100;

/// The operator's key, checked in constant time: 404 when the server has none.
pub struct Operator;

impl FromRequestParts<Arc<App>> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let Some(key) = &app.config.admin_key else {
            return Err(AppError::NotFound("no such route"));
        };
        let Client(client) = Client::from_request_parts(parts, app).await?;
        let presented = credentials(&parts.headers, "Bearer").unwrap_or("");
        let verdict = async {
            if constant_time_eq(presented.trim().as_bytes(), key.as_bytes()) {
                Ok(Operator)
            } else {
                Err(AppError::Unauthorized("wrong operator key"))
            }
        };
        app.addresses.auth_failures.guard(client, verdict).await
    }
}

impl FromJson for CreateTenantRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        let tenant_id = f.str("tenantId")?;
        validate::tenant_id(&tenant_id)?;
        let anonymous = f.opt_str("anonymous")?;
        if let Some(a) = &anonymous {
            AnonymousPolicy::parse(a).ok_or_else(|| {
                AppError::invalid(Some("anonymous"), "anonymous must be none, read or write")
            })?;
        }
        let origins = match f.get("origins") {
            None => None,
            Some(Value::Array(list)) if list.len() <= MAX_ORIGINS => Some(
                list.iter()
                    .map(|o| {
                        o.as_str()
                            .filter(|s| {
                                !s.is_empty()
                                    && s.len() <= 2048
                                    && validate::plain("origins", s).is_ok()
                            })
                            .map(str::to_owned)
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        AppError::invalid(
                            Some("origins"),
                            "origins must be a list of origin strings",
                        )
                    })?,
            ),
            Some(_) => {
                return Err(AppError::invalid(
                    Some("origins"),
                    format!("origins must be a list of at most {MAX_ORIGINS} strings"),
                ))
            }
        };
        let secret = f.opt_str("secret")?;
        if let Some(s) = &secret {
            validate::plain("secret", s)?;
        }
        if secret
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.chars().count() > MAX_SECRET_CHARS)
        {
            return Err(AppError::invalid(
                Some("secret"),
                format!("secret must be 1..={MAX_SECRET_CHARS} characters"),
            ));
        }
        Ok(CreateTenantRequest {
            tenant_id,
            origins,
            anonymous,
            secret,
        })
    }
}

/// Creates a tenant; its secret is generated unless given.
#[utoipa::path(post, path = "/api/v1/admin/tenants", tag = "operator",
    request_body = CreateTenantRequest, security(("operator" = [])),
    responses((status = 201, body = TenantCreated), OperatorErrors))]
pub async fn create_tenant(
    State(app): State<Arc<App>>,
    _: Operator,
    Json(r): Json<CreateTenantRequest>,
) -> Result<Response, AppError> {
    let anonymous = r
        .anonymous
        .as_deref()
        .and_then(AnonymousPolicy::parse)
        .unwrap_or(AnonymousPolicy::None);
    let tenant = Tenant {
        id: r.tenant_id.into(),
        secret: r.secret.unwrap_or_else(|| random_id(24)),
        origins: r.origins.unwrap_or_default(),
        anonymous,
    };
    app.store
        .create_tenant(&tenant)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => AppError::Conflict("that tenant exists"),
            other => other.into(),
        })?;
    let answer = TenantCreated {
        tenant_id: tenant.id.clone(),
        secret: tenant.secret.clone(),
    };
    app.tenants.put(tenant);
    Ok(json(StatusCode::CREATED, &answer))
}

/// A tenant call's caller: HTTP Basic `tenantId:secret` or the dashboard's
/// signed cookie.
pub struct TenantCaller(pub Arc<Tenant>);

impl FromRequestParts<Arc<App>> for TenantCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let Client(client) = Client::from_request_parts(parts, app).await?;
        tenant_auth(app, &parts.headers, client)
            .await
            .map(TenantCaller)
    }
}

/// The tenant a tenant call is made for.
/// Basic-auth attempts count against the client address's failures.
async fn tenant_auth(
    app: &App,
    headers: &HeaderMap,
    client: ClientKey,
) -> Result<Arc<Tenant>, AppError> {
    const REFUSED: AppError = AppError::Unauthorized("tenant credentials are required");
    let basic = credentials(headers, "Basic");
    if let Some(b64) = basic {
        let check = async {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| REFUSED)?;
            let raw = String::from_utf8(raw).map_err(|_| REFUSED)?;
            let (id, secret) = raw.split_once(':').ok_or(REFUSED)?;
            let t = app.tenant(id).await?.ok_or(REFUSED)?;
            if t.secret_matches(secret) {
                Ok(t)
            } else {
                Err(REFUSED)
            }
        };
        return app.addresses.auth_failures.guard(client, check).await;
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

impl FromJson for LoginRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        Ok(LoginRequest {
            tenant_id: f.str("tenantId")?,
            secret: f.str("secret")?,
        })
    }
}

/// Signs the dashboard in: sets its HttpOnly session cookie.
#[utoipa::path(post, path = "/api/v1/tenant/login", tag = "tenant", request_body = LoginRequest,
    responses((status = 200, body = TenantAnswer,
        headers(("Set-Cookie" = String, description = "the dashboard session"))), TenantErrors))]
pub async fn login(
    State(app): State<Arc<App>>,
    Client(client): Client,
    Json(r): Json<LoginRequest>,
) -> Result<Response, AppError> {
    let check = async {
        app.tenant(&r.tenant_id)
            .await?
            .filter(|t| t.secret_matches(&r.secret))
            .ok_or(AppError::Unauthorized("wrong tenant id or secret"))
    };
    let tenant = app.addresses.auth_failures.guard(client, check).await?;
    let expires = now_ms() + COOKIE_HOURS * 3_600_000;
    let signed = sign_value(
        app.token_key(),
        COOKIE_PURPOSE,
        &format!("{}\n{expires}", tenant.id),
    );
    let mut res = json(
        StatusCode::OK,
        &TenantAnswer {
            tenant_id: tenant.id.clone(),
        },
    );
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie_header(&app, &signed, COOKIE_HOURS * 3600)?,
    );
    Ok(res)
}

/// Signs the dashboard out: clears its cookie.
#[utoipa::path(post, path = "/api/v1/tenant/logout", tag = "tenant",
    responses((status = 200, body = Empty,
        headers(("Set-Cookie" = String, description = "clears the dashboard session"))), TenantErrors))]
pub async fn logout(State(app): State<Arc<App>>) -> Result<Response, AppError> {
    let mut res = json(StatusCode::OK, &Empty {});
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie_header(&app, "", 0)?);
    Ok(res)
}

/// Who is signed in.
#[utoipa::path(get, path = "/api/v1/tenant/me", tag = "tenant",
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = TenantAnswer), TenantErrors))]
pub async fn me(TenantCaller(t): TenantCaller) -> Response {
    json(
        StatusCode::OK,
        &TenantAnswer {
            tenant_id: t.id.clone(),
        },
    )
}

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UsageQuery {
    /// First day (UTC), YYYY-MM-DD.
    from: String,
    /// Last day (UTC), at most 366 days after `from`.
    to: String,
}

pub struct DayRange(time::Date, time::Date);

impl FromQuery for DayRange {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        let day = |k: &'static str| {
            q.get(k)
                .and_then(|v| parse_day(v))
                .ok_or_else(|| AppError::invalid(Some(k), format!("{k} must be a date YYYY-MM-DD")))
        };
        let (from, to) = (day("from")?, day("to")?);
        if to < from || (to - from).whole_days() >= MAX_USAGE_DAYS {
            return Err(AppError::invalid(
                Some("to"),
                format!("to must be on or after from, at most {MAX_USAGE_DAYS} days in all"),
            ));
        }
        Ok(DayRange(from, to))
    }
}

/// Usage per day: messages, bandwidth, chats, comments, peak connections.
#[utoipa::path(get, path = "/api/v1/tenant/usage", tag = "tenant", params(UsageQuery),
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = UsageAnswer), TenantErrors))]
pub async fn usage(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Params(DayRange(from, to)): Params<DayRange>,
) -> Result<Response, AppError> {
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
    let mut next = Some(from);
    while let Some(d) = next.filter(|d| *d <= to) {
        next = d.next_day();
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
            upload_bytes: c.upload_bytes,
        });
    }
    Ok(json(
        StatusCode::OK,
        &UsageAnswer {
            tenant_id: t.id.clone(),
            days,
        },
    ))
}

/// Open connections and subscriptions on this node.
#[utoipa::path(get, path = "/api/v1/tenant/live", tag = "tenant",
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = LiveAnswer), TenantErrors))]
pub async fn live(State(app): State<Arc<App>>, TenantCaller(t): TenantCaller) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let l = app.usage.tenant(&t.id);
    json(
        StatusCode::OK,
        &LiveAnswer {
            connections: l.connections.load(Relaxed),
            subscriptions: l.subscriptions.load(Relaxed),
        },
    )
}

/// The tenant's images, latest activity first (at most 500).
#[utoipa::path(get, path = "/api/v1/tenant/images", tag = "tenant",
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = ImagesAnswer), TenantErrors))]
pub async fn images(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
) -> Result<Response, AppError> {
    let images = app.store.images(&t.id, 500).await?;
    Ok(json(StatusCode::OK, &ImagesAnswer { images }))
}

/// One image's chats, for moderation.
#[utoipa::path(get, path = "/api/v1/tenant/chats", tag = "tenant",
    params(super::chats::ImageQuery),
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = SnapshotAnswer), TenantErrors))]
pub async fn chats(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Params(super::chats::UrlId(url_id)): Params<super::chats::UrlId>,
) -> Result<Response, AppError> {
    super::current_snapshot(&app, &t.id, &url_id).await
}

/// Deletes a chat as moderation; logs `deleted-image-chat`.
#[utoipa::path(delete, path = "/api/v1/tenant/chats/{chatId}", tag = "tenant",
    params(("chatId" = String, Path)),
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = SeqAnswer), TenantErrors))]
pub async fn delete_chat(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Ids(chat_id): Ids<ChatId>,
) -> Result<Response, AppError> {
    let m = Mutation::DeleteChat { chat_id };
    let c = write::commit(&app, &t.id, m, Authority::Tenant, None).await?;
    Ok(json(StatusCode::OK, &SeqAnswer { seq: c.seq }))
}

/// Takes an upload down as moderation: its record and its bytes are
/// deleted at once, whether or not comments attach it (their thumbnails then
/// find nothing) or it is a share page's image. Another tenant's upload, or
/// an unknown id: `404`.
#[utoipa::path(delete, path = "/api/v1/tenant/uploads/{uploadId}", tag = "tenant",
    params(("uploadId" = String, Path)),
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = crate::protocol::Empty), TenantErrors))]
pub async fn delete_upload(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Ids(id): Ids<String>,
) -> Result<Response, AppError> {
    crate::upload::take_down(&app, &t.id, &id).await?;
    Ok(json(StatusCode::OK, &crate::protocol::Empty {}))
}
