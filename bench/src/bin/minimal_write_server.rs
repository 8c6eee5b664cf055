//! The floor for imagechat's write path: the least an axum + SQLite server
//! can do for `POST /api/v1/chats`, driven by the same generator
//! (`imagechat-bench write --url …`) as imagechat.
//!
//! Per write it parses the JSON body, checks that a Bearer token is present
//! (without verifying it), inserts one row holding about what imagechat
//! stores for a new chat (its chat, first comment and logged event) in one
//! transaction (an autocommit `INSERT … RETURNING`), and answers `201` with
//! the chat and a `seq`. No tenant, no session check, no per-image seq, no
//! fan-out, no rate limits, no usage counting. SQLite is set up as imagechat
//! sets it up: WAL, `synchronous = NORMAL`, one writer connection, automatic
//! checkpoints off and a passive checkpoint every second off the write path.
//!
//! It is also the floor for uploads (`imagechat-bench upload`):
//! `POST /api/v1/uploads` reads the body (at most 10 MiB), takes a PNG's
//! size from its header without decoding anything, and stores the body as
//! imagechat's file storage does (a temporary file, flushed, renamed into
//! place) before answering `201`.
//!
//! `POST /api/v1/sessions` answers a dummy token; `GET /healthz` answers
//! `ok`. SIGTERM or SIGINT stops it.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

#[derive(Parser)]
#[command(
    name = "minimal_write_server",
    about = "The least an axum + SQLite server can do per chat write: the floor imagechat's writes are measured against"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port and prints it)
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// SQLite database file (sqlite://PATH or PATH), created if missing
    #[arg(long, default_value = "minimal.db")]
    database: String,
}

struct App {
    writer: SqlitePool,
    next: AtomicU64,
    /// Where uploads go: `uploads/` beside the database.
    uploads: std::path::PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateChat {
    url_id: String,
    x: f64,
    y: f64,
    text: String,
    #[serde(default)]
    broadcast_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User<'a> {
    id: &'a str,
    name: &'a str,
    anonymous: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Comment<'a> {
    id: &'a str,
    user: &'a User<'a>,
    text: &'a str,
    created_at: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Chat<'a> {
    id: &'a str,
    url_id: &'a str,
    x: f64,
    y: f64,
    resolved: bool,
    user: &'a User<'a>,
    created_at: i64,
    comments: [Comment<'a>; 1],
}

/// The logged event: what imagechat keeps in its event log and sends to
/// viewers for a new chat.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    r#type: &'a str,
    url_id: &'a str,
    broadcast_id: Option<&'a str>,
    chat: &'a Chat<'a>,
}

#[derive(Serialize)]
struct Answer<'a> {
    chat: &'a Chat<'a>,
    seq: i64,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS chats (
    id         TEXT NOT NULL,
    url_id     TEXT NOT NULL,
    x          REAL NOT NULL,
    y          REAL NOT NULL,
    user_id    TEXT NOT NULL,
    user_json  TEXT NOT NULL,
    text       TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_at INTEGER NOT NULL
)";

fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"error":{}}}"#, serde_json::Value::from(msg)),
    )
        .into_response()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn session(State(app): State<Arc<App>>) -> Response {
    let n = app.next.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            r#"{{"token":"minimal-session-{n}","expiresAt":{}}}"#,
            now_ms()
        ),
    )
        .into_response()
}

async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Json<CreateChat>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")));
    if bearer.is_none() {
        return error(StatusCode::UNAUTHORIZED, "a Bearer token is required");
    }
    let Json(c) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if c.url_id.is_empty()
        || c.url_id.len() > 1024
        || c.text.is_empty()
        || c.text.len() > 10_000
        || !c.x.is_finite()
        || !c.y.is_finite()
        || c.broadcast_id.as_ref().is_some_and(|b| b.len() > 64)
    {
        return error(StatusCode::BAD_REQUEST, "invalid chat");
    }
    let at = now_ms();
    let n = app.next.fetch_add(1, Ordering::Relaxed);
    let id = format!("c{at:x}{n:08x}");
    let comment_id = format!("m{at:x}{n:08x}");
    let user = User {
        id: "anon-0123456789abcdef",
        name: "Anonymous",
        anonymous: true,
    };
    let chat = Chat {
        id: &id,
        url_id: &c.url_id,
        x: c.x,
        y: c.y,
        resolved: false,
        user: &user,
        created_at: at,
        comments: [Comment {
            id: &comment_id,
            user: &user,
            text: &c.text,
            created_at: at,
        }],
    };
    let (Ok(user_json), Ok(event)) = (
        serde_json::to_string(&user),
        serde_json::to_string(&Event {
            r#type: "new-image-chat",
            url_id: &c.url_id,
            broadcast_id: c.broadcast_id.as_deref(),
            chat: &chat,
        }),
    ) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode");
    };
    let row = sqlx::query(
        "INSERT INTO chats (id, url_id, x, y, user_id, user_json, text, event, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING rowid",
    )
    .bind(&id)
    .bind(&c.url_id)
    .bind(c.x)
    .bind(c.y)
    .bind(user.id)
    .bind(&user_json)
    .bind(&c.text)
    .bind(&event)
    .bind(at)
    .fetch_one(&app.writer)
    .await;
    let seq: i64 = match row.and_then(|r| r.try_get(0)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("minimal_write_server: insert failed: {e}");
            return error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
        }
    };
    match serde_json::to_string(&Answer { chat: &chat, seq }) {
        Ok(b) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode"),
    }
}

/// Stores an upload's body as it came; its size from a PNG header.
async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if headers.get(header::AUTHORIZATION).is_none() {
        return error(StatusCode::UNAUTHORIZED, "a Bearer token is required");
    }
    let Ok(bytes) = axum::body::to_bytes(body, 10 * 1024 * 1024).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "too large");
    };
    let (Some(w), Some(h)) = (bytes.get(16..20), bytes.get(20..24)) else {
        return error(StatusCode::BAD_REQUEST, "not a PNG");
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (w, h) = (be(w), be(h));
    let n = app.next.fetch_add(1, Ordering::Relaxed);
    let dir = app.uploads.clone();
    let stored = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{n}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(n.to_string()))?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await;
    match stored {
        Ok(Ok(())) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"upload":{{"id":"u{n}","width":{w},"height":{h}}}}}"#),
        )
            .into_response(),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
    }
}

async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            eprintln!("minimal_write_server: checkpoint failed: {e}");
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let path = cli
        .database
        .strip_prefix("sqlite://")
        .unwrap_or(&cli.database);
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", "0");
    let one = || {
        SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
    };
    // One writer, as in imagechat: SQLite never arbitrates between writers.
    let writer = one().connect_with(opts.clone()).await?;
    sqlx::query(SCHEMA).execute(&writer).await?;
    let checkpointer = one().connect_with(opts).await?;
    tokio::spawn(checkpoints(checkpointer));

    let uploads = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("uploads");
    let app = Arc::new(App {
        writer,
        next: AtomicU64::new(0),
        uploads,
    });
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/sessions", post(session))
        .route("/api/v1/chats", post(create))
        .route("/api/v1/uploads", post(upload))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = axum::serve(listener, router) => r?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("minimal_write_server: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minimal_write_server: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
