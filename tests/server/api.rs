//! The REST API: sessions, every chat call, permissions, isolation, input
//! validation, limits, tenant and operator calls.

use serde_json::{json, Value};

use crate::common::{enc, sso, Server, ADMIN_KEY};

#[tokio::test]
async fn sessions_follow_the_tenant_policy_and_sso() {
    let s = Server::start().await;
    let (open, _) = s.tenant("write").await;
    let r = s.session(&open, None).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["user"]["anonymous"], true);
    assert!(j["user"]["id"].as_str().unwrap().starts_with("anon:"));
    assert_eq!(
        (j["canWrite"].clone(), j["moderator"].clone()),
        (json!(true), json!(false))
    );

    let (read, _) = s.tenant("read").await;
    assert_eq!(s.session(&read, None).await.json()["canWrite"], false);
    let (closed, secret) = s.tenant("none").await;
    assert_eq!(s.session(&closed, None).await.status, 401);
    assert_eq!(s.session("no-such-tenant", None).await.status, 404);

    let user = json!({"id": "u-1", "username": "Ann", "avatar": "https://a.example/a.png", "isAdmin": true});
    let r = s.session(&closed, Some(sso(&secret, &user))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["user"]["id"].clone(), j["user"]["name"].clone()),
        (json!("u-1"), json!("Ann"))
    );
    assert_eq!(j["moderator"], true);
    assert_eq!(j["user"]["avatar"], "https://a.example/a.png");
    assert_eq!(
        s.session(&closed, Some(sso("wrong", &user))).await.status,
        401
    );
    let r = s
        .session(&closed, Some(json!({"userDataJSONBase64": 5})))
        .await;
    assert_eq!(r.status, 401, "a malformed SSO object is refused");
    s.stop().await;
}

