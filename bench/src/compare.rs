//! `compare`: starts imagechat and the Socket.IO peer (a fresh process for
//! every run), drives both with the same client one after the other, and
//! prints one table per scenario with both systems, their ratio and the
//! medians of the repeated runs. Every server started here is stopped when
//! its run ends, also on error or interruption (see `ServerProc`'s Drop).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::floor;
use crate::report::Table;
use crate::scenario::{self, IdleReport, LoadReport, StormReport};
use crate::snapshot::{self, SnapshotReport};
use crate::stats::median;
use crate::sub::Target;
use crate::util::{self, err, Result};
use crate::write::{self, WriteReport};

#[derive(Args, Clone)]
pub struct CompareArgs {
    /// The imagechat server binary (build it with cargo build --release)
    #[arg(long, default_value = "target/release/imagechat")]
    imagechat_bin: PathBuf,
    /// The Socket.IO peer's folder (after npm ci)
    #[arg(long, default_value = "bench/socketio")]
    socketio_dir: PathBuf,
    /// Node.js executable
    #[arg(long, default_value = "node")]
    node: String,
    /// Runs of each scenario per system; tables show medians
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds of measured writes in each load run
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of writes before measuring
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Scenarios, comma-separated: floor, fanout-high, fanout-light, rooms, idle,
    /// reconnect-storm (floor: what one write() costs here, the baseline; no server);
    /// also write (imagechat against the minimal axum + SQLite server) and snapshot
    /// (imagechat's snapshot reads with its cache and without), not run by default
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,fanout-high,fanout-light,rooms,idle,reconnect-storm"
    )]
    scenarios: Vec<String>,
    /// Subscribers in the fan-out scenarios
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Writes per second in fanout-high and rooms
    #[arg(long, default_value_t = 200.0)]
    high_rate: f64,
    /// Writes per second in fanout-light
    #[arg(long, default_value_t = 10.0)]
    light_rate: f64,
    /// Connections and images in rooms
    #[arg(long, default_value_t = 2000)]
    rooms_connections: usize,
    #[arg(long, default_value_t = 100)]
    rooms_images: usize,
    /// Idle connections
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Subscribers in the reconnect storm
    #[arg(long, default_value_t = 2000)]
    storm_subscribers: usize,
    /// Run only this system
    #[arg(long, value_enum)]
    only: Option<Target>,
    /// Also write every run and the medians to this JSON file
    #[arg(long)]
    out: Option<PathBuf>,
    /// Connections being opened at the same time
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// One more flag for every imagechat server started, e.g.
    /// --imagechat-arg=--batch-window-ms=10 (repeatable)
    #[arg(long, allow_hyphen_values = true)]
    imagechat_arg: Vec<String>,
    /// imagechat's database for every run instead of a fresh SQLite file,
    /// e.g. postgres://postgres@127.0.0.1:5432/DB (create it first)
    #[arg(long)]
    imagechat_database: Option<String>,
    /// The minimal axum + SQLite server `write` measures imagechat against
    #[arg(long, default_value = "target/release/minimal_write_server")]
    minimal_bin: PathBuf,
    /// write: users (anonymous sessions)
    #[arg(long, default_value_t = 50)]
    write_users: usize,
    /// write: the fixed rate, writes per second in total
    #[arg(long, default_value_t = 1000.0)]
    write_rate: f64,
    /// write: images the writes are spread over
    #[arg(long, default_value_t = 100)]
    write_images: usize,
    /// write: seconds measured at the fixed rate (after --warmup)
    #[arg(long, default_value_t = 10.0)]
    write_duration: f64,
    /// write: the ramp's rates, each for 1 s unmeasured then 4 s measured,
    /// until one is not sustained (every write accepted, answer p99 ≤ 25 ms)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250,500,1000,1500,2000,2500,3000,4000,5000"
    )]
    write_ramp: Vec<f64>,
    /// snapshot: reads of the `cpu` phase (over 4 keep-alive connections)
    #[arg(long, default_value_t = 2000)]
    snapshot_requests: usize,
    /// snapshot: clients of the storm, each a new connection at the same instant
    #[arg(long, default_value_t = 2000)]
    snapshot_storm_clients: usize,
}

