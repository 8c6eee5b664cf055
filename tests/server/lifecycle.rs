//! Start-up, restart, shutdown and TLS.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_rustls::rustls;

use crate::common::{http_on, temp_dir, Server, Ws};

#[tokio::test]
async fn data_seq_and_epoch_survive_a_restart() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let tok = s.token(&t).await;
    s.create(&tok, "keep", "one").await;
    s.create(&tok, "keep", "two").await;
    let before = s.snapshot(&tok, "keep").await;
    let db = s.db.clone();
    s.stop().await;

    let s = Server::start_on(&db, |_| {}).await;
    let after = s.snapshot(&tok, "keep").await;
    assert_eq!(
        after, before,
        "the old token still works and the snapshot is the same"
    );
    let mut ws = s.ws(&tok).await;
    let sub = ws
        .subscribe("keep", Some((before["epoch"].as_str().unwrap(), 1)))
        .await;
    assert_eq!(sub["recovered"], true);
    assert_eq!(ws.event("keep").await["seq"], 2);
    assert_eq!(s.create(&tok, "keep", "three").await["seq"], 3);
    let basic = crate::common::basic(&t, &secret);
    assert_eq!(
        s.http(
            "GET",
            "/api/v1/tenant/me",
            None,
            &[("authorization", &basic)]
        )
        .await
        .status,
        200
    );
    s.stop().await;
}

#[tokio::test]
async fn without_an_operator_key_there_is_a_demo_tenant_and_no_operator_calls() {
    let s = Server::start_with(|c| c.admin_key = None).await;
    let r = s.session("demo", None).await;
    assert_eq!((r.status, r.json()["canWrite"].clone()), (200, json!(true)));
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "x"})),
            "anything",
        )
        .await;
    assert_eq!(r.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_and_returns_quickly() {
    let s = Server::start().await;
    let (t, _) = s.tenant("read").await;
    let mut ws = s.ws(&s.token(&t).await).await;
    ws.subscribe("bye", None).await;
    let closing = tokio::spawn(async move { ws.close_code(Duration::from_secs(5)).await });
    let took = s.stop().await;
    assert_eq!(closing.await.unwrap(), Some(1001));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn tls_serves_https_and_wss_on_one_port() {
    let dir = temp_dir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut cfg = imagechat::Config::for_database(format!("sqlite://{}/tls.db", dir.display()));
    cfg.tls_cert = Some(cert_path);
    cfg.tls_key = Some(key_path);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(imagechat::run(listener, cfg, async move {
        let _ = stopped.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await {
            drop(tcp);
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok);
    let r = http_on(
        connect().await,
        "localhost",
        "POST",
        "/api/v1/sessions",
        Some(br#"{"tenantId":"demo"}"#.to_vec()),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let tok = r.json()["token"].as_str().unwrap().to_owned();
    let mut ws = Ws::handshake(connect().await, "localhost", None).await;
    ws.send(json!({"type": "hello", "token": tok})).await;
    assert_eq!(ws.recv().await["type"], "welcome");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn many_idle_connections_cost_little() {
    // A smoke check of the idle path: 200 subscribed connections all get one
    // event; `imagechat bench idle` measures memory properly.
    let s = Server::start_with(|c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let mut socks = Vec::new();
    for _ in 0..200 {
        let mut w = s.ws(&tok).await;
        w.subscribe("crowd", None).await;
        socks.push(w);
    }
    s.create(&tok, "crowd", "hello all").await;
    for w in &mut socks {
        assert_eq!(w.event("crowd").await["seq"], 1);
    }
    s.stop().await;
}

/// Beyond `--max-connections` a new connection is answered 503 with
/// `Retry-After`; the connections already open carry on.
#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_the_open_ones_untouched() {
    let s = Server::start_with(|c| c.max_connections = 3).await;
    let (t, _) = s.tenant("write").await;
    let token = s.token(&t).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(s.ws(&token).await);
    }
    let r = s.http("GET", "/healthz", None, &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.error_code(), "unavailable");
    for ws in &mut open {
        ws.send(serde_json::json!({"type": "ping"})).await;
        assert_eq!(ws.recv_where(|m| m["type"] == "pong").await["type"], "pong");
    }
    drop(open.pop());
    let mut ok = false;
    for _ in 0..100 {
        if s.http("GET", "/healthz", None, &[]).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "a place freed is taken again");
}

/// A body that stops arriving is answered 408 after `--body-timeout`,
/// and the request changes nothing.
#[tokio::test]
async fn a_body_that_stops_arriving_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start_with(|c| c.body_timeout = 1).await;
    let (t, _) = s.tenant("write").await;
    let token = s.token(&t).await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/chats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"urlId\":"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = c.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}
