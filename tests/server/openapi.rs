//! The OpenAPI document lists every route, and only routes that exist.
//! (`scripts/schemathesis.sh` then checks every answer against it.)

use serde_json::Value;

use crate::common::Server;

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

#[tokio::test]
async fn the_document_is_openapi_3_and_every_listed_operation_exists() {
    let s = Server::start().await;
    let r = s.http("GET", "/api/v1/openapi.json", None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 24, "{} paths", paths.len());
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            operations += 1;
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path}"
            );
            let body = (m == "post" || m == "patch").then(|| serde_json::json!({}));
            let r = s.http(&m.to_uppercase(), &concrete, body, &[]).await;
            let unrouted = r.status == 404 && r.json()["error"]["message"] == "no such route";
            let wrong_method = r.status == 405;
            assert!(
                !unrouted && !wrong_method,
                "{m} {path} is documented but not routed: {} {}",
                r.status,
                r.text()
            );
        }
    }
    assert!(operations >= 26, "{operations} operations");
}

/// Routes are added only through `utoipa_axum::routes!`, which puts each
/// in the document: a plain `.route(…)` (or a nested one) would serve a
/// path the document does not list.
#[test]
fn no_route_is_added_outside_the_document() {
    let mut offenders = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("read");
                for (i, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    for needle in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                        if code.contains(needle) {
                            offenders.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside the document:\n{}",
        offenders.join("\n")
    );
}

/// Every operation's error answers use the one error shape.
#[tokio::test]
async fn documented_errors_use_the_one_error_shape() {
    let s = Server::start().await;
    let doc = s
        .http("GET", "/api/v1/openapi.json", None, &[])
        .await
        .json();
    let create = &doc["paths"]["/api/v1/chats"]["post"]["responses"];
    for code in ["400", "401", "403", "413", "429", "503"] {
        let schema = &create[code]["content"]["application/json"]["schema"];
        assert_eq!(
            schema["$ref"],
            Value::from("#/components/schemas/ErrorBody"),
            "{code}"
        );
    }
    assert!(create["429"]["headers"]["Retry-After"].is_object());
}

/// A method a path does not take is answered in the one error shape too.
#[tokio::test]
async fn a_wrong_method_is_a_405_in_the_error_shape() {
    let s = Server::start().await;
    for (m, p) in [
        ("PUT", "/api/v1/chats"),
        ("POST", "/healthz"),
        ("DELETE", "/api/v1/sessions"),
    ] {
        let r = s.http(m, p, None, &[]).await;
        assert_eq!(r.status, 405, "{m} {p}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{m} {p}"
        );
        assert_eq!(r.error_code(), "method_not_allowed", "{m} {p}");
    }
}
