//! Uploads (contract §14): screenshots and attachments. This module owns
//! the path from a request body to a stored, metadata-free image
//! ([`accept`]), the storage behind it ([`storage`]), and the sweep that
//! deletes uploads no comment attaches ([`sweep`]). It knows no HTTP.
//!
//! Order of an upload: the body is checked and cleaned ([`sanitize`]) on a
//! blocking thread (at most [`DECODERS`] at once: a decode may take hundreds
//! of megabytes), its bytes are written to the storage, then the database
//! records it and counts its bytes against the tenant's daily quota in one
//! transaction. Bytes that fail to be recorded are deleted again; a crash
//! between the two steps leaves unreferenced bytes in the storage, never a
//! record without bytes.

pub mod sanitize;
pub mod storage;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::app::limits::ClientKey;
use crate::app::App;
use crate::domain::{now_ms, random_id};
use crate::error::AppError;
use crate::protocol::{Attachment, Upload};
use crate::store::{NewUpload, StoredUpload};
pub use sanitize::Kind;
pub use storage::Storage;

/// Most pixels of an upload, all frames counted (contract §14).
pub const MAX_PIXELS: u64 = 50_000_000;

/// Decodes that may run at once on this node.
pub const DECODERS: usize = 2;

/// Uploads this node checks at once, bodies read; a body waiting for a
/// decoder holds its bytes in memory, so beyond this a new upload is told
/// to retry (at most this many × `--upload-max-bytes` held).
pub const IN_FLIGHT: usize = 16;

/// Uploads one client address may have under way at once, reading their
/// bodies included: so a few slow senders cannot hold every place.
pub const PER_ADDRESS: u32 = 4;

/// Random bytes in an upload id (128 bits, 22 URL-safe characters).
const ID_BYTES: usize = 16;

/// The upload storage of a node and the gate on its decoders.
pub struct Uploads {
    pub storage: Arc<dyn Storage>,
    decoders: Arc<Semaphore>,
    in_flight: Semaphore,
    /// Uploads under way per client address (an entry only while one is).
    by_address: std::sync::Mutex<std::collections::HashMap<ClientKey, u32>>,
}

/// One upload under way from an address; dropping it frees its place.
pub struct AddressSlot<'a> {
    uploads: &'a Uploads,
    key: ClientKey,
}

impl Drop for AddressSlot<'_> {
    fn drop(&mut self) {
        let mut map = crate::app::lock(&self.uploads.by_address);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Uploads {
    pub fn new(storage: Arc<dyn Storage>) -> Uploads {
        Uploads {
            storage,
            decoders: Arc::new(Semaphore::new(DECODERS)),
            in_flight: Semaphore::new(IN_FLIGHT),
            by_address: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A place for one more upload from `key`, held until it is answered.
    ///
    /// Errors: `429 rate_limited` (retry in a few seconds) when the address
    /// has [`PER_ADDRESS`] uploads under way.
    pub fn address_slot(&self, key: ClientKey) -> Result<AddressSlot<'_>, AppError> {
        let mut map = crate::app::lock(&self.by_address);
        let n = map.entry(key).or_insert(0);
        if *n >= PER_ADDRESS {
            return Err(AppError::RateLimited {
                retry_after: 5,
                message: "too many uploads under way from this address; retry when one is done",
            });
        }
        *n += 1;
        Ok(AddressSlot { uploads: self, key })
    }

    /// A place for one more upload on this node, held until it is answered.
    ///
    /// Errors: `429 rate_limited` (retry in a second) when [`IN_FLIGHT`]
    /// uploads are under way.
    pub fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AppError> {
        self.in_flight
            .try_acquire()
            .map_err(|_| AppError::RateLimited {
                retry_after: 1,
                message: "this server is receiving as many uploads as it can; retry in a moment",
            })
    }
}

/// Refuses, before its body is read, an upload of a tenant that already
/// stored its daily quota today (`429` until midnight UTC). The exact check,
/// with the stored size, is made as the upload is recorded.
pub async fn check_quota(app: &App, tenant: &str) -> Result<(), AppError> {
    let Some(quota) = Some(app.config.upload_quota_bytes_per_day).filter(|q| *q > 0) else {
        return Ok(());
    };
    let day = crate::usage::today();
    let used: u64 = app
        .store
        .usage(tenant, &day, &day)
        .await?
        .iter()
        .map(|(_, c)| c.upload_bytes)
        .sum();
    if used >= quota {
        return Err(crate::store::StoreError::UploadQuota {
            used,
            size: 0,
            quota,
        }
        .into());
    }
    Ok(())
}

/// Whether `id` has the shape of an upload id (any other string names no
/// upload, and never reaches a storage).
pub fn is_upload_id(id: &str) -> bool {
    storage::valid_key(id)
}

/// Checks, cleans and stores one uploaded image for `tenant`; `base` is the
/// origin its URL lives under and `page` marks a `/s/{id}` page's image.
///
/// Errors: `400 invalid_input` (field `body`) for a body that is not a
/// readable image of `kind` within the pixel and frame limits; `429` when
/// the tenant's daily quota has no room for it (`413` when it is larger
/// than the whole quota); `503` when storage fails (nothing is recorded).
pub async fn accept(
    app: &App,
    tenant: &str,
    kind: Kind,
    body: Bytes,
    page: bool,
    base: &str,
) -> Result<Upload, AppError> {
    let quota = Some(app.config.upload_quota_bytes_per_day).filter(|q| *q > 0);
    let day = crate::usage::today();
    let permit = Arc::clone(&app.uploads.decoders)
        .acquire_owned()
        .await
        .map_err(|_| AppError::Unavailable)?;
    let timer = app.metrics.upload_check.clone();
    let clean = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = std::time::Instant::now();
        let clean = sanitize::clean(kind, &body, MAX_PIXELS);
        timer.record(started.elapsed().as_secs_f64());
        clean
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "an upload's decoder failed");
        AppError::Internal
    })?
    .map_err(|refused| AppError::invalid(Some("body"), refused.0))?;
    let id = random_id(ID_BYTES);
    // An id's bytes never change, so the id is a strong validator; hashing
    // megabytes for it would cost more than the rest of the request.
    let etag = format!("\"{id}\"");
    let upload = Upload {
        attachment: Attachment {
            url: format!("{base}/api/v1/uploads/{id}"),
            id: id.clone(),
            content_type: kind.content_type().to_owned(),
            width: clean.width,
            height: clean.height,
        },
        bytes: clean.bytes.len() as u64,
    };
    app.uploads
        .storage
        .put(&id, Bytes::from(clean.bytes))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing an upload failed");
            AppError::Unavailable
        })?;
    let record = NewUpload {
        record: StoredUpload {
            tenant_id: tenant.to_owned(),
            upload: upload.clone(),
            etag,
            page,
            created_at: now_ms(),
        },
        day,
        quota,
    };
    if let Err(e) = app.store.add_upload(&record).await {
        if let Err(d) = app.uploads.storage.delete(&id).await {
            tracing::warn!(error = %d, upload = %id, "an unrecorded upload's bytes stay in storage");
        }
        return Err(e.into());
    }
    app.metrics.upload_bytes.increment(upload.bytes);
    Ok(upload)
}

