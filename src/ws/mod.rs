//! The WebSocket endpoint `GET /api/v1/ws`: handshake, `hello`, then one
//! reader task (client messages) and one writer loop (everything queued in the
//! connection's `Outbox`, several messages per frame when several wait).
//!
//! An idle connection holds two small tasks and no buffers; heartbeats come
//! from one node-wide ticker (`heartbeat_loop`), not a timer per connection.

pub mod frame;

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::app::App;
use crate::broker::TopicKey;
use crate::domain::{now_ms, validate, Actor, Tenant};
use crate::fanout::{ConnId, Outbox};
use crate::http::error::AppError;
use crate::protocol::{ClientMessage, ServerMessage};
use crate::usage::TenantLive;
use frame::{Incoming, OP_PING, OP_PONG, OP_TEXT};

/// Largest inbound message; bigger ones close the connection with 1009.
pub const MAX_INBOUND: usize = 16 * 1024;
pub const MAX_SUBSCRIPTIONS: usize = 100;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code meaning "the peer is gone, send nothing".
const CLOSE_SILENT: u16 = 0;
/// Client messages per second a connection may send on average, and at once.
const INBOUND_PER_SEC: f64 = 50.0;
const INBOUND_BURST: f64 = 200.0;

pub async fn upgrade(State(app): State<Arc<App>>, mut req: Request) -> Response {
    let h = req.headers();
    let has = |name: header::HeaderName, want: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
        })
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return AppError::invalid(None, "this endpoint speaks WebSocket only").into_response();
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return AppError::invalid(None, "WebSocket version 13 is required").into_response();
    }
    let Some(key) = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
    else {
        return AppError::invalid(None, "Sec-WebSocket-Key is missing").into_response();
    };
    let accept = frame::accept_key(key.trim());
    let origin = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => serve(app, TokioIo::new(up), origin).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = res.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// One client's subscriptions; shared so the connection can clean up after
/// its reader, however the reader ended.
#[derive(Default)]
struct ConnState {
    subs: Mutex<HashSet<TopicKey>>,
}

fn error_message(id: &Option<serde_json::Value>, code: &str, message: &str) -> Bytes {
    ServerMessage::Error { id, code, message }.to_bytes()
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, code: &str, message: &str, close: u16) {
    let _ = frame::write_frame(w, OP_TEXT, &error_message(&None, code, message)).await;
    let _ = frame::write_close(w, close, message).await;
}

async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(
    app: Arc<App>,
    io: S,
    origin: Option<String>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut reader = frame::Reader::new(MAX_INBOUND);
    // Boxed, like the other one-off steps below: a task is as large as its
    // largest state, and an idle connection should not carry these.
    let Some((actor, tenant)) = Box::pin(hello(
        &app,
        &mut reader,
        &mut rd,
        &mut wr,
        origin.as_deref(),
    ))
    .await
    else {
        return;
    };
    let welcome = ServerMessage::Welcome {
        user: &actor.user,
        moderator: actor.moderator,
        heartbeat: app.config.heartbeat,
    };
    if frame::write_frame(&mut wr, OP_TEXT, &welcome.to_bytes())
        .await
        .is_err()
    {
        return;
    }
    let id = app.conns.next_id();
    let out = Arc::new(Outbox::new(
        app.config.outbox_capacity as usize,
        app.uptime_secs(),
    ));
    let live = app.usage.tenant(&tenant.id);
    live.connected();
    report_connections(&app, &tenant.id, &live);
    app.conns.add(id, Arc::clone(&out));
    let state = Arc::new(ConnState::default());
    let read_task = tokio::spawn(read_loop(
        Arc::clone(&app),
        id,
        actor,
        Arc::clone(&out),
        Arc::clone(&state),
        Arc::clone(&live),
        reader,
        rd,
    ));
    write_loop(&app, &out, &live, &mut wr).await;
    read_task.abort();
    let _ = read_task.await;
    let subs: Vec<TopicKey> = state
        .subs
        .lock()
        .map(|mut s| s.drain().collect())
        .unwrap_or_default();
    for key in &subs {
        Box::pin(app.hub.unsubscribe(id, key)).await;
    }
    live.subscriptions.fetch_sub(subs.len() as u64, Relaxed);
    live.disconnected();
    report_connections(&app, &tenant.id, &live);
    app.conns.remove(id);
}

