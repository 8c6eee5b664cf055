//! Per-client-address limits: session creation, anonymous writes, failed
//! operator-key and tenant-secret attempts, and which address counts
//! behind `--trusted-proxies`.

use serde_json::{json, Value};

use crate::common::{basic, Resp, Server, ADMIN_KEY};

async fn post_session(s: &Server, tenant: &str, xff: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
    s.http(
        "POST",
        "/api/v1/sessions",
        Some(json!({"tenantId": tenant})),
        &headers,
    )
    .await
}

fn assert_limited(r: &Resp, what: &str) {
    assert_eq!(r.status, 429, "{what}: {}", r.text());
    assert_eq!(r.error_code(), "rate_limited", "{what}");
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        wait >= 1,
        "{what}: Retry-After {:?}",
        r.header("retry-after")
    );
}

#[tokio::test]
async fn session_creation_is_limited_per_address_and_a_forwarded_header_is_ignored_by_default() {
    let s = Server::start_with(|c| {
        c.sessions_per_address_per_minute = 1;
        c.session_burst = 5;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    for i in 0..5 {
        let r = post_session(&s, &t, Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(r.status, 200, "session {i}: {}", r.text());
    }
    let r = post_session(&s, &t, Some("203.0.113.50")).await;
    assert_limited(
        &r,
        "the sixth session from one peer, whatever X-Forwarded-For says",
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("sessions"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let s = Server::start_with(|c| {
        c.trusted_proxies = 1;
        c.sessions_per_address_per_minute = 1;
        c.session_burst = 2;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    for _ in 0..2 {
        assert_eq!(post_session(&s, &t, Some("192.0.2.7")).await.status, 200);
    }
    assert_limited(
        &post_session(&s, &t, Some("192.0.2.7")).await,
        "a third session for 192.0.2.7",
    );
    // A client cannot pick its own address: it can only add entries to
    // the left of what the proxy appends.
    assert_limited(
        &post_session(&s, &t, Some("10.9.9.9, 192.0.2.7")).await,
        "a forged leftmost entry",
    );
    // However long the forged part: only the proxy's entry is read.
    let forged: Vec<String> = (0..100).map(|i| format!("10.1.0.{i}")).collect();
    let long = format!("{}, 192.0.2.7", forged.join(", "));
    assert_limited(
        &post_session(&s, &t, Some(&long)).await,
        "a hundred forged entries before the proxy's",
    );
    assert_limited(
        &post_session(&s, &t, Some("garbage, 192.0.2.7")).await,
        "a forged entry that is not an address",
    );
    assert_eq!(
        post_session(&s, &t, Some("192.0.2.8")).await.status,
        200,
        "another client behind the same proxy"
    );
    // IPv6 clients are counted by their /64.
    for _ in 0..2 {
        assert_eq!(
            post_session(&s, &t, Some("2001:db8:5:6::1")).await.status,
            200
        );
    }
    assert_limited(
        &post_session(&s, &t, Some("2001:db8:5:6:ffff::2")).await,
        "another address of the same /64",
    );
}

#[tokio::test]
async fn a_fresh_anonymous_session_per_write_does_not_escape_the_address_limit() {
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 60;
        c.write_burst = 20;
        c.anonymous_writes_per_address_per_minute = 1;
        c.anonymous_write_burst = 5;
    })
    .await;
    let (t, secret) = s.tenant("write").await;
    let u = "anon-flood";
    let mut statuses = Vec::new();
    for i in 0..12 {
        let tok = s.token(&t).await;
        let r = s
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": u, "x": 1, "y": 1, "text": format!("w{i}")})),
                &tok,
            )
            .await;
        if r.status == 429 {
            assert_limited(&r, "an anonymous write over the address's rate");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7);
    let sso_tok = s
        .sso_token(&t, &secret, json!({"id": "u-1", "username": "Named"}))
        .await;
    assert_eq!(
        s.snapshot(&sso_tok, u).await["seq"],
        5,
        "a refused write logged nothing"
    );
    // Signed-in users are limited per user, not per address.
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": u, "x": 1, "y": 1, "text": "named"})),
            &sso_tok,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

async fn operator(s: &Server, key: &str, xff: &str) -> Resp {
    let auth = format!("Bearer {key}");
    s.http(
        "POST",
        "/api/v1/admin/tenants",
        Some(json!({"tenantId": format!("o-{}", imagechat::domain::random_id(6).to_lowercase().replace('_', "x"))})),
        &[("authorization", &auth), ("x-forwarded-for", xff)],
    )
    .await
}

#[tokio::test]
async fn failed_keys_and_secrets_lock_the_address_out_even_for_the_right_one() {
    let s = Server::start_with(|c| {
        c.trusted_proxies = 1;
        c.auth_failures_per_address_per_minute = 1;
        c.auth_failure_burst = 3;
    })
    .await;
    let (t, secret) = s.tenant("write").await;
    let guesser = "198.51.100.66";
    for i in 0..2 {
        assert_eq!(
            operator(&s, &format!("guess-{i}"), guesser).await.status,
            401,
            "guess {i}"
        );
    }
    assert_limited(
        &operator(&s, "guess-2", guesser).await,
        "the third wrong key, the last of the burst",
    );
    assert_limited(
        &operator(&s, ADMIN_KEY, guesser).await,
        "the right key from a locked-out address",
    );
    // The same bucket covers tenant secrets, by Basic auth and by login.
    let auth = basic(&t, &secret);
    let r = s
        .http(
            "GET",
            "/api/v1/tenant/me",
            None,
            &[("authorization", &auth), ("x-forwarded-for", guesser)],
        )
        .await;
    assert_limited(&r, "a right tenant secret from a locked-out address");
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/login",
            Some(json!({"tenantId": t, "secret": secret})),
            &[("x-forwarded-for", guesser)],
        )
        .await;
    assert_limited(&r, "a dashboard login from a locked-out address");
    let other = "198.51.100.67";
    assert_eq!(operator(&s, ADMIN_KEY, other).await.status, 201);
    for i in 0..2 {
        let wrong = basic(&t, &format!("nope-{i}"));
        let r = s
            .http(
                "GET",
                "/api/v1/tenant/me",
                None,
                &[("authorization", &wrong), ("x-forwarded-for", other)],
            )
            .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/login",
            Some(json!({"tenantId": t, "secret": "nope"})),
            &[("x-forwarded-for", other)],
        )
        .await;
    assert_limited(&r, "the third failure, a wrong login");
    // A correct call never counts: the third address signs in as often as it likes.
    for _ in 0..10 {
        let r = s
            .http(
                "GET",
                "/api/v1/tenant/me",
                None,
                &[
                    ("authorization", &auth),
                    ("x-forwarded-for", "198.51.100.68"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[tokio::test]
async fn the_defaults_let_a_class_behind_one_address_start_together() {
    // 30 people behind one school or office address open the page at
    // once and each leaves a marker: nobody is refused.
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let mut tokens = Vec::new();
    for _ in 0..30 {
        tokens.push(s.token(&t).await);
    }
    for (i, tok) in tokens.iter().enumerate() {
        let r = s
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": "class", "x": 1, "y": 1, "text": format!("pupil {i}")})),
                tok,
            )
            .await;
        assert_eq!(r.status, 201, "pupil {i}: {}", r.text());
    }
    let v: Value = s.snapshot(&tokens[0], "class").await;
    assert_eq!(v["seq"], 30);
}

async fn upgrade(s: &Server) -> Resp {
    s.http(
        "GET",
        "/api/v1/ws",
        None,
        &[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ],
    )
    .await
}

#[tokio::test]
async fn one_address_holds_at_most_its_websockets_and_a_closed_one_frees_a_place() {
    let s = Server::start_with(|c| c.websockets_per_address = 3).await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(s.ws(&tok).await);
    }
    let r = upgrade(&s).await;
    assert_limited(&r, "a fourth WebSocket from one address");
    assert!(r.text().contains("connections"), "{}", r.text());
    // The open ones are untouched.
    for ws in &mut open {
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.recv_where(|m| m["type"] == "pong").await["type"], "pong");
    }
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        let r = upgrade(&s).await;
        if r.status == 101 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a closed socket frees its place");
}

#[tokio::test]
async fn a_refused_session_can_be_read_by_the_page_that_asked() {
    let s = Server::start_with(|c| {
        c.sessions_per_address_per_minute = 1;
        c.session_burst = 1;
    })
    .await;
    let (t, _) = s.tenant("write").await;
    let ask = || {
        s.http(
            "POST",
            "/api/v1/sessions",
            Some(json!({"tenantId": t})),
            &[("origin", "https://site.example")],
        )
    };
    assert_eq!(ask().await.status, 200);
    let r = ask().await;
    assert_limited(&r, "the second session");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://site.example"),
        "CORS headers on the 429"
    );
}

#[tokio::test]
async fn authorization_schemes_are_matched_without_regard_to_case() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let b = basic(&t, &secret).replacen("Basic", "bAsIc", 1);
    let r = s
        .http("GET", "/api/v1/tenant/me", None, &[("authorization", &b)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let k = format!("bearer {ADMIN_KEY}");
    let r = s
        .http(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "case-check"})),
            &[("authorization", &k)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let tok = s.token(&t).await;
    let r = s
        .http(
            "GET",
            "/api/v1/chats?urlId=x",
            None,
            &[("authorization", &format!("BEARER {tok}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
