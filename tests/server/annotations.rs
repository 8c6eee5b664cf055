//! Standard annotations (contract §11): export as W3C Web Annotations and
//! IIIF, every id dereferencing, round trips through import, and another
//! tool's annotations read in. The checks of the W3C model's requirements
//! (`w3c_page`) follow the Web Annotation Data Model's MUSTs for the parts
//! the export uses: annotation, page, textual bodies, selectors, agents.

use serde_json::{json, Value};

use crate::common::{basic, enc, Server};

const ANNO: &str = "http://www.w3.org/ns/anno.jsonld";
const IIIF: &str = "http://iiif.io/api/presentation/3/context.json";
const MOTIVATIONS: [&str; 13] = [
    "assessing",
    "bookmarking",
    "classifying",
    "commenting",
    "describing",
    "editing",
    "highlighting",
    "identifying",
    "linking",
    "moderating",
    "questioning",
    "replying",
    "tagging",
];

fn is_iri(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !s.contains(char::is_whitespace)
        })
    })
}

/// `YYYY-MM-DDThh:mm:ss(.sss)Z`: an xsd:dateTime in UTC, as the model asks.
fn is_utc_datetime(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
            && s.ends_with('Z')
    })
}

/// The model's requirements for one annotation of our export.
fn w3c_annotation(a: &Value, iiif: bool) {
    let ctx = a.to_string();
    assert!(is_iri(&a["id"]), "id must be an IRI: {ctx}");
    assert_eq!(a["type"], "Annotation", "{ctx}");
    let m = a["motivation"].as_str().expect("one motivation");
    assert!(MOTIVATIONS.contains(&m), "{m} is not a W3C motivation");
    let bodies: Vec<Value> = match &a["body"] {
        Value::Array(l) => l.clone(),
        b => vec![b.clone()],
    };
    assert!(!bodies.is_empty() && a.get("bodyValue").is_none(), "{ctx}");
    for b in &bodies {
        if b["type"] == "Image" {
            // An attachment: an external web resource with an IRI and a
            // media type.
            assert!(is_iri(&b["id"]), "{ctx}");
            assert!(
                b["format"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("image/")),
                "{ctx}"
            );
            continue;
        }
        assert_eq!(b["type"], "TextualBody", "{ctx}");
        assert!(b["value"].is_string(), "a TextualBody has a value: {ctx}");
        let p = b["purpose"].as_str().expect("purpose");
        assert!(MOTIVATIONS.contains(&p), "{p} is not a W3C purpose");
        if p != "tagging" {
            assert_eq!(b["format"], "text/plain");
        }
    }
    let creator = &a["creator"];
    assert!(
        is_iri(&creator["id"]) && creator["type"] == "Person" && creator["name"].is_string(),
        "{ctx}"
    );
    assert!(is_utc_datetime(&a["created"]), "{ctx}");
    if let Some(m) = a.get("modified") {
        assert!(is_utc_datetime(m), "{ctx}");
    }
    if m == "replying" {
        assert!(
            is_iri(&a["target"]),
            "a reply targets its chat's annotation id: {ctx}"
        );
        return;
    }
    let t = &a["target"];
    let source = if iiif {
        assert_eq!(t["type"], "SpecificResource", "{ctx}");
        assert_eq!(t["source"]["type"], "Image", "{ctx}");
        &t["source"]["id"]
    } else {
        &t["source"]
    };
    assert!(is_iri(source), "the target's source is an IRI: {ctx}");
    let sel = &t["selector"];
    match sel["type"].as_str() {
        Some("FragmentSelector") => {
            assert_eq!(sel["conformsTo"], "http://www.w3.org/TR/media-frags/");
            let v = sel["value"].as_str().unwrap();
            let nums = v.strip_prefix("xywh=percent:").expect("percent xywh");
            let n: Vec<f64> = nums
                .split(',')
                .map(|p| p.parse().expect("a number"))
                .collect();
            assert_eq!(n.len(), 4, "{v}");
            assert!(n.iter().all(|v| (0.0..=100.0).contains(v)), "{v}");
        }
        Some("SvgSelector") => {
            let svg = sel["value"].as_str().unwrap();
            assert!(
                svg.starts_with(
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 100 100\">"
                ),
                "{svg}"
            );
            assert!(
                svg.ends_with("</svg>") && svg.matches("/>").count() == 1,
                "{svg}"
            );
        }
        other => panic!("unexpected selector {other:?}"),
    }
}

