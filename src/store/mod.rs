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
use crate::protocol::{Chat, Comment, Upload};

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

/// Called with the tenant, image (urlId) and logged events of each
/// committed mutation that logged any, in commit order (which is seq order
/// for each image), once its caller is answered; see [`Store::on_commit`].
/// Runs on the store's writer: it must not block.
pub type CommitHook = Box<dyn Fn(&TenantId, &str, &[LoggedEvent]) + Send + Sync>;

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
