//! `soak`: a long mixed run on two nodes sharing one PostgreSQL database and
//! Redis. Subscribers spread over both nodes verify every event's seq; mixed
//! writes (creates, replies, moves, resolves, deletes) go through both
//! nodes; clients drop and resume by (epoch, seq) all along; node B is
//! stopped with SIGTERM halfway and started again on the same database; the
//! nodes' resident memory is sampled throughout. At the end every client
//! must be at its image's last seq, no answer may be a 5xx, and every
//! acknowledged create must be in the final snapshots unless the soak
//! deleted it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::http::{self, HttpConn};
use crate::scenario::{open_all, session};
use crate::stats::{ConnStats, Latency};
use crate::sub::{percent_encode, Control, Spec, Subscriber, Target, DELIVERED};
use crate::util::{self, err, now_us, proc_rss_kib, Result, Rng};

#[derive(Args, Clone)]
pub struct SoakArgs {
    /// PostgreSQL database the two nodes share, e.g.
    /// postgres://postgres@127.0.0.1:5432/soak (a fresh one; bench/soak.sh
    /// creates and drops it)
    #[arg(long)]
    database: String,
    /// Redis URL both nodes use as their broker
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    broker: String,
    /// The imagechat server binary (build it with cargo build --release)
    #[arg(long, default_value = "target/release/imagechat")]
    imagechat_bin: PathBuf,
    /// Subscribed connections, spread over both nodes
    #[arg(long, short = 'c', default_value_t = 2000)]
    connections: usize,
    /// Images the connections are spread over (each image has viewers on both nodes)
    #[arg(long, short = 'i', default_value_t = 200)]
    images: usize,
    /// Seconds of writes
    #[arg(long, short = 't', default_value_t = 600.0)]
    duration: f64,
    /// Writes per second, over both nodes together
    #[arg(long, short = 'w', default_value_t = 50.0)]
    rate: f64,
    /// Seconds between two readings of the nodes' resident memory
    #[arg(long, default_value_t = 10.0)]
    sample_every: f64,
    /// Seconds between two rounds of dropped connections
    #[arg(long, default_value_t = 5.0)]
    drop_every: f64,
    /// Connections dropped in each round (they resume at once)
    #[arg(long, default_value_t = 20)]
    drop_count: usize,
    /// Share of the dropped connections that come back like a page reload,
    /// without a position: answered recovered false, they read the snapshot
    #[arg(long, default_value_t = 0.1)]
    reload_share: f64,
    /// Share of node B's clients that reconnect to node A at once when B
    /// stops; the others wait for B to come back. (All of them moving would
    /// make A hold half again as many connections, and glibc keeps that
    /// peak's memory: the memory check would measure the peak, not growth.)
    #[arg(long, default_value_t = 0.1)]
    failover_share: f64,
    /// When node B gets SIGTERM, as a share of --duration (1 or more: never)
    #[arg(long, default_value_t = 0.5)]
    restart_at: f64,
    /// Seconds node B stays stopped before it starts again
    #[arg(long, default_value_t = 5.0)]
    restart_down: f64,
    /// Share of --duration counted as warm-up by the memory check
    #[arg(long, default_value_t = 0.2)]
    warmup_share: f64,
    /// Largest allowed ratio of node A's resident memory at the end to its
    /// resident memory at the end of the warm-up
    #[arg(long, default_value_t = 1.25)]
    rss_limit: f64,
    /// Seconds to wait after the last write for every client to reach its
    /// image's last seq
    #[arg(long, default_value_t = 30.0)]
    drain: f64,
    /// Keep-alive HTTP connections per node used for writes
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Connections being opened at the same time
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Folder for the nodes' logs (kept when the run fails); default: a new
    /// temporary folder, removed when the run passes
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Print the report as JSON instead of tables
    #[arg(long)]
    json: bool,
}

/// A write that cannot leave within this long after its scheduled time is
/// skipped and counted: the nodes are not taking the offered rate.
const MAX_LATE: Duration = Duration::from_secs(5);
/// A write without an answer within this long counts as unanswered.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may take to exit after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(15);
/// How long a node may take to log its address and be ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that cannot resubscribe anywhere within this long fails.
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(90);
/// A client waiting for its node to come back tries the other one after this long.
const WAIT_FOR_HOME: Duration = Duration::from_secs(45);
/// Anonymous users that write (moves and deletes go through a chat's creator).
const WRITERS: usize = 8;
const NODE_NAMES: [&str; 2] = ["A", "B"];

// ---------------------------------------------------------------- nodes

/// Warnings and errors a node logged.
#[derive(Default)]
struct LogCounts {
    warn: AtomicU64,
    error: AtomicU64,
    first: std::sync::Mutex<Vec<String>>,
}

/// One imagechat process; stopped (SIGTERM, then SIGKILL) when dropped.
struct Node {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        util::stop_child(&mut self.child, Duration::from_secs(5));
    }
}

struct NodeCfg {
    bin: PathBuf,
    database: String,
    broker: String,
    admin_key: String,
    log_dir: PathBuf,
}

