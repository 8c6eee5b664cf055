//! The chat calls of the REST API: snapshot, the six mutations and the event
//! log. Mutations go through the one write path ([`write::commit`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{
    broadcast_id, required, Fields, FromJson, FromQuery, Ids, Json, Params, QueryMap, Reader,
    Writer,
};
use super::openapi::{EventsErrors, ReadErrors, WriteErrors};
use super::{json, json_response, AppError};
use crate::app::session::Session;
use crate::app::{write, App};
use crate::domain::chat::Authority;
use crate::domain::{shape, validate, ChatId, ImageKey, Mutation, Seq};
use crate::protocol::{
    ChatAnswer, CommentAnswer, CommentRequest, CreateChatRequest, EventsAnswer, SeqAnswer,
    SnapshotAnswer, UpdateChatRequest,
};
use crate::store::Committed;

/// Most events one `GET /api/v1/events` returns.
const EVENTS_PAGE: u32 = 1000;

/// `?urlId=`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ImageQuery {
    /// The image's id: 1..=1024 UTF-8 bytes, no control characters.
    #[param(
        rename = "urlId",
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\x00-\x1f\x7f]+$"
    )]
    url_id: String,
}

pub struct UrlId(pub String);

impl FromQuery for UrlId {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        let u = required(q, "urlId")?;
        validate::url_id(u)?;
        Ok(UrlId(u.to_owned()))
    }
}

/// `&epoch=&since=`, beside [`ImageQuery`]'s `urlId`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventsQuery {
    /// The epoch of the snapshot or subscription the position comes from.
    epoch: String,
    /// Events after this seq are returned.
    #[param(minimum = 0)]
    since: u64,
}

pub struct Position {
    url_id: String,
    epoch: String,
    since: Seq,
}

impl FromQuery for Position {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        let UrlId(url_id) = UrlId::from_query(q)?;
        let epoch = required(q, "epoch")?.to_owned();
        let since = required(q, "since")?.parse().map(Seq).map_err(|_| {
            AppError::invalid(
                Some("since"),
                "since must be an integer from 0 to 18446744073709551615",
            )
        })?;
        Ok(Position {
            url_id,
            epoch,
            since,
        })
    }
}

/// `?broadcastId=` of a DELETE.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeleteQuery {
    #[param(rename = "broadcastId", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    broadcast_id: Option<String>,
}

pub struct BroadcastId(pub Option<String>);

impl FromQuery for BroadcastId {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        broadcast_id(q.get("broadcastId").cloned()).map(BroadcastId)
    }
}

impl FromJson for CreateChatRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        let url_id = f.str("urlId")?;
        validate::url_id(&url_id)?;
        let web_url = |k: &'static str| -> Result<Option<String>, AppError> {
            let v = f.opt_str(k)?;
            if let Some(u) = &v {
                validate::web_url(k, u)?;
            }
            Ok(v)
        };
        Ok(CreateChatRequest {
            url_id,
            x: f.coordinate("x")?,
            y: f.coordinate("y")?,
            text: validate::text("text", &f.str("text")?)?,
            shape: f.get("shape").map(shape::parse).transpose()?,
            attachments: f.attachments()?,
            mentions: f.mentions()?,
            image_url: web_url("imageUrl")?,
            // The page, not a place on it: a fragment is dropped.
            page_url: web_url("pageUrl")?.map(|u| match u.split_once('#') {
                Some((page, _)) => page.to_owned(),
                None => u,
            }),
            broadcast_id: f.broadcast_id()?,
        })
    }
}

impl FromJson for UpdateChatRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        let (x, y) = match (f.has("x"), f.has("y")) {
            (false, false) => (None, None),
            (true, false) => {
                return Err(AppError::invalid(
                    Some("y"),
                    "x and y must be given together",
                ))
            }
            (false, true) => {
                return Err(AppError::invalid(
                    Some("x"),
                    "x and y must be given together",
                ))
            }
            (true, true) => (Some(f.coordinate("x")?), Some(f.coordinate("y")?)),
        };
        let resolved = f.opt_bool("resolved")?;
        // Here `null` is not "absent": it turns the chat back into a pin.
        let shape = match f.0.get("shape") {
            None => None,
            Some(serde_json::Value::Null) => Some(None),
            Some(v) => Some(Some(shape::parse(v)?)),
        };
        if x.is_none() && resolved.is_none() && shape.is_none() {
            return Err(AppError::invalid(
                None,
                "give at least one of x and y, shape, resolved",
            ));
        }
        Ok(UpdateChatRequest {
            x,
            y,
            resolved,
            shape,
            broadcast_id: f.broadcast_id()?,
        })
    }
}

