//! The store's writes other than mutations, written once for both drivers
//! (see `conn.rs`). Each runs inside a transaction its caller holds: on
//! SQLite on the writer thread, so the process never has two writers
//! waiting on each other's lock (SQLite's busy handler waits by sleeping,
//! which would stall the mutations behind it).

use super::conn::{args, Cols, Conn};
use crate::domain::{now_ms, Tenant};
use crate::store::{NewUpload, Result, StoreError, UsageDelta};

/// Errors: `Conflict` when the id is taken.
pub(super) async fn create_tenant<C: Conn>(c: &mut C, t: &Tenant) -> Result<()> {
    let origins = serde_json::to_string(&t.origins).unwrap_or_else(|_| "[]".into());
    let done = c
        .exec(
            "INSERT INTO tenants (id, secret, origins, anonymous, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
            &args![t.id.as_str(), &t.secret, &origins, t.anonymous.as_str(), now_ms()],
        )
        .await?;
    if done == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) async fn add_usage<C: Conn>(c: &mut C, deltas: &[UsageDelta]) -> Result<()> {
    for d in deltas {
        let n = &d.counts;
        c.exec(
            "INSERT INTO usage_days (tenant_id, day, messages, bandwidth, conversations, comments, peak_connections) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, day) DO UPDATE SET \
             messages = usage_days.messages + excluded.messages, \
             bandwidth = usage_days.bandwidth + excluded.bandwidth, \
             conversations = usage_days.conversations + excluded.conversations, \
             comments = usage_days.comments + excluded.comments, \
             peak_connections = CASE WHEN excluded.peak_connections > usage_days.peak_connections \
             THEN excluded.peak_connections ELSE usage_days.peak_connections END",
            &args![
                &d.tenant_id,
                &d.day,
                count(n.messages),
                count(n.bandwidth),
                count(n.conversations),
                count(n.comments),
                count(n.peak_connections),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Errors: `UploadQuota` when the day's bytes would pass the quota,
/// `Conflict` for an id that exists (the caller rolls back).
pub(super) async fn add_upload<C: Conn>(c: &mut C, u: &NewUpload) -> Result<()> {
    let r = &u.record;
    let a = &r.upload.attachment;
    let bytes = count(r.upload.bytes);
    // The increment takes the day row's lock, so two nodes adding at once
    // cannot both slip under the quota.
    let used = c
        .fetch_optional(
            "INSERT INTO usage_days (tenant_id, day, upload_bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, day) DO UPDATE SET upload_bytes = usage_days.upload_bytes + excluded.upload_bytes \
             RETURNING upload_bytes",
            &args![&r.tenant_id, &u.day, bytes],
        )
        .await?
        .ok_or_else(|| StoreError::Unavailable("the usage row was not returned".into()))?
        .int("upload_bytes")?;
    let used = u64::try_from(used).unwrap_or(0);
    if let Some(quota) = u.quota {
        if used > quota {
            return Err(StoreError::UploadQuota {
                used: used.saturating_sub(r.upload.bytes),
                size: r.upload.bytes,
                quota,
            });
        }
    }
    let inserted = c
        .exec(
            "INSERT INTO uploads (id, tenant_id, content_type, width, height, bytes, url, etag, page, created_at, touched_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            &args![
                &a.id,
                &r.tenant_id,
                &a.content_type,
                i64::from(a.width),
                i64::from(a.height),
                bytes,
                &a.url,
                &r.etag,
                i64::from(r.page),
                r.created_at,
                r.created_at,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

pub(super) async fn delete_upload<C: Conn>(c: &mut C, tenant: &str, id: &str) -> Result<bool> {
    let gone = c
        .exec(
            "DELETE FROM uploads WHERE id = $1 AND tenant_id = $2",
            &args![id, tenant],
        )
        .await?
        > 0;
    c.exec(
        "DELETE FROM upload_refs WHERE upload_id = $1 AND tenant_id = $2",
        &args![id, tenant],
    )
    .await?;
    Ok(gone)
}

/// Deletes the sweep's candidates that still qualify; their ids.
pub(super) async fn sweep<C: Conn>(c: &mut C, ids: &[String], before: i64) -> Result<Vec<String>> {
    let mut gone = Vec::with_capacity(ids.len());
    for id in ids {
        // Checked again as it is deleted: a comment attaching it in the
        // meantime touched it (and, on PostgreSQL, held its row).
        let deleted = c
            .fetch_optional(
                "DELETE FROM uploads WHERE id = $1 AND touched_at < $2 AND page = 0 \
                 AND NOT EXISTS (SELECT 1 FROM upload_refs r WHERE r.upload_id = $1) RETURNING id",
                &args![id, before],
            )
            .await?;
        if let Some(row) = deleted {
            gone.push(row.text("id")?);
        }
    }
    Ok(gone)
}

/// A write that changes nothing: proves the database takes writes.
pub(super) async fn probe<C: Conn>(c: &mut C) -> Result<()> {
    c.exec("UPDATE meta SET value = value WHERE key = 'epoch'", &[])
        .await?;
    Ok(())
}
