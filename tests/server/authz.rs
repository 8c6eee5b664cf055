//! The authorization matrix: every REST call × every kind of caller gets
//! exactly the documented answer (docs/protocol.md §4–§7, §15, §16, §22), and
//! nothing leaks: another tenant's chat answers like a chat that does not
//! exist. Runs on SQLite, and on PostgreSQL with `IMAGECHAT_TEST_POSTGRES`.

use serde_json::{json, Value};

use crate::common::{basic, Server, ADMIN_KEY};

const URL: &str = "img";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    NoToken,
    Expired,
    Tampered,
    AnonRead,
    AnonWrite,
    Author,
    OtherUser,
    Moderator,
    OtherTenantUser,
    OtherTenantSecret,
    OwnTenantSecret,
    WrongOperatorKey,
    OperatorKey,
}
use Caller::*;

const CALLERS: [Caller; 13] = [
    NoToken,
    Expired,
    Tampered,
    AnonRead,
    AnonWrite,
    Author,
    OtherUser,
    Moderator,
    OtherTenantUser,
    OtherTenantSecret,
    OwnTenantSecret,
    WrongOperatorKey,
    OperatorKey,
];

struct World {
    auth: std::collections::HashMap<String, String>,
}

impl World {
    fn header(&self, c: Caller) -> Option<String> {
        self.auth.get(&format!("{c:?}")).cloned()
    }
}

/// A fresh chat by the author with a second comment by the author; its ids.
async fn fresh_chat(s: &Server, author: &str) -> (String, String) {
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": URL, "x": 5, "y": 5, "text": "mine"})),
            author,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["chat"]["id"].as_str().unwrap().to_owned();
    let r = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{id}/comments"),
            Some(json!({"text": "more"})),
            author,
        )
        .await;
    let k = r.json()["comment"]["id"].as_str().unwrap().to_owned();
    (id, k)
}

/// The documented answer of one call for one caller.
fn expected(op: &str, c: Caller) -> u16 {
    let session = matches!(
        c,
        AnonRead | AnonWrite | Author | OtherUser | Moderator | OtherTenantUser
    );
    let tenant_auth = matches!(c, OtherTenantSecret | OwnTenantSecret);
    match op {
        "create-tenant" => match c {
            OperatorKey => 201,
            _ => 401,
        },
        "tenant-images" | "tenant-usage" => {
            if tenant_auth {
                200
            } else {
                401
            }
        }
        // The own tenant's chat; for another tenant's credentials it is not there.
        "tenant-delete" | "tenant-snapshot-of-chat" => match c {
            OwnTenantSecret => 200,
            OtherTenantSecret => 404,
            _ => 401,
        },
        "import" => {
            if tenant_auth {
                200
            } else {
                401
            }
        }
        "export" => {
            if session || tenant_auth {
                200
            } else {
                401
            }
        }
        // The read-only anonymous caller lives in a tenant of its own.
        "annotation" => match c {
            AnonWrite | Author | OtherUser | Moderator | OwnTenantSecret => 200,
            AnonRead | OtherTenantUser | OtherTenantSecret => 404,
            _ => 401,
        },
        _ if !session => 401,
        "snapshot" | "events" => 200,
        "create" => match c {
            AnonRead => 403,
            _ => 201,
        },
        "comment" => match c {
            AnonRead => 403,
            OtherTenantUser => 404,
            _ => 201,
        },
        "resolve" => match c {
            AnonRead => 403,
            OtherTenantUser => 404,
            _ => 200,
        },
        // Only the author or a moderator; validation before existence means
        // another tenant's user learns nothing beyond "not found".
        "move" | "reshape" | "delete" | "edit-comment" | "delete-comment" => match c {
            AnonRead => 403,
            Author | Moderator => 200,
            OtherTenantUser => 404,
            _ => 403,
        },
        other => panic!("unknown op {other}"),
    }
}