/// One upload's record and bytes, `None` when there is no such upload (or
/// its bytes are gone).
pub async fn fetch(app: &App, id: &str) -> Result<Option<(StoredUpload, Bytes)>, AppError> {
    if !is_upload_id(id) {
        return Ok(None);
    }
    let Some(record) = app.store.upload(id).await? else {
        return Ok(None);
    };
    match app.uploads.storage.get(id).await {
        Ok(Some(bytes)) => Ok(Some((record, bytes))),
        Ok(None) => {
            tracing::warn!(upload = %id, "an upload's record has no bytes in storage");
            Ok(None)
        }
        Err(e) => {
            tracing::error!(error = %e, "reading an upload failed");
            Err(AppError::Unavailable)
        }
    }
}

/// Deletes one upload of `tenant` now (moderation): its record, then its
/// bytes.
///
/// Errors: `404` when `tenant` has no upload `id`; `503` when storage fails.
pub async fn take_down(app: &App, tenant: &str, id: &str) -> Result<(), AppError> {
    if !is_upload_id(id) || !app.store.delete_upload(tenant, id).await? {
        return Err(AppError::NotFound("no such upload"));
    }
    app.uploads.storage.delete(id).await.map_err(|e| {
        tracing::error!(error = %e, upload = %id, "a deleted upload's bytes stay in storage");
        AppError::Unavailable
    })
}

/// Uploads the sweep deletes per round at most.
const SWEEP_BATCH: u32 = 500;

/// Deletes uploads no comment attaches that were last touched more than
/// `--upload-sweep-after` seconds ago (page images excepted): their records
/// first, then their bytes. Returns how many went.
pub async fn sweep(app: &App) -> Result<usize, AppError> {
    let age = i64::try_from(app.config.upload_sweep_after.saturating_mul(1000)).unwrap_or(i64::MAX);
    let before = now_ms().saturating_sub(age);
    let mut total = 0;
    loop {
        let ids = app.store.sweep_uploads(before, SWEEP_BATCH).await?;
        for id in &ids {
            if let Err(e) = app.uploads.storage.delete(id).await {
                tracing::warn!(error = %e, upload = %id, "a swept upload's bytes stay in storage");
            }
        }
        total += ids.len();
        app.metrics.uploads_swept.increment(ids.len() as u64);
        if ids.len() < SWEEP_BATCH as usize {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_its_share_of_upload_places() {
        let uploads = Uploads::new(storage::temp());
        let a = crate::app::limits::ClientKey::of(std::net::IpAddr::from([10, 0, 0, 1]));
        let b = crate::app::limits::ClientKey::of(std::net::IpAddr::from([10, 0, 0, 2]));
        let held: Vec<_> = (0..PER_ADDRESS)
            .map(|_| uploads.address_slot(a).expect("a place"))
            .collect();
        let refused = uploads.address_slot(a).err().expect("a fifth is refused");
        assert_eq!(refused.status().as_u16(), 429);
        // Another address is not affected.
        let _other = uploads.address_slot(b).expect("another address");
        drop(held);
        assert!(uploads.address_slot(a).is_ok(), "places come back");
        assert!(crate::app::lock(&uploads.by_address).len() <= 2);
    }
}
