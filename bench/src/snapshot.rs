//! `snapshot`: the cost of reading one image's snapshot
//! (`GET /api/v1/chats?urlId=`), the answer every page load and every
//! resume answered `recovered: false` asks for (imagechat only).
//!
//! Set-up writes one image with `chats` chats of `comments` comments each
//! (a create, then replies), through several keep-alive connections. Then:
//!
//! - `cpu`: `requests` reads over `connections` keep-alive connections, each
//!   connection one request after the other: the server's CPU per read and
//!   the answer latency.
//! - `storm`: `storm_clients` clients released at the same instant each open
//!   a new TCP connection and read the snapshot, as after a restart where
//!   every viewer reloads: the time from the first connect until the last
//!   answer was read, and each client's latency (its connect included).
//!
//! The first answer is checked in full (the image, its seq, every chat
//! created and each chat's comments); every answer must be `200` with the
//! same length, and every `CHECK_EVERY`th is checked in full again.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;

use crate::http::{HttpConn, Resp};
use crate::report::opt;
use crate::scenario::{session, TEXT};
use crate::stats::Hist;
use crate::sub::percent_encode;
use crate::util::{self, err, proc_cpu_seconds, progress, progress_done, Result};

/// A set-up write or a `cpu` read without an answer this long after it was
/// sent fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A storm client without its answer this long after it was released fails.
const STORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Every this many answers one is parsed and checked in full.
const CHECK_EVERY: usize = 100;
/// Error messages kept per phase.
const MAX_ERRORS: usize = 5;

#[derive(Clone)]
pub struct SnapshotCfg {
    pub addr: SocketAddr,
    pub tenant: String,
    pub pid: Option<u32>,
    /// Chats on the image.
    pub chats: usize,
    /// Comments per chat, the chat's first one included.
    pub comments: usize,
    /// Connections (each its own anonymous session) writing the set-up.
    pub setup_connections: usize,
    /// Reads of the `cpu` phase, and the keep-alive connections they use.
    pub requests: usize,
    pub connections: usize,
    /// Clients of the `storm` phase (0: no storm).
    pub storm_clients: usize,
    /// A label for progress lines and the report (`cached`, `uncached`).
    pub label: String,
}

/// The `cpu` phase, measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadPhase {
    pub requests: usize,
    pub connections: usize,
    /// Answered 200 with the snapshot expected.
    pub answered: u64,
    /// Anything else: another status, another length or content, no answer.
    pub failed: u64,
    pub duration_s: f64,
    pub requests_per_sec: f64,
    /// From the request written to the answer read.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_request: Option<f64>,
    pub generator_cpu_cores: f64,
    /// Share of all the machine's CPU time that was busy over the phase.
    pub machine_busy: f64,
    pub errors: Vec<String>,
}

/// The `storm` phase, measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StormPhase {
    pub clients: usize,
    pub answered: u64,
    pub failed: u64,
    /// From the first client starting to connect until the last answer read.
    pub wall_ms: f64,
    /// Per client, from starting to connect until its answer was read.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Per client, the TCP connect alone (a dropped SYN shows as ≥ 1 s).
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_request: Option<f64>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotReport {
    pub scenario: String,
    pub label: String,
    pub chats: usize,
    pub comments_per_chat: usize,
    /// The image's seq after the set-up (one per write).
    pub seq: u64,
    /// Bytes of the snapshot's JSON body.
    pub body_bytes: usize,
    pub setup_writes: u64,
    pub setup_s: f64,
    pub cpu: ReadPhase,
    pub storm: Option<StormPhase>,
    pub errors: Vec<String>,
    pub ok: bool,
}

/// What every answer must be.
struct Expect {
    url_id: String,
    seq: u64,
    ids: HashSet<String>,
    comments: usize,
    /// The first answer's length: every other answer must have it.
    len: usize,
}

/// The image written by the set-up, and the sessions that wrote it.
struct Written {
    url_id: String,
    ids: HashSet<String>,
    seq: u64,
    writes: u64,
    tokens: Vec<Arc<str>>,
}