/// The model's requirements for the page, and for each of its annotations.
pub fn w3c_page(p: &Value, iiif: bool) {
    assert_eq!(p["@context"], if iiif { IIIF } else { ANNO });
    assert_eq!(p["type"], "AnnotationPage");
    assert!(is_iri(&p["id"]));
    let items = p["items"].as_array().expect("items");
    let part_of = if iiif { &p["partOf"][0] } else { &p["partOf"] };
    assert_eq!(part_of["type"], "AnnotationCollection");
    assert!(is_iri(&part_of["id"]));
    assert_eq!(part_of["total"].as_u64(), Some(items.len() as u64));
    for a in items {
        assert!(
            a.get("@context").is_none(),
            "only the page carries the context"
        );
        w3c_annotation(a, iiif);
    }
}

struct Image {
    url: &'static str,
    pin: String,
}

/// One of each shape, a pin with a reply (edited), a resolved rect.
async fn populate(s: &Server, tok: &str, url: &'static str, image_url: Option<&str>) -> Image {
    let mut pin = String::new();
    let shapes = [
        Value::Null,
        json!({"type": "rect", "x": 10, "y": 20, "w": 30, "h": 15.5}),
        json!({"type": "ellipse", "cx": 50, "cy": 50, "rx": 10, "ry": 5}),
        json!({"type": "polygon", "points": [[10, 10], [40, 12.25], [25, 30]]}),
        json!({"type": "arrow", "x1": 10, "y1": 10, "x2": 40, "y2": 30}),
    ];
    for (i, shape) in shapes.into_iter().enumerate() {
        let mut body = json!({"urlId": url, "x": 10, "y": 20, "text": format!("comment {i}")});
        if !shape.is_null() {
            body["shape"] = shape;
        }
        if let Some(u) = image_url {
            body["imageUrl"] = json!(u);
        }
        let r = s.authed("POST", "/api/v1/chats", Some(body), tok).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["chat"]["id"].as_str().unwrap().to_owned();
        if i == 0 {
            let r = s
                .authed(
                    "POST",
                    &format!("/api/v1/chats/{id}/comments"),
                    Some(json!({"text": "a reply"})),
                    tok,
                )
                .await;
            let kid = r.json()["comment"]["id"].as_str().unwrap().to_owned();
            let r = s
                .authed(
                    "PATCH",
                    &format!("/api/v1/chats/{id}/comments/{kid}"),
                    Some(json!({"text": "a reply, edited"})),
                    tok,
                )
                .await;
            assert_eq!(r.status, 200);
            pin = id;
        } else if i == 1 {
            let r = s
                .authed(
                    "PATCH",
                    &format!("/api/v1/chats/{id}"),
                    Some(json!({"resolved": true})),
                    tok,
                )
                .await;
            assert_eq!(r.status, 200);
        }
    }
    Image { url, pin }
}

/// The path of an absolute URL on the test server.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_owned()
}

