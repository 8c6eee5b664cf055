//! The upload calls (contract §14): `POST /api/v1/uploads` takes an image
//! body, `GET /api/v1/uploads/{id}` serves it. The work is in
//! [`crate::upload`]; this file reads requests and writes answers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{
    declared_length, read_body, Client, FromQuery, Ids, Params, QueryMap, Writer,
};
use super::openapi::WriteErrors;
use super::{json, AppError};
use crate::app::App;
use crate::protocol::UploadAnswer;
use crate::upload::{self, Kind};

/// `?purpose=page`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UploadQuery {
    /// `page`: the upload is the image of its own `/s/{id}` page, kept
    /// even while no comment attaches it. Absent: an attachment, deleted
    /// when no comment has attached it for `--upload-sweep-after`.
    #[param(pattern = "^page$")]
    purpose: Option<String>,
}

pub struct Purpose {
    page: bool,
}

impl FromQuery for Purpose {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        match q.get("purpose").map(String::as_str) {
            None => Ok(Purpose { page: false }),
            Some("page") => Ok(Purpose { page: true }),
            // Empty is not absent: say what is accepted.
            Some(_) => Err(AppError::invalid(
                Some("purpose"),
                "purpose must be page, or absent",
            )),
        }
    }
}

/// The origin stored upload URLs live under: `--public-url`, else none (a
/// root-relative URL). The `Host` a client sends is never stored, so no
/// client can make other viewers load images from a host it names.
fn base_url(app: &App) -> &str {
    app.config.public_url.as_deref().unwrap_or("")
}

/// Stores an image: a screenshot to discuss, or a comment's attachment.
///
/// The body is the raw image (not a form), at most `--upload-max-bytes`
/// (default 10 MiB). It must really be an image of its `Content-Type`
/// (`image/png`, `image/jpeg`, `image/webp`, `image/gif`) with at most 50
/// megapixels over all frames and at most 100 frames; metadata is removed
/// before it is stored, and a JPEG is turned upright by its EXIF
/// orientation. `url` is absolute under `--public-url`, else root-relative
/// to this server.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "uploads", params(UploadQuery),
    request_body(content = Vec<u8>, description = "The image's bytes",
        content_type = "image/*"),
    security(("session" = [])),
    responses((status = 201, body = UploadAnswer), WriteErrors))]
pub async fn create(
    State(app): State<Arc<App>>,
    Writer(s): Writer,
    Client(client): Client,
    Params(purpose): Params<Purpose>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = Kind::from_content_type(declared).ok_or_else(|| {
        AppError::invalid(
            Some("body"),
            "Content-Type must be image/png, image/jpeg, image/webp or image/gif",
        )
    })?;
    let max = app.config.upload_max_bytes;
    let too_large = || AppError::UploadTooLarge {
        message: format!("the upload is larger than {max} bytes"),
    };
    if declared_length(&headers).is_some_and(|n| n > max) {
        // Refused before any place is taken or the quota looked at.
        return Err(too_large());
    }
    // Before the body is read: a place for this address, room in the quota.
    let _mine = app.uploads.address_slot(client)?;
    upload::check_quota(&app, &s.tenant.id).await?;
    let bytes = read_body(
        &headers,
        body,
        usize::try_from(max).unwrap_or(usize::MAX),
        Duration::from_secs(app.config.body_timeout),
        too_large,
    )
    .await?;
    // A read body waits for a decoder: a place on this node.
    let _slot = app.uploads.slot()?;
    let upload = upload::accept(
        &app,
        &s.tenant.id,
        kind,
        bytes,
        purpose.page,
        base_url(&app),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &UploadAnswer { upload }))
}

/// Serves an upload to anyone who has its id (the id is the capability),
/// with headers that keep a browser from treating it as anything but an
/// image of its type.
#[utoipa::path(get, path = "/api/v1/uploads/{uploadId}", tag = "uploads",
    params(("uploadId" = String, Path)),
    responses((status = 200, description = "The image", content_type = "image/*", body = Vec<u8>),
        (status = 304, description = "`If-None-Match` matched the `ETag`"),
        (status = 404, body = crate::protocol::ErrorBody),
        (status = 503, body = crate::protocol::ErrorBody)))]
pub async fn get(
    State(app): State<Arc<App>>,
    Ids(id): Ids<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some((record, bytes)) = upload::fetch(&app, &id).await? else {
        return Err(AppError::NotFound("no such upload"));
    };
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == record.etag || t == "*");
    let mut res = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, bytes).into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&record.upload.attachment.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&record.etag) {
        h.insert(header::ETAG, v);
    }
    for (name, value) in SAFETY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    Ok(res)
}

/// What every served upload carries (contract §14): no sniffing, no
/// scripts or anything else should a browser ever open it as a document,
/// cached for good (an id's bytes never change), and usable as an `<img>`
/// on the sites that embed the widget.
const SAFETY_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
    (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
    (
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "cross-origin",
    ),
    (header::CONTENT_DISPOSITION, "inline"),
];
