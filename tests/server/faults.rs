//! Storage faults: a SQLite file system that fills up, or whose database
//! files turn read-only under a live node; PostgreSQL stopped and started.
//! Writes fail with a clear 503 and change nothing, nothing is broadcast
//! that was not stored, open WebSockets stay open, and service resumes by
//! itself once the disk is usable again, with seqs still gap-free.
//!
//! Needs to mount a small tmpfs and a loop-mounted ext4 image, and to set
//! ext4's immutable attribute (root, `mkfs.ext4` and `chattr`, as in CI);
//! it fails, never skips, when it cannot.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{temp_dir, Server};

const URL: &str = "disk";

/// A node on `db` with a chat written and seen by a subscribed viewer: the
/// node, a writer's token and the viewer.
async fn node_with_a_viewer(db: &str) -> (Server, String, crate::common::Ws) {
    let s = Server::start_on(db, |c| c.write_rate_per_minute = 0).await;
    let (t, _) = s.tenant("write").await;
    let tok = s.token(&t).await;
    let mut viewer = s.ws(&tok).await;
    viewer.subscribe(URL, None).await;
    assert_eq!(create(&s, &tok, "before").await.status, 201);
    assert_eq!(viewer.event(URL).await["seq"], 1);
    (s, tok, viewer)
}

async fn create(s: &Server, tok: &str, text: &str) -> crate::common::Resp {
    s.authed(
        "POST",
        "/api/v1/chats",
        Some(json!({"urlId": URL, "x": 1, "y": 1, "text": text})),
        tok,
    )
    .await
}

/// Writes until one is accepted (for up to `tries` × 100 ms); its seq.
async fn first_accepted_seq(s: &Server, tok: &str, tries: usize) -> Option<u64> {
    for _ in 0..tries {
        let r = create(s, tok, "again").await;
        if r.status == 201 {
            return r.json()["seq"].as_u64();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(size: &str) -> Mount {
        let dir = temp_dir().join("fs");
        std::fs::create_dir_all(&dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root: this test must run where it can"
        );
        Mount(dir)
    }
}

impl Mount {
    /// A fresh ext4 file system of `size` in an image file, loop-mounted:
    /// one that has the immutable attribute.
    fn ext4(size: &str) -> Mount {
        let base = temp_dir();
        let image = base.join("fs.img");
        let dir = base.join("fs");
        std::fs::create_dir_all(&dir).expect("mount point");
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            let ok = Command::new(cmd)
                .args(args)
                .status()
                .unwrap_or_else(|e| panic!("{cmd} is required: {e}"));
            assert!(ok.success(), "{cmd} {args:?} failed (root is required)");
        };
        run(
            "truncate",
            &["-s".as_ref(), size.as_ref(), image.as_os_str()],
        );
        run("mkfs.ext4", &["-q".as_ref(), image.as_os_str()]);
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                dir.as_os_str(),
            ],
        );
        Mount(dir)
    }

    /// Sets (`+i`) or clears (`-i`) the immutable attribute of the files
    /// in the mount whose names end with one of `suffixes`: writes through
    /// descriptors already open fail too.
    fn chattr(&self, flag: &str, suffixes: &[&str]) {
        for entry in std::fs::read_dir(&self.0).expect("read mount") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy().into_owned();
            if path.is_file() && suffixes.iter().any(|s| name.ends_with(s)) {
                let ok = Command::new("chattr")
                    .arg(flag)
                    .arg(&path)
                    .status()
                    .expect("chattr is required");
                assert!(ok.success(), "chattr {flag} {}", path.display());
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.chattr_quietly();
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

impl Mount {
    fn chattr_quietly(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = Command::new("chattr").arg("-i").arg(e.path()).status();
            }
        }
    }
}

#[tokio::test]
async fn a_read_only_database_fails_writes_with_503_keeps_reads_and_resumes_by_itself() {
    let fs = Mount::ext4("32M");
    let db = format!("sqlite://{}/db.sqlite", fs.0.display());
    let (s, tok, mut viewer) = node_with_a_viewer(&db).await;
    // The database and its log. Not the WAL index (`-shm`): SQLite maps
    // it into memory, and a store into a mapped page of an immutable or
    // read-only file is a SIGBUS from the kernel, not an error SQLite sees.
    let files = [".sqlite", ".sqlite-wal"];
    fs.chattr("+i", &files);
    for i in 0..10 {
        let r = create(&s, &tok, &format!("refused {i}")).await;
        assert_eq!(
            r.status,
            503,
            "write {i} on a read-only database: {}",
            r.text()
        );
        assert_eq!(r.json()["error"]["code"], "unavailable");
        assert!(r.header("retry-after").is_some());
    }
    // Not ready (a load balancer moves writers elsewhere), yet reads still
    // work; nothing was stored or broadcast; the socket is open.
    let ready = s.http("GET", "/readyz", None, &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["store"], "unavailable");
    assert_eq!(s.snapshot(&tok, URL).await["seq"], 1);
    viewer.quiet(URL, Duration::from_millis(300)).await;
    viewer.send(json!({"type": "ping"})).await;
    assert_eq!(
        viewer.recv_where(|m| m["type"] == "pong").await["type"],
        "pong"
    );
    fs.chattr("-i", &files);
    let mut ready = 0;
    for _ in 0..50 {
        ready = s.http("GET", "/readyz", None, &[]).await.status;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200, "ready again by itself, before any write");
    assert_eq!(
        first_accepted_seq(&s, &tok, 50).await,
        Some(2),
        "writable again: the next write takes the next seq"
    );
    assert_eq!(viewer.event(URL).await["seq"], 2);
    s.stop().await;
}

