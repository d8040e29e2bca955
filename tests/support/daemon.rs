//! `kftenant run` as a child process against a world, and a minimal HTTP
//! client for its endpoints (the status page tests; `tests/daemon.rs` keeps
//! its own copies of these).

use super::World;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The webhook secret every daemon started here reads.
pub const WEBHOOK_SECRET: &str = "webhook-secret-for-status-page-tests";

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `kftenant run --repo REPO` with a webhook secret, its clone in
/// `cache`, `extra` arguments and environment, and waits until it listens.
pub fn start(
    world: &World,
    repo: &str,
    cache: &Path,
    interval: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Daemon {
    let port = free_port();
    let secret = cache.join("secret");
    std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n")).unwrap();
    let mut cmd: Command = world.kftenant();
    cmd.args([
        "run",
        "--repo",
        repo,
        "--interval",
        interval,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--cache-dir",
        cache.join("clone").to_str().unwrap(),
        "--webhook-secret-file",
        secret.to_str().unwrap(),
    ])
    .args(extra)
    .envs(env.iter().copied())
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::File::create(cache.join("daemon.log")).unwrap(),
    ));
    let child = cmd.spawn().expect("kftenant run starts");
    let d = Daemon { child, port };
    wait_for("the daemon to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    d
}

/// A response: status code, headers (lowercase names), body.
pub struct Response {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to the daemon.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("daemon listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        code,
        headers,
        body: body.to_string(),
    }
}

/// `/status` as JSON.
pub fn status(port: u16) -> serde_json::Value {
    let r = http(port, "GET", "/status", &[], b"");
    assert_eq!(r.code, 200);
    serde_json::from_str(&r.body).unwrap()
}

/// Sends a signed push webhook: the daemon runs a cycle at once.
pub fn poke(port: u16) {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = http(
        port,
        "POST",
        "/hook",
        &[("x-hub-signature-256", format!("sha256={sig}"))],
        body,
    );
    assert_eq!(r.code, 202, "{}", r.body);
}

/// Polls `f` every 100 ms until it holds; panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
