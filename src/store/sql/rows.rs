//! Rows to wire types and back: reading a chat with its comments, the
//! image's seq and lock, and the table changes each logged event stands for.
//! Everything here runs on a connection inside the caller's transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::{ChatId, Seq};
use crate::protocol::{Change, Chat, Comment, EventKind, Shape, User};
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
    })
}

pub(super) const CHAT_COLUMNS: &str =
    "id, url_id, x, y, resolved, shape, user_json, created_at, updated_at";
pub(super) const COMMENT_COLUMNS: &str = "id, chat_id, user_json, text, created_at, edited_at";

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
        "INSERT INTO comments (tenant_id, id, chat_id, url_id, ord, user_id, user_json, text, created_at, edited_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .execute(&mut *c)
    .await?;
    Ok(())
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
                        "UPDATE comments SET text = $1, edited_at = $2 WHERE tenant_id = $3 AND chat_id = $4 AND id = $5",
                    )
                    .bind(&comment.text)
                    .bind(comment.edited_at)
                    .bind(tenant)
                    .bind(chat_id.as_str())
                    .bind(&comment.id)
                        .execute(&mut *c)
                        .await?;
                }
                Change::CommentDeleted { comment_id } => {
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
