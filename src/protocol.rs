//! Wire types of the public contract (`docs/protocol.md`): pure serde, no I/O.
//!
//! Everything a client can see is defined here, so a change of shape is a change
//! of this file. Field names follow the contract (camelCase); optional fields are
//! omitted rather than sent as `null`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

fn is_false(b: &bool) -> bool {
    !*b
}

/// Who wrote something. Embedded in chats and comments so a client never needs
/// a second lookup to render an author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: String,
    pub user: User,
    pub text: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
}

/// One marker with its conversation. Does not carry its urlId: snapshots and
/// events name it once at the top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: String,
    pub x: f64,
    pub y: f64,
    pub resolved: bool,
    pub user: User,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    pub comments: Vec<Comment>,
}

/// What happened to an existing chat (`image-chat-updated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The three logged event kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    NewImageChat {
        chat: Chat,
    },
    #[serde(rename_all = "camelCase")]
    ImageChatUpdated {
        chat_id: String,
        change: Change,
    },
    #[serde(rename_all = "camelCase")]
    DeletedImageChat {
        chat_id: String,
    },
}

/// A logged event as sent to clients and kept in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(flatten)]
    pub kind: EventKind,
    pub url_id: String,
    pub seq: u64,
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
        seq: Option<u64>,
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
        seq: u64,
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
}

impl ServerMessage<'_> {
    /// Serializes to the bytes of one text frame.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serializing these plain structs cannot fail: no maps with non-string keys.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

// ----------------------------------------------------------------- REST ----

/// `{"error": {...}}`, the one error shape of the REST API.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    pub date: String,
    pub pub_sub_message_count: u64,
    pub pub_sub_bandwidth: u64,
    pub conversation_create_count: u64,
    pub comment_create_count: u64,
    pub peak_connections: u64,
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
            seq: 3,
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
                seq: Some(4)
            })
        );
        let e = ClientMessage::parse(r#"{"type":"subscribe","id":7,"urlId":3}"#).unwrap_err();
        assert_eq!(e.id, Some(Value::from(7)));
        assert!(ClientMessage::parse("{nope").is_err());
        assert!(ClientMessage::parse("[]").is_err());
        assert!(ClientMessage::parse(r#"{"type":"subscribe","urlId":"u","seq":-1}"#).is_err());
    }
}
