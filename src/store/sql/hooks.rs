//! Webhook endpoints, the outbox and delivery attempts (contract §12),
//! written once for both drivers (see `conn.rs`).
//!
//! The outbox holds one row per message and endpoint, written by
//! [`queue`] in the transaction of the event it carries, so nothing is
//! delivered that was not stored and nothing stored is never delivered.
//! A message of an image waits until the earlier messages of that image
//! and endpoint are gone (delivered or given up): [`CLAIM`] takes only the
//! head of each such queue, which is what keeps deliveries in seq order
//! per image and endpoint, across nodes.

use super::conn::{args, Cols, Conn};
use crate::store::{
    AfterAttempt, Attempt, PendingDelivery, Result, StoreError, UserNotification, Webhook,
};

/// The first part of the claim; on PostgreSQL `FOR UPDATE SKIP LOCKED`
/// follows it, so two nodes never claim one row (SQLite has one writer).
pub(super) const CLAIM: &str = "UPDATE webhook_outbox SET lease_until = $1 WHERE id IN (\
     SELECT o.id FROM webhook_outbox o WHERE o.next_at <= $2 AND o.lease_until <= $2 \
     AND NOT EXISTS (SELECT 1 FROM webhook_outbox p WHERE p.webhook_id = o.webhook_id \
     AND p.url_id = o.url_id AND p.seq < o.seq) ORDER BY o.id LIMIT $3";

fn webhook_of(row: &impl Cols) -> Result<Webhook> {
    Ok(Webhook {
        id: row.text("id")?,
        tenant_id: row.text("tenant_id")?,
        url: row.text("url")?,
        events: serde_json::from_str(&row.text("events")?)
            .map_err(|e| StoreError::Unavailable(format!("corrupt webhook row: {e}")))?,
        secret: row.text("secret")?,
        created_at: row.int("created_at")?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, tenant_id, url, events, secret, created_at";

pub(super) async fn create<C: Conn>(c: &mut C, w: &Webhook, max: u32) -> Result<()> {
    let row = c
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM webhooks WHERE tenant_id = $1",
            &args![&w.tenant_id],
        )
        .await?;
    let n = match row {
        Some(r) => r.int("n")?,
        None => 0,
    };
    if n >= i64::from(max) {
        return Err(StoreError::Conflict);
    }
    let events = serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into());
    c.exec(
        "INSERT INTO webhooks (id, tenant_id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &args![&w.id, &w.tenant_id, &w.url, &events, &w.secret, w.created_at],
    )
    .await?;
    Ok(())
}

pub(super) async fn list<C: Conn>(c: &mut C, tenant: &str) -> Result<Vec<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id"
    );
    c.fetch_all(&sql, &args![tenant])
        .await?
        .iter()
        .map(webhook_of)
        .collect()
}

pub(super) async fn delete<C: Conn>(c: &mut C, tenant: &str, id: &str) -> Result<bool> {
    let n = c
        .exec(
            "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2",
            &args![tenant, id],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    for table in ["webhook_outbox", "webhook_deliveries"] {
        c.exec(
            &format!("DELETE FROM {table} WHERE webhook_id = $1"),
            &args![id],
        )
        .await?;
    }
    Ok(true)
}

/// A chat event as a webhook message's `data`: the event as on the
/// WebSocket, plus `tenantId` and `epoch`; and its type and time.
fn event_data(body: &str, tenant: &str, epoch: &str) -> Result<(String, i64, serde_json::Value)> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body)
        .map_err(|e| StoreError::Unavailable(format!("corrupt event: {e}")))?;
    let kind = v
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    let at = v.get("at").and_then(|t| t.as_i64()).unwrap_or_default();
    v.insert("tenantId".into(), tenant.into());
    v.insert("epoch".into(), epoch.into());
    Ok((kind, at, serde_json::Value::Object(v)))
}

/// A message body: `{"type", "timestamp", "data"}`.
fn message(kind: &str, at: i64, data: serde_json::Value) -> String {
    serde_json::json!({
        "type": kind,
        "timestamp": crate::annotation::export::iso(at),
        "data": data,
    })
    .to_string()
}

/// Inside the write's transaction: queues a message for every endpoint of
/// the tenant that takes its type, for each logged event (`(seq, body)`)
/// and each notification; how many were queued.
pub(super) async fn queue<C: Conn>(
    c: &mut C,
    tenant: &str,
    epoch: &str,
    url_id: &str,
    events: &[(i64, &str)],
    notifications: &[UserNotification],
    now: i64,
) -> Result<usize> {
    let hooks: Vec<(String, Vec<String>)> = c
        .fetch_all(
            "SELECT id, events FROM webhooks WHERE tenant_id = $1",
            &args![tenant],
        )
        .await?
        .iter()
        .map(|r| {
            let events: Vec<String> = serde_json::from_str(&r.text("events")?)
                .map_err(|e| StoreError::Unavailable(format!("corrupt webhook row: {e}")))?;
            Ok((r.text("id")?, events))
        })
        .collect::<Result<_>>()?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let mut queued = 0;
    for (seq, body) in events {
        let (kind, at, data) = event_data(body, tenant, epoch)?;
        let body = message(&kind, at, data);
        for (hook, types) in &hooks {
            if types.contains(&kind) {
                put(c, hook, Some(url_id), *seq, &body, now).await?;
                queued += 1;
            }
        }
    }
    for n in notifications {
        let body = message(
            "notification",
            n.notification.at,
            serde_json::json!({
                "tenantId": tenant,
                "userId": n.user_id,
                "notification": n.notification,
            }),
        );
        for (hook, types) in &hooks {
            if types.iter().any(|t| t == "notification") {
                put(c, hook, None, 0, &body, now).await?;
                queued += 1;
            }
        }
    }
    Ok(queued)
}

