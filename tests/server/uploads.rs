//! Uploads (contract §14): what is accepted and refused, what is stored
//! (metadata removed), how it is served, attachments on comments, usage and
//! quota, restart and the sweep.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

// ---- fixtures: real images made here, byte by byte where it matters ----

/// A `w`×`h` RGB PNG with a pattern (so it does not compress to nothing).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 13 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        // Left half red, right half blue: orientation is visible in pixels.
        if x < w / 2 {
            image::Rgb([250, 10, 10])
        } else {
            image::Rgb([10, 10, 250 - (y % 2) as u8])
        }
    });
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .expect("encode jpeg");
    out
}

/// A little-endian TIFF (EXIF) block: an orientation, and a GPS position
/// (35°40'0" N).
fn exif_with_gps(orientation: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"II*\0");
    b.extend_from_slice(&8u32.to_le_bytes());
    let entry = |b: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: [u8; 4]| {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&value);
    };
    // IFD0 at 8: orientation and the GPS IFD's offset (38).
    b.extend_from_slice(&2u16.to_le_bytes());
    let o = orientation.to_le_bytes();
    entry(&mut b, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(&mut b, 0x8825, 4, 1, 38u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD at 38: latitude ref and latitude (three rationals at 68).
    b.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut b, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut b, 0x0002, 5, 3, 68u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for (n, d) in [(35u32, 1u32), (40, 1), (0, 1)] {
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&d.to_le_bytes());
    }
    assert_eq!(b.len(), 92);
    b
}

/// A JPEG carrying EXIF (GPS, orientation) and a comment segment.
pub fn jpeg_with_gps(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    use img_parts::ImageEXIF;
    let mut j = img_parts::jpeg::Jpeg::from_bytes(jpeg(w, h).into()).expect("jpeg");
    j.set_exif(Some(exif_with_gps(orientation).into()));
    j.segments_mut().insert(
        1,
        img_parts::jpeg::JpegSegment::new_with_contents(
            img_parts::jpeg::markers::COM,
            bytes::Bytes::from_static(b"shot at home by alice"),
        ),
    );
    let mut out = Vec::new();
    j.encoder().write_to(&mut out).expect("write jpeg");
    out
}

/// The GPS and orientation fields a maintained EXIF reader finds in a file.
fn exif_fields(file: &[u8]) -> Vec<String> {
    match exif::Reader::new().read_from_container(&mut std::io::Cursor::new(file)) {
        Ok(e) => e.fields().map(|f| f.tag.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A PNG with a text chunk holding HTML and HTML after its end: an image
/// that is also a web page to a sniffing browser.
fn polyglot_png() -> Vec<u8> {
    let mut p = img_parts::png::Png::from_bytes(png(16, 16).into()).expect("png");
    let text = b"Comment\0<html><script>alert(document.cookie)</script></html>".to_vec();
    p.chunks_mut().insert(
        1,
        img_parts::png::PngChunk::new(*b"tEXt", bytes::Bytes::from(text)),
    );
    let mut out = Vec::new();
    p.encoder().write_to(&mut out).expect("write png");
    out.extend_from_slice(b"<html><body><script>alert(1)</script></body></html>");
    out
}

/// 8000×7500 (60 megapixels) of one-bit grey: a valid PNG of a few KB
/// that would take hundreds of megabytes to decode.
fn bomb_png() -> Vec<u8> {
    let (w, h) = (8000u32, 7500u32);
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        enc.set_compression(png::Compression::High);
        let mut wr = enc.write_header().expect("header");
        let row = (w as usize).div_ceil(8);
        wr.write_image_data(&vec![0u8; row * h as usize])
            .expect("data");
    }
    out
}

fn gif_with_comment() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let palette = [0u8, 0, 0, 255, 255, 255];
        let mut enc = gif::Encoder::new(&mut out, 4, 4, &palette).expect("gif");
        enc.write_extension(gif::ExtensionData::Repetitions(gif::Repeat::Infinite))
            .expect("loop");
        enc.write_raw_extension(gif::Extension::Comment.into(), &[b"secret note"])
            .expect("comment");
        for i in 0..3u8 {
            let f = gif::Frame {
                width: 4,
                height: 4,
                buffer: std::borrow::Cow::Owned(vec![i % 2; 16]),
                ..Default::default()
            };
            enc.write_frame(&f).expect("frame");
        }
    }
    out
}

fn webp(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 90, 255]));
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .encode(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
        .expect("webp");
    out
}

// ---- helpers ----

pub async fn upload(s: &Server, token: &str, content_type: &str, body: &[u8]) -> Resp {
    upload_to(s, "/api/v1/uploads", token, content_type, body).await
}

async fn upload_to(s: &Server, path: &str, token: &str, content_type: &str, body: &[u8]) -> Resp {
    let auth = format!("Bearer {token}");
    s.raw(
        "POST",
        path,
        body,
        &[("authorization", &auth), ("content-type", content_type)],
    )
    .await
}

