//! The directory, follows, notifications and unsubscribing (contract §13).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::extract::{Fields, FromJson, FromQuery, Ids, Json, Params, QueryMap, Reader};
use super::openapi::{Common, ReadErrors, WriteErrors};
use super::{json, AppError};
use crate::app::session::Session;
use crate::app::App;
use crate::broker::UserMessage;
use crate::domain::auth::{sign_value, verify_value};
use crate::domain::ChatId;
use crate::protocol::{
    FollowingAnswer, NotificationList, ReadRequest, ServerMessage, UnreadAnswer, User,
};

/// Users a search answers at most.
const USERS_PAGE: u32 = 10;
/// Notifications a page holds at most.
const NOTIFICATIONS_PAGE: u32 = 50;
/// Ids one `POST /api/v1/notifications/read` may name.
const MAX_READ_IDS: usize = 1000;
/// Characters of a user search's prefix at most.
const MAX_PREFIX_CHARS: usize = 100;
/// What signs unsubscribe tokens (with the session key).
const UNSUBSCRIBE_PURPOSE: &str = "unsubscribe";

/// The signed-in (SSO) user of a session; anonymous users have no
/// notifications and follow nothing.
fn signed_in(s: &Session) -> Result<&User, AppError> {
    if s.actor.user.anonymous {
        return Err(AppError::Forbidden(
            "notifications and following need a signed-in (SSO) user",
        ));
    }
    Ok(&s.actor.user)
}

/// `?q=`: a name prefix (may be empty).
pub struct UsersQuery(String);

impl FromQuery for UsersQuery {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        let p = q.get("q").cloned().unwrap_or_default();
        if p.chars().count() > MAX_PREFIX_CHARS {
            return Err(AppError::invalid(
                Some("q"),
                format!("q is at most {MAX_PREFIX_CHARS} characters"),
            ));
        }
        Ok(UsersQuery(p.trim_start().to_owned()))
    }
}

/// Users of the tenant's directory whose name starts with `q`
/// (case-insensitive), at most 10, by name: for `@` mentions.
#[utoipa::path(get, path = "/api/v1/users", tag = "notifications",
    params(("q" = Option<String>, Query, description = "A name prefix, at most 100 characters")),
    security(("session" = [])),
    responses((status = 200, body = Vec<User>), ReadErrors))]
pub async fn users(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Params(UsersQuery(q)): Params<UsersQuery>,
) -> Result<Response, AppError> {
    if !s.actor.can_write(&s.tenant) {
        return Err(AppError::Forbidden(
            "this tenant lets anonymous users read only",
        ));
    }
    let users = app.store.find_users(&s.tenant.id, &q, USERS_PAGE).await?;
    Ok(json(StatusCode::OK, &users))
}

/// Follows a chat: its new comments notify the user.
#[utoipa::path(post, path = "/api/v1/chats/{chatId}/follow", tag = "notifications",
    params(("chatId" = String, Path)), security(("session" = [])),
    responses((status = 204, description = "following"), WriteErrors))]
pub async fn follow(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Ids(chat_id): Ids<ChatId>,
) -> Result<Response, AppError> {
    set_following(&app, &s, &chat_id, true).await
}

/// Unfollows a chat, until the user writes in it again.
#[utoipa::path(delete, path = "/api/v1/chats/{chatId}/follow", tag = "notifications",
    params(("chatId" = String, Path)), security(("session" = [])),
    responses((status = 204, description = "not following"), WriteErrors))]
pub async fn unfollow(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Ids(chat_id): Ids<ChatId>,
) -> Result<Response, AppError> {
    set_following(&app, &s, &chat_id, false).await
}

async fn set_following(
    app: &App,
    s: &Session,
    chat_id: &ChatId,
    following: bool,
) -> Result<Response, AppError> {
    let user = signed_in(s)?;
    if !app
        .store
        .set_following(&s.tenant.id, chat_id, &user.id, following)
        .await?
    {
        return Err(AppError::NotFound("no such chat"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether the user follows a chat.
#[utoipa::path(get, path = "/api/v1/chats/{chatId}/follow", tag = "notifications",
    params(("chatId" = String, Path)), security(("session" = [])),
    responses((status = 200, body = FollowingAnswer), ReadErrors))]
pub async fn following(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Ids(chat_id): Ids<ChatId>,
) -> Result<Response, AppError> {
    let user = signed_in(&s)?;
    let following = app
        .store
        .following(&s.tenant.id, &chat_id, &user.id)
        .await?
        .ok_or(AppError::NotFound("no such chat"))?;
    Ok(json(StatusCode::OK, &FollowingAnswer { following }))
}

/// A notification id as clients send it: the decimal the server gave.
fn notification_id(field: &'static str, v: &str) -> Result<i64, AppError> {
    // Only the id as the server wrote it: no sign, no leading zeros.
    v.parse::<i64>()
        .ok()
        .filter(|n| *n > 0 && n.to_string() == v)
        .ok_or_else(|| AppError::invalid(Some(field), format!("{field} holds notification ids")))
}

/// `?before=`: a notification id.
pub struct Page(Option<i64>);

impl FromQuery for Page {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        q.get("before")
            .map(|b| notification_id("before", b))
            .transpose()
            .map(Page)
    }
}

/// The user's notifications, newest first, 50 a page.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    params(("before" = Option<String>, Query, description = "A notification id: the page after it")),
    security(("session" = [])),
    responses((status = 200, body = NotificationList), ReadErrors))]
