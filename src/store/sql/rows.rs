//! Rows to wire types and back: reading a chat with its comments, the
//! image's seq and lock, and the table changes each logged event stands for.
//! Everything here runs on a connection inside the caller's transaction,
//! on either driver (see `conn.rs`).

use super::conn::{args, Cols, Conn};
use crate::domain::{ChatId, Seq};
use crate::protocol::{Attachment, Change, Chat, Comment, EventKind, Shape, User};
use crate::store::{Result, StoreError};

pub(super) fn user_of(json: &str) -> Result<User> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("corrupt user row: {e}")))
}

pub(super) fn user_json(u: &User) -> String {
    serde_json::to_string(u).unwrap_or_default()
}

fn shape_of(json: Option<String>) -> Result<Option<Shape>> {
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| StoreError::Unavailable(format!("corrupt shape row: {e}")))
    })
    .transpose()
}

fn attachments_of(json: Option<String>) -> Result<Vec<Attachment>> {
    match json {
        None => Ok(Vec::new()),
        Some(j) => serde_json::from_str(&j)
            .map_err(|e| StoreError::Unavailable(format!("corrupt attachments row: {e}"))),
    }
}

fn attachments_json(a: &[Attachment]) -> Option<String> {
    if a.is_empty() {
        return None;
    }
    serde_json::to_string(a).ok()
}

/// Records which uploads a comment attaches (replacing what it attached
/// before), so the sweep keeps them.
async fn set_refs<C: Conn>(
    c: &mut C,
    tenant: &str,
    chat_id: &str,
    comment_id: &str,
    attachments: &[Attachment],
    replacing: bool,
) -> Result<()> {
    if replacing {
        c.exec(
            "DELETE FROM upload_refs WHERE tenant_id = $1 AND chat_id = $2 AND comment_id = $3",
            &args![tenant, chat_id, comment_id],
        )
        .await?;
    }
    for a in attachments {
        c.exec(
            "INSERT INTO upload_refs (tenant_id, upload_id, chat_id, comment_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &args![tenant, &a.id, chat_id, comment_id],
        )
        .await?;
    }
    Ok(())
}

fn mentions_of(json: Option<String>) -> Result<Vec<User>> {
    match json {
        None => Ok(Vec::new()),
        Some(j) => serde_json::from_str(&j)
            .map_err(|e| StoreError::Unavailable(format!("corrupt mentions row: {e}"))),
    }
}

fn mentions_json(m: &[User]) -> Option<String> {
    if m.is_empty() {
        return None;
    }
    serde_json::to_string(m).ok()
}

fn shape_json(s: &Option<Shape>) -> Option<String> {
    s.as_ref().and_then(|s| serde_json::to_string(s).ok())
}

pub(super) fn chat_of(row: &impl Cols) -> Result<Chat> {
    Ok(Chat {
        id: ChatId::from(row.text("id")?),
        x: row.real("x")?,
        y: row.real("y")?,
        resolved: row.int("resolved")? != 0,
        shape: shape_of(row.opt_text("shape")?)?,
        user: user_of(&row.text("user_json")?)?,
        created_at: row.int("created_at")?,
        updated_at: row.opt_int("updated_at")?,
        comments: Vec::new(),
    })
}

pub(super) fn comment_of(row: &impl Cols) -> Result<Comment> {
    Ok(Comment {
        id: row.text("id")?,
        user: user_of(&row.text("user_json")?)?,
        text: row.text("text")?,
        created_at: row.int("created_at")?,
        edited_at: row.opt_int("edited_at")?,
        attachments: attachments_of(row.opt_text("attachments")?)?,
        mentions: mentions_of(row.opt_text("mentions")?)?,
    })
}

pub(super) const CHAT_COLUMNS: &str =
    "id, url_id, x, y, resolved, shape, user_json, created_at, updated_at";
pub(super) const COMMENT_COLUMNS: &str =
    "id, chat_id, user_json, text, created_at, edited_at, attachments, mentions";

/// The statements that read chats and comments (built once).
pub(super) struct Queries {
    pub chat: String,
    pub chat_comments: String,
    pub image_chats: String,
    pub image_comments: String,
}

pub(super) fn queries() -> &'static Queries {
    static Q: std::sync::OnceLock<Queries> = std::sync::OnceLock::new();
    Q.get_or_init(|| Queries {
        chat: format!("SELECT {CHAT_COLUMNS} FROM chats WHERE tenant_id = $1 AND id = $2"),
        chat_comments: format!(
            "SELECT {COMMENT_COLUMNS} FROM comments WHERE tenant_id = $1 AND chat_id = $2 ORDER BY ord, created_at"
        ),
        image_chats: format!(
            "SELECT {CHAT_COLUMNS} FROM chats WHERE tenant_id = $1 AND url_id = $2 ORDER BY ord"
        ),
        image_comments: format!(
            "SELECT {COMMENT_COLUMNS} FROM comments WHERE tenant_id = $1 AND url_id = $2 ORDER BY ord, created_at"
        ),
    })
}

