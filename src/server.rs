//! Start-up and shutdown of one node: opens the store and broker named in
//! the config, starts the background loops, accepts connections (plain or
//! TLS) and drains them on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tower::ServiceExt;

use crate::app::App;
use crate::config::Config;
use crate::domain::{AnonymousPolicy, Tenant};
use crate::store::StoreError;

/// Broker messages a node may hold before publishers wait.
const INBOX_CAPACITY: usize = 65_536;
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(2);
/// How long shutdown waits for requests and sockets to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a node on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        _ => None,
    };
    let store = crate::store::open(&config.database, config.database_pool)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                crate::config::redact_url(&config.database)
            )
        })?;
    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    let broker = crate::broker::open(&config.broker, tx)
        .await
        .with_context(|| {
            format!(
                "opening the broker {}",
                crate::config::redact_url(&config.broker)
            )
        })?;
    let uploads = crate::upload::storage::open(&config.uploads).with_context(|| {
        format!(
            "opening the upload storage {}",
            crate::config::redact_url(&config.uploads)
        )
    })?;
    // A node that could not keep an upload does not start.
    uploads.ping().await.with_context(|| {
        format!(
            "the upload storage {} refuses writes",
            crate::config::redact_url(&config.uploads)
        )
    })?;
    tracing::info!(storage = %uploads.describe(), "uploads");
    // Only once everything opened: a node that cannot start changes nothing.
    if config.admin_key.is_none() {
        ensure_demo_tenant(store.as_ref()).await?;
    }
    let mailer = crate::mail::Mailer::from_config(&config)?;
    let app = App::new(config, store, broker, uploads);
    let mut background = vec![
        tokio::spawn(Arc::clone(&app.hub).run_inbox(rx)),
        tokio::spawn(crate::ws::heartbeat_loop(Arc::clone(&app))),
        tokio::spawn(presence_loop(Arc::clone(&app))),
        tokio::spawn(usage_loop(Arc::clone(&app))),
        tokio::spawn(maintenance_loop(Arc::clone(&app))),
        tokio::spawn(sweep_loop(Arc::clone(&app))),
        tokio::spawn(crate::webhook::run(Arc::clone(&app))),
    ];
    if let Some(mailer) = mailer {
        tracing::info!("notification e-mail on");
        background.push(tokio::spawn(crate::mail::run(Arc::clone(&app), mailer)));
    }
    let router = crate::http::router(Arc::clone(&app));
    let metrics_server = match app.config.metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --metrics-listen {addr}"))?;
            tracing::info!(address = %l.local_addr()?, "metrics on http://{}/metrics", l.local_addr()?);
            let r = crate::http::metrics_router(Arc::clone(&app));
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, r).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            }))
        }
        None => None,
    };
    // Flips to true at shutdown: each HTTP connection then finishes its
    // in-flight request and closes.
    let (draining_tx, draining) = tokio::sync::watch::channel(false);
    let http_open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %addr, "listening on {scheme}://{addr}");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let open_now = http_open.load(std::sync::atomic::Ordering::Relaxed) + app.conns.count();
        if open_now as u64 >= app.config.max_connections {
            app.metrics.connections_refused.increment(1);
            if tls.is_none() {
                tokio::spawn(refuse_connection(stream));
            }
            continue;
        }
        let service = router.clone();
        let draining = draining.clone();
        let tls = tls.clone();
        let open = OpenGuard::new(&http_open);
        tokio::spawn(async move {
            let _open = open;
            let result = match tls {
                None => serve_http(TokioIo::new(stream), service, peer, draining).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_http(TokioIo::new(s), service, peer, draining).await,
                        _ => {
                            tracing::debug!(%peer, "TLS handshake failed");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: closing WebSockets and draining requests");
    crate::ws::close_all(&app);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let _ = draining_tx.send(true);
        while app.conns.count() > 0 || http_open.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(open = app.conns.count(), "drain timed out");
    }
    for task in background.into_iter().chain(metrics_server) {
        task.abort();
    }
    if let Err(e) = app.usage.flush(app.store.as_ref()).await {
        tracing::warn!(error = %e, "final usage flush failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Seconds a client refused for the connection limit is told to wait.
const OVERLOADED_RETRY_AFTER: u64 = 5;

/// Answers a connection beyond `--max-connections` with 503 and closes it,
/// without reading its request (plain TCP; over TLS the handshake would
/// cost what the limit is there to save, so the socket is just closed).
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let e = crate::error::AppError::Overloaded {
        retry_after: OVERLOADED_RETRY_AFTER,
    };
    let body = serde_json::json!({"error": {"code": e.code(), "message": e.message()}}).to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {OVERLOADED_RETRY_AFTER}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Counts a live HTTP connection until dropped.
struct OpenGuard(Arc<std::sync::atomic::AtomicUsize>);

impl OpenGuard {
    fn new(n: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenGuard(Arc::clone(n))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends or the
/// node drains, in which case the request in flight is finished first.
/// Serves one connection; every request carries its `peer` (for the
/// per-address limits).
async fn serve_http<I>(
    io: I,
    router: axum::Router,
    peer: std::net::SocketAddr,
    mut draining: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = crate::app::limits::Peer(peer);
    let service = TowerToHyperService::new(router.map_request(
        move |mut r: hyper::Request<hyper::body::Incoming>| {
            r.extensions_mut().insert(peer);
            r
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    if *draining.borrow() {
        conn.as_mut().graceful_shutdown();
        return conn.await;
    }
    tokio::select! {
        r = conn.as_mut() => r,
        _ = draining.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// The open tenant of a server without an operator key, so the demo works.
async fn ensure_demo_tenant(store: &dyn crate::store::Store) -> anyhow::Result<()> {
    let demo = Tenant {
        id: "demo".into(),
        secret: crate::domain::random_id(24),
        origins: Vec::new(),
        anonymous: AnonymousPolicy::Write,
    };
    match store.create_tenant(&demo).await {
        Ok(()) => tracing::info!("created the demo tenant (anonymous write, any origin)"),
        Err(StoreError::Conflict) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Presence goes out at most once a second per image; every fifth tick
/// recounts every image, so the viewers of a node that died disappear
/// within the 20 s its liveness takes to expire plus this period.
async fn presence_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        app.hub.presence_tick(n % 5 == 4).await;
        app.hub.check_quiet().await;
    }
}

async fn usage_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(USAGE_FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.usage.flush(app.store.as_ref()).await {
            app.metrics.store_error();
            tracing::warn!(error = %e, "usage flush failed; will retry");
        }
    }
}

async fn maintenance_loop(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.store.maintain().await {
            tracing::warn!(error = %e, "store maintenance failed; will retry");
        }
    }
}

/// Deletes old unreferenced uploads every tenth of `--upload-sweep-after`
/// (at least each second, at most each hour).
async fn sweep_loop(app: Arc<App>) {
    let every = Duration::from_secs((app.config.upload_sweep_after / 10).clamp(1, 3600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::upload::sweep(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "swept unreferenced uploads"),
            Err(e) => tracing::warn!(error = %e, "the upload sweep failed; will retry"),
        }
    }
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("reading {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("reading {}", key.display()))?,
    ))
    .with_context(|| format!("parsing the key in {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
