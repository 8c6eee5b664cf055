//! Webhooks (contract §12) against a real receiver that verifies every
//! delivery with the independent `standardwebhooks` package, checks order
//! per image and drops duplicates by `webhook-id`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receivers::Receiver;
use crate::common::{basic, Server};

const BASE_MS: u64 = 200;

async fn server() -> Server {
    Server::start_with(|c| {
        c.webhook_allow_private = true;
        c.webhook_retry_base_ms = BASE_MS;
        c.write_rate_per_minute = 0;
    })
    .await
}

/// Registers an endpoint: its id and secret.
async fn register(s: &Server, tenant: &str, secret: &str, body: Value) -> (String, String) {
    let auth = basic(tenant, secret);
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/webhooks",
            Some(body),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    (
        v["id"].as_str().expect("id").to_owned(),
        v["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn tenant_call(
    s: &Server,
    tenant: &str,
    secret: &str,
    method: &str,
    path: &str,
) -> crate::common::Resp {
    let auth = basic(tenant, secret);
    s.http(method, path, None, &[("authorization", &auth)])
        .await
}

async fn comment(s: &Server, token: &str, chat: &str, text: &str) {
    let r = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{chat}/comments"),
            Some(json!({"text": text})),
            token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

fn accepted(state: &Value) -> Vec<Value> {
    state["accepted"].as_array().cloned().unwrap_or_default()
}

fn seqs_of(state: &Value, url_id: &str) -> Vec<u64> {
    accepted(state)
        .iter()
        .filter(|a| a["body"]["data"]["urlId"] == url_id)
        .filter_map(|a| a["body"]["data"]["seq"].as_u64())
        .collect()
}

/// The receiver fails, then recovers: every message arrives, signed,
/// once, in seq order per image, each retry after at least the base delay
/// and with the same `webhook-id`; the deliveries list shows both kinds of
/// attempt.
#[tokio::test]
async fn failed_deliveries_are_retried_in_order_until_the_receiver_recovers() {
    let rx = Receiver::start();
    let s = server().await;
    let (tenant, secret) = s.tenant("write").await;
    let (hook, whsec) = register(&s, &tenant, &secret, json!({"url": rx.url("a")})).await;
    rx.set("a", Some(&whsec), "fail").await;
    let token = s.token(&tenant).await;
    let chat = s.create(&token, "img-1", "first").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.create(&token, "img-2", "other image").await;
    for i in 0..4 {
        comment(&s, &token, &chat, &format!("reply {i}")).await;
    }
    // Several failed attempts, of the first message of each image only.
    let failing = rx
        .until("a", Duration::from_secs(10), |st| {
            st["attempts"].as_array().is_some_and(|a| a.len() >= 4)
        })
        .await;
    let attempts = failing["attempts"].as_array().unwrap();
    for a in attempts {
        assert_eq!(a["verified"], true, "{a}");
        assert_eq!(
            a["body"]["data"]["seq"], 1,
            "a later event went before the first: {a}"
        );
    }
    // Retries of one message keep its id, wait at least the base, and
    // back off: 200, 400, 800 ms less jitter. (A sender that retried only
    // at its one-second poll would take 3 s or more for these three.)
    let first = attempts[0]["webhookId"].clone();
    let same = |st: &Value| -> Vec<f64> {
        st["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["webhookId"] == first)
            .map(|a| a["receivedAtMs"].as_f64().unwrap())
            .collect()
    };
    let st = rx
        .until("a", Duration::from_secs(10), |st| same(st).len() >= 4)
        .await;
    let at = same(&st);
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g >= BASE_MS as f64 - 5.0), "{gaps:?}");
    assert!(gaps[2] > gaps[0], "no backoff: {gaps:?}");
    assert!(
        gaps[..3].iter().sum::<f64>() < 2600.0,
        "retries wait for a poll: {gaps:?}"
    );
    rx.set("a", None, "ok").await;
    let done = rx
        .until("a", Duration::from_secs(20), |st| accepted(st).len() >= 6)
        .await;
    assert_eq!(seqs_of(&done, "img-1"), vec![1, 2, 3, 4, 5]);
    assert_eq!(seqs_of(&done, "img-2"), vec![1]);
    assert_eq!(done["orderErrors"], json!([]));
    assert_eq!(done["unverified"], 0);
    // Each body is the event as on the WebSocket, with tenantId and epoch.
    let snap = s.snapshot(&token, "img-1").await;
    for a in accepted(&done) {
        let b = &a["body"];
        assert_eq!(b["data"]["tenantId"], tenant.as_str());
        assert_eq!(b["data"]["epoch"], snap["epoch"]);
        assert_eq!(b["type"], b["data"]["type"]);
        assert!(b["timestamp"].as_str().unwrap().ends_with('Z'), "{b}");
    }
    let list = tenant_call(
        &s,
        &tenant,
        &secret,
        "GET",
        &format!("/api/v1/tenant/webhooks/{hook}/deliveries"),
    )
    .await;
    assert_eq!(list.status, 200);
    let d = list.json()["deliveries"].as_array().unwrap().clone();
    assert!(d.iter().any(|x| x["status"] == 500));
    assert!(d.iter().any(|x| x["status"] == 204));
    assert!(
        d.windows(2)
            .all(|w| w[0]["at"].as_i64() >= w[1]["at"].as_i64()),
        "newest first"
    );
    s.stop().await;
}

/// No answer within 10 s, a dropped connection, a redirect (not
/// followed) and a closed port are failures; the message then arrives
/// once the receiver answers.
#[tokio::test]
async fn timeouts_dropped_connections_redirects_and_closed_ports_fail() {
    let rx = Receiver::start();
    let s = server().await;
    let (tenant, secret) = s.tenant("write").await;
    let mut secrets = Vec::new();
    for name in ["slow", "drop", "redirect"] {
        let body = json!({"url": rx.url(name), "events": ["new-image-chat"]});
        secrets.push(register(&s, &tenant, &secret, body).await.1);
    }
    let [slow, drop, redirect] = [&secrets[0], &secrets[1], &secrets[2]];
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (closed_hook, _) = register(
        &s,
        &tenant,
        &secret,
        json!({"url": format!("http://127.0.0.1:{closed}/x"), "events": ["new-image-chat"]}),
    )
    .await;
    rx.set_slow("slow", 11.0).await;
    rx.set("slow", Some(slow), "slow").await;
    rx.set("drop", Some(drop), "drop").await;
    rx.set("redirect", Some(redirect), "redirect").await;
    let token = s.token(&tenant).await;
    let t0 = std::time::Instant::now();
    s.create(&token, "img", "hello").await;
    rx.until("drop", Duration::from_secs(10), |st| {
        st["attempts"].as_array().is_some_and(|a| a.len() >= 2)
    })
    .await;
    rx.until("redirect", Duration::from_secs(10), |st| {
        st["attempts"].as_array().is_some_and(|a| a.len() >= 2)
    })
    .await;
    assert_eq!(
        rx.state("redirect-redirected").await["attempts"]
            .as_array()
            .map_or(0, Vec::len),
        0,
        "the redirect was followed"
    );
    let closed_list = tenant_call(
        &s,
        &tenant,
        &secret,
        "GET",
        &format!("/api/v1/tenant/webhooks/{closed_hook}/deliveries"),
    )
    .await
    .json();
    let c = &closed_list["deliveries"][0];
    assert_eq!(c["status"], Value::Null, "{c}");
    assert!(c["error"].as_str().unwrap().contains("connect"), "{c}");
    // The slow endpoint's first attempt is abandoned at 10 s, then retried.
    rx.until("slow", Duration::from_secs(20), |st| {
        st["attempts"].as_array().is_some_and(|a| a.len() >= 2)
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_secs(10));
    for name in ["drop", "redirect", "slow"] {
        rx.set(name, None, "ok").await;
    }
    for name in ["drop", "redirect", "slow"] {
        let st = rx
            .until(name, Duration::from_secs(30), |st| !accepted(st).is_empty())
            .await;
        assert_eq!(accepted(&st).len(), 1, "{name}: {st:#}");
        assert_eq!(st["unverified"], 0, "{name}");
    }
    s.stop().await;
}

/// Pending deliveries live in the store: a server stopped while its
/// receiver fails delivers them all, in order, once it is back.
#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let rx = Receiver::start();
    let s = server().await;
    let db = s.db.clone();
    let (tenant, secret) = s.tenant("write").await;
    let (_, whsec) = register(&s, &tenant, &secret, json!({"url": rx.url("r")})).await;
    rx.set("r", Some(&whsec), "fail").await;
    let token = s.token(&tenant).await;
    let chat = s.create(&token, "img", "one").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        comment(&s, &token, &chat, &format!("c{i}")).await;
    }
    rx.until("r", Duration::from_secs(10), |st| {
        !st["attempts"].as_array().unwrap().is_empty()
    })
    .await;
    s.stop().await;
    rx.set("r", None, "ok").await;
    let s = Server::start_on(&db, |c| {
        c.webhook_allow_private = true;
        c.webhook_retry_base_ms = BASE_MS;
    })
    .await;
    let done = rx
        .until("r", Duration::from_secs(20), |st| accepted(st).len() >= 4)
        .await;
    assert_eq!(seqs_of(&done, "img"), vec![1, 2, 3, 4]);
    assert_eq!(done["orderErrors"], json!([]));
    s.stop().await;
}

/// The SSRF rule: literal private addresses are refused at registration,
/// names that resolve to them at each delivery; redirects are not followed.
#[tokio::test]
async fn private_addresses_are_refused_at_registration_and_at_delivery() {
    let rx = Receiver::start();
    let s = Server::start_with(|c| {
        c.webhook_retry_base_ms = BASE_MS;
    })
    .await;
    let (tenant, secret) = s.tenant("write").await;
    let auth = basic(&tenant, &secret);
    for url in [
        "http://127.0.0.1/x",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:192.168.1.1]/",
        "http://169.254.169.254/latest",
        "http://0.0.0.0/",
        "http://2130706433/",
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "http://:@example.com/",
        "http://example.com/a\r\nX-Injected: 1",
        "http://example.com:0/",
        "http://[2001:2::1]/",
        "http://[64:ff9b:1::7f00:1]/",
        "http://[::ffff:0:7f00:1]/",
        "not a url",
    ] {
        let r = s
            .http(
                "POST",
                "/api/v1/tenant/webhooks",
                Some(json!({"url": url})),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "url", "{url}");
    }
    // A name is allowed at registration; it resolves to loopback, so
    // every delivery is refused and the receiver hears nothing.
    let url = format!("http://localhost:{}/hook/p", rx.port);
    let (hook, whsec) = register(&s, &tenant, &secret, json!({"url": url})).await;
    rx.set("p", Some(&whsec), "ok").await;
    let token = s.token(&tenant).await;
    s.create(&token, "img", "x").await;
    let path = format!("/api/v1/tenant/webhooks/{hook}/deliveries");
    let t0 = std::time::Instant::now();
    let list = loop {
        let l = tenant_call(&s, &tenant, &secret, "GET", &path).await.json();
        if l["deliveries"].as_array().is_some_and(|d| !d.is_empty()) {
            break l;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let d = &list["deliveries"][0];
    assert_eq!(d["status"], Value::Null);
    let why = d["error"].as_str().unwrap();
    assert!(
        why.contains("resolves to an address that is not globally routable"),
        "{d}"
    );
    assert!(
        !why.contains("127.0.0.1") && !why.contains("::1"),
        "the inside of the network is not told: {d}"
    );
    let test = tenant_call(
        &s,
        &tenant,
        &secret,
        "POST",
        &format!("/api/v1/tenant/webhooks/{hook}/test"),
    )
    .await;
    assert_eq!(test.status, 200);
    assert_eq!(test.json()["status"], Value::Null, "{}", test.text());
    assert_eq!(rx.state("p").await["attempts"], json!([]));
    s.stop().await;
}

/// Registration rules, listing without secrets, at most 10, tenants kept
/// apart, deleting, the test event and `GET /api/v1/tenant/events`.
#[tokio::test]
async fn endpoints_are_validated_listed_limited_and_kept_per_tenant() {
    let rx = Receiver::start();
    let s = server().await;
    let (tenant, secret) = s.tenant("write").await;
    let (other, other_secret) = s.tenant("write").await;
    let auth = basic(&tenant, &secret);
    for (body, field) in [
        (json!({"url": rx.url("a"), "events": []}), "events"),
        (json!({"url": rx.url("a"), "events": ["nope"]}), "events"),
        (
            json!({"url": rx.url("a"), "events": "new-image-chat"}),
            "events",
        ),
        (json!({"events": ["notification"]}), "url"),
        (json!({"url": 7}), "url"),
    ] {
        let r = s
            .http(
                "POST",
                "/api/v1/tenant/webhooks",
                Some(body.clone()),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/webhooks",
            Some(json!({"url": rx.url("a")})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let (first, whsec) = register(
        &s,
        &tenant,
        &secret,
        json!({"url": rx.url("a"), "events": ["deleted-image-chat", "new-image-chat"]}),
    )
    .await;
    assert!(whsec.starts_with("whsec_"));
    for i in 1..10 {
        register(
            &s,
            &tenant,
            &secret,
            json!({"url": rx.url(&format!("n{i}"))}),
        )
        .await;
    }
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/webhooks",
            Some(json!({"url": rx.url("x")})),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let list = tenant_call(&s, &tenant, &secret, "GET", "/api/v1/tenant/webhooks").await;
    let hooks = list.json()["webhooks"].as_array().unwrap().clone();
    assert_eq!(hooks.len(), 10);
    let mine = hooks
        .iter()
        .find(|h| h["id"] == first.as_str())
        .expect("listed");
    assert_eq!(
        mine["events"],
        json!(["deleted-image-chat", "new-image-chat"])
    );
    assert_eq!(mine["url"], rx.url("a").as_str());
    // Kept as the URL parser writes it.
    let (upper, _) = register(
        &s,
        &other,
        &other_secret,
        json!({"url": rx.url("U").replace("http://", "HTTP://")}),
    )
    .await;
    let listed = tenant_call(&s, &other, &other_secret, "GET", "/api/v1/tenant/webhooks")
        .await
        .json();
    assert_eq!(listed["webhooks"][0]["url"], rx.url("U").as_str());
    assert_eq!(
        tenant_call(
            &s,
            &other,
            &other_secret,
            "DELETE",
            &format!("/api/v1/tenant/webhooks/{upper}")
        )
        .await
        .status,
        204
    );
    assert!(
        !list.text().contains("whsec_"),
        "secrets are shown once only"
    );
    assert!(mine["createdAt"].is_i64());
    // Another tenant sees none of them and cannot touch them.
    let theirs = tenant_call(&s, &other, &other_secret, "GET", "/api/v1/tenant/webhooks").await;
    assert_eq!(theirs.json()["webhooks"], json!([]));
    for (m, p) in [
        ("DELETE", format!("/api/v1/tenant/webhooks/{first}")),
        ("GET", format!("/api/v1/tenant/webhooks/{first}/deliveries")),
        ("POST", format!("/api/v1/tenant/webhooks/{first}/test")),
    ] {
        assert_eq!(
            tenant_call(&s, &other, &other_secret, m, &p).await.status,
            404,
            "{m} {p}"
        );
    }
    // The test event: one signed attempt, answered and listed.
    rx.set("a", Some(&whsec), "ok").await;
    let t = tenant_call(
        &s,
        &tenant,
        &secret,
        "POST",
        &format!("/api/v1/tenant/webhooks/{first}/test"),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text());
    assert_eq!(t.json()["status"], 204);
    let st = rx.state("a").await;
    assert_eq!(accepted(&st)[0]["body"]["type"], "ping");
    assert_eq!(st["unverified"], 0);
    let d = tenant_call(
        &s,
        &tenant,
        &secret,
        "GET",
        &format!("/api/v1/tenant/webhooks/{first}/deliveries"),
    )
    .await
    .json();
    assert_eq!(
        d["deliveries"][0]["webhookId"],
        accepted(&st)[0]["webhookId"]
    );
    // Only the types asked for: an update is not delivered.
    let token = s.token(&tenant).await;
    let chat = s.create(&token, "img", "x").await["chat"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    comment(&s, &token, &chat, "an update").await;
    let r = s
        .authed("DELETE", &format!("/api/v1/chats/{chat}"), None, &token)
        .await;
    assert_eq!(r.status, 200);
    let st = rx
        .until("a", Duration::from_secs(10), |st| accepted(st).len() >= 3)
        .await;
    let got = accepted(&st);
    let types: Vec<&str> = got
        .iter()
        .map(|a| a["body"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ping", "new-image-chat", "deleted-image-chat"]);
    // A receiver fills gaps from the tenant's events call.
    let epoch = s.snapshot(&token, "img").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = tenant_call(
        &s,
        &tenant,
        &secret,
        "GET",
        &format!("/api/v1/tenant/events?urlId=img&epoch={epoch}&since=0"),
    )
    .await;
    let theirs = s
        .authed(
            "GET",
            &format!("/api/v1/events?urlId=img&epoch={epoch}&since=0"),
            None,
            &token,
        )
        .await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.json(), theirs.json());
    assert_eq!(mine.json()["events"].as_array().unwrap().len(), 3);
    let r = s
        .http(
            "GET",
            &format!("/api/v1/tenant/events?urlId=img&epoch={epoch}&since=0"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    // Deleting: 204, then gone.
    let r = tenant_call(
        &s,
        &tenant,
        &secret,
        "DELETE",
        &format!("/api/v1/tenant/webhooks/{first}"),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = tenant_call(
        &s,
        &tenant,
        &secret,
        "DELETE",
        &format!("/api/v1/tenant/webhooks/{first}"),
    )
    .await;
    assert_eq!(r.status, 404);
    let list = tenant_call(&s, &tenant, &secret, "GET", "/api/v1/tenant/webhooks").await;
    assert_eq!(list.json()["webhooks"].as_array().unwrap().len(), 9);
    s.stop().await;
}
