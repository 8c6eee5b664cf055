//! The WebSocket endpoint `GET /api/v1/ws`: handshake, `hello`, then one
//! reader task (client messages) and one writer loop (what the connection's
//! `Outbox` could not write at once).
//!
//! A plain TCP connection is taken back from the HTTP layer after the
//! upgrade, so the hub's pushes can write to its socket directly; other
//! transports (TLS) go through the writer loop for every frame.
//!
//! An idle connection holds two small tasks and no buffers; heartbeats come
//! from one node-wide ticker (`heartbeat_loop`), not a timer per connection.

mod client;
pub mod frame;
pub mod outbox;
mod writer;

pub use client::MAX_SUBSCRIPTIONS;
use client::{hello, read_loop, ConnState};
use writer::{send_loop, write_loop};

use std::io::Cursor;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::app::{limits, App};
use crate::broker::ImageKey;
use crate::error::AppError;
use crate::protocol::{CloseCode, ServerMessage};
use crate::usage::TenantLive;
use frame::OP_TEXT;
use outbox::Outbox;

/// Largest inbound message; bigger ones close the connection with 1009.
pub const MAX_INBOUND: usize = 16 * 1024;
/// Largest message before `hello` (a hello is a token and a few bytes), so
/// a connection that never logs in holds little memory.
pub const MAX_HELLO: usize = 1024;
/// How long a closing connection keeps reading (and discarding) what the
/// peer still sends after the close frame went out, so the socket is not
/// dropped with unread input, which would make the kernel answer with a
/// reset that can destroy the close frame (RFC 6455 §7.1.1).
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// The WebSocket endpoint (RFC 6455); the messages are in docs/protocol.md.
#[utoipa::path(get, path = "/api/v1/ws", tag = "node",
    responses((status = 101, description = "Switching to WebSocket"),
        (status = 400, body = crate::protocol::ErrorBody, description = "not a WebSocket handshake"),
        (status = 429, body = crate::protocol::ErrorBody, description = "the client address holds `--websockets-per-address` open WebSockets (`Retry-After`)"),
        (status = 503, body = crate::protocol::ErrorBody, description = "the connection limit is reached")))]
pub async fn upgrade(State(app): State<Arc<App>>, mut req: Request) -> Response {
    let accept = match handshake(&req) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let client = limits::client_key(
        req.extensions().get::<limits::Peer>(),
        req.headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok()),
        app.config.trusted_proxies,
    );
    // Held for as long as the socket is open.
    let Some(slot) = app.addresses.websockets.open(client) else {
        return AppError::too_many_sockets().into_response();
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(up) => serve_upgraded(app, up, origin).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    switching_protocols(&accept)
}

/// The `101 Switching Protocols` answer for a checked handshake.
pub fn switching_protocols(accept: &str) -> Response {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = res.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// Checks an opening handshake (RFC 6455 §4.2.1): the
/// `Sec-WebSocket-Accept` to answer with, or the error answer (400; a wrong
/// version also names the one spoken, §4.2.2).
pub fn handshake(req: &Request) -> Result<String, Box<Response>> {
    let refuse = |why: &'static str| Box::new(AppError::invalid(None, why).into_response());
    // An HTTP/1.1 (or later) GET with a Host.
    if req.version() < axum::http::Version::HTTP_11 {
        return Err(refuse("a WebSocket handshake needs HTTP/1.1"));
    }
    let h = req.headers();
    if !h.contains_key(header::HOST) {
        return Err(refuse("the handshake has no Host"));
    }
    let has = |name: header::HeaderName, want: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
        })
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err(refuse("this endpoint speaks WebSocket only"));
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        let mut res = refuse("WebSocket version 13 is required");
        res.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(res);
    }
    // §4.1: the key is 16 random bytes in base64.
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|b| b.len() == 16)
        });
    let Some(key) = key else {
        return Err(refuse("Sec-WebSocket-Key must be 16 bytes in base64"));
    };
    Ok(frame::accept_key(key))
}