/// Shares this node's connection count of a tenant, so the tenant's peak
/// counts every node. Off the connection's path: it only feeds metering.
fn report_connections(app: &Arc<App>, tenant: &str, live: &Arc<TenantLive>) {
    let (app, tenant, live) = (Arc::clone(app), tenant.to_owned(), Arc::clone(live));
    tokio::spawn(async move {
        let local = live.connections.load(Relaxed);
        if let Ok(global) = app.broker.connections(&tenant, local).await {
            live.observe_connections(global);
        }
    });
}

/// Waits for `hello` and checks it; on refusal the connection is closed here.
async fn hello<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    app: &App,
    reader: &mut frame::Reader,
    rd: &mut R,
    wr: &mut W,
    origin: Option<&str>,
) -> Option<(Actor, Arc<Tenant>)> {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let text = loop {
        match tokio::time::timeout_at(deadline, reader.read(rd)).await {
            Err(_) => {
                refuse(
                    wr,
                    "unauthorized",
                    "no hello within 10 s",
                    CLOSE_UNAUTHORIZED,
                )
                .await;
                return None;
            }
            Ok(Ok(Incoming::Text(t))) => break t,
            Ok(Ok(Incoming::Ping(p))) => {
                let _ = frame::write_frame(wr, OP_PONG, &p).await;
            }
            Ok(Ok(Incoming::Pong)) => {}
            Ok(Ok(Incoming::Binary)) => break String::new(),
            Ok(Ok(Incoming::Close(_))) => {
                let _ = frame::write_close(wr, 1000, "").await;
                return None;
            }
            Ok(Err(e)) => {
                if let Some(code) = e.close_code() {
                    let _ = frame::write_close(wr, code, &e.to_string()).await;
                }
                return None;
            }
        }
    };
    let Ok(ClientMessage::Hello { token }) = ClientMessage::parse(&text) else {
        refuse(
            wr,
            "unauthorized",
            "the first message must be hello",
            CLOSE_UNAUTHORIZED,
        )
        .await;
        return None;
    };
    let Some(actor) = app.token_key().verify(&token, now_ms()) else {
        refuse(
            wr,
            "unauthorized",
            "the session token is invalid or expired",
            CLOSE_UNAUTHORIZED,
        )
        .await;
        return None;
    };
    let tenant = match app.tenant(&actor.tenant_id).await {
        Ok(Some(t)) => t,
        _ => {
            refuse(
                wr,
                "unauthorized",
                "the session's tenant is unknown",
                CLOSE_UNAUTHORIZED,
            )
            .await;
            return None;
        }
    };
    if !tenant.allows_origin(origin) || !actor.can_read(&tenant) {
        refuse(
            wr,
            "forbidden",
            "this origin may not use this tenant",
            CLOSE_FORBIDDEN,
        )
        .await;
        return None;
    }
    Some((actor, tenant))
}