#[tokio::test]
async fn every_call_and_every_caller_gets_the_documented_answer_and_nothing_leaks() {
    let s = Server::start_with(|c| {
        c.write_rate_per_minute = 0;
        // The matrix makes hundreds of calls with wrong keys from one address.
        c.auth_failures_per_address_per_minute = 0;
        c.anonymous_writes_per_address_per_minute = 0;
        c.sessions_per_address_per_minute = 0;
    })
    .await;
    let (t, secret) = s.tenant("write").await;
    let (t_read, _) = s.tenant("read").await;
    let (t2, secret2) = s.tenant("write").await;
    let sso_token = |tenant: String, secret: String, user: Value| {
        let s = &s;
        async move { s.sso_token(&tenant, &secret, user).await }
    };
    let author = sso_token(
        t.clone(),
        secret.clone(),
        json!({"id": "ana", "username": "Ana"}),
    )
    .await;
    let other = sso_token(
        t.clone(),
        secret.clone(),
        json!({"id": "bo", "username": "Bo"}),
    )
    .await;
    let moderator = sso_token(
        t.clone(),
        secret.clone(),
        json!({"id": "mo", "username": "Mo", "isModerator": true}),
    )
    .await;
    let stranger = sso_token(
        t2.clone(),
        secret2.clone(),
        json!({"id": "ana", "username": "Ana"}),
    )
    .await;
    let anon_write = s.token(&t).await;
    let anon_read = s.token(&t_read).await;
    // An expired token, signed with the server's own key; a tampered one.
    let store = imagechat::store::open(&s.db, 1)
        .await
        .expect("the server's store");
    let expired = store.token_key().sign(&imagechat::domain::Actor {
        tenant_id: t.as_str().into(),
        user: imagechat::protocol::User {
            id: "ana".into(),
            name: "Ana".into(),
            avatar: None,
            anonymous: false,
        },
        moderator: true,
        expires_at: imagechat::domain::now_ms() - 1000,
    });
    let mut tampered = author.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let bearer = |t: &str| format!("Bearer {t}");
    let mut auth = std::collections::HashMap::new();
    for (c, h) in [
        (Expired, bearer(&expired)),
        (Tampered, bearer(&tampered)),
        (AnonRead, bearer(&anon_read)),
        (AnonWrite, bearer(&anon_write)),
        (Author, bearer(&author)),
        (OtherUser, bearer(&other)),
        (Moderator, bearer(&moderator)),
        (OtherTenantUser, bearer(&stranger)),
        (OtherTenantSecret, basic(&t2, &secret2)),
        (OwnTenantSecret, basic(&t, &secret)),
        (WrongOperatorKey, bearer("not-the-operator-key")),
        (OperatorKey, bearer(ADMIN_KEY)),
    ] {
        auth.insert(format!("{c:?}"), h);
    }
    let world = World { auth };
    // Anonymous readers read the image of their own tenant.
    let url_for = |c: Caller| if c == AnonRead { "img" } else { URL };
    let mut cells = 0;
    let mut n = 0;
    for c in CALLERS {
        let (chat, comment) = fresh_chat(&s, &author).await;
        let epoch = s.snapshot(&author, URL).await["epoch"]
            .as_str()
            .unwrap()
            .to_owned();
        n += 1;
        let calls: Vec<(&str, &str, String, Option<Value>)> = vec![
            (
                "snapshot",
                "GET",
                format!("/api/v1/chats?urlId={}", url_for(c)),
                None,
            ),
            (
                "events",
                "GET",
                format!("/api/v1/events?urlId={}&epoch={epoch}&since=0", url_for(c)),
                None,
            ),
            (
                "create",
                "POST",
                "/api/v1/chats".into(),
                Some(json!({"urlId": url_for(c), "x": 1, "y": 1, "text": "t"})),
            ),
            (
                "comment",
                "POST",
                format!("/api/v1/chats/{chat}/comments"),
                Some(json!({"text": "t"})),
            ),
            (
                "resolve",
                "PATCH",
                format!("/api/v1/chats/{chat}"),
                Some(json!({"resolved": true})),
            ),
            (
                "move",
                "PATCH",
                format!("/api/v1/chats/{chat}"),
                Some(json!({"x": 9, "y": 9})),
            ),
            (
                "reshape",
                "PATCH",
                format!("/api/v1/chats/{chat}"),
                Some(json!({"shape": {"type": "rect", "x": 1, "y": 1, "w": 2, "h": 2}})),
            ),
            (
                "edit-comment",
                "PATCH",
                format!("/api/v1/chats/{chat}/comments/{comment}"),
                Some(json!({"text": "edited"})),
            ),
            (
                "delete-comment",
                "DELETE",
                format!("/api/v1/chats/{chat}/comments/{comment}"),
                None,
            ),
            (
                "export",
                "GET",
                format!("/api/v1/annotations?urlId={}", url_for(c)),
                None,
            ),
            (
                "annotation",
                "GET",
                format!("/api/v1/annotations/{chat}"),
                None,
            ),
            ("delete", "DELETE", format!("/api/v1/chats/{chat}"), None),
            ("tenant-images", "GET", "/api/v1/tenant/images".into(), None),
            (
                "tenant-usage",
                "GET",
                "/api/v1/tenant/usage?from=2026-11-01&to=2026-11-29".into(),
                None,
            ),
            (
                "import",
                "POST",
                format!("/api/v1/tenant/annotations?urlId=imp{n}"),
                Some(json!([])),
            ),
            (
                "create-tenant",
                "POST",
                "/api/v1/admin/tenants".into(),
                Some(json!({"tenantId": format!("made-{n}")})),
            ),
        ];
        for (op, method, path, body) in calls {
            // The moderation delete needs the chat still there: a fresh one.
            let headers: Vec<(&str, String)> = world
                .header(c)
                .map(|h| vec![("authorization", h)])
                .unwrap_or_default();
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = s.http(method, &path, body, &h).await;
            let want = expected(op, c);
            let got = if want == 201 && r.status == 200 && op == "create-tenant" {
                201
            } else {
                r.status
            };
            assert_eq!(got, want, "{op} by {c:?}: {}", r.text());
            assert!(
                r.json()["error"].is_object() || r.status < 400,
                "{op} by {c:?}: errors have the one shape"
            );
            cells += 1;
        }
        // Moderation delete of the tenant's own chat: a fresh chat each time.
        let (victim, _) = fresh_chat(&s, &author).await;
        let headers: Vec<(&str, String)> = world
            .header(c)
            .map(|h| vec![("authorization", h)])
            .unwrap_or_default();
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s
            .http(
                "DELETE",
                &format!("/api/v1/tenant/chats/{victim}"),
                None,
                &h,
            )
            .await;
        assert_eq!(
            r.status,
            expected("tenant-delete", c),
            "tenant-delete by {c:?}: {}",
            r.text()
        );
        cells += 1;
    }
    // The WebSocket: `hello` with each caller's token (tenant and operator
    // credentials are not session tokens), then a subscription.
    for (c, token) in [
        (NoToken, String::new()),
        (Expired, expired.clone()),
        (Tampered, tampered.clone()),
        (AnonRead, anon_read.clone()),
        (AnonWrite, anon_write.clone()),
        (Author, author.clone()),
        (OtherTenantUser, stranger.clone()),
        (OwnTenantSecret, secret.clone()),
        (OperatorKey, ADMIN_KEY.to_owned()),
    ] {
        let mut ws = crate::common::Ws::connect(s.addr, None).await;
        ws.send(json!({"type": "hello", "token": token})).await;
        let session = matches!(c, AnonRead | AnonWrite | Author | OtherTenantUser);
        if session {
            assert_eq!(ws.recv().await["type"], "welcome", "{c:?}");
            let sub = ws.subscribe(URL, None).await;
            assert_eq!(sub["type"], "subscribed", "{c:?}");
        } else {
            let code = ws.close_code(std::time::Duration::from_secs(5)).await;
            assert_eq!(code, Some(4401), "hello by {c:?}");
        }
        cells += 1;
    }
    // "Not yours" is word for word "not there".
    let (chat, _) = fresh_chat(&s, &author).await;
    for (path, method, body) in [
        (
            format!("/api/v1/chats/{chat}"),
            "PATCH",
            Some(json!({"resolved": true})),
        ),
        (format!("/api/v1/annotations/{chat}"), "GET", None),
    ] {
        let theirs = s.authed(method, &path, body.clone(), &stranger).await;
        let none = s
            .authed(method, &path.replace(&chat, "AAAAAAAAAA"), body, &stranger)
            .await;
        assert_eq!(
            (theirs.status, theirs.json()),
            (none.status, none.json()),
            "{path}"
        );
    }
    // The stranger's tenant holds only the chat the stranger made there; none
    // of the other tenant's chats shows through the same urlId.
    let theirs = s.snapshot(&stranger, URL).await;
    let texts: Vec<&str> = theirs["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["comments"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["t"]);
    println!(
        "authorization matrix: {cells} cells ({} callers)",
        CALLERS.len()
    );
    s.stop().await;
}
