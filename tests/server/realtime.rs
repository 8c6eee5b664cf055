//! The WebSocket protocol: hello, subscribe, events of every kind, echo,
//! recovery by (epoch, seq), presence, limits and slow consumers.

use std::time::Duration;

use serde_json::json;

use crate::common::{Server, Ws};

#[tokio::test]
async fn events_of_every_kind_reach_every_subscriber_once_and_in_order() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let (ta, tb) = (s.token(&t).await, s.token(&t).await);
    let u = "live";
    let (mut wa, mut wb) = (s.ws(&ta).await, s.ws(&tb).await);
    assert_eq!(wa.subscribe(u, None).await["seq"], 0);
    let sub = wb.subscribe(u, None).await;
    assert_eq!(
        (
            sub["type"].clone(),
            sub["recovered"].clone(),
            sub["viewers"].clone()
        ),
        (json!("subscribed"), json!(false), json!(2))
    );
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": u, "x": 1.5, "y": 2.5, "text": "hi", "broadcastId": "bid-1"})),
            &ta,
        )
        .await;
    let cid = r.json()["chat"]["id"].as_str().unwrap().to_owned();
    let kid = r.json()["chat"]["comments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{cid}/comments"),
            Some(json!({"text": "re"})),
            &tb,
        )
        .await
        .json()["comment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.authed(
        "PATCH",
        &format!("/api/v1/chats/{cid}/comments/{reply}"),
        Some(json!({"text": "re2"})),
        &tb,
    )
    .await;
    s.authed(
        "PATCH",
        &format!("/api/v1/chats/{cid}"),
        Some(json!({"x": 9, "y": 8})),
        &ta,
    )
    .await;
    s.authed(
        "PATCH",
        &format!("/api/v1/chats/{cid}"),
        Some(json!({"resolved": true})),
        &tb,
    )
    .await;
    s.authed(
        "DELETE",
        &format!("/api/v1/chats/{cid}/comments/{reply}"),
        None,
        &tb,
    )
    .await;
    s.authed(
        "DELETE",
        &format!("/api/v1/chats/{cid}/comments/{kid}?broadcastId=last"),
        None,
        &ta,
    )
    .await;
    let want = [
        "new-image-chat",
        "comment-added",
        "comment-edited",
        "moved",
        "resolved",
        "comment-deleted",
        "deleted-image-chat",
    ];
    for ws in [&mut wa, &mut wb] {
        for (i, kind) in want.iter().enumerate() {
            let e = ws.event(u).await;
            assert_eq!(e["seq"], i as u64 + 1);
            let got = e["change"]["op"]
                .as_str()
                .unwrap_or_else(|| e["type"].as_str().unwrap());
            assert_eq!(got, *kind, "{e}");
        }
        ws.quiet(u, Duration::from_millis(300)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn new_image_chat_frame_is_small() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "https://shop.example/p/1#hero.jpg";
    assert_eq!(u.len(), 33);
    let mut ws = s.ws(&tok).await;
    ws.subscribe(u, None).await;
    let bid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let body =
        json!({"urlId": u, "x": 33.3333, "y": 66.6667, "text": "x".repeat(60), "broadcastId": bid});
    assert_eq!(
        s.authed("POST", "/api/v1/chats", Some(body), &tok)
            .await
            .status,
        201
    );
    ws.event(u).await;
    let frame = ws.frames.iter().find(|f| {
        f.starts_with(b"{\"type\":\"new-image-chat\"")
            || String::from_utf8_lossy(f).contains("new-image-chat")
    });
    let size = frame.expect("the event's frame").len();
    println!("new-image-chat frame for a 60-character comment: {size} bytes");
    assert!(size <= 512, "{size} bytes");
    s.stop().await;
}

#[tokio::test]
async fn recovery_by_epoch_and_seq() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "rec";
    s.create(&tok, u, "before").await;
    let epoch = s.snapshot(&tok, u).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..5 {
        s.create(&tok, u, &format!("missed {i}")).await;
    }
    let mut ws = s.ws(&tok).await;
    let sub = ws.subscribe(u, Some((&epoch, 1))).await;
    assert_eq!(
        (
            sub["recovered"].clone(),
            sub["seq"].clone(),
            sub["epoch"].clone()
        ),
        (json!(true), json!(6), json!(epoch))
    );
    for seq in 2..=6 {
        assert_eq!(ws.event(u).await["seq"], seq);
    }
    s.create(&tok, u, "live").await;
    assert_eq!(ws.event(u).await["seq"], 7);
    // Resubscribing on the same connection is a fresh resync.
    let again = ws.subscribe(u, Some((&epoch, 5))).await;
    assert_eq!(again["recovered"], true);
    assert_eq!(ws.event(u).await["seq"], 6);
    assert_eq!(ws.event(u).await["seq"], 7);

    for position in [Some(("another-epoch", 1)), None, Some((epoch.as_str(), 99))] {
        let mut w = s.ws(&tok).await;
        let sub = w.subscribe(u, position).await;
        assert_eq!(
            (sub["recovered"].clone(), sub["epoch"].clone()),
            (json!(false), json!(epoch)),
            "{position:?}"
        );
        w.quiet(u, Duration::from_millis(300)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn hello_rules_messages_and_limits() {
    let s = Server::start().await;
    let (t, _) = s.tenant("read").await;
    let tok = s.token(&t).await;

    let mut ws = Ws::connect(s.addr, None).await;
    ws.send(json!({"type": "hello", "token": "garbage"})).await;
    assert_eq!(ws.recv().await["code"], "unauthorized");
    assert_eq!(ws.close_code(Duration::from_secs(3)).await, Some(4401));

    let mut ws = Ws::connect(s.addr, None).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["code"], "unauthorized");
    assert_eq!(ws.close_code(Duration::from_secs(3)).await, Some(4401));

    let mut ws = s.ws(&tok).await;
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    ws.send_frame(1, b"{not json").await;
    assert_eq!(ws.recv().await["code"], "invalid_message");
    ws.send(json!({"type": "subscribe", "id": 42, "urlId": "u".repeat(1025)}))
        .await;
    let e = ws.recv().await;
    assert_eq!(
        (e["code"].clone(), e["id"].clone()),
        (json!("invalid_message"), json!(42))
    );
    ws.send(json!({"type": "unsubscribe", "id": "un", "urlId": "never"}))
        .await;
    assert_eq!(ws.recv().await["type"], "unsubscribed");
    for i in 0..100 {
        ws.send(json!({"type": "subscribe", "id": i, "urlId": format!("lim-{i}")}))
            .await;
    }
    for i in 0..100 {
        let m = ws.recv_where(move |m| m["id"] == i).await;
        assert_eq!(m["type"], "subscribed");
    }
    ws.send(json!({"type": "subscribe", "id": "over", "urlId": "lim-100"}))
        .await;
    let m = ws.recv_where(|m| m["id"] == "over").await;
    assert_eq!(m["code"], "too_many_subscriptions");
    ws.send(json!({"type": "subscribe", "id": "again", "urlId": "lim-7"}))
        .await;
    assert_eq!(
        ws.recv_where(|m| m["id"] == "again").await["type"],
        "subscribed",
        "resubscribing is not a new slot"
    );
    ws.send_frame(1, &vec![b' '; 16 * 1024 + 1]).await;
    assert_eq!(ws.close_code(Duration::from_secs(3)).await, Some(1009));

    let (restricted, _) = {
        let r = s
            .authed(
                "POST",
                "/api/v1/admin/tenants",
                Some(json!({"tenantId": "ws-origin", "anonymous": "read", "origins": ["https://ok.example"]})),
                crate::common::ADMIN_KEY,
            )
            .await;
        assert_eq!(r.status, 201);
        ("ws-origin".to_owned(), ())
    };
    let tok = s.token(&restricted).await;
    let mut ws = Ws::connect(s.addr, Some("https://evil.example")).await;
    ws.send(json!({"type": "hello", "token": tok})).await;
    assert_eq!(ws.recv().await["code"], "forbidden");
    assert_eq!(ws.close_code(Duration::from_secs(3)).await, Some(4403));
    s.stop().await;
}

#[tokio::test]
async fn hello_must_come_within_the_timeout() {
    let s = Server::start().await;
    let mut ws = Ws::connect(s.addr, None).await;
    tokio::time::pause();
    // Paused time auto-advances while everything waits, so the 10 s pass at once.
    let code = ws.close_code(Duration::from_secs(11)).await;
    tokio::time::resume();
    assert_eq!(code, Some(4401));
    s.stop().await;
}

#[tokio::test]
async fn presence_counts_viewers_and_is_coalesced() {
    let s = Server::start().await;
    let (t, _) = s.tenant("read").await;
    let u = "pres";
    let mut watcher = s.ws(&s.token(&t).await).await;
    watcher.subscribe(u, None).await;
    let mut others = Vec::new();
    for _ in 0..5 {
        let mut w = s.ws(&s.token(&t).await).await;
        w.subscribe(u, None).await;
        others.push(w);
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut seen = Vec::new();
    while let Some(m) = watcher
        .try_recv_where(
            &|m: &serde_json::Value| m["type"] == "presence",
            Duration::from_millis(50),
        )
        .await
    {
        seen.push(m["viewers"].as_u64().unwrap());
    }
    assert!(!seen.is_empty() && seen.len() <= 3, "{seen:?}");
    assert_eq!(seen.last(), Some(&6));
    drop(others);
    let m = watcher
        .try_recv_where(
            &|m: &serde_json::Value| m["type"] == "presence" && m["viewers"] == 1,
            Duration::from_secs(4),
        )
        .await;
    assert!(m.is_some(), "viewers drop back to 1 when the others leave");
    s.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4408_and_slows_nobody() {
    let s = Server::start_with(|c| {
        c.outbox_capacity = 8;
        c.write_rate_per_minute = 0;
        c.anonymous_writes_per_address_per_minute = 0;
        // A batch window lets messages wait in the outbox; with a capacity
        // this small the fast subscriber must not batch.
        c.batch_window_ms = 0;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "slow";
    // The slow client subscribes, then stops reading: its socket buffers fill
    // with big events, then its outbox overflows.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = Ws::handshake(
        socket.connect(s.addr).await.unwrap(),
        &s.addr.to_string(),
        None,
    )
    .await;
    slow.send(json!({"type": "hello", "token": tok})).await;
    assert_eq!(slow.recv().await["type"], "welcome");
    slow.subscribe(u, None).await;
    let mut fast = s.ws(&tok).await;
    fast.subscribe(u, None).await;
    let text = "😀".repeat(2000);
    let n = 1000;
    let writer = {
        let tok = tok.clone();
        let addr = s.addr;
        let text = text.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                let body = json!({"urlId": u, "x": 1, "y": 1, "text": text});
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let bearer = format!("Bearer {tok}");
                let r = crate::common::http_on(
                    stream,
                    &addr.to_string(),
                    "POST",
                    "/api/v1/chats",
                    Some(body.to_string().into_bytes()),
                    &[("authorization", &bearer)],
                )
                .await
                .unwrap();
                assert_eq!(r.status, 201);
            }
        })
    };
    for seq in 1..=n {
        assert_eq!(
            fast.event(u).await["seq"],
            seq,
            "the fast subscriber gets everything in order"
        );
    }
    writer.await.unwrap();
    assert_eq!(slow.close_code(Duration::from_secs(20)).await, Some(4408));
    s.stop().await;
}

#[tokio::test]
async fn a_busy_connection_gets_batched_frames_in_order() {
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 0;
        c.batch_window_ms = 200;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "busy";
    let mut ws = s.ws(&tok).await;
    ws.subscribe(u, None).await;
    let before = ws.frames.len();
    for i in 0..10 {
        s.create(&tok, u, &format!("m{i}")).await;
    }
    for seq in 1..=10 {
        assert_eq!(ws.event(u).await["seq"], seq);
    }
    let frames = &ws.frames[before..];
    assert!(frames.len() < 10, "ten events in {} frames", frames.len());
    assert!(
        frames.iter().any(|f| f.starts_with(b"[")),
        "some frames carry a batch"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_viewer_joining_while_a_batch_waits_gets_no_event_twice() {
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 0;
        c.batch_window_ms = 300;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "joining";
    let mut first = s.ws(&tok).await;
    first.subscribe(u, None).await;
    // The first event goes out at once; the next two wait for the window.
    for i in 0..3 {
        s.create(&tok, u, &format!("m{i}")).await;
    }
    let mut late = s.ws(&tok).await;
    let sub = late.subscribe(u, None).await;
    assert_eq!(
        sub["seq"], 3,
        "the waiting batch is part of what came before"
    );
    s.create(&tok, u, "after").await;
    for seq in 1..=4 {
        assert_eq!(first.event(u).await["seq"], seq);
    }
    assert_eq!(
        late.event(u).await["seq"],
        4,
        "the late viewer's first event is the first after its seq"
    );
    s.stop().await;
}

#[tokio::test]
async fn viewers_who_all_leave_and_come_back_at_once_keep_getting_events() {
    // The leavers' clean-up and the returners' subscribe overlap: the last
    // unsubscribe of the old copy of the image must not cut off the new one.
    let s = Server::start_with(|c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "storm";
    let mut seq = 0;
    for _round in 0..5 {
        let mut leaving = Vec::new();
        for _ in 0..20 {
            let mut w = s.ws(&tok).await;
            w.subscribe(u, None).await;
            leaving.push(w);
        }
        drop(leaving);
        let mut back = Vec::new();
        for _ in 0..20 {
            let mut w = s.ws(&tok).await;
            w.subscribe(u, None).await;
            back.push(w);
        }
        seq += 1;
        s.create(&tok, u, "still there?").await;
        for w in &mut back {
            assert_eq!(w.event(u).await["seq"], seq);
        }
    }
    s.stop().await;
}
