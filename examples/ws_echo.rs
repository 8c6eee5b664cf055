//! An echo server over imagechat's own WebSocket handshake check and
//! framing (`imagechat::ws::handshake`, `imagechat::ws::frame`), for the
//! Autobahn|Testsuite fuzzing client (`scripts/autobahn.sh`), whose cases
//! expect every message echoed. Never part of the product's router.
//!
//!   cargo run --release --example ws_echo -- 127.0.0.1:9001

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use imagechat::ws::frame::{self, Incoming, OP_BINARY, OP_PONG, OP_TEXT};

/// Autobahn's case 9 sends messages of up to 16 MiB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

async fn upgrade(mut req: Request) -> Response {
    let accept = match imagechat::ws::handshake(&req) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            echo(TokioIo::new(up)).await;
        }
    });
    imagechat::ws::switching_protocols(&accept)
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: S) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut reader = frame::Reader::new(MAX_MESSAGE);
    loop {
        let sent = match reader.read(&mut rd).await {
            Ok(Incoming::Text(t)) => frame::write_frame(&mut wr, OP_TEXT, t.as_bytes()).await,
            Ok(Incoming::Binary(b)) => frame::write_frame(&mut wr, OP_BINARY, &b).await,
            Ok(Incoming::Ping(p)) => frame::write_frame(&mut wr, OP_PONG, &p).await,
            Ok(Incoming::Pong) => Ok(()),
            Ok(Incoming::Close(_)) => {
                let _ = frame::write_close(&mut wr, 1000, "").await;
                return;
            }
            Err(e) => {
                if let Some(code) = e.close_code() {
                    let _ = frame::write_close(&mut wr, code.into(), e.close_reason()).await;
                }
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ws_echo listening on {}", listener.local_addr()?);
    let app = Arc::new(axum::Router::new().fallback(upgrade));
    loop {
        let (stream, _) = listener.accept().await?;
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new((*app).clone());
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