/// Starts a node listening on `listen` and waits until it has logged its
/// address and answers `/readyz` with 200.
async fn start_node(
    cfg: &NodeCfg,
    name: &str,
    listen: SocketAddr,
    counts: Arc<LogCounts>,
) -> Result<Node> {
    let log_path = cfg.log_dir.join(format!("node-{name}.log"));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    writeln!(log, "---- node {name} starting on {listen}")?;
    let mut cmd = Command::new(&cfg.bin);
    cmd.arg("serve")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--database")
        .arg(&cfg.database)
        .arg("--broker")
        .arg(&cfg.broker)
        .arg("--admin-key")
        .arg(&cfg.admin_key)
        .arg("--write-rate-per-minute")
        .arg("0")
        // Every simulated client shares one loopback address.
        .args(["--sessions-per-address-per-minute", "0"])
        .args(["--anonymous-writes-per-address-per-minute", "0"])
        .args(["--websockets-per-address", "0"])
        .arg("--log-format")
        .arg("json");
    // The server reads IMAGECHAT_* settings; only the flags above count.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IMAGECHAT_") {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::piped());
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; the node gets SIGTERM if the
        // generator dies without stopping it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cfg.bin.display()))?;
    let pid = child.id();
    let Some(stderr) = child.stderr.take() else {
        return err("the node's stderr is not piped");
    };
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || read_log(stderr, log, tx, counts));
    let t = Instant::now();
    let addr = loop {
        if let Ok(a) = rx.try_recv() {
            break a;
        }
        if let Ok(Some(st)) = child.try_wait() {
            return err(format!(
                "node {name} exited at start-up ({st}); its log: {}",
                log_path.display()
            ));
        }
        if t.elapsed() > START_TIMEOUT {
            util::stop_child(&mut child, Duration::from_secs(3));
            return err(format!(
                "node {name} did not log its address within {} s; its log: {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let node = Node { child, pid, addr };
    loop {
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_secs(2),
            http::once(addr, "GET", "/readyz", None, None),
        )
        .await
        {
            if r.status == 200 {
                return Ok(node);
            }
        }
        if t.elapsed() > START_TIMEOUT {
            return err(format!(
                "node {name} at {addr} was not ready within {} s; its log: {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies a node's log lines to its file, finds the address it listens on
/// and counts warnings and errors.
fn read_log(
    stderr: std::process::ChildStderr,
    mut log: File,
    tx: std::sync::mpsc::Sender<SocketAddr>,
    counts: Arc<LogCounts>,
) {
    let mut found = false;
    for line in BufReader::new(stderr)
        .lines()
        .map_while(std::io::Result::ok)
    {
        let _ = writeln!(log, "{line}");
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if !found {
            let message = v["fields"]["message"].as_str().unwrap_or("");
            if message.starts_with("listening on") {
                if let Some(a) = v["fields"]["address"].as_str().and_then(|a| a.parse().ok()) {
                    found = true;
                    let _ = tx.send(a);
                }
            }
        }
        let level = v["level"].as_str().unwrap_or("");
        let counter = match level {
            "WARN" => &counts.warn,
            "ERROR" => &counts.error,
            _ => continue,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = counts.first.lock() {
            if f.len() < 5 {
                f.push(line.chars().take(400).collect());
            }
        }
    }
}

// ---------------------------------------------------------------- shared state

/// What clients and writers know of the two nodes.
struct Cluster {
    addr: [std::sync::Mutex<SocketAddr>; 2],
    /// Writes may go to this node (false while it is being restarted).
    writable: [AtomicBool; 2],
    /// Between the fence before SIGTERM and the node being ready again:
    /// connections it closes then are expected.
    restarting: [AtomicBool; 2],
    /// Bumped when a node restarts: pooled write connections are stale.
    generation: [AtomicU64; 2],
    /// Process id of each node while it runs (0 while stopped).
    pids: [AtomicU32; 2],
    /// Subscribed connections per node, as the clients count them.
    conns: [AtomicI64; 2],
    writes_ok: AtomicU64,
}

impl Cluster {
    fn addr(&self, n: usize) -> SocketAddr {
        match self.addr[n].lock() {
            Ok(a) => *a,
            Err(p) => *p.into_inner(),
        }
    }
    fn set_addr(&self, n: usize, a: SocketAddr) {
        match self.addr[n].lock() {
            Ok(mut g) => *g = a,
            Err(p) => *p.into_inner() = a,
        }
    }
}

// ---------------------------------------------------------------- clients

enum Cmd {
    /// Drop the socket abruptly and resume.
    Drop,
    /// Move back to the home node if elsewhere.
    Home,
}

#[derive(Clone, Default)]
struct ClientResult {
    stats: ConnStats,
    /// Resumes after a drop of ours, with (epoch, seq).
    drops: u64,
    /// Resumes after a drop of ours, without a position (page reloads).
    reloads: u64,
    /// Reconnects after a node closed the connection or it broke.
    server_gone: u64,
    /// Moves back to the home node after the restart.
    rebalanced: u64,
    /// Reconnects that ended on another node than the one left.
    failovers: u64,
    /// Connection attempts that failed and were retried.
    failed_attempts: u64,
    /// Close codes the nodes sent (0: the connection ended without one).
    closes_in_restart: BTreeMap<u16, u64>,
    closes_unexpected: BTreeMap<u16, u64>,
    final_node: usize,
}

impl ClientResult {
    fn merge(&mut self, o: &ClientResult) {
        self.stats.merge(&o.stats);
        self.drops += o.drops;
        self.reloads += o.reloads;
        self.server_gone += o.server_gone;
        self.rebalanced += o.rebalanced;
        self.failovers += o.failovers;
        self.failed_attempts += o.failed_attempts;
        for (k, v) in &o.closes_in_restart {
            *self.closes_in_restart.entry(*k).or_insert(0) += v;
        }
        for (k, v) in &o.closes_unexpected {
            *self.closes_unexpected.entry(*k).or_insert(0) += v;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    /// Try the wanted node first, then alternate.
    Failover,
    /// Keep trying the wanted node (it is restarting) for a while.
    Wait,
}

struct Client {
    sub: Subscriber,
    idx: usize,
    home: usize,
    at: usize,
    /// When its node goes away: to the other node at once, or wait for it.
    fails_over: bool,
    cl: Arc<Cluster>,
    rng: Rng,
    res: ClientResult,
    hard: Instant,
}

enum Wake {
    Read(std::io::Result<usize>),
    Cmd(Option<Cmd>),
    Control(bool),
    Deadline,
}

impl Client {
    /// Resubscribes on `want` (or, failing that, as `policy` says); false
    /// when it gave up.
    async fn reconnect(&mut self, want: usize, policy: Policy, forget: bool) -> bool {
        let t0 = Instant::now();
        let from = self.at;
        let mut node = want;
        let mut delay = Duration::from_millis(250);
        loop {
            let addr = self.cl.addr(node);
            match self.sub.resume(addr, forget).await {
                Ok(_) => {
                    self.at = node;
                    self.cl.conns[node].fetch_add(1, Ordering::Relaxed);
                    if node != from {
                        self.res.failovers += 1;
                    }
                    return true;
                }
                Err(e) => {
                    self.res.failed_attempts += 1;
                    if t0.elapsed() > RECONNECT_GIVE_UP || Instant::now() > self.hard {
                        let idx = self.idx;
                        self.sub.stats_mut().error(format!(
                            "client #{idx} could not resubscribe within {} s: {e}",
                            RECONNECT_GIVE_UP.as_secs()
                        ));
                        return false;
                    }
                    if policy == Policy::Failover || t0.elapsed() > WAIT_FOR_HOME {
                        node = 1 - node;
                    }
                    let jitter = self.rng.below(250) as u64;
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay = (delay * 2).min(Duration::from_secs(4));
                }
            }
        }
    }

    /// The node closed the connection (`code`, 0 without a close frame) or
    /// it broke: reconnect, to the other node at once or (most clients)
    /// to the same one once it is back.
    async fn gone(&mut self, code: u16) -> bool {
        self.cl.conns[self.at].fetch_sub(1, Ordering::Relaxed);
        self.sub.disconnect();
        let restarting = self.cl.restarting[self.at].load(Ordering::Relaxed);
        let closes = if restarting {
            &mut self.res.closes_in_restart
        } else {
            &mut self.res.closes_unexpected
        };
        *closes.entry(code).or_insert(0) += 1;
        self.res.server_gone += 1;
        if self.fails_over {
            self.reconnect(1 - self.at, Policy::Failover, false).await
        } else {
            self.reconnect(self.at, Policy::Wait, false).await
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut ctl: watch::Receiver<Control>,
        reload_share: f64,
    ) -> ClientResult {
        self.cl.conns[self.at].fetch_add(1, Ordering::Relaxed);
        let mut commands_open = true;
        loop {
            if let Err(e) = self.sub.drain().await {
                match self.sub.take_close_code() {
                    Some(code) => {
                        if !self.gone(code).await {
                            break;
                        }
                        continue;
                    }
                    None => {
                        self.sub.stats_mut().error(e);
                        break;
                    }
                }
            }
            if self.sub.done(&ctl.borrow()) {
                break;
            }
            let wake = tokio::select! {
                r = self.sub.read() => Wake::Read(r),
                c = rx.recv(), if commands_open => Wake::Cmd(c),
                c = ctl.changed() => Wake::Control(c.is_ok()),
                _ = tokio::time::sleep_until(self.hard.into()) => Wake::Deadline,
            };
            let ok = match wake {
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => self.gone(0).await,
                Wake::Read(Ok(_)) | Wake::Control(true) => true,
                Wake::Cmd(Some(Cmd::Drop)) => {
                    self.cl.conns[self.at].fetch_sub(1, Ordering::Relaxed);
                    self.sub.disconnect();
                    let forget = (self.rng.below(1_000_000) as f64) < reload_share * 1e6;
                    if forget {
                        self.res.reloads += 1;
                    } else {
                        self.res.drops += 1;
                    }
                    self.reconnect(self.at, Policy::Failover, forget).await
                }
                Wake::Cmd(Some(Cmd::Home)) if self.at != self.home => {
                    self.cl.conns[self.at].fetch_sub(1, Ordering::Relaxed);
                    self.sub.disconnect();
                    self.res.rebalanced += 1;
                    self.reconnect(self.home, Policy::Failover, false).await
                }
                Wake::Cmd(Some(Cmd::Home)) => true,
                Wake::Cmd(None) => {
                    commands_open = false;
                    true
                }
                Wake::Control(false) | Wake::Deadline => break,
            };
            if !ok {
                break;
            }
        }
        let c = ctl.borrow().clone();
        let last = self.sub.last();
        if let Some(f) = &c.finals {
            let fin = f.get(self.sub.url_id()).copied().unwrap_or(0);
            let idx = self.idx;
            let st = self.sub.stats_mut();
            if last < fin {
                st.lost += fin - last;
                st.short += 1;
                st.error(format!(
                    "client #{idx} stopped at seq {last} of {fin}: the rest never arrived"
                ));
            } else if last > fin {
                st.error(format!(
                    "client #{idx} is at seq {last}, beyond the final snapshot's {fin}"
                ));
            }
        }
        if self.sub.is_connected() {
            self.cl.conns[self.at].fetch_sub(1, Ordering::Relaxed);
        }
        self.res.final_node = self.at;
        let mut res = self.res;
        res.stats.merge(&self.sub.into_stats());
        res
    }
}

// ---------------------------------------------------------------- writes

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Create,
    Reply,
    Move,
    Resolve,
    Delete,
}

const KINDS: [Kind; 5] = [
    Kind::Create,
    Kind::Reply,
    Kind::Move,
    Kind::Resolve,
    Kind::Delete,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Reply => "reply",
            Kind::Move => "move",
            Kind::Resolve => "resolve",
            Kind::Delete => "delete",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
    /// Out of 100: creates 30, replies 30, moves 15, resolves 15, deletes 10.
    fn pick(r: usize) -> Kind {
        match r % 100 {
            0..=29 => Kind::Create,
            30..=59 => Kind::Reply,
            60..=74 => Kind::Move,
            75..=89 => Kind::Resolve,
            _ => Kind::Delete,
        }
    }
}

/// A chat as the soak's writes left it.
#[derive(Clone)]
struct Chat {
    id: String,
    owner: usize,
    x: f64,
    y: f64,
    resolved: bool,
    comments: u64,
    /// A write on it is in flight.
    busy: bool,
}

#[derive(Default)]
struct Book {
    /// Live chats per image.
    live: Vec<Vec<Chat>>,
    /// Acknowledged creates: (image, chat id).
    created: Vec<(usize, String)>,
    /// Chats whose acknowledged delete the final snapshot must not show.
    deleted: HashSet<String>,
    /// Chats with a write whose outcome is unknown (no answer, or an error
    /// answer): left out of the state comparison.
    uncertain: HashSet<String>,
    /// The highest seq any write answer named, per image.
    max_seq: Vec<u64>,
}

#[derive(Clone, Copy, Default, Serialize)]
struct KindCount {
    sent: u64,
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    unanswered: u64,
}

#[derive(Default)]
struct WriteResult {
    by_kind: [KindCount; 5],
    skipped: u64,
    connect_failed: u64,
    errors: Vec<String>,
    per_node: [u64; 2],
}

impl WriteResult {
    fn error(&mut self, e: String) {
        if self.errors.len() < 10 {
            self.errors.push(e);
        }
    }
}

struct Planned {
    kind: Kind,
    image: usize,
    /// The chat written to (all but creates).
    chat: Option<String>,
    method: &'static str,
    path: String,
    body: Option<String>,
    user: usize,
    new_xy: (f64, f64),
    new_resolved: bool,
}

fn coord(rng: &mut Rng) -> f64 {
    // Two decimals: exact in JSON and in any float column.
    (rng.below(10_001) as f64) / 100.0
}

fn plan(book: &mut Book, rng: &mut Rng, images: &[String], n: u64) -> Planned {
    let image = rng.below(images.len());
    let bid = format!("m{}-{n}", now_us());
    let mut kind = Kind::pick(rng.below(100));
    let free: Vec<usize> = book.live[image]
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.busy)
        .map(|(i, _)| i)
        .collect();
    if free.is_empty() {
        kind = Kind::Create;
    }
    let user = rng.below(WRITERS);
    let url = serde_json::Value::from(images[image].as_str());
    if kind == Kind::Create {
        let (x, y) = (coord(rng), coord(rng));
        let body = json!({"urlId": url, "x": x, "y": y, "text": format!("Soak note {n}"), "broadcastId": bid});
        return Planned {
            kind,
            image,
            chat: None,
            method: "POST",
            path: "/api/v1/chats".into(),
            body: Some(body.to_string()),
            user,
            new_xy: (x, y),
            new_resolved: false,
        };
    }
    let i = free[rng.below(free.len())];
    let c = &mut book.live[image][i];
    c.busy = true;
    let id = c.id.clone();
    let enc = percent_encode(&id);
    let mut p = Planned {
        kind,
        image,
        chat: Some(id),
        method: "PATCH",
        path: format!("/api/v1/chats/{enc}"),
        body: None,
        user,
        new_xy: (c.x, c.y),
        new_resolved: c.resolved,
    };
    match kind {
        Kind::Reply => {
            p.method = "POST";
            p.path = format!("/api/v1/chats/{enc}/comments");
            p.body =
                Some(json!({"text": format!("Soak reply {n}"), "broadcastId": bid}).to_string());
        }
        Kind::Move => {
            let mut xy = (coord(rng), coord(rng));
            if xy == (c.x, c.y) {
                xy.0 = if c.x < 50.0 { c.x + 1.0 } else { c.x - 1.0 };
            }
            p.new_xy = xy;
            p.user = c.owner;
            p.body = Some(json!({"x": xy.0, "y": xy.1, "broadcastId": bid}).to_string());
        }
        Kind::Resolve => {
            p.new_resolved = !c.resolved;
            p.body = Some(json!({"resolved": p.new_resolved, "broadcastId": bid}).to_string());
        }
        Kind::Delete | Kind::Create => {
            p.method = "DELETE";
            p.user = c.owner;
            p.path = format!("/api/v1/chats/{enc}?broadcastId={bid}");
        }
    }
    p
}

/// Applies an acknowledged write to the book.
fn settle(book: &mut Book, p: &Planned, answer: &Value) -> std::result::Result<(), String> {
    let seq = answer["seq"]
        .as_u64()
        .ok_or_else(|| format!("{} answer without a seq", p.kind.name()))?;
    let m = &mut book.max_seq[p.image];
    *m = (*m).max(seq);
    if p.kind == Kind::Create {
        let id = answer["chat"]["id"]
            .as_str()
            .ok_or("create answer without chat.id")?
            .to_owned();
        book.created.push((p.image, id.clone()));
        book.live[p.image].push(Chat {
            id,
            owner: p.user,
            x: p.new_xy.0,
            y: p.new_xy.1,
            resolved: false,
            comments: 1,
            busy: false,
        });
        return Ok(());
    }
    let Some(id) = &p.chat else {
        return Ok(());
    };
    let live = &mut book.live[p.image];
    let Some(i) = live.iter().position(|c| &c.id == id) else {
        return Err(format!("chat {id} vanished from the book"));
    };
    match p.kind {
        Kind::Reply => live[i].comments += 1,
        Kind::Move => (live[i].x, live[i].y) = p.new_xy,
        Kind::Resolve => live[i].resolved = p.new_resolved,
        Kind::Delete => {
            live.remove(i);
            book.deleted.insert(id.clone());
            return Ok(());
        }
        Kind::Create => {}
    }
    live[i].busy = false;
    Ok(())
}

/// The write was not acknowledged: its chat's state is no longer known.
fn unsettle(book: &mut Book, p: &Planned) {
    if let Some(id) = &p.chat {
        book.uncertain.insert(id.clone());
        if let Some(c) = book.live[p.image].iter_mut().find(|c| &c.id == id) {
            // Never written again: the comparison at the end skips it.
            c.busy = true;
        }
    }
}

struct Job {
    n: u64,
    due: Instant,
}

struct Writer {
    cl: Arc<Cluster>,
    book: Arc<std::sync::Mutex<Book>>,
    tokens: Arc<Vec<Arc<str>>>,
    images: Arc<Vec<String>>,
}

fn lock_book(b: &std::sync::Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    match b.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn write_worker(
    w: Arc<Writer>,
    seed: u64,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
) -> WriteResult {
    let mut res = WriteResult::default();
    let mut conns: [Option<(u64, HttpConn)>; 2] = [None, None];
    let mut rng = Rng::new(seed);
    loop {
        let job = { rx.lock().await.recv().await };
        let Some(job) = job else { break };
        if Instant::now().saturating_duration_since(job.due) > MAX_LATE {
            res.skipped += 1;
            continue;
        }
        let up: Vec<usize> = (0..2)
            .filter(|&n| w.cl.writable[n].load(Ordering::Relaxed))
            .collect();
        if up.is_empty() {
            res.skipped += 1;
            continue;
        }
        let node = up[rng.below(up.len())];
        let p = {
            let mut b = lock_book(&w.book);
            plan(&mut b, &mut rng, &w.images, job.n)
        };
        let k = p.kind.index();
        let gen = w.cl.generation[node].load(Ordering::Relaxed);
        if conns[node].as_ref().is_some_and(|(g, _)| *g != gen) {
            conns[node] = None;
        }
        if conns[node].is_none() {
            match HttpConn::connect(w.cl.addr(node)).await {
                Ok(c) => conns[node] = Some((gen, c)),
                Err(e) => {
                    // Nothing was sent: the write did not happen.
                    res.connect_failed += 1;
                    res.error(format!("write connect to node {}: {e}", NODE_NAMES[node]));
                    let mut b = lock_book(&w.book);
                    if let Some(id) = &p.chat {
                        if let Some(c) = b.live[p.image].iter_mut().find(|c| &c.id == id) {
                            c.busy = false;
                        }
                    }
                    continue;
                }
            }
        }
        let Some((_, c)) = conns[node].as_mut() else {
            continue;
        };
        res.by_kind[k].sent += 1;
        res.per_node[node] += 1;
        let token = w.tokens[p.user % w.tokens.len()].clone();
        let answer = tokio::time::timeout(
            WRITE_TIMEOUT,
            c.request(
                p.method,
                &p.path,
                Some(&token),
                p.body.as_deref().map(str::as_bytes),
            ),
        )
        .await;
        let mut b = lock_book(&w.book);
        match answer {
            Ok(Ok(r)) if (200..300).contains(&r.status) => {
                let settled = serde_json::from_slice::<Value>(&r.body)
                    .map_err(|e| format!("{} answer is not JSON: {e}", p.kind.name()))
                    .and_then(|v| settle(&mut b, &p, &v));
                match settled {
                    Ok(()) => {
                        res.by_kind[k].ok += 1;
                        w.cl.writes_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        res.by_kind[k].client_errors += 1;
                        res.error(e);
                        unsettle(&mut b, &p);
                    }
                }
            }
            Ok(Ok(r)) => {
                if r.status >= 500 {
                    res.by_kind[k].server_errors += 1;
                } else {
                    res.by_kind[k].client_errors += 1;
                }
                res.error(format!(
                    "{} {} {} on node {} answered {}: {}",
                    p.kind.name(),
                    p.method,
                    p.path,
                    NODE_NAMES[node],
                    r.status,
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(300)
                        .collect::<String>()
                ));
                unsettle(&mut b, &p);
            }
            Ok(Err(e)) => {
                res.by_kind[k].unanswered += 1;
                res.error(format!(
                    "{} {} {} on node {}: {e}",
                    p.kind.name(),
                    p.method,
                    p.path,
                    NODE_NAMES[node]
                ));
                unsettle(&mut b, &p);
                conns[node] = None;
            }
            Err(_) => {
                res.by_kind[k].unanswered += 1;
                res.error(format!(
                    "{} {} {} on node {}: no answer within {} s",
                    p.kind.name(),
                    p.method,
                    p.path,
                    NODE_NAMES[node],
                    WRITE_TIMEOUT.as_secs()
                ));
                unsettle(&mut b, &p);
                conns[node] = None;
            }
        }
    }
    res
}

/// Schedules `rate` writes per second for `duration` over `pool` workers.
async fn run_writes(
    w: Arc<Writer>,
    rate: f64,
    duration: Duration,
    pool: usize,
) -> Result<WriteResult> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let (tx, rx) = mpsc::channel::<Job>(4096);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..pool.max(1))
        .map(|i| tokio::spawn(write_worker(w.clone(), 1000 + i as u64, rx.clone())))
        .collect();
    let t0 = Instant::now();
    for n in 0..total {
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if tx.send(Job { n, due }).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut res = WriteResult::default();
    for h in workers {
        let r = h.await?;
        for (a, b) in res.by_kind.iter_mut().zip(r.by_kind.iter()) {
            a.sent += b.sent;
            a.ok += b.ok;
            a.client_errors += b.client_errors;
            a.server_errors += b.server_errors;
            a.unanswered += b.unanswered;
        }
        res.skipped += r.skipped;
        res.connect_failed += r.connect_failed;
        res.per_node[0] += r.per_node[0];
        res.per_node[1] += r.per_node[1];
        for e in r.errors {
            res.error(e);
        }
    }
    Ok(res)
}

// ---------------------------------------------------------------- the run

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the first write.
    pub t_s: f64,
    pub rss_a_kib: u64,
    /// None while node B is stopped.
    pub rss_b_kib: Option<u64>,
    pub connections_a: i64,
    pub connections_b: i64,
    /// Events received by all clients so far.
    pub delivered: u64,
    /// Acknowledged writes so far.
    pub writes_ok: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    pub kind: String,
    pub sent: u64,
    pub ok: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub unanswered: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Restart {
    pub at_s: f64,
    /// Seconds from SIGTERM until node B had exited.
    pub exit_s: f64,
    pub exit_status: String,
    pub needed_sigkill: bool,
    /// Seconds from starting node B again until it was ready.
    pub start_s: f64,
    pub same_address: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    pub connections: usize,
    pub images: usize,
    pub duration_s: f64,
    pub wall_s: f64,
    pub writes_per_sec: f64,
    pub writes: Vec<KindReport>,
    pub writes_ok: u64,
    pub writes_through_a: u64,
    pub writes_through_b: u64,
    pub writes_skipped: u64,
    pub status_5xx: u64,
    pub status_4xx: u64,
    pub unanswered: u64,
    pub events_delivered: u64,
    /// Events logged × the image's viewers: what delivery would be if no
    /// reload skipped events its snapshot held.
    pub events_logged_times_viewers: u64,
    pub latency: Latency,
    pub reconnects: u64,
    pub recovered: u64,
    pub not_recovered: u64,
    pub drops: u64,
    pub reloads: u64,
    pub server_gone: u64,
    pub rebalanced: u64,
    pub failovers: u64,
    pub failed_attempts: u64,
    pub closes_in_restart: BTreeMap<u16, u64>,
    pub closes_unexpected: BTreeMap<u16, u64>,
    pub restart: Option<Restart>,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub unexpected_messages: u64,
    pub clients_short: u64,
    pub chats_created: u64,
    pub chats_deleted: u64,
    pub chats_live: u64,
    pub chats_checked: u64,
    pub samples: Vec<Sample>,
    pub warmup_rss_a_kib: u64,
    pub end_rss_a_kib: u64,
    pub rss_ratio: f64,
    pub rss_limit: f64,
    pub node_warnings: [u64; 2],
    pub node_errors: [u64; 2],
    pub node_log_lines: Vec<String>,
    pub log_dir: String,
    pub failures: Vec<String>,
    pub ok: bool,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn sample(t0: Instant, cl: &Cluster) -> Sample {
    let rss = |n: usize| match cl.pids[n].load(Ordering::Relaxed) {
        0 => None,
        pid => proc_rss_kib(pid).ok(),
    };
    Sample {
        t_s: t0.elapsed().as_secs_f64(),
        rss_a_kib: rss(0).unwrap_or(0),
        rss_b_kib: rss(1),
        connections_a: cl.conns[0].load(Ordering::Relaxed),
        connections_b: cl.conns[1].load(Ordering::Relaxed),
        delivered: DELIVERED.load(Ordering::Relaxed),
        writes_ok: cl.writes_ok.load(Ordering::Relaxed),
    }
}

fn print_sample(s: &Sample) {
    eprintln!(
        "soak: {:>6.0} s  RSS A {:>7.1} MiB  B {:>7}  connections {:>5} + {:>5}  delivered {:>10}  writes {:>7}",
        s.t_s,
        s.rss_a_kib as f64 / 1024.0,
        s.rss_b_kib
            .map_or("down".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        s.connections_a,
        s.connections_b,
        s.delivered,
        s.writes_ok
    );
}

/// SIGTERM to node B (after fencing its writes), wait for it to exit, keep
/// it down for `down`, start it again on the same database (and address).
async fn restart_b(
    mut b: Node,
    cfg: Arc<NodeCfg>,
    counts: Arc<LogCounts>,
    cl: Arc<Cluster>,
    down: Duration,
    t0: Instant,
) -> Result<(Node, Restart)> {
    cl.restarting[1].store(true, Ordering::Relaxed);
    cl.writable[1].store(false, Ordering::Relaxed);
    // Writes already sent to B finish before it is stopped.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut r = Restart {
        at_s: t0.elapsed().as_secs_f64(),
        ..Restart::default()
    };
    eprintln!("soak: {:>6.0} s  SIGTERM to node B", r.at_s);
    let t = Instant::now();
    if let Ok(pid) = libc::pid_t::try_from(b.pid) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let status = loop {
        if let Ok(Some(st)) = b.child.try_wait() {
            break Some(st);
        }
        if t.elapsed() > EXIT_GRACE {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    r.exit_s = t.elapsed().as_secs_f64();
    match status {
        Some(st) => r.exit_status = st.to_string(),
        None => {
            r.needed_sigkill = true;
            let _ = b.child.kill();
            r.exit_status = b
                .child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
        }
    }
    cl.pids[1].store(0, Ordering::Relaxed);
    let addr = b.addr;
    drop(b);
    tokio::time::sleep(down).await;
    let t = Instant::now();
    let node = match start_node(&cfg, "B", addr, counts.clone()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("soak: node B could not start on {addr} again ({e}); trying a new port");
            start_node(&cfg, "B", SocketAddr::from(([127, 0, 0, 1], 0)), counts).await?
        }
    };
    r.start_s = t.elapsed().as_secs_f64();
    r.same_address = node.addr == addr;
    cl.set_addr(1, node.addr);
    cl.pids[1].store(node.pid, Ordering::Relaxed);
    cl.generation[1].fetch_add(1, Ordering::Relaxed);
    cl.writable[1].store(true, Ordering::Relaxed);
    cl.restarting[1].store(false, Ordering::Relaxed);
    eprintln!(
        "soak: {:>6.0} s  node B is back on {} (exited {:.1} s after SIGTERM, ready {:.1} s after starting)",
        t0.elapsed().as_secs_f64(),
        node.addr,
        r.exit_s,
        r.start_s
    );
    Ok((node, r))
}

/// The final snapshot of every image: (seq, chats by id).
async fn snapshots(
    addr: SocketAddr,
    token: &str,
    images: &[String],
) -> Result<Vec<(u64, HashMap<String, Value>)>> {
    let mut c = HttpConn::connect(addr).await?;
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let path = format!("/api/v1/chats?urlId={}", percent_encode(img));
        let r = tokio::time::timeout(WRITE_TIMEOUT, c.request("GET", &path, Some(token), None))
            .await
            .map_err(|_| format!("snapshot of {img}: no answer"))??;
        if r.status != 200 {
            return err(format!("snapshot of {img} answered {}", r.status));
        }
        let v: Value = serde_json::from_slice(&r.body)?;
        let seq = v["seq"]
            .as_u64()
            .ok_or_else(|| format!("snapshot of {img} without seq"))?;
        let mut chats = HashMap::new();
        for ch in v["chats"].as_array().into_iter().flatten() {
            if let Some(id) = ch["id"].as_str() {
                chats.insert(id.to_owned(), ch.clone());
            }
        }
        out.push((seq, chats));
    }
    Ok(out)
}

/// Compares the book with the final snapshots; returns (failures, chats checked).
fn check_book(book: &Book, snaps: &[(u64, HashMap<String, Value>)]) -> (Vec<String>, u64) {
    fn note(f: &mut Vec<String>, s: String) {
        if f.len() < 20 {
            f.push(s);
        }
    }
    let mut f = Vec::new();
    for (img, id) in &book.created {
        if book.deleted.contains(id) {
            if snaps[*img].1.contains_key(id) {
                note(
                    &mut f,
                    format!("chat {id} was deleted (200) but is in the final snapshot"),
                );
            }
        } else if !snaps[*img].1.contains_key(id) {
            note(
                &mut f,
                format!("chat {id} was created (201) but is missing from the final snapshot"),
            );
        }
    }
    let mut checked = 0;
    for (img, live) in book.live.iter().enumerate() {
        for c in live {
            if book.uncertain.contains(&c.id) {
                continue;
            }
            let Some(s) = snaps[img].1.get(&c.id) else {
                continue; // reported above
            };
            checked += 1;
            let x = s["x"].as_f64().unwrap_or(f64::NAN);
            let y = s["y"].as_f64().unwrap_or(f64::NAN);
            let resolved = s["resolved"].as_bool();
            let comments = s["comments"].as_array().map_or(0, |a| a.len() as u64);
            if (x - c.x).abs() > 1e-6 || (y - c.y).abs() > 1e-6 {
                note(&mut f, format!("chat {}: at ({x}, {y}) in the snapshot, ({}, {}) after the last acknowledged move", c.id, c.x, c.y));
            }
            if resolved != Some(c.resolved) {
                note(&mut f, format!("chat {}: resolved {resolved:?} in the snapshot, {} after the last acknowledged resolve", c.id, c.resolved));
            }
            if comments != c.comments {
                note(
                    &mut f,
                    format!(
                        "chat {}: {comments} comment(s) in the snapshot, {} acknowledged",
                        c.id, c.comments
                    ),
                );
            }
        }
    }
    for (img, (seq, _)) in snaps.iter().enumerate() {
        if *seq < book.max_seq[img] {
            note(&mut f, format!("image {img}: the final snapshot is at seq {seq}, but a write answer named seq {}", book.max_seq[img]));
        }
    }
    (f, checked)
}

pub async fn run(a: SoakArgs) -> Result<bool> {
    if a.connections == 0 || a.images == 0 || a.rate <= 0.0 || a.duration <= 0.0 {
        return err("--connections, --images, --rate and --duration must be positive");
    }
    if a.sample_every <= 0.0 || a.drop_every <= 0.0 {
        return err("--sample-every and --drop-every must be positive");
    }
    util::check_nofile(a.connections + 2 * a.pool + 256)?;
    let tag = util::run_tag();
    let (log_dir, own_log_dir) = match &a.log_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("imagechat-soak-{tag}")),
            true,
        ),
    };
    std::fs::create_dir_all(&log_dir)?;
    let mut key_rng = Rng::new(std::process::id() as u64);
    let admin_key = format!(
        "soak-{:016x}{:016x}",
        key_rng.next_u64(),
        key_rng.next_u64()
    );
    let cfg = Arc::new(NodeCfg {
        bin: a.imagechat_bin.clone(),
        database: a.database.clone(),
        broker: a.broker.clone(),
        admin_key: admin_key.clone(),
        log_dir: log_dir.clone(),
    });
    let counts = [
        Arc::new(LogCounts::default()),
        Arc::new(LogCounts::default()),
    ];
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    // One after the other: the first applies the migrations.
    let node_a = start_node(&cfg, "A", any_port, counts[0].clone()).await?;
    let node_b = start_node(&cfg, "B", any_port, counts[1].clone()).await?;
    eprintln!(
        "soak: node A on {} (pid {}), node B on {} (pid {}), logs in {}",
        node_a.addr,
        node_a.pid,
        node_b.addr,
        node_b.pid,
        log_dir.display()
    );
    let cl = Arc::new(Cluster {
        addr: [
            std::sync::Mutex::new(node_a.addr),
            std::sync::Mutex::new(node_b.addr),
        ],
        writable: [AtomicBool::new(true), AtomicBool::new(true)],
        restarting: [AtomicBool::new(false), AtomicBool::new(false)],
        generation: [AtomicU64::new(0), AtomicU64::new(0)],
        pids: [AtomicU32::new(node_a.pid), AtomicU32::new(node_b.pid)],
        conns: [AtomicI64::new(0), AtomicI64::new(0)],
        writes_ok: AtomicU64::new(0),
    });

    // The tenant, with anonymous write, and sessions.
    let tenant = format!("soak-{}", tag.replace('-', "x"));
    let body = json!({"tenantId": tenant, "anonymous": "write"}).to_string();
    let r = http::HttpConn::connect(node_a.addr)
        .await?
        .request(
            "POST",
            "/api/v1/admin/tenants",
            Some(&admin_key),
            Some(body.as_bytes()),
        )
        .await?;
    if r.status != 201 {
        return err(format!(
            "creating tenant {tenant} answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let mut tokens = Vec::with_capacity(WRITERS);
    for i in 0..WRITERS {
        tokens.push(session(cl.addr(i % 2), &tenant).await?);
    }
    let viewer = session(node_b.addr, &tenant).await?;
    let images: Arc<Vec<String>> = Arc::new(
        (0..a.images)
            .map(|i| format!("soak-{tag}-img-{i}"))
            .collect(),
    );

    // Subscribers: image i % I; node (i / I) % 2, so every image has
    // viewers on both nodes.
    let homes: Vec<usize> = (0..a.connections).map(|i| (i / a.images) % 2).collect();
    let specs: Vec<Spec> = (0..a.connections)
        .map(|i| Spec {
            target: Target::Imagechat,
            addr: cl.addr(homes[i]),
            token: viewer.clone(),
            url_id: images[i % images.len()].clone(),
            idx: i,
            total: a.connections,
        })
        .collect();
    let subs = open_all(specs, a.connect_concurrency, "soak").await?;
    let hard = Instant::now()
        + secs(a.duration)
        + secs(a.drain)
        + RECONNECT_GIVE_UP
        + Duration::from_secs(120);
    let (ctl_tx, ctl_rx) = watch::channel(Control::default());
    let mut senders: Vec<mpsc::Sender<Cmd>> = Vec::with_capacity(a.connections);
    let mut tasks = Vec::with_capacity(a.connections);
    for mut s in subs {
        s.snapshot_when_not_recovered();
        let idx = s.idx();
        let mut rng = Rng::new(idx as u64 + 17);
        let fails_over = (rng.below(1_000_000) as f64) < a.failover_share * 1e6;
        let (tx, rx) = mpsc::channel(4);
        senders.push(tx);
        let c = Client {
            sub: s,
            idx,
            home: homes[idx],
            at: homes[idx],
            fails_over,
            cl: cl.clone(),
            rng,
            res: ClientResult::default(),
            hard,
        };
        tasks.push(tokio::spawn(c.run(rx, ctl_rx.clone(), a.reload_share)));
    }
    // Let the joins' presence messages go out.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let book = Arc::new(std::sync::Mutex::new(Book {
        live: vec![Vec::new(); a.images],
        max_seq: vec![0; a.images],
        ..Book::default()
    }));
    let writer = Arc::new(Writer {
        cl: cl.clone(),
        book: book.clone(),
        tokens: Arc::new(tokens),
        images: images.clone(),
    });
    let delivered0 = DELIVERED.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let end = t0 + secs(a.duration);
    let writes = tokio::spawn(run_writes(writer, a.rate, secs(a.duration), a.pool));

    let mut node_b = Some(node_b);
    let mut samples = vec![sample(t0, &cl)];
    if let Some(s) = samples.last() {
        print_sample(s);
    }
    let mut failures: Vec<String> = Vec::new();
    let mut rng = Rng::new(99);
    let mut next_sample = t0 + secs(a.sample_every);
    let mut next_drop = t0 + secs(a.drop_every);
    let restart_at = (a.restart_at < 1.0).then(|| t0 + secs(a.duration * a.restart_at.max(0.0)));
    let mut restart_started = false;
    let mut restart: Option<tokio::task::JoinHandle<Result<(Node, Restart)>>> = None;
    let mut restart_info: Option<Restart> = None;
    let mut homing: Option<tokio::task::JoinHandle<()>> = None;
    let mut node_a = node_a;
    loop {
        if let Ok(Some(st)) = node_a.child.try_wait() {
            failures.push(format!("node A exited during the run ({st})"));
            break;
        }
        if let Some(b) = node_b.as_mut() {
            if let Ok(Some(st)) = b.child.try_wait() {
                failures.push(format!("node B exited during the run ({st})"));
                break;
            }
        }
        let restart_due = restart_at.filter(|_| !restart_started);
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => break,
            _ = tokio::time::sleep_until(next_sample.into()), if next_sample < end => {
                let s = sample(t0, &cl);
                print_sample(&s);
                samples.push(s);
                next_sample += secs(a.sample_every);
            }
            _ = tokio::time::sleep_until(next_drop.into()) => {
                for _ in 0..a.drop_count.min(senders.len()) {
                    let _ = senders[rng.below(senders.len())].try_send(Cmd::Drop);
                }
                next_drop += secs(a.drop_every);
            }
            _ = tokio::time::sleep_until(restart_due.unwrap_or(end).into()), if restart_due.is_some() => {
                restart_started = true;
                if let Some(b) = node_b.take() {
                    restart = Some(tokio::spawn(restart_b(
                        b, cfg.clone(), counts[1].clone(), cl.clone(), secs(a.restart_down), t0,
                    )));
                }
            }
            r = async {
                match restart.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            } => {
                restart = None;
                match r {
                    Ok(Ok((n, info))) => {
                        node_b = Some(n);
                        restart_info = Some(info);
                        // Clients that moved to A go home, 50 every 0.5 s.
                        let senders = senders.clone();
                        homing = Some(tokio::spawn(async move {
                            for chunk in senders.chunks(50) {
                                for s in chunk {
                                    let _ = s.try_send(Cmd::Home);
                                }
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }));
                    }
                    Ok(Err(e)) => {
                        failures.push(format!("restarting node B failed: {e}"));
                        break;
                    }
                    Err(e) => {
                        failures.push(format!("restarting node B failed: {e}"));
                        break;
                    }
                }
            }
        }
    }
    let s = sample(t0, &cl);
    print_sample(&s);
    samples.push(s);
    // A restart still running (a short run) finishes before the checks.
    if let Some(h) = restart.take() {
        match h.await {
            Ok(Ok((n, info))) => {
                node_b = Some(n);
                restart_info = Some(info);
            }
            Ok(Err(e)) => failures.push(format!("restarting node B failed: {e}")),
            Err(e) => failures.push(format!("restarting node B failed: {e}")),
        }
    }
    let w = match writes.await {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => return Err(e),
        Err(e) => return err(format!("the writes failed: {e}")),
    };
    if let Some(h) = homing.take() {
        let _ = h.await;
    }
    if let Some(info) = &restart_info {
        if info.needed_sigkill {
            failures.push(format!(
                "node B did not exit within {} s of SIGTERM",
                EXIT_GRACE.as_secs()
            ));
        }
    }

    // Final snapshots, then every client must reach its image's seq.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snaps = match snapshots(cl.addr(0), &viewer, &images).await {
        Ok(s) => {
            let finals: HashMap<String, u64> = images
                .iter()
                .zip(&s)
                .map(|(img, (seq, _))| (img.clone(), *seq))
                .collect();
            let _ = ctl_tx.send(Control {
                finals: Some(Arc::new(finals)),
                stop: false,
            });
            Some(s)
        }
        Err(e) => {
            failures.push(format!("the final snapshots could not be read: {e}"));
            let _ = ctl_tx.send(Control {
                finals: None,
                stop: true,
            });
            None
        }
    };
    let drain_deadline = Instant::now() + secs(a.drain);
    let stopper = {
        let ctl_tx = ctl_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(drain_deadline.into()).await;
            ctl_tx.send_modify(|c| c.stop = true);
        })
    };
    let mut total = ClientResult::default();
    for t in tasks {
        match t.await {
            Ok(r) => total.merge(&r),
            Err(e) => total.stats.error(format!("client task: {e}")),
        }
    }
    stopper.abort();
    drop(senders);
    let wall = t0.elapsed().as_secs_f64();

    let mut checked = 0;
    let mut expected = 0;
    if let Some(snaps) = &snaps {
        for (i, (seq, _)) in snaps.iter().enumerate() {
            let viewers = (0..a.connections).filter(|c| c % a.images == i).count() as u64;
            expected += seq * viewers;
        }
        let (book_failures, n) = check_book(&lock_book(&book), snaps);
        failures.extend(book_failures);
        checked = n;
    }
    let st = &total.stats;
    if st.lost > 0 || st.duplicated > 0 || st.reordered > 0 {
        failures.push(format!(
            "events lost {}, duplicated {}, reordered {}",
            st.lost, st.duplicated, st.reordered
        ));
    }
    if st.short > 0 {
        failures.push(format!(
            "{} client(s) ended short of their image's last seq",
            st.short
        ));
    }
    if st.unexpected > 0 {
        failures.push(format!("{} unexpected message(s)", st.unexpected));
    }
    for e in &st.errors {
        failures.push(e.clone());
    }
    let count = |f: fn(&KindCount) -> u64| w.by_kind.iter().map(f).sum::<u64>();
    let (s5, s4, unanswered, ok) = (
        count(|k| k.server_errors),
        count(|k| k.client_errors),
        count(|k| k.unanswered),
        count(|k| k.ok),
    );
    if s5 > 0 {
        failures.push(format!("{s5} write(s) answered 5xx"));
    }
    if s4 > 0 {
        failures.push(format!("{s4} write(s) answered 4xx or an unreadable 2xx"));
    }
    if unanswered > 0 {
        failures.push(format!("{unanswered} write(s) got no answer"));
    }
    if w.skipped > 0 || w.connect_failed > 0 {
        failures.push(format!(
            "{} write(s) skipped (more than {} s late) and {} could not connect",
            w.skipped,
            MAX_LATE.as_secs(),
            w.connect_failed
        ));
    }
    for e in &w.errors {
        failures.push(e.clone());
    }
    let unexpected_closes: u64 = total.closes_unexpected.values().sum();
    if unexpected_closes > 0 {
        failures.push(format!(
            "{unexpected_closes} connection(s) closed by a node outside its restart (close codes: {:?}; 0 = no close frame)",
            total.closes_unexpected
        ));
    }

    // Memory: node A, end of the run against the end of the warm-up.
    let warm_t = a.duration * a.warmup_share;
    let warm = samples
        .iter()
        .find(|s| s.t_s >= warm_t - 1e-9)
        .or(samples.last())
        .map_or(0, |s| s.rss_a_kib);
    let end_rss = samples.last().map_or(0, |s| s.rss_a_kib);
    let ratio = if warm > 0 {
        end_rss as f64 / warm as f64
    } else {
        f64::NAN
    };
    if ratio.is_nan() || ratio > a.rss_limit {
        failures.push(format!(
            "node A's resident memory grew from {warm} KiB after the warm-up to {end_rss} KiB at the end: {ratio:.3}× (limit {}×)",
            a.rss_limit
        ));
    }

    let mut node_log_lines = Vec::new();
    for (n, c) in counts.iter().enumerate() {
        if let Ok(f) = c.first.lock() {
            node_log_lines.extend(f.iter().map(|l| format!("node {}: {l}", NODE_NAMES[n])));
        }
    }
    let b = lock_book(&book);
    let ok_run = failures.is_empty();
    let report = SoakReport {
        connections: a.connections,
        images: a.images,
        duration_s: a.duration,
        wall_s: wall,
        writes_per_sec: a.rate,
        writes: KINDS
            .iter()
            .map(|k| {
                let c = w.by_kind[k.index()];
                KindReport {
                    kind: k.name().into(),
                    sent: c.sent,
                    ok: c.ok,
                    status_4xx: c.client_errors,
                    status_5xx: c.server_errors,
                    unanswered: c.unanswered,
                }
            })
            .collect(),
        writes_ok: ok,
        writes_through_a: w.per_node[0],
        writes_through_b: w.per_node[1],
        writes_skipped: w.skipped,
        status_5xx: s5,
        status_4xx: s4,
        unanswered,
        events_delivered: DELIVERED.load(Ordering::Relaxed) - delivered0,
        events_logged_times_viewers: expected,
        latency: st.hist.summary(),
        reconnects: st.reconnects,
        recovered: st.recovered,
        not_recovered: st.not_recovered,
        drops: total.drops,
        reloads: total.reloads,
        server_gone: total.server_gone,
        rebalanced: total.rebalanced,
        failovers: total.failovers,
        failed_attempts: total.failed_attempts,
        closes_in_restart: total.closes_in_restart.clone(),
        closes_unexpected: total.closes_unexpected.clone(),
        restart: restart_info,
        lost: st.lost,
        duplicated: st.duplicated,
        reordered: st.reordered,
        unexpected_messages: st.unexpected,
        clients_short: st.short,
        chats_created: b.created.len() as u64,
        chats_deleted: b.deleted.len() as u64,
        chats_live: b.live.iter().map(|l| l.len() as u64).sum(),
        chats_checked: checked,
        samples,
        warmup_rss_a_kib: warm,
        end_rss_a_kib: end_rss,
        rss_ratio: ratio,
        rss_limit: a.rss_limit,
        node_warnings: [
            counts[0].warn.load(Ordering::Relaxed),
            counts[1].warn.load(Ordering::Relaxed),
        ],
        node_errors: [
            counts[0].error.load(Ordering::Relaxed),
            counts[1].error.load(Ordering::Relaxed),
        ],
        node_log_lines,
        log_dir: log_dir.display().to_string(),
        failures,
        ok: ok_run,
    };
    drop(b);
    drop(node_b);
    drop(node_a);
    if a.json {
        crate::print_json(&report)?;
    } else {
        print(&report);
    }
    if ok_run && own_log_dir {
        let _ = std::fs::remove_dir_all(&log_dir);
    }
    Ok(ok_run)
}

fn mib(k: u64) -> String {
    format!("{:.1}", k as f64 / 1024.0)
}

pub fn print(r: &SoakReport) {
    println!(
        "## Soak: {} connections, {} images, two nodes",
        r.connections, r.images
    );
    println!();
    println!("| time (s) | RSS node A (MiB) | RSS node B (MiB) | connections A / B | events delivered | writes acknowledged |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for s in &r.samples {
        println!(
            "| {:.0} | {} | {} | {} / {} | {} | {} |",
            s.t_s,
            mib(s.rss_a_kib),
            s.rss_b_kib.map_or("stopped".into(), mib),
            s.connections_a,
            s.connections_b,
            s.delivered,
            s.writes_ok
        );
    }
    println!();
    let w = |k: &KindReport| {
        format!(
            "{} {} ({} 4xx, {} 5xx, {} unanswered)",
            k.ok, k.kind, k.status_4xx, k.status_5xx, k.unanswered
        )
    };
    let mut rows: Vec<(String, String)> = vec![
        (
            "duration".into(),
            format!("{:.0} s of writes, {:.0} s in all", r.duration_s, r.wall_s),
        ),
        (
            "writes".into(),
            format!(
                "{} acknowledged of {:.0} offered ({} /s): {} through A, {} through B, {} skipped",
                r.writes_ok,
                r.writes_per_sec * r.duration_s,
                r.writes_per_sec,
                r.writes_through_a,
                r.writes_through_b,
                r.writes_skipped
            ),
        ),
    ];
    for k in &r.writes {
        rows.push((format!("  {}", k.kind), w(k)));
    }
    rows.extend([
        ("5xx answers".into(), r.status_5xx.to_string()),
        (
            "events delivered".into(),
            format!(
                "{} of {} logged × viewers (write sent → event read, live events: p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms)",
                r.events_delivered,
                r.events_logged_times_viewers, r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms
            ),
        ),
        (
            "lost / duplicated / reordered".into(),
            format!("{} / {} / {}", r.lost, r.duplicated, r.reordered),
        ),
        (
            "reconnects".into(),
            format!(
                "{}: recovered {} (replayed from (epoch, seq)), not recovered {} (snapshot, then on from its seq)",
                r.reconnects, r.recovered, r.not_recovered
            ),
        ),
        (
            "  why".into(),
            format!(
                "{} drops resumed with (epoch, seq), {} drops reloaded without a position, {} closed by a node, {} moved back to B after its restart",
                r.drops, r.reloads, r.server_gone, r.rebalanced
            ),
        ),
        (
            "  changed node / failed attempts".into(),
            format!("{} / {}", r.failovers, r.failed_attempts),
        ),
        (
            "close codes in the restart".into(),
            format!("{:?} (0 = no close frame)", r.closes_in_restart),
        ),
    ]);
    if let Some(x) = &r.restart {
        rows.push((
            "node B restart".into(),
            format!(
                "SIGTERM at {:.0} s, exited after {:.1} s ({}), ready {:.1} s after starting again{}",
                x.at_s,
                x.exit_s,
                x.exit_status,
                x.start_s,
                if x.same_address { " on the same address" } else { " on a new address" }
            ),
        ));
    }
    rows.extend([
        (
            "chats".into(),
            format!(
                "{} created, {} deleted, {} live; {} compared field by field with the final snapshots",
                r.chats_created, r.chats_deleted, r.chats_live, r.chats_checked
            ),
        ),
        (
            "RSS node A".into(),
            format!(
                "{} MiB after the warm-up, {} MiB at the end: {:.3}× (limit {}×)",
                mib(r.warmup_rss_a_kib),
                mib(r.end_rss_a_kib),
                r.rss_ratio,
                r.rss_limit
            ),
        ),
        (
            "node log warnings / errors".into(),
            format!(
                "A {} / {}, B {} / {}",
                r.node_warnings[0], r.node_errors[0], r.node_warnings[1], r.node_errors[1]
            ),
        ),
    ]);
    crate::report::kv("Totals", &rows);
    for l in &r.node_log_lines {
        println!("  {l}");
    }
    println!();
    if r.ok {
        println!("PASS");
    } else {
        println!(
            "FAIL ({} problem(s); node logs in {}):",
            r.failures.len(),
            r.log_dir
        );
        for f in &r.failures {
            println!("  - {f}");
        }
    }
}
