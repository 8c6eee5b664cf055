//! The directory, mentions, follows, notifications (REST and live) and
//! e-mail digests (contract §13); e-mail against a real SMTP server.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receivers::SmtpSink;
use crate::common::Server;

async fn server() -> Server {
    Server::start_with(|c| c.write_rate_per_minute = 0).await
}

/// A signed-in user's token.
async fn user(
    s: &Server,
    tenant: &str,
    secret: &str,
    id: &str,
    name: &str,
    extra: Value,
) -> String {
    let mut u = json!({"id": id, "username": name});
    if let (Some(u), Some(e)) = (u.as_object_mut(), extra.as_object()) {
        u.extend(e.clone());
    }
    s.sso_token(tenant, secret, u).await
}

async fn post(s: &Server, token: &str, path: &str, body: Value) -> crate::common::Resp {
    s.authed("POST", path, Some(body), token).await
}

async fn chat_with(s: &Server, token: &str, text: &str, mentions: Value) -> String {
    let r = post(
        s,
        token,
        "/api/v1/chats",
        json!({"urlId": "img", "x": 1, "y": 2, "text": text, "mentions": mentions}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["chat"]["id"].as_str().unwrap().to_owned()
}

async fn reply(s: &Server, token: &str, chat: &str, text: &str, mentions: Option<Value>) -> Value {
    let mut body = json!({"text": text});
    if let Some(m) = mentions {
        body["mentions"] = m;
    }
    let r = post(s, token, &format!("/api/v1/chats/{chat}/comments"), body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

async fn inbox(s: &Server, token: &str) -> Value {
    let r = s.authed("GET", "/api/v1/notifications", None, token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn the_directory_is_searched_by_name_prefix_within_the_tenant_only() {
    let s = server().await;
    let (t, secret) = s.tenant("write").await;
    let (other, other_secret) = s.tenant("write").await;
    let ann = user(
        &s,
        &t,
        &secret,
        "u-ann",
        "Ann",
        json!({"email": "ann@example.com"}),
    )
    .await;
    user(
        &s,
        &t,
        &secret,
        "u-anna",
        "anna",
        json!({"displayName": "Anna Karenina"}),
    )
    .await;
    user(&s, &t, &secret, "u-emile", "Émile", json!({})).await;
    user(&s, &t, &secret, "u-pct", "50%_off", json!({})).await;
    user(&s, &other, &other_secret, "u-andy", "Andy", json!({})).await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = s.authed("GET", "/api/v1/users?q=an", None, &ann).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names(r.json()), ["Ann", "Anna Karenina"]);
    assert!(
        !r.text().contains("example.com"),
        "addresses are never shown"
    );
    for (q, want) in [
        ("%C3%A9MI", vec!["Émile"]),
        ("50%25_", vec!["50%_off"]),
        ("5_", vec![]),
    ] {
        let got = s
            .authed("GET", &format!("/api/v1/users?q={q}"), None, &ann)
            .await;
        assert_eq!(names(got.json()), want, "{q}");
    }
    assert_eq!(
        s.authed("GET", "/api/v1/users?q=", None, &ann)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // The other tenant's Andy is invisible here, and ours there.
    assert_eq!(
        names(
            s.authed("GET", "/api/v1/users?q=and", None, &ann)
                .await
                .json()
        ),
        Vec::<String>::new()
    );
    let andy = user(&s, &other, &other_secret, "u-andy", "Andy", json!({})).await;
    assert_eq!(
        names(
            s.authed("GET", "/api/v1/users?q=a", None, &andy)
                .await
                .json()
        ),
        ["Andy"]
    );
    // Anonymous users are never in it; a read-only anonymous token cannot search.
    let anon = s.token(&t).await;
    assert_eq!(
        s.authed("GET", "/api/v1/users?q=", None, &anon)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let (ro, _) = s.tenant("read").await;
    let ro_anon = s.token(&ro).await;
    assert_eq!(
        s.authed("GET", "/api/v1/users?q=a", None, &ro_anon)
            .await
            .status,
        403
    );
    assert_eq!(
        s.http("GET", "/api/v1/users?q=a", None, &[]).await.status,
        401
    );
    let long = "a".repeat(101);
    let r = s
        .authed("GET", &format!("/api/v1/users?q={long}"), None, &ann)
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("q"))
    );
    s.stop().await;
}

#[tokio::test]
async fn mentions_are_validated_stored_and_notify_once() {
    let s = server().await;
    let (t, secret) = s.tenant("write").await;
    let (other, other_secret) = s.tenant("write").await;
    let ann = user(&s, &t, &secret, "ann", "Ann", json!({})).await;
    let bob = user(&s, &t, &secret, "bob", "Bob", json!({})).await;
    user(&s, &other, &other_secret, "zed", "Zed", json!({})).await;
    let anon = s.token(&t).await;
    for (mentions, why) in [
        (json!(["nobody"]), "unknown"),
        (json!(["zed"]), "another tenant's user"),
        (json!(["anon:abcdef"]), "anonymous"),
        (
            json!((0..11).map(|i| format!("u{i}")).collect::<Vec<_>>()),
            "too many",
        ),
        (json!("bob"), "not a list"),
        (json!([7]), "not ids"),
    ] {
        let r = post(
            &s,
            &ann,
            "/api/v1/chats",
            json!({"urlId": "img", "x": 1, "y": 2, "text": "hi", "mentions": mentions}),
        )
        .await;
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "mentions", "{why}");
    }
    assert_eq!(
        s.snapshot(&ann, "img").await["seq"],
        0,
        "refused mentions wrote nothing"
    );
    // Repeats count once, also towards the limit.
    let chat = chat_with(&s, &ann, "hi @Bob", json!(vec!["bob"; 11])).await;
    let snap = s.snapshot(&ann, "img").await;
    assert_eq!(
        snap["chats"][0]["comments"][0]["mentions"],
        json!([{"id": "bob", "name": "Bob"}])
    );
    let b = inbox(&s, &bob).await;
    assert_eq!(b["unread"], 1);
    let n = &b["notifications"][0];
    assert_eq!(
        (
            n["reason"].clone(),
            n["urlId"].clone(),
            n["chatId"].clone(),
            n["commentId"].clone(),
            n["by"]["id"].clone(),
            n["read"].clone()
        ),
        (
            json!("mention"),
            json!("img"),
            json!(chat),
            json!("1"),
            json!("ann"),
            json!(false)
        )
    );
    // Bob writes (and so follows) and is mentioned: one notification, a mention.
    reply(&s, &bob, &chat, "me too", None).await;
    assert_eq!(inbox(&s, &ann).await["notifications"][0]["reason"], "reply");
    reply(&s, &ann, &chat, "@Bob again", Some(json!(["bob"]))).await;
    let b = inbox(&s, &bob).await;
    assert_eq!(b["unread"], 2);
    assert_eq!(b["notifications"][0]["reason"], "mention");
    // An edit notifies only whom it newly mentions.
    let carl = user(&s, &t, &secret, "carl", "Carl", json!({})).await;
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{chat}/comments/3"),
            Some(json!({"text": "@Bob @Carl", "mentions": ["bob", "carl"]})),
            &ann,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(inbox(&s, &bob).await["unread"], 2);
    assert_eq!(
        inbox(&s, &carl).await["notifications"][0]["reason"],
        "mention"
    );
    // Mentioned out and back in: told once.
    for mentions in [json!(["bob"]), json!(["bob", "carl"])] {
        let r = s
            .authed(
                "PATCH",
                &format!("/api/v1/chats/{chat}/comments/3"),
                Some(json!({"text": "again", "mentions": mentions})),
                &ann,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(inbox(&s, &carl).await["unread"], 1);
    // The excerpt is the first 140 characters.
    let long: String = "é".repeat(150);
    reply(&s, &ann, &chat, &long, None).await;
    assert_eq!(
        inbox(&s, &bob).await["notifications"][0]["excerpt"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        140
    );
    // Anonymous users have no notifications.
    assert_eq!(
        s.authed("GET", "/api/v1/notifications", None, &anon)
            .await
            .status,
        403
    );
    s.stop().await;
}

#[tokio::test]
async fn followers_are_notified_until_they_unfollow_and_writing_follows_again() {
    let s = server().await;
    let (t, secret) = s.tenant("write").await;
    let ann = user(&s, &t, &secret, "ann", "Ann", json!({})).await;
    let bob = user(&s, &t, &secret, "bob", "Bob", json!({})).await;
    let cat = user(&s, &t, &secret, "cat", "Cat", json!({})).await;
    let chat = chat_with(&s, &ann, "start", json!([])).await;
    let path = format!("/api/v1/chats/{chat}/follow");
    assert_eq!(
        s.authed("GET", &path, None, &ann).await.json()["following"],
        true,
        "writing follows"
    );
    assert_eq!(
        s.authed("GET", &path, None, &cat).await.json()["following"],
        false
    );
    assert_eq!(s.authed("POST", &path, None, &cat).await.status, 204);
    assert_eq!(
        s.authed("GET", &path, None, &cat).await.json()["following"],
        true
    );
    reply(&s, &bob, &chat, "one", None).await;
    assert_eq!(inbox(&s, &ann).await["unread"], 1);
    assert_eq!(inbox(&s, &cat).await["unread"], 1);
    assert_eq!(
        inbox(&s, &bob).await["unread"],
        0,
        "never one's own comment"
    );
    assert_eq!(s.authed("DELETE", &path, None, &ann).await.status, 204);
    reply(&s, &bob, &chat, "two", None).await;
    assert_eq!(
        inbox(&s, &ann).await["unread"],
        1,
        "an unfollowing writer is not told"
    );
    reply(&s, &ann, &chat, "back", None).await;
    reply(&s, &bob, &chat, "three", None).await;
    assert_eq!(inbox(&s, &ann).await["unread"], 2, "writing follows again");
    // Unknown chats, anonymous users.
    assert_eq!(
        s.authed("POST", "/api/v1/chats/nochat/follow", None, &cat)
            .await
            .status,
        404
    );
    assert_eq!(
        s.authed("GET", "/api/v1/chats/nochat/follow", None, &cat)
            .await
            .status,
        404
    );
    let anon = s.token(&t).await;
    assert_eq!(s.authed("POST", &path, None, &anon).await.status, 403);
    assert_eq!(s.authed("GET", &path, None, &anon).await.status, 403);
    s.stop().await;
}

#[tokio::test]
async fn notifications_page_by_id_and_are_marked_read_live_on_every_connection() {
    let s = server().await;
    let (t, secret) = s.tenant("write").await;
    let ann = user(&s, &t, &secret, "ann", "Ann", json!({})).await;
    let bob = user(&s, &t, &secret, "bob", "Bob", json!({})).await;
    let mut tab1 = s.ws(&bob).await;
    let mut tab2 = s.ws(&bob).await;
    let mut anns = s.ws(&ann).await;
    let chat = chat_with(&s, &ann, "c0", json!(["bob"])).await;
    // Live, with no subscription, on both of Bob's connections.
    let rest = inbox(&s, &bob).await;
    for ws in [&mut tab1, &mut tab2] {
        let m = ws.recv_where(|m| m["type"] == "notification").await;
        assert_eq!(m["unread"], 1);
        assert_eq!(m["notification"]["chatId"], chat.as_str());
        assert_eq!(
            m["notification"], rest["notifications"][0],
            "the same object as REST"
        );
        assert!(m.get("seq").is_none());
    }
    for i in 1..55 {
        reply(&s, &ann, &chat, &format!("c{i}"), Some(json!(["bob"]))).await;
    }
    let page1 = inbox(&s, &bob).await;
    let list = page1["notifications"].as_array().unwrap();
    assert_eq!((list.len(), page1["unread"].clone()), (50, json!(55)));
    let ids: Vec<i64> = list
        .iter()
        .map(|n| n["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let last = list[49]["id"].as_str().unwrap();
    let page2 = s
        .authed(
            "GET",
            &format!("/api/v1/notifications?before={last}"),
            None,
            &bob,
        )
        .await
        .json();
    assert_eq!(page2["notifications"].as_array().unwrap().len(), 5);
    assert_eq!(page2["notifications"][4]["excerpt"], "c0");
    for bad in ["abc", "-1", "0", "1.5", "99999999999999999999"] {
        let r = s
            .authed(
                "GET",
                &format!("/api/v1/notifications?before={bad}"),
                None,
                &bob,
            )
            .await;
        assert_eq!(
            (r.status, r.json()["error"]["field"].clone()),
            (400, json!("before")),
            "{bad}"
        );
    }
    // Reading some, then all; every connection hears the count.
    let two = json!([list[0]["id"], list[1]["id"]]);
    let r = post(&s, &bob, "/api/v1/notifications/read", json!({"ids": two})).await;
    assert_eq!((r.status, r.json()), (200, json!({"unread": 53})));
    for ws in [&mut tab1, &mut tab2] {
        let m = ws.recv_where(|m| m["type"] == "notifications").await;
        assert_eq!(m["unread"], 53);
    }
    let after = inbox(&s, &bob).await;
    assert_eq!(after["notifications"][0]["read"], true);
    assert_eq!(after["notifications"][2]["read"], false);
    // Another user's ids change nothing.
    let ann_ids = json!([list[2]["id"]]);
    let r = post(
        &s,
        &ann,
        "/api/v1/notifications/read",
        json!({"ids": ann_ids}),
    )
    .await;
    assert_eq!(r.json()["unread"], 0);
    assert_eq!(inbox(&s, &bob).await["unread"], 53);
    for body in [
        json!({"ids": "1"}),
        json!({"ids": [1]}),
        json!({"ids": ["x"]}),
        json!({"ids": null}),
        json!({"ids": ["02"]}),
    ] {
        let r = post(&s, &bob, "/api/v1/notifications/read", body.clone()).await;
        assert_eq!(
            (r.status, r.json()["error"]["field"].clone()),
            (400, json!("ids")),
            "{body}"
        );
    }
    let r = post(&s, &bob, "/api/v1/notifications/read", json!({})).await;
    assert_eq!(r.json(), json!({"unread": 0}));
    tab2.recv_where(|m| m["type"] == "notifications" && m["unread"] == 0)
        .await;
    // Ann, who wrote everything, heard nothing of it.
    assert!(anns
        .try_recv_where(
            &|m: &Value| m["type"] == "notification",
            Duration::from_millis(300)
        )
        .await
        .is_none());
    s.stop().await;
}

/// Digests over a real SMTP server: one e-mail for mentions inside the
/// window, with both parts, the headers and the links; read notifications
/// are not mailed; unsubscribing stops mail.
#[tokio::test]
async fn digests_group_unread_notifications_and_unsubscribing_stops_them() {
    let sink = SmtpSink::start();
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 0;
        c.smtp_url = Some(format!("smtp://127.0.0.1:{}", sink.smtp));
        c.mail_from = Some("Image chat <chat@example.com>".into());
        c.email_digest_seconds = 2;
        c.public_url = Some("https://chat.example.com".into());
    })
    .await;
    let (t, secret) = s.tenant("write").await;
    let ann = user(&s, &t, &secret, "ann", "Ann", json!({})).await;
    user(
        &s,
        &t,
        &secret,
        "bob",
        "Bob",
        json!({"email": "bob@example.com", "locale": "ja"}),
    )
    .await;
    let cat = user(
        &s,
        &t,
        &secret,
        "cat",
        "Cat",
        json!({"email": "cat@example.com"}),
    )
    .await;
    // Dan opted out of e-mail: mentioned, never mailed.
    user(
        &s,
        &t,
        &secret,
        "dan",
        "Dan",
        json!({"email": "dan@example.com", "optedInNotifications": false}),
    )
    .await;
    let r = post(&s, &ann, "/api/v1/chats", json!({"urlId": "img", "x": 1, "y": 2, "text": "first <b>", "mentions": ["bob", "cat", "dan"], "pageUrl": "https://site.example/page"})).await;
    assert_eq!(r.status, 201);
    let chat = r.json()["chat"]["id"].as_str().unwrap().to_owned();
    reply(&s, &ann, &chat, "second", Some(json!(["bob", "cat"]))).await;
    // Cat reads everything before the digest is due: no e-mail for Cat.
    post(&s, &cat, "/api/v1/notifications/read", json!({})).await;
    let mail = sink.until(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mail = if sink.messages().await.len() > mail.len() {
        sink.messages().await
    } else {
        mail
    };
    assert_eq!(mail.len(), 1, "one digest, for Bob only: {mail:#?}");
    let m = &mail[0];
    assert_eq!(m["rcptTos"], json!(["bob@example.com"]));
    assert_eq!(m["subject"], "新しい通知が2件あります");
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    assert!(
        text.contains("\"first <b>\"") && text.contains("\"second\""),
        "{text}"
    );
    assert!(
        html.contains("first &lt;b&gt;") && !html.contains("first <b>"),
        "{html}"
    );
    assert!(
        text.contains(&format!("https://site.example/page#imagechat-{chat}")),
        "{text}"
    );
    let unsub = m["headers"]["List-Unsubscribe"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        unsub.starts_with("<https://chat.example.com/api/v1/unsubscribe?token="),
        "{unsub}"
    );
    assert_eq!(
        m["headers"]["List-Unsubscribe-Post"][0],
        "List-Unsubscribe=One-Click"
    );
    // An anonymous visitor's mention is shown, never mailed.
    let anon = s.token(&t).await;
    reply(&s, &anon, &chat, "buy cheap stuff", Some(json!(["bob"]))).await;
    // Mentions after the digest make the next one, a window later.
    reply(&s, &ann, &chat, "third", Some(json!(["bob"]))).await;
    let mail = sink.until(2, Duration::from_secs(10)).await;
    assert!(mail[1]["text"].as_str().unwrap().contains("third"));
    assert!(
        !mail[1]["text"].as_str().unwrap().contains("second"),
        "nothing is mailed twice"
    );
    assert!(
        !mail[1]["text"].as_str().unwrap().contains("cheap"),
        "an anonymous mention is not mailed"
    );
    // Unsubscribing: the page only shows a button; the POST does it.
    let path = unsub
        .trim_start_matches("<https://chat.example.com")
        .trim_end_matches('>')
        .to_owned();
    let page = s.http("GET", &path, None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<form method=\"post\""),
        "{}",
        page.text()
    );
    reply(&s, &ann, &chat, "fourth", Some(json!(["bob"]))).await;
    let tampered = format!("{}x", path);
    assert_eq!(
        s.http(
            "POST",
            &tampered,
            Some(json!("List-Unsubscribe=One-Click")),
            &[]
        )
        .await
        .status,
        400
    );
    assert_eq!(
        s.http("GET", "/api/v1/unsubscribe", None, &[]).await.status,
        400
    );
    let r = s
        .http(
            "POST",
            &path,
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        sink.messages().await.len(),
        2,
        "nothing after unsubscribing"
    );
    // Signing in again does not subscribe again.
    user(
        &s,
        &t,
        &secret,
        "bob",
        "Bob",
        json!({"email": "bob@example.com"}),
    )
    .await;
    reply(&s, &ann, &chat, "fifth", Some(json!(["bob"]))).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(sink.messages().await.len(), 2);
    s.stop().await;
}
