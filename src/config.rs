//! Settings of `imagechat serve`: flags, each also an `IMAGECHAT_*`
//! environment variable of the same name. `Debug` hides secrets.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, clap::Args)]
pub struct Config {
    /// Address and port to listen on (port 0 picks a free one and logs it).
    #[arg(long, env = "IMAGECHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// `sqlite://PATH` (one node) or `postgres://…` (shared by many nodes).
    #[arg(
        long,
        env = "IMAGECHAT_DATABASE",
        default_value = "sqlite://imagechat.db"
    )]
    pub database: String,
    /// Most database connections this node opens.
    #[arg(long, env = "IMAGECHAT_DATABASE_POOL", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool: u32,
    /// `memory` (one node) or `redis://…` (shared by many nodes).
    #[arg(long, env = "IMAGECHAT_BROKER", default_value = "memory")]
    pub broker: String,
    /// Enables the operator calls. Without it the server creates the open
    /// `demo` tenant.
    #[arg(long, env = "IMAGECHAT_ADMIN_KEY")]
    pub admin_key: Option<String>,
    /// Sustained REST mutations per user per minute; 0 = unlimited.
    #[arg(long, env = "IMAGECHAT_WRITE_RATE_PER_MINUTE", default_value_t = 60)]
    pub write_rate_per_minute: u32,
    /// Mutations a user may make at once before the rate applies.
    #[arg(long, env = "IMAGECHAT_WRITE_BURST", default_value_t = 20)]
    pub write_burst: u32,
    /// Reverse proxies in front of this server whose `X-Forwarded-For`
    /// entries are believed; the client's address for the per-address
    /// limits is the entry this many places from the right. 0: the TCP
    /// peer's address, and the header is ignored.
    #[arg(long, env = "IMAGECHAT_TRUSTED_PROXIES", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub trusted_proxies: u32,
    /// Sessions (`POST /api/v1/sessions`) one client address may create
    /// per minute, sustained; 0 = unlimited.
    #[arg(
        long,
        env = "IMAGECHAT_SESSIONS_PER_ADDRESS_PER_MINUTE",
        default_value_t = 120
    )]
    pub sessions_per_address_per_minute: u32,
    /// Sessions one address may create at once before that rate applies
    /// (a class or office behind one address opening the page together).
    #[arg(long, env = "IMAGECHAT_SESSION_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub session_burst: u32,
    /// REST mutations by anonymous users from one client address per
    /// minute, whatever their sessions; 0 = unlimited.
    #[arg(
        long,
        env = "IMAGECHAT_ANONYMOUS_WRITES_PER_ADDRESS_PER_MINUTE",
        default_value_t = 120
    )]
    pub anonymous_writes_per_address_per_minute: u32,
    /// Anonymous mutations one address may make at once before that rate
    /// applies.
    #[arg(long, env = "IMAGECHAT_ANONYMOUS_WRITE_BURST", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub anonymous_write_burst: u32,
    /// Failed operator-key and tenant-secret attempts one client address
    /// may make per minute; beyond them the address gets 429 for those
    /// calls, right key or not, until its bucket refills. 0 = unlimited.
    #[arg(
        long,
        env = "IMAGECHAT_AUTH_FAILURES_PER_ADDRESS_PER_MINUTE",
        default_value_t = 10
    )]
    pub auth_failures_per_address_per_minute: u32,
    /// Failed attempts one address may make at once before that rate applies.
    #[arg(long, env = "IMAGECHAT_AUTH_FAILURE_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_burst: u32,
    /// WebSockets one client address may hold open at once; beyond it an
    /// upgrade is answered 429. 0 = unlimited.
    #[arg(long, env = "IMAGECHAT_WEBSOCKETS_PER_ADDRESS", default_value_t = 1000)]
    pub websockets_per_address: u32,
    /// PEM certificate chain: serve HTTPS and WSS on the same port.
    #[arg(long, env = "IMAGECHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "IMAGECHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// `text` or `json`.
    #[arg(long, env = "IMAGECHAT_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Seconds between WebSocket pings; a connection silent for 2.5× this is closed.
    #[arg(long, env = "IMAGECHAT_HEARTBEAT", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat: u64,
    /// An image sends its viewers one frame per this many milliseconds on
    /// average (two at once at most), batching the events that arrive
    /// meanwhile; a quiet image sends at once. 0 never waits.
    #[arg(long, env = "IMAGECHAT_BATCH_WINDOW_MS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub batch_window_ms: u64,
    /// Frames (a message or a batch each) a connection may have waiting for
    /// its socket before it is closed as a slow consumer.
    #[arg(long, env = "IMAGECHAT_OUTBOX_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub outbox_capacity: u64,
    /// Most connections (HTTP and WebSocket) this node holds open; beyond
    /// it a new connection is answered 503 with `Retry-After` and closed,
    /// and the open ones are untouched.
    #[arg(long, env = "IMAGECHAT_MAX_CONNECTIONS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections: u64,
    /// Seconds a request body may take to arrive once its headers have;
    /// slower ones are answered 408.
    #[arg(long, env = "IMAGECHAT_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
    /// Lifetime of a session token, in hours.
    #[arg(long, env = "IMAGECHAT_SESSION_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub session_hours: u64,
    /// Serve the widget and pages from this folder instead of the copies
    /// built into the binary (for working on them).
    #[arg(long, env = "IMAGECHAT_ASSETS_DIR")]
    pub assets_dir: Option<PathBuf>,
    /// The origin clients reach this server at (`https://chat.example.com`),
    /// used where an answer names the server's own URLs (annotation ids).
    /// Without it, the request's `Host` is used, over https when TLS is on.
    #[arg(long, env = "IMAGECHAT_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Serve `/metrics` on this address only (e.g. `127.0.0.1:9090`), not on
    /// the public port: the metrics name tenants.
    #[arg(long, env = "IMAGECHAT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where uploaded images are kept: `file://PATH` (relative to the
    /// working directory, or `file:///absolute/path`) or
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=NAME` (credentials from
    /// the `AWS_*` environment variables).
    #[arg(
        long,
        env = "IMAGECHAT_UPLOADS",
        default_value = "file://imagechat-uploads"
    )]
    pub uploads: String,
    /// Largest upload body in bytes; larger ones are answered 413.
    #[arg(long, env = "IMAGECHAT_UPLOAD_MAX_BYTES", default_value_t = 10 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024))]
    pub upload_max_bytes: u64,
    /// Bytes of uploads one tenant may store per UTC day; beyond it uploads
    /// are answered 429 until midnight UTC. 0 = unlimited.
    #[arg(long, env = "IMAGECHAT_UPLOAD_QUOTA_BYTES_PER_DAY", default_value_t = 1024 * 1024 * 1024)]
    pub upload_quota_bytes_per_day: u64,
    /// Seconds after which an upload that no comment attaches (and that is
    /// not a `/s/{id}` page's image) is deleted; the sweep runs every tenth
    /// of this (at least each second, at most each hour).
    #[arg(long, env = "IMAGECHAT_UPLOAD_SWEEP_AFTER", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=10 * 365 * 86_400))]
    pub upload_sweep_after: u64,
    /// Bytes of encoded image snapshots (`GET /api/v1/chats`) kept in
    /// memory, least recently used dropped first; 0 turns the cache off.
    #[arg(long, env = "IMAGECHAT_SNAPSHOT_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub snapshot_cache_bytes: usize,
    /// Lets webhooks reach loopback, private, link-local and unique-local
    /// addresses (for tests and private deployments; contract §12).
    #[arg(long, env = "IMAGECHAT_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Milliseconds before a failed webhook delivery's first retry; each
    /// later retry waits about twice as long, at most an hour.
    #[arg(long, env = "IMAGECHAT_WEBHOOK_RETRY_BASE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_retry_base_ms: u64,
    /// The SMTP server of notification e-mail: `smtp://host:port`
    /// (STARTTLS when offered) or `smtps://host:port`, with optional
    /// `user:password@`. Without it no e-mail is sent.
    #[arg(long, env = "IMAGECHAT_SMTP_URL", requires = "mail_from")]
    pub smtp_url: Option<String>,
    /// The `From` address of notification e-mail.
    #[arg(long, env = "IMAGECHAT_MAIL_FROM", requires = "smtp_url")]
    pub mail_from: Option<String>,
    /// A user gets at most one e-mail this often: the digest is sent this
    /// many seconds after the first notification not yet mailed.
    #[arg(long, env = "IMAGECHAT_EMAIL_DIGEST_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=7 * 86_400))]
    pub email_digest_seconds: u64,
}