#[tokio::test]
async fn every_chat_call_works_and_logs_one_event_each() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "https://site.example/p#a.png";
    let j = s.create(&tok, u, "  first  ").await;
    assert_eq!(j["seq"], 1);
    let chat = &j["chat"];
    let cid = chat["id"].as_str().unwrap().to_owned();
    assert_eq!(chat["comments"][0]["text"], "first");
    assert!(chat.get("urlId").is_none() && chat.get("updatedAt").is_none());

    let r = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{cid}/comments"),
            Some(json!({"text": "reply", "broadcastId": "b-1"})),
            &tok,
        )
        .await;
    assert_eq!((r.status, r.json()["seq"].clone()), (201, json!(2)));
    let kid = r.json()["comment"]["id"].as_str().unwrap().to_owned();
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}/comments/{kid}"),
            Some(json!({"text": "reply v2"})),
            &tok,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["comment"]["editedAt"].is_i64());
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}"),
            Some(json!({"x": 50, "y": 60, "resolved": true})),
            &tok,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["seq"], 5, "a move and a resolve are two events");
    assert_eq!(r.json()["chat"]["resolved"], true);
    assert!(r.json()["chat"]["updatedAt"].is_i64());
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}"),
            Some(json!({"x": 50, "y": 60, "resolved": true})),
            &tok,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["seq"].clone()),
        (200, json!(5)),
        "a no-op logs nothing"
    );
    let r = s
        .authed(
            "DELETE",
            &format!("/api/v1/chats/{cid}/comments/{kid}?broadcastId=b-2"),
            None,
            &tok,
        )
        .await;
    assert_eq!((r.status, r.json()["seq"].clone()), (200, json!(6)));

    let snap = s.snapshot(&tok, u).await;
    assert_eq!(snap["seq"], 6);
    let c = &snap["chats"][0];
    assert_eq!(
        (c["x"].clone(), c["y"].clone(), c["resolved"].clone()),
        (json!(50.0), json!(60.0), json!(true))
    );
    assert_eq!(c["comments"].as_array().unwrap().len(), 1);

    let ev = s
        .authed(
            "GET",
            &format!(
                "/api/v1/events?urlId={}&epoch={}&since=0",
                enc(u),
                enc(snap["epoch"].as_str().unwrap())
            ),
            None,
            &tok,
        )
        .await
        .json();
    let kinds: Vec<String> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["type"].as_str().unwrap(),
                e["change"]["op"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "new-image-chat/",
            "image-chat-updated/comment-added",
            "image-chat-updated/comment-edited",
            "image-chat-updated/moved",
            "image-chat-updated/resolved",
            "image-chat-updated/comment-deleted"
        ]
    );
    assert_eq!(ev["events"][1]["broadcastId"], "b-1");
    assert_eq!(ev["events"][2]["broadcastId"], serde_json::Value::Null);

    let r = s
        .authed(
            "DELETE",
            &format!("/api/v1/chats/{cid}?broadcastId=b-3"),
            None,
            &tok,
        )
        .await;
    assert_eq!((r.status, r.json()["seq"].clone()), (200, json!(7)));
    assert_eq!(s.snapshot(&tok, u).await["chats"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn the_events_endpoint_pages_and_refuses_lost_positions() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "img";
    for i in 0..3 {
        s.create(&tok, u, &format!("e{i}")).await;
    }
    let epoch = s.snapshot(&tok, u).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |q: String| {
        let s = &s;
        let tok = tok.clone();
        async move {
            s.authed("GET", &format!("/api/v1/events?{q}"), None, &tok)
                .await
        }
    };
    let r = get(format!("urlId={u}&epoch={epoch}&since=1")).await;
    assert_eq!(r.status, 200);
    let seqs: Vec<u64> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((seqs, r.json()["seq"].clone()), (vec![2, 3], json!(3)));
    assert_eq!(
        get(format!("urlId={u}&epoch={epoch}&since=3")).await.json()["events"],
        json!([])
    );
    for q in [
        format!("urlId={u}&epoch=old&since=1"),
        format!("urlId={u}&epoch={epoch}&since=4"),
    ] {
        let r = get(q).await;
        assert_eq!((r.status, r.error_code()), (410, "history_gone".into()));
    }
    for (q, field) in [
        (format!("urlId={u}&since=1"), "epoch"),
        (format!("urlId={u}&epoch={epoch}"), "since"),
        (format!("urlId={u}&epoch={epoch}&since=-1"), "since"),
        (format!("epoch={epoch}&since=1"), "urlId"),
    ] {
        let r = get(q).await;
        assert_eq!(
            (r.status, r.json()["error"]["field"].clone()),
            (400, json!(field))
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn permissions_for_author_other_user_moderator_and_anonymous_policies() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let author = s.token(&t).await;
    let other = s.token(&t).await;
    let moderator = s
        .sso_token(
            &t,
            &secret,
            json!({"id": "m", "username": "Mod", "isModerator": true}),
        )
        .await;
    let u = "perm";
    let chat = s.create(&author, u, "mine").await["chat"].clone();
    let cid = chat["id"].as_str().unwrap();
    let first = chat["comments"][0]["id"].as_str().unwrap();
    let reply = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{cid}/comments"),
            Some(json!({"text": "other's"})),
            &other,
        )
        .await
        .json()["comment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone else's things: refused, nothing logged.
    for (m, p, b) in [
        (
            "PATCH",
            format!("/api/v1/chats/{cid}"),
            Some(json!({"x": 1, "y": 1})),
        ),
        ("DELETE", format!("/api/v1/chats/{cid}"), None),
        (
            "PATCH",
            format!("/api/v1/chats/{cid}/comments/{first}"),
            Some(json!({"text": "x"})),
        ),
        (
            "DELETE",
            format!("/api/v1/chats/{cid}/comments/{first}"),
            None,
        ),
    ] {
        let r = s.authed(m, &p, b, &other).await;
        assert_eq!(
            (r.status, r.error_code()),
            (403, "forbidden".into()),
            "{m} {p}"
        );
    }
    assert_eq!(s.snapshot(&author, u).await["seq"], 2);
    // Anyone who may write may resolve; the author may edit their own.
    assert_eq!(
        s.authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}"),
            Some(json!({"resolved": true})),
            &other
        )
        .await
        .status,
        200
    );
    assert_eq!(
        s.authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}/comments/{reply}"),
            Some(json!({"text": "edited"})),
            &other
        )
        .await
        .status,
        200
    );
    // A moderator may do everything.
    assert_eq!(
        s.authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}"),
            Some(json!({"x": 3, "y": 4})),
            &moderator
        )
        .await
        .status,
        200
    );
    assert_eq!(
        s.authed(
            "DELETE",
            &format!("/api/v1/chats/{cid}/comments/{reply}"),
            None,
            &moderator
        )
        .await
        .status,
        200
    );
    assert_eq!(
        s.authed("DELETE", &format!("/api/v1/chats/{cid}"), None, &moderator)
            .await
            .status,
        200
    );
    // Policy read: anonymous users read but never write.
    let (ro, _) = s.tenant("read").await;
    let reader = s.token(&ro).await;
    assert_eq!(s.snapshot(&reader, u).await["seq"], 0);
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": u, "x": 1, "y": 1, "text": "no"})),
            &reader,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(s.snapshot(&reader, u).await["seq"], 0);
    s.stop().await;
}

