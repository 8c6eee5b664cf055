//! Storage: one `Store` trait, one module per backend, chosen once at start-up
//! from the database URL. A store owns durability and the per-image event log;
//! it knows nothing of sockets or HTTP.
//!
//! Invariant: `apply` validates against the state it reads inside its write
//! transaction, takes the image's next seqs there and appends the events to
//! the log in the same transaction, so seqs are gap-free and a refused
//! mutation writes nothing.

pub mod sql;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::auth::TokenKey;
use crate::domain::chat::Authority;
use crate::domain::{DomainError, ImageKey, Mutation, Seq, Tenant, TenantId};
pub use crate::protocol::ImageSummary;
use crate::protocol::{Chat, Comment, Notification, Upload, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The tenant's uploads of the day would pass its quota: `used` bytes
    /// stored today, `size` the refused upload's (0 when refused before it
    /// was read), `quota` the limit.
    #[error(
        "the daily upload quota of {quota} bytes has no room for {size} more ({used} stored today)"
    )]
    UploadQuota { used: u64, size: u64, quota: u64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One logged event: its seq and the exact JSON sent to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub seq: Seq,
    pub body: Bytes,
}

/// What a successful `apply` did.
#[derive(Debug, Clone)]
pub struct Committed {
    pub url_id: String,
    /// The image's latest seq after the write (unchanged for a no-op).
    pub seq: Seq,
    /// The events logged, in seq order; empty for a no-op.
    pub events: Vec<LoggedEvent>,
    /// The chat as it is now, `None` once deleted.
    pub chat: Option<Chat>,
    /// The comment that was added or edited, if any.
    pub comment: Option<Comment>,
    /// The notifications the write made (contract §13), for their users'
    /// connections.
    pub notifications: Vec<UserNotification>,
    /// Webhook messages the write queued in the outbox (contract §12).
    pub outboxed: usize,
}

/// A notification for one user, with that user's unread count after it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserNotification {
    pub user_id: String,
    pub notification: Notification,
    pub unread: u64,
}

/// A user of a tenant's directory as the SSO payload last described them
/// (contract §13).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryUser {
    pub user: User,
    /// Never shown to other users.
    pub email: Option<String>,
    /// `en` or `ja`.
    pub locale: String,
    /// `false` when the payload said `optedInNotifications: false`.
    pub mail_ok: bool,
}

/// A tenant's webhook endpoint (contract §12).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    /// Event types delivered, in the order given.
    pub events: Vec<String>,
    /// `whsec_` and base64 of the signing key.
    pub secret: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A webhook message taken from the outbox for one delivery attempt.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// The outbox row.
    pub id: i64,
    pub webhook: Webhook,
    /// `webhook-id`: the same on every attempt of this message.
    pub msg_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the message was queued, ms since the Unix epoch.
    pub created_at: i64,
}

/// One delivery attempt as recorded (contract §12
/// `GET /api/v1/tenant/webhooks/{id}/deliveries`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Ms since the Unix epoch.
    pub at: i64,
    pub msg_id: String,
    /// The HTTP status, `None` when there was no answer.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// What becomes of an outbox message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Delivered: forget it.
    Delivered,
    /// Try again at this time (ms since the Unix epoch).
    RetryAt(i64),
    /// Failed for too long: forget it.
    GiveUp,
}

/// The notifications of one user to put in an e-mail digest, claimed by
/// this node until `Store::finish_digest`.
#[derive(Debug, Clone)]
pub struct Digest {
    pub tenant_id: String,
    pub user: DirectoryUser,
    /// Unread and never mailed, oldest first, each with the page its image
    /// was last seen on (contract §10 `pageUrl`).
    pub notifications: Vec<(Notification, Option<String>)>,
    /// Every notification this digest settles (the unread ones above and
    /// the read ones that will never be mailed).
    pub settles: Vec<i64>,
}

/// An image's chats at one log position, with the URLs it was last seen at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub seq: Seq,
    /// Oldest first.
    pub chats: Vec<Chat>,
    pub image_url: Option<String>,
    pub page_url: Option<String>,
}

/// One chat found by its id, with where it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundChat {
    pub url_id: String,
    pub chat: Chat,
    pub image_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub messages: u64,
    pub bandwidth: u64,
    pub conversations: u64,
    pub comments: u64,
    pub peak_connections: u64,
    /// Bytes of uploads stored (written by [`Store::add_upload`], not by
    /// the periodic flush).
    pub upload_bytes: u64,
}

