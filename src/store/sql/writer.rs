//! The write path of the SQL store: group commit.
//!
//! Mutations queue for a writer. A writer takes every mutation waiting
//! (at most [`MAX_BATCH`]) and applies them in one transaction, each inside
//! its own savepoint, so one that is refused (or fails) rolls back alone;
//! then commits once and answers each in order. There is no timer: a lone
//! mutation is committed at once, and the mutations that arrive while a
//! commit is in flight make up the next batch, so a busy node pays one
//! commit (and, on PostgreSQL, one round trip of `BEGIN`/`COMMIT`) for many
//! mutations.
//!
//! On SQLite the writer is a thread of its own with its own rusqlite
//! connection: a whole batch (lock the image, read the chat, plan, write the
//! rows and the log, bump the seq) runs there without crossing threads, and
//! the one hand-off of each mutation is its way in and its answer out.
//! Reads keep sqlx's pool of read connections; WAL lets them run beside the
//! writer. On PostgreSQL a few writer tasks share the queue, each batch on a
//! pooled connection; the row lock each mutation takes on its image
//! (`lock_image`) keeps seqs gap-free across nodes as before.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::{self, args, Conn, Lite};
use super::rows::{load_chat, lock_image, resolve_attachments, write_event};
use super::{hooks, notify, Faults, SqlStore};
use crate::domain::chat::{Authority, Resolved};
use crate::domain::{fold, now_ms, plan, DomainError, Mutation, TenantId};
use crate::protocol::{Change, Event, EventKind};
use crate::store::{CommitHook, Committed, LoggedEvent, Result, StoreError};

/// Most mutations one transaction applies.
pub(super) const MAX_BATCH: usize = 256;
/// Mutations that may wait for a writer; past it, `apply` waits for room.
const QUEUE: usize = 4096;

/// What waits for a writer: a mutation (group-committed with the others
/// waiting), or another write that runs in a transaction of its own.
pub(super) enum Work {
    Apply(Box<Job>),
    /// SQLite only: runs on the writer thread; `true` when storage failed.
    Other(Box<dyn FnOnce(&mut Lite) -> bool + Send>),
}

/// One mutation waiting for a writer, and where its answer goes.
pub(super) struct Job {
    pub tenant: TenantId,
    pub m: Mutation,
    pub by: Authority,
    pub broadcast_id: Option<String>,
    /// The store's epoch, which webhook messages carry.
    pub epoch: Arc<str>,
    pub reply: oneshot::Sender<Result<Committed>>,
}

/// The queue in front of the writers.
pub(super) struct Writers {
    tx: mpsc::Sender<Work>,
    /// Told of every commit, in commit order, as it is answered.
    pub hook: Arc<OnceLock<CommitHook>>,
    pub stats: Arc<BatchStats>,
}

/// Transactions committed by the writers, and the mutations in them.
#[derive(Default)]
pub(crate) struct BatchStats {
    pub transactions: std::sync::atomic::AtomicU64,
    pub mutations: std::sync::atomic::AtomicU64,
}

impl BatchStats {
    fn count(&self, batch: usize) {
        self.transactions.fetch_add(1, Relaxed);
        self.mutations
            .fetch_add(u64::try_from(batch).unwrap_or(u64::MAX), Relaxed);
    }
}

impl Writers {
    /// Queues a mutation and waits for its answer.
    pub async fn apply(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<Committed>>,
    ) -> Result<Committed> {
        self.tx
            .send(Work::Apply(Box::new(job)))
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?
    }
}

impl Writers {
    /// Runs a write that is not a mutation on the SQLite writer thread, in
    /// a transaction of its own, after the work queued before it.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Lite) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Other(Box::new(move |c: &mut Lite| {
            let r = lite_transaction(c, op);
            let broke = matches!(r, Err(StoreError::Unavailable(_)));
            let _ = reply.send(r);
            broke
        }));
        self.tx
            .send(work)
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the database writer could not run the write".into())
        })?
    }
}

