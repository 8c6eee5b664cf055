//! imagechat-bench: the load generator for imagechat and for the Socket.IO
//! peer in `bench/socketio`, and the side-by-side comparison of the two.
//!
//! Every client verifies what it receives (seq continuity per image), so a
//! run that loses, repeats or reorders an event fails with a non-zero exit.

mod compare;
mod floor;
mod http;
mod report;
mod scenario;
mod snapshot;
mod soak;
mod stats;
mod sub;
mod upload;
mod util;
mod write;
mod ws;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use sub::Target;
use util::{parse_url, Result};

#[derive(Parser)]
#[command(
    name = "imagechat-bench",
    version,
    about = "Load generator and side-by-side benchmark for imagechat and a Socket.IO 4 peer"
)]
struct Cli {
    /// Worker threads of the generator (default: one per CPU)
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N subscribers on one image, W writes per second for T seconds
    Fanout(FanoutArgs),
    /// C connections spread over I images, writes at random images
    Rooms(RoomsArgs),
    /// K idle subscribed connections: server memory per connection, idle CPU
    Idle(IdleArgs),
    /// K subscribers drop at once while writes continue, then resume by (epoch, seq) (imagechat)
    ReconnectStorm(StormArgs),
    /// Fan-out with subscribers spread over several nodes, writes through the last --url (imagechat)
    Cluster(ClusterArgs),
    /// U users creating chats at W writes per second over I images, no
    /// viewers: CPU per write, answer latency; --ramp finds the highest rate sustained
    Write(WriteCmdArgs),
    /// One image with C chats of M comments: server CPU per snapshot read
    /// (GET /api/v1/chats), then K clients reloading it at once (imagechat)
    Snapshot(SnapshotCmdArgs),
    /// Start both servers and run every scenario against each, one after the other
    Compare(compare::CompareArgs),
    /// The CPU one write() of a frame to a loopback socket costs here: the floor
    Floor(FloorArgs),
    /// Uploads of a PNG of a given size (random pixels): uploads per second,
    /// server CPU per upload against one decode of the same file here
    Upload(UploadArgs),
    /// Two nodes on PostgreSQL and Redis for minutes: mixed writes, drops and
    /// resumes, a node restart, memory sampled; every event verified
    Soak(soak::SoakArgs),
}