/// Loads one chat with its comments, and its urlId.
pub(super) async fn load_chat<C: Conn>(
    c: &mut C,
    tenant: &str,
    chat_id: &str,
) -> Result<Option<(String, Chat)>> {
    let q = queries();
    let Some(row) = c.fetch_optional(&q.chat, &args![tenant, chat_id]).await? else {
        return Ok(None);
    };
    let url_id = row.text("url_id")?;
    let mut chat = chat_of(&row)?;
    let rows = c
        .fetch_all(&q.chat_comments, &args![tenant, chat_id])
        .await?;
    chat.comments = rows.iter().map(comment_of).collect::<Result<_>>()?;
    Ok(Some((url_id, chat)))
}

pub(super) async fn image_seq<C: Conn>(c: &mut C, tenant: &str, url_id: &str) -> Result<Seq> {
    let row = c
        .fetch_optional(
            "SELECT seq FROM images WHERE tenant_id = $1 AND url_id = $2",
            &args![tenant, url_id],
        )
        .await?;
    Ok(Seq::from_sql(match row {
        Some(r) => r.int("seq")?,
        None => 0,
    }))
}

/// The image's seq and the URLs it was last seen at.
pub(super) async fn image_row<C: Conn>(
    c: &mut C,
    tenant: &str,
    url_id: &str,
) -> Result<(Seq, Option<String>, Option<String>)> {
    let row = c
        .fetch_optional(
            "SELECT seq, image_url, page_url FROM images WHERE tenant_id = $1 AND url_id = $2",
            &args![tenant, url_id],
        )
        .await?;
    match row {
        None => Ok((Seq(0), None, None)),
        Some(r) => Ok((
            Seq::from_sql(r.int("seq")?),
            r.opt_text("image_url")?,
            r.opt_text("page_url")?,
        )),
    }
}

/// Makes sure the image has a row, locks it for this transaction and
/// returns its seq.
pub(super) async fn lock_image<C: Conn>(
    c: &mut C,
    tenant: &str,
    url_id: &str,
    now: i64,
) -> Result<Seq> {
    // One statement: creates the row if needed and, either way, writes it
    // (which is what takes the lock) and returns its seq.
    let row = c
        .fetch_optional(
            "INSERT INTO images (tenant_id, url_id, seq, last_activity) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (tenant_id, url_id) DO UPDATE SET seq = images.seq RETURNING seq",
            &args![tenant, url_id, now],
        )
        .await?
        .ok_or_else(|| StoreError::Unavailable("the image row was not returned".into()))?;
    Ok(Seq::from_sql(row.int("seq")?))
}

async fn insert_comment<C: Conn>(
    c: &mut C,
    tenant: &str,
    chat_id: &str,
    url_id: &str,
    seq: Seq,
    k: &Comment,
) -> Result<()> {
    let user = user_json(&k.user);
    let attachments = attachments_json(&k.attachments);
    let mentions = mentions_json(&k.mentions);
    c.exec(
        "INSERT INTO comments (tenant_id, id, chat_id, url_id, ord, user_id, user_json, text, created_at, edited_at, attachments, mentions) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &args![
            tenant,
            &k.id,
            chat_id,
            url_id,
            seq.to_sql(),
            &k.user.id,
            &user,
            &k.text,
            k.created_at,
            k.edited_at,
            attachments.as_deref(),
            mentions.as_deref(),
        ],
    )
    .await?;
    set_refs(c, tenant, chat_id, &k.id, &k.attachments, false).await
}

