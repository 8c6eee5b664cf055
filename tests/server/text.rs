//! The text rules (docs/protocol.md, "Field rules"): refused characters and
//! blank text are refused the same way on every field and on both stores;
//! nothing unchecked reaches a store (PostgreSQL cannot hold a NUL at all).

use serde_json::json;

use crate::common::{enc, Server, ADMIN_KEY};

const REFUSED: [&str; 6] = [
    "a\u{0}b",
    "bell\u{7}",
    "\u{202E}gnp.exe",
    "x\u{2066}y",
    "\u{85}",
    "\u{FFFF}",
];
const BLANK: [&str; 4] = [
    "\u{200B}\u{200B}",
    "\u{FEFF}",
    " \u{3000}\u{00A0}\t",
    "\u{2060}\u{FE0F}",
];

#[tokio::test]
async fn comments_url_ids_and_names_refuse_controls_overrides_and_blank_text() {
    let s = Server::start_with(|c| c.write_rate_per_minute = 0).await;
    let (t, secret) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let chat = s.create(&tok, "img", "first").await;
    let id = chat["chat"]["id"].as_str().unwrap().to_owned();
    for bad in REFUSED.iter().chain(BLANK.iter()) {
        for (path, method, body, field) in [
            (
                "/api/v1/chats".to_owned(),
                "POST",
                json!({"urlId": "img", "x": 1, "y": 1, "text": bad}),
                "text",
            ),
            (
                "/api/v1/chats".to_owned(),
                "POST",
                json!({"urlId": bad, "x": 1, "y": 1, "text": "ok"}),
                "urlId",
            ),
            (
                format!("/api/v1/chats/{id}/comments"),
                "POST",
                json!({"text": bad}),
                "text",
            ),
            (
                format!("/api/v1/chats/{id}/comments/1"),
                "PATCH",
                json!({"text": bad}),
                "text",
            ),
        ] {
            let r = s.authed(method, &path, Some(body), &tok).await;
            assert_eq!(
                (r.status, r.json()["error"]["field"].as_str()),
                (400, Some(field)),
                "{method} {path} {bad:?}: {}",
                r.text()
            );
        }
        let r = s
            .authed(
                "GET",
                &format!("/api/v1/chats?urlId={}", enc(bad)),
                None,
                &tok,
            )
            .await;
        assert_eq!(r.status, 400, "{bad:?}");
        // A refused or blank SSO name or id is a 401, like any bad payload.
        for user in [
            json!({"id": bad, "username": "Ok"}),
            json!({"id": "u1", "username": bad}),
        ] {
            let r = s
                .session(&t, Some(crate::common::sso(&secret, &user)))
                .await;
            assert_eq!(r.status, 401, "{user}");
        }
    }
    // A path naming an id with a NUL names nothing, on every store.
    for path in [
        "/api/v1/chats/a%00b".to_owned(),
        format!("/api/v1/chats/{id}/comments/1%00"),
    ] {
        let r = s
            .authed(
                "PATCH",
                &path,
                Some(json!({"resolved": true, "text": "t"})),
                &tok,
            )
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    let r = s.authed("GET", "/api/v1/annotations/%00", None, &tok).await;
    assert_eq!(r.status, 404);
    // A tenant id is checked before any lookup: a NUL in one is "no such
    // tenant" (never a storage failure) on every store.
    let basic = crate::common::basic(&format!("{t}\u{0}"), &secret);
    let r = s
        .http(
            "POST",
            "/api/v1/sessions",
            Some(json!({"tenantId": format!("{t}\u{0}")})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/login",
            Some(json!({"tenantId": format!("{t}\u{0}"), "secret": secret})),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = s
        .http(
            "GET",
            "/api/v1/tenant/images",
            None,
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // Settings too.
    let r = s
        .authed(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": "nul", "secret": "a\u{0}b"})),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].as_str()),
        (400, Some("secret"))
    );
    // Nothing of it was stored: one chat, one comment, seq 1.
    let snap = s.snapshot(&tok, "img").await;
    assert_eq!(
        (
            snap["seq"].as_u64(),
            snap["chats"][0]["comments"].as_array().map(Vec::len)
        ),
        (Some(1), Some(1))
    );
    s.stop().await;
}

#[tokio::test]
async fn names_and_ids_are_trimmed_before_they_are_counted() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("none").await;
    let long = "n".repeat(100);
    let r = s
        .session(
            &t,
            Some(crate::common::sso(
                &secret,
                &json!({"id": "  u-7 ", "username": format!("  {long}\u{3000}")}),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (
            r.json()["user"]["id"].as_str(),
            r.json()["user"]["name"].as_str()
        ),
        (Some("u-7"), Some(long.as_str()))
    );
    // Right-to-left text is text: only the override characters are refused.
    let tok = r.json()["token"].as_str().unwrap().to_owned();
    let c = s.create(&tok, "صورة", "هذا جيد \u{200F}").await;
    assert_eq!(c["chat"]["comments"][0]["text"], "هذا جيد \u{200F}");
    s.stop().await;
}
