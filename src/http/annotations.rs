//! Standard annotations out and in (contract §11): an image's chats as a
//! W3C `AnnotationPage` or IIIF Presentation 3, one annotation by its id,
//! and an import of annotations from any tool that writes the standard.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::chats::UrlId;
use super::extract::{BulkJson, FromQuery, Ids, Params, QueryMap, Reader};
use super::openapi::{ReadErrors, TenantErrors};
use super::tenant::TenantCaller;
use super::{json, AppError};
use crate::annotation::{self, Exporter, Format, Imported};
use crate::app::{write, App};
use crate::domain::chat::Authority;
use crate::domain::{ChatId, ImageKey, Mutation, TenantId};
use crate::store::FoundChat;

/// Who may read annotations: a session (as for chats) or the tenant
/// itself (Basic auth or the dashboard's cookie).
pub struct AnnotationReader(pub TenantId);

impl FromRequestParts<Arc<App>> for AnnotationReader {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, AppError> {
        let bearer = super::extract::credentials(&parts.headers, "Bearer").is_some();
        if bearer {
            let Reader(s) = Reader::from_request_parts(parts, app).await?;
            return Ok(AnnotationReader(s.tenant.id.clone()));
        }
        let TenantCaller(t) = TenantCaller::from_request_parts(parts, app).await?;
        Ok(AnnotationReader(t.id.clone()))
    }
}

/// `?format=` of an export: `w3c` (the default) or `iiif`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FormatQuery {
    /// `w3c` (default): W3C Web Annotation; `iiif`: IIIF Presentation 3.
    #[param(pattern = "^(w3c|iiif)$")]
    format: Option<String>,
}

pub struct Export {
    url_id: String,
    format: Format,
}

fn format_of(q: &QueryMap) -> Result<Format, AppError> {
    match q.get("format").map(String::as_str) {
        None | Some("w3c") => Ok(Format::W3c),
        Some("iiif") => Ok(Format::Iiif),
        Some(_) => Err(AppError::invalid(
            Some("format"),
            "format must be w3c or iiif",
        )),
    }
}

impl FromQuery for Export {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        let UrlId(url_id) = UrlId::from_query(q)?;
        Ok(Export {
            url_id,
            format: format_of(q)?,
        })
    }
}

pub struct FormatOnly(Format);

impl FromQuery for FormatOnly {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        format_of(q).map(FormatOnly)
    }
}

/// The origin annotation ids live under: `--public-url`, else the
/// request's `Host` (https when this node serves TLS).
fn base_url(app: &App, parts_host: Option<&HeaderValue>) -> String {
    if let Some(u) = &app.config.public_url {
        return u.clone();
    }
    let scheme = if app.config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let host = parts_host
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| app.config.listen.to_string());
    format!("{scheme}://{host}")
}

/// The request's `Host` header.
pub struct Host(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for Host {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Ok(Host(parts.headers.get(header::HOST).cloned()))
    }
}

fn ld_json(format: Format, body: &Value) -> Response {
    let mut res = json(StatusCode::OK, body);
    if let Ok(v) = HeaderValue::from_str(&format.content_type()) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    res
}

/// Every chat and comment of an image as one `AnnotationPage`, oldest
/// first (`application/ld+json`).
#[utoipa::path(get, path = "/api/v1/annotations", tag = "annotations",
    params(super::chats::ImageQuery, FormatQuery),
    security(("session" = []), ("tenant" = []), ("dashboard" = [])),
    responses((status = 200, description = "A W3C or IIIF `AnnotationPage`", content_type = "application/ld+json", body = Object), ReadErrors))]
