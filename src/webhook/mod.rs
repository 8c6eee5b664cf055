//! Webhook delivery (contract §12) in the Standard Webhooks format
//! (<https://www.standardwebhooks.com/>, spec `v1`): signing, the guard
//! against requests into private networks, one attempt, and the sender
//! loop that drains the store's outbox.
//!
//! Order and exactly-one-sender come from the store: a message is taken
//! (leased) by one node at a time, and only once the earlier messages of
//! its image and endpoint are gone (see `store::sql::hooks`). A node that
//! dies leaves its leases to expire; another node then takes the messages.

pub mod guard;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::App;
use crate::domain::now_ms;
use crate::store::{AfterAttempt, Attempt, PendingDelivery, Webhook};

/// The event types an endpoint may take (contract §12).
pub const EVENT_TYPES: [&str; 4] = [
    "new-image-chat",
    "image-chat-updated",
    "deleted-image-chat",
    "notification",
];
/// Attempts kept per endpoint, newest first.
pub const KEPT_ATTEMPTS: u32 = 100;
/// Endpoints per tenant.
pub const MAX_PER_TENANT: u32 = 10;
/// An answer later than this is a failure, whatever its status.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node holds a message it is delivering; past it another node
/// may take it (so it exceeds [`TIMEOUT`] with room to record the result).
const LEASE_MS: i64 = 30_000;
/// Retries are at most this far apart.
const MAX_RETRY_MS: u64 = 3_600_000;
/// A message that has failed for this long is given up.
const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;
/// Deliveries in flight on one node.
const CONCURRENCY: usize = 64;
/// How often a node looks for messages queued by other nodes, or whose
/// lease expired, when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// The most of an error text kept with an attempt.
const MAX_ERROR_CHARS: usize = 300;

type HmacSha256 = Hmac<Sha256>;

/// A fresh `webhook-id`: the same on every attempt of one message.
pub fn message_id() -> String {
    format!("msg_{}", crate::domain::random_id(16))
}

/// A new endpoint secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    crate::domain::fill_random(&mut key);
    format!("whsec_{}", STANDARD.encode(key))
}

/// The `webhook-signature` of a message: `v1,` and the base64 of
/// HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`, keyed with the
/// base64-decoded part of `secret` after `whsec_` (Standard Webhooks,
/// "Signature scheme"). `None` for a secret that is not of that form.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).ok()?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The delay before retry number `attempts + 1` (`attempts` failures so
/// far), in ms: `base` doubled per earlier failure, at most an hour, less
/// up to a quarter at random (jitter), and never less than `base`.
pub fn retry_delay(base: u64, attempts: u32) -> u64 {
    let full = base
        .saturating_mul(1u64 << attempts.min(40))
        .min(MAX_RETRY_MS)
        .max(base);
    let mut r = [0u8; 2];
    crate::domain::fill_random(&mut r);
    let cut = u128::from(full / 4) * u128::from(u16::from_le_bytes(r)) / u128::from(u16::MAX);
    let cut = u64::try_from(cut).unwrap_or(0);
    full.saturating_sub(cut).max(base)
}

