//! Test harness: real servers on port 0 with a temporary database, and
//! minimal HTTP/1.1 and WebSocket clients written against the wire so the
//! tests see exactly what a client would.
#![allow(dead_code)]

pub mod receivers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const ADMIN_KEY: &str = "test-admin-key";

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "imagechat-test-{}",
        imagechat::domain::random_id(9)
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Set to a PostgreSQL URL to run every test against PostgreSQL: each server
/// then gets a database of its own on that server.
pub const POSTGRES_ENV: &str = "IMAGECHAT_TEST_POSTGRES";

/// A fresh, empty database URL: SQLite in a temporary folder, or a new
/// PostgreSQL database when `IMAGECHAT_TEST_POSTGRES` is set. A requested
/// PostgreSQL that cannot be reached fails the test: it never falls back.
pub async fn fresh_database() -> String {
    match std::env::var(POSTGRES_ENV) {
        Ok(admin_url) if !admin_url.is_empty() => fresh_postgres(&admin_url).await,
        _ => format!("sqlite://{}/test.db", temp_dir().display()),
    }
}

/// A new, empty database on the PostgreSQL server of `admin_url`.
pub async fn fresh_postgres(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = format!(
        "imagechat_test_{}",
        imagechat::domain::random_id(9)
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is unreachable: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database URL with a path");
    format!("{base}/{name}")
}

pub struct Server {
    pub addr: SocketAddr,
    pub db: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// A server with an operator key on a fresh database.
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut imagechat::Config)) -> Server {
        let db = fresh_database().await;
        Self::start_on(&db, f).await
    }

    pub async fn start_on(db: &str, f: impl FnOnce(&mut imagechat::Config)) -> Server {
        let mut cfg = imagechat::Config::for_database(db);
        cfg.admin_key = Some(ADMIN_KEY.into());
        cfg.uploads = format!("file://{}/uploads", temp_dir().display());
        f(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(imagechat::run(listener, cfg, async move {
            let _ = stopped.await;
        }));
        let mut s = Server {
            addr,
            db: db.to_owned(),
            stop: Some(stop),
            task: Some(task),
        };
        for _ in 0..200 {
            if let Ok(r) = s.try_http("GET", "/healthz", None, &[]).await {
                if r.status == 200 {
                    return s;
                }
            }
            if s.task.as_ref().is_some_and(|t| t.is_finished()) {
                let t = s.task.take().expect("task");
                panic!("the server stopped at start-up: {:?}", t.await);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server did not become healthy");
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Duration {
        let t0 = std::time::Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server run");
        }
        t0.elapsed()
    }

    pub async fn try_http(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Resp> {
        let stream = TcpStream::connect(self.addr).await?;
        http_on(
            stream,
            &self.addr.to_string(),
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            headers,
        )
        .await
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.try_http(method, path, body.as_ref(), headers)
            .await
            .expect("http request")
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Resp {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        http_on(
            stream,
            &self.addr.to_string(),
            method,
            path,
            Some(body.to_vec()),
            headers,
        )
        .await
        .expect("http request")
    }

    pub async fn authed(&self, method: &str, path: &str, body: Option<Value>, token: &str) -> Resp {
        let h = format!("Bearer {token}");
        self.http(method, path, body, &[("authorization", &h)])
            .await
    }

    pub async fn tenant(&self, anonymous: &str) -> (String, String) {
        let id = format!(
            "t-{}",
            imagechat::domain::random_id(6)
                .to_lowercase()
                .replace('_', "x")
        );
        let r = self
            .authed(
                "POST",
                "/api/v1/admin/tenants",
                Some(json!({"tenantId": id, "anonymous": anonymous})),
                ADMIN_KEY,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        (id, r.json()["secret"].as_str().expect("secret").to_owned())
    }

    pub async fn session(&self, tenant: &str, sso: Option<Value>) -> Resp {
        let mut body = json!({"tenantId": tenant});
        if let Some(s) = sso {
            body["sso"] = s;
        }
        self.http("POST", "/api/v1/sessions", Some(body), &[]).await
    }

    pub async fn token(&self, tenant: &str) -> String {
        let r = self.session(tenant, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().expect("token").to_owned()
    }

    pub async fn sso_token(&self, tenant: &str, secret: &str, user: Value) -> String {
        let r = self.session(tenant, Some(sso(secret, &user))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().expect("token").to_owned()
    }

    pub async fn create(&self, token: &str, url_id: &str, text: &str) -> Value {
        let r = self
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": url_id, "x": 10, "y": 20, "text": text})),
                token,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    pub async fn snapshot(&self, token: &str, url_id: &str) -> Value {
        let r = self
            .authed(
                "GET",
                &format!("/api/v1/chats?urlId={}", enc(url_id)),
                None,
                token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub async fn ws(&self, token: &str) -> Ws {
        let mut ws = Ws::connect(self.addr, None).await;
        ws.send(json!({"type": "hello", "token": token})).await;
        let m = ws.recv().await;
        assert_eq!(m["type"], "welcome", "{m}");
        ws
    }
}

pub fn sso(secret: &str, user: &Value) -> Value {
    let b = base64::engine::general_purpose::STANDARD.encode(user.to_string());
    let ts = imagechat::domain::now_ms();
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac");
    m.update(format!("{ts}{b}").as_bytes());
    json!({"userDataJSONBase64": b, "verificationHash": hex::encode(m.finalize().into_bytes()), "timestamp": ts})
}

/// `Authorization: Basic` for a tenant's credentials (`tenantId:secret`).
pub fn basic(tenant: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{tenant}:{secret}"))
    )
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// One request with `Connection: close`, reading the reply to EOF.
pub async fn http_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = &body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    if let Some(b) = &body {
        s.write_all(b).await?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 4 + n..];
    }
    out
}

/// A WebSocket client over any stream.
pub struct Ws {
    r: Box<dyn AsyncRead + Unpin + Send>,
    w: Box<dyn AsyncWrite + Unpin + Send>,
    pub inbox: VecDeque<Value>,
    pub frames: Vec<Vec<u8>>,
    pub closed: Option<u16>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, origin: Option<&str>) -> Ws {
        let s = TcpStream::connect(addr).await.expect("connect");
        Self::handshake(s, &addr.to_string(), origin).await
    }

    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        mut s: S,
        host: &str,
        origin: Option<&str>,
    ) -> Ws {
        let mut req = format!(
            "GET /api/v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(o) = origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write upgrade");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.expect("read upgrade");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        let (r, w) = tokio::io::split(s);
        Ws {
            r: Box::new(r),
            w: Box::new(w),
            inbox: VecDeque::new(),
            frames: Vec::new(),
            closed: None,
        }
    }

    pub async fn send_frame(&mut self, op: u8, payload: &[u8]) {
        let mut f = vec![0x80 | op];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask = [7u8, 1, 9, 3];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        let _ = self.w.write_all(&f).await;
    }

    /// Writes bytes as they are: hand-made frames.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes).await?;
        self.w.flush().await
    }

    pub async fn send(&mut self, v: Value) {
        self.send_frame(1, v.to_string().as_bytes()).await;
    }

    /// Reads one frame into the inbox; false once closed.
    async fn pump(&mut self) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let mut h = [0u8; 2];
        if self.r.read_exact(&mut h).await.is_err() {
            self.closed = Some(1006);
            return false;
        }
        let mut n = (h[1] & 0x7f) as u64;
        if n == 126 {
            let mut b = [0u8; 2];
            let _ = self.r.read_exact(&mut b).await;
            n = u16::from_be_bytes(b) as u64;
        } else if n == 127 {
            let mut b = [0u8; 8];
            let _ = self.r.read_exact(&mut b).await;
            n = u64::from_be_bytes(b);
        }
        assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
        let mut p = vec![0u8; n as usize];
        if self.r.read_exact(&mut p).await.is_err() {
            self.closed = Some(1006);
            return false;
        }
        match h[0] & 0x0f {
            1 => {
                let v: Value = serde_json::from_slice(&p).expect("server frames are JSON");
                match v {
                    Value::Array(items) => self.inbox.extend(items),
                    other => self.inbox.push_back(other),
                }
                self.frames.push(p);
            }
            8 => {
                self.closed = Some(if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                });
                return false;
            }
            9 => self.send_frame(0xA, &p).await,
            _ => {}
        }
        true
    }

    /// The next message matching `pred` within 5 s; others stay queued.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        self.try_recv_where(&pred, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no matching message; queued: {:?}; closed: {:?}",
                    self.inbox, self.closed
                )
            })
    }

    pub async fn try_recv_where(
        &mut self,
        pred: &impl Fn(&Value) -> bool,
        wait: Duration,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.inbox.iter().position(pred) {
                return self.inbox.remove(i);
            }
            match tokio::time::timeout_at(deadline, self.pump()).await {
                Ok(true) => {}
                _ => return None,
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        self.recv_where(|_| true).await
    }

    /// The next event (of the three logged kinds) for `url_id`.
    pub async fn event(&mut self, url_id: &str) -> Value {
        let u = url_id.to_owned();
        self.recv_where(move |m| {
            m["urlId"] == u.as_str() && m.get("seq").is_some() && m["type"] != "subscribed"
        })
        .await
    }

    pub async fn subscribe(&mut self, url_id: &str, position: Option<(&str, u64)>) -> Value {
        let mut m = json!({"type": "subscribe", "id": "s", "urlId": url_id});
        if let Some((e, s)) = position {
            m["epoch"] = json!(e);
            m["seq"] = json!(s);
        }
        self.send(m).await;
        self.recv_where(|m| m["type"] == "subscribed" || m["type"] == "error")
            .await
    }

    /// Waits for the close frame; its code.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.closed.is_none() {
            if tokio::time::timeout_at(deadline, self.pump())
                .await
                .is_err()
            {
                break;
            }
        }
        self.closed
    }

    /// Asserts that no event for `url_id` arrives within `wait`.
    pub async fn quiet(&mut self, url_id: &str, wait: Duration) {
        let u = url_id.to_owned();
        let got = self
            .try_recv_where(
                &move |m: &Value| {
                    m["urlId"] == u.as_str() && m.get("seq").is_some() && m["type"] != "subscribed"
                },
                wait,
            )
            .await;
        assert!(got.is_none(), "unexpected event {got:?}");
    }
}