#[tokio::test]
async fn the_export_is_a_w3c_annotation_page_and_every_id_dereferences() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let tok = s
        .sso_token(&t, &secret, json!({"id": "ana", "username": "Ana"}))
        .await;
    let img = populate(
        &s,
        &tok,
        "https://site.example/p#a.png",
        Some("https://cdn.example/a.png"),
    )
    .await;
    let r = s
        .authed(
            "GET",
            &format!("/api/v1/annotations?urlId={}", enc(img.url)),
            None,
            &tok,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/ld+json; profile=\"http://www.w3.org/ns/anno.jsonld\"")
    );
    let page = r.json();
    w3c_page(&page, false);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "five chats and one reply");
    // Oldest first: the pin, its reply, then the shapes.
    let motivations: Vec<&str> = items
        .iter()
        .map(|a| a["motivation"].as_str().unwrap())
        .collect();
    assert_eq!(
        motivations,
        [
            "commenting",
            "replying",
            "commenting",
            "commenting",
            "commenting",
            "commenting"
        ]
    );
    let (pin, reply) = (&items[0], &items[1]);
    assert_eq!(pin["target"]["selector"]["value"], "xywh=percent:10,20,0,0");
    assert_eq!(pin["target"]["source"], "https://cdn.example/a.png");
    assert_eq!(pin["body"][0]["value"], "comment 0");
    assert_eq!(pin["creator"]["name"], "Ana");
    assert!(
        pin.get("modified").is_some(),
        "the chat changed after creation"
    );
    assert_eq!(reply["target"], pin["id"]);
    assert_eq!(reply["body"]["value"], "a reply, edited");
    assert!(reply.get("modified").is_some());
    assert!(pin["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/api/v1/annotations/{}", img.pin)));
    let rect = &items[2];
    assert_eq!(
        rect["target"]["selector"]["value"],
        "xywh=percent:10,20,30,15.5"
    );
    assert_eq!(
        rect["body"][1],
        json!({"type": "TextualBody", "purpose": "tagging", "value": "resolved"})
    );
    let svg = |i: usize| {
        items[i]["target"]["selector"]["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        svg(3).contains(r#"<ellipse cx="50" cy="50" rx="10" ry="5"/>"#),
        "{}",
        svg(3)
    );
    assert!(
        svg(4).contains(r#"<polygon points="10,10 40,12.25 25,30"/>"#),
        "{}",
        svg(4)
    );
    assert!(
        svg(5).contains(r#"<line x1="10" y1="10" x2="40" y2="30"/>"#),
        "{}",
        svg(5)
    );

    // Every id answers with that annotation alone, with its own context.
    for a in items {
        let r = s
            .authed("GET", &path_of(a["id"].as_str().unwrap()), None, &tok)
            .await;
        assert_eq!(r.status, 200, "{}: {}", a["id"], r.text());
        let mut alone = r.json();
        assert_eq!(alone["@context"], ANNO);
        alone.as_object_mut().unwrap().remove("@context");
        assert_eq!(&alone, a);
    }
    // The first comment is the chat's annotation, not a reply.
    let first = pin["id"].as_str().unwrap().to_owned() + "/comments/1";
    assert_eq!(
        s.authed("GET", &path_of(&first), None, &tok).await.status,
        404
    );

    // The tenant reads it too; nobody else does, and "not yours" looks like "not there".
    let r = s
        .http(
            "GET",
            &path_of(pin["id"].as_str().unwrap()),
            None,
            &[("authorization", &basic(&t, &secret))],
        )
        .await;
    assert_eq!(r.status, 200);
    let (t2, _) = s.tenant("write").await;
    let stranger = s.token(&t2).await;
    let theirs = s
        .authed(
            "GET",
            &path_of(pin["id"].as_str().unwrap()),
            None,
            &stranger,
        )
        .await;
    let missing = s
        .authed("GET", "/api/v1/annotations/nosuchchat", None, &stranger)
        .await;
    assert_eq!((theirs.status, missing.status), (404, 404));
    assert_eq!(theirs.json(), missing.json());
    let other_export = s
        .authed(
            "GET",
            &format!("/api/v1/annotations?urlId={}", enc(img.url)),
            None,
            &stranger,
        )
        .await;
    assert_eq!(other_export.json()["items"], json!([]));
    assert_eq!(
        s.http("GET", "/api/v1/annotations?urlId=x", None, &[])
            .await
            .status,
        401
    );
    let r = s
        .authed("GET", "/api/v1/annotations?urlId=x&format=rdf", None, &tok)
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("format"))
    );

    // IIIF Presentation 3.
    let r = s
        .authed(
            "GET",
            &format!("/api/v1/annotations?urlId={}&format=iiif", enc(img.url)),
            None,
            &tok,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains(IIIF));
    let iiif = r.json();
    w3c_page(&iiif, true);
    assert_eq!(
        iiif["items"][0]["target"]["source"]["id"],
        "https://cdn.example/a.png"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_target_source_falls_back_to_the_url_id_then_to_a_urn() {
    let s = Server::start().await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    for (url_id, source) in [
        (
            "https://site.example/a.png",
            "https://site.example/a.png".to_owned(),
        ),
        (
            "diagram 1/ü~",
            format!("urn:imagechat:{t}:diagram%201%2F%C3%BC~"),
        ),
    ] {
        s.create(&tok, url_id, "hi").await;
        let r = s
            .authed(
                "GET",
                &format!("/api/v1/annotations?urlId={}", enc(url_id)),
                None,
                &tok,
            )
            .await;
        assert_eq!(r.json()["items"][0]["target"]["source"], json!(source));
    }
    s.stop().await;
}

/// What must survive a round trip: everything but ids, sources and times.
fn essence(page: &Value) -> Vec<Value> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut a = a.clone();
            let o = a.as_object_mut().unwrap();
            for k in ["id", "created", "modified"] {
                o.remove(k);
            }
            if o["motivation"] == "replying" {
                o.remove("target");
            } else if let Some(t) = o.get_mut("target").and_then(Value::as_object_mut) {
                t.remove("source");
            }
            if let Some(c) = o.get_mut("creator").and_then(Value::as_object_mut) {
                c.remove("id");
            }
            a
        })
        .collect()
}

