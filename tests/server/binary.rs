//! The `imagechat` binary itself: the offline tenant command, start-up on
//! port 0, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{http_on, temp_dir, Ws};

const BIN: &str = env!("CARGO_BIN_EXE_imagechat");

#[tokio::test]
async fn tenant_create_works_offline_and_sigterm_drains() {
    let dir = temp_dir();
    let db = format!("sqlite://{}/bin.db", dir.display());
    let out = Command::new(BIN)
        .args([
            "tenant",
            "create",
            "acme",
            "--anonymous",
            "read",
            "--origin",
            "https://acme.example",
            "--database",
            &db,
        ])
        .output()
        .expect("run imagechat tenant create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tenant acme created; secret: "), "{stdout}");
    let again = Command::new(BIN)
        .args(["tenant", "create", "acme", "--database", &db])
        .output()
        .expect("run imagechat tenant create");
    assert!(!again.status.success(), "creating a tenant twice fails");

    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &db,
            "--admin-key",
            "k",
        ])
        .env("IMAGECHAT_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imagechat serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: std::net::SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a log line naming the address");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
        if let Some(a) = v["fields"]["address"].as_str() {
            break a.parse().expect("an address");
        }
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let r = http_on(
        tcp,
        "x",
        "POST",
        "/api/v1/sessions",
        Some(br#"{"tenantId":"acme"}"#.to_vec()),
        &[("origin", "https://acme.example")],
    )
    .await
    .expect("session");
    assert_eq!(
        (r.status, r.json()["canWrite"].clone()),
        (200, json!(false))
    );
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let mut ws = Ws::connect(addr, Some("https://acme.example")).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    assert_eq!(ws.recv().await["type"], "welcome");

    let t0 = Instant::now();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1001));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "the server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