#[tokio::test]
async fn tenants_are_isolated() {
    let s = Server::start().await;
    let (t1, _) = s.tenant("write").await;
    let (t2, s2) = s.tenant("write").await;
    let (k1, k2) = (s.token(&t1).await, s.token(&t2).await);
    let u = "same-url";
    let cid = s.create(&k1, u, "t1 only").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.snapshot(&k2, u).await["chats"], json!([]));
    for (m, p, b) in [
        (
            "PATCH",
            format!("/api/v1/chats/{cid}"),
            Some(json!({"resolved": true})),
        ),
        ("DELETE", format!("/api/v1/chats/{cid}"), None),
        (
            "POST",
            format!("/api/v1/chats/{cid}/comments"),
            Some(json!({"text": "x"})),
        ),
    ] {
        assert_eq!(s.authed(m, &p, b, &k2).await.status, 404, "{m} {p}");
    }
    let basic = format!("Basic {}", base64_of(&format!("{t2}:{s2}")));
    let r = s
        .http(
            "DELETE",
            &format!("/api/v1/tenant/chats/{cid}"),
            None,
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(s.snapshot(&k1, u).await["seq"], 1);
    s.stop().await;
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn bad_input_gets_the_right_error_and_changes_nothing() {
    let s = Server::start_with(|c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let u = "bad";
    let cid = s.create(&tok, u, "keep").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = json!({"urlId": u, "x": 10, "y": 10, "text": "fine"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("x", json!(-0.01)), "x"),
        (with("y", json!(100.01)), "y"),
        (with("x", json!("1")), "x"),
        (with("text", json!("   ")), "text"),
        (with("text", json!("é".repeat(2001))), "text"),
        (with("urlId", json!("")), "urlId"),
        (with("urlId", json!("é".repeat(513))), "urlId"),
        (with("urlId", json!("a\u{1}b")), "urlId"),
        (with("broadcastId", json!("has space")), "broadcastId"),
        (with("text", json!(5)), "text"),
    ];
    for (body, field) in cases {
        let r = s
            .authed("POST", "/api/v1/chats", Some(body.clone()), &tok)
            .await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.error_code(), "invalid_input");
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
    let bearer = format!("Bearer {tok}");
    let h = [("authorization", bearer.as_str())];
    assert_eq!(
        s.raw("POST", "/api/v1/chats", b"{nope", &h).await.status,
        400
    );
    assert_eq!(s.raw("POST", "/api/v1/chats", b"[]", &h).await.status, 400);
    let big = format!("{{\"text\":\"{}\"}}", "a".repeat(70_000));
    let r = s.raw("POST", "/api/v1/chats", big.as_bytes(), &h).await;
    assert_eq!(
        (r.status, r.error_code()),
        (413, "payload_too_large".into())
    );
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}"),
            Some(json!({"x": 5})),
            &tok,
        )
        .await;
    assert_eq!(r.status, 400, "x without y");
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{cid}"),
            Some(json!({"broadcastId": "b"})),
            &tok,
        )
        .await;
    assert_eq!(r.status, 400, "a PATCH naming nothing");
    let r = s
        .authed(
            "POST",
            "/api/v1/chats/missing/comments",
            Some(json!({"text": "hi"})),
            &tok,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".into()));
    let r = s
        .authed(
            "POST",
            "/api/v1/chats/missing/comments",
            Some(json!({"text": ""})),
            &tok,
        )
        .await;
    assert_eq!(r.status, 400, "validation comes before existence");
    assert_eq!(
        s.http("GET", "/api/v1/chats?urlId=bad", None, &[])
            .await
            .status,
        401
    );
    assert_eq!(
        s.authed("GET", "/api/v1/chats?urlId=bad", None, "garbage")
            .await
            .status,
        401
    );
    let snap = s.snapshot(&tok, u).await;
    assert_eq!(
        (
            snap["seq"].clone(),
            snap["chats"][0]["comments"][0]["text"].clone()
        ),
        (json!(1), json!("keep"))
    );
    s.stop().await;
}