/// The write side of a connection: a TCP socket, which the outbox may write
/// to directly, or any other stream, which only the writer loop writes.
trait Sink: AsyncWrite + Unpin + Send + 'static {
    fn into_socket(self) -> Result<OwnedWriteHalf, Self>
    where
        Self: Sized;
}

impl Sink for OwnedWriteHalf {
    fn into_socket(self) -> Result<OwnedWriteHalf, Self> {
        Ok(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Send + 'static> Sink for tokio::io::WriteHalf<T> {
    fn into_socket(self) -> Result<OwnedWriteHalf, Self> {
        Err(self)
    }
}

/// Takes the TCP socket back from the HTTP layer when that is what carries
/// the connection (bytes the client sent after its request come first).
async fn serve_upgraded(app: Arc<App>, up: Upgraded, origin: Option<String>) {
    match up.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (rd, wr) = parts.io.into_inner().into_split();
            // A copy: `read_buf` is a view of hyper's whole read buffer,
            // which the connection would otherwise keep for its lifetime.
            let early = Bytes::copy_from_slice(&parts.read_buf);
            drop(parts.read_buf);
            let rd = Cursor::new(early).chain(rd);
            serve(app, rd, wr, origin).await
        }
        Err(up) => {
            let (rd, wr) = tokio::io::split(TokioIo::new(up));
            serve(app, rd, wr, origin).await
        }
    }
}

async fn serve<R, W>(app: Arc<App>, mut rd: R, mut wr: W, origin: Option<String>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: Sink,
{
    let mut reader = frame::Reader::new(MAX_HELLO);
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
        Box::pin(linger(rd, wr)).await;
        return;
    };
    reader.set_max_message(MAX_INBOUND);
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
    let live = app.usage.tenant(&tenant.id);
    let (socket, mut wr) = match wr.into_socket() {
        Ok(s) => (Some(Arc::new(s)), None),
        Err(w) => (None, Some(w)),
    };
    let out = Arc::new(Outbox::new(
        app.config.outbox_capacity as usize,
        app.uptime_secs(),
        socket,
        Some(Arc::clone(&live) as Arc<dyn outbox::Meter>),
    ));
    live.connected();
    report_connections(&app, &tenant.id, &live);
    app.conns
        .add(id, Arc::clone(&out) as Arc<dyn crate::app::Connection>);
    // Notifications reach every connection of a signed-in user.
    let signed_in = (!actor.user.anonymous).then(|| actor.user.id.clone());
    if let Some(user) = &signed_in {
        app.hub.add_user(
            &tenant.id,
            user,
            id,
            Arc::clone(&out) as Arc<dyn crate::fanout::Subscriber>,
        );
    }
    let state = Arc::new(ConnState::default());
    // However the reader ends (a panic included), the connection closes
    // and is cleaned up at once, not at the next heartbeat sweep.
    let guard = CloseOnExit(Arc::clone(&out));
    let mut read_task = tokio::spawn(read_loop(
        Arc::clone(&app),
        id,
        actor,
        guard,
        Arc::clone(&state),
        Arc::clone(&live),
        reader,
        rd,
    ));
    let code = match &mut wr {
        Some(wr) => write_loop(&app, &out, wr).await,
        None => send_loop(&app, &out).await,
    };
    out.abandon();
    if code == Some(CloseCode::SlowConsumer) {
        app.metrics.slow_consumers.increment(1);
    }
    // The close frame is out and the write side shut: read what the peer
    // still sends until it closes too, for a short while (§7.1.1).
    let mut reader_done = false;
    if code.is_some() {
        drop(wr);
        reader_done = Box::pin(tokio::time::timeout(CLOSE_DRAIN, &mut read_task))
            .await
            .is_ok();
    }
    if !reader_done {
        read_task.abort();
        let _ = read_task.await;
    }
    let subs: Vec<ImageKey> = state
        .subs
        .lock()
        .map(|mut s| s.drain().collect())
        .unwrap_or_default();
    for key in &subs {
        Box::pin(app.hub.unsubscribe(id, key)).await;
    }
    if let Some(user) = &signed_in {
        app.hub.remove_user(&tenant.id, user, id);
    }
    live.subscriptions.fetch_sub(subs.len() as u64, Relaxed);
    live.disconnected();
    report_connections(&app, &tenant.id, &live);
    app.conns.remove(id);
}