pub async fn export(
    State(app): State<Arc<App>>,
    AnnotationReader(tenant): AnnotationReader,
    Host(host): Host,
    Params(q): Params<Export>,
) -> Result<Response, AppError> {
    let snap = app
        .store
        .snapshot(&ImageKey::new(&tenant, &q.url_id))
        .await?;
    let base = base_url(&app, host.as_ref());
    let ex = Exporter {
        base: &base,
        tenant: &tenant,
        url_id: &q.url_id,
        image_url: snap.image_url.as_deref(),
        format: q.format,
    };
    Ok(ld_json(q.format, &ex.page(&snap.chats)))
}

const NO_SUCH_ANNOTATION: AppError = AppError::NotFound("no such annotation");

/// The tenant's chat an annotation id names; another tenant's is "no such".
async fn annotated_chat(
    app: &App,
    tenant: &TenantId,
    chat_id: &ChatId,
) -> Result<FoundChat, AppError> {
    app.store
        .chat(tenant, chat_id)
        .await?
        .ok_or(NO_SUCH_ANNOTATION)
}

fn exporter<'a>(
    base: &'a str,
    tenant: &'a TenantId,
    found: &'a FoundChat,
    format: Format,
) -> Exporter<'a> {
    Exporter {
        base,
        tenant,
        url_id: &found.url_id,
        image_url: found.image_url.as_deref(),
        format,
    }
}

/// One chat's annotation, with its own `@context`.
#[utoipa::path(get, path = "/api/v1/annotations/{chatId}", tag = "annotations",
    params(("chatId" = String, Path), FormatQuery),
    security(("session" = []), ("tenant" = []), ("dashboard" = [])),
    responses((status = 200, description = "A W3C or IIIF `Annotation`", content_type = "application/ld+json", body = Object), ReadErrors))]
pub async fn one_chat(
    State(app): State<Arc<App>>,
    AnnotationReader(tenant): AnnotationReader,
    Host(host): Host,
    Params(FormatOnly(format)): Params<FormatOnly>,
    Ids(chat_id): Ids<ChatId>,
) -> Result<Response, AppError> {
    let found = annotated_chat(&app, &tenant, &chat_id).await?;
    let base = base_url(&app, host.as_ref());
    let ex = exporter(&base, &tenant, &found, format);
    Ok(ld_json(format, &ex.chat(&found.chat, true)))
}

/// One reply's annotation, with its own `@context`.
#[utoipa::path(get, path = "/api/v1/annotations/{chatId}/comments/{commentId}", tag = "annotations",
    params(("chatId" = String, Path), ("commentId" = String, Path), FormatQuery),
    security(("session" = []), ("tenant" = []), ("dashboard" = [])),
    responses((status = 200, description = "A W3C or IIIF `Annotation`", content_type = "application/ld+json", body = Object), ReadErrors))]
pub async fn one_reply(
    State(app): State<Arc<App>>,
    AnnotationReader(tenant): AnnotationReader,
    Host(host): Host,
    Params(FormatOnly(format)): Params<FormatOnly>,
    Ids((chat_id, comment_id)): Ids<(ChatId, String)>,
) -> Result<Response, AppError> {
    let found = annotated_chat(&app, &tenant, &chat_id).await?;
    // The first comment is the chat's own annotation, not a reply.
    let comment = found
        .chat
        .comments
        .iter()
        .skip(1)
        .find(|c| c.id == comment_id)
        .ok_or(NO_SUCH_ANNOTATION)?;
    let base = base_url(&app, host.as_ref());
    let ex = exporter(&base, &tenant, &found, format);
    Ok(ld_json(format, &ex.reply(&found.chat, comment, true)))
}

/// `?urlId=&width=&height=` of an import.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ImportQuery {
    /// The image's width in pixels, for pixel coordinates.
    #[param(exclusive_minimum = 0)]
    width: Option<f64>,
    /// The image's height in pixels, for pixel coordinates.
    #[param(exclusive_minimum = 0)]
    height: Option<f64>,
}

pub struct Import {
    url_id: String,
    options: annotation::Options,
}

