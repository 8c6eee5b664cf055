//! `write`: U users (anonymous sessions) creating chats at W writes per
//! second in total, spread over I images, with no viewers: the cost and the
//! latency of the write path alone. A ramp steps W up and finds the highest
//! rate the server sustains (every write accepted, answer p99 within a limit).
//!
//! Open loop: each write leaves at its scheduled time whether or not earlier
//! ones were answered. It goes out on one of its user's keep-alive
//! connections, as a browser would send it: an idle one if there is one, a
//! new one otherwise, at most `conns_per_user` at once (a browser's six per
//! origin); beyond that it waits for one, and that wait counts in its
//! latency. Latency is from the moment the write was due to leave (as the
//! scheduler released it) until its answer was read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::http::HttpConn;
use crate::scenario::{session, TEXT};
use crate::stats::Hist;
use crate::util::{self, err, now_us, proc_cpu_seconds, progress, progress_done, Result};

/// A write without an answer this long after it was released fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct WriteCfg {
    pub addr: SocketAddr,
    pub tenant: String,
    pub users: usize,
    pub images: usize,
    pub conns_per_user: usize,
    pub pid: Option<u32>,
    /// Answer p99 a step may have and still count as sustained (ms).
    pub p99_limit_ms: f64,
    /// A label for progress lines.
    pub label: String,
}

/// One rate, measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepReport {
    pub rate: f64,
    pub duration_s: f64,
    /// Writes scheduled in the measured window.
    pub offered: u64,
    /// Answered 201.
    pub accepted: u64,
    /// Answered anything else.
    pub refused: u64,
    /// No answer: connection errors and timeouts.
    pub failed: u64,
    /// From release by the scheduler to the answer read (includes waiting
    /// for a pooled connection).
    pub answer_p50_ms: f64,
    pub answer_p99_ms: f64,
    pub answer_p999_ms: f64,
    pub answer_max_ms: f64,
    /// From the request written to the answer read (the server's share).
    pub service_p50_ms: f64,
    pub service_p99_ms: f64,
    /// How late the scheduler released writes (the generator's own lag).
    pub released_late_p99_ms: f64,
    /// Connections opened during the step (all users).
    pub connections_opened: u64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_write: Option<f64>,
    pub server_cpu_cores: Option<f64>,
    pub generator_cpu_cores: f64,
    pub machine_busy: f64,
    /// Every write accepted and answer p99 within the limit.
    pub sustained: bool,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WriteReport {
    pub scenario: String,
    pub users: usize,
    pub images: usize,
    pub conns_per_user: usize,
    pub p99_limit_ms: f64,
    /// The rates of the ramp (empty: one fixed rate only).
    pub ramp: Vec<f64>,
    pub steps: Vec<StepReport>,
    /// The highest rate of the ramp below the first step not sustained.
    pub sustained_rate: Option<f64>,
    pub ok: bool,
}

/// One user's keep-alive connections.
struct User {
    token: Arc<str>,
    idle: Mutex<Vec<HttpConn>>,
    slots: Semaphore,
}

struct Ctx {
    addr: SocketAddr,
    users: Vec<User>,
    images: Vec<String>,
    opened: AtomicU64,
}

enum Outcome {
    Accepted { answer_us: u64, service_us: u64 },
    Refused(String),
    Failed(String),
}

struct Done {
    measured: bool,
    at: Instant,
    outcome: Outcome,
}

fn take_idle(u: &User) -> Option<HttpConn> {
    u.idle.lock().map(|mut v| v.pop()).unwrap_or(None)
}

fn give_back(u: &User, c: HttpConn) {
    if let Ok(mut v) = u.idle.lock() {
        v.push(c);
    }
}

