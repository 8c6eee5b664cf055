//! Wire types of the public contract (`docs/protocol.md`): pure serde, no I/O.
//!
//! Everything a client can see is defined here, so a change of shape is a change
//! of this file. Field names follow the contract (camelCase); optional fields are
//! omitted rather than sent as `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ids::{ChatId, Seq, TenantId};

fn is_false(b: &bool) -> bool {
    !*b
}

/// Who wrote something. Embedded in chats and comments so a client never needs
/// a second lookup to render an author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: String,
    pub user: User,
    pub text: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Images attached to the comment (contract §14), at most 4; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Users of the tenant's directory the comment mentions (contract
    /// §13), at most 10; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<User>,
}

/// An upload attached to a comment, as clients show it (contract §14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The upload's id.
    pub id: String,
    /// Where it is served: `{--public-url}/api/v1/uploads/{id}`, or the
    /// root-relative `/api/v1/uploads/{id}` without `--public-url` (resolve
    /// it against the server's origin).
    pub url: String,
    /// `image/png`, `image/jpeg`, `image/webp` or `image/gif`.
    pub content_type: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

/// A stored upload (contract §14): an attachment's fields and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    #[serde(flatten)]
    pub attachment: Attachment,
    /// Bytes stored (metadata removed), as counted in `uploadBytes`.
    pub bytes: u64,
}

/// `POST /api/v1/uploads`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadAnswer {
    pub upload: Upload,
}

/// A region of the image (contract §10), in percent of the image's width
/// (`x`…) and height (`y`…), each within 0..=100 and rounded to 3 decimals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Shape {
    /// `w`, `h` > 0; `x + w` <= 100; `y + h` <= 100.
    Rect { x: f64, y: f64, w: f64, h: f64 },
    /// `rx`, `ry` > 0; the ellipse lies inside the image (it may touch the edges).
    Ellipse { cx: f64, cy: f64, rx: f64, ry: f64 },
    /// 3..=64 points `[x, y]`.
    Polygon {
        #[schema(value_type = Vec<Vec<f64>>, min_items = 3, max_items = 64)]
        points: Vec<[f64; 2]>,
    },
    /// From (`x1`, `y1`) to the head at (`x2`, `y2`); the two ends differ.
    Arrow { x1: f64, y1: f64, x2: f64, y2: f64 },
}

/// One marker with its conversation. Does not carry its urlId: snapshots and
/// events name it once at the top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: ChatId,
    pub x: f64,
    pub y: f64,
    pub resolved: bool,
    /// The region the chat is about; absent for a pin at (`x`, `y`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Shape>,
    pub user: User,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    pub comments: Vec<Comment>,
}

/// What happened to an existing chat (`image-chat-updated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    CommentAdded {
        comment: Comment,
    },
    CommentEdited {
        comment: Comment,
    },
    #[serde(rename_all = "camelCase")]
    CommentDeleted {
        comment_id: String,
    },
    Moved {
        x: f64,
        y: f64,
    },
    Resolved {
        resolved: bool,
    },
    /// A new shape, or `null`: the chat is a pin again.
    Reshaped {
        shape: Option<Shape>,
    },
}

/// The three logged event kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    NewImageChat {
        chat: Chat,
    },
    #[serde(rename_all = "camelCase")]
    ImageChatUpdated {
        chat_id: ChatId,
        change: Change,
    },
    #[serde(rename_all = "camelCase")]
    DeletedImageChat {
        chat_id: ChatId,
    },
}

/// A logged event as sent to clients and kept in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(flatten)]
    pub kind: EventKind,
    pub url_id: String,
    pub seq: Seq,
    pub broadcast_id: Option<String>,
    pub at: i64,
}

// ------------------------------------------------------------ WebSocket ----

/// A client message after its `type` was read. `id` is echoed verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Hello {
        token: String,
    },
    Subscribe {
        id: Option<Value>,
        url_id: String,
        epoch: Option<String>,
        seq: Option<Seq>,
    },
    Unsubscribe {
        id: Option<Value>,
        url_id: String,
    },
    Ping,
}

/// Why a client frame could not be understood; carries the request id when
/// one could be read so the error can name it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadMessage {
    pub id: Option<Value>,
    pub message: String,
}

