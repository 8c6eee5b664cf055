//! Rows to wire types and back: reading a chat with its comments, the
//! image's seq and lock, and the table changes each logged event stands for.
//! Everything here runs on a connection inside the caller's transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

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
async fn set_refs(
    c: &mut AnyConnection,
    tenant: &str,
    chat_id: &str,
    comment_id: &str,
    attachments: &[Attachment],
    replacing: bool,
) -> Result<()> {
    if replacing {
        sqlx::query(
            "DELETE FROM upload_refs WHERE tenant_id = $1 AND chat_id = $2 AND comment_id = $3",
        )
        .bind(tenant)
        .bind(chat_id)
        .bind(comment_id)
        .execute(&mut *c)
        .await?;
    }
    for a in attachments {
        sqlx::query(
            "INSERT INTO upload_refs (tenant_id, upload_id, chat_id, comment_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(&a.id)
        .bind(chat_id)
        .bind(comment_id)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

fn shape_json(s: &Option<Shape>) -> Option<String> {
    s.as_ref().and_then(|s| serde_json::to_string(s).ok())
}

pub(super) fn chat_of(row: &AnyRow) -> Result<Chat> {
    Ok(Chat {
        id: ChatId::from(row.try_get::<String, _>("id")?),
        x: row.try_get("x")?,
        y: row.try_get("y")?,
        resolved: row.try_get::<i64, _>("resolved")? != 0,
        shape: shape_of(row.try_get("shape")?)?,
        user: user_of(row.try_get("user_json")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        comments: Vec::new(),
    })
}

pub(super) fn comment_of(row: &AnyRow) -> Result<Comment> {
    Ok(Comment {
        id: row.try_get("id")?,
        user: user_of(row.try_get("user_json")?)?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        attachments: attachments_of(row.try_get("attachments")?)?,
    })
}

pub(super) const CHAT_COLUMNS: &str =
    "id, url_id, x, y, resolved, shape, user_json, created_at, updated_at";
pub(super) const COMMENT_COLUMNS: &str =
    "id, chat_id, user_json, text, created_at, edited_at, attachments";

/// Loads one chat with its comments, and its urlId.
pub(super) async fn load_chat(
    c: &mut AnyConnection,
    tenant: &str,
    chat_id: &str,
) -> Result<Option<(String, Chat)>> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {CHAT_COLUMNS} FROM chats WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(chat_id)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(None);
    };
    let url_id: String = row.try_get("url_id")?;
    let mut chat = chat_of(&row)?;
    let rows = sqlx::query(&format!(
        "SELECT {COMMENT_COLUMNS} FROM comments WHERE tenant_id = $1 AND chat_id = $2 ORDER BY ord, created_at"
    ))
    .bind(tenant)
    .bind(chat_id)
    .fetch_all(&mut *c)
    .await?;
    chat.comments = rows.iter().map(comment_of).collect::<Result<_>>()?;
    Ok(Some((url_id, chat)))
}

pub(super) async fn image_seq(c: &mut AnyConnection, tenant: &str, url_id: &str) -> Result<Seq> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM images WHERE tenant_id = $1 AND url_id = $2")
            .bind(tenant)
            .bind(url_id)
            .fetch_optional(&mut *c)
            .await?;
    Ok(Seq::from_sql(seq.unwrap_or(0)))
}

/// The image's seq and the URLs it was last seen at.
pub(super) async fn image_row(
    c: &mut AnyConnection,
    tenant: &str,
    url_id: &str,
) -> Result<(Seq, Option<String>, Option<String>)> {
    let row = sqlx::query(
        "SELECT seq, image_url, page_url FROM images WHERE tenant_id = $1 AND url_id = $2",
    )
    .bind(tenant)
    .bind(url_id)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        None => Ok((Seq(0), None, None)),
        Some(r) => Ok((
            Seq::from_sql(r.try_get("seq")?),
            r.try_get("image_url")?,
            r.try_get("page_url")?,
        )),
    }
}

/// Makes sure the image has a row, locks it for this transaction and
/// returns its seq.
pub(super) async fn lock_image(
    c: &mut AnyConnection,
    tenant: &str,
    url_id: &str,
    now: i64,
) -> Result<Seq> {
    // One statement: creates the row if needed and, either way, writes it
    // (which is what takes the lock) and returns its seq.
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO images (tenant_id, url_id, seq, last_activity) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (tenant_id, url_id) DO UPDATE SET seq = images.seq RETURNING seq",
    )
    .bind(tenant)
    .bind(url_id)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    Ok(Seq::from_sql(seq))
}

pub(super) async fn insert_comment(
    c: &mut AnyConnection,
    tenant: &str,
    chat_id: &str,
    url_id: &str,
    seq: Seq,
    k: &Comment,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO comments (tenant_id, id, chat_id, url_id, ord, user_id, user_json, text, created_at, edited_at, attachments) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(tenant)
    .bind(&k.id)
    .bind(chat_id)
    .bind(url_id)
    .bind(seq.to_sql())
    .bind(&k.user.id)
    .bind(user_json(&k.user))
    .bind(&k.text)
    .bind(k.created_at)
    .bind(k.edited_at)
    .bind(attachments_json(&k.attachments))
    .execute(&mut *c)
    .await?;
    set_refs(c, tenant, chat_id, &k.id, &k.attachments, false).await
}