async fn one_write(ctx: Arc<Ctx>, user: usize, body: Vec<u8>, released: Instant) -> Outcome {
    let u = &ctx.users[user];
    let work = async {
        let _slot = u
            .slots
            .acquire()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut conn = match take_idle(u) {
            Some(c) => c,
            None => {
                ctx.opened.fetch_add(1, Ordering::Relaxed);
                HttpConn::connect(ctx.addr).await?
            }
        };
        let sent = Instant::now();
        let r = conn
            .request("POST", "/api/v1/chats", Some(&u.token), Some(&body))
            .await?;
        let service = sent.elapsed();
        give_back(u, conn);
        Ok::<_, std::io::Error>((r, service))
    };
    match tokio::time::timeout(WRITE_TIMEOUT, work).await {
        Err(_) => Outcome::Failed(format!("no answer within {} s", WRITE_TIMEOUT.as_secs())),
        Ok(Err(e)) => Outcome::Failed(format!("write: {e}")),
        Ok(Ok((r, service))) if r.status == 201 => Outcome::Accepted {
            answer_us: released.elapsed().as_micros() as u64,
            service_us: service.as_micros() as u64,
        },
        Ok(Ok((r, _))) => Outcome::Refused(format!(
            "write answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        )),
    }
}

/// Sessions for every user; connections are opened on first use.
async fn setup(cfg: &WriteCfg) -> Result<Arc<Ctx>> {
    if cfg.users == 0 || cfg.images == 0 || cfg.conns_per_user == 0 {
        return err("users, images and connections per user must be at least 1");
    }
    util::check_nofile(cfg.users * cfg.conns_per_user + 64)?;
    let mut users = Vec::with_capacity(cfg.users);
    for i in 0..cfg.users {
        progress(&format!("{}: sessions {}/{}", cfg.label, i, cfg.users));
        users.push(User {
            token: session(cfg.addr, &cfg.tenant).await?,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(cfg.conns_per_user),
        });
    }
    progress_done();
    let tag = util::run_tag();
    Ok(Arc::new(Ctx {
        addr: cfg.addr,
        users,
        images: (0..cfg.images)
            .map(|i| format!("bench-write-{tag}-img-{i}"))
            .collect(),
        opened: AtomicU64::new(0),
    }))
}

/// Writes at `rate` for `warmup` (not counted) then `duration` (measured),
/// and waits for every answer.
async fn step(
    ctx: &Arc<Ctx>,
    cfg: &WriteCfg,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<StepReport> {
    if rate <= 0.0 || duration.is_zero() {
        return err("a step needs a positive rate and duration");
    }
    let warm_n = (rate * warmup.as_secs_f64()).round() as u64;
    let meas_n = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let total = warm_n + meas_n;
    let opened0 = ctx.opened.load(Ordering::Relaxed);
    let mut rng = util::Rng::new(rate.to_bits());
    let mut lag = Hist::default();
    let mut handles = Vec::with_capacity(total as usize);
    let mut measure_start = None;
    let mut cpu0 = None;
    let mut usage0 = util::Usage::now();
    let t0 = Instant::now();
    let mut last_print = t0;
    for n in 0..total {
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if n == warm_n {
            cpu0 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
            usage0 = util::Usage::now();
            measure_start = Some(Instant::now());
        }
        let released = Instant::now();
        let measured = n >= warm_n;
        if measured {
            lag.record(released.saturating_duration_since(due).as_micros() as u64);
        }
        let image = &ctx.images[rng.below(ctx.images.len())];
        let body = format!(
            r#"{{"urlId":"{image}","x":33.3333,"y":66.6667,"text":"{TEXT}","broadcastId":"{}{}-{n}"}}"#,
            if measured { 'm' } else { 'w' },
            now_us(),
        )
        .into_bytes();
        let user = (n as usize) % ctx.users.len();
        let c = ctx.clone();
        handles.push(tokio::spawn(async move {
            let outcome = one_write(c, user, body, released).await;
            Done {
                measured,
                at: Instant::now(),
                outcome,
            }
        }));
        if released.duration_since(last_print) > Duration::from_millis(500) {
            last_print = released;
            progress(&format!(
                "{}: {rate} writes/s, {:>5.1} s, {n}/{total} sent",
                cfg.label,
                t0.elapsed().as_secs_f64()
            ));
        }
    }
    let mut answer = Hist::default();
    let mut service = Hist::default();
    let mut r = StepReport {
        rate,
        duration_s: duration.as_secs_f64(),
        offered: meas_n,
        ..StepReport::default()
    };
    let mut last = measure_start.unwrap_or_else(Instant::now);
    for h in handles {
        let d = match h.await {
            Ok(d) => d,
            Err(e) => {
                r.failed += 1;
                if r.errors.len() < 5 {
                    r.errors.push(format!("write task: {e}"));
                }
                continue;
            }
        };
        if !d.measured {
            continue;
        }
        last = last.max(d.at);
        match d.outcome {
            Outcome::Accepted {
                answer_us,
                service_us,
            } => {
                r.accepted += 1;
                answer.record(answer_us);
                service.record(service_us);
            }
            Outcome::Refused(e) => {
                r.refused += 1;
                if r.errors.len() < 5 {
                    r.errors.push(e);
                }
            }
            Outcome::Failed(e) => {
                r.failed += 1;
                if r.errors.len() < 5 {
                    r.errors.push(e);
                }
            }
        }
    }
    let cpu1 = cfg.pid.and_then(|p| proc_cpu_seconds(p).ok());
    let usage1 = util::Usage::now();
    progress_done();
    let start = measure_start.unwrap_or(t0);
    let window = last
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-6);
    let (gen, busy) = usage1.since(&usage0, window);
    let ms = |us: u64| us as f64 / 1000.0;
    r.answer_p50_ms = ms(answer.quantile(0.5));
    r.answer_p99_ms = ms(answer.quantile(0.99));
    r.answer_p999_ms = ms(answer.quantile(0.999));
    r.answer_max_ms = ms(answer.max);
    r.service_p50_ms = ms(service.quantile(0.5));
    r.service_p99_ms = ms(service.quantile(0.99));
    r.released_late_p99_ms = ms(lag.quantile(0.99));
    r.connections_opened = ctx.opened.load(Ordering::Relaxed) - opened0;
    r.server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    r.server_cpu_us_per_write = r
        .server_cpu_s
        .filter(|_| r.accepted > 0)
        .map(|c| c * 1e6 / r.accepted as f64);
    r.server_cpu_cores = r.server_cpu_s.map(|c| c / window);
    r.generator_cpu_cores = gen;
    r.machine_busy = busy;
    r.sustained = r.accepted == r.offered
        && r.refused == 0
        && r.failed == 0
        && r.answer_p99_ms <= cfg.p99_limit_ms;
    Ok(r)
}

/// One fixed rate (`ramp` empty), or the ramp: each rate for `warmup` +
/// `duration`, stopping after the first one not sustained.
pub async fn run(
    cfg: &WriteCfg,
    fixed: Option<(f64, Duration, Duration)>,
    ramp: &[f64],
    ramp_warmup: Duration,
    ramp_step: Duration,
) -> Result<WriteReport> {
    let ctx = setup(cfg).await?;
    let mut rep = WriteReport {
        scenario: "write".into(),
        users: cfg.users,
        images: cfg.images,
        conns_per_user: cfg.conns_per_user,
        p99_limit_ms: cfg.p99_limit_ms,
        ramp: ramp.to_vec(),
        ok: true,
        ..WriteReport::default()
    };
    if let Some((rate, warmup, duration)) = fixed {
        let s = step(&ctx, cfg, rate, warmup, duration).await?;
        eprintln!("   {}", summary(&s));
        rep.ok &= s.errors.is_empty() && s.accepted == s.offered;
        rep.steps.push(s);
    }
    let mut sustained = None;
    for &rate in ramp {
        let s = step(&ctx, cfg, rate, ramp_warmup, ramp_step).await?;
        eprintln!("   ramp {}", summary(&s));
        let ok = s.sustained;
        rep.steps.push(s);
        if !ok {
            break;
        }
        sustained = Some(rate);
        // Let the server settle (a checkpoint) between steps.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rep.sustained_rate = sustained;
    Ok(rep)
}

pub fn summary(s: &StepReport) -> String {
    format!(
        "{} w/s: {}/{} accepted, answer p50 {:.2} / p99 {:.2} ms, {} µs CPU/write, {}",
        s.rate,
        s.accepted,
        s.offered,
        s.answer_p50_ms,
        s.answer_p99_ms,
        crate::report::opt(s.server_cpu_us_per_write, 1),
        if s.sustained {
            "sustained"
        } else {
            "not sustained"
        }
    )
}

/// Prints a report as a table, one row per step.
pub fn print(r: &WriteReport) {
    println!(
        "== write: {} users, {} images, up to {} connections per user; sustained = every write accepted and answer p99 ≤ {} ms ==\n",
        r.users, r.images, r.conns_per_user, r.p99_limit_ms
    );
    println!("| writes/s | accepted / offered | answer p50 / p99 / max (ms) | service p50 / p99 (ms) | released late p99 (ms) | server CPU per write (µs) | server CPU (cores) | generator CPU (cores) | connections opened | sustained |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in &r.steps {
        println!(
            "| {} | {} / {} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {} | {} | {:.2} | {} | {} |",
            s.rate,
            s.accepted,
            s.offered,
            s.answer_p50_ms,
            s.answer_p99_ms,
            s.answer_max_ms,
            s.service_p50_ms,
            s.service_p99_ms,
            s.released_late_p99_ms,
            crate::report::opt(s.server_cpu_us_per_write, 1),
            crate::report::opt(s.server_cpu_cores, 2),
            s.generator_cpu_cores,
            s.connections_opened,
            if s.sustained { "yes" } else { "no" }
        );
    }
    println!();
    if !r.ramp.is_empty() {
        match r.sustained_rate {
            Some(w) => println!("highest rate of the ramp sustained: {w} writes/s\n"),
            None => println!("highest rate of the ramp sustained: none\n"),
        }
    }
    for s in &r.steps {
        for e in &s.errors {
            println!("{} w/s: {e}", s.rate);
        }
    }
}