/// The reader's handle on its connection's outbox: when the reader ends, in
/// any way, the connection is asked to close (the first reason given wins,
/// so a reader that closed with its own code keeps it).
pub(super) struct CloseOnExit(pub(super) Arc<Outbox>);

impl std::ops::Deref for CloseOnExit {
    type Target = Arc<Outbox>;
    fn deref(&self) -> &Arc<Outbox> {
        &self.0
    }
}

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close(CloseCode::InternalError, "");
    }
}

/// Ends a connection refused before `hello` completed: the close frame was
/// written; shut the write side, then read and discard what the peer still
/// sends (at most 64 KiB, for at most [`CLOSE_DRAIN`]) so the socket is not
/// dropped with unread input.
async fn linger<R, W>(mut rd: R, mut wr: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let _ = wr.shutdown().await;
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(
        CLOSE_DRAIN,
        tokio::io::copy(&mut (&mut rd).take(64 * 1024), &mut sink),
    )
    .await;
}

/// Usage metering of what a connection delivers, for its outbox.
impl outbox::Meter for TenantLive {
    fn delivered(&self, messages: u64, bytes: u64) {
        TenantLive::delivered(self, messages, bytes);
    }
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
                out.close(CloseCode::GoingAway, "silent for too long");
            } else {
                out.ping();
            }
        }
    }
}

/// Asks every connection to close with 1001 (server going away).
pub fn close_all(app: &App) {
    for out in app.conns.all() {
        out.close(CloseCode::GoingAway, "server going away");
    }
}

#[cfg(test)]
mod idle_size {
    use super::*;

    /// An idle connection is these two tasks; their size is most of what it
    /// costs. One-off steps are boxed to keep it so: this guards that.
    #[tokio::test]
    async fn connection_tasks_stay_small() {
        let (store, _dir, _) = crate::store::open_temp("probe").await;
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let broker = crate::broker::open("memory", tx).await.unwrap();
        let app = App::new(
            crate::Config::for_database("x"),
            store,
            broker,
            crate::upload::storage::temp(),
        );
        // The two kinds of connection: taken back as TCP, or any stream.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (_client, server) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (rd, wr) = server.unwrap().0.into_split();
        let rd = Cursor::new(Bytes::new()).chain(rd);
        let f = serve(Arc::clone(&app), rd, wr, None);
        let tcp_writer = std::mem::size_of_val(&f);
        let (r, w) = tokio::io::split(tokio::io::duplex(64).0);
        let f = serve(Arc::clone(&app), r, w, None);
        let writer = std::mem::size_of_val(&f).max(tcp_writer);
        let out = Arc::new(Outbox::new(8, 0, None, None));
        let actor = crate::domain::Actor {
            tenant_id: "t".into(),
            user: crate::domain::auth::anonymous_user(),
            moderator: false,
            expires_at: 0,
        };
        let (r, _w) = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap()
            .into_split();
        let f = read_loop(
            Arc::clone(&app),
            1,
            actor,
            CloseOnExit(Arc::clone(&out)),
            Arc::default(),
            app.usage.tenant("t"),
            frame::Reader::new(16),
            Cursor::new(Bytes::new()).chain(r),
        );
        let reader = std::mem::size_of_val(&f);
        assert!(
            writer <= 1024 && reader <= 1024,
            "writer {writer} B, reader {reader} B"
        );
    }
}
