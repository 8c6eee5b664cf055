//! Human-readable tables.

use crate::scenario::{IdleReport, LoadReport, StormReport};

pub fn opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) => format!("{x:.prec$}"),
        None => "-".into(),
    }
}

/// Prints rows of (label, value) aligned.
pub fn kv(title: &str, rows: &[(String, String)]) {
    println!("{title}");
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("  {k:<w$}  {v}");
    }
}

pub fn load(r: &LoadReport) {
    let l = &r.latency;
    let rows = vec![
        ("target".into(), r.target.clone()),
        (
            "layout".into(),
            format!(
                "{} connections, {} image(s), {} node(s)",
                r.connections, r.images, r.nodes
            ),
        ),
        (
            "writes".into(),
            format!(
                "{} /s for {} s: {} ok, {} failed, {} skipped (> 5 s late)",
                r.writes_per_sec, r.duration_s, r.writes_ok, r.writes_failed, r.writes_skipped
            ),
        ),
        (
            "write sent late p99 / max".into(),
            format!("{:.2} / {:.2} ms", r.write_lag_p99_ms, r.write_lag_max_ms),
        ),
        (
            "deliveries (measured)".into(),
            format!("{} of {} expected", r.deliveries, r.expected_deliveries),
        ),
        (
            "deliveries per second".into(),
            format!("{:.0}", r.deliveries_per_sec),
        ),
        (
            "latency p50 / p99 / p99.9 / max".into(),
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            ),
        ),
        (
            "write answer p50 / p99".into(),
            format!(
                "{:.2} / {:.2} ms",
                r.write_answer_p50_ms, r.write_answer_p99_ms
            ),
        ),
        (
            "bytes per delivery".into(),
            format!("{:.1}", r.bytes_per_delivery),
        ),
        (
            "frames per delivery".into(),
            format!("{:.3}", r.frames_per_delivery),
        ),
        ("server CPU".into(), format!("{} s", opt(r.server_cpu_s, 2))),
        (
            "server CPU per delivery".into(),
            format!("{} µs", opt(r.server_cpu_us_per_delivery, 3)),
        ),
        ("server CPU (cores)".into(), opt(r.server_cpu_cores, 3)),
        (
            "generator CPU (cores)".into(),
            format!("{:.3}", r.generator_cpu_cores),
        ),
        (
            "machine busy (all CPUs)".into(),
            format!("{:.0} %", r.machine_busy * 100.0),
        ),
        ("other processes (cores)".into(), opt(r.other_cpu_cores, 3)),
        (
            "lost / duplicated / reordered / unexpected".into(),
            format!(
                "{} / {} / {} / {}",
                r.lost, r.duplicated, r.reordered, r.unexpected
            ),
        ),
        ("verdict".into(), verdict(r.ok, &r.errors)),
    ];
    kv(&format!("== {} ==", r.scenario), &rows);
}

pub fn idle(r: &IdleReport) {
    let rows = vec![
        ("target".into(), r.target.clone()),
        (
            "connections".into(),
            format!("{} over {} image(s)", r.connections, r.images),
        ),
        (
            "server RSS before / after".into(),
            format!("{} / {} KiB", r.rss_before_kib, r.rss_after_kib),
        ),
        (
            "RSS per connection".into(),
            format!(
                "{:.2} KiB ({:.0} bytes)",
                r.kib_per_connection, r.bytes_per_connection
            ),
        ),
        (
            "opened in".into(),
            format!("{:.2} s ({:.0} /s)", r.open_seconds, r.connections_per_sec),
        ),
        (
            "idle server CPU".into(),
            format!(
                "{:.3} % of a core over {:.1} s",
                r.idle_cpu_cores * 100.0,
                r.idle_window_s
            ),
        ),
        ("verdict".into(), verdict(r.ok, &r.errors)),
    ];
    kv("== idle ==", &rows);
}

pub fn storm(r: &StormReport) {
    let rows = vec![
        ("subscribers".into(), r.subscribers.to_string()),
        (
            "writes".into(),
            format!(
                "{} /s: {} ok, {} failed",
                r.writes_per_sec, r.writes_ok, r.writes_failed
            ),
        ),
        (
            "reconnected / caught up".into(),
            format!("{} / {}", r.reconnected, r.caught_up),
        ),
        (
            "catch-up p50 / p99".into(),
            format!("{:.1} / {:.1} ms", r.catch_up_p50_ms, r.catch_up_p99_ms),
        ),
        (
            "all caught up after".into(),
            format!("{:.1} ms", r.all_caught_up_ms),
        ),
        ("deliveries".into(), r.deliveries.to_string()),
        ("server CPU".into(), format!("{} s", opt(r.server_cpu_s, 2))),
        (
            "lost / duplicated / reordered / not recovered".into(),
            format!(
                "{} / {} / {} / {}",
                r.lost, r.duplicated, r.reordered, r.not_recovered
            ),
        ),
        ("verdict".into(), verdict(r.ok, &r.errors)),
    ];
    kv("== reconnect-storm ==", &rows);
}

fn verdict(ok: bool, errors: &[String]) -> String {
    if ok {
        "ok: every event arrived once, in order".into()
    } else if errors.is_empty() {
        "FAILED: events were lost, repeated or reordered".into()
    } else {
        format!("FAILED: {}", errors.join("; "))
    }
}

/// A table with one column per system and their ratio.
pub struct Table {
    pub title: String,
    pub rows: Vec<[String; 4]>,
    /// The headings of the two systems' columns and of their ratio.
    pub heads: [String; 3],
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table::with_heads(title, ["imagechat", "socketio", "socketio / imagechat"])
    }

    /// A table of two other systems: `heads` names the first column, the
    /// second, and their ratio (second ÷ first).
    pub fn with_heads(title: impl Into<String>, heads: [&str; 3]) -> Table {
        Table {
            title: title.into(),
            rows: Vec::new(),
            heads: heads.map(String::from),
        }
    }

    /// A row; the ratio is the second value ÷ the first when both are present.
    pub fn row(&mut self, label: &str, a: Option<f64>, b: Option<f64>, prec: usize) {
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.1}×", b / a),
            _ => "-".into(),
        };
        self.rows
            .push([label.into(), opt(a, prec), opt(b, prec), ratio]);
    }

    /// A row whose ratio is the second value as a percentage of the first.
    pub fn row_pct(&mut self, label: &str, a: Option<f64>, b: Option<f64>, prec: usize) {
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.1} %", b / a * 100.0),
            _ => "-".into(),
        };
        self.rows
            .push([label.into(), opt(a, prec), opt(b, prec), ratio]);
    }

    pub fn text_row(&mut self, label: &str, a: String, b: String) {
        self.rows.push([label.into(), a, b, String::new()]);
    }

    pub fn render(&self) -> String {
        let head = [
            "metric".to_string(),
            self.heads[0].clone(),
            self.heads[1].clone(),
            self.heads[2].clone(),
        ];
        let mut w = [0usize; 4];
        for r in std::iter::once(&head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |r: &[String; 4]| {
            format!(
                "| {:<a$} | {:>b$} | {:>c$} | {:>d$} |\n",
                r[0],
                r[1],
                r[2],
                r[3],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3]
            )
        };
        let mut s = format!("{}\n\n", self.title);
        s += &line(&head);
        s += &format!(
            "|{}|{}:|{}:|{}:|\n",
            "-".repeat(w[0] + 2),
            "-".repeat(w[1] + 1),
            "-".repeat(w[2] + 1),
            "-".repeat(w[3] + 1)
        );
        for r in &self.rows {
            s += &line(r);
        }
        s
    }
}