#[tokio::test]
async fn a_full_disk_fails_writes_with_503_and_service_resumes_by_itself() {
    let fs = Mount::tmpfs("4m");
    let db = format!("sqlite://{}/db.sqlite", fs.0.display());
    let (s, tok, mut viewer) = node_with_a_viewer(&db).await;

    // Fill the file system to the last byte.
    let filler = fs.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = 0;
    for _ in 0..20 {
        // Big texts, so the write needs pages the disk no longer has.
        let r = s
            .authed(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": URL, "x": 1, "y": 1, "text": "x".repeat(2000)})),
                &tok,
            )
            .await;
        assert!(matches!(r.status, 201 | 503), "{}", r.text());
        if r.status == 503 {
            assert_eq!(r.json()["error"]["code"], "unavailable");
            assert!(r.header("retry-after").is_some());
            refused += 1;
        }
    }
    assert!(refused > 0, "a full disk refuses writes");
    let stored = s.snapshot(&tok, URL).await["seq"].as_u64().expect("seq");
    // The viewer got exactly what was stored, and its socket is open.
    let mut seen = 1;
    while seen < stored {
        seen = viewer.event(URL).await["seq"].as_u64().expect("seq");
    }
    viewer.quiet(URL, Duration::from_millis(300)).await;
    viewer.send(json!({"type": "ping"})).await;
    assert_eq!(
        viewer.recv_where(|m| m["type"] == "pong").await["type"],
        "pong"
    );

    // Space again: writes resume by themselves, gap-free.
    std::fs::remove_file(&filler).expect("remove filler");
    let resumed = first_accepted_seq(&s, &tok, 50).await;
    assert_eq!(
        resumed,
        Some(stored + 1),
        "the next write takes the next seq"
    );
    assert_eq!(viewer.event(URL).await["seq"].as_u64(), Some(stored + 1));

    s.stop().await;
}

/// A PostgreSQL server of this test's own, to stop and start.
struct Postgres {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl Postgres {
    fn pg(&self, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(args)
            .arg("-D")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
    fn new() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL server binaries in /usr/lib/postgresql (scripts/test.sh installs them)",
            )
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = temp_dir().join("pg");
        std::fs::create_dir_all(&dir).expect("pg dir");
        let ok = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.parent().expect("parent"))
            .status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "chown to postgres (needs root)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let init = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb");
        assert!(init.success(), "initdb");
        let pg = Postgres { dir, bin, port };
        pg.start();
        pg
    }
    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        assert!(self.pg(&["start", "-w", "-o", &opts]), "pg_ctl start");
    }
    fn stop(&self) {
        assert!(self.pg(&["stop", "-w", "-m", "fast"]), "pg_ctl stop");
    }
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg(&["stop", "-m", "immediate"]);
    }
}

#[tokio::test]
async fn postgresql_stopped_and_started_again_fails_writes_with_503_and_service_resumes() {
    let pg = Postgres::new();
    let (s, tok, mut viewer) = node_with_a_viewer(&pg.url()).await;

    pg.stop();
    for _ in 0..3 {
        let r = create(&s, &tok, "while down").await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (503, Some("unavailable")),
            "{}",
            r.text()
        );
    }
    assert_eq!(s.http("GET", "/readyz", None, &[]).await.status, 503);
    viewer.quiet(URL, Duration::from_millis(300)).await;
    viewer.send(json!({"type": "ping"})).await;
    assert_eq!(
        viewer.recv_where(|m| m["type"] == "pong").await["type"],
        "pong",
        "the socket stays open"
    );

    pg.start();
    let resumed = first_accepted_seq(&s, &tok, 100).await;
    assert_eq!(
        resumed,
        Some(2),
        "writes resume, gap-free, without a restart"
    );
    assert_eq!(viewer.event(URL).await["seq"].as_u64(), Some(2));
    assert_eq!(s.http("GET", "/readyz", None, &[]).await.status, 200);
    s.stop().await;
}
