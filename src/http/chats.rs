//! The chat calls of the REST API: snapshot, the six mutations and the event
//! log. Each mutation is validated, authorized and stored before it is
//! published.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::json;

use super::{
    authenticate, authenticate_writer, broadcast_id, json_object, json_response, AppError, Authed,
    CorsGrant, Fields, QueryMap,
};
use crate::app::App;
use crate::domain::chat::Authority;
use crate::domain::{validate, Mutation};
use crate::store::Committed;

/// Most events one `GET /api/v1/events` returns.
const EVENTS_PAGE: u32 = 1000;

fn query(q: Result<Query<QueryMap>, QueryRejection>) -> Result<QueryMap, AppError> {
    q.map(|Query(m)| m)
        .map_err(|_| AppError::invalid(None, "the query string is malformed"))
}

fn url_id_param(q: &QueryMap) -> Result<&str, AppError> {
    let u = q
        .get("urlId")
        .ok_or_else(|| AppError::invalid(Some("urlId"), "urlId is required"))?;
    validate::url_id(u)?;
    Ok(u)
}

pub async fn snapshot(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    q: Result<Query<QueryMap>, QueryRejection>,
) -> Result<Response, AppError> {
    let a = authenticate(&app, &headers, &grant).await?;
    let q = query(q)?;
    let url_id = url_id_param(&q)?;
    let (seq, chats) = app.store.snapshot(&a.tenant.id, url_id).await?;
    let body = json!({"urlId": url_id, "epoch": app.store.epoch(), "seq": seq, "chats": chats});
    Ok(json_response(StatusCode::OK, body.to_string()))
}

pub async fn events(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    q: Result<Query<QueryMap>, QueryRejection>,
) -> Result<Response, AppError> {
    let a = authenticate(&app, &headers, &grant).await?;
    let q = query(q)?;
    let url_id = url_id_param(&q)?;
    let epoch = q
        .get("epoch")
        .ok_or_else(|| AppError::invalid(Some("epoch"), "epoch is required"))?;
    let since: u64 = q
        .get("since")
        .ok_or_else(|| AppError::invalid(Some("since"), "since is required"))?
        .parse()
        .map_err(|_| AppError::invalid(Some("since"), "since must be a non-negative integer"))?;
    if epoch != app.store.epoch() {
        return Err(AppError::HistoryGone(
            "that epoch is over: reload the snapshot",
        ));
    }
    let latest = app.store.latest_seq(&a.tenant.id, url_id).await?;
    if since > latest {
        return Err(AppError::HistoryGone(
            "that position is beyond the log: reload the snapshot",
        ));
    }
    let events = app
        .store
        .events_since(&a.tenant.id, url_id, since, EVENTS_PAGE)
        .await?;
    if since < latest && events.first().is_none_or(|e| e.seq != since + 1) {
        return Err(AppError::HistoryGone(
            "the log no longer holds that position: reload the snapshot",
        ));
    }
    // The stored events are already the exact JSON: splice, don't re-encode.
    let head = json!({"urlId": url_id, "epoch": epoch, "seq": latest}).to_string();
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

/// Stores, publishes and meters one mutation.
async fn commit(
    app: &App,
    a: &Authed,
    m: Mutation,
    bid: Option<String>,
) -> Result<Committed, AppError> {
    let c = app
        .store
        .apply(
            &a.tenant.id,
            &m,
            &Authority::User(a.actor.clone()),
            bid.as_deref(),
        )
        .await
        .inspect_err(|e| {
            if matches!(e, crate::store::StoreError::Unavailable(_)) {
                app.metrics.store_error();
            }
        })?;
    app.publish(&a.tenant.id, &c).await;
    let live = app.usage.tenant(&a.tenant.id);
    match m {
        Mutation::CreateChat { .. } => live.created(1, 1),
        Mutation::AddComment { .. } => live.created(0, 1),
        _ => {}
    }
    Ok(c)
}

pub async fn create(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let a = authenticate_writer(&app, &headers, &grant).await?;
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let url_id = f.str("urlId")?;
    validate::url_id(url_id)?;
    let x = f.coordinate("x")?;
    let y = f.coordinate("y")?;
    let text = validate::text("text", f.str("text")?)?;
    let bid = f.broadcast_id()?;
    let m = Mutation::CreateChat {
        url_id: url_id.to_owned(),
        x,
        y,
        text,
    };
    let c = commit(&app, &a, m, bid).await?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({"chat": c.chat, "seq": c.seq}).to_string(),
    ))
}

pub async fn update(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
    body: Body,
) -> Result<Response, AppError> {
    let a = authenticate_writer(&app, &headers, &grant).await?;
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let position = match (f.has("x"), f.has("y")) {
        (false, false) => None,
        (true, false) => return Err(AppError::invalid(Some("y"), "x and y are given together")),
        (false, true) => return Err(AppError::invalid(Some("x"), "x and y are given together")),
        (true, true) => Some((f.coordinate("x")?, f.coordinate("y")?)),
    };
    let resolved = f.opt_bool("resolved")?;
    if position.is_none() && resolved.is_none() {
        return Err(AppError::invalid(None, "give x and y, resolved, or both"));
    }
    let bid = f.broadcast_id()?;
    let c = commit(
        &app,
        &a,
        Mutation::UpdateChat {
            chat_id,
            position,
            resolved,
        },
        bid,
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"chat": c.chat, "seq": c.seq}).to_string(),
    ))
}

pub async fn remove(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
    q: Result<Query<QueryMap>, QueryRejection>,
) -> Result<Response, AppError> {
    let a = authenticate_writer(&app, &headers, &grant).await?;
    let q = query(q)?;
    let bid = broadcast_id(q.get("broadcastId").map(String::as_str))?;
    let c = commit(&app, &a, Mutation::DeleteChat { chat_id }, bid).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"seq": c.seq}).to_string(),
    ))
}

pub async fn add_comment(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    Path(chat_id): Path<String>,
    body: Body,
) -> Result<Response, AppError> {
    let a = authenticate_writer(&app, &headers, &grant).await?;
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let text = validate::text("text", f.str("text")?)?;
    let bid = f.broadcast_id()?;
    let c = commit(&app, &a, Mutation::AddComment { chat_id, text }, bid).await?;
    Ok(json_response(
        StatusCode::CREATED,
        json!({"comment": c.comment, "seq": c.seq}).to_string(),
    ))
}

pub async fn edit_comment(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    Path((chat_id, comment_id)): Path<(String, String)>,
    body: Body,
) -> Result<Response, AppError> {
    let a = authenticate_writer(&app, &headers, &grant).await?;
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let text = validate::text("text", f.str("text")?)?;
    let bid = f.broadcast_id()?;
    let m = Mutation::EditComment {
        chat_id,
        comment_id,
        text,
    };
    let c = commit(&app, &a, m, bid).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"comment": c.comment, "seq": c.seq}).to_string(),
    ))
}

pub async fn delete_comment(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    Path((chat_id, comment_id)): Path<(String, String)>,
    q: Result<Query<QueryMap>, QueryRejection>,
) -> Result<Response, AppError> {
    let a = authenticate_writer(&app, &headers, &grant).await?;
    let q = query(q)?;
    let bid = broadcast_id(q.get("broadcastId").map(String::as_str))?;
    let c = commit(
        &app,
        &a,
        Mutation::DeleteComment {
            chat_id,
            comment_id,
        },
        bid,
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"seq": c.seq}).to_string(),
    ))
}