#[allow(clippy::too_many_arguments)]
async fn read_loop<R: AsyncRead + Unpin>(
    app: Arc<App>,
    id: ConnId,
    actor: Actor,
    out: Arc<Outbox>,
    state: Arc<ConnState>,
    live: Arc<TenantLive>,
    mut reader: frame::Reader,
    mut rd: R,
) {
    let (mut budget, mut refilled) = (INBOUND_BURST, Instant::now());
    loop {
        let msg = match reader.read(&mut rd).await {
            Ok(m) => m,
            Err(e) => {
                match e.close_code() {
                    Some(code) => out.close(code, "protocol error"),
                    None => out.close(CLOSE_SILENT, ""),
                }
                return;
            }
        };
        out.touch(app.uptime_secs());
        let text = match msg {
            Incoming::Text(t) => t,
            Incoming::Ping(p) => {
                out.pong(p);
                continue;
            }
            Incoming::Pong => continue,
            Incoming::Close(_) => {
                out.close(1000, "");
                return;
            }
            Incoming::Binary => {
                out.push(error_message(
                    &None,
                    "invalid_message",
                    "binary frames are not supported",
                ));
                continue;
            }
        };
        let now = Instant::now();
        budget = (budget + now.duration_since(refilled).as_secs_f64() * INBOUND_PER_SEC)
            .min(INBOUND_BURST);
        refilled = now;
        if budget < 1.0 {
            out.push(error_message(
                &None,
                "rate_limited",
                "too many messages; slow down",
            ));
            continue;
        }
        budget -= 1.0;
        match ClientMessage::parse(&text) {
            Err(bad) => {
                out.push(error_message(&bad.id, "invalid_message", &bad.message));
            }
            Ok(ClientMessage::Ping) => {
                out.push(ServerMessage::Pong.to_bytes());
            }
            Ok(ClientMessage::Hello { .. }) => {
                out.push(error_message(
                    &None,
                    "invalid_message",
                    "hello was already said",
                ));
            }
            Ok(ClientMessage::Subscribe {
                id: rid,
                url_id,
                epoch,
                seq,
            }) => {
                if let Err(e) = validate::url_id(&url_id) {
                    out.push(error_message(&rid, "invalid_message", &e.to_string()));
                    continue;
                }
                let key = TopicKey::new(&actor.tenant_id, &url_id);
                let added = {
                    let mut subs = state.subs.lock().unwrap_or_else(|p| p.into_inner());
                    if !subs.contains(&key) && subs.len() >= MAX_SUBSCRIPTIONS {
                        None
                    } else {
                        Some(subs.insert(key.clone()))
                    }
                };
                let Some(added) = added else {
                    out.push(error_message(
                        &rid,
                        "too_many_subscriptions",
                        "a connection may hold 100 subscriptions",
                    ));
                    continue;
                };
                if added {
                    live.subscriptions.fetch_add(1, Relaxed);
                }
                let resume = match (&epoch, seq) {
                    (Some(e), Some(s)) => Some((e.as_str(), s)),
                    _ => None,
                };
                // Boxed so the idle reader does not carry the subscribe state.
                if let Err(e) = Box::pin(app.hub.subscribe(id, &out, &key, &rid, resume)).await {
                    app.metrics.store_error();
                    tracing::warn!(error = %e, "subscribe failed");
                    if let Ok(mut subs) = state.subs.lock() {
                        if subs.remove(&key) {
                            live.subscriptions.fetch_sub(1, Relaxed);
                        }
                    }
                    out.push(error_message(
                        &rid,
                        "unavailable",
                        "storage is unavailable; try again",
                    ));
                }
            }
            Ok(ClientMessage::Unsubscribe { id: rid, url_id }) => {
                let key = TopicKey::new(&actor.tenant_id, &url_id);
                let removed = state
                    .subs
                    .lock()
                    .map(|mut s| s.remove(&key))
                    .unwrap_or(false);
                if removed {
                    live.subscriptions.fetch_sub(1, Relaxed);
                    Box::pin(app.hub.unsubscribe(id, &key)).await;
                }
                out.push(
                    ServerMessage::Unsubscribed {
                        id: &rid,
                        url_id: &url_id,
                    }
                    .to_bytes(),
                );
            }
        }
    }
}

