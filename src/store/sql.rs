//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so SQLite never has to
//! arbitrate between writers (no `SQLITE_BUSY` on upgrade) and seqs are taken
//! in commit order. Reads use their own small pool and see consistent
//! snapshots thanks to WAL.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{
    Committed, ImageSummary, LoggedEvent, Result, Store, StoreError, UsageCounts, UsageDelta,
};
use crate::domain::auth::TokenKey;
use crate::domain::chat::Authority;
use crate::domain::{fold, now_ms, plan, AnonymousPolicy, Mutation, Tenant};
use crate::protocol::{Change, Chat, Comment, Event, EventKind, User};

/// Versioned schema files, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    epoch: String,
    token_key: TokenKey,
}

impl SqliteStore {
    pub async fn open(path: &str) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let (epoch, key) = meta(&writer).await?;
        Ok(SqliteStore {
            reader,
            writer,
            epoch,
            token_key: TokenKey::new(key),
        })
    }
}

async fn migrate(pool: &SqlitePool) -> anyhow::Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        .execute(pool)
        .await?;
    for &(version, sql) in MIGRATIONS {
        let mut tx = pool.begin().await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_none() {
            // Migration files hold plain DDL: no `;` inside statements.
            for stmt in sql.split(';').map(str::trim).filter(|s| {
                !s.lines()
                    .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
            }) {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Reads (or, on a new database, makes) the epoch and the token key.
async fn meta(pool: &SqlitePool) -> anyhow::Result<(String, Vec<u8>)> {
    let mut key = [0u8; 32];
    crate::domain::fill_random(&mut key);
    let fresh = [
        ("epoch", crate::domain::random_id(9)),
        ("token_key", hex::encode(key)),
    ];
    for (k, v) in fresh {
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)")
            .bind(k.to_owned())
            .bind(v)
            .execute(pool)
            .await?;
    }
    let epoch = meta_value(pool, "epoch").await?;
    let key = hex::decode(meta_value(pool, "token_key").await?)?;
    Ok((epoch, key))
}

async fn meta_value(pool: &SqlitePool, key: &str) -> sqlx::Result<String> {
    sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_one(pool)
        .await
}

fn user_of(json: &str) -> Result<User> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Unavailable(format!("corrupt user row: {e}")))
}

fn user_json(u: &User) -> String {
    serde_json::to_string(u).unwrap_or_default()
}

fn chat_of(row: &SqliteRow) -> Result<Chat> {
    Ok(Chat {
        id: row.try_get("id")?,
        x: row.try_get("x")?,
        y: row.try_get("y")?,
        resolved: row.try_get::<i64, _>("resolved")? != 0,
        user: user_of(row.try_get("user_json")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        comments: Vec::new(),
    })
}

fn comment_of(row: &SqliteRow) -> Result<Comment> {
    Ok(Comment {
        id: row.try_get("id")?,
        user: user_of(row.try_get("user_json")?)?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
    })
}

const CHAT_COLUMNS: &str = "id, url_id, x, y, resolved, user_json, created_at, updated_at";
const COMMENT_COLUMNS: &str = "id, chat_id, user_json, text, created_at, edited_at";

/// Loads one chat with its comments, and its urlId.
async fn load_chat(
    c: &mut SqliteConnection,
    tenant: &str,
    chat_id: &str,
) -> Result<Option<(String, Chat)>> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {CHAT_COLUMNS} FROM chats WHERE tenant_id = ? AND id = ?"
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
        "SELECT {COMMENT_COLUMNS} FROM comments WHERE tenant_id = ? AND chat_id = ? ORDER BY ord, created_at"
    ))
    .bind(tenant)
    .bind(chat_id)
    .fetch_all(&mut *c)
    .await?;
    chat.comments = rows.iter().map(comment_of).collect::<Result<_>>()?;
    Ok(Some((url_id, chat)))
}

async fn image_seq(c: &mut SqliteConnection, tenant: &str, url_id: &str) -> Result<u64> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM images WHERE tenant_id = ? AND url_id = ?")
            .bind(tenant)
            .bind(url_id)
            .fetch_optional(&mut *c)
            .await?;
    Ok(seq.unwrap_or(0) as u64)
}

