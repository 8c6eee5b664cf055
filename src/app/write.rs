//! The one write path. Every mutation, a user's over REST or a moderator's
//! through the tenant API, goes through [`commit`]: stored, then published,
//! then metered, in that order and only here ("stored before published"
//! lives in this one function, the only caller of `Store::apply`).
//!
//! Committing and publishing run in a task of their own, so a client that
//! hangs up mid-request (which drops the request's future) cannot stop a
//! committed change from being published. The hub is also told what was
//! committed, so should a publish still be lost, it reads the log after the
//! image goes quiet (see `Hub::committed`).

use std::sync::Arc;

use crate::app::App;
use crate::broker::{BrokerMessage, ImageKey};
use crate::domain::chat::Authority;
use crate::domain::{Mutation, TenantId};
use crate::error::AppError;
use crate::store::{Committed, StoreError};

/// Stores one mutation for `tenant`, publishes its events and meters it.
///
/// Errors: what the store refused (`invalid_input`, `not_found`,
/// `forbidden`), or `unavailable` when storage failed (nothing was written).
/// Once the store has committed, the result is `Ok` and the events are
/// published even if the caller's future is dropped.
pub async fn commit(
    app: &Arc<App>,
    tenant: &TenantId,
    m: Mutation,
    by: Authority,
    broadcast_id: Option<String>,
) -> Result<Committed, AppError> {
    let (app, tenant) = (Arc::clone(app), tenant.clone());
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let applied = app
            .store
            .apply(&tenant, &m, &by, broadcast_id.as_deref())
            .await;
        app.metrics
            .store_transaction
            .record(started.elapsed().as_secs_f64());
        let c = applied.inspect_err(|e| {
            if matches!(e, StoreError::Unavailable(_)) {
                app.metrics.store_error();
            }
        })?;
        publish(&app, &tenant, &c).await;
        let live = app.usage.tenant(&tenant);
        match m {
            Mutation::CreateChat { .. } => live.created(1, 1),
            Mutation::AddComment { .. } => live.created(0, 1),
            _ => {}
        }
        Ok::<_, StoreError>(c)
    });
    match task.await {
        Ok(result) => result.map_err(AppError::from),
        Err(e) => {
            tracing::error!(error = %e, "the write task failed");
            Err(AppError::Internal)
        }
    }
}

/// Publishes what a write logged. The write is already durable: if the
/// broker fails, subscribers catch up by gap fill or resync.
async fn publish(app: &App, tenant: &str, c: &Committed) {
    if c.events.is_empty() {
        return;
    }
    let topic = ImageKey::new(tenant, &c.url_id);
    app.hub.committed(&topic);
    for e in &c.events {
        app.metrics.events_logged.increment(1);
        let msg = BrokerMessage {
            topic: topic.clone(),
            seq: e.seq,
            body: e.body.clone(),
        };
        if let Err(err) = app.broker.publish(msg).await {
            app.metrics.broker_errors.increment(1);
            tracing::warn!(error = %err, "publish failed; subscribers will catch up from the log");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::{mpsc, Notify};

    use super::*;
    use crate::broker::{Broker, BrokerError, Bus, Envelope, Inbound};
    use crate::domain::{Actor, AnonymousPolicy, Tenant};

    /// A bus whose `publish` stops at a gate until the test opens it.
    struct Gated {
        inner: Arc<crate::broker::memory::MemoryBroker>,
        entered: Notify,
        open: Notify,
    }

    #[async_trait]
    impl Bus for Gated {
        async fn publish(&self, msg: Envelope) -> Result<(), BrokerError> {
            self.entered.notify_one();
            self.open.notified().await;
            self.inner.publish(msg).await
        }
        async fn subscribe(&self, t: &ImageKey) -> Result<(), BrokerError> {
            self.inner.subscribe(t).await
        }
        async fn unsubscribe(&self, t: &ImageKey) -> Result<(), BrokerError> {
            self.inner.unsubscribe(t).await
        }
        async fn ping(&self) -> Result<(), BrokerError> {
            self.inner.ping().await
        }
    }

    /// The caller of a write goes away (its future is dropped, as when an
    /// HTTP client hangs up) after the commit and before the publish: the
    /// event is published all the same.
    #[tokio::test]
    async fn a_committed_write_is_published_even_when_its_caller_is_dropped() {
        let (store, dir, _) = crate::store::open_temp("write").await;
        store
            .create_tenant(&Tenant {
                id: "t".into(),
                secret: "s".into(),
                origins: Vec::new(),
                anonymous: AnonymousPolicy::Write,
            })
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let inner = Arc::new(crate::broker::memory::MemoryBroker::new(tx));
        let key = ImageKey::new("t", "img");
        inner.subscribe(&key).await.unwrap();
        let gated = Arc::new(Gated {
            inner: Arc::clone(&inner),
            entered: Notify::new(),
            open: Notify::new(),
        });
        let broker = Broker::new(gated.clone(), inner);
        let app = App::new(
            crate::Config::for_database("x"),
            store,
            broker,
            crate::upload::storage::temp(),
        );
        let actor = Actor {
            tenant_id: "t".into(),
            user: crate::domain::auth::anonymous_user(),
            moderator: false,
            expires_at: i64::MAX,
        };
        let m = Mutation::CreateChat {
            url_id: "img".into(),
            x: 1.0,
            y: 2.0,
            text: "hi".into(),
            shape: None,
            resolved: false,
            image_url: None,
            page_url: None,
            attachments: vec![],
        };
        let tenant = TenantId::from("t");
        let mut call = Box::pin(commit(&app, &tenant, m, Authority::User(actor), None));
        tokio::select! {
            _ = &mut call => panic!("the publish is held at the gate"),
            _ = gated.entered.notified() => {}
        }
        drop(call);
        gated.open.notify_one();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the event arrives")
            .expect("the inbox is open");
        assert!(matches!(got, Inbound::Event(m) if m.seq.get() == 1 && m.topic == key));
        let _ = std::fs::remove_dir_all(dir);
    }
}