/// An http(s) origin without a trailing slash.
fn parse_public_url(raw: &str) -> Result<String, String> {
    let t = raw.trim().trim_end_matches('/');
    crate::domain::validate::web_url("public-url", t).map_err(|e| e.to_string())?;
    Ok(t.to_owned())
}

impl Config {
    /// Defaults for tests and embedding: like `imagechat serve` with no flags,
    /// but on the given database.
    pub fn for_database(database: impl Into<String>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: database.into(),
            database_pool: 8,
            broker: "memory".into(),
            admin_key: None,
            write_rate_per_minute: 60,
            write_burst: 20,
            trusted_proxies: 0,
            sessions_per_address_per_minute: 120,
            session_burst: 100,
            anonymous_writes_per_address_per_minute: 120,
            anonymous_write_burst: 120,
            auth_failures_per_address_per_minute: 10,
            auth_failure_burst: 10,
            websockets_per_address: 1000,
            tls_cert: None,
            tls_key: None,
            log_format: "text".into(),
            heartbeat: 25,
            batch_window_ms: 20,
            outbox_capacity: 1024,
            max_connections: 100_000,
            body_timeout: 30,
            session_hours: 24,
            assets_dir: None,
            public_url: None,
            metrics_listen: None,
            uploads: "file://imagechat-uploads".into(),
            upload_max_bytes: 10 * 1024 * 1024,
            upload_quota_bytes_per_day: 1024 * 1024 * 1024,
            upload_sweep_after: 86_400,
            snapshot_cache_bytes: 64 * 1024 * 1024,
            webhook_allow_private: false,
            webhook_retry_base_ms: 5000,
            smtp_url: None,
            mail_from: None,
            email_digest_seconds: 600,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &redact_url(&self.database))
            .field("database_pool", &self.database_pool)
            .field("broker", &redact_url(&self.broker))
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<redacted>"))
            .field("write_rate_per_minute", &self.write_rate_per_minute)
            .field("write_burst", &self.write_burst)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "sessions_per_address_per_minute",
                &self.sessions_per_address_per_minute,
            )
            .field("session_burst", &self.session_burst)
            .field(
                "anonymous_writes_per_address_per_minute",
                &self.anonymous_writes_per_address_per_minute,
            )
            .field("anonymous_write_burst", &self.anonymous_write_burst)
            .field(
                "auth_failures_per_address_per_minute",
                &self.auth_failures_per_address_per_minute,
            )
            .field("auth_failure_burst", &self.auth_failure_burst)
            .field("websockets_per_address", &self.websockets_per_address)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("heartbeat", &self.heartbeat)
            .field("batch_window_ms", &self.batch_window_ms)
            .field("outbox_capacity", &self.outbox_capacity)
            .field("max_connections", &self.max_connections)
            .field("body_timeout", &self.body_timeout)
            .field("session_hours", &self.session_hours)
            .field("assets_dir", &self.assets_dir)
            .field("public_url", &self.public_url)
            .field("metrics_listen", &self.metrics_listen)
            .field("uploads", &redact_url(&self.uploads))
            .field("upload_max_bytes", &self.upload_max_bytes)
            .field("snapshot_cache_bytes", &self.snapshot_cache_bytes)
            .field(
                "upload_quota_bytes_per_day",
                &self.upload_quota_bytes_per_day,
            )
            .field("upload_sweep_after", &self.upload_sweep_after)
            .finish()
    }
}

/// Hides the password of `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    let user = auth.split(':').next().unwrap_or("");
    format!("{scheme}://{user}:<redacted>@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let mut c = Config::for_database("postgres://app:hunter2@db/imagechat");
        c.admin_key = Some("topsecret".into());
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("topsecret"), "{s}");
        assert!(s.contains("postgres://app:<redacted>@db/imagechat"));
    }
}
