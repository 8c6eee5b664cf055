//! Abuse: while each kind of attack runs, a well-behaved pair of clients
//! (one writes, one watches) keeps working, and the time from a write's
//! answer to its event at the viewer stays bounded. Each attack meets a
//! limit: header and hello deadlines, frame and subscription limits, the
//! inbound message rate, the per-user write rate, and the per-address
//! session, anonymous-write and open-WebSocket limits.
//!
//! Prints each attack's latency (median, worst) beside the quiet baseline.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{Server, Ws};

const URL: &str = "calm";

/// One well-behaved round: a create, answered, and seen by the viewer.
async fn round(s: &Server, tok: &str, viewer: &mut Ws) -> Duration {
    let t0 = Instant::now();
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": URL, "x": 1, "y": 1, "text": "hi"})),
            tok,
        )
        .await;
    assert_eq!(
        r.status,
        201,
        "a well-behaved write during an attack: {}",
        r.text()
    );
    let ev = viewer.event(URL).await;
    assert_eq!(ev["type"], "new-image-chat");
    t0.elapsed()
}

async fn measure(s: &Server, tok: &str, viewer: &mut Ws, what: &str) -> (Duration, Duration) {
    let mut v = Vec::new();
    for _ in 0..10 {
        v.push(round(s, tok, viewer).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v.sort();
    let (median, worst) = (v[v.len() / 2], v[v.len() - 1]);
    println!("abuse {what}: write-to-event median {median:?}, worst {worst:?}");
    (median, worst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_clients_keep_working_through_each_attack() {
    // 10 writes a second, bursts of 100: room for the well-behaved writer's
    // rounds, and a bucket the flooder must share across its sessions.
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 600;
        c.write_burst = 100;
        // The attacks below that come "from another address" say so in
        // X-Forwarded-For, as a proxy in front would.
        c.trusted_proxies = 1;
        c.websockets_per_address = 400;
    })
    .await;
    let (t, secret) = s.tenant("write").await;
    let tok = s
        .sso_token(&t, &secret, json!({"id": "calm", "username": "Calm"}))
        .await;
    let mut viewer = s.ws(&s.token(&t).await).await;
    viewer.subscribe(URL, None).await;
    let (base, _) = measure(&s, &tok, &mut viewer, "none (baseline)").await;
    let bound = base * 20 + Duration::from_millis(500);

    // 1. Slowloris: 300 connections that send half a request line, slowly.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        held.push(c);
    }
    let (_, worst) = measure(&s, &tok, &mut viewer, "300 slow request heads").await;
    assert!(worst < bound, "{worst:?}");
    drop(held);

    // 2. 300 WebSockets that never say hello (each closed after 10 s).
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(Ws::connect(s.addr, None).await);
    }
    let (_, worst) = measure(&s, &tok, &mut viewer, "300 connections without hello").await;
    assert!(worst < bound, "{worst:?}");
    drop(silent);

    // 3. Oversized frames, over and over, before and after hello.
    let attacker = s.token(&t).await;
    let flood = tokio::spawn({
        let addr = s.addr;
        let attacker = attacker.clone();
        async move {
            let mut closes = 0;
            for i in 0..200 {
                let mut ws = Ws::connect(addr, None).await;
                if i % 2 == 0 {
                    ws.send(json!({"type": "hello", "token": attacker})).await;
                    let _ = ws.recv().await;
                    ws.send_frame(1, &vec![b' '; 20 * 1024]).await;
                } else {
                    ws.send_frame(1, &vec![b' '; 2 * 1024]).await;
                }
                if ws.close_code(Duration::from_secs(5)).await == Some(1009) {
                    closes += 1;
                }
            }
            closes
        }
    });
    let (_, worst) = measure(&s, &tok, &mut viewer, "oversized frames (200 connections)").await;
    assert!(worst < bound, "{worst:?}");
    assert_eq!(
        flood.await.expect("flood"),
        200,
        "every oversized frame closed with 1009"
    );

    // 4. A subscription and message flood on one connection: 1000 subscribes
    //    as fast as it can send them.
    let mut noisy = s.ws(&attacker).await;
    for i in 0..1000 {
        noisy
            .send(json!({"type": "subscribe", "id": i, "urlId": format!("flood-{i}")}))
            .await;
    }
    let (_, worst) = measure(&s, &tok, &mut viewer, "1000 subscribes on one connection").await;
    assert!(worst < bound, "{worst:?}");
    let mut subscribed = 0;
    let mut refused = 0;
    while let Some(m) = noisy
        .try_recv_where(
            &|m| m["type"] == "subscribed" || m["type"] == "error",
            Duration::from_millis(500),
        )
        .await
    {
        if m["type"] == "subscribed" {
            subscribed += 1
        } else {
            refused += 1
        }
    }
    assert!(
        subscribed <= 100,
        "{subscribed} subscriptions on one connection"
    );
    assert!(refused > 0, "the flood was refused in part");

    // 5. A write flood across many sessions of one user: one shared bucket.
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(
            s.sso_token(&t, &secret, json!({"id": "flooder", "username": "F"}))
                .await,
        );
    }
    let addr = s.addr;
    let writes = tokio::spawn(async move {
        let started = Instant::now();
        let mut accepted = 0u64;
        for i in 0..400 {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let h = format!("Bearer {}", tokens[i % tokens.len()]);
            let body = json!({"urlId": "flood", "x": 1, "y": 1, "text": "spam"}).to_string();
            let r = crate::common::http_on(
                tcp,
                "x",
                "POST",
                "/api/v1/chats",
                Some(body.into_bytes()),
                &[("authorization", &h)],
            )
            .await
            .expect("http");
            if r.status == 201 {
                accepted += 1;
            }
        }
        (accepted, started.elapsed())
    });
    let (_, worst) = measure(
        &s,
        &tok,
        &mut viewer,
        "400 writes by one user over 10 sessions",
    )
    .await;
    assert!(worst < bound, "{worst:?}");
    let (accepted, took) = writes.await.expect("writes");
    // The burst plus what 10 a second refill while the flood runs.
    let allowed = 100 + (took.as_secs_f64() * 10.0).ceil() as u64 + 2;
    println!("abuse write flood: {accepted} of 400 accepted in {took:?} (at most {allowed})");
    assert!(
        accepted <= allowed,
        "{accepted} of 400 writes accepted for one user"
    );

    // 6. Fresh anonymous sessions from one address, one write each: the
    //    sessions and the writes meet the address's buckets (defaults:
    //    100 sessions at once then 120 a minute; 120 anonymous writes at
    //    once then 120 a minute).
    let flood = tokio::spawn({
        let t = t.clone();
        async move {
            let started = Instant::now();
            let (mut sessions, mut writes) = (0u64, 0u64);
            let xff = [("x-forwarded-for", "203.0.113.66")];
            for i in 0..300 {
                let body = json!({"tenantId": t}).to_string();
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let r = crate::common::http_on(
                    tcp,
                    "x",
                    "POST",
                    "/api/v1/sessions",
                    Some(body.into_bytes()),
                    &xff,
                )
                .await
                .expect("http");
                if r.status != 200 {
                    assert_eq!(r.status, 429, "{}", r.text());
                    continue;
                }
                sessions += 1;
                let h = format!("Bearer {}", r.json()["token"].as_str().expect("token"));
                let body = json!({"urlId": "anon-flood", "x": 1, "y": 1, "text": format!("a{i}")});
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let r = crate::common::http_on(
                    tcp,
                    "x",
                    "POST",
                    "/api/v1/chats",
                    Some(body.to_string().into_bytes()),
                    &[("authorization", &h), xff[0]],
                )
                .await
                .expect("http");
                if r.status == 201 {
                    writes += 1;
                }
            }
            (sessions, writes, started.elapsed())
        }
    });
    let (_, worst) = measure(
        &s,
        &tok,
        &mut viewer,
        "300 fresh anonymous sessions from one address, a write each",
    )
    .await;
    assert!(worst < bound, "{worst:?}");
    let (sessions, writes, took) = flood.await.expect("flood");
    let refill = (took.as_secs_f64() * 2.0).ceil() as u64 + 2;
    println!("abuse anonymous flood: {sessions} sessions and {writes} writes of 300 in {took:?}");
    assert!(sessions <= 100 + refill, "{sessions} sessions");
    assert!(
        writes <= 120 + refill && writes <= sessions,
        "{writes} writes"
    );
    assert!(sessions < 300, "the session flood was refused in part");

    // 7. A connection flood from one address: 600 WebSockets held open
    //    against a limit of 400 per address.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..600 {
        let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
        tcp.write_all(
            b"GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("write");
        let mut head = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut head)
            .await
            .expect("status line");
        match &head[9..12] {
            b"101" => held.push(tcp),
            status => {
                refused = Some(String::from_utf8_lossy(status).into_owned());
                break;
            }
        }
    }
    let (_, worst) = measure(
        &s,
        &tok,
        &mut viewer,
        "WebSockets from one address up to its limit",
    )
    .await;
    assert!(worst < bound, "{worst:?}");
    println!(
        "abuse connection flood: {} sockets held, then refused",
        held.len()
    );
    assert_eq!(
        refused.as_deref(),
        Some("429"),
        "the address meets its limit"
    );
    assert!(held.len() < 400, "at most 400 sockets per address");
    drop(held);
    s.stop().await;
}