/// Sends whatever the outbox holds until it says close. Several waiting
/// messages go out as one JSON array frame: one write for many messages.
///
/// Batching under load: after a send, the next one waits until the batch
/// window has passed since it, gathering what arrives meanwhile. A quiet
/// connection (nothing sent within the window) sends at once, so light
/// traffic gets no added delay; a busy one makes one write per window
/// instead of one per message.
async fn write_loop<W: AsyncWrite + Unpin>(app: &App, out: &Outbox, live: &TenantLive, wr: &mut W) {
    let stall = Duration::from_millis(app.config.heartbeat * 2500);
    let window = Duration::from_millis(app.config.batch_window_ms);
    let mut last_send: Option<Instant> = None;
    let mut frame_buf = Vec::new();
    loop {
        out.ready().await;
        if let Some(at) = last_send {
            let since = at.elapsed();
            if since < window && !out.is_closing() {
                // Boxed: a timer only while busy, none on an idle connection.
                Box::pin(tokio::time::sleep(window - since)).await;
            }
        }
        let d = out.take();
        // Boxed: the sending state is large (timer, write futures) and only
        // lives while sending; the idle connection keeps the small one.
        let res = Box::pin(tokio::time::timeout(stall, async {
            if let Some(p) = &d.pong {
                frame::write_frame(wr, OP_PONG, p).await?;
            }
            if d.ping {
                frame::write_frame(wr, OP_PING, b"").await?;
            }
            if !d.messages.is_empty() {
                frame_buf.clear();
                let n = d.messages.len();
                let len = if n == 1 {
                    d.messages[0].len()
                } else {
                    1 + d.messages.iter().map(|m| m.len() + 1).sum::<usize>()
                };
                frame::encode_head(&mut frame_buf, OP_TEXT, len);
                if n == 1 {
                    frame_buf.put_slice(&d.messages[0]);
                } else {
                    frame_buf.put_u8(b'[');
                    for (i, m) in d.messages.iter().enumerate() {
                        if i > 0 {
                            frame_buf.put_u8(b',');
                        }
                        frame_buf.put_slice(m);
                    }
                    frame_buf.put_u8(b']');
                }
                tokio::io::AsyncWriteExt::write_all(wr, &frame_buf).await?;
                tokio::io::AsyncWriteExt::flush(wr).await?;
                live.delivered(n as u64, len as u64);
                last_send = Some(Instant::now());
                // Keep no large buffer around on an idle connection.
                if frame_buf.capacity() > 4096 {
                    frame_buf = Vec::new();
                }
            }
            if let Some((code, reason)) = d.close {
                if code != CLOSE_SILENT {
                    frame::write_close(wr, code, reason).await?;
                }
                if code == crate::fanout::outbox::CLOSE_SLOW_CONSUMER {
                    app.metrics.slow_consumers.fetch_add(1, Relaxed);
                }
                tokio::io::AsyncWriteExt::shutdown(wr).await?;
            }
            std::io::Result::Ok(())
        }))
        .await;
        if !matches!(res, Ok(Ok(()))) || d.close.is_some() {
            return;
        }
    }
}

/// Pings every connection each heartbeat and closes those silent for 2.5
/// heartbeats. One loop for the node: idle connections own no timers.
pub async fn heartbeat_loop(app: Arc<App>) {
    let every = Duration::from_secs(app.config.heartbeat);
    let silent_after = app.config.heartbeat * 5 / 2;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = app.uptime_secs();
        for out in app.conns.all() {
            if now.saturating_sub(out.last_seen()) > silent_after {
                out.close(CLOSE_GOING_AWAY, "silent for too long");
            } else {
                out.ping();
            }
        }
    }
}

/// Asks every connection to close with 1001 (server going away).
pub fn close_all(app: &App) {
    for out in app.conns.all() {
        out.close(CLOSE_GOING_AWAY, "server going away");
    }
}

#[cfg(test)]
mod idle_size {
    use super::*;

    /// An idle connection is these two tasks; their size is most of what it
    /// costs. One-off steps are boxed to keep it so: this guards that.
    #[tokio::test]
    async fn connection_tasks_stay_small() {
        let dir = std::env::temp_dir().join(format!("probe-{}", crate::domain::random_id(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::open(&format!("sqlite://{}/p.db", dir.display()), 1)
            .await
            .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let broker = crate::broker::open("memory", tx).await.unwrap();
        let app = App::new(crate::Config::for_database("x"), store, broker);
        let (a, _b) = tokio::io::duplex(64);
        let f = serve(Arc::clone(&app), a, None);
        let writer = std::mem::size_of_val(&f);
        let out = Arc::new(Outbox::new(8, 0));
        let actor = Actor {
            tenant_id: "t".into(),
            user: crate::domain::auth::anonymous_user(),
            moderator: false,
            expires_at: 0,
        };
        let (r, _w) = tokio::io::split(tokio::io::duplex(64).0);
        let f = read_loop(
            Arc::clone(&app),
            1,
            actor,
            Arc::clone(&out),
            Arc::default(),
            app.usage.tenant("t"),
            frame::Reader::new(16),
            r,
        );
        let reader = std::mem::size_of_val(&f);
        assert!(
            writer <= 1024 && reader <= 1024,
            "writer {writer} B, reader {reader} B"
        );
    }
}
