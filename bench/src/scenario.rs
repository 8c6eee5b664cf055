//! The scenarios: fan-out (one image, many viewers; also rooms and cluster
//! layouts), idle connections, and the reconnect storm.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Mutex};

use crate::http::{self, HttpConn};
use crate::stats::{ConnStats, Hist, Latency};
use crate::sub::{instant_us, Control, Spec, Subscriber, Target, DELIVERED};
use crate::util::{
    self, err, now_us, proc_cpu_seconds, proc_rss_kib, progress, progress_done, Result,
};

/// A 60-character comment, as in imagechat's own event-size test.
pub const TEXT: &str = "Is this shadow intentional? It looks odd next to the window.";

static WRITES: AtomicU64 = AtomicU64::new(0);

/// Creates an anonymous session on tenant `tenant` (imagechat only).
pub async fn session(addr: SocketAddr, tenant: &str) -> Result<Arc<str>> {
    let body = serde_json::json!({ "tenantId": tenant }).to_string();
    let r = http::once(
        addr,
        "POST",
        "/api/v1/sessions",
        None,
        Some(body.as_bytes()),
    )
    .await?;
    if r.status != 200 {
        return err(format!(
            "POST /api/v1/sessions on {addr} answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    #[derive(Deserialize)]
    struct S {
        token: String,
    }
    let s: S = serde_json::from_slice(&r.body)?;
    Ok(s.token.into())
}

fn cpu_sum(pids: &[u32]) -> Result<f64> {
    let mut t = 0.0;
    for &p in pids {
        t += proc_cpu_seconds(p)?;
    }
    Ok(t)
}

/// Opens `specs.len()` subscribers, `concurrency` at a time.
pub async fn open_all(
    specs: Vec<Spec>,
    concurrency: usize,
    label: &str,
) -> Result<Vec<Subscriber>> {
    let total = specs.len();
    let mut out = Vec::with_capacity(total);
    let mut set = tokio::task::JoinSet::new();
    let mut it = specs.into_iter();
    let mut last_print = Instant::now();
    let mut first_err: Option<String> = None;
    let mut failed = 0usize;
    loop {
        while set.len() < concurrency.max(1) {
            match it.next() {
                Some(s) => {
                    set.spawn(Subscriber::connect(s));
                }
                None => break,
            }
        }
        let Some(r) = set.join_next().await else {
            break;
        };
        match r {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(e)) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
        if failed > 0 {
            // stop starting new ones; let the rest finish
            it = Vec::new().into_iter();
        }
        if last_print.elapsed() > Duration::from_millis(250) {
            progress(&format!("{label}: connected {}/{total}", out.len()));
            last_print = Instant::now();
        }
    }
    progress(&format!("{label}: connected {}/{total}", out.len()));
    progress_done();
    if let Some(e) = first_err {
        return err(format!(
            "{failed} of {total} connections failed to subscribe; first error: {e}"
        ));
    }
    Ok(out)
}

#[derive(Clone)]
pub struct WriteSpec {
    pub target: Target,
    pub addr: SocketAddr,
    pub token: Arc<str>,
    pub images: Arc<Vec<String>>,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub pool: usize,
    pub pids: Vec<u32>,
}

#[derive(Default)]
pub struct WriteResult {
    pub ok: u64,
    pub failed: u64,
    pub measured_ok: HashMap<String, u64>,
    pub finals: HashMap<String, u64>,
    pub errors: Vec<String>,
    pub rtt: Hist,
    /// How late writes were sent after their scheduled time (µs).
    pub lag: Hist,
    pub skipped: u64,
    pub measure_start: Option<Instant>,
    pub cpu_at_start: Option<f64>,
    pub usage_at_start: util::Usage,
    pub end: Option<Instant>,
}

struct Job {
    n: u64,
    image: usize,
    measured: bool,
    due: Instant,
}

/// A write that cannot be sent within this long after its scheduled time
/// (every pooled connection busy with slow answers) is skipped and counted:
/// the server is not taking the offered rate.
const MAX_LATE: Duration = Duration::from_secs(5);
/// A write whose answer takes longer than this fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

async fn write_worker(spec: WriteSpec, rx: Arc<Mutex<mpsc::Receiver<Job>>>) -> WriteResult {
    let mut res = WriteResult::default();
    let mut conn: Option<HttpConn> = None;
    let (path, auth) = match spec.target {
        Target::Imagechat => ("/api/v1/chats", Some(&*spec.token)),
        Target::Socketio => ("/write", None),
    };
    #[derive(Deserialize)]
    struct Answer {
        seq: u64,
    }
    loop {
        let job = { rx.lock().await.recv().await };
        let Some(job) = job else { break };
        let late = Instant::now().saturating_duration_since(job.due);
        res.lag.record(late.as_micros() as u64);
        if late > MAX_LATE {
            res.skipped += 1;
            continue;
        }
        if conn.is_none() {
            match HttpConn::connect(spec.addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    res.failed += 1;
                    if res.errors.len() < 5 {
                        res.errors.push(format!("write connect: {e}"));
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let image = &spec.images[job.image];
        let bid = format!(
            "{}{}-{}",
            if job.measured { 'm' } else { 'w' },
            now_us(),
            job.n
        );
        let body = format!(
            r#"{{"urlId":{},"x":33.3333,"y":66.6667,"text":"{TEXT}","broadcastId":"{bid}"}}"#,
            json_str(image)
        );
        let t = Instant::now();
        let answer = tokio::time::timeout(
            WRITE_TIMEOUT,
            c.request("POST", path, auth, Some(body.as_bytes())),
        )
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within 10 s",
            ))
        });
        match answer {
            Ok(r) if r.status == 201 => match serde_json::from_slice::<Answer>(&r.body) {
                Ok(a) => {
                    res.rtt.record(t.elapsed().as_micros() as u64);
                    res.ok += 1;
                    WRITES.fetch_add(1, Ordering::Relaxed);
                    let f = res.finals.entry(image.clone()).or_insert(0);
                    *f = (*f).max(a.seq);
                    if job.measured {
                        *res.measured_ok.entry(image.clone()).or_insert(0) += 1;
                    }
                }
                Err(e) => {
                    res.failed += 1;
                    if res.errors.len() < 5 {
                        res.errors.push(format!("write answer without seq: {e}"));
                    }
                }
            },
            Ok(r) => {
                res.failed += 1;
                if res.errors.len() < 5 {
                    res.errors.push(format!(
                        "write answered {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
            }
            Err(e) => {
                res.failed += 1;
                conn = None;
                if res.errors.len() < 5 {
                    res.errors.push(format!("write: {e}"));
                }
            }
        }
    }
    res
}

/// Writes at `rate` per second for warm-up + duration, through a pool of
/// keep-alive connections; images chosen at random when there are several.
pub async fn run_writes(spec: WriteSpec) -> Result<WriteResult> {
    let warm_n = (spec.rate * spec.warmup.as_secs_f64()).round() as u64;
    let meas_n = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    let total = warm_n + meas_n;
    let (tx, rx) = mpsc::channel::<Job>((total as usize).clamp(1, 1 << 20));
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..spec.pool.max(1) {
        workers.push(tokio::spawn(write_worker(spec.clone(), rx.clone())));
    }
    let mut rng = util::Rng::new(7);
    let t0 = Instant::now();
    let mut measure_start = None;
    let mut cpu_at_start = None;
    let mut usage_at_start = util::Usage::now();
    for i in 0..total {
        let at = t0 + Duration::from_secs_f64(i as f64 / spec.rate);
        tokio::time::sleep_until(at.into()).await;
        if i == warm_n {
            cpu_at_start = cpu_sum(&spec.pids).ok();
            usage_at_start = util::Usage::now();
            measure_start = Some(Instant::now());
        }
        let job = Job {
            n: i,
            image: rng.below(spec.images.len()),
            measured: i >= warm_n,
            due: at,
        };
        if tx.send(job).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut res = WriteResult::default();
    for w in workers {
        let r = w.await?;
        res.ok += r.ok;
        res.failed += r.failed;
        for (k, v) in r.measured_ok {
            *res.measured_ok.entry(k).or_insert(0) += v;
        }
        for (k, v) in r.finals {
            let f = res.finals.entry(k).or_insert(0);
            *f = (*f).max(v);
        }
        for e in r.errors {
            if res.errors.len() < 10 {
                res.errors.push(e);
            }
        }
        res.rtt.merge(&r.rtt);
        res.lag.merge(&r.lag);
        res.skipped += r.skipped;
    }
    if res.skipped > 0 {
        res.errors.push(format!(
            "{} writes were more than {} s behind schedule and were skipped: the server did not take the offered rate",
            res.skipped,
            MAX_LATE.as_secs()
        ));
    }
    res.measure_start = measure_start;
    res.cpu_at_start = cpu_at_start;
    res.usage_at_start = usage_at_start;
    res.end = Some(Instant::now());
    Ok(res)
}

/// Prints a progress line every second until aborted.
fn spawn_progress(label: String) -> tokio::task::JoinHandle<()> {
    let d0 = DELIVERED.load(Ordering::Relaxed);
    let w0 = WRITES.load(Ordering::Relaxed);
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut last_d = d0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let d = DELIVERED.load(Ordering::Relaxed);
            let w = WRITES.load(Ordering::Relaxed);
            progress(&format!(
                "{label}: {:>5.1}s  writes {:>7}  deliveries {:>10}  ({:>8}/s)",
                t0.elapsed().as_secs_f64(),
                w - w0,
                d - d0,
                d - last_d
            ));
            last_d = d;
        }
    })
}

pub struct LoadCfg {
    pub scenario: &'static str,
    pub target: Target,
    pub sub_addrs: Vec<SocketAddr>,
    pub write_addr: SocketAddr,
    pub tenant: String,
    pub connections: usize,
    pub images: usize,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub pool: usize,
    pub drain: Duration,
    pub pids: Vec<u32>,
    pub concurrency: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub scenario: String,
    pub target: String,
    pub connections: usize,
    pub images: usize,
    pub nodes: usize,
    pub writes_per_sec: f64,
    pub duration_s: f64,
    pub writes_ok: u64,
    pub writes_failed: u64,
    /// Writes never sent: more than 5 s behind schedule.
    pub writes_skipped: u64,
    /// How late writes left the generator after their scheduled time.
    pub write_lag_p99_ms: f64,
    pub write_lag_max_ms: f64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub deliveries_per_sec: f64,
    pub latency: Latency,
    pub write_answer_p50_ms: f64,
    pub write_answer_p99_ms: f64,
    pub bytes_per_delivery: f64,
    pub frames_per_delivery: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_delivery: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    /// CPU used by this generator over the window, in cores.
    pub generator_cpu_cores: f64,
    /// Share of all the machine's CPU time that was busy over the window.
    pub machine_busy: f64,
    /// CPU used by everything else on the machine over the window, in
    /// cores (busy share × CPUs − server − generator): the noise.
    pub other_cpu_cores: Option<f64>,
    pub lost: u64,
    /// Subscribers that ended short of their image's last seq.
    pub subscribers_short: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub unexpected: u64,
    pub errors: Vec<String>,
    pub ok: bool,
}

/// Fan-out, rooms and cluster: subscribers spread over images (round robin)
/// and over `sub_addrs`; writes through `write_addr`.
pub async fn load(cfg: LoadCfg) -> Result<LoadReport> {
    if cfg.sub_addrs.is_empty() || cfg.images == 0 || cfg.rate <= 0.0 {
        return err("need at least one subscriber URL, one image and a positive rate");
    }
    util::check_nofile(cfg.connections + cfg.pool + 64)?;
    let tag = util::run_tag();
    let images: Arc<Vec<String>> = Arc::new(
        (0..cfg.images)
            .map(|i| format!("bench-{}-{tag}-img-{i}", cfg.scenario))
            .collect(),
    );
    let mut tokens = HashMap::new();
    let mut all_addrs = cfg.sub_addrs.clone();
    all_addrs.push(cfg.write_addr);
    for a in &all_addrs {
        if cfg.target == Target::Imagechat && !tokens.contains_key(a) {
            tokens.insert(*a, session(*a, &cfg.tenant).await?);
        }
    }
    let empty: Arc<str> = Arc::from("");
    let specs: Vec<Spec> = (0..cfg.connections)
        .map(|i| {
            let addr = cfg.sub_addrs[i % cfg.sub_addrs.len()];
            Spec {
                target: cfg.target,
                addr,
                token: tokens.get(&addr).cloned().unwrap_or_else(|| empty.clone()),
                url_id: images[i % images.len()].clone(),
                idx: i,
                total: cfg.connections,
            }
        })
        .collect();
    let mut subs_per_image: HashMap<String, u64> = HashMap::new();
    for s in &specs {
        *subs_per_image.entry(s.url_id.clone()).or_insert(0) += 1;
    }
    let label = format!("{} {}", cfg.scenario, cfg.target.name());
    let subs = open_all(specs, cfg.concurrency, &label).await?;
    // Let presence announcements from the joins go out before measuring.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (ctl_tx, ctl_rx) = watch::channel(Control::default());
    // Only a safety net: subscribers stop on the final seqs, or when the
    // drain after the last write is over.
    let hard = Instant::now()
        + cfg.warmup
        + cfg.duration
        + cfg.drain
        + MAX_LATE
        + WRITE_TIMEOUT
        + Duration::from_secs(30);
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|s| tokio::spawn(s.run(ctl_rx.clone(), None, hard)))
        .collect();
    let prog = spawn_progress(label.clone());
    let wspec = WriteSpec {
        target: cfg.target,
        addr: cfg.write_addr,
        token: tokens.get(&cfg.write_addr).cloned().unwrap_or(empty),
        images: images.clone(),
        rate: cfg.rate,
        warmup: cfg.warmup,
        duration: cfg.duration,
        pool: cfg.pool,
        pids: cfg.pids.clone(),
    };
    let w = run_writes(wspec).await;
    let w = match w {
        Ok(w) => w,
        Err(e) => {
            prog.abort();
            let _ = ctl_tx.send(Control {
                finals: None,
                stop: true,
            });
            return Err(e);
        }
    };
    let mut finals: HashMap<String, u64> = images.iter().map(|i| (i.clone(), 0)).collect();
    for (k, v) in &w.finals {
        finals.insert(k.clone(), *v);
    }
    let _ = ctl_tx.send(Control {
        finals: Some(Arc::new(finals)),
        stop: false,
    });
    // Drain: every subscriber stops when it has its image's last seq.
    let drain_deadline = Instant::now() + cfg.drain;
    let stopper = {
        let ctl_tx = ctl_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(drain_deadline.into()).await;
            ctl_tx.send_modify(|c| c.stop = true);
        })
    };
    let mut total = ConnStats::default();
    for t in tasks {
        match t.await {
            Ok(s) => total.merge(&s),
            Err(e) => total.error(format!("subscriber task: {e}")),
        }
    }
    let end = Instant::now();
    let cpu_end = cpu_sum(&cfg.pids).ok();
    let usage_end = util::Usage::now();
    stopper.abort();
    prog.abort();
    progress_done();

    let start = w.measure_start.unwrap_or(end);
    let window = end.saturating_duration_since(start).as_secs_f64().max(1e-6);
    let (generator_cores, machine_busy) = usage_end.since(&w.usage_at_start, window);
    let expected: u64 = w
        .measured_ok
        .iter()
        .map(|(img, n)| n * subs_per_image.get(img).copied().unwrap_or(0))
        .sum();
    let d = total.measured;
    let server_cpu = match (w.cpu_at_start, cpu_end) {
        (Some(a), Some(b)) if !cfg.pids.is_empty() => Some(b - a),
        _ => None,
    };
    let mut errors = w.errors.clone();
    errors.extend(total.errors.iter().cloned());
    let ok = total.lost == 0
        && total.duplicated == 0
        && total.reordered == 0
        && total.unexpected == 0
        && w.failed == 0
        && w.skipped == 0
        && d == expected
        && errors.is_empty();
    Ok(LoadReport {
        scenario: cfg.scenario.into(),
        target: cfg.target.name().into(),
        connections: cfg.connections,
        images: cfg.images,
        nodes: {
            let mut a = all_addrs.clone();
            a.sort();
            a.dedup();
            a.len()
        },
        writes_per_sec: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        writes_ok: w.ok,
        writes_failed: w.failed,
        writes_skipped: w.skipped,
        write_lag_p99_ms: w.lag.quantile(0.99) as f64 / 1000.0,
        write_lag_max_ms: w.lag.max as f64 / 1000.0,
        deliveries: d,
        expected_deliveries: expected,
        deliveries_per_sec: d as f64 / window,
        latency: total.hist.summary(),
        write_answer_p50_ms: w.rtt.quantile(0.5) as f64 / 1000.0,
        write_answer_p99_ms: w.rtt.quantile(0.99) as f64 / 1000.0,
        bytes_per_delivery: if d > 0 {
            total.measured_bytes as f64 / d as f64
        } else {
            0.0
        },
        frames_per_delivery: if d > 0 {
            total.measured_frames as f64 / d as f64
        } else {
            0.0
        },
        server_cpu_s: server_cpu,
        server_cpu_us_per_delivery: server_cpu.filter(|_| d > 0).map(|c| c * 1e6 / d as f64),
        server_cpu_cores: server_cpu.map(|c| c / window),
        generator_cpu_cores: generator_cores,
        machine_busy,
        other_cpu_cores: server_cpu.map(|c| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            (machine_busy * cpus - c / window - generator_cores).max(0.0)
        }),
        lost: total.lost,
        subscribers_short: total.short,
        duplicated: total.duplicated,
        reordered: total.reordered,
        unexpected: total.unexpected,
        errors,
        ok,
    })
}

