//! `floor`: what the kernel charges for one `write` of a frame to a loopback
//! TCP socket on this machine, with as many sockets as the fan-out has
//! viewers. No server can deliver a frame for less, so it is the baseline the
//! fan-out figures are read against, measured in the same run.
//!
//! One thread writes a frame to each socket in turn (blocking sockets,
//! `TCP_NODELAY`, like a server's), a round every `1 / rate` seconds; the
//! generator's runtime reads every socket, like the fan-out's subscribers.
//! The writer's own CPU time (`CLOCK_THREAD_CPUTIME_ID`) per round, divided
//! by the sockets, is the cost of one write: on loopback it includes the
//! receiving side's TCP work, which the sending call performs, as it does
//! for a server.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::util::{err, progress, progress_done, Result};

#[derive(Debug, Clone, Serialize)]
pub struct FloorRow {
    pub frame_bytes: usize,
    /// Median over rounds of (writer CPU per round / sockets).
    pub cpu_us_per_write: f64,
    pub rounds: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    pub sockets: usize,
    pub rounds_per_sec: f64,
    pub rows: Vec<FloorRow>,
}

impl FloorReport {
    /// The cost of a write of about `bytes`, interpolated between rows.
    pub fn cost_at(&self, bytes: f64) -> Option<f64> {
        let r = &self.rows;
        let first = r.first()?;
        if r.len() == 1 || bytes <= first.frame_bytes as f64 {
            return Some(first.cpu_us_per_write);
        }
        for w in r.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if bytes <= b.frame_bytes as f64 {
                let f = (bytes - a.frame_bytes as f64) / (b.frame_bytes - a.frame_bytes) as f64;
                return Some(a.cpu_us_per_write + f * (b.cpu_us_per_write - a.cpu_us_per_write));
            }
        }
        r.last().map(|l| l.cpu_us_per_write)
    }
}

fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

pub async fn run(
    sockets: usize,
    sizes: &[usize],
    rounds_per_sec: f64,
    seconds: f64,
) -> Result<FloorReport> {
    if sockets == 0 || sizes.is_empty() || sizes.contains(&0) {
        return err("floor needs at least one socket and frame sizes above 0");
    }
    if !(rounds_per_sec > 0.0 && seconds > 0.0) {
        return err("floor needs a positive rate and duration");
    }
    crate::util::check_nofile(sockets * 2 + 64)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::with_capacity(sockets);
    for i in 0..sockets {
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let mut client = client?;
        let server = accepted?.0.into_std()?;
        server.set_nonblocking(false)?;
        server.set_nodelay(true)?;
        writers.push(server);
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Relaxed);
            }
        });
        if i % 100 == 99 {
            progress(&format!("floor: connected {}/{sockets}", i + 1));
        }
    }
    let rounds = ((rounds_per_sec * seconds).ceil() as usize).max(1);
    let sizes = sizes.to_vec();
    let every = Duration::from_secs_f64(1.0 / rounds_per_sec);
    let (writers, rows) = tokio::task::spawn_blocking(move || {
        let mut writers = writers;
        let mut rows = Vec::new();
        for &size in &sizes {
            let frame = vec![b'x'; size];
            let mut per_write = Vec::with_capacity(rounds);
            let mut next = Instant::now();
            // One round more than measured: the first warms the caches.
            for round in 0..=rounds {
                let t0 = thread_cpu_us();
                for w in writers.iter_mut() {
                    w.write_all(&frame)?;
                }
                if round > 0 {
                    per_write.push((thread_cpu_us() - t0) / writers.len() as f64);
                }
                next += every;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            per_write.sort_by(f64::total_cmp);
            rows.push(FloorRow {
                frame_bytes: size,
                cpu_us_per_write: per_write[per_write.len() / 2],
                rounds,
            });
        }
        std::io::Result::Ok((writers, rows))
    })
    .await
    .map_err(|e| format!("the floor writer failed: {e}"))??;
    // Every byte written reached a reader: nothing was measured half-done.
    let total: u64 = rows
        .iter()
        .map(|r| (r.frame_bytes * sockets * (rounds + 1)) as u64)
        .sum();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Relaxed) < total {
        if Instant::now() > deadline {
            return err(format!(
                "floor: readers got {} of {total} bytes",
                received.load(Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(writers);
    progress_done();
    Ok(FloorReport {
        sockets,
        rounds_per_sec,
        rows,
    })
}

/// The floor as a Markdown table.
pub fn table(r: &FloorReport) -> String {
    let mut t = format!(
        "### floor: one write() to each of {} loopback sockets, {} rounds/s (no server)\n\n\
         | frame bytes | CPU per write (µs, median of {} rounds) |\n|---:|---:|\n",
        r.sockets,
        r.rounds_per_sec,
        r.rows.first().map_or(0, |x| x.rounds)
    );
    for row in &r.rows {
        t.push_str(&format!(
            "| {} | {:.2} |\n",
            row.frame_bytes, row.cpu_us_per_write
        ));
    }
    t
}

pub fn print(r: &FloorReport) {
    println!("\n{}", table(r));
}