#[tokio::test]
async fn export_import_export_gives_the_same_annotations_in_both_formats() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let tok = s
        .sso_token(&t, &secret, json!({"id": "ana", "username": "Ana"}))
        .await;
    let auth = basic(&t, &secret);
    let img = populate(&s, &tok, "https://site.example/p#orig.png", None).await;
    for (format, into) in [
        ("w3c", "https://site.example/p#copy.png"),
        ("iiif", "https://site.example/p#copy3.png"),
    ] {
        let first = s
            .authed(
                "GET",
                &format!("/api/v1/annotations?urlId={}&format={format}", enc(img.url)),
                None,
                &tok,
            )
            .await
            .json();
        let mut viewer = s.ws(&tok).await;
        viewer.subscribe(into, None).await;
        let r = s
            .raw(
                "POST",
                &format!("/api/v1/tenant/annotations?urlId={}", enc(into)),
                first.to_string().as_bytes(),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/ld+json"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"imported": 6, "skipped": []}));
        // Imports are writes like any other: logged and live.
        let ev = viewer.event(into).await;
        assert_eq!(
            (ev["type"].as_str(), ev["seq"].as_u64()),
            (Some("new-image-chat"), Some(1))
        );
        assert!(ev["chat"]["user"]["id"]
            .as_str()
            .unwrap()
            .starts_with("import:"));
        let again = s
            .authed(
                "GET",
                &format!("/api/v1/annotations?urlId={}&format={format}", enc(into)),
                None,
                &tok,
            )
            .await
            .json();
        assert_eq!(essence(&again), essence(&first), "{format}");
        let snap = s.snapshot(&tok, into).await;
        let resolved: Vec<bool> = snap["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["resolved"] == true)
            .collect();
        assert_eq!(resolved, [false, true, false, false, false]);
    }
    s.stop().await;
}

#[tokio::test]
async fn another_tools_export_with_pixel_xywh_and_an_svg_polygon_imports() {
    let s = Server::start().await;
    let (t, secret) = s.tenant("write").await;
    let auth = basic(&t, &secret);
    let url = "https://museum.example/item/7";
    // Written by hand the way other tools write: pixel fragments, an SVG in
    // the image's pixels, HTML bodies, string creators, `oa:` prefixes.
    let foreign = json!({
        "@context": ANNO,
        "type": "AnnotationCollection",
        "first": {"type": "AnnotationPage", "items": [
            {"id": "https://other.example/anno/1", "type": "Annotation", "motivation": "commenting",
             "creator": {"id": "https://other.example/users/kim", "type": "Person", "name": "Kim"},
             "body": {"type": "TextualBody", "value": "<p>Crack in the <b>varnish</b></p>", "format": "text/html"},
             "target": {"source": "https://museum.example/img/7.jpg",
                        "selector": {"type": "FragmentSelector", "conformsTo": "http://www.w3.org/TR/media-frags/",
                                     "value": "xywh=pixel:100,50,200,150"}}},
            {"id": "https://other.example/anno/2", "type": "oa:Annotation", "motivation": ["oa:commenting"],
             "creator": "https://other.example/users/lee",
             "body": [{"type": "TextualBody", "value": "Retouched area", "purpose": "commenting"},
                      {"type": "TextualBody", "value": "resolved", "purpose": "tagging"}],
             "target": {"source": "https://museum.example/img/7.jpg",
                        "selector": {"type": "SvgSelector",
                                     "value": "<svg xmlns='http://www.w3.org/2000/svg'><polygon points='0,0 800,0 800,300 400,600'/></svg>"}}},
            {"id": "https://other.example/anno/3", "type": "Annotation", "motivation": "replying",
             "bodyValue": "Agreed", "target": "https://other.example/anno/1"},
            {"type": "Annotation", "motivation": "commenting", "bodyValue": "quote",
             "target": {"source": "https://museum.example/text", "selector": {"type": "TextQuoteSelector", "exact": "x"}}},
            {"type": "Annotation", "motivation": "replying", "bodyValue": "orphan", "target": "https://elsewhere.example/9"}
        ]}
    });
    let post = |q: String, body: Vec<u8>| {
        let auth = auth.clone();
        let s = &s;
        async move {
            s.raw(
                "POST",
                &format!("/api/v1/tenant/annotations?{q}"),
                &body,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
            )
            .await
        }
    };
    // Without the image's size, the pixel ones cannot be placed.
    let r = post(
        format!("urlId={}", enc(url)),
        foreign.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["imported"], 0, "{j}");
    let reasons: Vec<String> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons[0].contains("width") && reasons[1].contains("width"),
        "{reasons:?}"
    );

    let url2 = "https://museum.example/item/8";
    let r = post(
        format!("urlId={}&width=800&height=600", enc(url2)),
        foreign.to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["imported"], 3, "{j}");
    let skipped: Vec<u64> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["index"].as_u64().unwrap())
        .collect();
    assert_eq!(skipped, [3, 4], "{j}");
    let tok = s.token(&t).await;
    let chats = s.snapshot(&tok, url2).await["chats"].clone();
    let kim = &chats[0];
    assert_eq!(
        kim["shape"],
        json!({"type": "rect", "x": 12.5, "y": 8.333, "w": 25.0, "h": 25.0})
    );
    assert_eq!(
        (kim["x"].as_f64(), kim["y"].as_f64()),
        (Some(12.5), Some(8.333))
    );
    assert_eq!(kim["comments"][0]["text"], "Crack in the varnish");
    assert_eq!(kim["user"]["name"], "Kim");
    assert_eq!(kim["user"]["id"], "import:https://other.example/users/kim");
    assert_eq!(kim["comments"][1]["text"], "Agreed");
    assert_eq!(kim["comments"][1]["user"]["name"], "Imported");
    let lee = &chats[1];
    assert_eq!(
        lee["shape"],
        json!({"type": "polygon", "points": [[0.0, 0.0], [100.0, 0.0], [100.0, 50.0], [50.0, 100.0]]})
    );
    assert_eq!(lee["resolved"], true);
    assert_eq!(lee["user"]["id"], "import:https://other.example/users/lee");

    // SVG that would take the parser down (thousands of nested elements
    // overflowed its stack and aborted the process) is skipped with a reason.
    let deep = format!(
        "<svg viewBox='0 0 100 100'>{}<rect width='1' height='1'/>{}</svg>",
        "<g>".repeat(4000),
        "</g>".repeat(4000)
    );
    let hostile = json!([{"type": "Annotation", "motivation": "commenting", "bodyValue": "x",
        "target": {"selector": {"type": "SvgSelector", "value": deep}}}]);
    let r = post(
        format!("urlId={}", enc(url2)),
        hostile.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["imported"].as_u64()),
        (200, Some(0)),
        "{}",
        r.text()
    );
    assert!(r.json()["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("deep"));
    assert_eq!(
        s.http("GET", "/healthz", None, &[]).await.status,
        200,
        "the server is alive"
    );
    // Not annotations at all; not JSON; not the tenant.
    for body in [&b"{\"hello\": 1}"[..], b"[1, 2, 3]", b"<svg/>"] {
        let r = post(format!("urlId={}", enc(url2)), body.to_vec()).await;
        assert_eq!(r.status, 400, "{}", r.text());
    }
    let r = post(format!("urlId={}&width=800", enc(url2)), b"[]".to_vec()).await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].clone()),
        (400, json!("height"))
    );
    let r = s
        .raw(
            "POST",
            &format!("/api/v1/tenant/annotations?urlId={}", enc(url2)),
            b"[]",
            &[("authorization", &format!("Bearer {tok}"))],
        )
        .await;
    assert_eq!(r.status, 401, "a user's session may not import");
    assert_eq!(
        s.snapshot(&tok, url2).await["chats"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "refusals wrote nothing"
    );
    s.stop().await;
}
