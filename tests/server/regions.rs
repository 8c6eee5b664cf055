//! Regions (contract §10): every shape created, reshaped, turned back into
//! a pin and refused, with its events live and in the log; the image's URL.
//! Runs on SQLite, and on PostgreSQL when `IMAGECHAT_TEST_POSTGRES` is set.

use serde_json::{json, Value};

use crate::common::{enc, Server};

const URL: &str = "https://site.example/page#shot.png";

fn shapes() -> Vec<Value> {
    vec![
        json!({"type": "rect", "x": 10, "y": 20, "w": 30, "h": 15}),
        json!({"type": "ellipse", "cx": 50, "cy": 50, "rx": 50, "ry": 5}),
        json!({"type": "polygon", "points": [[10, 10], [40, 12], [25, 30]]}),
        json!({"type": "arrow", "x1": 10, "y1": 10, "x2": 40, "y2": 30}),
    ]
}

async fn create_shaped(s: &Server, tok: &str, shape: Value) -> crate::common::Resp {
    s.authed(
        "POST",
        "/api/v1/chats",
        Some(json!({"urlId": URL, "x": 10, "y": 20, "text": "look", "shape": shape})),
        tok,
    )
    .await
}

/// Numbers compared as numbers: `10` and `10.0` are the same shape.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn every_shape_is_created_reshaped_and_turned_back_into_a_pin_live_and_in_the_log() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let mut viewer = s.ws(&s.token(&t).await).await;
    let sub = viewer.subscribe(URL, None).await;
    let epoch = sub["epoch"].as_str().unwrap().to_owned();
    let mut expected_seq = 0;
    for shape in shapes() {
        let r = create_shaped(&s, &tok, shape.clone()).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let chat = r.json()["chat"].clone();
        assert!(same(&chat["shape"], &shape), "{chat}");
        expected_seq += 1;
        let ev = viewer.event(URL).await;
        assert_eq!(
            (ev["type"].as_str(), ev["seq"].as_u64()),
            (Some("new-image-chat"), Some(expected_seq))
        );
        assert!(same(&ev["chat"]["shape"], &shape), "{ev}");
        let id = chat["id"].as_str().unwrap().to_owned();

        // Reshape into the next kind of shape, then back to a pin.
        let other = json!({"type": "rect", "x": 1, "y": 1, "w": 2, "h": 2});
        let r = s
            .authed(
                "PATCH",
                &format!("/api/v1/chats/{id}"),
                Some(json!({"shape": other})),
                &tok,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(same(&r.json()["chat"]["shape"], &other));
        expected_seq += 1;
        let ev = viewer.event(URL).await;
        assert_eq!(ev["change"]["op"], "reshaped", "{ev}");
        assert!(same(&ev["change"]["shape"], &other));

        let r = s
            .authed(
                "PATCH",
                &format!("/api/v1/chats/{id}"),
                Some(json!({"shape": null})),
                &tok,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.json()["chat"].get("shape").is_none(),
            "a pin has no shape"
        );
        expected_seq += 1;
        let ev = viewer.event(URL).await;
        assert_eq!(ev["change"], json!({"op": "reshaped", "shape": null}));
        assert_eq!(r.json()["seq"].as_u64(), Some(expected_seq));
    }
    // The log replays every change with its shape.
    let r = s
        .authed(
            "GET",
            &format!("/api/v1/events?urlId={}&epoch={epoch}&since=0", enc(URL)),
            None,
            &tok,
        )
        .await;
    let events = r.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), expected_seq as usize);
    let reshaped = events
        .iter()
        .filter(|e| e["change"]["op"] == "reshaped")
        .count();
    assert_eq!(reshaped, 8);
    for (i, shape) in shapes().iter().enumerate() {
        assert!(
            same(&events[i * 3]["chat"]["shape"], shape),
            "{}",
            events[i * 3]
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_patch_logs_moved_reshaped_resolved_in_order_and_an_equal_shape_changes_nothing() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let tok = s
        .sso_token(&t, &secret, json!({"id": "ana", "username": "Ana"}))
        .await;
    let other = s
        .sso_token(&t, &secret, json!({"id": "bo", "username": "Bo"}))
        .await;
    let r = create_shaped(
        &s,
        &tok,
        json!({"type": "rect", "x": 10.0004, "y": 20, "w": 30, "h": 15}),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.json()["chat"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.json()["chat"]["shape"]["x"],
        10.0,
        "rounded to 3 decimals"
    );
    let path = format!("/api/v1/chats/{id}");

    // The same shape after rounding: nothing logged, the current seq.
    let r = s
        .authed(
            "PATCH",
            &path,
            Some(json!({"shape": {"type": "rect", "x": 10.0001, "y": 20, "w": 30, "h": 15}})),
            &tok,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["seq"].as_u64()),
        (200, Some(1)),
        "{}",
        r.text()
    );

    // Reshaping needs what moving needs: 403 for someone else, nothing logged.
    let r = s
        .authed(
            "PATCH",
            &path,
            Some(json!({"shape": {"type": "arrow", "x1": 1, "y1": 1, "x2": 2, "y2": 2}})),
            &other,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());

    let mut viewer = s.ws(&tok).await;
    viewer.subscribe(URL, None).await;
    let r = s
        .authed(
            "PATCH",
            &path,
            Some(json!({"resolved": true, "shape": {"type": "ellipse", "cx": 50, "cy": 50, "rx": 5, "ry": 5}, "x": 55, "y": 45})),
            &tok,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["seq"].as_u64()),
        (200, Some(4)),
        "{}",
        r.text()
    );
    let mut ops = Vec::new();
    for _ in 0..3 {
        ops.push(
            viewer.event(URL).await["change"]["op"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ops, ["moved", "reshaped", "resolved"]);
    let snap = s.snapshot(&tok, URL).await;
    assert_eq!(snap["chats"][0]["shape"]["type"], "ellipse");
    assert_eq!(snap["chats"][0]["resolved"], true);
    s.stop().await;
}

#[tokio::test]
async fn each_invalid_shape_is_refused_with_its_field_and_changes_nothing() {
    let s = Server::start_with(|c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let bad = [
        json!("rect"),
        json!({"type": "square", "x": 1, "y": 1, "w": 1, "h": 1}),
        json!({"type": "rect", "x": 1, "y": 1, "w": 0, "h": 1}),
        json!({"type": "rect", "x": 90, "y": 1, "w": 10.5, "h": 1}),
        json!({"type": "rect", "x": 1, "y": 1, "w": "2", "h": 1}),
        json!({"type": "rect", "x": 1, "y": 1, "h": 1}),
        json!({"type": "ellipse", "cx": 3, "cy": 50, "rx": 4, "ry": 1}),
        json!({"type": "polygon", "points": [[1, 1], [2, 2]]}),
        json!({"type": "polygon", "points": vec![json!([1, 1]); 65]}),
        json!({"type": "polygon", "points": [[1, 1], [2, 2], [3, -3]]}),
        json!({"type": "arrow", "x1": 5, "y1": 5, "x2": 5, "y2": 5}),
    ];
    for shape in bad {
        let r = create_shaped(&s, &tok, shape.clone()).await;
        assert_eq!(r.status, 400, "{shape}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], "shape", "{shape}");
    }
    // Non-finite numbers cannot be written in JSON; an overflowing one
    // is refused before it could be stored.
    let r = s
        .raw(
            "POST",
            "/api/v1/chats",
            format!(r#"{{"urlId":"{URL}","x":1,"y":1,"text":"t","shape":{{"type":"rect","x":1e999,"y":1,"w":1,"h":1}}}}"#).as_bytes(),
            &[("authorization", &format!("Bearer {tok}")), ("content-type", "application/json")],
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("shape")),
        "{}",
        r.text()
    );
    // The same for the pin's own numbers (contract §5).
    let r = s
        .raw(
            "POST",
            "/api/v1/chats",
            format!(r#"{{"urlId":"{URL}","x":1e309,"y":-1e999,"text":"t"}}"#).as_bytes(),
            &[
                ("authorization", &format!("Bearer {tok}")),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("x")),
        "{}",
        r.text()
    );
    for (field, value) in [
        ("imageUrl", json!("data:image/png;base64,AAAA")),
        ("imageUrl", json!("/relative.png")),
        (
            "imageUrl",
            json!(format!("https://a.example/{}", "a".repeat(2048))),
        ),
        ("pageUrl", json!("javascript:alert(1)")),
        ("imageUrl", json!(5)),
    ] {
        let r = s
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": URL, "x": 1, "y": 1, "text": "t", field: value})),
                &tok,
            )
            .await;
        assert_eq!(
            (r.status, r.json()["error"]["field"].clone()),
            (400, json!(field)),
            "{value}"
        );
    }
    let chat = s.create(&tok, URL, "pin").await;
    let id = chat["chat"]["id"].as_str().unwrap();
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{id}"),
            Some(json!({"shape": {"type": "rect"}})),
            &tok,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("shape"))
    );
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{id}"),
            Some(json!({})),
            &tok,
        )
        .await;
    assert_eq!(r.status, 400, "a PATCH naming nothing is refused");
    let snap = s.snapshot(&tok, URL).await;
    assert_eq!(
        (snap["seq"].as_u64(), snap["chats"].as_array().map(Vec::len)),
        (Some(1), Some(1))
    );
    s.stop().await;
}

#[tokio::test]
async fn the_image_keeps_its_latest_url_and_a_twelve_point_polygon_event_stays_under_1_kib() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let snap = s.snapshot(&tok, URL).await;
    assert!(snap.get("imageUrl").is_none() && snap.get("pageUrl").is_none());
    let mut viewer = s.ws(&tok).await;
    viewer.subscribe(URL, None).await;
    let points: Vec<Value> = (0..12)
        .map(|i| json!([12.345 + f64::from(i) * 6.5, 87.654 - f64::from(i) * 6.25]))
        .collect();
    let text = "x".repeat(60);
    for (n, img) in ["https://cdn.example/a.png", "https://cdn.example/b.png"]
        .iter()
        .enumerate()
    {
        let r = s
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": URL, "x": 12.345, "y": 87.654, "text": text,
                    "shape": {"type": "polygon", "points": points},
                    "imageUrl": img, "pageUrl": "https://site.example/page",
                    "broadcastId": "0f8e3c52-6b1a-4f7e-9d2c-1a2b3c4d5e6f"})),
                &tok,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        // Compact JSON has the same length whatever the order of keys.
        let ev = viewer.event(URL).await;
        assert_eq!(ev["type"], "new-image-chat");
        let size = ev.to_string().len();
        assert!(
            size < 1024,
            "new-image-chat of a 12-point polygon is {size} bytes"
        );
        if n == 0 {
            println!("new-image-chat with a 12-point polygon: {size} bytes");
        }
        let snap = s.snapshot(&tok, URL).await;
        assert_eq!(snap["imageUrl"], *img);
        assert_eq!(snap["pageUrl"], "https://site.example/page");
    }
    // The page is stored without its fragment.
    let r = s
        .authed("POST", "/api/v1/chats", Some(json!({"urlId": URL, "x": 1, "y": 1, "text": "t", "pageUrl": "https://site.example/p?q=1#frag"})), &tok)
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        s.snapshot(&tok, URL).await["pageUrl"],
        "https://site.example/p?q=1"
    );
    // A create without URLs keeps what is known.
    s.create(&tok, URL, "no url").await;
    assert_eq!(
        s.snapshot(&tok, URL).await["imageUrl"],
        "https://cdn.example/b.png"
    );
    s.stop().await;
}