impl FromJson for CommentRequest {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        Ok(CommentRequest {
            text: validate::text("text", &f.str("text")?)?,
            attachments: f.attachments()?,
            mentions: f.mentions()?,
            broadcast_id: f.broadcast_id()?,
        })
    }
}

/// The image's chats and the log position they reflect.
#[utoipa::path(get, path = "/api/v1/chats", tag = "chats", params(ImageQuery),
    security(("session" = [])),
    responses((status = 200, body = SnapshotAnswer), ReadErrors))]
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Params(UrlId(url_id)): Params<UrlId>,
) -> Result<Response, AppError> {
    super::current_snapshot(&app, &s.tenant.id, &url_id).await
}

/// The logged events after a position, at most 1000.
#[utoipa::path(get, path = "/api/v1/events", tag = "chats", params(ImageQuery, EventsQuery),
    security(("session" = [])),
    responses((status = 200, body = EventsAnswer), EventsErrors))]
pub async fn events(
    State(app): State<Arc<App>>,
    Reader(s): Reader,
    Params(p): Params<Position>,
) -> Result<Response, AppError> {
    events_answer(&app, &s.tenant.id, &p).await
}

/// The answer of `GET /api/v1/events` for a tenant (also the tenant
/// call's, `GET /api/v1/tenant/events`).
pub(super) async fn events_answer(
    app: &App,
    tenant: &str,
    p: &Position,
) -> Result<Response, AppError> {
    let (url_id, since) = (&p.url_id, p.since);
    let image = ImageKey::new(tenant, url_id);
    if p.epoch != app.store.epoch() {
        return Err(AppError::HistoryGone(
            "that epoch is over: reload the snapshot",
        ));
    }
    let latest = app.store.latest_seq(&image).await?;
    if since > latest {
        return Err(AppError::HistoryGone(
            "that position is beyond the log: reload the snapshot",
        ));
    }
    let events = app.store.events_since(&image, since, EVENTS_PAGE).await?;
    if since < latest && events.first().is_none_or(|e| e.seq != since.next()) {
        return Err(AppError::HistoryGone(
            "the log no longer holds that position: reload the snapshot",
        ));
    }
    // The stored events are already the exact JSON: splice, don't re-encode.
    let head = serde_json::json!({"urlId": url_id, "epoch": p.epoch, "seq": latest}).to_string();
    let mut body = String::with_capacity(
        head.len() + events.iter().map(|e| e.body.len() + 1).sum::<usize>() + 16,
    );
    body.push_str(&head[..head.len() - 1]);
    body.push_str(",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(std::str::from_utf8(&e.body).map_err(|_| AppError::Internal)?);
    }
    body.push_str("]}");
    Ok(json_response(StatusCode::OK, body))
}

/// Stores and publishes one user's mutation.
async fn commit(
    app: &Arc<App>,
    s: Session,
    m: Mutation,
    bid: Option<String>,
) -> Result<Committed, AppError> {
    write::commit(app, &s.tenant.id, m, Authority::User(s.actor), bid).await
}

/// Creates a chat: a marker and its first comment.
#[utoipa::path(post, path = "/api/v1/chats", tag = "chats", request_body = CreateChatRequest,
    security(("session" = [])),
    responses((status = 201, body = ChatAnswer), WriteErrors))]
pub async fn create(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Json(r): Json<CreateChatRequest>,
) -> Result<Response, AppError> {
    let m = Mutation::CreateChat {
        url_id: r.url_id,
        x: r.x,
        y: r.y,
        text: r.text,
        shape: r.shape,
        resolved: false,
        image_url: r.image_url,
        page_url: r.page_url,
        attachments: r.attachments.unwrap_or_default(),
        mentions: r.mentions.unwrap_or_default(),
    };
    let c = commit(&app, s, m, r.broadcast_id).await?;
    Ok(json(
        StatusCode::CREATED,
        &ChatAnswer {
            chat: c.chat,
            seq: c.seq,
        },
    ))
}

