//! Several nodes sharing one PostgreSQL database and one Redis, run as real
//! processes. They use the local services by default
//! (`IMAGECHAT_CLUSTER_POSTGRES`, `IMAGECHAT_TEST_REDIS` override) and fail
//! when those are missing: they never skip.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{http_on, Ws};

const BIN: &str = env!("CARGO_BIN_EXE_imagechat");
const KEY: &str = "cluster-key";

fn postgres_admin() -> String {
    std::env::var("IMAGECHAT_CLUSTER_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn redis_url() -> String {
    std::env::var("IMAGECHAT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn fresh_postgres() -> String {
    crate::common::fresh_postgres(&postgres_admin()).await
}

struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    fn spawn(db: &str, broker: &str) -> Node {
        Self::spawn_with(
            db,
            broker,
            &[
                "--write-rate-per-minute",
                "0",
                "--anonymous-writes-per-address-per-minute",
                "0",
            ],
        )
    }

    fn spawn_with(db: &str, broker: &str, extra: &[&str]) -> Node {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database",
                db,
                "--broker",
                broker,
            ])
            .args(["--admin-key", KEY, "--log-format", "json"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a node");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let echo = std::env::var_os("IMAGECHAT_TEST_NODE_LOGS").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("node: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(15))
                .expect("the node logs its address (is PostgreSQL/Redis up?)");
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if let Some(a) = v["fields"]["address"].as_str() {
                break a.parse().expect("address");
            }
        };
        Node { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> crate::common::Resp {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        http_on(
            tcp,
            "node",
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            &headers,
        )
        .await
        .expect("request")
    }

    async fn ws(&self, token: &str) -> Ws {
        let mut ws = Ws::connect(self.addr, None).await;
        ws.send(json!({"type": "hello", "token": token})).await;
        assert_eq!(ws.recv().await["type"], "welcome");
        ws
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new tenant (anonymous write) made through `node`: its id and secret.
async fn tenant_with_secret(node: &Node) -> (String, String) {
    let tenant = format!(
        "c-{}",
        imagechat::domain::short_id(8)
            .to_lowercase()
            .replace('_', "x")
    );
    let r = node
        .http(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": tenant, "anonymous": "write"})),
            Some(KEY),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    (
        tenant,
        r.json()["secret"].as_str().expect("secret").to_owned(),
    )
}

/// A new tenant (anonymous write) made through `node`, and a session token.
async fn open_tenant(node: &Node) -> String {
    let (tenant, _) = tenant_with_secret(node).await;
    let r = node
        .http(
            "POST",
            "/api/v1/sessions",
            Some(json!({"tenantId": tenant})),
            None,
        )
        .await;
    r.json()["token"]
        .as_str()
        .expect("a session token")
        .to_owned()
}

async fn setup(nodes: usize) -> (String, Vec<Node>, String) {
    let db = fresh_postgres().await;
    let redis = redis_url();
    let nodes: Vec<Node> = (0..nodes).map(|_| Node::spawn(&db, &redis)).collect();
    let token = open_tenant(&nodes[0]).await;
    (db, nodes, token)
}

async fn create(node: &Node, token: &str, url_id: &str, i: usize) -> u16 {
    node.http(
        "POST",
        "/api/v1/chats",
        Some(json!({"urlId": url_id, "x": 1, "y": 1, "text": format!("w{i}")})),
        Some(token),
    )
    .await
    .status
}

/// Reads events of `url_id` until `last`; asserts they are `from..=last`, in order, once each.
async fn expect_run(ws: &mut Ws, url_id: &str, from: u64, last: u64) {
    for want in from..=last {
        let e = ws.event(url_id).await;
        assert_eq!(e["seq"], want, "events arrive once each, in seq order");
    }
}

#[tokio::test]
async fn concurrent_writers_on_every_node_reach_every_subscriber_in_order() {
    let (_db, nodes, token) = setup(3).await;
    let u = "shared-image";
    let mut subs = Vec::new();
    for n in &nodes {
        for _ in 0..2 {
            let mut w = n.ws(&token).await;
            assert_eq!(w.subscribe(u, None).await["type"], "subscribed");
            subs.push(w);
        }
    }
    let nodes = Arc::new(nodes);
    let per_node = 30;
    let writers: Vec<_> = (0..3)
        .map(|k| {
            let nodes = Arc::clone(&nodes);
            let token = token.clone();
            tokio::spawn(async move {
                for i in 0..per_node {
                    assert_eq!(create(&nodes[k], &token, u, i).await, 201);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let total = 3 * per_node as u64;
    for w in &mut subs {
        expect_run(w, u, 1, total).await;
        w.quiet(u, Duration::from_millis(200)).await;
    }
    // A late subscriber on the third node recovers by seq.
    let epoch = snapshot(&nodes[0], &token, u).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    let mut late = nodes[2].ws(&token).await;
    let sub = late.subscribe(u, Some((&epoch, 45))).await;
    assert_eq!(
        (sub["recovered"].clone(), sub["seq"].clone()),
        (json!(true), json!(total))
    );
    expect_run(&mut late, u, 46, total).await;
    assert_eq!(create(&nodes[1], &token, u, 999).await, 201);
    expect_run(&mut late, u, total + 1, total + 1).await;
}

#[tokio::test]
async fn presence_counts_viewers_on_every_node() {
    let (_db, nodes, token) = setup(3).await;
    let u = "watched";
    let mut socks = Vec::new();
    for n in &nodes {
        let mut w = n.ws(&token).await;
        w.subscribe(u, None).await;
        socks.push(w);
    }
    let mut watcher = socks.remove(0);
    let m = watcher
        .try_recv_where(
            &|m: &Value| m["type"] == "presence" && m["viewers"] == 3,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        m.is_some(),
        "viewers on all three nodes are counted: {:?}",
        watcher.inbox
    );
    watcher.inbox.clear();
    drop(socks.pop());
    let m = watcher
        .try_recv_where(
            &|m: &Value| m["type"] == "presence" && m["viewers"] == 2,
            Duration::from_secs(5),
        )
        .await;
    assert!(m.is_some(), "a viewer leaving another node is seen");
}

#[tokio::test]
async fn no_event_is_lost_when_redis_connections_are_killed() {
    let (_db, nodes, token) = setup(2).await;
    let u = "redis-kill";
    let mut sub = nodes[1].ws(&token).await;
    sub.subscribe(u, None).await;
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is required for cluster tests");
    for i in 0..40 {
        if i == 10 || i == 25 {
            let _: redis::RedisResult<Value> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut admin)
                .await
                .map(|_: i64| Value::Null);
            let _: redis::RedisResult<Value> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut admin)
                .await
                .map(|_: i64| Value::Null);
        }
        assert_eq!(
            create(&nodes[0], &token, u, i).await,
            201,
            "writes are stored while Redis reconnects"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    expect_run(&mut sub, u, 1, 40).await;
}

/// A TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns2.lock().expect("lock").push(h);
            }
        });
        Proxy { addr, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().expect("lock").drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_redis_keeps_writing_and_everyone_catches_up() {
    let db = fresh_postgres().await;
    let redis_addr: SocketAddr = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("redis://HOST:PORT");
    let proxy = Proxy::start(redis_addr).await;
    let cut_node = Node::spawn(&db, &format!("redis://{}", proxy.addr));
    let other = Node::spawn(&db, &redis_url());
    let token = open_tenant(&other).await;
    let u = "cut";
    let mut far = other.ws(&token).await;
    far.subscribe(u, None).await;
    let mut near = cut_node.ws(&token).await;
    near.subscribe(u, None).await;
    assert_eq!(create(&cut_node, &token, u, 0).await, 201);
    expect_run(&mut far, u, 1, 1).await;
    expect_run(&mut near, u, 1, 1).await;
    proxy.cut();
    for i in 1..=5 {
        assert_eq!(
            create(&cut_node, &token, u, i).await,
            201,
            "writes are stored without Redis"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    expect_run(&mut far, u, 2, 6).await;
    expect_run(&mut near, u, 2, 6).await;
}

#[tokio::test]
async fn clients_of_a_dead_node_resume_on_another() {
    let (_db, mut nodes, token) = setup(3).await;
    let u = "failover";
    let mut ws = nodes[2].ws(&token).await;
    ws.subscribe(u, None).await;
    for i in 0..5 {
        assert_eq!(create(&nodes[0], &token, u, i).await, 201);
    }
    expect_run(&mut ws, u, 1, 5).await;
    let epoch = snapshot(&nodes[0], &token, u).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    nodes[2].kill();
    assert!(
        ws.close_code(Duration::from_secs(5)).await.is_some(),
        "the dead node's socket ends"
    );
    for i in 5..10 {
        assert_eq!(create(&nodes[1], &token, u, i).await, 201);
    }
    let mut again = nodes[0].ws(&token).await;
    let sub = again.subscribe(u, Some((&epoch, 5))).await;
    assert_eq!(sub["recovered"], true);
    expect_run(&mut again, u, 6, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_postgres_answers_503_keeps_sockets_and_recovers() {
    let db = fresh_postgres().await;
    // Route this node's database traffic through a proxy we can cut.
    let (prefix, rest) = db.split_once("@").expect("postgres://user@host:port/db");
    let (hostport, dbname) = rest.split_once('/').expect("a database name");
    let pg_addr: SocketAddr = hostport.parse().expect("HOST:PORT");
    let proxy = Proxy::start(pg_addr).await;
    let node = Node::spawn(&format!("{prefix}@{}/{dbname}", proxy.addr), &redis_url());
    let token = open_tenant(&node).await;
    let u = "pg";
    let mut ws = node.ws(&token).await;
    ws.subscribe(u, None).await;
    assert_eq!(create(&node, &token, u, 0).await, 201);
    expect_run(&mut ws, u, 1, 1).await;
    proxy.cut();
    let r = node
        .http(
            "POST",
            "/api/v1/chats",
            Some(json!({"urlId": u, "x": 1, "y": 1, "text": "down"})),
            Some(&token),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (503, "unavailable".to_owned()));
    assert_eq!(node.http("GET", "/readyz", None, None).await.status, 503);
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.recv_where(|m| m["type"] == "pong").await["type"],
        "pong",
        "sockets stay open"
    );
    proxy.restore();
    let mut status = 0;
    for i in 0..50 {
        status = create(&node, &token, u, 100 + i).await;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 201, "the node recovers by itself");
    expect_run(&mut ws, u, 2, 2).await;
}

#[tokio::test]
async fn write_rates_and_usage_are_counted_across_nodes() {
    let db = fresh_postgres().await;
    let redis = redis_url();
    let limits = ["--write-rate-per-minute", "60", "--write-burst", "5"];
    let nodes: Vec<Node> = (0..3)
        .map(|_| Node::spawn_with(&db, &redis, &limits))
        .collect();
    let tenant = format!(
        "u-{}",
        imagechat::domain::short_id(8)
            .to_lowercase()
            .replace('_', "x")
    );
    let r = nodes[0]
        .http(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"tenantId": tenant, "anonymous": "write", "secret": "s3cret"})),
            Some(KEY),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = nodes[0]
        .http(
            "POST",
            "/api/v1/sessions",
            Some(json!({"tenantId": tenant})),
            None,
        )
        .await;
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(create(&nodes[i % 3], &token, "limited", i).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "one bucket for all nodes: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 429),
        "{statuses:?}"
    );
    // Every node's counters reach the shared usage rows.
    let today = imagechat::usage::today();
    let basic = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{tenant}:s3cret"))
        )
    };
    let mut conversations = Value::Null;
    for _ in 0..40 {
        let tcp = tokio::net::TcpStream::connect(nodes[2].addr)
            .await
            .expect("connect");
        let r = http_on(
            tcp,
            "node",
            "GET",
            &format!("/api/v1/tenant/usage?from={today}&to={today}"),
            None,
            &[("authorization", &basic)],
        )
        .await
        .expect("usage");
        conversations = r.json()["days"][0]["conversationCreateCount"].clone();
        if conversations == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        conversations, 5,
        "creations through three nodes are all counted"
    );
}

#[tokio::test]
async fn viewers_of_a_dead_node_disappear_within_30_seconds() {
    let (_db, mut nodes, token) = setup(2).await;
    let u = "ghosts";
    let mut watcher = nodes[0].ws(&token).await;
    watcher.subscribe(u, None).await;
    let mut doomed = nodes[1].ws(&token).await;
    doomed.subscribe(u, None).await;
    let m = watcher
        .try_recv_where(
            &|m: &Value| m["type"] == "presence" && m["viewers"] == 2,
            Duration::from_secs(5),
        )
        .await;
    assert!(m.is_some(), "both viewers are counted");
    watcher.inbox.clear();
    // SIGKILL: the node cannot say goodbye; its liveness key has to expire.
    nodes[1].kill();
    let t0 = std::time::Instant::now();
    let m = watcher
        .try_recv_where(
            &|m: &Value| m["type"] == "presence" && m["viewers"] == 1,
            Duration::from_secs(45),
        )
        .await;
    assert!(m.is_some(), "the dead node's viewer is dropped");
    assert!(
        t0.elapsed() <= Duration::from_secs(30),
        "dropped after {:?}",
        t0.elapsed()
    );
}

/// A Redis server of the test's own, to stop and start on the same port.
struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut r = PrivateRedis { child: None, port };
        r.restart().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required (the test command installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: everything it held (subscriptions, buckets) is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A create through `addr`: its status and chat id, or `None` when the
/// node did not answer (killed mid-request).
async fn try_create(addr: SocketAddr, token: &str, url_id: &str, i: usize) -> Option<(u16, Value)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let auth = format!("Bearer {token}");
    let body = json!({"urlId": url_id, "x": 1, "y": 1, "text": format!("w{i}")});
    let r = http_on(
        tcp,
        "node",
        "POST",
        "/api/v1/chats",
        Some(body.to_string().into_bytes()),
        &[("authorization", &auth)],
    )
    .await
    .ok()?;
    let id = r.json()["chat"]["id"].clone();
    Some((r.status, id))
}

async fn snapshot(node: &Node, token: &str, url_id: &str) -> Value {
    let r = node
        .http(
            "GET",
            &format!("/api/v1/chats?urlId={url_id}"),
            None,
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_for_any_subscriber_when_redis_restarts_under_load() {
    let db = fresh_postgres().await;
    let mut redis = PrivateRedis::start().await;
    let nodes = [
        Node::spawn(&db, &redis.url()),
        Node::spawn(&db, &redis.url()),
    ];
    let token = open_tenant(&nodes[0]).await;
    let images = ["rr-a", "rr-b", "rr-c", "rr-d"];
    let mut subs = Vec::new();
    for node in &nodes {
        let mut ws = node.ws(&token).await;
        for u in images {
            ws.subscribe(u, None).await;
        }
        subs.push(ws);
    }
    let addrs = [nodes[0].addr, nodes[1].addr];
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let token = token.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..120 {
                    let u = images[(w + i) % images.len()];
                    let r = try_create(addrs[i % 2], &token, u, i).await;
                    statuses.push(r.map(|r| r.0));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        writers.iter().all(|w| !w.is_finished()),
        "Redis goes down while writes are in flight"
    );
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart().await;
    assert!(
        writers.iter().any(|w| !w.is_finished()),
        "writes go on after Redis is back"
    );
    let mut accepted = 0;
    for w in writers {
        let statuses = w.await.expect("writer");
        assert!(
            statuses.iter().all(|s| *s == Some(201)),
            "writes are stored while Redis is down: {statuses:?}"
        );
        accepted += statuses.len();
    }
    assert_eq!(accepted, 480);
    let mut total = 0;
    for u in images {
        let last = snapshot(&nodes[1], &token, u).await["seq"]
            .as_u64()
            .expect("seq");
        total += last;
        for ws in &mut subs {
            expect_run(ws, u, 1, last).await;
            ws.quiet(u, Duration::from_millis(300)).await;
        }
    }
    assert_eq!(total, 480, "every accepted write is one event");
}

/// Events of `url_id` until the socket ends.
async fn events_until_closed(ws: &mut Ws, url_id: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    let pred =
        |m: &Value| m["urlId"] == url_id && m.get("seq").is_some() && m["type"] != "subscribed";
    while let Some(e) = ws.try_recv_where(&pred, Duration::from_secs(10)).await {
        seqs.push(e["seq"].as_u64().expect("seq"));
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_writes_loses_no_acknowledged_write_and_clients_resume_elsewhere() {
    let (_db, mut nodes, token) = setup(3).await;
    let u = "sigkill";
    let mut on_doomed = nodes[0].ws(&token).await;
    on_doomed.subscribe(u, None).await;
    let mut on_survivor = nodes[1].ws(&token).await;
    on_survivor.subscribe(u, None).await;
    let epoch = snapshot(&nodes[1], &token, u).await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    // Eight writers, half through the node that dies, half through another,
    // each until it has made 120 attempts or its node is gone: fewer than
    // the 1000 events a resume replays.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let token = token.clone();
            let addr = nodes[w % 2].addr;
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut unanswered = 0;
                for i in 0..120 {
                    match try_create(addr, &token, u, w * 1000 + i).await {
                        Some((201, id)) => acked.push(id),
                        Some((status, _)) => panic!("write answered {status}"),
                        None => {
                            unanswered += 1;
                            if unanswered > 3 {
                                break;
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                acked
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        writers.iter().all(|w| !w.is_finished()),
        "the node dies while writes are in flight"
    );
    nodes[0].kill();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    let snap = snapshot(&nodes[1], &token, u).await;
    let last = snap["seq"].as_u64().expect("seq");
    let stored: std::collections::HashSet<&str> = snap["chats"]
        .as_array()
        .expect("chats")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(acked.len() > 500, "writes happened: {}", acked.len());
    for id in &acked {
        assert!(
            stored.contains(id.as_str().expect("id")),
            "an acknowledged write was lost: {id}"
        );
    }
    assert_eq!(
        stored.len() as u64,
        last,
        "one chat per logged event, none twice"
    );
    // The dead node's viewer saw a gap-free prefix, then resumes on a
    // third node from where it was.
    let seen = events_until_closed(&mut on_doomed, u).await;
    let resumed_from = seen.len() as u64;
    assert_eq!(
        seen,
        (1..=resumed_from).collect::<Vec<_>>(),
        "the dead node delivered in order, once each"
    );
    let mut again = nodes[2].ws(&token).await;
    let sub = again.subscribe(u, Some((&epoch, resumed_from))).await;
    assert_eq!(sub["recovered"], true, "{sub}");
    expect_run(&mut again, u, resumed_from + 1, last).await;
    again.quiet(u, Duration::from_millis(300)).await;
    expect_run(&mut on_survivor, u, 1, last).await;
    on_survivor.quiet(u, Duration::from_millis(300)).await;
}

/// Three nodes, webhooks and notifications: every message reaches the
/// receiver exactly once and in order per image whichever node wrote it;
/// a notification reaches its user's connections on other nodes; and a
/// node killed with messages pending leaves them to the others.
mod hooks {
    use super::*;
    use crate::common::receivers::Receiver;
    use crate::common::{basic, sso};

    async fn register(node: &Node, tenant: &str, secret: &str, url: &str) -> String {
        let tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        let auth = basic(tenant, secret);
        let r = http_on(
            tcp,
            "node",
            "POST",
            "/api/v1/tenant/webhooks",
            Some(json!({"url": url}).to_string().into_bytes()),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["secret"].as_str().unwrap().to_owned()
    }

    fn spawn(db: &str) -> Node {
        Node::spawn_with(
            db,
            &redis_url(),
            &[
                "--write-rate-per-minute",
                "0",
                "--webhook-allow-private",
                "--webhook-retry-base-ms",
                "200",
            ],
        )
    }

    async fn session(node: &Node, tenant: &str, secret: &str, user: Value) -> String {
        let r = node
            .http(
                "POST",
                "/api/v1/sessions",
                Some(json!({"tenantId": tenant, "sso": sso(secret, &user)})),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn three_nodes_deliver_each_message_once_in_order_and_notify_across_nodes() {
        let rx = Receiver::start();
        let db = fresh_postgres().await;
        let nodes: Vec<Node> = (0..3).map(|_| spawn(&db)).collect();
        let (tenant, secret) = tenant_with_secret(&nodes[0]).await;
        let whsec = register(&nodes[1], &tenant, &secret, &rx.url("c")).await;
        rx.set("c", Some(&whsec), "ok").await;
        // Ann on node 0 mentions Bob, who has a connection on nodes 1 and 2.
        let ann = session(
            &nodes[0],
            &tenant,
            &secret,
            json!({"id": "ann", "username": "Ann"}),
        )
        .await;
        let bob = session(
            &nodes[0],
            &tenant,
            &secret,
            json!({"id": "bob", "username": "Bob"}),
        )
        .await;
        let mut bob1 = nodes[1].ws(&bob).await;
        let mut bob2 = nodes[2].ws(&bob).await;
        let r = nodes[0]
            .http(
                "POST",
                "/api/v1/chats",
                Some(json!({"urlId": "m", "x": 1, "y": 1, "text": "@Bob", "mentions": ["bob"]})),
                Some(&ann),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        for ws in [&mut bob1, &mut bob2] {
            let m = ws.recv_where(|m| m["type"] == "notification").await;
            assert_eq!(
                (m["unread"].clone(), m["notification"]["reason"].clone()),
                (json!(1), json!("mention"))
            );
        }
        // Writes to three images from every node at once.
        let token = session(
            &nodes[0],
            &tenant,
            &secret,
            json!({"id": "w", "username": "W"}),
        )
        .await;
        let mut tasks = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let addr = n.addr;
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0;
                for k in 0..20 {
                    let url = format!("img-{}", (i + k) % 3);
                    if let Some((201, _)) = try_create(addr, &token, &url, k).await {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut written = 0;
        for t in tasks {
            written += t.await.unwrap();
        }
        assert_eq!(written, 60);
        // 60 chats, the mention's chat, and the notification message.
        rx.until("c", Duration::from_secs(30), |st| {
            st["accepted"].as_array().is_some_and(|a| a.len() >= 62)
        })
        .await;
        // Time for a duplicate to show up, were there one.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let st = rx.state("c").await;
        assert_eq!(st["accepted"].as_array().unwrap().len(), 62, "{st:#}");
        assert_eq!(st["duplicates"], 0, "a message was delivered twice");
        assert_eq!(st["orderErrors"], json!([]));
        assert_eq!(st["unverified"], 0);
        for img in ["img-0", "img-1", "img-2"] {
            let seqs: Vec<u64> = st["accepted"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["body"]["data"]["urlId"] == img)
                .filter_map(|a| a["body"]["data"]["seq"].as_u64())
                .collect();
            assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "{img}");
        }
    }

    #[tokio::test]
    async fn a_killed_node_leaves_its_pending_deliveries_to_the_others() {
        let rx = Receiver::start();
        let db = fresh_postgres().await;
        let mut doomed = spawn(&db);
        let (tenant, secret) = tenant_with_secret(&doomed).await;
        let whsec = register(&doomed, &tenant, &secret, &rx.url("k")).await;
        rx.set("k", Some(&whsec), "fail").await;
        let token = session(
            &doomed,
            &tenant,
            &secret,
            json!({"id": "w", "username": "W"}),
        )
        .await;
        for k in 0..5 {
            assert_eq!(create(&doomed, &token, "img", k).await, 201);
        }
        rx.until("k", Duration::from_secs(10), |st| {
            st["attempts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
        doomed.kill();
        rx.set("k", None, "ok").await;
        let _survivor = spawn(&db);
        let st = rx
            .until("k", Duration::from_secs(45), |st| {
                st["accepted"].as_array().is_some_and(|a| a.len() >= 5)
            })
            .await;
        let seqs: Vec<u64> = st["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["body"]["data"]["seq"].as_u64())
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(st["orderErrors"], json!([]));
    }
}
