//! One connection's side of the conversation: `hello`, then every client
//! message (subscribe, unsubscribe, ping), within the inbound limits.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{self, Incoming, OP_PONG, OP_TEXT};
use crate::app::{session, App};
use crate::broker::ImageKey;
use crate::domain::{validate, Actor, Tenant};
use crate::fanout::{ConnId, Subscriber};
use crate::protocol::{ClientMessage, CloseCode, ServerMessage};
use crate::usage::TenantLive;

pub const MAX_SUBSCRIPTIONS: usize = 100;
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Client messages per second a connection may send on average, and at once.
const INBOUND_PER_SEC: f64 = 50.0;
const INBOUND_BURST: f64 = 200.0;

/// One client's subscriptions; shared so the connection can clean up after
/// its reader, however the reader ended.
#[derive(Default)]
pub(super) struct ConnState {
    pub(super) subs: Mutex<HashSet<ImageKey>>,
}

pub(super) fn error_message(id: &Option<serde_json::Value>, code: &str, message: &str) -> Bytes {
    ServerMessage::Error { id, code, message }.to_bytes()
}

async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, code: &str, message: &str, close: CloseCode) {
    let _ = frame::write_frame(w, OP_TEXT, &error_message(&None, code, message)).await;
    let _ = frame::write_close(w, close.into(), message).await;
}

/// Waits for `hello` and checks it; on refusal the connection is closed here.
pub(super) async fn hello<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
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
                    CloseCode::Unauthorized,
                )
                .await;
                return None;
            }
            Ok(Ok(Incoming::Text(t))) => break t,
            Ok(Ok(Incoming::Ping(p))) => {
                let _ = frame::write_frame(wr, OP_PONG, &p).await;
            }
            Ok(Ok(Incoming::Pong)) => {}
            Ok(Ok(Incoming::Binary(_))) => break String::new(),
            Ok(Ok(Incoming::Close(_))) => {
                let _ = frame::write_close(wr, CloseCode::Normal.into(), "").await;
                return None;
            }
            Ok(Err(e)) => {
                if let Some(code) = e.close_code() {
                    let _ = frame::write_close(wr, code.into(), &e.to_string()).await;
                }
                return None;
            }
        }
    };
    // Anything but a well-formed hello is refused, with what was wrong.
    let token = match ClientMessage::parse(&text) {
        Ok(ClientMessage::Hello { token }) => token,
        Ok(_) => {
            let why = "the first message must be hello";
            refuse(wr, "unauthorized", why, CloseCode::Unauthorized).await;
            return None;
        }
        Err(bad) => {
            refuse(wr, "unauthorized", &bad.message, CloseCode::Unauthorized).await;
            return None;
        }
    };
    // The session path REST uses: a storage failure is "try again" (1013),
    // never "your session is invalid" (4401), which makes the widget drop it.
    match session::authenticate(app, Some(&token), origin, || {}).await {
        Ok(s) => Some((s.actor, s.tenant)),
        Err(e) => {
            refuse(wr, e.code(), e.message(), e.close_code()).await;
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn read_loop<R: AsyncRead + Unpin>(
    app: Arc<App>,
    id: ConnId,
    actor: Actor,
    out: super::CloseOnExit,
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
                    Some(code) => out.close(code, e.close_reason()),
                    None => out.close(CloseCode::Silent, ""),
                }
                return;
            }
        };
        out.touch(app.uptime_secs());
        let text = match msg {
            Incoming::Text(t) => t,
            Incoming::Ping(p) => {
                out.pong(&p);
                continue;
            }
            Incoming::Pong => continue,
            Incoming::Close(_) => {
                out.close(CloseCode::Normal, "");
                return;
            }
            Incoming::Binary(_) => {
                out.push(&error_message(
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
            out.push(&error_message(
                &None,
                "rate_limited",
                "too many messages; slow down",
            ));
            continue;
        }
        budget -= 1.0;
        match ClientMessage::parse(&text) {
            Err(bad) => {
                out.push(&error_message(&bad.id, "invalid_message", &bad.message));
            }
            Ok(ClientMessage::Ping) => {
                out.push(&ServerMessage::Pong.to_bytes());
            }
            Ok(ClientMessage::Hello { .. }) => {
                out.push(&error_message(
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
                    out.push(&error_message(&rid, "invalid_message", &e.to_string()));
                    continue;
                }
                let key = ImageKey::new(&actor.tenant_id, &url_id);
                let added = {
                    let mut subs = state.subs.lock().unwrap_or_else(|p| p.into_inner());
                    if !subs.contains(&key) && subs.len() >= MAX_SUBSCRIPTIONS {
                        None
                    } else {
                        Some(subs.insert(key.clone()))
                    }
                };
                let Some(added) = added else {
                    out.push(&error_message(
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
                let sub: Arc<dyn Subscriber> = Arc::clone(&out) as Arc<dyn Subscriber>;
                if let Err(e) = Box::pin(app.hub.subscribe(id, &sub, &key, &rid, resume)).await {
                    app.metrics.store_error();
                    tracing::warn!(error = %e, "subscribe failed");
                    if let Ok(mut subs) = state.subs.lock() {
                        if subs.remove(&key) {
                            live.subscriptions.fetch_sub(1, Relaxed);
                        }
                    }
                    out.push(&error_message(
                        &rid,
                        "unavailable",
                        "storage is unavailable; try again",
                    ));
                }
            }
            Ok(ClientMessage::Unsubscribe { id: rid, url_id }) => {
                let key = ImageKey::new(&actor.tenant_id, &url_id);
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
                    &ServerMessage::Unsubscribed {
                        id: &rid,
                        url_id: &url_id,
                    }
                    .to_bytes(),
                );
            }
        }
    }
}