impl ClientMessage {
    /// Parses one text frame. Unknown fields are ignored; `null` means absent.
    pub fn parse(text: &str) -> Result<ClientMessage, BadMessage> {
        let value: Value = serde_json::from_str(text).map_err(|_| BadMessage {
            id: None,
            message: "frame is not JSON".into(),
        })?;
        let Value::Object(map) = value else {
            return Err(BadMessage {
                id: None,
                message: "a message is a JSON object".into(),
            });
        };
        let id = map.get("id").filter(|v| !v.is_null()).cloned();
        let bad = |message: &str| BadMessage {
            id: id.clone(),
            message: message.into(),
        };
        let string = |key: &str| -> Result<Option<String>, BadMessage> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("{key} must be a string"))),
            }
        };
        match map.get("type").and_then(Value::as_str) {
            Some("hello") => Ok(ClientMessage::Hello {
                token: string("token")?.ok_or_else(|| bad("hello needs a token"))?,
            }),
            Some("subscribe") => {
                let seq = match map.get("seq") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .map(Seq)
                            .ok_or_else(|| bad("seq must be a non-negative integer"))?,
                    ),
                };
                Ok(ClientMessage::Subscribe {
                    url_id: string("urlId")?.ok_or_else(|| bad("subscribe needs a urlId"))?,
                    epoch: string("epoch")?,
                    seq,
                    id,
                })
            }
            Some("unsubscribe") => Ok(ClientMessage::Unsubscribe {
                url_id: string("urlId")?.ok_or_else(|| bad("unsubscribe needs a urlId"))?,
                id,
            }),
            Some("ping") => Ok(ClientMessage::Ping),
            Some(other) => Err(bad(&format!("unknown message type {other:?}"))),
            None => Err(bad("a message needs a type")),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    Welcome {
        user: &'a User,
        moderator: bool,
        heartbeat: u64,
    },
    #[serde(rename_all = "camelCase")]
    Subscribed {
        id: &'a Option<Value>,
        url_id: &'a str,
        epoch: &'a str,
        seq: Seq,
        recovered: bool,
        viewers: usize,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribed {
        id: &'a Option<Value>,
        url_id: &'a str,
    },
    Pong,
    #[serde(rename_all = "camelCase")]
    Presence {
        url_id: &'a str,
        viewers: usize,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: &'a Option<Value>,
        code: &'a str,
        message: &'a str,
    },
    /// A new notification of this connection's user (contract §13): not
    /// logged, no seq; `unread` counts the user's unread notifications.
    Notification {
        notification: &'a Notification,
        unread: u64,
    },
    /// The user's unread count after some were marked read.
    Notifications {
        unread: u64,
    },
}

impl ServerMessage<'_> {
    /// Serializes to the bytes of one text frame.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serializing these plain structs cannot fail: no maps with non-string keys.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Every close code the server sends: RFC 6455 §7.4.1 and the contract's
/// own (§7). `Silent` is not sent: it ends a connection without a close
/// frame (the peer is gone or broke the framing beyond a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Silent,
    Normal,
    GoingAway,
    ProtocolError,
    InvalidPayload,
    PolicyViolation,
    MessageTooBig,
    InternalError,
    TryAgainLater,
    /// A bad or missing session at `hello`, or no `hello` in time.
    Unauthorized,
    /// The origin or the tenant's policy refuses the connection.
    Forbidden,
    /// The connection's outbound queue overflowed.
    SlowConsumer,
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        match c {
            CloseCode::Silent => 0,
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Unauthorized => 4401,
            CloseCode::Forbidden => 4403,
            CloseCode::SlowConsumer => 4408,
        }
    }
}

// ----------------------------------------------------------------- REST ----

/// `{"error": {...}}`, the one error shape of the REST API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable machine-readable code: `invalid_input`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `history_gone`,
    /// `payload_too_large`, `request_timeout`, `headers_too_large`, `rate_limited`, `internal`,
    /// `unavailable`.
    pub code: &'a str,
    pub message: &'a str,
    /// The request field that was refused, for `invalid_input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

/// The signed SSO payload of protocol §3.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoRequest {
    /// Base64 of the user's JSON (`id`, `username`, `avatar`?, `isModerator`?…).
    #[serde(rename = "userDataJSONBase64")]
    pub user_data_json_base64: String,
    /// `hex(HMAC-SHA256(tenant secret, decimal(timestamp) + userDataJSONBase64))`.
    pub verification_hash: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    pub tenant_id: String,
    /// Absent or `null`: an anonymous session, if the tenant allows one.
    pub sso: Option<SsoRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAnswer<'a> {
    /// Bearer token for REST and the WebSocket `hello`.
    pub token: String,
    #[schema(value_type = User)]
    pub user: &'a User,
    pub moderator: bool,
    pub can_write: bool,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
    /// The largest upload this server takes, in bytes (`--upload-max-bytes`),
    /// so a client can refuse a larger file before sending it.
    pub upload_max_bytes: u64,
}

