//! `/metrics`: counters, gauges and latency histograms through the `metrics`
//! facade, rendered by its Prometheus exporter. Each node (each `App`) has a
//! recorder of its own, so servers sharing a process (tests) do not mix
//! their figures; call sites record through [`Metrics`] and never format.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::App;

/// Bucket bounds of every `_seconds` histogram: 0.5 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub events_logged: Counter,
    pub store_errors: Counter,
    pub broker_errors: Counter,
    pub slow_consumers: Counter,
    pub connections_refused: Counter,
    /// From an event's commit (its `at`) to its batch being handed to the
    /// viewers' sockets on this node.
    pub event_delivery: Histogram,
    /// One write transaction (`Store::apply`), however it ended.
    pub store_transaction: Histogram,
    /// Bytes of uploads stored (after metadata removal).
    pub upload_bytes: Counter,
    /// Uploads deleted by the sweep.
    pub uploads_swept: Counter,
    /// Checking and cleaning one upload (decode included), on its
    /// blocking thread.
    pub upload_check: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        let recorder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        {
            Ok(b) => b.build_recorder(),
            // Only an empty bucket list is refused; ours is not.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let m = metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!(
                "imagechat_events_logged_total",
                "Events logged by writes through this node."
            );
            metrics::describe_counter!(
                "imagechat_store_errors_total",
                "Storage operations that failed."
            );
            metrics::describe_counter!(
                "imagechat_broker_errors_total",
                "Broker operations that failed."
            );
            metrics::describe_counter!(
                "imagechat_slow_consumers_total",
                "Connections closed because their outbound queue overflowed."
            );
            metrics::describe_counter!(
                "imagechat_connections_refused_total",
                "Connections refused because the node was at --max-connections."
            );
            metrics::describe_histogram!(
                "imagechat_event_delivery_seconds",
                metrics::Unit::Seconds,
                "From an event's commit to its hand-off to this node's viewers."
            );
            metrics::describe_histogram!(
                "imagechat_store_transaction_seconds",
                metrics::Unit::Seconds,
                "Write transactions, from begin to commit or rollback."
            );
            metrics::describe_histogram!(
                "imagechat_http_request_duration_seconds",
                metrics::Unit::Seconds,
                "HTTP requests by route, until the answer's head."
            );
            metrics::describe_counter!(
                "imagechat_http_requests_total",
                "HTTP requests by route and status."
            );
            metrics::describe_counter!(
                "imagechat_upload_bytes_stored_total",
                "Bytes of uploads stored, metadata removed."
            );
            metrics::describe_counter!(
                "imagechat_webhook_attempts_total",
                "Webhook delivery attempts by outcome (delivered, failed)."
            );
            metrics::describe_counter!(
                "imagechat_emails_total",
                "Notification e-mail digests by outcome (sent, failed)."
            );
            metrics::describe_counter!(
                "imagechat_uploads_swept_total",
                "Uploads deleted because no comment attached them."
            );
            metrics::describe_histogram!(
                "imagechat_upload_check_seconds",
                metrics::Unit::Seconds,
                "Checking an upload is an image and removing its metadata."
            );
            metrics::describe_gauge!("imagechat_connections", "Open WebSocket connections.");
            metrics::describe_gauge!(
                "imagechat_subscriptions",
                "Image subscriptions held by open connections."
            );
            metrics::describe_counter!(
                "imagechat_messages_delivered_total",
                "Messages delivered to WebSocket clients."
            );
            metrics::describe_counter!(
                "imagechat_bytes_delivered_total",
                "Payload bytes of the frames delivered to WebSocket clients."
            );
            metrics::describe_gauge!(
                "imagechat_images_subscribed",
                "Images with a subscriber on this node."
            );
            metrics::describe_counter!(
                "imagechat_store_write_transactions_total",
                "Write transactions begun by the store's writers (group commit: one may hold many mutations)."
            );
            metrics::describe_counter!(
                "imagechat_store_mutations_total",
                "Mutations handed to the store's writers."
            );
            metrics::describe_counter!(
                "imagechat_snapshot_cache_hits_total",
                "Snapshot requests answered from memory."
            );
            metrics::describe_counter!(
                "imagechat_snapshot_cache_loads_total",
                "Snapshot requests that read the image's chats from the store."
            );
            metrics::describe_counter!(
                "imagechat_snapshot_cache_head_reads_total",
                "Reads of an image's log head made to check a cached snapshot."
            );
            metrics::describe_gauge!(
                "imagechat_snapshot_cache_bytes",
                "Bytes counted in the snapshot cache."
            );
            metrics::describe_gauge!(
                "imagechat_snapshot_cache_images",
                "Images with a slot in the snapshot cache."
            );
            (
                counter!("imagechat_events_logged_total"),
                counter!("imagechat_store_errors_total"),
                counter!("imagechat_broker_errors_total"),
                counter!("imagechat_slow_consumers_total"),
                counter!("imagechat_connections_refused_total"),
                histogram!("imagechat_event_delivery_seconds"),
                histogram!("imagechat_store_transaction_seconds"),
                counter!("imagechat_upload_bytes_stored_total"),
                counter!("imagechat_uploads_swept_total"),
                histogram!("imagechat_upload_check_seconds"),
            )
        });
        Metrics {
            recorder,
            handle,
            events_logged: m.0,
            store_errors: m.1,
            broker_errors: m.2,
            slow_consumers: m.3,
            connections_refused: m.4,
            event_delivery: m.5,
            store_transaction: m.6,
            upload_bytes: m.7,
            uploads_swept: m.8,
            upload_check: m.9,
        }
    }

    /// One webhook delivery attempt and whether it succeeded.
    pub fn webhook_attempt(&self, ok: bool) {
        metrics::with_local_recorder(&self.recorder, || {
            counter!("imagechat_webhook_attempts_total", "outcome" => if ok { "delivered" } else { "failed" })
                .increment(1);
        });
    }

    /// One notification e-mail digest: `sent`, or `failed`.
    pub fn email(&self, outcome: &'static str) {
        metrics::with_local_recorder(&self.recorder, || {
            counter!("imagechat_emails_total", "outcome" => outcome).increment(1);
        });
    }

    pub fn store_error(&self) {
        self.store_errors.increment(1);
    }

    /// One HTTP request: its route template (`unmatched` for none), status
    /// and time to the answer's head.
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        metrics::with_local_recorder(&self.recorder, || {
            let route = route.to_owned();
            counter!("imagechat_http_requests_total", "route" => route.clone(), "status" => status.to_string())
                .increment(1);
            histogram!("imagechat_http_request_duration_seconds", "route" => route)
                .record(took.as_secs_f64());
        });
    }

    /// Prometheus text exposition (format 0.0.4), with the per-tenant
    /// figures read from usage metering at this moment.
    pub fn render(&self, app: &App) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            for (t, l) in app.usage.all() {
                let tenant = t.to_string();
                gauge!("imagechat_connections", "tenant" => tenant.clone())
                    .set(l.connections.load(Relaxed) as f64);
                gauge!("imagechat_subscriptions", "tenant" => tenant.clone())
                    .set(l.subscriptions.load(Relaxed) as f64);
                counter!("imagechat_messages_delivered_total", "tenant" => tenant.clone())
                    .absolute(l.messages_total.load(Relaxed));
                counter!("imagechat_bytes_delivered_total", "tenant" => tenant)
                    .absolute(l.bytes_total.load(Relaxed));
            }
            gauge!("imagechat_images_subscribed").set(app.hub.topic_count() as f64);
            let (transactions, mutations) = app.store.write_batches();
            counter!("imagechat_store_write_transactions_total").absolute(transactions);
            counter!("imagechat_store_mutations_total").absolute(mutations);
            let cache = &app.snapshots;
            counter!("imagechat_snapshot_cache_hits_total").absolute(cache.hits.load(Relaxed));
            counter!("imagechat_snapshot_cache_loads_total").absolute(cache.loads.load(Relaxed));
            counter!("imagechat_snapshot_cache_head_reads_total")
                .absolute(cache.head_reads.load(Relaxed));
            let (bytes, images) = cache.usage();
            gauge!("imagechat_snapshot_cache_bytes").set(bytes as f64);
            gauge!("imagechat_snapshot_cache_images").set(images as f64);
        });
        self.handle.render()
    }
}