async fn insert_comment(
    c: &mut SqliteConnection,
    tenant: &str,
    chat_id: &str,
    url_id: &str,
    seq: u64,
    k: &Comment,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO comments (tenant_id, id, chat_id, url_id, ord, user_id, user_json, text, created_at, edited_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(&k.id)
    .bind(chat_id)
    .bind(url_id)
    .bind(seq as i64)
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
async fn write_event(
    c: &mut SqliteConnection,
    tenant: &str,
    url_id: &str,
    seq: u64,
    kind: &EventKind,
    at: i64,
) -> Result<()> {
    match kind {
        EventKind::NewImageChat { chat } => {
            sqlx::query(
                "INSERT INTO chats (tenant_id, id, url_id, ord, x, y, resolved, user_id, user_json, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant)
            .bind(&chat.id)
            .bind(url_id)
            .bind(seq as i64)
            .bind(chat.x)
            .bind(chat.y)
            .bind(chat.resolved as i64)
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
            sqlx::query("DELETE FROM comments WHERE tenant_id = ? AND chat_id = ?")
                .bind(tenant)
                .bind(chat_id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM chats WHERE tenant_id = ? AND id = ?")
                .bind(tenant)
                .bind(chat_id)
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
                        "UPDATE comments SET text = ?, edited_at = ? WHERE tenant_id = ? AND chat_id = ? AND id = ?",
                    )
                    .bind(&comment.text)
                    .bind(comment.edited_at)
                    .bind(tenant)
                    .bind(chat_id)
                    .bind(&comment.id)
                        .execute(&mut *c)
                        .await?;
                }
                Change::CommentDeleted { comment_id } => {
                    sqlx::query(
                        "DELETE FROM comments WHERE tenant_id = ? AND chat_id = ? AND id = ?",
                    )
                    .bind(tenant)
                    .bind(chat_id)
                    .bind(comment_id)
                    .execute(&mut *c)
                    .await?;
                }
                Change::Moved { x, y } => {
                    sqlx::query("UPDATE chats SET x = ?, y = ? WHERE tenant_id = ? AND id = ?")
                        .bind(x)
                        .bind(y)
                        .bind(tenant)
                        .bind(chat_id)
                        .execute(&mut *c)
                        .await?;
                }
                Change::Resolved { resolved } => {
                    sqlx::query("UPDATE chats SET resolved = ? WHERE tenant_id = ? AND id = ?")
                        .bind(*resolved as i64)
                        .bind(tenant)
                        .bind(chat_id)
                        .execute(&mut *c)
                        .await?;
                }
            }
            sqlx::query("UPDATE chats SET updated_at = ? WHERE tenant_id = ? AND id = ?")
                .bind(at)
                .bind(tenant)
                .bind(chat_id)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn token_key(&self) -> &TokenKey {
        &self.token_key
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_tenant(&self, t: &Tenant) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO tenants (id, secret, origins, anonymous, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&t.id)
        .bind(&t.secret)
        .bind(serde_json::to_string(&t.origins).unwrap_or_else(|_| "[]".into()))
        .bind(t.anonymous.as_str())
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let Some(row) =
            sqlx::query("SELECT id, secret, origins, anonymous FROM tenants WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?
        else {
            return Ok(None);
        };
        let origins: String = row.try_get("origins")?;
        let anonymous: String = row.try_get("anonymous")?;
        Ok(Some(Tenant {
            id: row.try_get("id")?,
            secret: row.try_get("secret")?,
            origins: serde_json::from_str(&origins).unwrap_or_default(),
            anonymous: AnonymousPolicy::parse(&anonymous).unwrap_or(AnonymousPolicy::None),
        }))
    }

    async fn snapshot(&self, tenant: &str, url_id: &str) -> Result<(u64, Vec<Chat>)> {
        // One read transaction, so the seq and the rows describe the same moment.
        let mut tx = self.reader.begin().await?;
        let seq = image_seq(&mut tx, tenant, url_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CHAT_COLUMNS} FROM chats WHERE tenant_id = ? AND url_id = ? ORDER BY ord"
        ))
        .bind(tenant)
        .bind(url_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut chats = rows.iter().map(chat_of).collect::<Result<Vec<_>>>()?;
        let index: HashMap<String, usize> = chats
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT {COMMENT_COLUMNS} FROM comments WHERE tenant_id = ? AND url_id = ? ORDER BY ord, created_at"
        ))
        .bind(tenant)
        .bind(url_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let chat_id: String = row.try_get("chat_id")?;
            if let Some(&i) = index.get(&chat_id) {
                chats[i].comments.push(comment_of(row)?);
            }
        }
        tx.commit().await?;
        Ok((seq, chats))
    }

    async fn latest_seq(&self, tenant: &str, url_id: &str) -> Result<u64> {
        let mut c = self.reader.acquire().await?;
        image_seq(&mut c, tenant, url_id).await
    }

    async fn events_since(
        &self,
        tenant: &str,
        url_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(
            "SELECT seq, body FROM events WHERE tenant_id = ? AND url_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(tenant)
        .bind(url_id)
        .bind(since.min(i64::MAX as u64) as i64)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LoggedEvent {
                    seq: r.try_get::<i64, _>("seq")? as u64,
                    body: Bytes::from(r.try_get::<String, _>("body")?),
                })
            })
            .collect()
    }

    async fn apply(
        &self,
        tenant: &str,
        m: &Mutation,
        by: &Authority,
        broadcast_id: Option<&str>,
    ) -> Result<Committed> {
        let mut tx = self.writer.begin().await?;
        let (url_id, mut chat) = match (m, m.chat_id()) {
            (Mutation::CreateChat { url_id, .. }, _) => (url_id.clone(), None),
            (_, Some(id)) => match load_chat(&mut tx, tenant, id).await? {
                Some((u, c)) => (u, Some(c)),
                None => return Err(crate::domain::DomainError::NotFound.into()),
            },
            (_, None) => return Err(crate::domain::DomainError::NotFound.into()),
        };
        let now = now_ms();
        let mut seq = image_seq(&mut tx, tenant, &url_id).await?;
        let kinds = plan(m, chat.as_ref(), by, now, seq + 1)?;
        let mut events = Vec::with_capacity(kinds.len());
        let mut comment = None;
        for kind in kinds {
            seq += 1;
            write_event(&mut tx, tenant, &url_id, seq, &kind, now).await?;
            match &kind {
                EventKind::NewImageChat { chat: c } => chat = Some(c.clone()),
                EventKind::DeletedImageChat { .. } => chat = None,
                EventKind::ImageChatUpdated { change, .. } => {
                    if let Change::CommentAdded { comment: k }
                    | Change::CommentEdited { comment: k } = change
                    {
                        comment = Some(k.clone());
                    }
                    if let Some(c) = chat.as_mut() {
                        fold(c, change, now);
                    }
                }
            }
            let ev = Event {
                kind,
                url_id: url_id.clone(),
                seq,
                broadcast_id: broadcast_id.map(str::to_owned),
                at: now,
            };
            let body =
                serde_json::to_string(&ev).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            sqlx::query(
                "INSERT INTO events (tenant_id, url_id, seq, at, body) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(tenant)
            .bind(&url_id)
            .bind(seq as i64)
            .bind(now)
            .bind(&body)
            .execute(&mut *tx)
            .await?;
            events.push(LoggedEvent {
                seq,
                body: Bytes::from(body),
            });
        }
        if !events.is_empty() {
            sqlx::query(
                "INSERT INTO images (tenant_id, url_id, seq, last_activity) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (tenant_id, url_id) DO UPDATE SET seq = excluded.seq, last_activity = excluded.last_activity",
            )
            .bind(tenant)
            .bind(&url_id)
            .bind(seq as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Committed {
            url_id,
            seq,
            events,
            chat,
            comment,
        })
    }

    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        for d in deltas {
            let c = &d.counts;
            sqlx::query(
                "INSERT INTO usage_days (tenant_id, day, messages, bandwidth, conversations, comments, peak_connections) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, day) DO UPDATE SET \
                 messages = messages + excluded.messages, bandwidth = bandwidth + excluded.bandwidth, \
                 conversations = conversations + excluded.conversations, comments = comments + excluded.comments, \
                 peak_connections = MAX(peak_connections, excluded.peak_connections)",
            )
            .bind(&d.tenant_id)
            .bind(&d.day)
            .bind(c.messages as i64)
            .bind(c.bandwidth as i64)
            .bind(c.conversations as i64)
            .bind(c.comments as i64)
            .bind(c.peak_connections as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, UsageCounts)>> {
        let rows = sqlx::query(
            "SELECT day, messages, bandwidth, conversations, comments, peak_connections FROM usage_days \
             WHERE tenant_id = ? AND day >= ? AND day <= ? ORDER BY day",
        )
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let n = |k: &str| r.try_get::<i64, _>(k).map(|v| v.max(0) as u64);
                Ok((
                    r.try_get("day")?,
                    UsageCounts {
                        messages: n("messages")?,
                        bandwidth: n("bandwidth")?,
                        conversations: n("conversations")?,
                        comments: n("comments")?,
                        peak_connections: n("peak_connections")?,
                    },
                ))
            })
            .collect()
    }

    async fn images(&self, tenant: &str, limit: u32) -> Result<Vec<ImageSummary>> {
        let rows = sqlx::query(
            "SELECT i.url_id, i.seq, i.last_activity, \
             (SELECT COUNT(*) FROM chats c WHERE c.tenant_id = i.tenant_id AND c.url_id = i.url_id) AS chat_count \
             FROM images i WHERE i.tenant_id = ? ORDER BY i.last_activity DESC, i.url_id LIMIT ?",
        )
        .bind(tenant)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ImageSummary {
                    url_id: r.try_get("url_id")?,
                    chat_count: r.try_get::<i64, _>("chat_count")?.max(0) as u64,
                    last_activity: r.try_get("last_activity")?,
                    seq: r.try_get::<i64, _>("seq")?.max(0) as u64,
                })
            })
            .collect()
    }
}

/// Compile-time check: start-up futures must be `Send` so callers can spawn
/// `run`. (Some sqlx calls are not, for any lifetime; this catches them here.)
#[allow(dead_code)]
fn send_checks(pool: &'static SqlitePool) {
    fn is_send<T: Send>(_: T) {}
    is_send(migrate(pool));
    is_send(meta(pool));
    is_send(meta_value(pool, "x"));
}