#[derive(Deserialize)]
struct Snap {
    #[serde(rename = "urlId")]
    url_id: String,
    seq: u64,
    chats: Vec<SnapChat>,
}

#[derive(Deserialize)]
struct SnapChat {
    id: String,
    comments: Vec<IgnoredAny>,
}

fn note(errors: &Mutex<Vec<String>>, e: String) {
    if let Ok(mut v) = errors.lock() {
        if v.len() < MAX_ERRORS {
            v.push(e);
        }
    }
}

fn taken(errors: &Mutex<Vec<String>>) -> Vec<String> {
    errors
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Prints `label: what, done of total` every half second until aborted.
fn ticker(
    label: String,
    what: &'static str,
    done: Arc<AtomicUsize>,
    total: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            progress(&format!(
                "{label}: {what}, {} of {total}",
                done.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// Parses an answer and checks it holds exactly the image written.
fn check_full(body: &[u8], e: &Expect) -> std::result::Result<(), String> {
    let s: Snap = serde_json::from_slice(body).map_err(|x| format!("unreadable snapshot: {x}"))?;
    if s.url_id != e.url_id {
        return Err(format!("snapshot of {:?}, not {:?}", s.url_id, e.url_id));
    }
    if s.seq != e.seq {
        return Err(format!(
            "snapshot at seq {}, the set-up's writes ended at {}",
            s.seq, e.seq
        ));
    }
    if s.chats.len() != e.ids.len() {
        return Err(format!(
            "{} chats in the snapshot, {} created",
            s.chats.len(),
            e.ids.len()
        ));
    }
    let mut seen = HashSet::with_capacity(s.chats.len());
    for c in &s.chats {
        if !e.ids.contains(&c.id) || !seen.insert(c.id.as_str()) {
            return Err(format!(
                "chat {} is not one of those created, or twice",
                c.id
            ));
        }
        if c.comments.len() != e.comments {
            return Err(format!(
                "chat {} has {} comments, {} were written",
                c.id,
                c.comments.len(),
                e.comments
            ));
        }
    }
    Ok(())
}

/// Checks one answer: 200 and the expected length, and with `full` the
/// content too.
fn check(r: &Resp, e: &Expect, full: bool) -> std::result::Result<(), String> {
    if r.status != 200 {
        return Err(format!(
            "snapshot answered {}: {}",
            r.status,
            snippet(&r.body)
        ));
    }
    if r.body.len() != e.len {
        return Err(format!(
            "snapshot of {} bytes, the first one had {}",
            r.body.len(),
            e.len
        ));
    }
    if full {
        check_full(&r.body, e)?;
    }
    Ok(())
}

/// A new keep-alive connection, with the timeout.
async fn connect(addr: SocketAddr) -> Result<HttpConn> {
    Ok(
        tokio::time::timeout(REQUEST_TIMEOUT, HttpConn::connect(addr))
            .await
            .map_err(|_| format!("no connection within {} s", REQUEST_TIMEOUT.as_secs()))??,
    )
}

/// One request with the timeout; the answer's body must be JSON.
async fn post(
    conn: &mut HttpConn,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let b = body.to_string();
    let r = tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.request("POST", path, Some(token), Some(b.as_bytes())),
    )
    .await
    .map_err(|_| {
        format!(
            "POST {path}: no answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )
    })??;
    if r.status != 201 {
        return err(format!(
            "POST {path} answered {}: {}",
            r.status,
            snippet(&r.body)
        ));
    }
    Ok(serde_json::from_slice(&r.body)?)
}

/// Writes one chat and its replies; returns its id and the last seq.
async fn write_chat(
    conn: &mut HttpConn,
    token: &str,
    url_id: &str,
    i: usize,
    comments: usize,
) -> Result<(String, u64)> {
    let (x, y) = (
        2.5 + (i % 20) as f64 * 5.0,
        2.5 + (i / 20 % 20) as f64 * 5.0,
    );
    let a = post(
        conn,
        "/api/v1/chats",
        token,
        &serde_json::json!({"urlId": url_id, "x": x, "y": y, "text": TEXT}),
    )
    .await?;
    let id = a["chat"]["id"]
        .as_str()
        .ok_or("create answer without chat.id")?
        .to_owned();
    let mut seq = a["seq"].as_u64().ok_or("create answer without seq")?;
    let path = format!("/api/v1/chats/{}/comments", percent_encode(&id));
    for _ in 1..comments {
        let a = post(conn, &path, token, &serde_json::json!({ "text": TEXT })).await?;
        seq = seq.max(a["seq"].as_u64().ok_or("comment answer without seq")?);
    }
    Ok((id, seq))
}

/// The set-up: sessions, then the chats, `setup_connections` at once.
async fn setup(cfg: &SnapshotCfg) -> Result<Written> {
    let mut tokens = Vec::with_capacity(cfg.setup_connections);
    for _ in 0..cfg.setup_connections {
        let s = tokio::time::timeout(REQUEST_TIMEOUT, session(cfg.addr, &cfg.tenant))
            .await
            .map_err(|_| "POST /api/v1/sessions: no answer in time")??;
        tokens.push(s);
    }
    let url_id: Arc<str> = format!("bench-snapshot-{}", util::run_tag()).into();
    let next = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tick = ticker(
        cfg.label.clone(),
        "set-up, chats written",
        written.clone(),
        cfg.chats,
    );
    let mut set = tokio::task::JoinSet::new();
    for token in tokens.clone() {
        let (next, written, stop) = (next.clone(), written.clone(), stop.clone());
        let url_id = url_id.clone();
        let (addr, chats, comments) = (cfg.addr, cfg.chats, cfg.comments);
        set.spawn(async move {
            let mut conn = connect(addr).await?;
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= chats || stop.load(Ordering::Relaxed) {
                    break;
                }
                match write_chat(&mut conn, &token, &url_id, i, comments).await {
                    Ok(c) => {
                        written.fetch_add(1, Ordering::Relaxed);
                        done.push(c);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok::<_, util::Error>(done)
        });
    }
    let mut ids = HashSet::with_capacity(cfg.chats);
    let mut seq = 0;
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(done)) => {
                for (id, s) in done {
                    seq = seq.max(s);
                    ids.insert(id);
                }
            }
            Ok(Err(e)) => {
                first_err.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                first_err.get_or_insert_with(|| e.to_string());
            }
        }
    }
    tick.abort();
    progress_done();
    if let Some(e) = first_err {
        return err(format!("set-up: {e}"));
    }
    if ids.len() != cfg.chats {
        return err(format!(
            "set-up: {} distinct chats created of {}",
            ids.len(),
            cfg.chats
        ));
    }
    Ok(Written {
        url_id: url_id.to_string(),
        ids,
        seq,
        writes: (cfg.chats * cfg.comments) as u64,
        tokens,
    })
}

/// One read on a keep-alive connection, with the timeout.
async fn read(conn: &mut HttpConn, path: &str, token: &str) -> Result<Resp> {
    Ok(tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.request("GET", path, Some(token), None),
    )
    .await
    .map_err(|_| format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))??)
}

/// `cpu`: `requests` reads over `conns` (already opened and used once).
async fn cpu_phase(
    cfg: &SnapshotCfg,
    conns: Vec<HttpConn>,
    path: Arc<str>,
    tokens: &[Arc<str>],
    e: Arc<Expect>,
) -> ReadPhase {
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let n = cfg.requests;
    let tick = ticker(cfg.label.clone(), "cpu, reads", finished.clone(), n);
    let cpu0 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    let usage0 = util::Usage::now();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (w, conn) in conns.into_iter().enumerate() {
        let (next, finished) = (next.clone(), finished.clone());
        let (errors, path, e) = (errors.clone(), path.clone(), e.clone());
        let (addr, token) = (cfg.addr, tokens[w % tokens.len()].clone());
        set.spawn(async move {
            let mut conn = Some(conn);
            let mut hist = Hist::default();
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => match connect(addr).await {
                        Ok(c) => c,
                        Err(x) => {
                            failed += 1;
                            note(&errors, format!("connect: {x}"));
                            continue;
                        }
                    },
                };
                let sent = Instant::now();
                let r = read(&mut c, &path, &token).await;
                finished.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) => {
                        hist.record(sent.elapsed().as_micros() as u64);
                        match check(&r, &e, i % CHECK_EVERY == 0) {
                            Ok(()) => ok += 1,
                            Err(x) => {
                                failed += 1;
                                note(&errors, x);
                            }
                        }
                        conn = Some(c);
                    }
                    Err(x) => {
                        failed += 1;
                        note(&errors, format!("read: {x}"));
                    }
                }
            }
            (hist, ok, failed)
        });
    }
    let mut hist = Hist::default();
    let mut r = ReadPhase {
        requests: n,
        connections: cfg.connections,
        ..ReadPhase::default()
    };
    while let Some(j) = set.join_next().await {
        match j {
            Ok((h, ok, failed)) => {
                hist.merge(&h);
                r.answered += ok;
                r.failed += failed;
            }
            Err(x) => {
                r.failed += 1;
                note(&errors, format!("read task: {x}"));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-6);
    let cpu1 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    tick.abort();
    progress_done();
    let (gen, busy) = util::Usage::now().since(&usage0, secs);
    let ms = |us: u64| us as f64 / 1000.0;
    r.duration_s = secs;
    r.requests_per_sec = r.answered as f64 / secs;
    r.p50_ms = ms(hist.quantile(0.5));
    r.p99_ms = ms(hist.quantile(0.99));
    r.max_ms = ms(hist.max);
    r.server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    r.server_cpu_us_per_request = r
        .server_cpu_s
        .filter(|_| r.answered > 0)
        .map(|c| c * 1e6 / r.answered as f64);
    r.generator_cpu_cores = gen;
    r.machine_busy = busy;
    r.errors = taken(&errors);
    r
}

/// What one storm client saw.
struct StormOne {
    begin: Instant,
    connected: Option<Instant>,
    end: Instant,
    outcome: std::result::Result<(), String>,
    /// The body, kept for a check in full after the storm.
    sample: Option<Vec<u8>>,
}

/// `storm`: every client released at once opens a new connection and reads.
async fn storm_phase(
    cfg: &SnapshotCfg,
    path: Arc<str>,
    tokens: &[Arc<str>],
    e: Arc<Expect>,
) -> Result<StormPhase> {
    let k = cfg.storm_clients;
    util::check_nofile(k + 64)?;
    let gate = Arc::new(Barrier::new(k + 1));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(k);
    for i in 0..k {
        let (gate, finished) = (gate.clone(), finished.clone());
        let (path, e) = (path.clone(), e.clone());
        let (addr, token) = (cfg.addr, tokens[i % tokens.len()].clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let begin = Instant::now();
            let mut connected = None;
            let r = tokio::time::timeout(STORM_TIMEOUT, async {
                let mut c = HttpConn::connect(addr).await?;
                connected = Some(Instant::now());
                c.request("GET", &path, Some(&token), None).await
            })
            .await;
            let end = Instant::now();
            finished.fetch_add(1, Ordering::Relaxed);
            let (outcome, sample) = match r {
                Err(_) => (
                    Err(format!("no answer within {} s", STORM_TIMEOUT.as_secs())),
                    None,
                ),
                Ok(Err(x)) => (Err(format!("storm read: {x}")), None),
                Ok(Ok(resp)) => {
                    // Only the cheap checks here, while other clients' clocks
                    // run; the samples are checked in full after the storm.
                    let o = check(&resp, &e, false);
                    let keep = o.is_ok() && i % CHECK_EVERY == 0;
                    (o, keep.then_some(resp.body))
                }
            };
            StormOne {
                begin,
                connected,
                end,
                outcome,
                sample,
            }
        }));
    }
    let cpu0 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    gate.wait().await;
    let tick = ticker(cfg.label.clone(), "storm, clients answered", finished, k);
    let mut total = Hist::default();
    let mut connect = Hist::default();
    let mut r = StormPhase {
        clients: k,
        ..StormPhase::default()
    };
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    for t in tasks {
        let one = match t.await {
            Ok(o) => o,
            Err(x) => {
                r.failed += 1;
                if r.errors.len() < MAX_ERRORS {
                    r.errors.push(format!("storm task: {x}"));
                }
                continue;
            }
        };
        first = Some(first.map_or(one.begin, |f| f.min(one.begin)));
        last = Some(last.map_or(one.end, |l| l.max(one.end)));
        let outcome = one.outcome.and_then(|()| match &one.sample {
            Some(b) => check_full(b, &e),
            None => Ok(()),
        });
        match outcome {
            Ok(()) => {
                r.answered += 1;
                total.record(one.end.duration_since(one.begin).as_micros() as u64);
            }
            Err(x) => {
                r.failed += 1;
                if r.errors.len() < MAX_ERRORS {
                    r.errors.push(x);
                }
            }
        }
        if let Some(c) = one.connected {
            connect.record(c.duration_since(one.begin).as_micros() as u64);
        }
    }
    let cpu1 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    tick.abort();
    progress_done();
    let ms = |us: u64| us as f64 / 1000.0;
    r.wall_ms = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64() * 1000.0,
        _ => 0.0,
    };
    r.p50_ms = ms(total.quantile(0.5));
    r.p99_ms = ms(total.quantile(0.99));
    r.max_ms = ms(total.max);
    r.connect_p50_ms = ms(connect.quantile(0.5));
    r.connect_p99_ms = ms(connect.quantile(0.99));
    r.server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    r.server_cpu_us_per_request = r
        .server_cpu_s
        .filter(|_| r.answered > 0)
        .map(|c| c * 1e6 / r.answered as f64);
    Ok(r)
}

