//! The `imagechat` binary: parses flags and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use imagechat::domain::{random_id, validate, AnonymousPolicy, Tenant};
use imagechat::Config;

#[derive(Parser)]
#[command(name = "imagechat", version, about = "Live discussion on images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<Config>),
    /// Manage tenants directly in the database (works while the server is down).
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its secret.
    Create {
        /// Tenant id: lower-case letters, digits and dashes.
        id: String,
        /// An allowed browser origin (repeat for several; none allows any).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// What users without SSO may do.
        #[arg(long, default_value = "none", value_parser = ["none", "read", "write"])]
        anonymous: String,
        /// Use this secret instead of a generated one.
        #[arg(long, env = "IMAGECHAT_TENANT_SECRET")]
        secret: Option<String>,
        #[arg(
            long,
            env = "IMAGECHAT_DATABASE",
            default_value = "sqlite://imagechat.db"
        )]
        database: String,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGECHAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// A panic (a bug) is logged as one error line, at most once a second, and
/// counted by the log's `suppressed` field; never a multi-line report per
/// request that a client could trigger over and over. The task that
/// panicked ends; connections close themselves when their tasks end.
fn quiet_panics() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    std::panic::set_hook(Box::new(|info| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if LAST.swap(now, Relaxed) == now {
            SUPPRESSED.fetch_add(1, Relaxed);
            return;
        }
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, %message, suppressed = SUPPRESSED.swap(0, Relaxed), "a task panicked (a bug; please report it)");
    }));
}

/// Thousands of sockets are normal here: take all the descriptors allowed.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-file limit");
            }
        }
    }
}

/// Binds with a deep accept queue: a reconnect storm is thousands of
/// connects at once, and a short queue turns them into 1 s SYN retries.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            init_logging(config.log_format == "json");
            quiet_panics();
            raise_open_file_limit();
            tracing::debug!(?config, "starting");
            let listener =
                listen(config.listen).with_context(|| format!("binding {}", config.listen))?;
            imagechat::run(listener, *config, shutdown_signal()).await
        }
        Command::Tenant(TenantCommand::Create {
            id,
            origins,
            anonymous,
            secret,
            database,
        }) => {
            init_logging(false);
            validate::tenant_id(&id).map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(s) = &secret {
                validate::plain("secret", s).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            for o in &origins {
                validate::plain("origin", o).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let store = imagechat::store::open(&database, 2).await?;
            let tenant = Tenant {
                id: id.into(),
                secret: secret.unwrap_or_else(|| random_id(24)),
                origins,
                anonymous: AnonymousPolicy::parse(&anonymous).unwrap_or(AnonymousPolicy::None),
            };
            store
                .create_tenant(&tenant)
                .await
                .with_context(|| format!("creating tenant {}", tenant.id))?;
            println!("tenant {} created; secret: {}", tenant.id, tenant.secret);
            Ok(())
        }
    }
}
