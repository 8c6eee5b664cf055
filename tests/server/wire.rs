//! The WebSocket wire under hostile input (RFC 6455): lengths that overflow,
//! close frames that break the rules, loose handshakes, oversized frames
//! before `hello`, and closes that must arrive even at a client that is not
//! reading.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, Ws};

fn masked(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [9u8, 8, 7, 6];
    let mut v = vec![if fin { 0x80 | op } else { op }];
    assert!(payload.len() < 126);
    v.push(0x80 | payload.len() as u8);
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    v
}

/// A text frame of 3 bytes without FIN, then a continuation declaring a
/// 64-bit length (23 bytes in all).
fn overflow_attack(len: u64) -> Vec<u8> {
    let mut v = masked(false, 1, b"abc");
    v.extend_from_slice(&[0x80, 0x80 | 127]);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[1, 2, 3, 4]);
    v
}

async fn live_subscriptions(s: &Server, tenant: &str, secret: &str) -> u64 {
    let auth = crate::common::basic(tenant, secret);
    let r = s
        .http(
            "GET",
            "/api/v1/tenant/live",
            None,
            &[("authorization", &auth)],
        )
        .await;
    r.json()["subscriptions"].as_u64().expect("subscriptions")
}

#[tokio::test]
async fn lengths_that_overflow_close_the_connection_and_it_is_cleaned_up_at_once() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("read").await;
    for (len, code) in [
        (u64::MAX - 2, 1002),
        (1u64 << 63, 1002),
        ((1u64 << 63) - 3, 1009),
    ] {
        // Before hello.
        let mut ws = Ws::connect(s.addr, None).await;
        ws.send_raw(&overflow_attack(len)).await.expect("send");
        assert_eq!(
            ws.close_code(Duration::from_secs(3)).await,
            Some(code),
            "{len}"
        );
        // After hello, subscribed: closed, and unsubscribed, without waiting
        // for a heartbeat sweep.
        let mut ws = s.ws(&s.token(&t).await).await;
        ws.subscribe("img", None).await;
        assert_eq!(live_subscriptions(&s, &t, &secret).await, 1);
        ws.send_raw(&overflow_attack(len)).await.expect("send");
        assert_eq!(
            ws.close_code(Duration::from_secs(3)).await,
            Some(code),
            "{len}"
        );
        let mut left = u64::MAX;
        for _ in 0..50 {
            left = live_subscriptions(&s, &t, &secret).await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(left, 0, "the dead connection is unsubscribed at once");
    }
    assert_eq!(s.http("GET", "/healthz", None, &[]).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn close_frames_that_break_the_rules_are_answered_1002_or_1007() {
    let s = Server::start().await;
    let (t, _) = s.tenant("read").await;
    let tok = s.token(&t).await;
    let mut cases: Vec<(Vec<u8>, u16)> = vec![(vec![3], 1002), (vec![], 1000)];
    for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999] {
        cases.push((bad.to_be_bytes().to_vec(), 1002));
    }
    for ok in [1000u16, 1001, 1011, 3000, 4999] {
        cases.push((ok.to_be_bytes().to_vec(), 1000));
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd]);
    cases.push((bad_reason, 1007));
    for (payload, want) in cases {
        for logged_in in [false, true] {
            let mut ws = if logged_in {
                s.ws(&tok).await
            } else {
                Ws::connect(s.addr, None).await
            };
            ws.send_raw(&masked(true, 8, &payload)).await.expect("send");
            let got = ws.close_code(Duration::from_secs(3)).await;
            assert_eq!(got, Some(want), "{payload:?} (after hello: {logged_in})");
        }
    }
    s.stop().await;
}