/// The whole scenario against the imagechat server at `cfg.addr`.
pub async fn run(cfg: &SnapshotCfg) -> Result<SnapshotReport> {
    if cfg.chats == 0 || cfg.comments == 0 || cfg.setup_connections == 0 {
        return err("chats, comments and set-up connections must be at least 1");
    }
    if cfg.requests == 0 || cfg.connections == 0 {
        return err("requests and connections must be at least 1");
    }
    util::check_nofile(cfg.setup_connections + cfg.connections + cfg.storm_clients + 64)?;
    let t0 = Instant::now();
    let w = setup(cfg).await?;
    let setup_s = t0.elapsed().as_secs_f64();
    eprintln!(
        "   {}: {} chats × {} comments written in {setup_s:.1} s ({} connections)",
        cfg.label, cfg.chats, cfg.comments, cfg.setup_connections
    );
    let path: Arc<str> = format!("/api/v1/chats?urlId={}", percent_encode(&w.url_id)).into();
    let mut e = Expect {
        url_id: w.url_id.clone(),
        seq: w.seq,
        ids: w.ids,
        comments: cfg.comments,
        len: 0,
    };
    // Open the `cpu` connections, each with one read, unmeasured: the first
    // answer is checked in full and sets the length every other must have.
    let mut conns = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let mut c = connect(cfg.addr).await?;
        let r = read(&mut c, &path, &w.tokens[i % w.tokens.len()]).await?;
        if r.status != 200 {
            return err(format!(
                "snapshot answered {}: {}",
                r.status,
                snippet(&r.body)
            ));
        }
        if i == 0 {
            check_full(&r.body, &e).map_err(|x| format!("the first snapshot: {x}"))?;
            e.len = r.body.len();
        } else if r.body.len() != e.len {
            return err(format!(
                "snapshot of {} bytes, the first one had {}",
                r.body.len(),
                e.len
            ));
        }
        conns.push(c);
    }
    let e = Arc::new(e);
    let cpu = cpu_phase(cfg, conns, path.clone(), &w.tokens, e.clone()).await;
    eprintln!("   {}", cpu_summary(&cfg.label, &cpu));
    let storm = if cfg.storm_clients > 0 {
        // Let the connections of the `cpu` phase close first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = storm_phase(cfg, path, &w.tokens, e.clone()).await?;
        eprintln!("   {}", storm_summary(&cfg.label, &s));
        Some(s)
    } else {
        None
    };
    let mut errors = cpu.errors.clone();
    if let Some(s) = &storm {
        errors.extend(s.errors.iter().cloned());
    }
    let ok = cpu.failed == 0
        && cpu.answered == cfg.requests as u64
        && storm
            .as_ref()
            .is_none_or(|s| s.failed == 0 && s.answered == cfg.storm_clients as u64);
    Ok(SnapshotReport {
        scenario: "snapshot".into(),
        label: cfg.label.clone(),
        chats: cfg.chats,
        comments_per_chat: cfg.comments,
        seq: e.seq,
        body_bytes: e.len,
        setup_writes: w.writes,
        setup_s,
        cpu,
        storm,
        errors,
        ok,
    })
}