impl FromQuery for Import {
    fn from_query(q: &QueryMap) -> Result<Self, AppError> {
        let UrlId(url_id) = UrlId::from_query(q)?;
        let size = |k: &'static str| -> Result<Option<f64>, AppError> {
            q.get(k)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite() && *n > 0.0 && *n <= 1e9)
                        .ok_or_else(|| {
                            AppError::invalid(
                                Some(k),
                                format!("{k} must be a positive number of pixels"),
                            )
                        })
                })
                .transpose()
        };
        let (width, height) = (size("width")?, size("height")?);
        if width.is_some() != height.is_some() {
            return Err(AppError::invalid(
                Some(if width.is_some() { "height" } else { "width" }),
                "width and height must be given together",
            ));
        }
        Ok(Import {
            url_id,
            options: annotation::Options { width, height },
        })
    }
}

/// The result of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    /// Annotations written as chats and comments.
    pub imported: usize,
    /// Annotations not imported, by their index in the body, with why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    pub index: usize,
    pub reason: String,
}

/// Imports annotations into an image: each `commenting` one becomes a chat
/// and each `replying` one a comment, logged and published like any write.
/// Stops at the first storage failure (503); what was written stays.
#[utoipa::path(post, path = "/api/v1/tenant/annotations", tag = "annotations",
    params(super::chats::ImageQuery, ImportQuery),
    request_body(content = Object, description = "An `AnnotationPage`, an `AnnotationCollection` with embedded pages, or a JSON array of annotations (W3C or IIIF); at most 4 MiB and 1000 annotations", content_type = "application/ld+json"),
    security(("tenant" = []), ("dashboard" = [])),
    responses((status = 200, body = ImportAnswer), TenantErrors))]
pub async fn import(
    State(app): State<Arc<App>>,
    TenantCaller(t): TenantCaller,
    Params(q): Params<Import>,
    BulkJson(body): BulkJson,
) -> Result<Response, AppError> {
    let reading = annotation::read(&body, &q.options).map_err(|m| AppError::invalid(None, m))?;
    let mut skipped: Vec<Skipped> = reading
        .skipped
        .into_iter()
        .map(|(index, reason)| Skipped { index, reason })
        .collect();
    // Annotation ids (of chats and of replies) to the chat they became.
    let mut chats: HashMap<String, ChatId> = HashMap::new();
    let mut imported = 0;
    for (index, item) in reading.items {
        let (id, m, by) = match item {
            Imported::Chat {
                id,
                x,
                y,
                shape,
                text,
                resolved,
                creator,
            } => (
                id,
                Mutation::CreateChat {
                    url_id: q.url_id.clone(),
                    x,
                    y,
                    text,
                    shape,
                    resolved,
                    image_url: None,
                    page_url: None,
                    attachments: vec![],
                    mentions: vec![],
                },
                Authority::Import(creator),
            ),
            Imported::Reply {
                id,
                target,
                text,
                creator,
            } => {
                let Some(chat_id) = chats.get(&target).cloned() else {
                    skipped.push(Skipped {
                        index,
                        reason: "its target is not an annotation of this import".into(),
                    });
                    continue;
                };
                (
                    id,
                    Mutation::AddComment {
                        chat_id,
                        text,
                        attachments: vec![],
                        mentions: vec![],
                    },
                    Authority::Import(creator),
                )
            }
        };
        match write::commit(&app, &t.id, m, by, None).await {
            Ok(c) => {
                imported += 1;
                if let (Some(id), Some(chat)) = (id, c.chat) {
                    chats.insert(id, chat.id);
                }
            }
            Err(
                e @ (AppError::Invalid { .. } | AppError::NotFound(_) | AppError::Forbidden(_)),
            ) => {
                skipped.push(Skipped {
                    index,
                    reason: format!("refused: {}", e.message()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    skipped.sort_by_key(|s| s.index);
    Ok(json(StatusCode::OK, &ImportAnswer { imported, skipped }))
}