/// Everything queued now, after `first`, up to [`MAX_BATCH`]; a write
/// that is not a mutation ends the batch and is returned to run after it.
fn drain(first: Job, rx: &mut mpsc::Receiver<Work>) -> (Vec<Job>, Option<Work>) {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Work::Apply(j)) => batch.push(*j),
            Ok(other) => return (batch, Some(other)),
            Err(_) => break,
        }
    }
    (batch, None)
}

/// Answers a batch in order, then tells the hook of each commit in the
/// same order. Answers first: the hook wakes the publishing task (and,
/// through it, fan-out to every viewer), which would otherwise get a core
/// before the writers' callers and delay their answers.
fn answer(hook: &OnceLock<CommitHook>, batch: Vec<Job>, results: Vec<Result<Committed>>) {
    let mut told = Vec::new();
    for (job, r) in batch.into_iter().zip(results) {
        if let (Ok(c), Some(_)) = (&r, hook.get()) {
            if !c.events.is_empty() {
                told.push((
                    job.tenant.clone(),
                    Committed {
                        url_id: c.url_id.clone(),
                        seq: c.seq,
                        events: c.events.clone(),
                        chat: None,
                        comment: None,
                        notifications: c.notifications.clone(),
                        outboxed: c.outboxed,
                    },
                ));
            }
        }
        let _ = job.reply.send(r);
    }
    if let Some(hook) = hook.get() {
        for (tenant, c) in &told {
            hook(tenant, c);
        }
    }
}

/// Applies a batch inside an open transaction, one savepoint each; the
/// results in order. Commits nothing.
async fn apply_all<C: Conn>(c: &mut C, batch: &[Job]) -> Vec<Result<Committed>> {
    let mut out = Vec::with_capacity(batch.len());
    for job in batch {
        let r = async {
            c.exec("SAVEPOINT m", &[]).await?;
            let r = apply_one(c, job).await;
            if r.is_err() {
                c.exec("ROLLBACK TO SAVEPOINT m", &[]).await?;
            }
            c.exec("RELEASE SAVEPOINT m", &[]).await?;
            r
        }
        .await;
        out.push(r);
    }
    out
}

/// Whether a batch must be given up whole: a savepoint that could not be
/// rolled back, or storage that failed, leaves the transaction unusable.
fn failed(results: &[Result<Committed>]) -> Option<String> {
    results.iter().find_map(|r| match r {
        Err(StoreError::Unavailable(e)) => Some(e.clone()),
        _ => None,
    })
}