/// `POST /api/v1/chats`: a marker and its first comment.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateChatRequest {
    /// The image's id: 1..=1024 UTF-8 bytes, no control characters.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\x00-\x1f\x7f]+$")]
    pub url_id: String,
    /// Percent of the picture's width, 0..=100.
    #[schema(minimum = 0, maximum = 100)]
    pub x: f64,
    /// Percent of the picture's height, 0..=100.
    #[schema(minimum = 0, maximum = 100)]
    pub y: f64,
    /// 1..=2000 characters after trimming.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub text: String,
    /// A region; without one the chat is a pin at (`x`, `y`).
    pub shape: Option<Shape>,
    /// Upload ids of the tenant to attach to the first comment, at most 4.
    #[schema(max_items = 4)]
    pub attachments: Option<Vec<String>>,
    /// Ids of users of the tenant's directory the comment mentions, at
    /// most 10 (contract §13).
    #[schema(max_items = 10)]
    pub mentions: Option<Vec<String>>,
    /// The absolute http(s) URL the image was loaded from (at most 2048
    /// bytes); the image keeps the latest one sent.
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub image_url: Option<String>,
    /// The page the image is shown on, without its fragment (at most 2048 bytes).
    #[schema(max_length = 2048, pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub page_url: Option<String>,
    /// Echoed in the event so the sending tab can skip it.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub broadcast_id: Option<String>,
}

/// `PATCH /api/v1/chats/{chatId}`: move (x and y together), reshape,
/// resolve, or any of them together; at least one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateChatRequest {
    #[schema(minimum = 0, maximum = 100)]
    pub x: Option<f64>,
    #[schema(minimum = 0, maximum = 100)]
    pub y: Option<f64>,
    pub resolved: Option<bool>,
    /// A new shape, or `null` to make the chat a pin again; absent: unchanged.
    #[schema(nullable)]
    #[serde(default)]
    pub shape: Option<Option<Shape>>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub broadcast_id: Option<String>,
}