pub fn cpu_summary(label: &str, c: &ReadPhase) -> String {
    format!(
        "{label}: cpu, {}/{} reads ok, {:.0}/s, p50 {:.2} / p99 {:.2} ms, {} µs server CPU/read",
        c.answered,
        c.requests,
        c.requests_per_sec,
        c.p50_ms,
        c.p99_ms,
        opt(c.server_cpu_us_per_request, 1)
    )
}

pub fn storm_summary(label: &str, s: &StormPhase) -> String {
    format!(
        "{label}: storm, {}/{} clients answered, all within {:.0} ms, p50 {:.1} / p99 {:.1} ms",
        s.answered, s.clients, s.wall_ms, s.p50_ms, s.p99_ms
    )
}

/// Prints a report.
pub fn print(r: &SnapshotReport) {
    let c = &r.cpu;
    let mut rows = vec![
        (
            "image".into(),
            format!(
                "{} chats × {} comments, seq {}, snapshot {} bytes",
                r.chats, r.comments_per_chat, r.seq, r.body_bytes
            ),
        ),
        (
            "set-up".into(),
            format!("{} writes in {:.1} s", r.setup_writes, r.setup_s),
        ),
        (
            "cpu: reads".into(),
            format!(
                "{} over {} keep-alive connections: {} ok, {} failed, {:.0} /s",
                c.requests, c.connections, c.answered, c.failed, c.requests_per_sec
            ),
        ),
        (
            "cpu: answer p50 / p99 / max".into(),
            format!("{:.2} / {:.2} / {:.2} ms", c.p50_ms, c.p99_ms, c.max_ms),
        ),
        (
            "cpu: server CPU per read".into(),
            format!(
                "{} µs ({} s in all)",
                opt(c.server_cpu_us_per_request, 1),
                opt(c.server_cpu_s, 2)
            ),
        ),
        (
            "cpu: generator CPU, machine busy".into(),
            format!(
                "{:.2} cores, {:.0} %",
                c.generator_cpu_cores,
                c.machine_busy * 100.0
            ),
        ),
    ];
    if let Some(s) = &r.storm {
        rows.extend([
            (
                "storm: clients".into(),
                format!(
                    "{}, each a new connection: {} answered, {} failed",
                    s.clients, s.answered, s.failed
                ),
            ),
            (
                "storm: first connect → last answer".into(),
                format!("{:.1} ms", s.wall_ms),
            ),
            (
                "storm: per client p50 / p99 / max".into(),
                format!("{:.1} / {:.1} / {:.1} ms", s.p50_ms, s.p99_ms, s.max_ms),
            ),
            (
                "storm: connect p50 / p99".into(),
                format!("{:.1} / {:.1} ms", s.connect_p50_ms, s.connect_p99_ms),
            ),
            (
                "storm: server CPU per read".into(),
                format!(
                    "{} µs ({} s in all)",
                    opt(s.server_cpu_us_per_request, 1),
                    opt(s.server_cpu_s, 2)
                ),
            ),
        ]);
    }
    rows.push((
        "verdict".into(),
        if r.ok {
            "ok: every snapshot answered 200 with every chat and comment".into()
        } else {
            format!("FAILED: {}", r.errors.join("; "))
        },
    ));
    let title = if r.label == r.scenario {
        format!("== {} ==", r.scenario)
    } else {
        format!("== {}, {} ==", r.scenario, r.label)
    };
    crate::report::kv(&title, &rows);
}