/// Validates, authorizes and stores one mutation with its events (see the
/// `Store::apply` invariant).
pub(super) async fn apply_one<C: Conn>(c: &mut C, job: &Job) -> Result<Committed> {
    let (m, by, broadcast_id) = (&job.m, &job.by, job.broadcast_id.as_deref());
    let tenant = job.tenant.as_str();
    let url_id = match (m, m.chat_id()) {
        (Mutation::CreateChat { url_id, .. }, _) => url_id.clone(),
        (_, Some(id)) => c
            .fetch_optional(
                "SELECT url_id FROM chats WHERE tenant_id = $1 AND id = $2",
                &args![tenant, id],
            )
            .await?
            .ok_or(DomainError::NotFound)
            .and_then(|r| {
                use super::conn::Cols;
                r.text("url_id").map_err(|_| DomainError::NotFound)
            })?,
        (_, None) => return Err(DomainError::NotFound.into()),
    };
    let now = now_ms();
    // Lock the image first: every write to its chats passes here, so what
    // is read next is what the previous writer committed.
    let mut seq = lock_image(c, tenant, &url_id, now).await?;
    let mut chat = match m.chat_id() {
        None => None,
        Some(id) => Some(
            load_chat(c, tenant, id)
                .await?
                .map(|(_, chat)| chat)
                .ok_or(DomainError::NotFound)?,
        ),
    };
    let resolved = Resolved {
        attachments: match m.attachment_ids() {
            Some(ids) => Some(resolve_attachments(c, tenant, ids, now).await?),
            None => None,
        },
        mentions: match m.mention_ids() {
            Some(ids) => Some(notify::resolve_mentions(c, tenant, ids).await?),
            None => None,
        },
    };
    // Whom an edited comment mentioned before: only the others are told.
    let mentioned_before = match (m, &chat) {
        (Mutation::EditComment { comment_id, .. }, Some(k)) => k
            .comments
            .iter()
            .find(|x| x.id == *comment_id)
            .map(|x| x.mentions.clone())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let kinds = plan(m, chat.as_ref(), by, now, seq.next(), resolved)?;
    let mut events = Vec::with_capacity(kinds.len());
    let mut comment = None;
    let mut written: Option<(String, bool)> = None;
    for kind in kinds {
        seq = seq.next();
        write_event(c, tenant, &url_id, seq, &kind, now).await?;
        match &kind {
            EventKind::NewImageChat { chat: k } => {
                written = Some((k.id.to_string(), true));
                comment = k.comments.first().cloned();
                chat = Some(k.clone());
            }
            EventKind::DeletedImageChat { .. } => chat = None,
            EventKind::ImageChatUpdated { change, chat_id } => {
                if let Change::CommentAdded { comment: k } | Change::CommentEdited { comment: k } =
                    change
                {
                    let new_comment = matches!(change, Change::CommentAdded { .. });
                    written = Some((chat_id.to_string(), new_comment));
                    comment = Some(k.clone());
                }
                if let Some(k) = chat.as_mut() {
                    fold(k, change, now);
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
        c.exec(
            "INSERT INTO events (tenant_id, url_id, seq, at, body) VALUES ($1, $2, $3, $4, $5)",
            &args![tenant, &url_id, seq.to_sql(), now, &body],
        )
        .await?;
        events.push(LoggedEvent {
            seq,
            body: Bytes::from(body),
        });
    }
    if let Mutation::CreateChat {
        image_url,
        page_url,
        ..
    } = m
    {
        // The latest URLs a client saw the image at; an absent one keeps
        // what is known.
        c.exec(
            "UPDATE images SET image_url = COALESCE($1, image_url), page_url = COALESCE($2, page_url) \
             WHERE tenant_id = $3 AND url_id = $4",
            &args![image_url.as_deref(), page_url.as_deref(), tenant, &url_id],
        )
        .await?;
    }
    if !events.is_empty() {
        c.exec(
            "UPDATE images SET seq = $1, last_activity = $2 WHERE tenant_id = $3 AND url_id = $4",
            &args![seq.to_sql(), now, tenant, &url_id],
        )
        .await?;
    }
    let notifications = match (&written, &comment) {
        (Some((chat_id, new_comment)), Some(k)) => {
            let w = notify::Written {
                url_id: &url_id,
                chat_id,
                comment: k,
                mentioned_before: &mentioned_before,
                new_comment: *new_comment,
                author_follows: matches!(by, Authority::User(a) if !a.user.anonymous),
            };
            notify::after_comment(c, tenant, &w, now).await?
        }
        _ => Vec::new(),
    };
    let logged: Vec<(i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e.seq.to_sql(),
                std::str::from_utf8(&e.body).unwrap_or_default(),
            )
        })
        .collect();
    let outboxed =
        hooks::queue(c, tenant, &job.epoch, &url_id, &logged, &notifications, now).await?;
    Ok(Committed {
        url_id,
        seq,
        events,
        chat,
        comment,
        notifications,
        outboxed,
    })
}

// --------------------------------------------------------------- SQLite ----

/// Starts the SQLite writer thread on the database at `path`.
pub(super) fn sqlite(
    path: String,
    faults: Arc<Faults>,
    unsaved: Arc<AtomicBool>,
) -> anyhow::Result<Writers> {
    let (tx, mut rx) = mpsc::channel::<Work>(QUEUE);
    let hook: Arc<OnceLock<CommitHook>> = Arc::default();
    let stats: Arc<BatchStats> = Arc::default();
    let counted = Arc::clone(&stats);
    // Opened here, so a database that cannot be opened stops start-up.
    let first = open_lite(&path)?;
    let hooked = Arc::clone(&hook);
    std::thread::Builder::new()
        .name("imagechat-sqlite-writer".into())
        .spawn(move || {
            let mut conn = Some(first);
            let mut next = None;
            loop {
                let work = match next.take() {
                    Some(w) => w,
                    None => match rx.blocking_recv() {
                        Some(w) => w,
                        None => break,
                    },
                };
                if conn.is_none() {
                    match open_lite(&path) {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            faults.note();
                            refuse(
                                work,
                                &hooked,
                                &format!("the database could not be opened: {e}"),
                            );
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                unsaved.store(true, Relaxed);
                let failed_now = match work {
                    Work::Other(run) => run(c),
                    Work::Apply(job) => {
                        let (batch, after) = drain(*job, &mut rx);
                        next = after;
                        counted.count(batch.len());
                        let results = run_lite_batch(c, &batch);
                        let broke = failed(&results).is_some();
                        answer(&hooked, batch, results);
                        broke
                    }
                };
                if failed_now {
                    // A connection that met a failing disk may stay broken
                    // after the disk recovers: start the next write afresh.
                    faults.note();
                    conn = None;
                }
            }
        })?;
    Ok(Writers { tx, hook, stats })
}

/// Answers work that cannot run: the database could not be opened.
fn refuse(work: Work, hook: &OnceLock<CommitHook>, msg: &str) {
    match work {
        Work::Apply(job) => answer(
            hook,
            vec![*job],
            vec![Err(StoreError::Unavailable(msg.to_owned()))],
        ),
        // Dropped unrun: its caller is told the writer could not run it.
        Work::Other(_) => {}
    }
}

/// A batch; if it fails whole, each of its mutations alone, so a mutation
/// fails only for its own sake.
fn run_lite_batch(c: &mut Lite, batch: &[Job]) -> Vec<Result<Committed>> {
    let results = run_lite(c, batch);
    if batch.len() > 1 && failed(&results).is_some() {
        return batch
            .iter()
            .map(|job| {
                run_lite(c, std::slice::from_ref(job))
                    .pop()
                    .unwrap_or_else(|| Err(StoreError::Unavailable("no result".into())))
            })
            .collect();
    }
    results
}

/// Runs `op` in a transaction of its own on `c` (`BEGIN IMMEDIATE`,
/// then `COMMIT`, or `ROLLBACK` when it fails).
pub(super) fn lite_transaction<T>(
    c: &mut Lite,
    op: impl FnOnce(&mut Lite) -> Result<T>,
) -> Result<T> {
    conn::now(c.exec("BEGIN IMMEDIATE", &[])).and_then(|r| r)?;
    match op(c) {
        Ok(v) => match conn::now(c.exec("COMMIT", &[])).and_then(|r| r) {
            Ok(_) => Ok(v),
            Err(e) => {
                let _ = conn::now(c.exec("ROLLBACK", &[]));
                Err(e)
            }
        },
        Err(e) => {
            let _ = conn::now(c.exec("ROLLBACK", &[]));
            Err(e)
        }
    }
}

fn open_lite(path: &str) -> anyhow::Result<Lite> {
    let c = rusqlite::Connection::open(path)?;
    c.set_prepared_statement_cache_capacity(64);
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
    )?;
    Ok(Lite(c))
}

/// One batch in one `BEGIN IMMEDIATE … COMMIT`. Every result is an error
/// when the transaction could not be begun or committed.
fn run_lite(c: &mut Lite, batch: &[Job]) -> Vec<Result<Committed>> {
    let together = lite_transaction(c, |c| {
        let results = conn::now(apply_all(c, batch))?;
        match failed(&results) {
            Some(e) => Err(StoreError::Unavailable(e)),
            None => Ok(results),
        }
    });
    together.unwrap_or_else(|e| {
        let msg = e.to_string();
        batch
            .iter()
            .map(|_| Err(StoreError::Unavailable(msg.clone())))
            .collect()
    })
}

// ----------------------------------------------------------- PostgreSQL ----

/// Starts `n` writer tasks on the pool.
pub(super) fn postgres(pool: sqlx::AnyPool, n: usize) -> Writers {
    let (tx, rx) = mpsc::channel::<Work>(QUEUE);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let hook: Arc<OnceLock<CommitHook>> = Arc::default();
    let stats: Arc<BatchStats> = Arc::default();
    for _ in 0..n.max(1) {
        let (rx, pool, hook) = (Arc::clone(&rx), pool.clone(), Arc::clone(&hook));
        let counted = Arc::clone(&stats);
        tokio::spawn(async move {
            loop {
                let batch = {
                    let mut rx = rx.lock().await;
                    // Only mutations are queued on PostgreSQL.
                    let Some(Work::Apply(first)) = rx.recv().await else {
                        break;
                    };
                    drain(*first, &mut rx).0
                };
                counted.count(batch.len());
                let results = run_pg(&pool, &batch).await;
                answer(&hook, batch, results);
            }
        });
    }
    Writers { tx, hook, stats }
}

/// One batch in one transaction. A batch that fails whole (a deadlock
/// between two batches locking the same images in another order, a lost
/// connection) is tried again one mutation per transaction, so a mutation
/// fails only for its own sake.
async fn run_pg(pool: &sqlx::AnyPool, batch: &[Job]) -> Vec<Result<Committed>> {
    let together = pg_transaction(pool, batch).await;
    match together {
        Ok(results) => results,
        Err(_) if batch.len() > 1 => {
            let mut out = Vec::with_capacity(batch.len());
            for job in batch {
                let r = pg_transaction(pool, std::slice::from_ref(job)).await;
                out.push(r.and_then(|mut v| {
                    v.pop()
                        .unwrap_or_else(|| Err(StoreError::Unavailable("no result".into())))
                }));
            }
            out
        }
        Err(e) => vec![Err(e)],
    }
}

async fn pg_transaction(pool: &sqlx::AnyPool, batch: &[Job]) -> Result<Vec<Result<Committed>>> {
    let mut tx = pool.begin().await?;
    let results = apply_all(&mut *tx, batch).await;
    if let Some(e) = failed(&results) {
        tx.rollback().await?;
        return Err(StoreError::Unavailable(e));
    }
    tx.commit().await?;
    Ok(results)
}

impl SqlStore {
    /// Transactions the writers began, and the mutations in them.
    pub(crate) fn batch_stats(&self) -> (u64, u64) {
        let s = &self.writers.stats;
        (s.transactions.load(Relaxed), s.mutations.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ImageKey;
    use crate::store::Store;

    fn user(id: &str) -> Authority {
        crate::testing::user("t", id)
    }

    fn job(tenant: &str, m: Mutation, by: Authority) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            tenant: TenantId::from(tenant),
            m,
            by,
            broadcast_id: None,
            epoch: Arc::from("test"),
            reply,
        }
    }

    use crate::testing::create;

    async fn tenant(store: &SqlStore) -> String {
        let id = format!("t{}", crate::domain::random_id(8).to_lowercase());
        crate::testing::tenant(store, &id).await;
        id
    }

    /// One transaction holds accepted and refused mutations: each refused
    /// one changes nothing (not even the image row its lock created), the
    /// accepted ones take consecutive seqs, and all of them are answered in
    /// order.
    async fn refused_mutations_roll_back_alone<F, Fut>(store: &SqlStore, run: F)
    where
        F: Fn(Vec<Job>) -> Fut,
        Fut: std::future::Future<Output = Vec<Result<Committed>>>,
    {
        let t = tenant(store).await;
        let first = run(vec![job(&t, create("a", vec![]), user("u1"))]).await;
        let chat = first[0].as_ref().unwrap().chat.clone().unwrap();
        let id = chat.id.clone();
        let batch = vec![
            job(
                &t,
                Mutation::AddComment {
                    chat_id: id.clone(),
                    text: "second".into(),
                    attachments: vec![],
                    mentions: vec![],
                },
                user("u1"),
            ),
            job(&t, create("fresh", vec!["nope".into()]), user("u1")),
            job(
                &t,
                Mutation::DeleteChat {
                    chat_id: id.clone(),
                },
                user("u2"),
            ),
            job(
                &t,
                Mutation::AddComment {
                    chat_id: "missing".into(),
                    text: "x".into(),
                    attachments: vec![],
                    mentions: vec![],
                },
                user("u1"),
            ),
            job(
                &t,
                Mutation::UpdateChat {
                    chat_id: id.clone(),
                    position: None,
                    shape: None,
                    resolved: Some(true),
                },
                user("u1"),
            ),
        ];
        let results = run(batch).await;
        let seqs: Vec<Option<u64>> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|c| c.seq.get()))
            .collect();
        assert_eq!(seqs, [Some(2), None, None, None, Some(3)]);
        assert!(matches!(
            results[1],
            Err(StoreError::Domain(DomainError::Invalid { .. }))
        ));
        assert!(matches!(
            results[2],
            Err(StoreError::Domain(DomainError::Forbidden(_)))
        ));
        assert!(matches!(
            results[3],
            Err(StoreError::Domain(DomainError::NotFound))
        ));
        let snap = store.snapshot(&ImageKey::new(&t, "a")).await.unwrap();
        assert_eq!(snap.seq.get(), 3);
        assert_eq!(snap.chats.len(), 1);
        assert_eq!(snap.chats[0].comments.len(), 2);
        assert!(snap.chats[0].resolved);
        let logged: Vec<u64> = store
            .events_since(&ImageKey::new(&t, "a"), Seq(0), 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq.get())
            .collect();
        assert_eq!(logged, [1, 2, 3]);
        let images = store.images(&t, 10).await.unwrap();
        assert_eq!(
            images.iter().map(|i| i.url_id.as_str()).collect::<Vec<_>>(),
            ["a"],
            "the refused create left no image row"
        );
    }

    use crate::domain::Seq;

    #[tokio::test]
    async fn sqlite_refused_mutations_roll_back_alone() {
        let (_, dir, file) = crate::store::open_temp("batch").await;
        let url = format!("sqlite://{}", file.display());
        let store = SqlStore::open(&url, 2).await.unwrap();
        let lite = std::sync::Mutex::new(open_lite(&file.display().to_string()).unwrap());
        refused_mutations_roll_back_alone(&store, |batch| {
            let r = run_lite(&mut lite.lock().unwrap(), &batch);
            async move { r }
        })
        .await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn postgres_refused_mutations_roll_back_alone() {
        let url = std::env::var("IMAGECHAT_CLUSTER_POSTGRES")
            .expect("IMAGECHAT_CLUSTER_POSTGRES names a PostgreSQL database for this test");
        let store = SqlStore::open(&url, 4).await.unwrap();
        let pool = store.writer.clone();
        refused_mutations_roll_back_alone(&store, |batch| {
            let pool = pool.clone();
            async move { run_pg(&pool, &batch).await }
        })
        .await;
    }

    /// Mutations that arrive while a transaction is under way are committed
    /// together in the next one, with gap-free seqs.
    #[tokio::test]
    async fn mutations_that_wait_are_committed_together() {
        let (_, dir, file) = crate::store::open_temp("group").await;
        let url = format!("sqlite://{}", file.display());
        let store = Arc::new(SqlStore::open(&url, 2).await.unwrap());
        let t = tenant(&store).await;
        // Another connection holds the write lock, so the writer waits in
        // its first transaction while the rest queue.
        let blocker = rusqlite::Connection::open(&file).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let before = store.batch_stats();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (store, t) = (Arc::clone(&store), TenantId::from(t.as_str()));
                tokio::spawn(async move {
                    store
                        .apply(&t, &create("img", vec![]), &user("u"), None)
                        .await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        blocker.execute_batch("COMMIT").unwrap();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap().unwrap().seq.get());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
        let after = store.batch_stats();
        assert_eq!(after.1 - before.1, 100);
        assert!(
            after.0 - before.0 <= 3,
            "100 waiting mutations took {} transactions",
            after.0 - before.0
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod one_writer {
    use super::*;
    use crate::store::{Store, UsageCounts, UsageDelta};

    /// Every write of the process goes through the one writer: a usage
    /// flush during a stream of mutations neither waits for SQLite's lock
    /// nor makes them wait (SQLite's busy handler waits by sleeping, up to
    /// 100 ms a try, and a second writing connection starved or stalled).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_writes_take_turns_with_a_stream_of_mutations() {
        let (_, dir, file) = crate::store::open_temp("one-writer").await;
        let store = Arc::new(
            SqlStore::open(&format!("sqlite://{}", file.display()), 2)
                .await
                .unwrap(),
        );
        crate::testing::tenant(store.as_ref(), "t").await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                tokio::spawn(async move {
                    let by = crate::testing::user("t", "u");
                    let mut slowest = std::time::Duration::ZERO;
                    while !stop.load(Relaxed) {
                        let m = crate::testing::create(&format!("img{i}"), vec![]);
                        let t0 = std::time::Instant::now();
                        store
                            .apply(&TenantId::from("t"), &m, &by, None)
                            .await
                            .unwrap();
                        slowest = slowest.max(t0.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        let mut slowest_flush = std::time::Duration::ZERO;
        for i in 0..40u64 {
            let t0 = std::time::Instant::now();
            store
                .add_usage(&[UsageDelta {
                    tenant_id: "t".into(),
                    day: "2026-12-06".into(),
                    counts: UsageCounts {
                        messages: i,
                        ..UsageCounts::default()
                    },
                }])
                .await
                .expect("a usage flush under load succeeds");
            slowest_flush = slowest_flush.max(t0.elapsed());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.store(true, Relaxed);
        let mut slowest_mutation = std::time::Duration::ZERO;
        for w in writers {
            slowest_mutation = slowest_mutation.max(w.await.unwrap());
        }
        // No sleep in a busy handler: nothing waits tens of milliseconds.
        assert!(
            slowest_flush < std::time::Duration::from_millis(100),
            "a usage flush took {slowest_flush:?}"
        );
        assert!(
            slowest_mutation < std::time::Duration::from_millis(100),
            "a mutation took {slowest_mutation:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod answer_first {
    use super::*;
    use crate::store::Store;

    /// A caller gets its answer before the commit hook runs (the hook wakes
    /// publishing and fan-out, which must not delay the answer), and the
    /// hook still sees the commit.
    #[tokio::test]
    async fn the_caller_is_answered_before_the_hook_runs() {
        let (_, dir, file) = crate::store::open_temp("answer-first").await;
        let store = SqlStore::open(&format!("sqlite://{}", file.display()), 2)
            .await
            .unwrap();
        crate::testing::tenant(&store, "t").await;
        let (seen, mut told) = tokio::sync::mpsc::unbounded_channel();
        store.on_commit(Box::new(move |_, c: &Committed| {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let _ = seen.send(c.events.last().map(|e| e.seq.get()));
        }));
        let (by, m) = (
            crate::testing::user("t", "u"),
            crate::testing::create("img", vec![]),
        );
        let t0 = std::time::Instant::now();
        let c = store
            .apply(&TenantId::from("t"), &m, &by, None)
            .await
            .unwrap();
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(400),
            "the answer waited for the hook: {:?}",
            t0.elapsed()
        );
        assert_eq!(told.recv().await, Some(Some(c.seq.get())));
        let _ = std::fs::remove_dir_all(dir);
    }
}