/// A comment's text: reply or edit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentRequest {
    /// 1..=2000 characters after trimming.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub text: String,
    /// Upload ids of the tenant, at most 4. On an edit, absent keeps the
    /// comment's attachments and `[]` removes them.
    #[schema(max_items = 4)]
    pub attachments: Option<Vec<String>>,
    /// Ids of users of the tenant's directory the comment mentions, at
    /// most 10 (contract §13). On an edit, absent keeps the comment's
    /// mentions; users it newly mentions are notified.
    #[schema(max_items = 10)]
    pub mentions: Option<Vec<String>>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub broadcast_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotAnswer<'a> {
    pub url_id: &'a str,
    pub epoch: &'a str,
    /// The log position this snapshot reflects (0: never written).
    pub seq: Seq,
    /// The latest URL the image was loaded from, as a client sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The latest page the image was shown on, as a client sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    /// Oldest first.
    pub chats: Vec<Chat>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsAnswer {
    pub url_id: String,
    pub epoch: String,
    /// The image's latest seq: more events exist when it is beyond the last one here.
    pub seq: Seq,
    /// At most 1000, in seq order.
    pub events: Vec<Event>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatAnswer {
    /// `null` only in a reply to a change that deleted it.
    pub chat: Option<Chat>,
    pub seq: Seq,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentAnswer {
    pub comment: Option<Comment>,
    pub seq: Seq,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeqAnswer {
    /// The image's latest seq after the change.
    pub seq: Seq,
}

/// `POST /api/v1/admin/tenants`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTenantRequest {
    /// Lower-case letters, digits and dashes.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub tenant_id: String,
    /// Allowed browser origins; absent or empty: any.
    pub origins: Option<Vec<String>>,
    /// `none` (default), `read` or `write`: what users without SSO may do.
    #[schema(pattern = "^(none|read|write)$")]
    pub anonymous: Option<String>,
    /// Generated when absent.
    #[schema(min_length = 1, max_length = 256)]
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantCreated {
    pub tenant_id: TenantId,
    pub secret: String,
}

/// `POST /api/v1/tenant/login`: the dashboard's sign-in.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub tenant_id: String,
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantAnswer {
    pub tenant_id: TenantId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Empty {}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageAnswer {
    pub tenant_id: TenantId,
    /// One entry per day of the range, days without activity included.
    pub days: Vec<UsageDay>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    /// YYYY-MM-DD (UTC).
    pub date: String,
    pub pub_sub_message_count: u64,
    pub pub_sub_bandwidth: u64,
    pub conversation_create_count: u64,
    pub comment_create_count: u64,
    pub peak_connections: u64,
    /// Bytes of uploads stored that day (contract §14).
    pub upload_bytes: u64,
}

/// This node's open connections and subscriptions of the tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveAnswer {
    pub connections: u64,
    pub subscriptions: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    pub url_id: String,
    pub chat_count: u64,
    /// Milliseconds since the Unix epoch.
    pub last_activity: i64,
    pub seq: Seq,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImagesAnswer {
    /// Latest activity first, at most 500.
    pub images: Vec<ImageSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Each part is `ok` or `unavailable`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub store: &'static str,
    pub broker: &'static str,
    /// The upload storage (`--uploads`) takes writes.
    pub uploads: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serializes_with_the_contract_names() {
        let ev = Event {
            kind: EventKind::ImageChatUpdated {
                chat_id: "c1".into(),
                change: Change::CommentDeleted {
                    comment_id: "k".into(),
                },
            },
            url_id: "u".into(),
            seq: Seq(3),
            broadcast_id: None,
            at: 5,
        };
        let v: Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "image-chat-updated");
        assert_eq!(v["chatId"], "c1");
        assert_eq!(v["change"]["op"], "comment-deleted");
        assert_eq!(v["change"]["commentId"], "k");
        assert_eq!(v["broadcastId"], Value::Null);
        assert_eq!(v["urlId"], "u");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn client_messages_parse_and_errors_keep_the_id() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"ping","extra":1}"#),
            Ok(ClientMessage::Ping)
        );
        let m = ClientMessage::parse(
            r#"{"type":"subscribe","id":"r1","urlId":"u","seq":4,"epoch":null}"#,
        );
        assert_eq!(
            m,
            Ok(ClientMessage::Subscribe {
                id: Some(Value::from("r1")),
                url_id: "u".into(),
                epoch: None,
                seq: Some(Seq(4))
            })
        );
        let e = ClientMessage::parse(r#"{"type":"subscribe","id":7,"urlId":3}"#).unwrap_err();
        assert_eq!(e.id, Some(Value::from(7)));
        assert!(ClientMessage::parse("{nope").is_err());
        assert!(ClientMessage::parse("[]").is_err());
        assert!(ClientMessage::parse(r#"{"type":"subscribe","urlId":"u","seq":-1}"#).is_err());
    }
}

/// Why a user is notified of a comment (contract §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotificationReason {
    /// The comment mentions the user.
    Mention,
    /// The user wrote in or follows the chat.
    Reply,
}

impl NotificationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationReason::Mention => "mention",
            NotificationReason::Reply => "reply",
        }
    }
}

/// One notification of one user, the same object over REST, the WebSocket
/// and webhooks (contract §13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Decimal; later notifications have larger ids (`?before=` pages by it).
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub reason: NotificationReason,
    pub url_id: String,
    #[schema(value_type = String)]
    pub chat_id: ChatId,
    pub comment_id: String,
    /// The comment's author.
    pub by: User,
    /// The comment's first 140 characters.
    pub excerpt: String,
    pub read: bool,
}

/// `GET /api/v1/notifications`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationList {
    /// Newest first, at most 50.
    pub notifications: Vec<Notification>,
    /// The user's unread notifications, all pages counted.
    pub unread: u64,
}

/// `POST /api/v1/notifications/read`: which to mark read (all when absent).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ReadRequest {
    /// Notification ids of this user, at most 1000.
    #[schema(max_items = 1000)]
    pub ids: Option<Vec<String>>,
}

/// The user's unread notifications after a change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnreadAnswer {
    pub unread: u64,
}

/// `GET /api/v1/chats/{chatId}/follow`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FollowingAnswer {
    pub following: bool,
}

/// `POST /api/v1/tenant/webhooks` (contract §12).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct WebhookRequest {
    /// An absolute http(s) URL, at most 2048 bytes, of a globally
    /// routable host.
    #[schema(max_length = 2048)]
    pub url: String,
    /// The event types to deliver; absent: all four.
    pub events: Option<Vec<String>>,
}

/// A new endpoint, with its signing secret (shown only here).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookCreated {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `whsec_` and the base64 of the signing key.
    pub secret: String,
}

/// One endpoint, without its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// `GET /api/v1/tenant/webhooks`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookInfo>,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryInfo {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The message's `webhook-id`.
    pub webhook_id: String,
    /// The answer's HTTP status; `null` when there was none.
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// `GET /api/v1/tenant/webhooks/{id}/deliveries`: newest first, at most 100.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryInfo>,
}
