//! The demo page, the dashboard and the widget script: embedded in the binary
//! at build time, or read from `--assets-dir` when working on them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::Ids;
use super::AppError;
use crate::app::App;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const PLACEHOLDER: &str = "<!doctype html><meta charset=utf-8><title>imagechat</title>\
<p>imagechat is running. The API lives under <code>/api/v1</code>.</p>";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "json" => "application/json",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

async fn file(app: &App, name: &str) -> Option<Vec<u8>> {
    match &app.config.assets_dir {
        Some(dir) => tokio::fs::read(dir.join(name)).await.ok(),
        None => EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec()),
    }
}

async fn serve(app: &App, name: &str) -> Response {
    match file(app, name).await {
        Some(bytes) => {
            let mut res = (StatusCode::OK, bytes).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            res
        }
        None => AppError::NotFound("no such file").into_response(),
    }
}

/// The demo page (or a placeholder when the binary has no pages).
#[utoipa::path(get, path = "/", tag = "node",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
pub async fn index(State(app): State<Arc<App>>) -> Response {
    if file(&app, "pages/index.html").await.is_none() {
        let mut res = PLACEHOLDER.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return res;
    }
    serve(&app, "pages/index.html").await
}

/// The tenant dashboard.
#[utoipa::path(get, path = "/admin", tag = "node",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, body = crate::protocol::ErrorBody), (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
pub async fn admin(State(app): State<Arc<App>>) -> Response {
    let mut res = serve(&app, "pages/admin.html").await;
    let h = res.headers_mut();
    // The dashboard holds the tenant's session: only its own files run,
    // nothing may frame it (clickjacking), and pictures may come from
    // wherever the tenant's images live.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' https: http: data: blob:; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// The policy of the share pages: only this server's own files run and
/// load, pictures may be local previews (`blob:`), nothing may frame them.
const SHARE_CSP: &str = "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; \
     style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

fn share_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SHARE_CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// The page where a visitor pastes, drops or picks a screenshot, uploads
/// it and lands on its own page (contract §14).
#[utoipa::path(get, path = "/s/new", tag = "node",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, body = crate::protocol::ErrorBody), (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
pub async fn share_new(State(app): State<Arc<App>>) -> Response {
    let mut res = serve(&app, "pages/share-new.html").await;
    share_headers(&mut res);
    res
}

/// An upload's own page: the image large, with the widget on it (urlId
/// `upload:{id}`, the upload's tenant) and a link to share (contract §14).
#[utoipa::path(get, path = "/s/{uploadId}", tag = "node", params(("uploadId" = String, Path)),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, description = "HTML: no such upload", content_type = "text/html", body = String),
        (status = 503, body = crate::protocol::ErrorBody)))]
pub async fn share(State(app): State<Arc<App>>, uri: axum::http::Uri) -> Response {
    // The raw segment: an upload id needs no decoding, and anything that
    // does (or does not decode at all) names no upload, so it gets the
    // same page as an unknown id.
    let id = uri.path().strip_prefix("/s/").unwrap_or_default();
    let record = if crate::upload::is_upload_id(id) {
        match app.store.upload(id).await {
            Ok(r) => r,
            Err(e) => return AppError::from(e).into_response(),
        }
    } else {
        None
    };
    let Some(record) = record else {
        let mut res = (StatusCode::NOT_FOUND, NOT_FOUND_PAGE).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        share_headers(&mut res);
        return res;
    };
    let Some(template) = file(&app, "pages/share.html").await else {
        return AppError::NotFound("no such file").into_response();
    };
    let a = &record.upload.attachment;
    let attr = |s: &str| html_escape::encode_double_quoted_attribute(s).into_owned();
    let page = String::from_utf8_lossy(&template)
        .replace("{{UPLOAD_ID}}", &attr(&a.id))
        .replace("{{IMAGE_URL}}", &attr(&format!("/api/v1/uploads/{}", a.id)))
        .replace("{{TENANT}}", &attr(&record.tenant_id))
        .replace("{{WIDTH}}", &a.width.to_string())
        .replace("{{HEIGHT}}", &a.height.to_string())
        .replace("{{CONTENT_TYPE}}", &attr(&a.content_type));
    let mut res = (StatusCode::OK, page).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    share_headers(&mut res);
    res
}

const NOT_FOUND_PAGE: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\">\
<title>Not found · imagechat</title><link rel=stylesheet href=\"/static/share.css\">\
<main class=\"share-missing\"><h1>No such image</h1>\
<p>This link names no uploaded image: it may have been mistyped, or the image was removed.</p>\
<p><a href=\"/s/new\">Share a screenshot</a></p></main></html>";

/// The widget script, for any origin.
#[utoipa::path(get, path = "/imagechat.js", tag = "node",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String),
        (status = 404, body = crate::protocol::ErrorBody), (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
pub async fn widget(State(app): State<Arc<App>>) -> Response {
    let mut res = serve(&app, "imagechat.js").await;
    // Sites load the script from another origin.
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// A part of the widget that it loads on demand (`widget/lazy/NAME.js`), for
/// any origin, like the widget itself.
#[utoipa::path(get, path = "/imagechat/{name}", tag = "node", params(("name" = String, Path, description = "`[A-Za-z0-9_-]+.js`")),
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String),
        (status = 400, body = crate::protocol::ErrorBody),
        (status = 404, body = crate::protocol::ErrorBody), (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
pub async fn widget_part(State(app): State<Arc<App>>, Ids(name): Ids<String>) -> Response {
    let plain = name.strip_suffix(".js").is_some_and(|stem| {
        !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    });
    if !plain {
        return AppError::NotFound("no such file").into_response();
    }
    let mut res = serve(&app, &format!("lazy/{name}")).await;
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// A file of the demo page or dashboard (`demo.svg`, `admin.js`…).
#[utoipa::path(get, path = "/static/{name}", tag = "node", params(("name" = String, Path)),
    responses((status = 200, description = "The file, with its content type"),
        (status = 400, body = crate::protocol::ErrorBody),
        (status = 404, body = crate::protocol::ErrorBody), (status = 503, body = crate::protocol::ErrorBody, description = "the node is at its connection limit (`Retry-After`)")))]
pub async fn asset(State(app): State<Arc<App>>, Ids(name): Ids<String>) -> Response {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with(".html")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain {
        return AppError::NotFound("no such file").into_response();
    }
    serve(&app, &format!("pages/{name}")).await
}
