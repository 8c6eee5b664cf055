//! Chats as annotations: one `commenting` annotation per chat (its first
//! comment as the body), one `replying` annotation per later comment.

use serde_json::{json, Map, Value};

use super::{encode, svg, IIIF_CONTEXT, MEDIA_FRAGMENTS, W3C_CONTEXT};
use crate::ids::TenantId;
use crate::protocol::{Chat, Comment, Shape, User};

/// Which vocabulary the annotations are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// W3C Web Annotation (`application/ld+json; profile="…anno.jsonld"`).
    W3c,
    /// IIIF Presentation 3: the target is a `SpecificResource` of an `Image`.
    Iiif,
}

impl Format {
    pub fn context(self) -> &'static str {
        match self {
            Format::W3c => W3C_CONTEXT,
            Format::Iiif => IIIF_CONTEXT,
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> String {
        format!("application/ld+json; profile=\"{}\"", self.context())
    }
}

/// Writes one image's chats as annotations.
pub struct Exporter<'a> {
    /// The server's public origin, e.g. `https://chat.example.com`, without
    /// a trailing slash: every annotation `id` is a URL under it.
    pub base: &'a str,
    pub tenant: &'a TenantId,
    pub url_id: &'a str,
    /// The image's own URL, when a client has sent one.
    pub image_url: Option<&'a str>,
    pub format: Format,
}