/// Uploads `body` and returns its `upload` object.
pub async fn uploaded(s: &Server, token: &str, content_type: &str, body: &[u8]) -> Value {
    let r = upload(s, token, content_type, body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["upload"].clone()
}

async fn fetch(s: &Server, id: &str) -> Resp {
    s.http("GET", &format!("/api/v1/uploads/{id}"), None, &[])
        .await
}

/// Both files decode to the same pixels (as RGBA).
fn assert_same_pixels(got: &[u8], want: &[u8]) {
    let got = image::load_from_memory(got).expect("the stored file decodes");
    let want = image::load_from_memory(want).expect("the original decodes");
    assert_eq!((got.width(), got.height()), (want.width(), want.height()));
    assert!(
        got.to_rgba8().as_raw() == want.to_rgba8().as_raw(),
        "the pixels differ"
    );
}

/// Uploads `body` and asserts it is refused, naming `needle`, within 2 s
/// (from its headers, not after decoding it).
async fn assert_refused_quickly(
    s: &Server,
    token: &str,
    content_type: &str,
    body: &[u8],
    needle: &str,
) {
    let started = std::time::Instant::now();
    assert_refused(&upload(s, token, content_type, body).await, "body", needle);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

fn assert_refused(r: &Resp, field: &str, needle: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_input", "{}", r.text());
    assert_eq!(r.json()["error"]["field"], field, "{}", r.text());
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

// ---- tests ----

#[tokio::test]
async fn an_upload_is_stored_and_served_with_the_safety_headers() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let body = png(64, 48);
    let u = uploaded(&s, &token, "image/png", &body).await;
    let id = u["id"].as_str().expect("id");
    // 128 random bits at least: 22 URL-safe base64 characters.
    assert!(id.len() >= 22, "{id}");
    assert_eq!(u["contentType"], "image/png");
    assert_eq!(
        (u["width"].as_u64(), u["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(u["url"], format!("/api/v1/uploads/{id}"));
    let r = fetch(&s, id).await;
    assert_eq!(r.status, 200);
    assert_eq!(u["bytes"].as_u64(), Some(r.body.len() as u64));
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'")
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let decoded = image::load_from_memory(&r.body).expect("served bytes decode");
    assert_eq!((decoded.width(), decoded.height()), (64, 48));
    // The pixels are the uploaded ones.
    assert_same_pixels(&r.body, &body);
    let etag = r.header("etag").expect("etag").to_owned();
    let again = s
        .http(
            "GET",
            &format!("/api/v1/uploads/{id}"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = s
        .http(
            "GET",
            &format!("/api/v1/uploads/{id}"),
            None,
            &[("if-none-match", "\"something-else\"")],
        )
        .await;
    assert_eq!(other.status, 200);
    // Unknown and malformed ids.
    assert_eq!(fetch(&s, "AAAAAAAAAAAAAAAAAAAAAA").await.status, 404);
    assert_eq!(fetch(&s, "..%2F..%2Fetc%2Fpasswd").await.status, 404);
}

#[tokio::test]
async fn every_kind_of_bad_upload_is_refused_and_nothing_is_stored() {
    let s = Server::start_with(|c| c.upload_max_bytes = 200_000).await;
    let (tenant, secret) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    // The session says the limit, so a client can check before sending.
    assert_eq!(
        s.session(&tenant, None).await.json()["uploadMaxBytes"],
        200_000
    );
    let good = png(32, 32);
    // A type the server does not take, and no type.
    assert_refused(
        &upload(&s, &token, "text/html", &good).await,
        "body",
        "Content-Type",
    );
    assert_refused(
        &upload(&s, &token, "image/svg+xml", &good).await,
        "body",
        "Content-Type",
    );
    // A PNG sent as a JPEG, a JPEG as a WebP.
    assert_refused(
        &upload(&s, &token, "image/jpeg", &good).await,
        "body",
        "image/png",
    );
    assert_refused(
        &upload(&s, &token, "image/webp", &jpeg(8, 8)).await,
        "body",
        "image/jpeg",
    );
    // Not an image at all, and nothing.
    assert_refused(
        &upload(&s, &token, "image/png", b"<html>hello</html>").await,
        "body",
        "not",
    );
    assert_refused(&upload(&s, &token, "image/png", b"").await, "body", "empty");
    // Truncated: the header is fine, the pixels stop halfway.
    let cut = &good[..good.len() / 2];
    assert_refused(
        &upload(&s, &token, "image/png", cut).await,
        "body",
        "readable",
    );
    let j = jpeg(64, 64);
    assert_refused(
        &upload(&s, &token, "image/jpeg", &j[..j.len() / 2]).await,
        "body",
        "readable",
    );
    // A 60-megapixel bomb of a few KB: refused from its header.
    let bomb = bomb_png();
    assert!(bomb.len() < 100_000, "the bomb is {} bytes", bomb.len());
    assert_refused_quickly(&s, &token, "image/png", &bomb, "megapixels").await;
    // Over the size limit: 413, by Content-Length.
    let big = png(700, 700);
    assert!(big.len() > 200_000, "{}", big.len());
    let r = upload(&s, &token, "image/png", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code(), "payload_too_large");
    assert!(r.text().contains("200000"), "{}", r.text());
    // Nothing was counted.
    assert_eq!(upload_bytes_today(&s, &tenant, &secret).await, 0);
    // A reader may not upload.
    let (ro, _) = s.tenant("read").await;
    let read_token = s.token(&ro).await;
    let r = upload(&s, &read_token, "image/png", &good).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = s
        .raw(
            "POST",
            "/api/v1/uploads",
            &good,
            &[("content-type", "image/png")],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
}

/// The tenant's `uploadBytes` of today.
async fn upload_bytes_today(s: &Server, tenant: &str, secret: &str) -> u64 {
    let today = imagechat::usage::today();
    let r = s
        .http(
            "GET",
            &format!("/api/v1/tenant/usage?from={today}&to={today}"),
            None,
            &[("authorization", &basic(tenant, secret))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["days"][0]["uploadBytes"]
        .as_u64()
        .expect("uploadBytes")
}

#[tokio::test]
async fn metadata_is_removed_and_a_jpeg_is_turned_upright() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    // Orientation 6: the camera was turned; the pixels must be rotated 90°.
    let photo = jpeg_with_gps(40, 20, 6);
    let before = exif_fields(&photo);
    assert!(
        before.iter().any(|f| f == "GPSLatitude") && before.iter().any(|f| f == "Orientation"),
        "the fixture carries GPS: {before:?}"
    );
    assert!(photo.windows(12).any(|w| w == b"shot at home"));
    let u = uploaded(&s, &token, "image/jpeg", &photo).await;
    assert_eq!(
        (u["width"].as_u64(), u["height"].as_u64()),
        (Some(20), Some(40))
    );
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert_eq!(r.status, 200);
    assert!(
        exif_fields(&r.body).is_empty(),
        "{:?}",
        exif_fields(&r.body)
    );
    assert!(!r.body.windows(4).any(|w| w == b"Exif"));
    assert!(!r.body.windows(12).any(|w| w == b"shot at home"));
    let img = image::load_from_memory(&r.body).expect("decode").to_rgb8();
    assert_eq!(img.dimensions(), (20, 40));
    // The red left half is now the top half.
    let top = img.get_pixel(10, 5);
    let bottom = img.get_pixel(10, 35);
    assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");

    // A PNG's text chunks and anything after its end go; pixels stay.
    let poly = polyglot_png();
    let u = uploaded(&s, &token, "image/png", &poly).await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(!r.text().contains("<script"), "HTML reached storage");
    assert!(!r.body.windows(4).any(|w| w == b"tEXt"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'")
    );
    assert_same_pixels(&r.body, &png(16, 16));

    // A GIF keeps its frames and loop, not its comment.
    let g = gif_with_comment();
    assert!(g.windows(11).any(|w| w == b"secret note"));
    let u = uploaded(&s, &token, "image/gif", &g).await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(!r.body.windows(11).any(|w| w == b"secret note"));
    let frames = image::AnimationDecoder::into_frames(
        image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&r.body)).expect("gif"),
    )
    .collect_frames()
    .expect("frames");
    assert_eq!(frames.len(), 3);

    // A WebP with EXIF comes back without it, same pixels.
    let w = webp(12, 9);
    let mut parts = img_parts::webp::WebP::from_bytes(w.clone().into()).expect("webp");
    img_parts::ImageEXIF::set_exif(&mut parts, Some(exif_with_gps(1).into()));
    let mut with_exif = Vec::new();
    parts.encoder().write_to(&mut with_exif).expect("write");
    assert!(with_exif.windows(4).any(|w| w == b"EXIF"));
    let u = uploaded(&s, &token, "image/webp", &with_exif).await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(!r.body.windows(4).any(|w| w == b"EXIF"));
    assert!(exif_fields(&r.body).is_empty());
    assert_same_pixels(&r.body, &w);
}

#[tokio::test]
async fn comments_carry_attachments_live_and_in_the_snapshot() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let a = uploaded(&s, &token, "image/png", &png(10, 10)).await;
    let b = uploaded(&s, &token, "image/png", &png(20, 10)).await;
    let (aid, bid) = (a["id"].as_str().expect("a"), b["id"].as_str().expect("b"));
    let mut ws = s.ws(&token).await;
    ws.subscribe("img", None).await;
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": "img", "x": 5, "y": 5, "text": "see", "attachments": [aid, bid]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let chat = r.json()["chat"].clone();
    let first = &chat["comments"][0];
    let expect = |u: &Value| {
        json!({"id": u["id"], "url": u["url"], "contentType": u["contentType"],
               "width": u["width"], "height": u["height"]})
    };
    assert_eq!(first["attachments"], json!([expect(&a), expect(&b)]));
    let ev = ws.event("img").await;
    assert_eq!(
        ev["chat"]["comments"][0]["attachments"],
        first["attachments"]
    );
    let chat_id = chat["id"].as_str().expect("id");
    let cid = first["id"].as_str().expect("cid");
    // An edit without attachments keeps them…
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{chat_id}/comments/{cid}"),
            Some(json!({"text": "see these"})),
            &token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["comment"]["attachments"], first["attachments"]);
    let ev = ws.event("img").await;
    assert_eq!(ev["change"]["comment"]["attachments"], first["attachments"]);
    // …one with a list replaces them, live…
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{chat_id}/comments/{cid}"),
            Some(json!({"text": "just this", "attachments": [bid]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["comment"]["attachments"], json!([expect(&b)]));
    let ev = ws.event("img").await;
    assert_eq!(ev["change"]["comment"]["attachments"], json!([expect(&b)]));
    // …and [] removes them (the key is then absent).
    let r = s
        .authed(
            "PATCH",
            &format!("/api/v1/chats/{chat_id}/comments/{cid}"),
            Some(json!({"text": "none", "attachments": []})),
            &token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["comment"].get("attachments").is_none(),
        "{}",
        r.text()
    );
    // A reply with one; the snapshot holds it.
    let r = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{chat_id}/comments"),
            Some(json!({"text": "reply", "attachments": [aid]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let snap = s.snapshot(&token, "img").await;
    assert_eq!(
        snap["chats"][0]["comments"][1]["attachments"],
        json!([expect(&a)])
    );
    assert!(snap["chats"][0]["comments"][0].get("attachments").is_none());
}

#[tokio::test]
async fn attachments_are_checked_and_other_tenants_uploads_are_refused_alike() {
    let s = Server::start().await;
    let (t1, _) = s.tenant("write").await;
    let (t2, _) = s.tenant("write").await;
    let k1 = s.token(&t1).await;
    let k2 = s.token(&t2).await;
    let mine = uploaded(&s, &k1, "image/png", &png(4, 4)).await;
    let theirs = uploaded(&s, &k2, "image/png", &png(4, 4)).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(
                uploaded(&s, &k1, "image/png", &png(3, 3)).await["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
        v
    };
    let try_create = |atts: Value| {
        let s = &s;
        let k1 = k1.clone();
        async move {
            s.authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": "x", "x": 1, "y": 1, "text": "t", "attachments": atts})),
                &k1,
            )
            .await
        }
    };
    let other = try_create(json!([theirs["id"]])).await;
    assert_refused(&other, "attachments", "no upload of this site");
    let unknown = try_create(json!(["AAAAAAAAAAAAAAAAAAAAAA"])).await;
    assert_refused(&unknown, "attachments", "no upload of this site");
    // The same answer: another tenant's id reveals nothing.
    assert_eq!(other.json(), unknown.json());
    assert_refused(&try_create(json!(ids)).await, "attachments", "at most 4");
    assert_refused(
        &try_create(json!([mine["id"], mine["id"]])).await,
        "attachments",
        "twice",
    );
    assert_refused(&try_create(json!("x")).await, "attachments", "array");
    assert_refused(&try_create(json!([1])).await, "attachments", "upload ids");
    assert_refused(
        &try_create(json!(["../../x"])).await,
        "attachments",
        "upload ids",
    );
    // Nothing was written by any of them.
    assert_eq!(s.snapshot(&k1, "x").await["seq"], 0);
    // Four of one's own: fine.
    let r = try_create(json!(ids[..4])).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn usage_counts_upload_bytes_and_the_daily_quota_refuses_with_429() {
    // Random pixels: about 12 KB however it is compressed.
    let mut seed = 1u32;
    let noise = image::RgbImage::from_fn(64, 64, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        image::Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
    });
    let mut one = Vec::new();
    noise
        .write_to(&mut std::io::Cursor::new(&mut one), image::ImageFormat::Png)
        .expect("png");
    let s = Server::start_with(|c| c.upload_quota_bytes_per_day = 30_000).await;
    let (tenant, secret) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let mut stored = 0;
    let mut refused = None;
    for _ in 0..100 {
        let r = upload(&s, &token, "image/png", &one).await;
        if r.status == 201 {
            stored += r.json()["upload"]["bytes"].as_u64().expect("bytes");
        } else {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the quota stops uploads");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limited");
    assert!(r.text().contains("quota"), "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert!(stored > 0 && stored <= 30_000, "{stored}");
    assert_eq!(upload_bytes_today(&s, &tenant, &secret).await, stored);
    let metrics = s.http("GET", "/metrics", None, &[]).await.text();
    assert!(
        metrics.contains(&format!("imagechat_upload_bytes_stored_total {stored}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("imagechat_upload_check_seconds_count"),
        "{metrics}"
    );
    // One image larger than the whole quota can never fit: 413, said so.
    let (t3, _) = s.tenant("write").await;
    let k3 = s.token(&t3).await;
    let mut seed = 7u32;
    let huge = image::RgbImage::from_fn(120, 120, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        image::Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
    });
    let mut big = Vec::new();
    huge.write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
        .expect("png");
    let r = upload(&s, &k3, "image/png", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains("whole daily upload quota"),
        "{}",
        r.text()
    );
    // Another tenant is not affected.
    let (t2, _) = s.tenant("write").await;
    let k2 = s.token(&t2).await;
    assert_eq!(upload(&s, &k2, "image/png", &one).await.status, 201);
}

#[tokio::test]
async fn uploads_survive_a_restart() {
    let dir = temp_dir();
    let uploads = format!("file://{}/kept", dir.display());
    let db = fresh_database().await;
    let set = |c: &mut imagechat::Config| c.uploads = uploads.clone();
    let s = Server::start_on(&db, set).await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let body = png(30, 20);
    let u = uploaded(&s, &token, "image/png", &body).await;
    let id = u["id"].as_str().expect("id").to_owned();
    let first = fetch(&s, &id).await.body;
    s.stop().await;
    let s = Server::start_on(&db, set).await;
    let r = fetch(&s, &id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, first);
}

#[tokio::test]
async fn the_sweep_removes_only_old_unreferenced_uploads() {
    let s = Server::start_with(|c| c.upload_sweep_after = 2).await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let loose = uploaded(&s, &token, "image/png", &png(5, 5)).await;
    let attached = uploaded(&s, &token, "image/png", &png(6, 6)).await;
    let r = upload_to(
        &s,
        "/api/v1/uploads?purpose=page",
        &token,
        "image/png",
        &png(7, 7),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let page = r.json()["upload"].clone();
    let id = |u: &Value| u["id"].as_str().expect("id").to_owned();
    let chat = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(
                json!({"urlId": "s", "x": 1, "y": 1, "text": "t", "attachments": [id(&attached)]}),
            ),
            &token,
        )
        .await;
    assert_eq!(chat.status, 201, "{}", chat.text());
    let chat_id = chat.json()["chat"]["id"].as_str().expect("chat").to_owned();
    // Past the age, after at least one sweep (every second here).
    let gone = |u: Value| {
        let s = &s;
        async move {
            for _ in 0..100 {
                if fetch(s, u["id"].as_str().expect("id")).await.status == 404 {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(gone(loose.clone()).await, "the unattached upload was swept");
    assert_eq!(
        fetch(&s, &id(&attached)).await.status,
        200,
        "an attached one stays"
    );
    assert_eq!(
        fetch(&s, &id(&page)).await.status,
        200,
        "a page's image stays"
    );
    // Attaching a swept upload is refused like an unknown one.
    let r = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{chat_id}/comments"),
            Some(json!({"text": "late", "attachments": [id(&loose)]})),
            &token,
        )
        .await;
    assert_refused(&r, "attachments", "no upload of this site");
    // Once its chat is deleted, nothing attaches it: it goes too.
    let r = s
        .authed("DELETE", &format!("/api/v1/chats/{chat_id}"), None, &token)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        gone(attached).await,
        "an upload whose chat was deleted is swept"
    );
    assert_eq!(fetch(&s, &id(&page)).await.status, 200);
}

#[tokio::test]
async fn the_share_pages_show_an_upload_with_the_widget() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let r = upload_to(
        &s,
        "/api/v1/uploads?purpose=page",
        &token,
        "image/png",
        &png(9, 9),
    )
    .await;
    let u = r.json()["upload"].clone();
    let id = u["id"].as_str().expect("id");
    let page = s.http("GET", &format!("/s/{id}"), None, &[]).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("csp");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text();
    assert!(html.contains(&format!("upload:{id}")), "the widget's urlId");
    assert!(html.contains(&format!("/api/v1/uploads/{id}")));
    assert!(html.contains(&tenant));
    assert!(!html.contains("{{"), "every placeholder is filled");
    for path in [
        "/s/AAAAAAAAAAAAAAAAAAAAAA",
        "/s/%F2%BE%BE%B2%1F",
        "/s/%00",
        "/s/a%2Fb",
    ] {
        let missing = s.http("GET", path, None, &[]).await;
        assert_eq!(missing.status, 404, "{path}");
        assert_eq!(
            missing.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(missing.text().contains("<h1>"), "{path}: a page, not JSON");
    }
    let new = s.http("GET", "/s/new", None, &[]).await;
    assert_eq!(new.status, 200);
    assert!(new.header("content-security-policy").is_some());
    let r = upload_to(
        &s,
        "/api/v1/uploads?purpose=other",
        &token,
        "image/png",
        &png(9, 9),
    )
    .await;
    assert_refused(&r, "purpose", "page");
}

#[tokio::test]
async fn attachments_are_exported_as_image_bodies_of_the_annotations() {
    let s = Server::start().await;
    let (tenant, secret) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let a = uploaded(&s, &token, "image/png", &png(8, 8)).await;
    let b = uploaded(&s, &token, "image/jpeg", &jpeg_with_gps(8, 8, 1)).await;
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": "exp", "x": 1, "y": 1, "text": "look", "attachments": [a["id"]]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let chat_id = r.json()["chat"]["id"].as_str().expect("id").to_owned();
    let r = s
        .authed(
            "POST",
            &format!("/api/v1/chats/{chat_id}/comments"),
            Some(json!({"text": "and this", "attachments": [b["id"]]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    for (format, iiif) in [("", false), ("&format=iiif", true)] {
        let r = s
            .authed(
                "GET",
                &format!("/api/v1/annotations?urlId=exp{format}"),
                None,
                &token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        crate::annotations::w3c_page(&page, iiif);
        let items = page["items"].as_array().expect("items");
        let image = |i: usize, u: &Value| {
            let bodies = items[i]["body"].as_array().expect("bodies").clone();
            let want = json!({
                "id": format!("http://{}/api/v1/uploads/{}", s.addr, u["id"].as_str().expect("id")),
                "type": "Image",
                "format": u["contentType"],
            });
            assert!(bodies.contains(&want), "{want} in {bodies:?}");
        };
        image(0, &a);
        image(1, &b);
    }
    // Importing that export elsewhere keeps the text; the images stay where
    // they are (an import attaches nothing).
    let export = s
        .authed("GET", "/api/v1/annotations?urlId=exp", None, &token)
        .await
        .json();
    let r = s
        .http(
            "POST",
            "/api/v1/tenant/annotations?urlId=copy",
            Some(export),
            &[("authorization", &basic(&tenant, &secret))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["imported"], 2, "{}", r.text());
    let snap = s.snapshot(&token, "copy").await;
    assert_eq!(snap["chats"][0]["comments"][0]["text"], "look");
    assert!(snap["chats"][0]["comments"][0].get("attachments").is_none());
}

// ---- what a hostile review found: each case fails without its fix ----

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&(data.len() as u32).to_be_bytes());
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut h = flate2::Crc::new();
    h.update(kind);
    h.update(data);
    c.extend_from_slice(&h.sum().to_be_bytes());
    c
}

/// `png` with `chunk` inserted right after IHDR.
fn with_chunk(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend_from_slice(chunk);
    out.extend_from_slice(&png[33..]);
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).expect("zlib");
    z.finish().expect("zlib")
}

#[tokio::test]
async fn a_colour_profile_that_inflates_without_end_is_never_inflated() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    // About 400 MB of zeros in a few hundred KB: the decoder used to inflate
    // every byte of it (8 GB with a larger chunk).
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..400 {
        std::io::Write::write_all(&mut z, &block).expect("zlib");
    }
    let mut data = b"lat=48.8566 lon=2.3522\0\0".to_vec();
    data.extend(z.finish().expect("zlib"));
    let bomb = with_chunk(&png(8, 8), &png_chunk(b"iCCP", &data));
    let started = std::time::Instant::now();
    let u = uploaded(&s, &token, "image/png", &bomb).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(
        !r.body.windows(4).any(|w| w == b"iCCP"),
        "no such profile is kept"
    );
    assert!(!r.body.windows(3).any(|w| w == b"lat"));

    // A real profile is kept, under a neutral name; bytes that only claim
    // to be one are dropped.
    let srgb = moxcms::ColorProfile::new_display_p3()
        .encode()
        .expect("profile");
    let mut named = b"lat=48.8566 lon=2.3522\0\0".to_vec();
    named.extend(zlib(&srgb));
    let u = uploaded(
        &s,
        &token,
        "image/png",
        &with_chunk(&png(8, 8), &png_chunk(b"iCCP", &named)),
    )
    .await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(
        r.body.windows(4).any(|w| w == b"iCCP"),
        "a real profile stays"
    );
    assert!(!r.body.windows(3).any(|w| w == b"lat"), "its name does not");
    let mut fake = b"icc\0\0".to_vec();
    fake.extend(zlib(b"lat=48.8566 lon=2.3522, not a colour profile at all"));
    let u = uploaded(
        &s,
        &token,
        "image/png",
        &with_chunk(&png(8, 8), &png_chunk(b"iCCP", &fake)),
    )
    .await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(!r.body.windows(4).any(|w| w == b"iCCP"));
}

#[tokio::test]
async fn bytes_hidden_inside_a_pngs_pixel_data_do_not_survive() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    // Bytes after the end of the compressed stream, inside IDAT, and an
    // extra IDAT after it: decoders ignore both.
    let base = png(12, 12);
    let mut p = img_parts::png::Png::from_bytes(base.clone().into()).expect("png");
    for c in p.chunks_mut() {
        if &c.kind() == b"IDAT" {
            let mut data = c.contents().to_vec();
            data.extend_from_slice(b"lat=48.8566 lon=2.3522");
            *c = img_parts::png::PngChunk::new(*b"IDAT", data.into());
        }
    }
    let mut hidden = Vec::new();
    p.encoder().write_to(&mut hidden).expect("write");
    let r = upload(&s, &token, "image/png", &hidden).await;
    if r.status == 201 {
        let got = fetch(&s, r.json()["upload"]["id"].as_str().expect("id")).await;
        assert!(
            !got.body.windows(3).any(|w| w == b"lat"),
            "the hidden bytes were stored"
        );
        assert_same_pixels(&got.body, &base);
    } else {
        assert_refused(&r, "body", "readable");
    }
}

/// A GIF whose 1×1 canvas hides `frames` frames of `size`×`size`.
fn gif_frames_beyond_the_canvas(size: u16, frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let palette = [0u8, 0, 0, 255, 255, 255];
        let mut enc = gif::Encoder::new(&mut out, 1, 1, &palette).expect("gif");
        for _ in 0..frames {
            let f = gif::Frame {
                width: size,
                height: size,
                buffer: std::borrow::Cow::Owned(vec![0; usize::from(size) * usize::from(size)]),
                ..Default::default()
            };
            enc.write_frame(&f).expect("frame");
        }
    }
    out
}

#[tokio::test]
async fn gif_frames_are_measured_before_they_are_decoded() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let bomb = gif_frames_beyond_the_canvas(2000, 20);
    assert_refused_quickly(&s, &token, "image/gif", &bomb, "outside").await;
    // An interlaced GIF keeps its picture (rows written in order).
    let mut inter = Vec::new();
    {
        let palette = [0u8, 0, 0, 255, 255, 255];
        let mut enc = gif::Encoder::new(&mut inter, 4, 8, &palette).expect("gif");
        let rows: Vec<u8> = (0..8u8).flat_map(|y| [y % 2; 4]).collect();
        let mut f = gif::Frame {
            width: 4,
            height: 8,
            interlaced: true,
            buffer: std::borrow::Cow::Owned(rows),
            ..Default::default()
        };
        f.make_lzw_pre_encoded();
        enc.write_lzw_pre_encoded_frame(&f).expect("frame");
    }
    let u = uploaded(&s, &token, "image/gif", &inter).await;
    let got = fetch(&s, u["id"].as_str().expect("id")).await;
    assert_same_pixels(&got.body, &inter);
}

#[tokio::test]
async fn a_jpeg_whose_header_lies_or_whose_data_stops_is_refused() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    // A 16×16 JPEG whose frame header claims 7000×7000: 600 bytes that
    // were stored as a 1.3 MB grey picture.
    let j = jpeg(16, 16);
    let sof = j
        .windows(2)
        .position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
        .expect("SOF");
    let mut lie = j.clone();
    lie[sof + 5..sof + 7].copy_from_slice(&7000u16.to_be_bytes());
    lie[sof + 7..sof + 9].copy_from_slice(&7000u16.to_be_bytes());
    assert_refused(
        &upload(&s, &token, "image/jpeg", &lie).await,
        "body",
        "readable",
    );
    // Cut before its end marker.
    let big = jpeg(64, 64);
    assert_refused(
        &upload(&s, &token, "image/jpeg", &big[..big.len() - 40]).await,
        "body",
        "readable",
    );
}

#[tokio::test]
async fn a_tenant_takes_an_upload_down_and_only_its_own() {
    let s = Server::start().await;
    let (tenant, secret) = s.tenant("write").await;
    let (other, other_secret) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let r = upload_to(
        &s,
        "/api/v1/uploads?purpose=page",
        &token,
        "image/png",
        &png(6, 6),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["upload"]["id"].as_str().expect("id").to_owned();
    let r = s
        .authed(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": "t", "x": 1, "y": 1, "text": "t", "attachments": [id]})),
            &token,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let path = format!("/api/v1/tenant/uploads/{id}");
    // Another tenant cannot, and learns nothing.
    let r = s
        .http(
            "DELETE",
            &path,
            None,
            &[("authorization", &basic(&other, &other_secret))],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(fetch(&s, &id).await.status, 200);
    // Without credentials: 401.
    assert_eq!(s.http("DELETE", &path, None, &[]).await.status, 401);
    let r = s
        .http(
            "DELETE",
            &path,
            None,
            &[("authorization", &basic(&tenant, &secret))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fetch(&s, &id).await.status, 404);
    assert_eq!(
        s.http("GET", &format!("/s/{id}"), None, &[]).await.status,
        404
    );
    let r = s
        .http(
            "DELETE",
            &path,
            None,
            &[("authorization", &basic(&tenant, &secret))],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

/// A 1×1 APNG whose `acTL` counts `declared` frames and which holds a
/// second frame of `size`×`size` carrying `payload` as its data.
fn apng_with_hidden_frame(declared: u32, size: u32, payload: &[u8]) -> Vec<u8> {
    let fctl = |seq: u32, w: u32, h: u32| {
        let mut d = seq.to_be_bytes().to_vec();
        for v in [w, h, 0, 0] {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d.extend_from_slice(&[0, 1, 0, 1, 0, 0]);
        png_chunk(b"fcTL", &d)
    };
    let mut ihdr = 1u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut actl = declared.to_be_bytes().to_vec();
    actl.extend_from_slice(&0u32.to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"acTL", &actl));
    out.extend(fctl(0, 1, 1));
    out.extend(png_chunk(b"IDAT", &zlib(&[0, 7])));
    out.extend(fctl(1, size, size));
    let mut fdat = 2u32.to_be_bytes().to_vec();
    fdat.extend_from_slice(payload);
    out.extend(png_chunk(b"fdAT", &fdat));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

#[tokio::test]
async fn apng_frames_past_the_count_or_beyond_the_image_are_refused() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let hidden = apng_with_hidden_frame(1, 1, b"GPS 51.5007,-0.1246 home address");
    assert_refused(
        &upload(&s, &token, "image/png", &hidden).await,
        "body",
        "names 1 frames",
    );
    let huge = apng_with_hidden_frame(2, 5000, &zlib(&vec![0; 5001 * 10]));
    assert_refused(
        &upload(&s, &token, "image/png", &huge).await,
        "body",
        "outside",
    );
}

/// An animated WebP: VP8X with `flags` and `reserved`, ANIM, and one ANMF
/// whose frame is a 4×4 lossless image followed by `extra` chunk bytes.
fn animated_webp(flags: u8, reserved: [u8; 3], extra: &[u8]) -> Vec<u8> {
    let still = webp(4, 4);
    let vp8l_at = still.windows(4).position(|w| w == b"VP8L").expect("VP8L");
    let vp8l = &still[vp8l_at..];
    let chunk = |id: &[u8; 4], d: &[u8]| {
        let mut c = id.to_vec();
        c.extend_from_slice(&(d.len() as u32).to_le_bytes());
        c.extend_from_slice(d);
        if d.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let mut vp8x = vec![flags];
    vp8x.extend_from_slice(&reserved);
    vp8x.extend_from_slice(&[3, 0, 0, 3, 0, 0]); // 4×4 canvas (minus one)
    let mut anmf = vec![0, 0, 0, 0, 0, 0, 3, 0, 0, 3, 0, 0, 100, 0, 0, 0];
    anmf.extend_from_slice(vp8l);
    anmf.extend_from_slice(extra);
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(b"VP8X", &vp8x));
    body.extend(chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]));
    body.extend(chunk(b"ANMF", &anmf));
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

#[tokio::test]
async fn webp_headers_and_frames_keep_only_what_draws_them() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let mut secret = b"ZZZZ".to_vec();
    secret.extend_from_slice(&8u32.to_le_bytes());
    secret.extend_from_slice(b"\"SECRET\"");
    // Reserved bits set, reserved bytes holding text, EXIF and XMP flags on.
    let sent = animated_webp(0x02 | 0x08 | 0x04 | 0xC1, *b"SEC", &secret);
    let u = uploaded(&s, &token, "image/webp", &sent).await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    assert!(
        !r.body.windows(6).any(|w| w == b"SECRET"),
        "a frame's unknown chunk survived"
    );
    let at = r.body.windows(4).position(|w| w == b"VP8X").expect("VP8X") + 8;
    assert_eq!(r.body[at], 0x02, "only the animation flag is left");
    assert_eq!(
        &r.body[at + 1..at + 4],
        &[0, 0, 0],
        "reserved bytes are zero"
    );
    let frames = image::AnimationDecoder::into_frames(
        image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&r.body)).expect("webp"),
    )
    .collect_frames()
    .expect("frames");
    assert_eq!(frames.len(), 1);
}

#[tokio::test]
async fn a_colour_profile_is_written_anew_so_appended_bytes_go() {
    let s = Server::start().await;
    let (tenant, _) = s.tenant("write").await;
    let token = s.token(&tenant).await;
    let mut profile = moxcms::ColorProfile::new_srgb().encode().expect("profile");
    profile.extend_from_slice(&b"GPS:51.50,-0.12".repeat(4));
    let n = profile.len() as u32;
    profile[..4].copy_from_slice(&n.to_be_bytes());
    let mut chunk = b"sRGB profile\0\0".to_vec();
    chunk.extend(zlib(&profile));
    let sent = with_chunk(&png(8, 8), &png_chunk(b"iCCP", &chunk));
    let u = uploaded(&s, &token, "image/png", &sent).await;
    let r = fetch(&s, u["id"].as_str().expect("id")).await;
    let at = r
        .body
        .windows(4)
        .position(|w| w == b"iCCP")
        .expect("the profile stays");
    let len = u32::from_be_bytes(r.body[at - 4..at].try_into().expect("len")) as usize;
    let data = &r.body[at + 4..at + 4 + len];
    let nul = data.iter().position(|b| *b == 0).expect("name");
    let mut stored = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::ZlibDecoder::new(&data[nul + 2..]),
        &mut stored,
    )
    .expect("inflate");
    assert!(
        !stored.windows(4).any(|w| w == b"GPS:"),
        "appended bytes survived"
    );
    assert!(moxcms::ColorProfile::new_from_slice(&stored).is_ok());
}