/// Moves a chat, changes or removes its shape, resolves or reopens it.
#[utoipa::path(patch, path = "/api/v1/chats/{chatId}", tag = "chats",
    params(("chatId" = String, Path)), request_body = UpdateChatRequest,
    security(("session" = [])),
    responses((status = 200, body = ChatAnswer), WriteErrors))]
pub async fn update(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Ids(chat_id): Ids<ChatId>,
    Json(r): Json<UpdateChatRequest>,
) -> Result<Response, AppError> {
    let position = r.x.zip(r.y);
    let m = Mutation::UpdateChat {
        chat_id,
        position,
        shape: r.shape,
        resolved: r.resolved,
    };
    let c = commit(&app, s, m, r.broadcast_id).await?;
    Ok(json(
        StatusCode::OK,
        &ChatAnswer {
            chat: c.chat,
            seq: c.seq,
        },
    ))
}

/// Deletes a chat with its comments.
#[utoipa::path(delete, path = "/api/v1/chats/{chatId}", tag = "chats",
    params(("chatId" = String, Path), DeleteQuery),
    security(("session" = [])),
    responses((status = 200, body = SeqAnswer), WriteErrors))]
pub async fn remove(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Ids(chat_id): Ids<ChatId>,
    Params(BroadcastId(bid)): Params<BroadcastId>,
) -> Result<Response, AppError> {
    let c = commit(&app, s, Mutation::DeleteChat { chat_id }, bid).await?;
    Ok(json(StatusCode::OK, &SeqAnswer { seq: c.seq }))
}

/// Replies in a chat.
#[utoipa::path(post, path = "/api/v1/chats/{chatId}/comments", tag = "chats",
    params(("chatId" = String, Path)), request_body = CommentRequest,
    security(("session" = [])),
    responses((status = 201, body = CommentAnswer), WriteErrors))]
pub async fn add_comment(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Ids(chat_id): Ids<ChatId>,
    Json(r): Json<CommentRequest>,
) -> Result<Response, AppError> {
    let m = Mutation::AddComment {
        chat_id,
        text: r.text,
        attachments: r.attachments.unwrap_or_default(),
        mentions: r.mentions.unwrap_or_default(),
    };
    let c = commit(&app, s, m, r.broadcast_id).await?;
    Ok(json(
        StatusCode::CREATED,
        &CommentAnswer {
            comment: c.comment,
            seq: c.seq,
        },
    ))
}

/// Edits a comment's text.
#[utoipa::path(patch, path = "/api/v1/chats/{chatId}/comments/{commentId}", tag = "chats",
    params(("chatId" = String, Path), ("commentId" = String, Path)),
    request_body = CommentRequest, security(("session" = [])),
    responses((status = 200, body = CommentAnswer), WriteErrors))]
pub async fn edit_comment(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Ids((chat_id, comment_id)): Ids<(ChatId, String)>,
    Json(r): Json<CommentRequest>,
) -> Result<Response, AppError> {
    let m = Mutation::EditComment {
        chat_id,
        comment_id,
        text: r.text,
        attachments: r.attachments,
        mentions: r.mentions,
    };
    let c = commit(&app, s, m, r.broadcast_id).await?;
    Ok(json(
        StatusCode::OK,
        &CommentAnswer {
            comment: c.comment,
            seq: c.seq,
        },
    ))
}

/// Deletes a comment (the chat too when it was the last).
#[utoipa::path(delete, path = "/api/v1/chats/{chatId}/comments/{commentId}", tag = "chats",
    params(("chatId" = String, Path), ("commentId" = String, Path), DeleteQuery),
    security(("session" = [])),
    responses((status = 200, body = SeqAnswer), WriteErrors))]
pub async fn delete_comment(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Ids((chat_id, comment_id)): Ids<(ChatId, String)>,
    Params(BroadcastId(bid)): Params<BroadcastId>,
) -> Result<Response, AppError> {
    let m = Mutation::DeleteComment {
        chat_id,
        comment_id,
    };
    let c = commit(&app, s, m, bid).await?;
    Ok(json(StatusCode::OK, &SeqAnswer { seq: c.seq }))
}
