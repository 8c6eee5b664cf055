//! The SQL store: SQLite (the embedded default) and PostgreSQL (shared by
//! many nodes), through one implementation on sqlx's `Any` driver. Each
//! backend has its own migrations; the queries are written in the SQL both
//! understand (`$n` parameters, `ON CONFLICT`, `RETURNING`).
//!
//! Seqs: a write first locks its image's row (`UPDATE … RETURNING seq`, a row
//! lock in PostgreSQL; SQLite has one writer at a time), then reads the chat,
//! plans, and writes the new seq, so two writes never take the same seq and
//! each plans against the state the other committed.
//!
//! SQLite writes go through a pool of exactly one connection, so it never has
//! to arbitrate between writers; reads use their own pool and see consistent
//! snapshots thanks to WAL.

mod conn;
mod rows;
mod schema;
mod writer;

use rows::{
    chat_of, comment_of, image_row, image_seq, load_chat, queries, upload_of, UPLOAD_COLUMNS,
};
use schema::{meta, meta_value, migrate};

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use super::{
    CommitHook, Committed, FoundChat, ImageSummary, LoggedEvent, NewUpload, Result, Snapshot,
    Store, StoreError, StoredUpload, UsageCounts, UsageDelta,
};
use crate::domain::auth::TokenKey;
use crate::domain::chat::Authority;
use crate::domain::{now_ms, AnonymousPolicy, ChatId, ImageKey, Mutation, Seq, Tenant, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Versioned schema files (`migrations/<backend>/NNNN_name.sql`),
    /// embedded at build time and applied in order, each once, by sqlx's
    /// migrator (which holds an advisory lock on PostgreSQL, so nodes
    /// starting together take turns).
    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
        static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
        match self {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }
}

pub struct SqlStore {
    backend: Backend,
    reader: AnyPool,
    writer: AnyPool,
    epoch: String,
    token_key: TokenKey,
    /// Something was written since the last checkpoint.
    unsaved: Arc<std::sync::atomic::AtomicBool>,
    faults: Arc<Faults>,
    /// Where mutations queue (see `writer.rs`).
    writers: writer::Writers,
}

/// When a write last failed. A SQLite connection that met a failing disk
/// can stay broken after the disk recovers (a file it had to reopen
/// read-only stays read-only for its lifetime), so every connection that
/// was open when a write failed is closed before its next use and the
/// pool opens a fresh one: service resumes by itself.
struct Faults {
    started: std::time::Instant,
    /// Milliseconds from `started` to the last failure, plus one; 0: none.
    last: std::sync::atomic::AtomicU64,
    /// The last write failed: readiness must prove writing works again.
    failing: std::sync::atomic::AtomicBool,
}