/// Makes one signed attempt to deliver `body` as message `msg_id`.
pub async fn attempt(
    client: &reqwest::Client,
    allow_private: bool,
    hook: &Webhook,
    msg_id: &str,
    body: &str,
) -> Attempt {
    let at = now_ms();
    let started = Instant::now();
    let (status, error) = match send(client, allow_private, hook, msg_id, body, at).await {
        Ok(status) if (200..300).contains(&status) => (Some(status), None),
        Ok(status) if (300..400).contains(&status) => {
            (Some(status), Some("redirects are not followed".to_owned()))
        }
        Ok(status) => (Some(status), None),
        Err(e) => (None, Some(e.chars().take(MAX_ERROR_CHARS).collect())),
    };
    Attempt {
        at,
        msg_id: msg_id.to_owned(),
        status,
        error,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Whether an attempt succeeded: any 2xx.
pub fn succeeded(a: &Attempt) -> bool {
    matches!(a.status, Some(s) if (200..300).contains(&s))
}

async fn send(
    client: &reqwest::Client,
    allow_private: bool,
    hook: &Webhook,
    msg_id: &str,
    body: &str,
    at: i64,
) -> Result<u16, String> {
    let url = guard::check_url(&hook.url, allow_private).map_err(|e| e.to_string())?;
    let timestamp = at.div_euclid(1000);
    let signature = sign(&hook.secret, msg_id, timestamp, body)
        .ok_or_else(|| "the endpoint's secret is malformed".to_owned())?;
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .map_err(describe)?;
    let status = res.status().as_u16();
    // The answer's body is not wanted; reading it within the timeout
    // lets the connection be reused.
    let _ = res.bytes().await;
    Ok(status)
}

/// A send error with its causes, as an operator would want to read it.
fn describe(e: reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The HTTP client of deliveries: no redirects, no proxies, a
/// [`TIMEOUT`] on the whole exchange, and names resolved through
/// [`guard::Resolver`].
pub fn client(allow_private: bool) -> anyhow::Result<reqwest::Client> {
    // reqwest's TLS needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .user_agent(concat!("imagechat-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(guard::Resolver { allow_private }))
        .build()?)
}

/// What becomes of a message after an attempt.
fn after(d: &PendingDelivery, a: &Attempt, base: u64) -> AfterAttempt {
    if succeeded(a) {
        AfterAttempt::Delivered
    } else if a.at.saturating_sub(d.created_at) >= GIVE_UP_AFTER_MS {
        AfterAttempt::GiveUp
    } else {
        let delay = i64::try_from(retry_delay(base, d.attempts)).unwrap_or(i64::MAX);
        AfterAttempt::RetryAt(a.at.saturating_add(delay))
    }
}

/// Delivers the outbox, forever: woken by this node's writes that queue
/// messages and by each finished attempt, when the next retry is due, and
/// every [`POLL`] for the rest (other nodes' messages, expired leases).
pub async fn run(app: Arc<App>) {
    let allow_private = app.config.webhook_allow_private;
    let base = app.config.webhook_retry_base_ms;
    let client = match client(allow_private) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks cannot be sent: no HTTP client");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    loop {
        let free = u32::try_from(slots.available_permits()).unwrap_or(0);
        let now = now_ms();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match app.store.claim_deliveries(now, now + LEASE_MS, free).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the webhook outbox");
                    Vec::new()
                }
            }
        };
        let full = claimed.len() == free as usize && free > 0;
        for d in claimed {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (app, client) = (Arc::clone(&app), client.clone());
            tokio::spawn(async move {
                let a = attempt(&client, allow_private, &d.webhook, &d.msg_id, &d.body).await;
                let then = after(&d, &a, base);
                app.metrics.webhook_attempt(succeeded(&a));
                if let Err(e) = app.store.attempted(&d, &a, then).await {
                    // The lease runs out and the message is tried again.
                    tracing::warn!(error = %e, "could not record a webhook attempt");
                }
                drop(permit);
                // Its image's next message may now go.
                app.webhooks.notify_one();
            });
        }
        if full {
            continue;
        }
        // Until woken, the next retry is due, or the poll for other nodes'
        // messages, whichever is first.
        let wait = match app.store.next_delivery().await {
            Ok(Some(at)) if at > now => {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(POLL)
            }
            _ => POLL,
        };
        let _ = tokio::time::timeout(wait, app.webhooks.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification
    /// (<https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>).
    #[test]
    fn signs_the_published_test_vector() {
        assert_eq!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#,
            )
            .as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "{}"), None);
        assert_eq!(sign("whsec_!!!", "m", 1, "{}"), None);
        let s = new_secret();
        assert!(s.starts_with("whsec_") && STANDARD.decode(&s[6..]).unwrap().len() >= 24);
    }

    #[test]
    fn retries_back_off_with_jitter_between_the_base_and_an_hour() {
        for attempts in 0..60 {
            let d = retry_delay(5000, attempts);
            let full = (5000u64 << attempts.min(40)).min(MAX_RETRY_MS);
            assert!(d >= 5000 && d <= full, "{attempts}: {d}");
            assert!(d >= full - full / 4, "{attempts}: {d}");
        }
        assert_eq!(retry_delay(5000, 0), 5000);
        assert_eq!(retry_delay(u64::MAX, 3), u64::MAX);
    }
}