impl UsageCounts {
    pub fn is_zero(&self) -> bool {
        *self == UsageCounts::default()
    }
    /// Adds counters; peaks merge by maximum.
    pub fn merge(&mut self, o: &UsageCounts) {
        self.messages += o.messages;
        self.bandwidth += o.bandwidth;
        self.conversations += o.conversations;
        self.comments += o.comments;
        self.peak_connections = self.peak_connections.max(o.peak_connections);
        self.upload_bytes += o.upload_bytes;
    }
}

#[derive(Debug, Clone)]
pub struct UsageDelta {
    pub tenant_id: String,
    /// UTC date, YYYY-MM-DD.
    pub day: String,
    pub counts: UsageCounts,
}

/// An upload's record (contract §14); its bytes are in the upload storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUpload {
    pub tenant_id: String,
    pub upload: Upload,
    /// A strong validator of the stored bytes, quoted (the id: an upload's
    /// bytes never change).
    pub etag: String,
    /// The image of a `/s/{id}` page: never swept.
    pub page: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// What [`Store::add_upload`] records.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub record: StoredUpload,
    /// The UTC day (YYYY-MM-DD) whose `uploadBytes` the upload counts in.
    pub day: String,
    /// The tenant's daily upload quota in bytes; `None`: unlimited.
    pub quota: Option<u64>,
}

