//! The one write path. Every mutation, a user's over REST or a moderator's
//! through the tenant API, goes through [`commit`]: stored, then published,
//! then metered ("stored before published" lives here and in the store's
//! commit hook, [`publisher`], which is told of each commit in commit
//! order).
//!
//! Publishing does not wait on the caller: the store tells the hook of
//! each commit as it answers, and the hook queues the events for one
//! publishing task, which sends them in the order they were logged. A
//! client that hangs up mid-request cannot stop a committed change from
//! being published, and two writes to one image committed together reach
//! the broker in seq order. The hub is also told what was committed, so
//! should a publish still be lost, it reads the log after the image goes
//! quiet (see `Hub::committed`).

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::app::App;
use crate::broker::{Broker, BrokerMessage, ImageKey, UserMessage};
use crate::domain::chat::Authority;
use crate::domain::{Mutation, TenantId};
use crate::error::AppError;
use crate::fanout::Hub;
use crate::protocol::ServerMessage;
use crate::store::{CommitHook, Committed, StoreError};

/// Events queued for publishing; past it an event is remembered as
/// unpublished and republished once the queue drains (subscribers of the
/// image meanwhile catch up from the log).
const PUBLISH_QUEUE: usize = 65_536;

/// Stores one mutation for `tenant` and meters it; the store's commit hook
/// publishes its events.
///
/// Errors: what the store refused (`invalid_input`, `not_found`,
/// `forbidden`), or `unavailable` when storage failed (nothing was written).
/// Once the store has committed, the events are published even if the
/// caller's future is dropped.
pub async fn commit(
    app: &Arc<App>,
    tenant: &TenantId,
    m: Mutation,
    by: Authority,
    broadcast_id: Option<String>,
) -> Result<Committed, AppError> {
    let started = std::time::Instant::now();
    let applied = app
        .store
        .apply(tenant, &m, &by, broadcast_id.as_deref())
        .await;
    app.metrics
        .store_transaction
        .record(started.elapsed().as_secs_f64());
    let c = applied.inspect_err(|e| {
        if matches!(e, StoreError::Unavailable(_)) {
            app.metrics.store_error();
        }
    })?;
    let live = app.usage.tenant(tenant);
    match m {
        Mutation::CreateChat { .. } => live.created(1, 1),
        Mutation::AddComment { .. } => live.created(0, 1),
        _ => {}
    }
    Ok(c)
}

/// What the publishing task sends: an image's event, or a message for
/// one user's connections.
enum Outgoing {
    Event(BrokerMessage),
    User(UserMessage),
}

/// The store's commit hook: tells the hub, queues the events and the
/// notifications for the publishing task, which it starts, and wakes the
/// webhook sender (`webhooks`) when the write queued messages for it.
pub fn publisher(
    hub: Arc<Hub>,
    broker: Arc<Broker>,
    metrics: &crate::app::Metrics,
    webhooks: Arc<Notify>,
) -> CommitHook {
    let (logged, errors) = (metrics.events_logged.clone(), metrics.broker_errors.clone());
    let (tx, mut rx) = mpsc::channel::<Outgoing>(PUBLISH_QUEUE);
    let sender = Arc::clone(&broker);
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let sent = match out {
                Outgoing::Event(msg) => sender.publish(msg).await,
                Outgoing::User(m) => sender.tell_user(m).await,
            };
            if let Err(err) = sent {
                errors.increment(1);
                tracing::warn!(error = %err, "publish failed; subscribers will catch up from the log");
            }
            if rx.is_empty() && sender.has_unpublished() {
                sender.republish().await;
            }
        }
    });
    // The store holds this hook and the hub holds the store: a weak
    // reference, so a node that stops is dropped whole.
    let hub = Arc::downgrade(&hub);
    Box::new(move |tenant: &TenantId, c: &Committed| {
        let topic = ImageKey::new(tenant.as_str(), &c.url_id);
        if let Some(hub) = hub.upgrade() {
            hub.committed(&topic);
        }
        for e in &c.events {
            logged.increment(1);
            let msg = BrokerMessage {
                topic: topic.clone(),
                seq: e.seq,
                body: e.body.clone(),
            };
            if let Err(
                mpsc::error::TrySendError::Full(Outgoing::Event(msg))
                | mpsc::error::TrySendError::Closed(Outgoing::Event(msg)),
            ) = tx.try_send(Outgoing::Event(msg))
            {
                broker.remember(msg);
            }
        }
        for n in &c.notifications {
            let body = ServerMessage::Notification {
                notification: &n.notification,
                unread: n.unread,
            }
            .to_bytes();
            // Not logged: a notification that finds the queue full is
            // still in the store, and the list shows it.
            let _ = tx.try_send(Outgoing::User(UserMessage {
                tenant: tenant.to_string(),
                user_id: n.user_id.clone(),
                body,
            }));
        }
        if c.outboxed > 0 {
            webhooks.notify_one();
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::{mpsc, Notify};

    use super::*;
    use crate::broker::{Broker, BrokerError, Bus, Envelope, Inbound};

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
    /// HTTP client hangs up) before its answer: the write is committed and
    /// its event published all the same.
    #[tokio::test]
    async fn a_committed_write_is_published_even_when_its_caller_is_dropped() {
        let (store, dir, _) = crate::store::open_temp("write").await;
        crate::testing::tenant(store.as_ref(), "t").await;
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
        let (m, by) = (
            crate::testing::create("img", vec![]),
            crate::testing::user("t", "u"),
        );
        let tenant = TenantId::from("t");
        let mut call = Box::pin(commit(&app, &tenant, m, by, None));
        // Polled once: the mutation is queued for the writer; then the
        // caller goes away before its answer.
        tokio::select! {
            biased;
            _ = &mut call => {}
            _ = std::future::ready(()) => {}
        }
        drop(call);
        tokio::time::timeout(Duration::from_secs(5), gated.entered.notified())
            .await
            .expect("the commit is published without its caller");
        gated.open.notify_one();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the event arrives")
            .expect("the inbox is open");
        assert!(matches!(got, Inbound::Event(m) if m.seq.get() == 1 && m.topic == key));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The store holds the commit hook: a node's parts must not hold each
    /// other in a cycle, or a stopped node would keep its database
    /// connections open.
    #[tokio::test]
    async fn a_dropped_node_drops_its_store() {
        let (store, dir, _) = crate::store::open_temp("drop").await;
        let weak = Arc::downgrade(&store);
        let (tx, _rx) = mpsc::channel(8);
        let bus = Arc::new(crate::broker::memory::MemoryBroker::new(tx));
        let app = App::new(
            crate::Config::for_database("x"),
            store,
            Broker::new(bus.clone(), bus),
            crate::upload::storage::temp(),
        );
        drop(app);
        assert!(weak.upgrade().is_none(), "the store outlived its node");
        let _ = std::fs::remove_dir_all(dir);
    }
}