impl Exporter<'_> {
    /// The annotation `id` of a chat: `{base}/api/v1/annotations/{chatId}`.
    pub fn chat_id(&self, chat: &Chat) -> String {
        format!("{}/api/v1/annotations/{}", self.base, encode(&chat.id))
    }

    /// The annotation `id` of a reply.
    pub fn reply_id(&self, chat: &Chat, comment: &Comment) -> String {
        format!("{}/comments/{}", self.chat_id(chat), encode(&comment.id))
    }

    /// What the annotations are about: the image's URL when known, else the
    /// urlId when it is an absolute http(s) URL, else
    /// `urn:imagechat:{tenantId}:{percent-encoded urlId}`.
    pub fn source(&self) -> String {
        if let Some(u) = self.image_url {
            return u.to_owned();
        }
        if crate::domain::validate::web_url("urlId", self.url_id).is_ok() {
            return self.url_id.to_owned();
        }
        format!("urn:imagechat:{}:{}", self.tenant, encode(self.url_id))
    }

    /// The page's own `id`: the URL that gives it.
    fn page_id(&self) -> String {
        let iiif = match self.format {
            Format::Iiif => "&format=iiif",
            Format::W3c => "",
        };
        format!(
            "{}/api/v1/annotations?urlId={}{iiif}",
            self.base,
            encode(self.url_id)
        )
    }

    /// Every chat and comment of the image, oldest first, as one
    /// `AnnotationPage` of the collection of the image's annotations.
    pub fn page(&self, chats: &[Chat]) -> Value {
        let mut items: Vec<(u64, i64, Value)> = Vec::new();
        for chat in chats {
            let Some((first, replies)) = chat.comments.split_first() else {
                continue;
            };
            items.push((order(first), first.created_at, self.chat(chat, false)));
            for c in replies {
                items.push((order(c), c.created_at, self.reply(chat, c, false)));
            }
        }
        // Comment ids are the seq of the event that made them: their order
        // is the order things were written.
        items.sort_by_key(|(seq, at, _)| (*seq, *at));
        let total = items.len();
        let page_id = self.page_id();
        let collection = json!({
            "id": format!("{page_id}#collection"),
            "type": "AnnotationCollection",
            "total": total,
        });
        let part_of = match self.format {
            Format::W3c => collection,
            Format::Iiif => Value::Array(vec![collection]),
        };
        json!({
            "@context": self.format.context(),
            "id": page_id,
            "type": "AnnotationPage",
            "partOf": part_of,
            "startIndex": 0,
            "items": items.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
        })
    }

    /// A chat as a `commenting` annotation; `alone` adds its `@context`.
    pub fn chat(&self, chat: &Chat, alone: bool) -> Value {
        let mut a = Map::new();
        if alone {
            a.insert("@context".into(), self.format.context().into());
        }
        a.insert("id".into(), self.chat_id(chat).into());
        a.insert("type".into(), "Annotation".into());
        a.insert("motivation".into(), "commenting".into());
        let mut body = Vec::new();
        if let Some(first) = chat.comments.first() {
            body.push(text_body(&first.text, "commenting"));
            body.extend(self.image_bodies(first));
        }
        if chat.resolved {
            body.push(json!({"type": "TextualBody", "purpose": "tagging", "value": "resolved"}));
        }
        a.insert("body".into(), Value::Array(body));
        a.insert("target".into(), self.target(chat));
        a.insert("creator".into(), self.creator(&chat.user));
        a.insert("created".into(), iso(chat.created_at).into());
        if let Some(m) = chat.updated_at {
            a.insert("modified".into(), iso(m).into());
        }
        Value::Object(a)
    }

    /// A later comment as a `replying` annotation whose target is its
    /// chat's annotation.
    pub fn reply(&self, chat: &Chat, c: &Comment, alone: bool) -> Value {
        let mut a = Map::new();
        if alone {
            a.insert("@context".into(), self.format.context().into());
        }
        a.insert("id".into(), self.reply_id(chat, c).into());
        a.insert("type".into(), "Annotation".into());
        a.insert("motivation".into(), "replying".into());
        let images = self.image_bodies(c);
        if images.is_empty() {
            a.insert("body".into(), text_body(&c.text, "replying"));
        } else {
            let mut body = vec![text_body(&c.text, "replying")];
            body.extend(images);
            a.insert("body".into(), Value::Array(body));
        }
        a.insert("target".into(), self.chat_id(chat).into());
        a.insert("creator".into(), self.creator(&c.user));
        a.insert("created".into(), iso(c.created_at).into());
        if let Some(m) = c.edited_at {
            a.insert("modified".into(), iso(m).into());
        }
        Value::Object(a)
    }

    /// A comment's attachments as external web resources (W3C Web
    /// Annotation Data Model §3.2.1): the image's absolute URL, its class
    /// and media type.
    fn image_bodies(&self, c: &Comment) -> Vec<Value> {
        c.attachments
            .iter()
            .map(|a| {
                let id = if a.url.starts_with('/') {
                    format!("{}{}", self.base, a.url)
                } else {
                    a.url.clone()
                };
                json!({"id": id, "type": "Image", "format": a.content_type})
            })
            .collect()
    }

    fn target(&self, chat: &Chat) -> Value {
        let selector = selector(chat);
        match self.format {
            Format::W3c => json!({"source": self.source(), "selector": selector}),
            Format::Iiif => json!({
                "type": "SpecificResource",
                "source": {"id": self.source(), "type": "Image"},
                "selector": selector,
            }),
        }
    }

    /// A person's `id` must be an IRI: `urn:imagechat:{tenant}:user:{id}`.
    fn creator(&self, u: &User) -> Value {
        json!({
            "id": format!("urn:imagechat:{}:user:{}", self.tenant, encode(&u.id)),
            "type": "Person",
            "name": u.name,
        })
    }
}

fn order(c: &Comment) -> u64 {
    c.id.parse().unwrap_or(u64::MAX)
}

fn text_body(text: &str, purpose: &str) -> Value {
    json!({"type": "TextualBody", "value": text, "format": "text/plain", "purpose": purpose})
}

/// A pin and a rect are Media Fragments (`xywh=percent:…`); the other
/// shapes are an SVG document in the same percentage units.
fn selector(chat: &Chat) -> Value {
    let fragment = |x: f64, y: f64, w: f64, h: f64| {
        json!({
            "type": "FragmentSelector",
            "conformsTo": MEDIA_FRAGMENTS,
            "value": format!("xywh=percent:{x},{y},{w},{h}"),
        })
    };
    match &chat.shape {
        None => fragment(chat.x, chat.y, 0.0, 0.0),
        Some(Shape::Rect { x, y, w, h }) => fragment(*x, *y, *w, *h),
        Some(shape) => json!({"type": "SvgSelector", "value": svg::write(shape)}),
    }
}

/// Milliseconds since the epoch as ISO 8601 in UTC (`2026-11-29T22:32:47.123Z`).
pub fn iso(ms: i64) -> String {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}