/// Writes the table changes one event stands for.
pub(super) async fn write_event<C: Conn>(
    c: &mut C,
    tenant: &str,
    url_id: &str,
    seq: Seq,
    kind: &EventKind,
    at: i64,
) -> Result<()> {
    match kind {
        EventKind::NewImageChat { chat } => {
            let shape = shape_json(&chat.shape);
            let user = user_json(&chat.user);
            c.exec(
                "INSERT INTO chats (tenant_id, id, url_id, ord, x, y, resolved, shape, user_id, user_json, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &args![
                    tenant,
                    chat.id.as_str(),
                    url_id,
                    seq.to_sql(),
                    chat.x,
                    chat.y,
                    i64::from(chat.resolved),
                    shape.as_deref(),
                    &chat.user.id,
                    &user,
                    chat.created_at,
                    chat.updated_at,
                ],
            )
            .await?;
            for k in &chat.comments {
                insert_comment(c, tenant, &chat.id, url_id, seq, k).await?;
            }
        }
        EventKind::DeletedImageChat { chat_id } => {
            let a = args![tenant, chat_id.as_str()];
            c.exec(
                "DELETE FROM upload_refs WHERE tenant_id = $1 AND chat_id = $2",
                &a,
            )
            .await?;
            c.exec(
                "DELETE FROM comments WHERE tenant_id = $1 AND chat_id = $2",
                &a,
            )
            .await?;
            c.exec("DELETE FROM chats WHERE tenant_id = $1 AND id = $2", &a)
                .await?;
            c.exec(
                "DELETE FROM chat_followers WHERE tenant_id = $1 AND chat_id = $2",
                &a,
            )
            .await?;
        }
        EventKind::ImageChatUpdated { chat_id, change } => {
            let chat_id = chat_id.as_str();
            match change {
                Change::CommentAdded { comment } => {
                    insert_comment(c, tenant, chat_id, url_id, seq, comment).await?
                }
                Change::CommentEdited { comment } => {
                    let attachments = attachments_json(&comment.attachments);
                    let mentions = mentions_json(&comment.mentions);
                    c.exec(
                        "UPDATE comments SET text = $1, edited_at = $2, attachments = $3, mentions = $7 \
                         WHERE tenant_id = $4 AND chat_id = $5 AND id = $6",
                        &args![
                            &comment.text,
                            comment.edited_at,
                            attachments.as_deref(),
                            tenant,
                            chat_id,
                            &comment.id,
                            mentions.as_deref(),
                        ],
                    )
                    .await?;
                    set_refs(c, tenant, chat_id, &comment.id, &comment.attachments, true).await?;
                }
                Change::CommentDeleted { comment_id } => {
                    set_refs(c, tenant, chat_id, comment_id, &[], true).await?;
                    c.exec(
                        "DELETE FROM comments WHERE tenant_id = $1 AND chat_id = $2 AND id = $3",
                        &args![tenant, chat_id, comment_id],
                    )
                    .await?;
                }
                Change::Moved { x, y } => {
                    c.exec(
                        "UPDATE chats SET x = $1, y = $2 WHERE tenant_id = $3 AND id = $4",
                        &args![*x, *y, tenant, chat_id],
                    )
                    .await?;
                }
                Change::Reshaped { shape } => {
                    let shape = shape_json(shape);
                    c.exec(
                        "UPDATE chats SET shape = $1 WHERE tenant_id = $2 AND id = $3",
                        &args![shape.as_deref(), tenant, chat_id],
                    )
                    .await?;
                }
                Change::Resolved { resolved } => {
                    c.exec(
                        "UPDATE chats SET resolved = $1 WHERE tenant_id = $2 AND id = $3",
                        &args![i64::from(*resolved), tenant, chat_id],
                    )
                    .await?;
                }
            }
            c.exec(
                "UPDATE chats SET updated_at = $1 WHERE tenant_id = $2 AND id = $3",
                &args![at, tenant, chat_id],
            )
            .await?;
        }
    }
    Ok(())
}

/// The tenant's uploads named by `ids`, in order, as attachments. Each is
/// touched (which, on PostgreSQL, also locks its row until the transaction
/// ends), so a sweep running beside this write cannot take it.
///
/// Errors: `invalid_input` on `attachments` when an id is not an upload of
/// this tenant (another tenant's id gets the same answer as an unknown one).
pub(super) async fn resolve_attachments<C: Conn>(
    c: &mut C,
    tenant: &str,
    ids: &[String],
    now: i64,
) -> Result<Vec<Attachment>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = c
            .fetch_optional(
                "UPDATE uploads SET touched_at = $1 WHERE id = $2 AND tenant_id = $3 \
                 RETURNING content_type, width, height, url",
                &args![now, id, tenant],
            )
            .await?;
        let Some(row) = row else {
            return Err(crate::domain::DomainError::invalid(
                "attachments",
                "attachments names no upload of this site (upload the image with POST /api/v1/uploads first)",
            )
            .into());
        };
        out.push(Attachment {
            id: id.clone(),
            url: row.text("url")?,
            content_type: row.text("content_type")?,
            width: dimension(row.int("width")?)?,
            height: dimension(row.int("height")?)?,
        });
    }
    Ok(out)
}

fn dimension(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Unavailable(format!("corrupt upload row: {v}")))
}

/// An upload row as stored.
pub(super) fn upload_of(row: &impl Cols) -> Result<crate::store::StoredUpload> {
    let bytes = row.int("bytes")?;
    Ok(crate::store::StoredUpload {
        tenant_id: row.text("tenant_id")?,
        upload: crate::protocol::Upload {
            attachment: Attachment {
                id: row.text("id")?,
                url: row.text("url")?,
                content_type: row.text("content_type")?,
                width: dimension(row.int("width")?)?,
                height: dimension(row.int("height")?)?,
            },
            bytes: u64::try_from(bytes)
                .map_err(|_| StoreError::Unavailable(format!("corrupt upload row: {bytes}")))?,
        },
        etag: row.text("etag")?,
        page: row.int("page")? != 0,
        created_at: row.int("created_at")?,
    })
}

pub(super) const UPLOAD_COLUMNS: &str =
    "id, tenant_id, content_type, width, height, bytes, url, etag, page, created_at";
