//! Bugs found by trying the product as a user would, each pinned by a test
//! that failed before its fix.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{temp_dir, Server};

/// A client that sends a reply and hangs up at once must not keep its
/// committed comment from the image's viewers: the step from commit to
/// publish is not the request's to cancel.
#[tokio::test]
async fn a_write_whose_client_hangs_up_at_once_still_reaches_every_viewer() {
    let s = Server::start_with(|c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let token = s.token(&t).await;
    let u = "hang-up";
    let mut ws = s.ws(&token).await;
    ws.subscribe(u, None).await;
    let chat = s.create(&token, u, "first").await;
    let cid = chat["chat"]["id"].as_str().unwrap().to_owned();
    assert_eq!(ws.event(u).await["seq"], 1);
    let body = br#"{"text":"a reply from a hurry"}"#;
    // Hang-ups spread over the first 4 ms: some land before the commit,
    // some between commit and publish, some after.
    for i in 0..80u64 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let req = format!(
            "POST /api/v1/chats/{cid}/comments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(req.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        tokio::time::sleep(Duration::from_micros(i * 50)).await;
        // Hang up without reading the answer.
        drop(c);
    }
    // Let every request that was read finish, then compare.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let head = s.snapshot(&token, u).await["seq"].as_u64().unwrap();
    assert!(head >= 2, "some of the replies were stored ({head})");
    for want in 2..=head {
        let e = ws.event(u).await;
        assert_eq!(e["seq"], want, "{e}");
    }
}

/// While another process holds SQLite's write lock for a moment, every
/// mutation waits its turn (busy timeout) instead of failing with 503.
#[tokio::test]
async fn mutations_wait_out_a_briefly_locked_database() {
    use sqlx::{Connection, Executor};
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("locked.db").display());
    let s = Server::start_on(&db, |c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let token = s.token(&t).await;
    let chat = s.create(&token, "locked", "first").await;
    let cid = chat["chat"]["id"].as_str().unwrap().to_owned();
    let kid = chat["chat"]["comments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let calls: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        (
            "PATCH",
            format!("/api/v1/chats/{cid}"),
            Some(json!({"resolved": true})),
        ),
        (
            "POST",
            format!("/api/v1/chats/{cid}/comments"),
            Some(json!({"text": "re"})),
        ),
        (
            "PATCH",
            format!("/api/v1/chats/{cid}/comments/{kid}"),
            Some(json!({"text": "ed"})),
        ),
        (
            "POST",
            "/api/v1/chats".into(),
            Some(json!({"urlId": "locked", "x": 1, "y": 1, "text": "t"})),
        ),
        ("DELETE", format!("/api/v1/chats/{cid}/comments/3"), None),
    ];
    let url = format!("sqlite://{}", dir.join("locked.db").display());
    for (method, path, body) in calls {
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        other.execute("BEGIN IMMEDIATE").await.unwrap();
        let holder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            other.execute("COMMIT").await.unwrap();
        });
        let r = s.authed(method, &path, body, &token).await;
        assert!(
            r.status == 200 || r.status == 201,
            "{method} {path} while the file was locked: {} {}",
            r.status,
            r.text()
        );
        holder.await.unwrap();
    }
}

/// A storage failure while checking `hello` is "try again later" (1013),
/// not "unauthorized" (4401): the widget throws its session away on 4401.
#[tokio::test]
async fn a_storage_failure_at_hello_says_try_again_not_unauthorized() {
    use sqlx::{Connection, Executor};
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("hello.db").display());
    let s = Server::start_on(&url, |_| {}).await;
    let (t, _) = s.tenant("write").await;
    let token = s.token(&t).await;
    s.stop().await;
    // A fresh node (no tenant cached) on a database that cannot answer.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    other.execute("DROP TABLE tenants").await.unwrap();
    drop(other);
    let s = Server::start_on(&url, |_| {}).await;
    let mut ws = crate::common::Ws::connect(s.addr, None).await;
    ws.send(json!({"type": "hello", "token": token})).await;
    let m = ws.recv().await;
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["code"], "unavailable", "{m}");
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(1013));
    // And REST says the same with 503.
    let r = s.authed("GET", "/api/v1/chats?urlId=x", None, &token).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
}