impl Faults {
    fn new() -> Self {
        Faults {
            started: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn note(&self) {
        self.failing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last
            .store(ms.saturating_add(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a connection of this age was open at the last failure.
    fn outlived(&self, age: std::time::Duration) -> bool {
        match self.last.load(std::sync::atomic::Ordering::Relaxed) {
            0 => false,
            at => {
                let failed_at = std::time::Duration::from_millis(at - 1);
                age >= self.started.elapsed().saturating_sub(failed_at)
            }
        }
    }
}

impl SqlStore {
    /// `write`'s result; an unavailable store marks the connections open
    /// now for replacement (see [`Faults`]).
    async fn noted<T>(&self, write: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let r = write.await;
        match &r {
            Err(StoreError::Unavailable(_)) => self.faults.note(),
            Ok(_)
                if self
                    .faults
                    .failing
                    .load(std::sync::atomic::Ordering::Relaxed) =>
            {
                self.faults
                    .failing
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        r
    }

    /// The writer pool, noting that there will be something to checkpoint.
    fn writing(&self) -> &AnyPool {
        self.unsaved
            .store(true, std::sync::atomic::Ordering::Relaxed);
        &self.writer
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits out `busy_timeout` while another
    /// process writes: a deferred transaction that read first could not
    /// upgrade to writing and would fail at once with "database is locked".
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => self.writing().begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writing().begin().await,
        }
    }

    /// Opens `sqlite://PATH` or `postgres://…`; `pool` bounds PostgreSQL
    /// connections (SQLite uses one writer and `pool` readers).
    pub async fn open(url: &str, pool: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            anyhow::bail!("unsupported database URL: expected sqlite://PATH or postgres://…");
        };
        let opts: AnyConnectOptions = url.parse()?;
        let pool = pool.max(1);
        let faults = Arc::new(Faults::new());
        let (reader, writer) = match backend {
            Backend::Sqlite => {
                let connect = |n: u32| {
                    let faults = Arc::clone(&faults);
                    AnyPoolOptions::new()
                        .max_connections(n)
                        // A connection to a local file does not go stale:
                        // no ping (a round trip to its thread) per use.
                        .test_before_acquire(false)
                        .before_acquire(move |conn, meta| {
                            let outlived = faults.outlived(meta.age);
                            Box::pin(async move { Ok(!outlived && usable(conn).await?) })
                        })
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                for pragma in [
                                    "PRAGMA journal_mode = WAL",
                                    "PRAGMA synchronous = NORMAL",
                                    // Checkpoints run from `maintain`, off
                                    // the write path (a checkpoint syncs
                                    // the file: milliseconds).
                                    "PRAGMA wal_autocheckpoint = 0",
                                    "PRAGMA busy_timeout = 5000",
                                    "PRAGMA foreign_keys = ON",
                                ] {
                                    sqlx::query(pragma).execute(&mut *conn).await?;
                                }
                                Ok(())
                            })
                        })
                        .connect_with(opts.clone())
                };
                let writer = connect(1).await?;
                migrate(&writer, backend).await?;
                (connect(pool.min(8)).await?, writer)
            }
            Backend::Postgres => {
                let p = AnyPoolOptions::new()
                    .max_connections(pool)
                    .acquire_timeout(std::time::Duration::from_secs(3))
                    .before_acquire(|conn, _| Box::pin(usable(conn)))
                    .connect_with(opts)
                    .await?;
                migrate(&p, backend).await?;
                (p.clone(), p)
            }
        };
        let (epoch, key) = meta(&writer).await?;
        let unsaved = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = match (backend, url.strip_prefix("sqlite://")) {
            (Backend::Sqlite, Some(path)) => writer::sqlite(
                path.trim_end_matches("?mode=rwc").to_owned(),
                Arc::clone(&faults),
                Arc::clone(&unsaved),
            )?,
            _ => writer::postgres(writer.clone(), (pool / 2).clamp(1, 4) as usize),
        };
        Ok(SqlStore {
            backend,
            reader,
            writer,
            epoch,
            token_key: TokenKey::new(key),
            unsaved,
            faults,
            writers,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

#[async_trait]
impl Store for SqlStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn token_key(&self) -> &TokenKey {
        &self.token_key
    }

    /// Reads; and, while the last write failed, writes (a no-op update of
    /// one row in a write transaction), so a node whose disk is full or
    /// read-only is not ready until it can write again.
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        if self
            .faults
            .failing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.noted(async {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE meta SET value = value WHERE key = 'epoch'")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    async fn maintain(&self) -> Result<()> {
        self.noted(async {
            let unsaved = self
                .unsaved
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            if self.backend == Backend::Sqlite && unsaved {
                // PASSIVE: copies what no reader still needs, waits for nobody.
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&self.reader)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    async fn create_tenant(&self, t: &Tenant) -> Result<()> {
        self.noted(async {
        let done = sqlx::query(
            "INSERT INTO tenants (id, secret, origins, anonymous, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(t.id.as_str())
        .bind(&t.secret)
        .bind(serde_json::to_string(&t.origins).unwrap_or_else(|_| "[]".into()))
        .bind(t.anonymous.as_str())
        .bind(now_ms())
        .execute(self.writing())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
            })
        .await
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let Some(row) =
            sqlx::query("SELECT id, secret, origins, anonymous FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?
        else {
            return Ok(None);
        };
        let origins: String = row.try_get("origins")?;
        let anonymous: String = row.try_get("anonymous")?;
        Ok(Some(Tenant {
            id: TenantId::from(row.try_get::<String, _>("id")?),
            secret: row.try_get("secret")?,
            origins: serde_json::from_str(&origins).unwrap_or_default(),
            anonymous: AnonymousPolicy::parse(&anonymous).unwrap_or(AnonymousPolicy::None),
        }))
    }

    async fn snapshot(&self, image: &ImageKey) -> Result<Snapshot> {
        let (tenant, url_id) = (image.tenant(), image.url_id());
        // One read transaction, so the seq and the rows describe the same moment.
        let mut tx = self.reader.begin().await?;
        let (seq, image_url, page_url) = image_row(&mut *tx, tenant, url_id).await?;
        let rows = sqlx::query(&queries().image_chats)
            .bind(tenant)
            .bind(url_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut chats = rows.iter().map(chat_of).collect::<Result<Vec<_>>>()?;
        let index: HashMap<ChatId, usize> = chats
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let rows = sqlx::query(&queries().image_comments)
            .bind(tenant)
            .bind(url_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            let chat_id: String = row.try_get("chat_id")?;
            if let Some(&i) = index.get(chat_id.as_str()) {
                chats[i].comments.push(comment_of(row)?);
            }
        }
        tx.commit().await?;
        Ok(Snapshot {
            seq,
            chats,
            image_url,
            page_url,
        })
    }

    async fn chat(&self, tenant: &TenantId, chat_id: &str) -> Result<Option<FoundChat>> {
        let mut tx = self.reader.begin().await?;
        let Some((url_id, chat)) = load_chat(&mut *tx, tenant.as_str(), chat_id).await? else {
            return Ok(None);
        };
        let (_, image_url, _) = image_row(&mut *tx, tenant.as_str(), &url_id).await?;
        tx.commit().await?;
        Ok(Some(FoundChat {
            url_id,
            chat,
            image_url,
        }))
    }

    async fn latest_seq(&self, image: &ImageKey) -> Result<Seq> {
        let mut c = self.reader.acquire().await?;
        image_seq(&mut *c, image.tenant(), image.url_id()).await
    }

    async fn events_since(
        &self,
        image: &ImageKey,
        since: Seq,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>> {
        let (tenant, url_id) = (image.tenant(), image.url_id());
        let rows = sqlx::query(
            "SELECT seq, body FROM events WHERE tenant_id = $1 AND url_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(tenant)
        .bind(url_id)
        .bind(since.to_sql())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LoggedEvent {
                    seq: Seq::from_sql(r.try_get::<i64, _>("seq")?),
                    body: Bytes::from(r.try_get::<String, _>("body")?),
                })
            })
            .collect()
    }

    async fn apply(
        &self,
        tenant: &TenantId,
        m: &Mutation,
        by: &Authority,
        broadcast_id: Option<&str>,
    ) -> Result<Committed> {
        self.noted(self.queue(tenant, m, by, broadcast_id)).await
    }

    fn on_commit(&self, hook: CommitHook) {
        let _ = self.writers.hook.set(hook);
    }

    fn write_batches(&self) -> (u64, u64) {
        self.batch_stats()
    }

    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        self.noted(async {
        let mut tx = self.begin_write().await?;
        for d in deltas {
            let c = &d.counts;
            sqlx::query(
                "INSERT INTO usage_days (tenant_id, day, messages, bandwidth, conversations, comments, peak_connections) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, day) DO UPDATE SET \
                 messages = usage_days.messages + excluded.messages, \
                 bandwidth = usage_days.bandwidth + excluded.bandwidth, \
                 conversations = usage_days.conversations + excluded.conversations, \
                 comments = usage_days.comments + excluded.comments, \
                 peak_connections = CASE WHEN excluded.peak_connections > usage_days.peak_connections \
                 THEN excluded.peak_connections ELSE usage_days.peak_connections END",
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
            })
        .await
    }

    async fn usage(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, UsageCounts)>> {
        let rows = sqlx::query(
            "SELECT day, messages, bandwidth, conversations, comments, peak_connections, upload_bytes FROM usage_days \
             WHERE tenant_id = $1 AND day >= $2 AND day <= $3 ORDER BY day",
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
                        upload_bytes: n("upload_bytes")?,
                    },
                ))
            })
            .collect()
    }

    async fn images(&self, tenant: &str, limit: u32) -> Result<Vec<ImageSummary>> {
        let rows = sqlx::query(
            "SELECT i.url_id, i.seq, i.last_activity, \
             (SELECT COUNT(*) FROM chats c WHERE c.tenant_id = i.tenant_id AND c.url_id = i.url_id) AS chat_count \
             FROM images i WHERE i.tenant_id = $1 ORDER BY i.last_activity DESC, i.url_id LIMIT $2",
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
                    seq: Seq::from_sql(r.try_get::<i64, _>("seq")?),
                })
            })
            .collect()
    }

    async fn add_upload(&self, u: &NewUpload) -> Result<()> {
        self.noted(async {
            let r = &u.record;
            let a = &r.upload.attachment;
            let bytes = i64::try_from(r.upload.bytes).unwrap_or(i64::MAX);
            let mut tx = self.begin_write().await?;
            // The increment takes the day row's lock, so two nodes adding at
            // once cannot both slip under the quota.
            let used: i64 = sqlx::query_scalar(
                "INSERT INTO usage_days (tenant_id, day, upload_bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, day) DO UPDATE SET upload_bytes = usage_days.upload_bytes + excluded.upload_bytes \
                 RETURNING upload_bytes",
            )
            .bind(&r.tenant_id)
            .bind(&u.day)
            .bind(bytes)
            .fetch_one(&mut *tx)
            .await?;
            let used = u64::try_from(used).unwrap_or(0);
            if let Some(quota) = u.quota {
                if used > quota {
                    tx.rollback().await?;
                    return Err(StoreError::UploadQuota {
                        used: used.saturating_sub(r.upload.bytes),
                        size: r.upload.bytes,
                        quota,
                    });
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO uploads (id, tenant_id, content_type, width, height, bytes, url, etag, page, created_at, touched_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&a.id)
            .bind(&r.tenant_id)
            .bind(&a.content_type)
            .bind(i64::from(a.width))
            .bind(i64::from(a.height))
            .bind(bytes)
            .bind(&a.url)
            .bind(&r.etag)
            .bind(i64::from(r.page))
            .bind(r.created_at)
            .bind(r.created_at)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                tx.rollback().await?;
                return Err(StoreError::Conflict);
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &str) -> Result<Option<StoredUpload>> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(upload_of).transpose()
    }

    async fn delete_upload(&self, tenant: &str, id: &str) -> Result<bool> {
        self.noted(async {
            let mut tx = self.begin_write().await?;
            let gone = sqlx::query("DELETE FROM uploads WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            sqlx::query("DELETE FROM upload_refs WHERE upload_id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(gone)
        })
        .await
    }

    async fn sweep_uploads(&self, before: i64, limit: u32) -> Result<Vec<String>> {
        self.noted(async {
            let candidates: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM uploads u WHERE touched_at < $1 AND page = 0 \
                 AND NOT EXISTS (SELECT 1 FROM upload_refs r WHERE r.upload_id = u.id) \
                 ORDER BY touched_at LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
            let mut gone = Vec::with_capacity(candidates.len());
            for id in candidates {
                // Checked again as it is deleted: a comment attaching it in
                // the meantime touched it (and, on PostgreSQL, held its row).
                let deleted: Option<String> = sqlx::query_scalar(
                    "DELETE FROM uploads WHERE id = $1 AND touched_at < $2 AND page = 0 \
                     AND NOT EXISTS (SELECT 1 FROM upload_refs r WHERE r.upload_id = $1) RETURNING id",
                )
                .bind(&id)
                .bind(before)
                .fetch_optional(self.writing())
                .await?;
                gone.extend(deleted);
            }
            Ok(gone)
        })
        .await
    }
}

/// Whether a pooled connection may be used again: not when a transaction
/// is still open on it. A dropped transaction queues its rollback; if the
/// database had already ended the transaction itself (a commit that failed
/// on a full disk, say), that rollback fails and the connection would stay
/// "in a transaction" forever, refusing every later write until a restart.
/// Such a connection is closed, and the pool opens a fresh one. Costs
/// nothing on the common path (no open transaction: no round trip).
async fn usable(conn: &mut sqlx::AnyConnection) -> sqlx::Result<bool> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // Let a queued rollback run first, then look again.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

/// Compile-time check: start-up futures must be `Send` so callers can spawn
/// `run`. (Some sqlx calls are not, for any lifetime; this catches them here.)
#[allow(dead_code)]
fn send_checks(pool: &'static AnyPool) {
    fn is_send<T: Send>(_: T) {}
    is_send(migrate(pool, Backend::Sqlite));
    is_send(meta(pool));
    is_send(meta_value(pool, "x"));
}

#[cfg(test)]
mod tests {
    use crate::store::{UsageCounts, UsageDelta};

    /// A database made before migrations moved to sqlx keeps its data and
    /// is not migrated twice.
    #[tokio::test]
    async fn a_database_of_the_old_migration_table_is_adopted() {
        use sqlx::{Connection, Executor};
        let (store, dir, path) = crate::store::open_temp("legacy").await;
        let tenant = crate::domain::Tenant {
            id: "kept".into(),
            secret: "s".into(),
            origins: Vec::new(),
            anonymous: crate::domain::AnonymousPolicy::Read,
        };
        store.create_tenant(&tenant).await.unwrap();
        drop(store);
        let url = format!("sqlite://{}", path.display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        // Back to the schema of version 1, the last one the old table knew.
        c.execute(
            "DROP TABLE _sqlx_migrations; \
             ALTER TABLE chats DROP COLUMN shape; \
             ALTER TABLE images DROP COLUMN image_url; \
             ALTER TABLE images DROP COLUMN page_url; \
             DROP TABLE uploads; DROP TABLE upload_refs; \
             ALTER TABLE comments DROP COLUMN attachments; \
             ALTER TABLE usage_days DROP COLUMN upload_bytes; \
             CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); \
             INSERT INTO schema_migrations VALUES (1, 0);",
        )
        .await
        .unwrap();
        c.close().await.unwrap();
        let store = crate::store::open(&url, 1)
            .await
            .expect("the old database opens");
        assert!(store.tenant("kept").await.unwrap().is_some());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut c)
                .await
                .unwrap();
        // Version 1 adopted, the later ones run.
        let all: Vec<i64> = super::Backend::Sqlite
            .migrator()
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(applied, all);
        assert!(all.len() >= 2 && all[0] == 1);
        let legacy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_migrations'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!(legacy, 0);
        // And it opens again as a current one.
        drop(store);
        crate::store::open(&url, 1).await.expect("opens again");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writes leave what they wrote in the write-ahead log (no checkpoint on
    /// the write path); `maintain` moves it into the database file.
    #[tokio::test]
    async fn maintenance_moves_the_log_into_the_database_file() {
        let (store, dir, path) = crate::store::open_temp("wal").await;
        store.maintain().await.unwrap();
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap();
        let before = size();
        let deltas: Vec<UsageDelta> = (0..2000)
            .map(|i| UsageDelta {
                tenant_id: format!("tenant-{i}"),
                day: "2026-11-26".into(),
                counts: UsageCounts {
                    messages: i,
                    ..UsageCounts::default()
                },
            })
            .collect();
        for chunk in deltas.chunks(100) {
            store.add_usage(chunk).await.unwrap();
        }
        assert_eq!(size(), before, "the writes stay in the log");
        store.maintain().await.unwrap();
        assert!(size() > before, "maintenance copied them into the file");
        let _ = std::fs::remove_dir_all(dir);
    }
}