/// Called with the tenant and what each committed mutation that logged
/// anything did (its image, events, notifications; its `chat` and
/// `comment` are left out), in commit order (which is seq order for each
/// image), once its caller is answered; see [`Store::on_commit`]. Runs on
/// the store's writer: it must not block.
pub type CommitHook = Box<dyn Fn(&TenantId, &Committed) + Send + Sync>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The name of this database's log life; see the contract's "epoch".
    fn epoch(&self) -> &str;
    /// The key that signs session tokens, shared by every node of the database.
    fn token_key(&self) -> &TokenKey;
    async fn ping(&self) -> Result<()>;
    /// Housekeeping, called about once a second: for SQLite, moving the
    /// write-ahead log into the database file, which would otherwise stall
    /// the write that happened to fill it.
    async fn maintain(&self) -> Result<()>;

    async fn create_tenant(&self, t: &Tenant) -> Result<()>;
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>>;

    /// The image's chats, oldest first, and the seq they reflect.
    async fn snapshot(&self, image: &ImageKey) -> Result<Snapshot>;
    /// One chat of the tenant with its comments, wherever it lives.
    async fn chat(&self, tenant: &TenantId, chat_id: &str) -> Result<Option<FoundChat>>;
    async fn latest_seq(&self, image: &ImageKey) -> Result<Seq>;
    /// Logged events with seq > `since`, in order, at most `limit`.
    async fn events_since(
        &self,
        image: &ImageKey,
        since: Seq,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>>;
    /// Validates, authorizes and stores one mutation with its events.
    /// Mutations that arrive together may be committed in one transaction,
    /// each in a savepoint of its own: one refused changes nothing and
    /// does not affect the others.
    async fn apply(
        &self,
        tenant: &TenantId,
        m: &Mutation,
        by: &Authority,
        broadcast_id: Option<&str>,
    ) -> Result<Committed>;
    /// Sets the hook told of every commit of `apply`, in commit order, so
    /// events can be published in the order they were logged whoever
    /// waits for which answer. Set once; later calls are ignored.
    fn on_commit(&self, hook: CommitHook);
    /// Write transactions begun by `apply` so far, and the mutations they
    /// held (their ratio is the average group commit).
    fn write_batches(&self) -> (u64, u64) {
        (0, 0)
    }

    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()>;
    /// Stored usage days within `from..=to` (dates as YYYY-MM-DD), in order.
    async fn usage(&self, tenant: &str, from: &str, to: &str)
        -> Result<Vec<(String, UsageCounts)>>;
    /// The tenant's images, latest activity first.
    async fn images(&self, tenant: &str, limit: u32) -> Result<Vec<ImageSummary>>;

    /// Records a stored upload and adds its bytes to the day's
    /// `uploadBytes`, in one transaction.
    ///
    /// Errors: [`StoreError::UploadQuota`] (nothing recorded) when the
    /// day's bytes would pass `quota`; [`StoreError::Conflict`] for an id
    /// that exists.
    async fn add_upload(&self, u: &NewUpload) -> Result<()>;
    /// The upload of an id, whatever its tenant.
    async fn upload(&self, id: &str) -> Result<Option<StoredUpload>>;
    /// Forgets at most `limit` uploads that no comment attaches, that are
    /// not a page's image, and that were last touched (created or
    /// attached) before `before` (ms since the epoch); returns their ids,
    /// whose bytes the caller then removes from the upload storage.
    async fn sweep_uploads(&self, before: i64, limit: u32) -> Result<Vec<String>>;
    /// Forgets one upload of `tenant` whatever attaches it (the comments
    /// keep naming it); `false` when the tenant has no such upload.
    async fn delete_upload(&self, tenant: &str, id: &str) -> Result<bool>;

    // ------------------------------------- directory, follows (§13) ----

    /// Adds or updates an SSO user in the tenant's directory. Leaves an
    /// earlier unsubscribe in force.
    async fn remember_user(&self, tenant: &str, u: &DirectoryUser) -> Result<()>;
    /// Up to `limit` users of the directory whose name starts with
    /// `prefix` (compared lower-cased), by name.
    async fn find_users(&self, tenant: &str, prefix: &str, limit: u32) -> Result<Vec<User>>;
    /// Sets whether a user follows a chat; `false` when there is no such
    /// chat.
    async fn set_following(
        &self,
        tenant: &str,
        chat_id: &str,
        user_id: &str,
        following: bool,
    ) -> Result<bool>;
    /// Whether a user follows a chat; `None` when there is no such chat.
    async fn following(&self, tenant: &str, chat_id: &str, user_id: &str) -> Result<Option<bool>>;

    // ------------------------------------------- notifications (§13) ----

    /// A user's notifications newest first, at most `limit`, older than
    /// the id `before` when given; and the user's unread count.
    async fn notifications(
        &self,
        tenant: &str,
        user_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<Notification>, u64)>;
    /// Marks a user's notifications read (those of `ids`, or all); the
    /// unread count after.
    async fn mark_read(&self, tenant: &str, user_id: &str, ids: Option<&[i64]>) -> Result<u64>;
    /// Claims, until `lease_until`, up to `limit` users whose oldest
    /// notification not yet mailed is at or before `due` (ms), with what
    /// to mail them. Users who cannot be mailed (no address, opted out,
    /// unsubscribed) are settled without a digest.
    async fn claim_digests(
        &self,
        now: i64,
        due: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Digest>>;
    /// Ends a claim: when `sent`, the digest's notifications count as
    /// mailed; otherwise they wait until `retry_at`.
    async fn finish_digest(&self, d: &Digest, sent: bool, retry_at: i64) -> Result<()>;
    /// Stops all e-mail to a user of a tenant; `false` when unknown.
    async fn unsubscribe(&self, tenant: &str, user_id: &str) -> Result<bool>;

    // ------------------------------------------------ webhooks (§12) ----

    /// Errors: [`StoreError::Conflict`] when the tenant has `max` already.
    async fn create_webhook(&self, w: &Webhook, max: u32) -> Result<()>;
    /// The tenant's endpoints, oldest first.
    async fn webhooks(&self, tenant: &str) -> Result<Vec<Webhook>>;
    /// Deletes an endpoint with its pending messages; `false` when the
    /// tenant has no such endpoint.
    async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool>;
    /// Takes up to `limit` messages due at `now` whose image has no earlier
    /// message pending for their endpoint, leased until `lease_until` (a
    /// node that dies leaves them to others after that).
    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<PendingDelivery>>;
    /// Records an attempt of a claimed message and what becomes of it.
    async fn attempted(&self, d: &PendingDelivery, a: &Attempt, then: AfterAttempt) -> Result<()>;
    /// Records an attempt that is no outbox message's (a test event).
    async fn record_attempt(&self, webhook_id: &str, a: &Attempt) -> Result<()>;
    /// The latest `limit` attempts of an endpoint, newest first.
    async fn attempts(&self, webhook_id: &str, limit: u32) -> Result<Vec<Attempt>>;
    /// The earliest time (ms) a message that may be claimed next (the head
    /// of its image's queue) is due or its lease ends, if any.
    async fn next_delivery(&self) -> Result<Option<i64>>;
}

/// A store on a new SQLite file in the temporary directory, and that
/// directory (for tests).
#[cfg(test)]
pub(crate) async fn open_temp(
    name: &str,
) -> (
    std::sync::Arc<dyn Store>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", crate::domain::random_id(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("store.db");
    let store = open(&format!("sqlite://{}", file.display()), 1)
        .await
        .unwrap();
    (store, dir, file)
}

/// Opens the store named by a database URL (`sqlite://PATH` or
/// `postgres://…`); `pool` bounds its connections.
pub async fn open(url: &str, pool: u32) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(std::sync::Arc::new(sql::SqlStore::open(url, pool).await?))
}