async fn put<C: Conn>(
    c: &mut C,
    hook: &str,
    url_id: Option<&str>,
    seq: i64,
    body: &str,
    now: i64,
) -> Result<u64> {
    c.exec(
        "INSERT INTO webhook_outbox (webhook_id, msg_id, url_id, seq, body, created_at, next_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &args![hook, &crate::webhook::message_id(), url_id, seq, body, now],
    )
    .await
}

/// See `Store::claim_deliveries`; `claim` is [`CLAIM`] with the backend's
/// locking clause.
pub(super) async fn claim<C: Conn>(
    c: &mut C,
    claim: &str,
    now: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<PendingDelivery>> {
    let rows = c
        .fetch_all(claim, &args![lease_until, now, i64::from(limit)])
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut hooks: Vec<Webhook> = Vec::new();
    for r in rows {
        let hook_id = r.text("webhook_id")?;
        let hook = match hooks.iter().find(|h| h.id == hook_id) {
            Some(h) => h.clone(),
            None => {
                let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
                let Some(row) = c.fetch_optional(&sql, &args![&hook_id]).await? else {
                    // Its endpoint is gone: so is the message.
                    c.exec(
                        "DELETE FROM webhook_outbox WHERE id = $1",
                        &args![r.int("id")?],
                    )
                    .await?;
                    continue;
                };
                let h = webhook_of(&row)?;
                hooks.push(h.clone());
                h
            }
        };
        out.push(PendingDelivery {
            id: r.int("id")?,
            webhook: hook,
            msg_id: r.text("msg_id")?,
            body: r.text("body")?,
            attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
            created_at: r.int("created_at")?,
        });
    }
    Ok(out)
}

pub(super) async fn record<C: Conn>(c: &mut C, webhook_id: &str, a: &Attempt) -> Result<()> {
    c.exec(
        // Not for an endpoint deleted while its message was in flight.
        "INSERT INTO webhook_deliveries (webhook_id, at, msg_id, status, error, duration_ms) \
         SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1)",
        &args![
            webhook_id,
            a.at,
            &a.msg_id,
            a.status.map(i64::from),
            a.error.as_deref(),
            i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
        ],
    )
    .await?;
    // Keep the latest few: everything older than the KEPT_ATTEMPTS-th goes.
    c.exec(
        "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND id <= \
         (SELECT id FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        &args![webhook_id, i64::from(crate::webhook::KEPT_ATTEMPTS)],
    )
    .await?;
    Ok(())
}

pub(super) async fn attempted<C: Conn>(
    c: &mut C,
    d: &PendingDelivery,
    a: &Attempt,
    then: AfterAttempt,
) -> Result<()> {
    match then {
        AfterAttempt::Delivered | AfterAttempt::GiveUp => {
            c.exec("DELETE FROM webhook_outbox WHERE id = $1", &args![d.id])
                .await?;
        }
        AfterAttempt::RetryAt(at) => {
            c.exec(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = $1, lease_until = 0 WHERE id = $2",
                &args![at, d.id],
            )
            .await?;
        }
    }
    record(c, &d.webhook.id, a).await
}

pub(super) async fn attempts<C: Conn>(
    c: &mut C,
    webhook_id: &str,
    limit: u32,
) -> Result<Vec<Attempt>> {
    c.fetch_all(
        "SELECT at, msg_id, status, error, duration_ms FROM webhook_deliveries \
         WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2",
        &args![webhook_id, i64::from(limit)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Attempt {
            at: r.int("at")?,
            msg_id: r.text("msg_id")?,
            status: r.opt_int("status")?.and_then(|s| u16::try_from(s).ok()),
            error: r.opt_text("error")?,
            duration_ms: u64::try_from(r.int("duration_ms")?).unwrap_or(0),
        })
    })
    .collect()
}

pub(super) async fn next_due<C: Conn>(c: &mut C) -> Result<Option<i64>> {
    let row = c
        .fetch_optional(
            "SELECT MIN(CASE WHEN o.lease_until > o.next_at THEN o.lease_until ELSE o.next_at END) AS at \
             FROM webhook_outbox o WHERE NOT EXISTS (SELECT 1 FROM webhook_outbox p \
             WHERE p.webhook_id = o.webhook_id AND p.url_id = o.url_id AND p.seq < o.seq)",
            &args![],
        )
        .await?;
    match row {
        Some(r) => r.opt_int("at"),
        None => Ok(None),
    }
}