pub struct IdleCfg {
    pub target: Target,
    pub addr: SocketAddr,
    pub tenant: String,
    pub connections: usize,
    pub images: usize,
    pub warmup_connections: usize,
    pub settle: Duration,
    pub window: Duration,
    pub pid: u32,
    pub concurrency: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IdleReport {
    pub scenario: String,
    pub target: String,
    pub connections: usize,
    pub images: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_connection: f64,
    pub kib_per_connection: f64,
    pub open_seconds: f64,
    pub connections_per_sec: f64,
    pub idle_window_s: f64,
    pub idle_cpu_cores: f64,
    pub errors: Vec<String>,
    pub ok: bool,
}

/// Idle subscribed connections: resident memory per connection and CPU
/// while nothing happens.
pub async fn idle(cfg: IdleCfg) -> Result<IdleReport> {
    util::check_nofile(cfg.connections + cfg.warmup_connections + 64)?;
    let tag = util::run_tag();
    let images: Vec<String> = (0..cfg.images.max(1))
        .map(|i| format!("bench-idle-{tag}-img-{i}"))
        .collect();
    let token = if cfg.target == Target::Imagechat {
        session(cfg.addr, &cfg.tenant).await?
    } else {
        Arc::from("")
    };
    let total = cfg.connections + cfg.warmup_connections;
    let spec = |i: usize| Spec {
        target: cfg.target,
        addr: cfg.addr,
        token: token.clone(),
        url_id: images[i % images.len()].clone(),
        idx: i,
        total,
    };
    let label = format!("idle {}", cfg.target.name());
    let (ctl_tx, ctl_rx) = watch::channel(Control::default());
    let hard = Instant::now() + Duration::from_secs(3600);
    let warm = open_all(
        (0..cfg.warmup_connections).map(spec).collect(),
        cfg.concurrency,
        &format!("{label} warm-up"),
    )
    .await?;
    let mut tasks: Vec<_> = warm
        .into_iter()
        .map(|s| tokio::spawn(s.run(ctl_rx.clone(), None, hard)))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = async {
        let before = proc_rss_kib(cfg.pid)?;
        let t0 = Instant::now();
        let subs = open_all(
            (cfg.warmup_connections..total).map(spec).collect(),
            cfg.concurrency,
            &label,
        )
        .await?;
        let opened = t0.elapsed().as_secs_f64();
        tasks.extend(
            subs.into_iter()
                .map(|s| tokio::spawn(s.run(ctl_rx.clone(), None, hard))),
        );
        progress(&format!("{label}: settling {:?}", cfg.settle));
        tokio::time::sleep(cfg.settle).await;
        let after = proc_rss_kib(cfg.pid)?;
        progress(&format!("{label}: idle for {:?}", cfg.window));
        let c0 = proc_cpu_seconds(cfg.pid)?;
        let w0 = Instant::now();
        tokio::time::sleep(cfg.window).await;
        let c1 = proc_cpu_seconds(cfg.pid)?;
        let win = w0.elapsed().as_secs_f64();
        progress_done();
        Ok::<_, util::Error>((before, after, opened, (c1 - c0) / win, win))
    }
    .await;
    let _ = ctl_tx.send(Control {
        finals: None,
        stop: true,
    });
    let mut st = ConnStats::default();
    for t in tasks {
        match t.await {
            Ok(s) => st.merge(&s),
            Err(e) => st.error(e.to_string()),
        }
    }
    let (before, after, opened, cpu, win) = result?;
    let per = (after as f64 - before as f64) * 1024.0 / cfg.connections.max(1) as f64;
    Ok(IdleReport {
        scenario: "idle".into(),
        target: cfg.target.name().into(),
        connections: cfg.connections,
        images: images.len(),
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_connection: per,
        kib_per_connection: per / 1024.0,
        open_seconds: opened,
        connections_per_sec: cfg.connections as f64 / opened.max(1e-6),
        idle_window_s: win,
        idle_cpu_cores: cpu,
        ok: st.errors.is_empty(),
        errors: st.errors,
    })
}

pub struct StormCfg {
    pub addr: SocketAddr,
    pub tenant: String,
    pub subscribers: usize,
    pub rate: f64,
    pub duration: Duration,
    pub drop_after: Duration,
    pub pool: usize,
    pub drain: Duration,
    pub pid: Option<u32>,
    pub concurrency: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StormReport {
    pub scenario: String,
    pub target: String,
    pub subscribers: usize,
    pub writes_per_sec: f64,
    pub writes_ok: u64,
    pub writes_failed: u64,
    pub reconnected: u64,
    pub caught_up: u64,
    pub catch_up_p50_ms: f64,
    pub catch_up_p99_ms: f64,
    /// Time from the drop until the last client had caught up.
    pub all_caught_up_ms: f64,
    pub server_cpu_s: Option<f64>,
    pub deliveries: u64,
    pub lost: u64,
    /// Subscribers that ended short of the last seq.
    pub subscribers_short: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub not_recovered: u64,
    pub errors: Vec<String>,
    pub ok: bool,
}

/// K subscribers of one image drop at once while writes continue, then
/// resubscribe with (epoch, seq) (imagechat only).
pub async fn storm(cfg: StormCfg) -> Result<StormReport> {
    if cfg.drop_after >= cfg.duration {
        return err(
            "--drop-after must be shorter than --duration (writes continue through the storm)",
        );
    }
    util::check_nofile(2 * cfg.subscribers + cfg.pool + 64)?;
    let tag = util::run_tag();
    let image = format!("bench-storm-{tag}");
    let token = session(cfg.addr, &cfg.tenant).await?;
    let specs: Vec<Spec> = (0..cfg.subscribers)
        .map(|i| Spec {
            target: Target::Imagechat,
            addr: cfg.addr,
            token: token.clone(),
            url_id: image.clone(),
            idx: i,
            total: cfg.subscribers,
        })
        .collect();
    let label = "reconnect-storm imagechat".to_string();
    let subs = open_all(specs, cfg.concurrency, &label).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ctl_tx, ctl_rx) = watch::channel(Control::default());
    let t0 = Instant::now();
    let drop_at = t0 + cfg.drop_after;
    let hard = t0 + cfg.duration + cfg.drain + MAX_LATE + WRITE_TIMEOUT + Duration::from_secs(30);
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|s| tokio::spawn(s.run(ctl_rx.clone(), Some(drop_at), hard)))
        .collect();
    let prog = spawn_progress(label);
    let cpu0 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    let w = run_writes(WriteSpec {
        target: Target::Imagechat,
        addr: cfg.addr,
        token,
        images: Arc::new(vec![image.clone()]),
        rate: cfg.rate,
        warmup: Duration::ZERO,
        duration: cfg.duration,
        pool: cfg.pool,
        pids: vec![],
    })
    .await;
    let w = match w {
        Ok(w) => w,
        Err(e) => {
            prog.abort();
            let _ = ctl_tx.send(Control {
                finals: None,
                stop: true,
            });
            return Err(e);
        }
    };
    let fin = w.finals.get(&image).copied().unwrap_or(0);
    let _ = ctl_tx.send(Control {
        finals: Some(Arc::new(HashMap::from([(image.clone(), fin)]))),
        stop: false,
    });
    let drain_deadline = Instant::now() + cfg.drain;
    let stopper = {
        let ctl_tx = ctl_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(drain_deadline.into()).await;
            ctl_tx.send_modify(|c| c.stop = true);
        })
    };
    let drop_us = instant_us(drop_at);
    let mut total = ConnStats::default();
    let mut catch = Hist::default();
    let mut caught = 0u64;
    for t in tasks {
        match t.await {
            Ok(s) => {
                if let Some(c) = s.caught_up_us {
                    caught += 1;
                    catch.record(c.saturating_sub(drop_us));
                }
                total.merge(&s);
            }
            Err(e) => total.error(format!("subscriber task: {e}")),
        }
    }
    let cpu1 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    stopper.abort();
    prog.abort();
    progress_done();
    let mut errors = w.errors.clone();
    errors.extend(total.errors.iter().cloned());
    let ok = total.lost == 0
        && total.duplicated == 0
        && total.reordered == 0
        && total.not_recovered == 0
        && caught == cfg.subscribers as u64
        && w.failed == 0
        && w.skipped == 0
        && errors.is_empty();
    Ok(StormReport {
        scenario: "reconnect-storm".into(),
        target: "imagechat".into(),
        subscribers: cfg.subscribers,
        writes_per_sec: cfg.rate,
        writes_ok: w.ok,
        writes_failed: w.failed + w.skipped,
        reconnected: total.reconnects,
        caught_up: caught,
        catch_up_p50_ms: catch.quantile(0.5) as f64 / 1000.0,
        catch_up_p99_ms: catch.quantile(0.99) as f64 / 1000.0,
        all_caught_up_ms: catch.max as f64 / 1000.0,
        server_cpu_s: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        deliveries: total.events,
        lost: total.lost,
        subscribers_short: total.short,
        duplicated: total.duplicated,
        reordered: total.reordered,
        not_recovered: total.not_recovered,
        errors,
        ok,
    })
}
