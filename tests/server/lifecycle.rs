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
    let basic = format!("Basic {}", {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{t}:{secret}"))
    });
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
