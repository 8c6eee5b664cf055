//! Where uploaded bytes live: one [`Storage`] trait, two implementations
//! chosen once at start-up by `--uploads URL` (contract §14):
//! - `file://PATH`: files under a directory (the default,
//!   `file://imagechat-uploads`), each written to a temporary file, flushed
//!   to disk and renamed into place, so a reader never sees half a file and a
//!   crash leaves the old state or the new one.
//! - `s3://BUCKET[/PREFIX]?endpoint=URL&region=NAME`: any S3-compatible
//!   service, through the `object_store` crate; credentials come from the
//!   usual `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
//!   `AWS_SESSION_TOKEN`) environment variables.
//!
//! Keys are upload ids (URL-safe base64, checked by [`valid_key`]); the
//! metadata of an upload (owner, type, size) is in the database, not here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// A storage failure: the request answers `503` and nothing is recorded.
#[derive(Debug, thiserror::Error)]
#[error("upload storage: {0}")]
pub struct StorageError(pub String);

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Bytes by key. Every implementation passes the same tests
/// (`tests/server/storage.rs`).
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing what was there, all or nothing.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()>;
    /// The bytes under `key`, `None` when there are none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    /// Removes `key`; removing what is not there succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Whether the storage takes writes now: a small object is written and
    /// removed (for readiness, and once at start-up).
    async fn ping(&self) -> Result<()>;
    /// Where the bytes go, for the start-up log (no secrets).
    fn describe(&self) -> String;
}

/// The key readiness probes write (not an upload id: those have 22
/// characters).
const PROBE: &str = "imagechat-readiness-probe";

/// Whether `key` may name an object: 1..=64 URL-safe base64 characters.
/// Anything else (a path separator, a dot) never reaches a storage.
pub fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn checked(key: &str) -> Result<&str> {
    if valid_key(key) {
        Ok(key)
    } else {
        Err(StorageError(format!("refused key {key:?}")))
    }
}

/// Opens the storage a `--uploads` URL names.
///
/// Errors: an unknown scheme, a malformed URL, or (for files) a path that
/// exists and is not a directory.
pub fn open(url: &str) -> anyhow::Result<Arc<dyn Storage>> {
    if let Some(path) = url.strip_prefix("file://") {
        anyhow::ensure!(!path.is_empty(), "--uploads file:// needs a path");
        let dir = PathBuf::from(path);
        // Created with the first upload, so a node that never gets one
        // leaves nothing behind; a path that exists must be a directory.
        anyhow::ensure!(
            !dir.exists() || dir.is_dir(),
            "--uploads: {} is not a directory",
            dir.display()
        );
        return Ok(Arc::new(FileStorage { dir }));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Storage::open(url)?));
    }
    anyhow::bail!("--uploads must be file://PATH or s3://BUCKET?endpoint=…&region=…, not {url:?}")
}

/// A file storage in a new temporary directory (for tests).
#[cfg(test)]
pub(crate) fn temp() -> Arc<dyn Storage> {
    let dir =
        std::env::temp_dir().join(format!("imagechat-uploads-{}", crate::domain::random_id(6)));
    Arc::new(FileStorage { dir })
}

/// Files under one directory, spread over subdirectories by the key's first
/// two characters.
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    fn path(&self, key: &str) -> PathBuf {
        let shard: String = key.chars().take(2).collect();
        self.dir.join(shard).join(key)
    }
}

fn io(e: std::io::Error) -> StorageError {
    StorageError(e.to_string())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload"),
        crate::domain::random_id(6)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError(e.to_string()))?
        .map_err(io)
}

#[async_trait]
impl Storage for FileStorage {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(checked(key)?);
        blocking(move || write_atomically(&path, &bytes)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(checked(key)?);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(checked(key)?);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn ping(&self) -> Result<()> {
        let path = self.path(PROBE);
        blocking(move || {
            write_atomically(&path, b"ok")?;
            // Another probe may have removed it already.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
    }

    fn describe(&self) -> String {
        format!("files under {}", self.dir.display())
    }
}

/// An S3-compatible bucket.
pub struct S3Storage {
    store: object_store::aws::AmazonS3,
    prefix: String,
    describe: String,
}

impl S3Storage {
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=NAME`.
    fn open(raw: &str) -> anyhow::Result<S3Storage> {
        use object_store::aws::AmazonS3Builder;
        // reqwest's TLS needs a process-wide crypto provider; ring is the
        // one the server's own TLS uses. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = url::Url::parse(raw).map_err(|e| anyhow::anyhow!("--uploads {raw:?}: {e}"))?;
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--uploads {raw:?} names no bucket"))?
            .to_owned();
        let prefix = url.path().trim_matches('/').to_owned();
        // Bounded waits: an unreachable service fails a request within
        // seconds (and a readiness probe with it), never minutes.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(15),
            ..Default::default()
        };
        let client = object_store::ClientOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(3))
            .with_timeout(std::time::Duration::from_secs(30));
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_retry(retry)
            .with_client_options(client);
        let mut endpoint = None;
        for (k, v) in url.query_pairs() {
            match &*k {
                "endpoint" => {
                    b = b
                        .with_endpoint(v.to_string())
                        .with_allow_http(v.starts_with("http://"));
                    endpoint = Some(v.to_string());
                }
                "region" => b = b.with_region(v.to_string()),
                other => anyhow::bail!("--uploads: unknown parameter {other:?} (endpoint, region)"),
            }
        }
        let store = b
            .build()
            .map_err(|e| anyhow::anyhow!("--uploads {raw:?}: {e}"))?;
        Ok(S3Storage {
            store,
            describe: format!(
                "S3 bucket {bucket}{}{}",
                if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" under {prefix}/")
                },
                endpoint.map(|e| format!(" at {e}")).unwrap_or_default()
            ),
            prefix,
        })
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path> {
        let key = checked(key)?;
        Ok(if self.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        })
    }
}

fn s3(e: object_store::Error) -> StorageError {
    StorageError(e.to_string())
}

#[async_trait]
impl Storage for S3Storage {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        use object_store::ObjectStoreExt;
        self.store
            .put(&self.path(key)?, bytes.into())
            .await
            .map(|_| ())
            .map_err(s3)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        use object_store::ObjectStoreExt;
        match self.store.get(&self.path(key)?).await {
            Ok(r) => r.bytes().await.map(Some).map_err(s3),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        use object_store::ObjectStoreExt;
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3(e)),
        }
    }

    async fn ping(&self) -> Result<()> {
        use object_store::ObjectStoreExt;
        let path = self.path(PROBE)?;
        self.store
            .put(&path, Bytes::from_static(b"ok").into())
            .await
            .map_err(s3)?;
        self.store.delete(&path).await.map_err(s3)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