/// A server process; stopped (SIGTERM, then SIGKILL) and its files removed
/// when dropped.
struct ServerProc {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        util::stop_child(&mut self.child, Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn log_tail(dir: &std::path::Path) -> String {
    let s = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Those of `flags` that `bin serve` knows (an older build in an A/B run,
/// or one from before a feature, may not).
fn known_flags(bin: &std::path::Path, flags: &[&'static str]) -> Vec<&'static str> {
    let help = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    flags
        .iter()
        .copied()
        .filter(|flag| help.contains(flag))
        .collect()
}

/// The flags that turn off the per-address limits, as far as `bin` knows them.
fn per_address_limits_off(bin: &std::path::Path) -> Vec<&'static str> {
    known_flags(
        bin,
        &[
            "--sessions-per-address-per-minute",
            "--anonymous-writes-per-address-per-minute",
            "--websockets-per-address",
        ],
    )
    .into_iter()
    .flat_map(|flag| [flag, "0"])
    .collect()
}

/// The server flag that sizes imagechat's snapshot cache (0 turns it off).
const SNAPSHOT_CACHE_FLAG: &str = "--snapshot-cache-bytes";

async fn start(target: Target, a: &CompareArgs, n: usize) -> Result<ServerProc> {
    start_with(target, a, n, &[]).await
}

/// `start`, with `extra` flags for imagechat after the others; a flag of
/// `extra` replaces the same flag given with `--imagechat-arg=FLAG=VALUE`.
async fn start_with(
    target: Target,
    a: &CompareArgs,
    n: usize,
    extra: &[&str],
) -> Result<ServerProc> {
    let dir = std::env::temp_dir().join(format!(
        "imagechat-bench-{}-{}-{n}",
        std::process::id(),
        target.name()
    ));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = File::create(dir.join("server.log"))?;
    let cmd = match target {
        Target::Imagechat => {
            let mut c = Command::new(&a.imagechat_bin);
            c.arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--database")
                .arg(
                    a.imagechat_database
                        .clone()
                        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display())),
                )
                .arg("--write-rate-per-minute")
                .arg("0")
                // Every simulated client shares one loopback address.
                .args(per_address_limits_off(&a.imagechat_bin))
                .args(a.imagechat_arg.iter().filter(|arg| {
                    !extra.iter().any(|f| {
                        f.starts_with("--")
                            && (arg.as_str() == *f
                                || arg.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
                    })
                }))
                .args(extra);
            // The server reads IMAGECHAT_* settings; only the flags above count.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("IMAGECHAT_") {
                    c.env_remove(k);
                }
            }
            c
        }
        Target::Socketio => {
            let mut c = Command::new(&a.node);
            c.arg("server.js")
                .arg("--port")
                .arg(port.to_string())
                .current_dir(&a.socketio_dir)
                .env_remove("PORT")
                .env_remove("HOST");
            c
        }
    };
    launch(target.name(), cmd, dir, addr, log).await
}

/// Starts the minimal axum + SQLite server of the `write` scenario.
async fn start_minimal(a: &CompareArgs, n: usize) -> Result<ServerProc> {
    let dir = std::env::temp_dir().join(format!(
        "imagechat-bench-{}-minimal-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let log = File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(&a.minimal_bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--database")
        .arg(dir.join("minimal.db"));
    launch("minimal", cmd, dir, addr, log).await
}

/// Spawns `cmd` with its output in `log` and waits until `/healthz` answers.
async fn launch(
    name: &str,
    mut cmd: Command,
    dir: PathBuf,
    addr: SocketAddr,
    log: File,
) -> Result<ServerProc> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let pid = child.id();
    let mut srv = ServerProc {
        child,
        pid,
        addr,
        dir,
    };
    for _ in 0..200 {
        if let Ok(Some(st)) = srv.child.try_wait() {
            return err(format!(
                "{name} exited at start-up ({st}):\n{}",
                log_tail(&srv.dir)
            ));
        }
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_secs(1),
            crate::http::once(addr, "GET", "/healthz", None, None),
        )
        .await
        {
            if r.status == 200 {
                return Ok(srv);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    err(format!(
        "{name} did not become healthy:\n{}",
        log_tail(&srv.dir)
    ))
}

#[derive(Serialize, Default)]
struct Runs<T> {
    imagechat: Vec<T>,
    socketio: Vec<T>,
    failures: Vec<String>,
}

impl<T> Runs<T> {
    fn of(&self, t: Target) -> &Vec<T> {
        match t {
            Target::Imagechat => &self.imagechat,
            Target::Socketio => &self.socketio,
        }
    }
    fn push(&mut self, t: Target, v: T) {
        match t {
            Target::Imagechat => self.imagechat.push(v),
            Target::Socketio => self.socketio.push(v),
        }
    }
    fn med(&self, t: Target, f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.of(t).iter().filter_map(f).collect();
        if v.is_empty() {
            None
        } else {
            Some(median(&v))
        }
    }
}

fn targets(a: &CompareArgs, both: bool) -> Vec<Target> {
    let all = if both {
        vec![Target::Imagechat, Target::Socketio]
    } else {
        vec![Target::Imagechat]
    };
    all.into_iter()
        .filter(|t| a.only.is_none_or(|o| o == *t))
        .collect()
}

#[derive(Serialize)]
struct Check {
    scenario: String,
    target: String,
    measured: String,
    pass: bool,
}

struct Ctx {
    tables: Vec<String>,
    checks: Vec<Check>,
    json: serde_json::Map<String, serde_json::Value>,
    all_ok: bool,
    counter: usize,
}

impl Ctx {
    fn check(&mut self, scenario: &str, target: &str, measured: String, pass: bool) {
        self.checks.push(Check {
            scenario: scenario.into(),
            target: target.into(),
            measured,
            pass,
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn load_cmp(
    a: &CompareArgs,
    ctx: &mut Ctx,
    name: &'static str,
    connections: usize,
    images: usize,
    rate: f64,
) -> Result<Runs<LoadReport>> {
    let mut runs: Runs<LoadReport> = Runs::default();
    for t in targets(a, true) {
        for r in 0..a.repeat {
            eprintln!("-- {name} {} run {}/{}", t.name(), r + 1, a.repeat);
            ctx.counter += 1;
            let srv = match start(t, a, ctx.counter).await {
                Ok(s) => s,
                Err(e) => {
                    runs.failures
                        .push(format!("{} run {}: {e}", t.name(), r + 1));
                    continue;
                }
            };
            let rep = scenario::load(scenario::LoadCfg {
                scenario: name,
                target: t,
                sub_addrs: vec![srv.addr],
                write_addr: srv.addr,
                tenant: "demo".into(),
                connections,
                images,
                rate,
                warmup: Duration::from_secs_f64(a.warmup),
                duration: Duration::from_secs_f64(a.duration),
                pool: 32,
                drain: Duration::from_secs(15),
                pids: vec![srv.pid],
                concurrency: a.connect_concurrency,
            })
            .await;
            drop(srv);
            match rep {
                Ok(rep) => {
                    eprintln!(
                        "   p99 {:.2} ms, {} µs CPU/delivery, {} lost, ok={}",
                        rep.latency.p99_ms,
                        crate::report::opt(rep.server_cpu_us_per_delivery, 3),
                        rep.lost,
                        rep.ok
                    );
                    runs.push(t, rep)
                }
                Err(e) => runs
                    .failures
                    .push(format!("{} run {}: {e}", t.name(), r + 1)),
            }
        }
    }
    let m = |t: Target, f: &dyn Fn(&LoadReport) -> Option<f64>| runs.med(t, f);
    let (i, s) = (Target::Imagechat, Target::Socketio);
    let mut tb = Table::new(format!(
        "### {name}: {connections} connections over {images} image(s), {rate} writes/s for {} s (median of {} runs)",
        a.duration, a.repeat
    ));
    type F = fn(&LoadReport) -> Option<f64>;
    let rows: &[(&str, F, usize)] = &[
        ("deliveries per second", |r| Some(r.deliveries_per_sec), 0),
        ("latency p50 (ms)", |r| Some(r.latency.p50_ms), 2),
        ("latency p99 (ms)", |r| Some(r.latency.p99_ms), 2),
        ("latency p99.9 (ms)", |r| Some(r.latency.p999_ms), 2),
        ("latency max (ms)", |r| Some(r.latency.max_ms), 2),
        (
            "server CPU per delivery (µs)",
            |r| r.server_cpu_us_per_delivery,
            3,
        ),
        ("server CPU (cores)", |r| r.server_cpu_cores, 3),
        ("generator CPU (cores)", |r| Some(r.generator_cpu_cores), 3),
        (
            "machine busy, all CPUs (%)",
            |r| Some(r.machine_busy * 100.0),
            0,
        ),
        ("other processes' CPU (cores)", |r| r.other_cpu_cores, 3),
        ("wire bytes per delivery", |r| Some(r.bytes_per_delivery), 1),
        ("frames per delivery", |r| Some(r.frames_per_delivery), 3),
        ("write answer p50 (ms)", |r| Some(r.write_answer_p50_ms), 2),
        ("write answer p99 (ms)", |r| Some(r.write_answer_p99_ms), 2),
        ("write sent late, p99 (ms)", |r| Some(r.write_lag_p99_ms), 2),
        (
            "writes skipped (> 5 s late)",
            |r| Some(r.writes_skipped as f64),
            0,
        ),
    ];
    for &(label, f, p) in rows {
        tb.row(label, m(i, &f), m(s, &f), p);
    }
    let sum = |t: Target| -> String {
        let v = runs.of(t);
        if v.is_empty() {
            return "-".into();
        }
        let l: u64 = v.iter().map(|r| r.lost).sum();
        let d: u64 = v.iter().map(|r| r.duplicated).sum();
        let o: u64 = v.iter().map(|r| r.reordered).sum();
        format!("{l} / {d} / {o}")
    };
    tb.text_row("lost / duplicated / reordered (all runs)", sum(i), sum(s));
    let okc = |t: Target| -> String {
        let v = runs.of(t);
        format!("{}/{}", v.iter().filter(|r| r.ok).count(), a.repeat)
    };
    tb.text_row("runs verified", okc(i), okc(s));
    for t in [i, s] {
        if runs.of(t).iter().any(|r| !r.ok) {
            ctx.all_ok = false;
        }
    }
    if !runs.failures.is_empty() {
        ctx.all_ok = false;
    }
    let mut text = tb.render();
    for f in &runs.failures {
        text += &format!("\nrun failed: {f}\n");
    }
    ctx.tables.push(text);
    Ok(runs)
}

async fn idle_cmp(a: &CompareArgs, ctx: &mut Ctx) -> Result<Runs<IdleReport>> {
    let mut runs: Runs<IdleReport> = Runs::default();
    for t in targets(a, true) {
        for r in 0..a.repeat {
            eprintln!("-- idle {} run {}/{}", t.name(), r + 1, a.repeat);
            ctx.counter += 1;
            let srv = match start(t, a, ctx.counter).await {
                Ok(s) => s,
                Err(e) => {
                    runs.failures
                        .push(format!("{} run {}: {e}", t.name(), r + 1));
                    continue;
                }
            };
            let rep = scenario::idle(scenario::IdleCfg {
                target: t,
                addr: srv.addr,
                tenant: "demo".into(),
                connections: a.idle_connections,
                images: 50,
                warmup_connections: 200,
                settle: Duration::from_secs(3),
                window: Duration::from_secs(10),
                pid: srv.pid,
                concurrency: a.connect_concurrency,
            })
            .await;
            drop(srv);
            match rep {
                Ok(rep) => {
                    eprintln!(
                        "   {:.2} KiB/connection, idle CPU {:.3} % of a core",
                        rep.kib_per_connection,
                        rep.idle_cpu_cores * 100.0
                    );
                    runs.push(t, rep)
                }
                Err(e) => runs
                    .failures
                    .push(format!("{} run {}: {e}", t.name(), r + 1)),
            }
        }
    }
    let (i, s) = (Target::Imagechat, Target::Socketio);
    let mut tb = Table::new(format!(
        "### idle: {} subscribed connections over 50 images (median of {} runs)",
        a.idle_connections, a.repeat
    ));
    type F = fn(&IdleReport) -> Option<f64>;
    let rows: &[(&str, F, usize)] = &[
        (
            "RSS per connection (KiB)",
            |r| Some(r.kib_per_connection),
            2,
        ),
        (
            "RSS before (MiB)",
            |r| Some(r.rss_before_kib as f64 / 1024.0),
            1,
        ),
        (
            "RSS after (MiB)",
            |r| Some(r.rss_after_kib as f64 / 1024.0),
            1,
        ),
        (
            "idle CPU (% of a core)",
            |r| Some(r.idle_cpu_cores * 100.0),
            3,
        ),
        (
            "connections opened per second",
            |r| Some(r.connections_per_sec),
            0,
        ),
    ];
    for &(label, f, p) in rows {
        tb.row(label, runs.med(i, f), runs.med(s, f), p);
    }
    for t in [i, s] {
        if runs.of(t).iter().any(|r| !r.ok) {
            ctx.all_ok = false;
        }
    }
    if !runs.failures.is_empty() {
        ctx.all_ok = false;
    }
    let mut text = tb.render();
    for f in &runs.failures {
        text += &format!("\nrun failed: {f}\n");
    }
    ctx.tables.push(text);
    Ok(runs)
}

async fn storm_cmp(a: &CompareArgs, ctx: &mut Ctx) -> Result<Runs<StormReport>> {
    let mut runs: Runs<StormReport> = Runs::default();
    if a.only == Some(Target::Socketio) {
        return Ok(runs);
    }
    for r in 0..a.repeat {
        eprintln!("-- reconnect-storm imagechat run {}/{}", r + 1, a.repeat);
        ctx.counter += 1;
        let srv = match start(Target::Imagechat, a, ctx.counter).await {
            Ok(s) => s,
            Err(e) => {
                runs.failures.push(format!("run {}: {e}", r + 1));
                continue;
            }
        };
        let rep = scenario::storm(scenario::StormCfg {
            addr: srv.addr,
            tenant: "demo".into(),
            subscribers: a.storm_subscribers,
            rate: 100.0,
            duration: Duration::from_secs(10),
            drop_after: Duration::from_secs(4),
            pool: 32,
            drain: Duration::from_secs(15),
            pid: Some(srv.pid),
            concurrency: a.connect_concurrency,
        })
        .await;
        drop(srv);
        match rep {
            Ok(rep) => {
                eprintln!(
                    "   all caught up after {:.1} ms, {} lost, ok={}",
                    rep.all_caught_up_ms, rep.lost, rep.ok
                );
                runs.imagechat.push(rep)
            }
            Err(e) => runs.failures.push(format!("run {}: {e}", r + 1)),
        }
    }
    let mut tb = Table::new(format!(
        "### reconnect-storm: {} subscribers of one image drop at once during 100 writes/s and resume by (epoch, seq) (imagechat only; the Socket.IO peer has no resume) (median of {} runs)",
        a.storm_subscribers, a.repeat
    ));
    type F = fn(&StormReport) -> Option<f64>;
    let rows: &[(&str, F, usize)] = &[
        ("catch-up p50 (ms)", |r| Some(r.catch_up_p50_ms), 1),
        ("catch-up p99 (ms)", |r| Some(r.catch_up_p99_ms), 1),
        ("all caught up after (ms)", |r| Some(r.all_caught_up_ms), 1),
        ("server CPU for the run (s)", |r| r.server_cpu_s, 2),
    ];
    for &(label, f, p) in rows {
        tb.row(label, runs.med(Target::Imagechat, f), None, p);
    }
    let v = &runs.imagechat;
    tb.text_row(
        "lost / duplicated / reordered / not recovered (all runs)",
        format!(
            "{} / {} / {} / {}",
            v.iter().map(|r| r.lost).sum::<u64>(),
            v.iter().map(|r| r.duplicated).sum::<u64>(),
            v.iter().map(|r| r.reordered).sum::<u64>(),
            v.iter().map(|r| r.not_recovered).sum::<u64>()
        ),
        "n/a".into(),
    );
    tb.text_row(
        "runs verified",
        format!("{}/{}", v.iter().filter(|r| r.ok).count(), a.repeat),
        "n/a".into(),
    );
    if v.iter().any(|r| !r.ok) || !runs.failures.is_empty() {
        ctx.all_ok = false;
    }
    let mut text = tb.render();
    for f in &runs.failures {
        text += &format!("\nrun failed: {f}\n");
    }
    ctx.tables.push(text);
    Ok(runs)
}

#[derive(Serialize, Default)]
struct WriteRuns {
    minimal: Vec<WriteReport>,
    imagechat: Vec<WriteReport>,
    failures: Vec<String>,
}

fn med_of<T>(v: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = v.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| median(&v))
}

/// `write`: the same writes against the minimal axum + SQLite server and
/// against imagechat, a fresh server per run: the fixed rate, then the ramp.
async fn write_cmp(a: &CompareArgs, ctx: &mut Ctx) -> Result<WriteRuns> {
    let mut runs = WriteRuns::default();
    let systems: Vec<&str> = match a.only {
        None => vec!["minimal", "imagechat"],
        Some(Target::Imagechat) => vec!["imagechat"],
        Some(Target::Socketio) => vec![],
    };
    for sys in systems {
        for r in 0..a.repeat {
            eprintln!("-- write {sys} run {}/{}", r + 1, a.repeat);
            ctx.counter += 1;
            let srv = if sys == "minimal" {
                start_minimal(a, ctx.counter).await
            } else {
                start(Target::Imagechat, a, ctx.counter).await
            };
            let srv = match srv {
                Ok(s) => s,
                Err(e) => {
                    runs.failures.push(format!("{sys} run {}: {e}", r + 1));
                    continue;
                }
            };
            let cfg = write::WriteCfg {
                addr: srv.addr,
                tenant: "demo".into(),
                users: a.write_users,
                images: a.write_images,
                conns_per_user: 6,
                pid: Some(srv.pid),
                p99_limit_ms: 25.0,
                label: format!("write {sys}"),
            };
            let rep = write::run(
                &cfg,
                Some((
                    a.write_rate,
                    Duration::from_secs_f64(a.warmup),
                    Duration::from_secs_f64(a.write_duration),
                )),
                &a.write_ramp,
                Duration::from_secs(1),
                Duration::from_secs(4),
            )
            .await;
            drop(srv);
            match rep {
                Ok(rep) => {
                    eprintln!(
                        "   highest rate sustained: {}",
                        rep.sustained_rate
                            .map_or("none".into(), |w| format!("{w} writes/s"))
                    );
                    if sys == "minimal" {
                        runs.minimal.push(rep)
                    } else {
                        runs.imagechat.push(rep)
                    }
                }
                Err(e) => runs.failures.push(format!("{sys} run {}: {e}", r + 1)),
            }
        }
    }
    let mut tb = Table::with_heads(
        format!(
            "### write: {} users create chats over {} images, no viewers; {} writes/s for {} s, then a ramp (median of {} runs)",
            a.write_users, a.write_images, a.write_rate, a.write_duration, a.repeat
        ),
        ["minimal", "imagechat", "imagechat / minimal"],
    );
    type F = fn(&WriteReport) -> Option<f64>;
    let fixed = |r: &WriteReport| r.steps.first().cloned();
    let rows: &[(&str, F, usize)] = &[
        (
            "server CPU per write (µs)",
            |r| r.steps.first().and_then(|s| s.server_cpu_us_per_write),
            1,
        ),
        (
            "answer p50 (ms)",
            |r| r.steps.first().map(|s| s.answer_p50_ms),
            2,
        ),
        (
            "answer p99 (ms)",
            |r| r.steps.first().map(|s| s.answer_p99_ms),
            2,
        ),
        (
            "answer max (ms)",
            |r| r.steps.first().map(|s| s.answer_max_ms),
            2,
        ),
        (
            "server CPU (cores)",
            |r| r.steps.first().and_then(|s| s.server_cpu_cores),
            3,
        ),
        (
            "generator CPU (cores)",
            |r| r.steps.first().map(|s| s.generator_cpu_cores),
            3,
        ),
        (
            "released late p99 (ms)",
            |r| r.steps.first().map(|s| s.released_late_p99_ms),
            2,
        ),
        (
            "highest rate sustained (writes/s)",
            |r| Some(r.sustained_rate.unwrap_or(0.0)),
            0,
        ),
    ];
    for &(label, f, p) in rows {
        tb.row(
            label,
            med_of(&runs.minimal, f),
            med_of(&runs.imagechat, f),
            p,
        );
    }
    let accepted = |v: &[WriteReport]| -> String {
        let s: Vec<_> = v.iter().filter_map(fixed).collect();
        if s.is_empty() {
            return "-".into();
        }
        format!(
            "{} / {}",
            s.iter().map(|s| s.accepted).sum::<u64>(),
            s.iter().map(|s| s.offered).sum::<u64>()
        )
    };
    tb.text_row(
        "accepted / offered (all runs)",
        accepted(&runs.minimal),
        accepted(&runs.imagechat),
    );
    let sustained = |v: &[WriteReport]| -> String {
        v.iter()
            .map(|r| r.sustained_rate.map_or("none".into(), |w| format!("{w}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    tb.text_row(
        "highest rate sustained, each run",
        sustained(&runs.minimal),
        sustained(&runs.imagechat),
    );
    if runs.minimal.iter().chain(&runs.imagechat).any(|r| !r.ok) || !runs.failures.is_empty() {
        ctx.all_ok = false;
    }
    let mut text = tb.render();
    text += &format!(
        "\nThe first rows are at {} writes/s; sustained: every write of a ramp step accepted and answer p99 ≤ 25 ms (ramp: {}).\n",
        a.write_rate,
        a.write_ramp
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for f in &runs.failures {
        text += &format!("\nrun failed: {f}\n");
    }
    for r in runs.minimal.iter().chain(&runs.imagechat) {
        for s in r.steps.iter().take(1) {
            for e in &s.errors {
                text += &format!("\n{} w/s: {e}\n", s.rate);
            }
        }
    }
    ctx.tables.push(text);
    Ok(runs)
}

#[derive(Serialize, Default)]
struct SnapshotRuns {
    /// Whether the server under test knows `--snapshot-cache-bytes`; when it
    /// does not (a build from before the cache), only the uncached runs ran.
    cache_flag: bool,
    /// The server's own cache size (or the one `--imagechat-arg` gave).
    cached: Vec<SnapshotReport>,
    /// `--snapshot-cache-bytes 0`, or a server without the flag.
    uncached: Vec<SnapshotReport>,
    failures: Vec<String>,
}

/// Set-up of `snapshot` in `compare`: chats, comments per chat, the
/// connections writing them, and the keep-alive connections of `cpu`.
const SNAPSHOT_CHATS: usize = 200;
const SNAPSHOT_COMMENTS: usize = 3;
const SNAPSHOT_SETUP_CONNECTIONS: usize = 8;
const SNAPSHOT_CONNECTIONS: usize = 4;

/// `snapshot`: imagechat with its snapshot cache and with
/// `--snapshot-cache-bytes 0`, a fresh server for each, in turn per repeat.
async fn snapshot_cmp(a: &CompareArgs, ctx: &mut Ctx) -> Result<SnapshotRuns> {
    let mut runs = SnapshotRuns::default();
    if a.only == Some(Target::Socketio) {
        return Ok(runs);
    }
    runs.cache_flag = !known_flags(&a.imagechat_bin, &[SNAPSHOT_CACHE_FLAG]).is_empty();
    let variants: &[(&str, &[&str])] = if runs.cache_flag {
        &[("uncached", &[SNAPSHOT_CACHE_FLAG, "0"]), ("cached", &[])]
    } else {
        eprintln!(
            "-- snapshot: {} does not know {SNAPSHOT_CACHE_FLAG}: only the uncached runs",
            a.imagechat_bin.display()
        );
        &[("uncached", &[])]
    };
    for r in 0..a.repeat {
        for &(label, extra) in variants {
            eprintln!("-- snapshot {label} run {}/{}", r + 1, a.repeat);
            ctx.counter += 1;
            let srv = match start_with(Target::Imagechat, a, ctx.counter, extra).await {
                Ok(s) => s,
                Err(e) => {
                    runs.failures.push(format!("{label} run {}: {e}", r + 1));
                    continue;
                }
            };
            let rep = snapshot::run(&snapshot::SnapshotCfg {
                addr: srv.addr,
                tenant: "demo".into(),
                pid: Some(srv.pid),
                chats: SNAPSHOT_CHATS,
                comments: SNAPSHOT_COMMENTS,
                setup_connections: SNAPSHOT_SETUP_CONNECTIONS,
                requests: a.snapshot_requests,
                connections: SNAPSHOT_CONNECTIONS,
                storm_clients: a.snapshot_storm_clients,
                label: format!("snapshot {label}"),
            })
            .await;
            drop(srv);
            match rep {
                Ok(rep) if label == "cached" => runs.cached.push(rep),
                Ok(rep) => runs.uncached.push(rep),
                Err(e) => runs.failures.push(format!("{label} run {}: {e}", r + 1)),
            }
        }
    }
    let mut tb = Table::with_heads(
        format!(
            "### snapshot: one image of {SNAPSHOT_CHATS} chats × {SNAPSHOT_COMMENTS} comments; {} reads over {SNAPSHOT_CONNECTIONS} keep-alive connections, then {} clients reloading at once, each on a new connection (imagechat with its snapshot cache and with {SNAPSHOT_CACHE_FLAG} 0) (median of {} runs)",
            a.snapshot_requests, a.snapshot_storm_clients, a.repeat
        ),
        ["uncached", "cached", "cached / uncached"],
    );
    type F = fn(&SnapshotReport) -> Option<f64>;
    let rows: &[(&str, F, usize)] = &[
        ("snapshot (bytes)", |r| Some(r.body_bytes as f64), 0),
        (
            "cpu: server CPU per read (µs)",
            |r| r.cpu.server_cpu_us_per_request,
            1,
        ),
        ("cpu: reads per second", |r| Some(r.cpu.requests_per_sec), 0),
        ("cpu: answer p50 (ms)", |r| Some(r.cpu.p50_ms), 2),
        ("cpu: answer p99 (ms)", |r| Some(r.cpu.p99_ms), 2),
        (
            "cpu: generator CPU (cores)",
            |r| Some(r.cpu.generator_cpu_cores),
            2,
        ),
        (
            "storm: first connect to last answer (ms)",
            |r| r.storm.as_ref().map(|s| s.wall_ms),
            0,
        ),
        (
            "storm: per client p50 (ms)",
            |r| r.storm.as_ref().map(|s| s.p50_ms),
            1,
        ),
        (
            "storm: per client p99 (ms)",
            |r| r.storm.as_ref().map(|s| s.p99_ms),
            1,
        ),
        (
            "storm: connect p99 (ms)",
            |r| r.storm.as_ref().map(|s| s.connect_p99_ms),
            1,
        ),
        (
            "storm: server CPU per read (µs)",
            |r| r.storm.as_ref().and_then(|s| s.server_cpu_us_per_request),
            1,
        ),
        ("set-up: writes (s)", |r| Some(r.setup_s), 1),
    ];
    for &(label, f, p) in rows {
        tb.row_pct(label, med_of(&runs.uncached, f), med_of(&runs.cached, f), p);
    }
    let failed = |v: &[SnapshotReport]| -> String {
        if v.is_empty() {
            return "-".into();
        }
        format!(
            "{} / {}",
            v.iter().map(|r| r.cpu.failed).sum::<u64>(),
            v.iter()
                .filter_map(|r| r.storm.as_ref())
                .map(|s| s.failed)
                .sum::<u64>()
        )
    };
    tb.text_row(
        "reads failed, cpu / storm (all runs)",
        failed(&runs.uncached),
        failed(&runs.cached),
    );
    let verified = |v: &[SnapshotReport], ran: bool| -> String {
        if !ran {
            return "-".into();
        }
        format!("{}/{}", v.iter().filter(|r| r.ok).count(), a.repeat)
    };
    tb.text_row(
        "runs verified",
        verified(&runs.uncached, true),
        verified(&runs.cached, runs.cache_flag),
    );
    if runs.cached.iter().chain(&runs.uncached).any(|r| !r.ok) || !runs.failures.is_empty() {
        ctx.all_ok = false;
    }
    let mut text = tb.render();
    text += "\ncpu: server CPU over the reads ÷ the reads; storm: per client from its connect to its answer read.\n";
    if !runs.cache_flag {
        text += &format!(
            "\n{} does not know {SNAPSHOT_CACHE_FLAG}: only the uncached runs ran.\n",
            a.imagechat_bin.display()
        );
    }
    for f in &runs.failures {
        text += &format!("\nrun failed: {f}\n");
    }
    for r in runs.uncached.iter().chain(&runs.cached) {
        for e in &r.errors {
            text += &format!("\n{}: {e}\n", r.label);
        }
    }
    ctx.tables.push(text);
    Ok(runs)
}

/// The targets of `snapshot`: a cached read costs at most 5 % of an
/// uncached one, and the cached storm is answered within 2 s.
fn snapshot_checks(a: &CompareArgs, ctx: &mut Ctx, runs: &SnapshotRuns) {
    if a.only == Some(Target::Socketio) {
        return;
    }
    let sc = "snapshot";
    let cpu = |v: &[SnapshotReport]| med_of(v, |r| r.cpu.server_cpu_us_per_request);
    let wall = |v: &[SnapshotReport]| med_of(v, |r| r.storm.as_ref().map(|s| s.wall_ms));
    let no_cache = format!("not measured: the server has no {SNAPSHOT_CACHE_FLAG}");
    let target = "server CPU per snapshot read, cached ≤ 5 % of uncached";
    match (cpu(&runs.cached), cpu(&runs.uncached)) {
        (Some(c), Some(u)) if u > 0.0 => ctx.check(
            sc,
            target,
            format!("{:.1} % ({c:.1} µs against {u:.1} µs)", c / u * 100.0),
            c / u <= 0.05,
        ),
        (_, u) if !runs.cache_flag => ctx.check(
            sc,
            target,
            format!("{no_cache} (uncached: {} µs)", crate::report::opt(u, 1)),
            false,
        ),
        _ => {}
    }
    if a.snapshot_storm_clients > 0 {
        let target = format!(
            "{} clients reloading at once, cached: all answered within 2 s",
            a.snapshot_storm_clients
        );
        let u = crate::report::opt(wall(&runs.uncached), 0);
        match wall(&runs.cached) {
            Some(w) => ctx.check(
                sc,
                &target,
                format!("{w:.0} ms (uncached: {u} ms)"),
                w < 2000.0,
            ),
            None if !runs.cache_flag => {
                ctx.check(sc, &target, format!("{no_cache} (uncached: {u} ms)"), false)
            }
            None => {}
        }
    }
    let all: Vec<&SnapshotReport> = runs.cached.iter().chain(&runs.uncached).collect();
    let expected = a.repeat * if runs.cache_flag { 2 } else { 1 };
    ctx.check(
        sc,
        "every snapshot read answered 200 with every chat",
        format!(
            "{} of {expected} runs verified",
            all.iter().filter(|r| r.ok).count()
        ),
        all.len() == expected && all.iter().all(|r| r.ok),
    );
}

fn zero_loss(v: &[LoadReport]) -> bool {
    !v.is_empty() && v.iter().all(|r| r.ok)
}

/// What imagechat's sends alone would cost per delivery at the floor: its
/// frames per delivery, each a write of its average frame size.
fn sends_at_floor(floor: &Option<floor::FloorReport>, runs: &Runs<LoadReport>) -> String {
    let i = Target::Imagechat;
    let frames = runs.med(i, |r| Some(r.frames_per_delivery));
    let bytes = runs.med(i, |r| Some(r.bytes_per_delivery));
    match (floor, frames, bytes) {
        (Some(f), Some(fr), Some(b)) if fr > 0.0 => f
            .cost_at(b / fr)
            .map(|c| format!(" (its sends alone, at the floor: {:.2} µs)", c * fr)),
        _ => None,
    }
    .unwrap_or_default()
}

pub async fn run(a: CompareArgs) -> Result<bool> {
    if a.repeat == 0 {
        return err("--repeat must be at least 1");
    }
    if a.only != Some(Target::Socketio) && !a.imagechat_bin.exists() {
        return err(format!(
            "{} not found: build it first (cargo build --release -p imagechat) or pass --imagechat-bin",
            a.imagechat_bin.display()
        ));
    }
    let writes = a.scenarios.iter().any(|s| s == "write");
    if writes && a.only.is_none() && !a.minimal_bin.exists() {
        return err(format!(
            "{} not found: build it first (cargo build --release -p imagechat-bench) or pass --minimal-bin",
            a.minimal_bin.display()
        ));
    }
    let socketio = a.scenarios.iter().any(|s| {
        !matches!(
            s.as_str(),
            "write" | "floor" | "reconnect-storm" | "snapshot"
        )
    });
    if socketio
        && a.only != Some(Target::Imagechat)
        && !a.socketio_dir.join("node_modules").exists()
    {
        return err(format!(
            "{}/node_modules is missing: run npm ci there first",
            a.socketio_dir.display()
        ));
    }
    let mut ctx = Ctx {
        tables: Vec::new(),
        checks: Vec::new(),
        json: serde_json::Map::new(),
        all_ok: true,
        counter: 0,
    };
    let (i, s) = (Target::Imagechat, Target::Socketio);
    let mut floor: Option<floor::FloorReport> = None;
    for sc in a.scenarios.clone() {
        match sc.as_str() {
            "floor" => {
                let r = floor::run(a.subscribers, &[500, 1000, 2000, 4000], 50.0, 2.0).await?;
                ctx.tables.push(floor::table(&r));
                ctx.json.insert(sc.clone(), serde_json::to_value(&r)?);
                floor = Some(r);
            }
            "fanout-high" => {
                let runs =
                    load_cmp(&a, &mut ctx, "fanout-high", a.subscribers, 1, a.high_rate).await?;
                let cpu_i = runs.med(i, |r| r.server_cpu_us_per_delivery);
                let cpu_s = runs.med(s, |r| r.server_cpu_us_per_delivery);
                let p99 = runs.med(i, |r| Some(r.latency.p99_ms));
                let sends = sends_at_floor(&floor, &runs);
                if let Some(c) = cpu_i {
                    ctx.check(
                        &sc,
                        "server CPU per delivery ≤ 1 µs",
                        format!("{c:.3} µs{sends}"),
                        c <= 1.0,
                    );
                }
                if let (Some(c), Some(o)) = (cpu_i, cpu_s) {
                    ctx.check(
                        &sc,
                        "≥ 10× less CPU per delivery than Socket.IO",
                        format!("{:.1}×", o / c),
                        o / c >= 10.0,
                    );
                }
                if let Some(p) = p99 {
                    ctx.check(&sc, "p99 ≤ 25 ms", format!("{p:.2} ms"), p <= 25.0);
                }
                ctx.check(
                    &sc,
                    "zero loss",
                    format!(
                        "{} of {} runs verified",
                        runs.imagechat.iter().filter(|r| r.ok).count(),
                        a.repeat
                    ),
                    zero_loss(&runs.imagechat),
                );
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            "fanout-light" => {
                let runs =
                    load_cmp(&a, &mut ctx, "fanout-light", a.subscribers, 1, a.light_rate).await?;
                if let Some(p) = runs.med(i, |r| Some(r.latency.p99_ms)) {
                    ctx.check(&sc, "p99 ≤ 5 ms", format!("{p:.2} ms"), p <= 5.0);
                }
                let sends = sends_at_floor(&floor, &runs);
                if let Some(c) = runs.med(i, |r| r.server_cpu_us_per_delivery) {
                    ctx.check(
                        &sc,
                        "server CPU per delivery ≤ 4 µs",
                        format!("{c:.3} µs{sends}"),
                        c <= 4.0,
                    );
                }
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            "rooms" => {
                let runs = load_cmp(
                    &a,
                    &mut ctx,
                    "rooms",
                    a.rooms_connections,
                    a.rooms_images,
                    a.high_rate,
                )
                .await?;
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            "idle" => {
                let runs = idle_cmp(&a, &mut ctx).await?;
                if let Some(k) = runs.med(i, |r| Some(r.kib_per_connection)) {
                    ctx.check(
                        &sc,
                        "≤ 4 KiB RSS per connection",
                        format!("{k:.2} KiB"),
                        k <= 4.0,
                    );
                }
                if let Some(c) = runs.med(i, |r| Some(r.idle_cpu_cores)) {
                    ctx.check(
                        &sc,
                        "idle CPU near zero (< 1 % of a core)",
                        format!("{:.3} %", c * 100.0),
                        c < 0.01,
                    );
                }
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            "reconnect-storm" => {
                let runs = storm_cmp(&a, &mut ctx).await?;
                if let Some(t) = runs.med(i, |r| Some(r.all_caught_up_ms)) {
                    ctx.check(
                        &sc,
                        "all caught up within 2 s",
                        format!("{t:.0} ms"),
                        t <= 2000.0,
                    );
                }
                let ok = !runs.imagechat.is_empty() && runs.imagechat.iter().all(|r| r.ok);
                ctx.check(
                    &sc,
                    "zero loss",
                    format!(
                        "{} of {} runs verified",
                        runs.imagechat.iter().filter(|r| r.ok).count(),
                        a.repeat
                    ),
                    ok,
                );
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            "write" => {
                let runs = write_cmp(&a, &mut ctx).await?;
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            "snapshot" => {
                let runs = snapshot_cmp(&a, &mut ctx).await?;
                snapshot_checks(&a, &mut ctx, &runs);
                ctx.json.insert(sc.clone(), serde_json::to_value(&runs)?);
            }
            other => return err(format!("unknown scenario {other}")),
        }
    }
    println!();
    for t in &ctx.tables {
        println!("{t}");
    }
    if !ctx.checks.is_empty() {
        println!("### targets (imagechat)\n");
        println!("| scenario | target | measured (median) | |");
        println!("|---|---|---:|---|");
        for c in &ctx.checks {
            println!(
                "| {} | {} | {} | {} |",
                c.scenario,
                c.target,
                c.measured,
                if c.pass { "met" } else { "MISSED" }
            );
        }
        println!();
    }
    if let Some(p) = &a.out {
        let mut doc = ctx.json.clone();
        doc.insert("targets".into(), serde_json::to_value(&ctx.checks)?);
        doc.insert(
            "machine".into(),
            serde_json::json!({
                "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
                "nofile": util::raise_nofile(),
            }),
        );
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(ctx.all_ok)
}
