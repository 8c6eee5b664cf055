//! The `upload` scenario: how many images of a given size a node stores per
//! second, and the server CPU each costs, against the floor measured in the
//! same run: decoding the same file once in this process (the one piece of
//! work a server that really checks an image cannot skip).
//!
//! The image is a PNG of random pixels (which do not compress), so its size
//! is what was asked for. Every upload must be answered 201 with the
//! image's size, or the run fails.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::median;
use crate::util::{err, proc_cpu_seconds, self_cpu_seconds, Result, Rng};

pub struct UploadCfg {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub tenant: String,
    /// Pixels of the test image; width × height × 3 ≈ its bytes.
    pub width: u32,
    pub height: u32,
    pub count: usize,
    pub concurrency: usize,
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct Round {
    pub uploads_per_second: f64,
    pub server_cpu_ms_per_upload: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct UploadReport {
    pub png_bytes: usize,
    pub width: u32,
    pub height: u32,
    pub concurrency: usize,
    pub rounds: Vec<Round>,
    /// Median CPU of one decode of the same file in this process.
    pub decode_floor_ms: f64,
    pub median_uploads_per_second: f64,
    pub median_server_cpu_ms_per_upload: Option<f64>,
    /// Server CPU per upload over the decode floor.
    pub ratio_to_decode: Option<f64>,
    pub ok: bool,
}

/// A PNG of random pixels.
fn noise_png(w: u32, h: u32) -> Result<Vec<u8>> {
    let mut rng = Rng::new(7);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        let v = rng.next_u64();
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// CPU seconds of one decode of `png` in this process: the median of
/// `rounds` batches of `n` decodes (a batch, because the process clock
/// ticks in hundredths of a second).
fn decode_floor(png: &[u8], n: usize, rounds: usize) -> Result<f64> {
    let mut each = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let before = self_cpu_seconds()?;
        for _ in 0..n.max(1) {
            let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)?;
            std::hint::black_box(img);
        }
        each.push((self_cpu_seconds()? - before) / n.max(1) as f64);
    }
    Ok(median(&each))
}

/// One request on a fresh connection; the status and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("an answer without a header end")?;
    let status = std::str::from_utf8(&raw[..end])?
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("an answer without a status")?;
    Ok((status, raw[end + 4..].to_vec()))
}

pub async fn run(cfg: &UploadCfg) -> Result<UploadReport> {
    let png = noise_png(cfg.width, cfg.height)?;
    let floor = tokio::task::block_in_place(|| decode_floor(&png, cfg.count, cfg.rounds))?;
    let (status, body) = request(
        cfg.addr,
        "POST",
        "/api/v1/sessions",
        &[("Content-Type", "application/json")],
        format!("{{\"tenantId\":\"{}\"}}", cfg.tenant).as_bytes(),
    )
    .await?;
    if status != 200 {
        return err(format!(
            "no session ({status}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let token = v["token"].as_str().ok_or("a session without a token")?;
    let auth = format!("Bearer {token}");
    let png = std::sync::Arc::new(png);
    let mut rounds = Vec::new();
    let mut ok = true;
    // One upload first, unmeasured: the storage directory and caches exist.
    let (st, b) = request(
        cfg.addr,
        "POST",
        "/api/v1/uploads",
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        &png,
    )
    .await?;
    if st != 201 {
        return err(format!(
            "upload refused ({st}): {}",
            String::from_utf8_lossy(&b)
        ));
    }
    for _ in 0..cfg.rounds {
        let cpu0 = cfg.pid.map(proc_cpu_seconds).transpose()?;
        let started = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..cfg.concurrency.max(1) {
            let (next, png, auth, addr, count) =
                (next.clone(), png.clone(), auth.clone(), cfg.addr, cfg.count);
            let (w, h) = (cfg.width, cfg.height);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut failures = 0usize;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                    let t = Instant::now();
                    match request(
                        addr,
                        "POST",
                        "/api/v1/uploads",
                        &[("Authorization", &auth), ("Content-Type", "image/png")],
                        &png,
                    )
                    .await
                    {
                        Ok((201, body)) => {
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            if v["upload"]["width"] != w || v["upload"]["height"] != h {
                                failures += 1;
                            }
                        }
                        _ => failures += 1,
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                (lat, failures)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            let (l, f) = t.await?;
            lat.extend(l);
            if f > 0 {
                ok = false;
                eprintln!("{f} uploads failed or came back with the wrong size");
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = match (cfg.pid, cpu0) {
            (Some(pid), Some(c0)) => {
                Some((proc_cpu_seconds(pid)? - c0) * 1000.0 / cfg.count as f64)
            }
            _ => None,
        };
        lat.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        rounds.push(Round {
            uploads_per_second: cfg.count as f64 / secs,
            server_cpu_ms_per_upload: cpu,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rate = median(
        &rounds
            .iter()
            .map(|r| r.uploads_per_second)
            .collect::<Vec<_>>(),
    );
    let cpu = cfg.pid.map(|_| {
        median(
            &rounds
                .iter()
                .filter_map(|r| r.server_cpu_ms_per_upload)
                .collect::<Vec<_>>(),
        )
    });
    Ok(UploadReport {
        png_bytes: png.len(),
        width: cfg.width,
        height: cfg.height,
        concurrency: cfg.concurrency,
        decode_floor_ms: floor * 1000.0,
        median_uploads_per_second: rate,
        median_server_cpu_ms_per_upload: cpu,
        ratio_to_decode: cpu.map(|c| c / (floor * 1000.0).max(1e-9)),
        rounds,
        ok,
    })
}

pub fn print(r: &UploadReport) {
    println!(
        "upload: a {}×{} PNG of {} bytes, {} at once, {} rounds",
        r.width,
        r.height,
        r.png_bytes,
        r.concurrency,
        r.rounds.len()
    );
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "  round {}: {:.1} uploads/s, server CPU {} ms/upload, answer p50 {:.0} ms, p99 {:.0} ms",
            i + 1,
            x.uploads_per_second,
            x.server_cpu_ms_per_upload
                .map(|c| format!("{c:.1}"))
                .unwrap_or_else(|| "?".into()),
            x.p50_ms,
            x.p99_ms
        );
    }
    println!(
        "  median: {:.1} uploads/s; server CPU {} ms/upload; one decode here {:.1} ms; ratio {}",
        r.median_uploads_per_second,
        r.median_server_cpu_ms_per_upload
            .map(|c| format!("{c:.1}"))
            .unwrap_or_else(|| "?".into()),
        r.decode_floor_ms,
        r.ratio_to_decode
            .map(|x| format!("{x:.2}×"))
            .unwrap_or_else(|| "?".into())
    );
    println!("  {}", if r.ok { "ok" } else { "FAILED" });
}
