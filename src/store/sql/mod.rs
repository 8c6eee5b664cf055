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
mod hooks;
mod notify;
mod rows;
mod schema;
mod writer;
mod writes;

/// Runs a write op of `writes.rs` (`|c| op(c, …)`) in a transaction of its
/// own: on SQLite on the writer thread (what it uses is moved there), on
/// PostgreSQL on a pooled connection.
macro_rules! write_tx {
    ($store:expr, |$c:ident| $op:expr) => {
        match $store.backend {
            Backend::Sqlite => {
                $store
                    .writers
                    .run(move |$c: &mut conn::Lite| conn::now($op).and_then(|r| r))
                    .await
            }
            Backend::Postgres => {
                let mut tx = $store.writer.begin().await?;
                let $c: &mut sqlx::AnyConnection = &mut *tx;
                match $op.await {
                    Ok(v) => {
                        tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }
        }
    };
}

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
    AfterAttempt, Attempt, CommitHook, Committed, Digest, DirectoryUser, FoundChat, ImageSummary,
    LoggedEvent, NewUpload, PendingDelivery, Result, Snapshot, Store, StoreError, StoredUpload,
    UsageCounts, UsageDelta, Webhook,
};
use crate::domain::auth::TokenKey;
use crate::domain::chat::Authority;
use crate::domain::now_ms;
use crate::domain::{AnonymousPolicy, ChatId, ImageKey, Mutation, Seq, Tenant, TenantId};
use crate::protocol::{Notification, User};

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
    epoch: Arc<str>,
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
            epoch: Arc::from(epoch),
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
            self.noted(async { write_tx!(self, |c| writes::probe(c)) })
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
        let t = t.clone();
        self.noted(async { write_tx!(self, |c| writes::create_tenant(c, &t)) })
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
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = writer::Job {
            tenant: tenant.clone(),
            m: m.clone(),
            by: by.clone(),
            broadcast_id: broadcast_id.map(str::to_owned),
            epoch: Arc::clone(&self.epoch),
            reply,
        };
        self.noted(self.writers.apply(job, answer)).await
    }

    fn on_commit(&self, hook: CommitHook) {
        let _ = self.writers.hook.set(hook);
    }

    fn write_batches(&self) -> (u64, u64) {
        self.batch_stats()
    }

    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let deltas = deltas.to_vec();
        self.noted(async { write_tx!(self, |c| writes::add_usage(c, &deltas)) })
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
        let u = u.clone();
        self.noted(async { write_tx!(self, |c| writes::add_upload(c, &u)) })
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
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.noted(async { write_tx!(self, |c| writes::delete_upload(c, &tenant, &id)) })
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
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            let gone = write_tx!(self, |c| writes::sweep(c, &candidates, before))?;
            Ok(gone)
        })
        .await
    }

    async fn remember_user(&self, tenant: &str, u: &DirectoryUser) -> Result<()> {
        let (tenant, u) = (tenant.to_owned(), u.clone());
        self.noted(async { write_tx!(self, |c| notify::remember_user(c, &tenant, &u, now_ms())) })
            .await
    }

    async fn find_users(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<User>> {
        let mut c = self.reader.acquire().await?;
        notify::find_users(&mut *c, tenant, prefix, limit).await
    }

    async fn set_following(
        &self,
        tenant: &str,
        chat_id: &str,
        user_id: &str,
        following: bool,
    ) -> Result<bool> {
        let (t, chat, user) = (tenant.to_owned(), chat_id.to_owned(), user_id.to_owned());
        self.noted(async {
            write_tx!(self, |c| notify::set_following(
                c, &t, &chat, &user, following
            ))
        })
        .await
    }

    async fn following(&self, tenant: &str, chat_id: &str, user_id: &str) -> Result<Option<bool>> {
        let mut c = self.reader.acquire().await?;
        notify::following(&mut *c, tenant, chat_id, user_id).await
    }

    async fn notifications(
        &self,
        tenant: &str,
        user_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Notification>, u64)> {
        // One read transaction: the page and the count agree.
        let mut tx = self.reader.begin().await?;
        let r = notify::notifications(&mut *tx, tenant, user_id, before, limit).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn mark_read(&self, tenant: &str, user_id: &str, ids: Option<&[i64]>) -> Result<u64> {
        let (t, user, ids) = (
            tenant.to_owned(),
            user_id.to_owned(),
            ids.map(<[i64]>::to_vec),
        );
        self.noted(async { write_tx!(self, |c| notify::mark_read(c, &t, &user, ids.as_deref())) })
            .await
    }

    async fn claim_digests(
        &self,
        now: i64,
        due: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Digest>> {
        self.noted(async {
            write_tx!(self, |c| notify::claim_digests(
                c,
                now,
                due,
                lease_until,
                limit
            ))
        })
        .await
    }

    async fn finish_digest(&self, d: &Digest, sent: bool, retry_at: i64) -> Result<()> {
        let d = d.clone();
        self.noted(async { write_tx!(self, |c| notify::finish_digest(c, &d, sent, retry_at)) })
            .await
    }

    async fn unsubscribe(&self, tenant: &str, user_id: &str) -> Result<bool> {
        let (t, user) = (tenant.to_owned(), user_id.to_owned());
        self.noted(async { write_tx!(self, |c| notify::unsubscribe(c, &t, &user)) })
            .await
    }

    async fn create_webhook(&self, w: &Webhook, max: u32) -> Result<()> {
        let w = w.clone();
        self.noted(async { write_tx!(self, |c| hooks::create(c, &w, max)) })
            .await
    }

    async fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>> {
        let mut c = self.reader.acquire().await?;
        hooks::list(&mut *c, tenant).await
    }

    async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool> {
        let (t, id) = (tenant.to_owned(), id.to_owned());
        self.noted(async { write_tx!(self, |c| hooks::delete(c, &t, &id)) })
            .await
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<PendingDelivery>> {
        let claim: &'static str = match self.backend {
            Backend::Sqlite => {
                static Q: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                Q.get_or_init(|| {
                    format!(
                        "{}) RETURNING id, webhook_id, msg_id, body, attempts, created_at",
                        hooks::CLAIM
                    )
                })
            }
            Backend::Postgres => {
                static Q: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                Q.get_or_init(|| format!("{} FOR UPDATE SKIP LOCKED) RETURNING id, webhook_id, msg_id, body, attempts, created_at", hooks::CLAIM))
            }
        };
        self.noted(async { write_tx!(self, |c| hooks::claim(c, claim, now, lease_until, limit)) })
            .await
    }

    async fn attempted(&self, d: &PendingDelivery, a: &Attempt, then: AfterAttempt) -> Result<()> {
        let (d, a) = (d.clone(), a.clone());
        self.noted(async { write_tx!(self, |c| hooks::attempted(c, &d, &a, then)) })
            .await
    }

    async fn record_attempt(&self, webhook_id: &str, a: &Attempt) -> Result<()> {
        let (id, a) = (webhook_id.to_owned(), a.clone());
        self.noted(async { write_tx!(self, |c| hooks::record(c, &id, &a)) })
            .await
    }

    async fn attempts(&self, webhook_id: &str, limit: u32) -> Result<Vec<Attempt>> {
        let mut c = self.reader.acquire().await?;
        hooks::attempts(&mut *c, webhook_id, limit).await
    }

    async fn next_delivery(&self) -> Result<Option<i64>> {
        let mut c = self.reader.acquire().await?;
        hooks::next_due(&mut *c).await
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
             DROP TABLE directory_users; DROP TABLE chat_followers; DROP TABLE notifications; \
             DROP TABLE webhooks; DROP TABLE webhook_outbox; DROP TABLE webhook_deliveries; \
             ALTER TABLE comments DROP COLUMN mentions; \
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