#[derive(Args)]
struct UploadArgs {
    /// imagechat base URL, http://127.0.0.x:PORT
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Server process id, to read its CPU time from /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// Tenant whose anonymous session uploads (it must allow anonymous writes)
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Image width in pixels (width × height × 3 ≈ the PNG's bytes)
    #[arg(long, default_value_t = 1000)]
    width: u32,
    /// Image height in pixels
    #[arg(long, default_value_t = 680)]
    height: u32,
    /// Uploads per round
    #[arg(long, short = 'n', default_value_t = 20)]
    count: usize,
    /// Uploads in flight at once
    #[arg(long, short = 'c', default_value_t = 2)]
    concurrency: usize,
    /// Rounds; the report gives their medians
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FloorArgs {
    /// Sockets written in turn (as many as the fan-out's viewers)
    #[arg(short = 'n', long, default_value_t = 1000)]
    sockets: usize,
    /// Frame sizes to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "500,2000")]
    bytes: Vec<usize>,
    /// Rounds (one write to every socket) per second
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds per frame size
    #[arg(short = 't', long, default_value_t = 2.0)]
    duration: f64,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct Common {
    /// Server base URL, http://127.0.0.x:PORT
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Which server speaks at --url
    #[arg(long, value_enum, default_value_t = Target::Imagechat)]
    target: Target,
    /// Server process id, to read its CPU time (and memory, for idle) from /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// imagechat tenant to create sessions on
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Connections being opened at the same time
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct WriteArgs {
    /// Writes per second
    #[arg(long, short = 'w', default_value_t = 200.0)]
    rate: f64,
    /// Seconds of measured writes
    #[arg(long, short = 't', default_value_t = 20.0)]
    duration: f64,
    /// Seconds of writes before measuring (not counted)
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive HTTP connections used for writes
    #[arg(long, default_value_t = 32)]
    pool: usize,
    /// Seconds to wait after the last write for every event to arrive
    #[arg(long, default_value_t = 15.0)]
    drain: f64,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribers
    #[arg(long, short = 'n', default_value_t = 1000)]
    subscribers: usize,
    #[command(flatten)]
    writes: WriteArgs,
}

#[derive(Args, Clone)]
struct RoomsArgs {
    #[command(flatten)]
    common: Common,
    /// Connections
    #[arg(long, short = 'c', default_value_t = 2000)]
    connections: usize,
    /// Images the connections are spread over
    #[arg(long, short = 'i', default_value_t = 100)]
    images: usize,
    #[command(flatten)]
    writes: WriteArgs,
}

#[derive(Args, Clone)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Idle connections measured
    #[arg(long, short = 'k', default_value_t = 10_000)]
    connections: usize,
    /// Images the connections subscribe to (round robin)
    #[arg(long, default_value_t = 50)]
    images: usize,
    /// Connections opened (and kept) before the first memory reading
    #[arg(long, default_value_t = 200)]
    warmup_connections: usize,
    /// Seconds to wait after opening before reading memory
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Seconds over which idle CPU is measured
    #[arg(long, default_value_t = 10.0)]
    window: f64,
}

#[derive(Args, Clone)]
struct StormArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribers that drop and come back
    #[arg(long, short = 'k', default_value_t = 2000)]
    subscribers: usize,
    /// Writes per second, before, during and after the storm
    #[arg(long, short = 'w', default_value_t = 100.0)]
    rate: f64,
    /// Seconds of writes
    #[arg(long, short = 't', default_value_t = 10.0)]
    duration: f64,
    /// Seconds after the first write at which every subscriber drops
    #[arg(long, default_value_t = 4.0)]
    drop_after: f64,
    /// Keep-alive HTTP connections used for writes
    #[arg(long, default_value_t = 32)]
    pool: usize,
    /// Seconds to wait after the last write for every client to catch up
    #[arg(long, default_value_t = 15.0)]
    drain: f64,
}

#[derive(Args, Clone)]
struct WriteCmdArgs {
    /// Server base URL, http://127.0.0.x:PORT (imagechat, or minimal_write_server)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Server process id, to read its CPU time from /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// imagechat tenant to create the users' anonymous sessions on
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Users, each an anonymous session; writes go to them in turn
    #[arg(long, short = 'u', default_value_t = 50)]
    users: usize,
    /// Writes per second, in total (the fixed rate; 0 for the ramp only)
    #[arg(long, short = 'w', default_value_t = 1000.0)]
    rate: f64,
    /// Images the writes are spread over (at random)
    #[arg(long, short = 'i', default_value_t = 100)]
    images: usize,
    /// Seconds of measured writes at the fixed rate
    #[arg(long, short = 't', default_value_t = 10.0)]
    duration: f64,
    /// Seconds of writes before measuring (not counted)
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections a user may have open at once (a browser's per-origin limit)
    #[arg(long, default_value_t = 6)]
    connections_per_user: usize,
    /// After the fixed rate, step through these rates (comma-separated) until
    /// one is not sustained, e.g. --ramp 250,500,1000,1500,2000,3000,4000
    #[arg(long, value_delimiter = ',')]
    ramp: Vec<f64>,
    /// Seconds measured per ramp step
    #[arg(long, default_value_t = 4.0)]
    step: f64,
    /// Seconds of unmeasured writes at the step's rate before each step
    #[arg(long, default_value_t = 1.0)]
    step_warmup: f64,
    /// A step is sustained when every write is accepted and the answer p99 is at most this (ms)
    #[arg(long, default_value_t = 25.0)]
    p99_limit: f64,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct SnapshotCmdArgs {
    /// imagechat base URL, http://127.0.0.x:PORT
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Server process id, to read its CPU time from /proc
    #[arg(long)]
    server_pid: Option<u32>,
    /// imagechat tenant to create the anonymous sessions on
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Chats on the image
    #[arg(long, default_value_t = 200)]
    chats: usize,
    /// Comments per chat, the chat's first one included
    #[arg(long, default_value_t = 3)]
    comments: usize,
    /// Connections (each its own session) writing the chats at once
    #[arg(long, default_value_t = 8)]
    setup_connections: usize,
    /// cpu: snapshot reads, one after the other on each connection
    #[arg(long, short = 'n', default_value_t = 2000)]
    requests: usize,
    /// cpu: keep-alive connections the reads use
    #[arg(long, short = 'c', default_value_t = 4)]
    connections: usize,
    /// storm: clients that each open a new connection at the same instant
    /// and read the snapshot (0: no storm)
    #[arg(long, short = 'k', default_value_t = 2000)]
    storm_clients: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Node URLs (repeat --url); subscribers are spread over all but the
    /// last, writes go through the last (with one URL, all on it)
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Process ids of the nodes (repeatable), for CPU per delivery
    #[arg(long)]
    server_pid: Vec<u32>,
    #[arg(long, default_value = "demo")]
    tenant: String,
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    #[arg(long)]
    json: bool,
    /// Subscribers
    #[arg(long, short = 'n', default_value_t = 1000)]
    subscribers: usize,
    #[command(flatten)]
    writes: WriteArgs,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn fanout_like(
    scenario: &'static str,
    target: Target,
    sub_urls: &[String],
    write_url: &str,
    common: (&str, usize, Vec<u32>),
    connections: usize,
    images: usize,
    w: &WriteArgs,
) -> Result<scenario::LoadReport> {
    let sub_addrs = sub_urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>>>()?;
    scenario::load(scenario::LoadCfg {
        scenario,
        target,
        sub_addrs,
        write_addr: parse_url(write_url)?,
        tenant: common.0.into(),
        connections,
        images,
        rate: w.rate,
        warmup: secs(w.warmup),
        duration: secs(w.duration),
        pool: w.pool,
        drain: secs(w.drain),
        pids: common.2,
        concurrency: common.1,
    })
    .await
}

async fn run(cmd: Cmd) -> Result<bool> {
    match cmd {
        Cmd::Fanout(a) => {
            let c = &a.common;
            let urls = [c.url.clone()];
            let r = fanout_like(
                "fanout",
                c.target,
                &urls,
                &c.url,
                (
                    &c.tenant,
                    c.connect_concurrency,
                    c.server_pid.into_iter().collect(),
                ),
                a.subscribers,
                1,
                &a.writes,
            )
            .await?;
            if c.json {
                print_json(&r)?
            } else {
                report::load(&r)
            }
            Ok(r.ok)
        }
        Cmd::Rooms(a) => {
            let c = &a.common;
            let urls = [c.url.clone()];
            let r = fanout_like(
                "rooms",
                c.target,
                &urls,
                &c.url,
                (
                    &c.tenant,
                    c.connect_concurrency,
                    c.server_pid.into_iter().collect(),
                ),
                a.connections,
                a.images,
                &a.writes,
            )
            .await?;
            if c.json {
                print_json(&r)?
            } else {
                report::load(&r)
            }
            Ok(r.ok)
        }
        Cmd::Cluster(a) => {
            let (subs, write) = match a.urls.split_last() {
                Some((last, rest)) if !rest.is_empty() => (rest.to_vec(), last.clone()),
                Some((last, _)) => (vec![last.clone()], last.clone()),
                None => return util::err("cluster needs at least one --url"),
            };
            let r = fanout_like(
                "cluster",
                Target::Imagechat,
                &subs,
                &write,
                (&a.tenant, a.connect_concurrency, a.server_pid.clone()),
                a.subscribers,
                1,
                &a.writes,
            )
            .await?;
            if a.json {
                print_json(&r)?
            } else {
                report::load(&r)
            }
            Ok(r.ok)
        }
        Cmd::Idle(a) => {
            let c = &a.common;
            let Some(pid) = c.server_pid else {
                return util::err("idle needs --server-pid to read the server's memory");
            };
            let r = scenario::idle(scenario::IdleCfg {
                target: c.target,
                addr: parse_url(&c.url)?,
                tenant: c.tenant.clone(),
                connections: a.connections,
                images: a.images,
                warmup_connections: a.warmup_connections,
                settle: secs(a.settle),
                window: secs(a.window),
                pid,
                concurrency: c.connect_concurrency,
            })
            .await?;
            if c.json {
                print_json(&r)?
            } else {
                report::idle(&r)
            }
            Ok(r.ok)
        }
        Cmd::ReconnectStorm(a) => {
            let c = &a.common;
            if c.target != Target::Imagechat {
                return util::err("reconnect-storm needs resume by (epoch, seq): imagechat only");
            }
            let r = scenario::storm(scenario::StormCfg {
                addr: parse_url(&c.url)?,
                tenant: c.tenant.clone(),
                subscribers: a.subscribers,
                rate: a.rate,
                duration: secs(a.duration),
                drop_after: secs(a.drop_after),
                pool: a.pool,
                drain: secs(a.drain),
                pid: c.server_pid,
                concurrency: c.connect_concurrency,
            })
            .await?;
            if c.json {
                print_json(&r)?
            } else {
                report::storm(&r)
            }
            Ok(r.ok)
        }
        Cmd::Write(a) => {
            let cfg = write::WriteCfg {
                addr: parse_url(&a.url)?,
                tenant: a.tenant.clone(),
                users: a.users,
                images: a.images,
                conns_per_user: a.connections_per_user,
                pid: a.server_pid,
                p99_limit_ms: a.p99_limit,
                label: "write".into(),
            };
            let fixed = (a.rate > 0.0).then(|| (a.rate, secs(a.warmup), secs(a.duration)));
            if fixed.is_none() && a.ramp.is_empty() {
                return util::err("nothing to run: give a positive --rate or a --ramp");
            }
            let r = write::run(&cfg, fixed, &a.ramp, secs(a.step_warmup), secs(a.step)).await?;
            if a.json {
                print_json(&r)?
            } else {
                write::print(&r)
            }
            Ok(r.ok)
        }
        Cmd::Snapshot(a) => {
            let r = snapshot::run(&snapshot::SnapshotCfg {
                addr: parse_url(&a.url)?,
                tenant: a.tenant.clone(),
                pid: a.server_pid,
                chats: a.chats,
                comments: a.comments,
                setup_connections: a.setup_connections,
                requests: a.requests,
                connections: a.connections,
                storm_clients: a.storm_clients,
                label: "snapshot".into(),
            })
            .await?;
            if a.json {
                print_json(&r)?
            } else {
                snapshot::print(&r)
            }
            Ok(r.ok)
        }
        Cmd::Upload(a) => {
            let r = upload::run(&upload::UploadCfg {
                addr: parse_url(&a.url)?,
                pid: a.server_pid,
                tenant: a.tenant.clone(),
                width: a.width,
                height: a.height,
                count: a.count,
                concurrency: a.concurrency,
                rounds: a.rounds,
            })
            .await?;
            if a.json {
                print_json(&r)?
            } else {
                upload::print(&r)
            }
            Ok(r.ok)
        }
        Cmd::Compare(a) => compare::run(a).await,
        Cmd::Soak(a) => soak::run(a).await,
        Cmd::Floor(a) => {
            let r = floor::run(a.sockets, &a.bytes, a.rate, a.duration).await?;
            if a.json {
                print_json(&r)?
            } else {
                floor::print(&r)
            }
            Ok(true)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::start();
    util::raise_nofile();
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imagechat-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let r = rt.block_on(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => return util::err(format!("cannot watch SIGTERM: {e}")),
            };
        // Dropping `run` on a signal drops every server process guard, which
        // stops the servers `compare` started.
        tokio::select! {
            r = run(cli.cmd) => r,
            _ = tokio::signal::ctrl_c() => util::err("interrupted"),
            _ = term.recv() => util::err("terminated"),
        }
    });
    // Subscriber tasks may still be parked; do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("imagechat-bench: verification failed (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("imagechat-bench: {e}");
            ExitCode::from(2)
        }
    }
}
