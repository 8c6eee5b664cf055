//! The real receivers of the webhook and e-mail tests, as child processes:
//! `tests/receivers/webhook_receiver.py` (verifies every delivery with the
//! independent `standardwebhooks` package) and `tests/receivers/smtp_sink.py`
//! (an aiosmtpd SMTP server). Python comes from `IMAGECHAT_TEST_PYTHON`
//! (set by scripts/test.sh) or `python3`; a missing one fails the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{http_on, Resp};

fn python() -> String {
    std::env::var("IMAGECHAT_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Starts a receiver script; its first stdout line (JSON).
fn spawn(script: &str) -> (Child, Value) {
    let path = format!("{}/tests/receivers/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python())
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path} with {}: {e}", python()));
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("the receiver prints its ports");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!("{script} printed {line:?} (are standardwebhooks and aiosmtpd installed?)")
    });
    (child, v)
}

async fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> Resp {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the receiver is up");
    let headers: &[(&str, &str)] = &[("content-type", "application/json")];
    http_on(
        tcp,
        "127.0.0.1",
        method,
        path,
        body.map(|b| b.to_string().into_bytes()),
        headers,
    )
    .await
    .expect("receiver control call")
}

/// A Standard Webhooks receiver with named endpoints.
pub struct Receiver {
    child: Child,
    pub port: u16,
}

impl Receiver {
    pub fn start() -> Receiver {
        let (child, v) = spawn("webhook_receiver.py");
        let port = v["port"].as_u64().expect("port") as u16;
        Receiver { child, port }
    }

    /// The URL of endpoint `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    /// Sets an endpoint's secret and mode (`ok`, `fail`, `slow`, `drop`,
    /// `redirect`).
    pub async fn set(&self, name: &str, secret: Option<&str>, mode: &str) {
        let mut body = json!({"mode": mode});
        if let Some(s) = secret {
            body["secret"] = json!(s);
        }
        let r = call(self.port, "POST", &format!("/control/{name}"), Some(body)).await;
        assert!(r.status < 300, "{}", r.text());
    }

    pub async fn set_slow(&self, name: &str, delay_secs: f64) {
        let body = json!({"mode": "slow", "delay": delay_secs});
        let r = call(self.port, "POST", &format!("/control/{name}"), Some(body)).await;
        assert!(r.status < 300, "{}", r.text());
    }

    /// `{"attempts", "accepted", "duplicates", "orderErrors", "unverified"}`.
    pub async fn state(&self, name: &str) -> Value {
        call(self.port, "GET", &format!("/control/{name}"), None)
            .await
            .json()
    }

    /// Waits until `pred` holds of the endpoint's state, at most `wait`.
    pub async fn until(&self, name: &str, wait: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let t0 = std::time::Instant::now();
        loop {
            let s = self.state(name).await;
            if pred(&s) {
                return s;
            }
            if t0.elapsed() > wait {
                panic!("the receiver's {name} never got there: {s:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SMTP server that keeps every message, parsed.
pub struct SmtpSink {
    child: Child,
    pub smtp: u16,
    http: u16,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let (child, v) = spawn("smtp_sink.py");
        SmtpSink {
            child,
            smtp: v["smtp"].as_u64().expect("smtp port") as u16,
            http: v["http"].as_u64().expect("http port") as u16,
        }
    }

    /// Every message so far: `{"mailFrom", "rcptTos", "subject", "headers",
    /// "text", "html", "raw"}`.
    pub async fn messages(&self) -> Vec<Value> {
        match call(self.http, "GET", "/messages", None).await.json() {
            Value::Array(a) => a,
            other => panic!("the sink answered {other}"),
        }
    }

    /// Waits until `n` messages arrived, at most `wait`.
    pub async fn until(&self, n: usize, wait: Duration) -> Vec<Value> {
        let t0 = std::time::Instant::now();
        loop {
            let m = self.messages().await;
            if m.len() >= n {
                return m;
            }
            if t0.elapsed() > wait {
                panic!("{} messages after {wait:?}, not {n}: {m:#?}", m.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