#[tokio::test]
async fn writes_over_the_rate_get_429_and_change_nothing() {
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 60;
        c.write_burst = 5;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = s
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": "r", "x": 1, "y": 1, "text": format!("{i}")})),
                &tok,
            )
            .await;
        if r.status == 429 {
            assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
            assert_eq!(r.error_code(), "rate_limited");
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [201, 201, 201, 201, 201, 429, 429, 429]);
    assert_eq!(s.snapshot(&tok, "r").await["seq"], 5);
    let other = s.token(&t).await;
    assert_eq!(s.create(&other, "r", "someone else").await["seq"], 6);
    s.stop().await;
}

#[tokio::test]
async fn origins_and_cors() {
    let s = Server::start().await;
    let id = "cors-t";
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": id, "anonymous": "write", "origins": ["https://ok.example"]})),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(r.status, 201);
    let body = json!({"tenantId": id});
    let r = s
        .http(
            "POST",
            "/api/v1/sessions",
            Some(body.clone()),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = s
        .http(
            "POST",
            "/api/v1/sessions",
            Some(body),
            &[("origin", "https://ok.example")],
        )
        .await;
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, Some("https://ok.example"))
    );
    let tok = r.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {tok}");
    let r = s
        .http(
            "GET",
            "/api/v1/chats?urlId=x",
            None,
            &[
                ("authorization", &bearer),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .http(
            "GET",
            "/api/v1/chats?urlId=x",
            None,
            &[
                ("authorization", "Bearer nope"),
                ("origin", "https://ok.example"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (401, Some("https://ok.example"))
    );
    let r = s
        .http(
            "OPTIONS",
            "/api/v1/chats",
            None,
            &[
                ("origin", "https://ok.example"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    s.stop().await;
}

#[tokio::test]
async fn operator_and_tenant_api() {
    let s = Server::start().await;
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "x"})),
            "wrong",
        )
        .await;
    assert_eq!(r.status, 401);
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "Bad_Id"})),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "given", "secret": "s3cret"})),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["secret"].clone()),
        (201, json!("s3cret"))
    );
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "given"})),
            ADMIN_KEY,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (409, "conflict".into()));
    assert_eq!(
        s.session("given", None).await.status,
        401,
        "anonymous defaults to none"
    );

    let (t, secret) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let cid = s.create(&tok, "img-a", "one").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Activity is kept in milliseconds: let the second image be later.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.create(&tok, "img-b", "two").await;
    let basic = format!("Basic {}", base64_of(&format!("{t}:{secret}")));
    let h = [("authorization", basic.as_str())];
    let images = s
        .http("GET", "/api/v1/tenant/images", None, &h)
        .await
        .json();
    assert_eq!(images["images"][0]["urlId"], "img-b");
    assert_eq!(images["images"][1]["chatCount"], 1);
    let chats = s
        .http("GET", "/api/v1/tenant/chats?urlId=img-a", None, &h)
        .await
        .json();
    assert_eq!(chats["chats"][0]["id"], cid.as_str());
    let wrong = format!("Basic {}", base64_of(&format!("{t}:nope")));
    assert_eq!(
        s.http(
            "DELETE",
            &format!("/api/v1/tenant/chats/{cid}"),
            None,
            &[("authorization", &wrong)]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        s.http("DELETE", &format!("/api/v1/tenant/chats/{cid}"), None, &h)
            .await
            .status,
        200
    );
    assert_eq!(s.snapshot(&tok, "img-a").await["chats"], json!([]));

    // The dashboard's cookie session.
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/login",
            Some(json!({"tenantId": t, "secret": "nope"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/login",
            Some(json!({"tenantId": t, "secret": secret})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let set = r.header("set-cookie").unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let me = s
        .http("GET", "/api/v1/tenant/me", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(me.json()["tenantId"], t.as_str());
    let forged = format!("{}x", cookie);
    assert_eq!(
        s.http("GET", "/api/v1/tenant/me", None, &[("cookie", &forged)])
            .await
            .status,
        401
    );
    let live = s
        .http("GET", "/api/v1/tenant/live", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(live.json()["connections"], 0);
    assert_eq!(s.http("GET", "/api/v1/nope", None, &[]).await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn usage_is_metered_per_day() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let mut ws = s.ws(&tok).await;
    ws.subscribe("meter", None).await;
    let cid = s.create(&tok, "meter", "one").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.authed(
        "POST",
        &format!("/api/v1/chats/{cid}/comments"),
        Some(json!({"text": "two"})),
        &tok,
    )
    .await;
    ws.event("meter").await;
    ws.event("meter").await;
    // Let the presence message of the subscription go out too, then read it.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    while ws
        .try_recv_where(&|_| true, std::time::Duration::from_millis(200))
        .await
        .is_some()
    {}
    let today = imagechat::usage::today();
    let basic = format!("Basic {}", base64_of(&format!("{t}:{secret}")));
    let r = s
        .http(
            "GET",
            &format!("/api/v1/tenant/usage?from=2020-01-01&to={today}"),
            None,
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(r.status, 400, "a range over 366 days");
    let r = s
        .http(
            "GET",
            &format!("/api/v1/tenant/usage?from={today}&to={today}"),
            None,
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let day = &r.json()["days"][0];
    assert_eq!(day["date"], today.as_str());
    assert_eq!(day["conversationCreateCount"], 1);
    assert_eq!(day["commentCreateCount"], 2);
    assert_eq!(day["peakConnections"], 1);
    // Everything after welcome counts: subscribed, two events, one presence.
    assert_eq!(day["pubSubMessageCount"], 4, "{day}");
    let bytes: usize = ws.frames[1..].iter().map(Vec::len).sum();
    assert_eq!(day["pubSubBandwidth"], bytes as u64, "{day}");
    let metrics = s.http("GET", "/metrics", None, &[]).await.text();
    assert!(metrics.contains("# TYPE imagechat_messages_delivered_total counter"));
    assert!(
        metrics.contains(&format!("imagechat_connections{{tenant=\"{t}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("imagechat_http_requests_total{route=\"/api/v1/chats\",status=\"201\"} 1"),
        "{metrics}"
    );
    // Latency histograms: HTTP by route, write transactions, and events
    // from commit to the viewers' sockets (two events were delivered).
    assert!(
        metrics.contains(
            "imagechat_http_request_duration_seconds_bucket{route=\"/api/v1/chats\",le=\"0.005\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("imagechat_store_transaction_seconds_count 2"),
        "{metrics}"
    );
    let deliveries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("imagechat_event_delivery_seconds_count "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(deliveries.is_some_and(|n| n >= 1), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn pages_and_health() {
    let s = Server::start().await;
    assert_eq!(s.http("GET", "/healthz", None, &[]).await.status, 200);
    let r = s.http("GET", "/readyz", None, &[]).await;
    assert_eq!((r.status, r.json()["store"].clone()), (200, json!("ok")));
    let r = s.http("GET", "/", None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(
        s.http("GET", "/static/..%2Fimagechat.js", None, &[])
            .await
            .status,
        404
    );
    s.stop().await;
}

/// A snapshot served from memory is the store's answer byte for byte, and
/// a write made through another node shows in the next one at once, with
/// no broker between the two (here: two servers on one database, each with
/// its own in-process broker; the one answering from its cache never hears
/// of the other's writes).
#[tokio::test]
async fn cached_snapshots_are_exact_and_current_across_nodes() {
    let a = Server::start_with(|c| c.snapshot_cache_bytes = 0).await;
    let b = Server::start_on(&a.db, |_| {}).await;
    let (tenant, _) = a.tenant("write").await;
    let token = a.token(&tenant).await;
    async fn get(s: &Server, url_id: &str, token: &str) -> String {
        let r = s
            .authed("GET", &format!("/api/v1/chats?urlId={url_id}"), None, token)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.text()
    }
    for i in 0..4 {
        let written = a.create(&token, "img", &format!("comment {i}")).await;
        let truth = get(&a, "img", &token).await;
        assert_eq!(get(&b, "img", &token).await, truth, "after write {i}");
        assert_eq!(
            get(&b, "img", &token).await,
            truth,
            "from memory after write {i}"
        );
        let snap: Value = serde_json::from_str(&truth).unwrap();
        assert_eq!(snap["seq"], json!(i + 1));
        assert_eq!(snap["chats"][i]["id"], written["chat"]["id"]);
    }
    assert_eq!(
        get(&b, "never-written", &token).await,
        get(&a, "never-written", &token).await
    );
}
