//! The upload storage contract (contract §14), run against every
//! implementation: files, and a real S3-compatible server (the README's
//! test command starts one and names it in `IMAGECHAT_TEST_S3`). The server
//! tests at the end run a node on S3 from upload to sweep.

use std::time::Duration;

use bytes::Bytes;
use imagechat::upload::storage::open;

use crate::common::*;
use crate::uploads::{png, uploaded};

/// The S3 URL of the test server. Required: the S3 run is part of the
/// suite, never skipped.
pub fn s3_url() -> String {
    match std::env::var("IMAGECHAT_TEST_S3") {
        Ok(u) if !u.is_empty() => {
            // A fresh prefix per call, so runs and tests never meet.
            let (base, query) = u.split_once('?').unwrap_or((&u, ""));
            format!(
                "{}/run-{}?{query}",
                base.trim_end_matches('/'),
                imagechat::domain::random_id(6)
            )
        }
        _ => panic!(
            "IMAGECHAT_TEST_S3 is not set: start an S3-compatible server (scripts/test.sh starts \
             moto) and set it to s3://BUCKET?endpoint=http://HOST:PORT&region=us-east-1, with \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ),
    }
}

fn file_url() -> String {
    format!("file://{}/blobs", temp_dir().display())
}

async fn contract(url: &str) {
    let s = open(url).unwrap_or_else(|e| panic!("open {url}: {e:#}"));
    let key = imagechat::domain::random_id(16);
    assert_eq!(s.get(&key).await.expect("get missing"), None);
    s.put(&key, Bytes::from_static(b"first"))
        .await
        .expect("put");
    assert_eq!(
        s.get(&key).await.expect("get").as_deref(),
        Some(&b"first"[..])
    );
    // Replacing is all or nothing.
    s.put(&key, Bytes::from_static(b"second, longer"))
        .await
        .expect("put again");
    assert_eq!(
        s.get(&key).await.expect("get").as_deref(),
        Some(&b"second, longer"[..])
    );
    // Another instance on the same URL (a restart, another node) sees it.
    let again = open(url).expect("reopen");
    assert_eq!(
        again.get(&key).await.expect("get").as_deref(),
        Some(&b"second, longer"[..])
    );
    // Several megabytes, byte for byte.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let big_key = imagechat::domain::random_id(16);
    s.put(&big_key, Bytes::from(big.clone()))
        .await
        .expect("put big");
    assert_eq!(
        s.get(&big_key).await.expect("get big").as_deref(),
        Some(&big[..])
    );
    // Deleting: gone for every instance; deleting again succeeds.
    s.delete(&key).await.expect("delete");
    assert_eq!(again.get(&key).await.expect("get deleted"), None);
    s.delete(&key).await.expect("delete again");
    s.delete(&big_key).await.expect("delete big");
    // Keys that could name anything else are refused before any I/O.
    for bad in ["", "../escape", "a/b", ".hidden", "a b", &"x".repeat(65)] {
        assert!(
            s.put(bad, Bytes::from_static(b"x")).await.is_err(),
            "{bad:?}"
        );
        assert!(s.get(bad).await.is_err(), "{bad:?}");
        assert!(s.delete(bad).await.is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn file_storage_keeps_the_contract() {
    contract(&file_url()).await;
}

#[tokio::test]
async fn s3_storage_keeps_the_contract() {
    contract(&s3_url()).await;
}

#[tokio::test]
async fn a_bad_storage_url_stops_the_start() {
    for bad in ["ftp://x", "s3://", "file://", "s3://b?colour=red"] {
        assert!(open(bad).is_err(), "{bad}");
    }
    let file = temp_dir().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    assert!(open(&format!("file://{}", file.display())).is_err());
}

#[tokio::test]
async fn a_node_on_s3_serves_keeps_and_sweeps_uploads() {
    let url = s3_url();
    let db = fresh_database().await;
    let set = |c: &mut imagechat::Config| {
        c.uploads = url.clone();
        c.upload_sweep_after = 2;
    };
    let s = Server::start_on(&db, set).await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let kept = uploaded(&s, &token, "image/png", &png(12, 8)).await;
    let loose = uploaded(&s, &token, "image/png", &png(8, 12)).await;
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(serde_json::json!({"urlId": "s3", "x": 1, "y": 1, "text": "t", "attachments": [kept["id"]]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = |u: &serde_json::Value| u["id"].as_str().expect("id").to_owned();
    let get = |i: String| {
        let s = &s;
        async move {
            s.http("GET", &format!("/api/v1/uploads/{i}"), None, &[])
                .await
        }
    };
    let first = get(id(&kept)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("image/png"));
    s.stop().await;
    let s = Server::start_on(&db, set).await;
    let r = s
        .http("GET", &format!("/api/v1/uploads/{}", id(&kept)), None, &[])
        .await;
    assert_eq!(r.body, first.body, "kept across a restart");
    // The sweep removes the unattached one's object from the bucket.
    let bucket = open(&url).expect("open");
    let mut gone = false;
    for _ in 0..100 {
        if bucket.get(&id(&loose)).await.expect("get").is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the unattached upload's object was deleted");
    assert!(bucket.get(&id(&kept)).await.expect("get").is_some());
    let r = s
        .http("GET", &format!("/api/v1/uploads/{}", id(&loose)), None, &[])
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn readiness_fails_while_the_upload_storage_refuses_writes() {
    let dir = temp_dir();
    let up = dir.join("up");
    let url = format!("file://{}", up.display());
    let s = Server::start_with(|c| c.uploads = url.clone()).await;
    async fn ready(s: &Server) -> Resp {
        s.http("GET", "/readyz", None, &[]).await
    }
    let r = ready(&s).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["uploads"], "ok");
    // The folder is replaced by a file: nothing can be stored there.
    std::fs::remove_dir_all(&up).expect("rm");
    std::fs::write(&up, b"not a folder").expect("file");
    let r = ready(&s).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["uploads"], "unavailable");
    assert_eq!(r.json()["store"], "ok");
    std::fs::remove_file(&up).expect("rm");
    assert_eq!(ready(&s).await.status, 200);
}

#[tokio::test]
async fn a_node_does_not_start_on_an_upload_storage_it_cannot_write() {
    let dir = temp_dir();
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").expect("write");
    for uploads in [
        format!("file://{}/below-a-file", file.display()),
        // Nothing listens there: refused within seconds, not minutes.
        "s3://nothing?endpoint=http://127.0.0.1:9&region=us-east-1".to_owned(),
    ] {
        let mut cfg = imagechat::Config::for_database(fresh_database().await);
        cfg.uploads = uploads.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            imagechat::run(listener, cfg, std::future::pending()),
        )
        .await
        .expect("the start ends");
        let e = r.expect_err(&uploads);
        assert!(format!("{e:#}").contains("refuses writes"), "{e:#}");
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{:?}",
            started.elapsed()
        );
    }
}
