//! The `imagechat` binary itself: the offline tenant command, start-up on
//! port 0, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{http_on, temp_dir, Ws};

const BIN: &str = env!("CARGO_BIN_EXE_imagechat");

/// `imagechat serve` on port 0 with JSON logs: the child, its log lines as
/// they come, and the address it logged (with the lines read until then).
fn serve(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::net::SocketAddr,
    Vec<String>,
) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("IMAGECHAT_LOG_FORMAT", "json")
        .envs(envs.iter().copied())
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
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a log line naming the address");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        lines.push(line);
        if let Some(a) = v["fields"]["address"].as_str() {
            break a.parse().expect("an address");
        }
    };
    (child, rx, addr, lines)
}

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

    let (mut child, _logs, addr, _) = serve(&["--database", &db, "--admin-key", "k"], &[]);
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

/// A full run at the most verbose log level writes none of the secrets it
/// handled: operator key, tenant secret, session tokens (good and forged),
/// SSO payload and hash, the dashboard's cookie.
#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let dir = temp_dir();
    let db = format!("sqlite://{}/secrets.db", dir.display());
    let admin = "operator-key-7f3a9c2e";
    let (mut child, rx, addr, mut logs) = serve(
        &["--database", &db, "--admin-key", admin],
        &[("IMAGECHAT_LOG", "trace")],
    );
    let call = |method: &'static str,
                path: String,
                body: Option<serde_json::Value>,
                headers: Vec<(String, String)>| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http_on(
            tcp,
            "x",
            method,
            &path,
            body.map(|b| b.to_string().into_bytes()),
            &h,
        )
        .await
        .expect("http")
    };
    let bearer = |t: &str| vec![("authorization".to_owned(), format!("Bearer {t}"))];
    let r = call(
        "POST",
        "/api/v1/admin/tenants".into(),
        Some(json!({"tenantId": "acme", "anonymous": "write"})),
        bearer(admin),
    )
    .await;
    assert_eq!(r.status, 201);
    let secret = r.json()["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        call(
            "POST",
            "/api/v1/admin/tenants".into(),
            Some(json!({"tenantId": "x"})),
            bearer("wrong-operator-key-1")
        )
        .await
        .status,
        401
    );
    let sso = crate::common::sso(&secret, &json!({"id": "u1", "username": "Ann"}));
    let r = call(
        "POST",
        "/api/v1/sessions".into(),
        Some(json!({"tenantId": "acme", "sso": sso})),
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        call("GET", "/api/v1/chats?urlId=a".into(), None, bearer(&forged))
            .await
            .status,
        401
    );
    assert_eq!(
        call(
            "POST",
            "/api/v1/chats".into(),
            Some(json!({"urlId": "a", "x": 1, "y": 1, "text": "hi"})),
            bearer(&token)
        )
        .await
        .status,
        201
    );
    let r = call(
        "POST",
        "/api/v1/tenant/login".into(),
        Some(json!({"tenantId": "acme", "secret": secret})),
        vec![],
    )
    .await;
    let cookie = r
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let cookie_value = cookie
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    assert!(cookie_value.len() > 10);
    assert_eq!(
        call(
            "GET",
            "/api/v1/tenant/images".into(),
            None,
            vec![("cookie".into(), cookie.clone())]
        )
        .await
        .status,
        200
    );
    let wrong_basic = crate::common::basic("acme", "not-the-secret-42");
    assert_eq!(
        call(
            "GET",
            "/api/v1/tenant/images".into(),
            None,
            vec![("authorization".into(), wrong_basic)]
        )
        .await
        .status,
        401
    );
    let mut ws = Ws::connect(addr, None).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    assert_eq!(ws.recv().await["type"], "welcome");
    let mut bad = Ws::connect(addr, None).await;
    bad.send(json!({"type": "hello", "token": forged})).await;
    assert_eq!(bad.close_code(Duration::from_secs(5)).await, Some(4401));

    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        logs.push(line);
    }
    let all = logs.join("\n");
    assert!(logs.len() > 20, "trace logging wrote {} lines", logs.len());
    for (what, secret) in [
        ("operator key", admin.to_owned()),
        ("wrong operator key", "wrong-operator-key-1".to_owned()),
        ("tenant secret", secret.clone()),
        ("wrong tenant secret", "not-the-secret-42".to_owned()),
        ("session token", token.clone()),
        (
            "session token signature",
            token.rsplit('.').next().unwrap_or(&token).to_owned(),
        ),
        ("forged token", forged.clone()),
        (
            "SSO payload",
            sso["userDataJSONBase64"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "SSO hash",
            sso["verificationHash"].as_str().unwrap_or("").to_owned(),
        ),
        ("dashboard cookie", cookie_value.clone()),
    ] {
        assert!(secret.len() >= 8, "{what}");
        assert!(!all.contains(&secret), "the logs hold the {what}");
    }
}