/// Writes the table changes one event stands for.
pub(super) async fn write_event(
    c: &mut AnyConnection,
    tenant: &str,
    url_id: &str,
    seq: Seq,
    kind: &EventKind,
    at: i64,
) -> Result<()> {
    match kind {
        EventKind::NewImageChat { chat } => {
            sqlx::query(
                "INSERT INTO chats (tenant_id, id, url_id, ord, x, y, resolved, shape, user_id, user_json, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(tenant)
            .bind(chat.id.as_str())
            .bind(url_id)
            .bind(seq.to_sql())
            .bind(chat.x)
            .bind(chat.y)
            .bind(chat.resolved as i64)
            .bind(shape_json(&chat.shape))
            .bind(&chat.user.id)
            .bind(user_json(&chat.user))
            .bind(chat.created_at)
            .bind(chat.updated_at)
            .execute(&mut *c)
            .await?;
            for k in &chat.comments {
                insert_comment(c, tenant, &chat.id, url_id, seq, k).await?;
            }
        }
        EventKind::DeletedImageChat { chat_id } => {
            sqlx::query("DELETE FROM upload_refs WHERE tenant_id = $1 AND chat_id = $2")
                .bind(tenant)
                .bind(chat_id.as_str())
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM comments WHERE tenant_id = $1 AND chat_id = $2")
                .bind(tenant)
                .bind(chat_id.as_str())
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM chats WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(chat_id.as_str())
                .execute(&mut *c)
                .await?;
        }
        EventKind::ImageChatUpdated { chat_id, change } => {
            match change {
                Change::CommentAdded { comment } => {
                    insert_comment(c, tenant, chat_id, url_id, seq, comment).await?
                }
                Change::CommentEdited { comment } => {
                    sqlx::query(
                        "UPDATE comments SET text = $1, edited_at = $2, attachments = $3 \
                         WHERE tenant_id = $4 AND chat_id = $5 AND id = $6",
                    )
                    .bind(&comment.text)
                    .bind(comment.edited_at)
                    .bind(attachments_json(&comment.attachments))
                    .bind(tenant)
                    .bind(chat_id.as_str())
                    .bind(&comment.id)
                    .execute(&mut *c)
                    .await?;
                    set_refs(c, tenant, chat_id, &comment.id, &comment.attachments, true).await?;
                }
                Change::CommentDeleted { comment_id } => {
                    set_refs(c, tenant, chat_id, comment_id, &[], true).await?;
                    sqlx::query(
                        "DELETE FROM comments WHERE tenant_id = $1 AND chat_id = $2 AND id = $3",
                    )
                    .bind(tenant)
                    .bind(chat_id.as_str())
                    .bind(comment_id)
                    .execute(&mut *c)
                    .await?;
                }
                Change::Moved { x, y } => {
                    sqlx::query("UPDATE chats SET x = $1, y = $2 WHERE tenant_id = $3 AND id = $4")
                        .bind(x)
                        .bind(y)
                        .bind(tenant)
                        .bind(chat_id.as_str())
                        .execute(&mut *c)
                        .await?;
                }
                Change::Reshaped { shape } => {
                    sqlx::query("UPDATE chats SET shape = $1 WHERE tenant_id = $2 AND id = $3")
                        .bind(shape_json(shape))
                        .bind(tenant)
                        .bind(chat_id.as_str())
                        .execute(&mut *c)
                        .await?;
                }
                Change::Resolved { resolved } => {
                    sqlx::query("UPDATE chats SET resolved = $1 WHERE tenant_id = $2 AND id = $3")
                        .bind(*resolved as i64)
                        .bind(tenant)
                        .bind(chat_id.as_str())
                        .execute(&mut *c)
                        .await?;
                }
            }
            sqlx::query("UPDATE chats SET updated_at = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(at)
                .bind(tenant)
                .bind(chat_id.as_str())
                .execute(&mut *c)
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
pub(super) async fn resolve_attachments(
    c: &mut AnyConnection,
    tenant: &str,
    ids: &[String],
    now: i64,
) -> Result<Vec<Attachment>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = sqlx::query(
            "UPDATE uploads SET touched_at = $1 WHERE id = $2 AND tenant_id = $3 \
             RETURNING content_type, width, height, url",
        )
        .bind(now)
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *c)
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
            url: row.try_get("url")?,
            content_type: row.try_get("content_type")?,
            width: dimension(row.try_get("width")?)?,
            height: dimension(row.try_get("height")?)?,
        });
    }
    Ok(out)
}

fn dimension(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Unavailable(format!("corrupt upload row: {v}")))
}

/// An upload row as stored.
pub(super) fn upload_of(row: &AnyRow) -> Result<crate::store::StoredUpload> {
    let bytes: i64 = row.try_get("bytes")?;
    Ok(crate::store::StoredUpload {
        tenant_id: row.try_get("tenant_id")?,
        upload: crate::protocol::Upload {
            attachment: Attachment {
                id: row.try_get("id")?,
                url: row.try_get("url")?,
                content_type: row.try_get("content_type")?,
                width: dimension(row.try_get("width")?)?,
                height: dimension(row.try_get("height")?)?,
            },
            bytes: u64::try_from(bytes)
                .map_err(|_| StoreError::Unavailable(format!("corrupt upload row: {bytes}")))?,
        },
        etag: row.try_get("etag")?,
        page: row.try_get::<i64, _>("page")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) const UPLOAD_COLUMNS: &str =
    "id, tenant_id, content_type, width, height, bytes, url, etag, page, created_at";