pub async fn notifications(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Params(Page(before)): Params<Page>,
) -> Result<Response, AppError> {
    let user = signed_in(&s)?;
    let (notifications, unread) = app
        .store
        .notifications(&s.tenant.id, &user.id, before, NOTIFICATIONS_PAGE)
        .await?;
    Ok(json(
        StatusCode::OK,
        &NotificationList {
            notifications,
            unread,
        },
    ))
}

impl FromJson for ReadRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        const K: &str = "ids";
        // `null` is refused rather than read as "all": a client that
        // meant some must not clear every notification.
        let ids = match f.0.get(K) {
            None => None,
            Some(Value::Array(items)) if items.len() <= MAX_READ_IDS => Some(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => notification_id(K, s).map(|_| s.clone()),
                        _ => Err(AppError::invalid(Some(K), "ids holds notification ids")),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(Value::Array(_)) => {
                return Err(AppError::invalid(
                    Some(K),
                    format!("at most {MAX_READ_IDS} ids at once"),
                ))
            }
            Some(_) => {
                return Err(AppError::invalid(
                    Some(K),
                    "ids must be an array of notification ids",
                ))
            }
        };
        Ok(ReadRequest { ids })
    }
}

/// Marks notifications read (those named, or all); every connection of
/// the user then gets the new count.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications",
    request_body = ReadRequest, security(("session" = [])),
    responses((status = 200, body = UnreadAnswer), WriteErrors))]
pub async fn read(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Json(r): Json<ReadRequest>,
) -> Result<Response, AppError> {
    let user = signed_in(&s)?;
    let ids: Option<Vec<i64>> = match &r.ids {
        None => None,
        Some(ids) => Some(
            ids.iter()
                .map(|i| notification_id("ids", i))
                .collect::<Result<_, _>>()?,
        ),
    };
    let unread = app
        .store
        .mark_read(&s.tenant.id, &user.id, ids.as_deref())
        .await?;
    let body = ServerMessage::Notifications { unread }.to_bytes();
    if let Err(e) = app
        .broker
        .tell_user(UserMessage {
            tenant: s.tenant.id.to_string(),
            user_id: user.id.clone(),
            body,
        })
        .await
    {
        app.metrics.broker_errors.increment(1);
        tracing::warn!(error = %e, "could not tell the user's other connections");
    }
    Ok(json(StatusCode::OK, &UnreadAnswer { unread }))
}

// --------------------------------------------------------- unsubscribe ----

/// The token of a user's unsubscribe link (RFC 8058), signed with the
/// session key.
pub fn unsubscribe_token(app: &App, tenant: &str, user_id: &str) -> String {
    sign_value(
        app.token_key(),
        UNSUBSCRIBE_PURPOSE,
        &format!("{tenant}\n{user_id}"),
    )
}

/// `?token=`: the tenant and user of a signed unsubscribe token.
pub struct Unsubscribe {
    tenant: String,
    user_id: String,
    token: String,
}

fn unsubscribe_of(app: &App, q: &QueryMap) -> Result<Unsubscribe, AppError> {
    let bad = || AppError::invalid(Some("token"), "this unsubscribe link is not valid");
    let token = q.get("token").ok_or_else(bad)?;
    let value = verify_value(app.token_key(), UNSUBSCRIBE_PURPOSE, token).ok_or_else(bad)?;
    let (tenant, user_id) = value.split_once('\n').ok_or_else(bad)?;
    Ok(Unsubscribe {
        tenant: tenant.to_owned(),
        user_id: user_id.to_owned(),
        token: token.clone(),
    })
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title></head><body style=\"font:16px system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em\">\
         <h1 style=\"font-size:1.4em\">{title}</h1>{body}</body></html>",
        title = html_escape::encode_text(title),
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn query_map(uri: &axum::http::Uri) -> QueryMap {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The page of an e-mail's unsubscribe link: a button that unsubscribes
/// (a `POST`), so link scanners unsubscribe nobody.
#[utoipa::path(get, path = "/api/v1/unsubscribe", tag = "notifications",
    params(("token" = String, Query)),
    responses((status = 200, content_type = "text/html", description = "the unsubscribe page"), Common))]
pub async fn unsubscribe_page(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    let u = unsubscribe_of(&app, &query_map(&uri))?;
    let action = format!(
        "/api/v1/unsubscribe?token={}",
        url::form_urlencoded::byte_serialize(u.token.as_bytes()).collect::<String>()
    );
    Ok(page(
        StatusCode::OK,
        "Unsubscribe from e-mail notifications",
        &format!(
            "<p>Stop all notification e-mail from this site to you.</p>\
             <form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\" style=\"font:inherit;padding:.5em 1em\">Unsubscribe</button></form>",
            html_escape::encode_double_quoted_attribute(&action)
        ),
    ))
}

/// Unsubscribes at once, without login (RFC 8058 one-click): all e-mail
/// of this tenant to this user stops.
#[utoipa::path(post, path = "/api/v1/unsubscribe", tag = "notifications",
    params(("token" = String, Query)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`List-Unsubscribe=One-Click`"),
    responses((status = 200, content_type = "text/html", description = "unsubscribed"), Common))]
pub async fn unsubscribe(
    State(app): State<Arc<App>>,
    uri: axum::http::Uri,
) -> Result<Response, AppError> {
    let u = unsubscribe_of(&app, &query_map(&uri))?;
    app.store.unsubscribe(&u.tenant, &u.user_id).await?;
    Ok(page(
        StatusCode::OK,
        "You are unsubscribed",
        "<p>You will get no more notification e-mail from this site.</p>",
    ))
}
