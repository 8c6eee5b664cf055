//! Small shared pieces: clocks, a cheap random generator, resource limits,
//! `/proc` readings and dialing from several loopback source addresses.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::Instant;

use tokio::net::{TcpSocket, TcpStream};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an error from text.
pub fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(msg.into().into())
}

static START: OnceLock<Instant> = OnceLock::new();

/// The process-wide time origin every timestamp is measured from.
pub fn start() -> Instant {
    *START.get_or_init(Instant::now)
}

/// Microseconds since [`start`].
pub fn now_us() -> u64 {
    start().elapsed().as_micros() as u64
}

/// Microseconds between [`start`] and `t`.
pub fn us_at(t: Instant) -> u64 {
    t.saturating_duration_since(start()).as_micros() as u64
}

/// xorshift64*: good enough for picking images and masking keys.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Raises the soft open-file limit to the hard limit; returns the new limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    let cur = lim.rlim_cur as u64;
    cur
}

/// Fails early when `need` descriptors will not fit under the limit.
pub fn check_nofile(need: usize) -> Result<()> {
    let have = raise_nofile();
    if (have as usize) < need {
        return err(format!(
            "this run needs about {need} open files but the limit is {have}; raise the hard limit (ulimit -Hn)"
        ));
    }
    Ok(())
}

/// Connections per loopback source address before moving to the next one
/// (the ephemeral port range holds about 28k ports).
pub const PER_SOURCE: usize = 20_000;

/// A server address parsed from `http://127.0.0.x:PORT[/...]`. Only
/// loopback addresses are accepted: load never leaves the machine.
pub fn parse_url(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = if let Some(port) = hostport.strip_prefix("localhost:") {
        let port = port
            .parse::<u16>()
            .map_err(|e| format!("{url}: bad port: {e}"))?;
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
    } else {
        hostport
            .parse()
            .map_err(|e| format!("{url}: expected http://IP:PORT ({e})"))?
    };
    match addr {
        SocketAddr::V4(a) if a.ip().octets()[0] == 127 => Ok(addr),
        _ => err(format!(
            "{url}: load is only sent to 127.0.0.x addresses on this machine"
        )),
    }
}

/// Opens a TCP connection; connection number `idx` of `total` uses source
/// address 127.0.0.(1 + idx / PER_SOURCE) when `total` needs more than one.
pub async fn dial(target: SocketAddr, idx: usize, total: usize) -> io::Result<TcpStream> {
    let s = if total > PER_SOURCE {
        let n = (1 + idx / PER_SOURCE).min(254) as u8;
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(127, 0, 0, n),
            0,
        )))?;
        sock.connect(target).await?
    } else {
        TcpStream::connect(target).await?
    };
    s.set_nodelay(true)?;
    Ok(s)
}

/// user + system CPU time of a process, in seconds.
pub fn proc_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unreadable /proc/PID/stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime is field 14 overall (index 11 here).
    let ut: f64 = f.get(11).ok_or("short stat")?.parse()?;
    let st: f64 = f.get(12).ok_or("short stat")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok((ut + st) / hz)
}

/// Resident memory of a process, in KiB.
pub fn proc_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let n = v.trim().trim_end_matches("kB").trim();
            return Ok(n.parse()?);
        }
    }
    err("no VmRSS in /proc/PID/status")
}

/// A progress line on stderr, rewritten in place.
pub fn progress(line: &str) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r\x1b[2K{line}");
    let _ = e.flush();
}

/// Ends the progress line.
pub fn progress_done() {
    eprintln!();
}

/// A unique suffix so repeated runs against one server use fresh images.
pub fn run_tag() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{}-{}", ms % 100_000_000, std::process::id() % 10_000)
}

/// CPU time (user + system, seconds) of this generator process.
pub fn self_cpu_seconds() -> Result<f64> {
    proc_cpu_seconds(std::process::id())
}

/// Busy and total time of the whole machine, in clock ticks, from the
/// first line of `/proc/stat` (busy = everything but idle and iowait).
pub fn machine_ticks() -> Result<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let line = s.lines().next().ok_or("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return err("short /proc/stat");
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Ok((total - idle, total))
}

/// Readings taken at the start and end of a measured window.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub own_cpu: f64,
    pub busy: u64,
    pub total: u64,
}

impl Usage {
    pub fn now() -> Usage {
        let (busy, total) = machine_ticks().unwrap_or((0, 0));
        Usage {
            own_cpu: self_cpu_seconds().unwrap_or(0.0),
            busy,
            total,
        }
    }

    /// (generator CPU in cores, machine busy fraction) between two readings.
    pub fn since(&self, start: &Usage, seconds: f64) -> (f64, f64) {
        let own = (self.own_cpu - start.own_cpu) / seconds.max(1e-6);
        let dt = self.total.saturating_sub(start.total);
        let busy = if dt == 0 {
            0.0
        } else {
            self.busy.saturating_sub(start.busy) as f64 / dt as f64
        };
        (own, busy)
    }
}

/// Stops a child process: SIGTERM, then SIGKILL when it has not exited
/// within `grace`. Returns how it exited and whether it needed SIGKILL.
pub fn stop_child(
    child: &mut std::process::Child,
    grace: std::time::Duration,
) -> (Option<std::process::ExitStatus>, bool) {
    if let Ok(Some(st)) = child.try_wait() {
        return (Some(st), false);
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let t = Instant::now();
    while t.elapsed() < grace {
        if let Ok(Some(st)) = child.try_wait() {
            return (Some(st), false);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    (child.wait().ok(), true)
}