async fn handshake(s: &Server, request: &str) -> String {
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read_exact(&mut b).await.is_ok() {
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn the_handshake_follows_rfc_6455_section_4_2() {
    let s = Server::start().await;
    let host = s.addr.to_string();
    let good = format!(
        "GET /api/v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert!(handshake(&s, &good).await.starts_with("HTTP/1.1 101"));
    for (what, req) in [
        (
            "a key that is not 16 bytes",
            good.replace("dGhlIHNhbXBsZSBub25jZQ==", "abc"),
        ),
        (
            "a key that is not base64",
            good.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!!="),
        ),
        ("HTTP/1.0", good.replace("HTTP/1.1", "HTTP/1.0")),
        ("no Host", good.replace(&format!("Host: {host}\r\n"), "")),
    ] {
        let head = handshake(&s, &req).await;
        assert!(
            head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.0 400"),
            "{what}: {head}"
        );
    }
    let head = handshake(&s, &good.replace("Version: 13", "Version: 8")).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
    s.stop().await;
}

#[tokio::test]
async fn before_hello_a_frame_may_be_1_kib_and_after_it_16_kib() {
    let s = Server::start().await;
    let (t, _) = s.tenant("read").await;
    let mut ws = Ws::connect(s.addr, None).await;
    ws.send_frame(1, &vec![b' '; 1025]).await;
    assert_eq!(ws.close_code(Duration::from_secs(3)).await, Some(1009));
    // A hello of 1 KiB is fine, and after it 16 KiB messages are.
    let mut ws = Ws::connect(s.addr, None).await;
    let tok = s.token(&t).await;
    let hello = json!({"type": "hello", "token": tok}).to_string();
    let padded = format!("{hello:<1024}");
    ws.send_frame(1, padded.as_bytes()).await;
    assert_eq!(ws.recv().await["type"], "welcome");
    let big = json!({"type": "ping", "pad": "x".repeat(16 * 1024 - 40)}).to_string();
    assert!(big.len() <= 16 * 1024);
    ws.send_frame(1, big.as_bytes()).await;
    assert_eq!(ws.recv().await["type"], "pong");
    s.stop().await;
}

/// A client that floods pings and reads nothing is cut off with 4408; the
/// close frame must reach it when it finally reads, not be lost to a reset.
#[tokio::test]
async fn a_client_that_does_not_read_still_receives_its_close_frame() {
    let s = Server::start_with(|c| c.outbox_capacity = 4).await;
    let (t, _) = s.tenant("read").await;
    let tok = s.token(&t).await;
    // A small receive buffer, so the pongs waiting for it are few and
    // reading them at the end is quick even on a loaded machine.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let stream = sock.connect(s.addr).await.expect("connect");
    let mut ws = Ws::handshake(stream, &s.addr.to_string(), None).await;
    ws.send(json!({"type": "hello", "token": tok})).await;
    assert_eq!(ws.recv().await["type"], "welcome");
    // The server answers each ping with a pong, written straight into its
    // socket's send buffer while there is room: flood past the largest
    // buffer the kernel may give it, so its queue must overflow.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|n| n.parse().ok()))
        .unwrap_or(4 << 20);
    let ping = masked(true, 9, &[b'p'; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 256)
        .collect();
    let mut sent = 0usize;
    while sent < 2 * wmem_max {
        match tokio::time::timeout(Duration::from_secs(5), ws.send_raw(&burst)).await {
            Ok(Ok(())) => sent += burst.len(),
            _ => break,
        }
    }
    // Still not reading, while the server works through the pings (what the
    // kernel buffered counts as sent here) and gives up on this client.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = ws.close_code(Duration::from_secs(30)).await;
    assert_eq!(got, Some(4408));
    s.stop().await;
}

#[tokio::test]
async fn request_heads_are_bounded_and_only_origins_are_reflected() {
    let s = Server::start().await;
    let huge = "a".repeat(40 * 1024);
    let r = s
        .http("GET", "/healthz", None, &[("x-filler", &huge)])
        .await;
    assert_eq!(r.status, 431, "a 40 KiB header");
    let preflight = |origin: String| {
        let s = &s;
        async move {
            s.http(
                "OPTIONS",
                "/api/v1/chats",
                None,
                &[
                    ("origin", &origin),
                    ("access-control-request-method", "POST"),
                ],
            )
            .await
        }
    };
    let ok = preflight("https://site.example:8443".into()).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://site.example:8443")
    );
    for bad in [
        format!("https://{}", "a".repeat(3000)),
        "https://a.example/path".into(),
        "javascript:x".into(),
        "<script>".into(),
    ] {
        let r = preflight(bad.clone()).await;
        assert_eq!(r.header("access-control-allow-origin"), None, "{bad:.40}");
    }
    // Bodies are not heads: a large import still arrives whole.
    let (t, secret) = s.tenant("write").await;
    let auth = crate::common::basic(&t, &secret);
    let one = json!({"type": "Annotation", "motivation": "commenting", "bodyValue": "x".repeat(1900),
        "target": {"selector": {"type": "FragmentSelector", "value": "xywh=percent:1,1,0,0"}}});
    let body = serde_json::Value::Array(vec![one; 1000]).to_string();
    assert!(body.len() > 1024 * 1024);
    let r = s
        .raw(
            "POST",
            "/api/v1/tenant/annotations?urlId=big",
            body.as_bytes(),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(
        (r.status, r.json()["imported"].as_u64()),
        (200, Some(1000)),
        "{:.300}",
        r.text()
    );
    s.stop().await;
}

#[tokio::test]
async fn the_dashboard_cannot_be_framed_and_runs_only_its_own_scripts() {
    let s = Server::start().await;
    let r = s.http("GET", "/admin", None, &[]).await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    s.stop().await;
}

#[tokio::test]
async fn metrics_can_move_off_the_public_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let private: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let s = Server::start_with(|c| c.metrics_listen = Some(private)).await;
    assert_eq!(s.http("GET", "/metrics", None, &[]).await.status, 404);
    let tcp = TcpStream::connect(private)
        .await
        .expect("the metrics address");
    let r = crate::common::http_on(tcp, "x", "GET", "/metrics", None, &[])
        .await
        .expect("http");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("# TYPE"), "{}", r.text());
    s.stop().await;
}
