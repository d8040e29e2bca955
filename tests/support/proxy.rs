//! A fault-injecting HTTP/1.1 proxy in front of moto's IAM endpoint.
//!
//! moto never throttles, never fails and never drops a connection, so the
//! failure paths of kftenant's IAM client (retries, backoff, giving up) need
//! something between the two. This proxy forwards every request unchanged and,
//! per IAM action, can instead answer `Throttling` (HTTP 400, the IAM error XML),
//! answer `ServiceFailure` (HTTP 500), delay the call or drop the connection.
//! The error bodies are produced here, not by moto: this is the one place where
//! the stack answers for AWS, because no local component can produce the case.
//!
//! It counts every call per action and per outcome, so a test can assert the
//! exact number of IAM calls kftenant made, and keeps a timeline of calls
//! (when each arrived and when moto's answer went back), so a test can say
//! when a write landed.
//!
//! Two ways in:
//! - Rust: [`IamProxy::start`] returns a handle; the proxy runs on its own thread
//!   and stops when the handle is dropped.
//! - HTTP, for scripts (see `examples/iam-proxy.rs`):
//!   `GET /_proxy/counts`, `GET /_proxy/faults`, `POST /_proxy/faults` (a JSON
//!   rule or array of rules, appended), `DELETE /_proxy/faults`,
//!   `POST /_proxy/reset` (rules and counts).
//!
//! A rule in JSON: `{"action": "CreateRole", "fault": "throttle", "next": 3}` or
//! `{"action": "*", "fault": "latency", "latency_ms": 200, "rate": 0.25, "seed": 7}`.
//! With neither `next` nor `rate` a rule fires on every matching call.
//!
//! When the proxy is given an account id it adds `x-moto-account-id` to requests
//! that lack one, so a client that only knows `AWS_ENDPOINT_URL` (kftenant itself)
//! lands in that test's own moto account.

// Shared by several test binaries and an example; each uses a different part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};

/// The header moto reads to pick the account a request acts in.
pub const ACCOUNT_HEADER: &str = "x-moto-account-id";

/// What a firing rule does to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// HTTP 400 with IAM's `Throttling` error; the SDK retries it as a throttle.
    Throttle,
    /// HTTP 500 with IAM's `ServiceFailure` error; the SDK retries it as transient.
    ServiceFailure,
    /// Wait `latency_ms`, then go on (to later rules and to moto).
    Latency,
    /// Close the connection without an answer; the SDK sees an I/O error.
    Drop,
}

/// One fault rule. Rules are checked in order; latency rules add up, and the
/// first firing rule of any other kind decides the call (later rules are not
/// consulted, so their counters are not used up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// An IAM action (`CreateRole`) or `*` for every action.
    pub action: String,
    pub fault: FaultKind,
    /// For [`FaultKind::Latency`]: how long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Fire on the next N matching calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// Fire on this fraction (0.0 to 1.0) of matching calls, decided by a
    /// generator seeded with `seed`, so a run is repeatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default)]
    pub seed: u64,
}

impl FaultRule {
    fn new(action: &str, fault: FaultKind) -> Self {
        FaultRule {
            action: action.to_string(),
            fault,
            latency_ms: None,
            next: None,
            rate: None,
            seed: 0,
        }
    }

    /// Answer `Throttling` (on every matching call until narrowed).
    pub fn throttle(action: &str) -> Self {
        Self::new(action, FaultKind::Throttle)
    }

    /// Answer `ServiceFailure` with HTTP 500.
    pub fn service_failure(action: &str) -> Self {
        Self::new(action, FaultKind::ServiceFailure)
    }

    /// Delay matching calls.
    pub fn latency(action: &str, delay: Duration) -> Self {
        let mut rule = Self::new(action, FaultKind::Latency);
        rule.latency_ms = Some(delay.as_millis() as u64);
        rule
    }

    /// Drop the connection without answering.
    pub fn drop_connection(action: &str) -> Self {
        Self::new(action, FaultKind::Drop)
    }

    /// Only the next `n` matching calls.
    #[must_use]
    pub fn next(mut self, n: u64) -> Self {
        self.next = Some(n);
        self.rate = None;
        self
    }

    /// A seeded fraction of matching calls.
    #[must_use]
    pub fn rate(mut self, rate: f64, seed: u64) -> Self {
        self.rate = Some(rate);
        self.seed = seed;
        self.next = None;
        self
    }

    fn validate(&self) -> Result<(), String> {
        if self.action.is_empty() {
            return Err("action must be an IAM action name or \"*\"".into());
        }
        if let Some(rate) = self.rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("rate {rate} is not within 0.0..=1.0"));
            }
            if self.next.is_some() {
                return Err("give either next or rate, not both".into());
            }
        }
        if self.fault == FaultKind::Latency && self.latency_ms.is_none() {
            return Err("a latency rule needs latency_ms".into());
        }
        Ok(())
    }
}

/// What happened to the calls of one action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounts {
    /// Every call the proxy received.
    pub calls: u64,
    /// Calls passed on to moto (whatever moto answered).
    pub forwarded: u64,
    /// Of the forwarded calls, those moto answered with an HTTP error status.
    pub upstream_errors: u64,
    pub throttled: u64,
    pub service_failures: u64,
    pub dropped: u64,
    /// Calls that a latency rule delayed (they also count under another outcome).
    pub delayed: u64,
    /// Calls that could not reach moto (the client got a 502).
    pub unreachable: u64,
}

/// Counts per IAM action; requests without an `Action` are under `"(none)"`.
pub type Counts = BTreeMap<String, ActionCounts>;

/// One call in the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    pub action: String,
    /// When the proxy received it.
    pub received: std::time::SystemTime,
    /// When moto's answer was passed back (`None`: not forwarded, or not
    /// answered yet). A write has landed by then.
    pub answered: Option<std::time::SystemTime>,
}

impl CallRecord {
    /// Reads (`Get*`, `List*`) change nothing.
    pub fn is_write(&self) -> bool {
        !(self.action.starts_with("Get") || self.action.starts_with("List"))
    }
}

/// Where the proxy forwards to, and in which moto account.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// moto's base URL, e.g. `http://127.0.0.1:5000`.
    pub upstream: String,
    /// Added as `x-moto-account-id` to requests that have none.
    pub account_id: Option<String>,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
}

impl ProxyConfig {
    pub fn new(upstream: impl Into<String>) -> Self {
        ProxyConfig {
            upstream: upstream.into().trim_end_matches('/').to_string(),
            account_id: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    #[must_use]
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }
}

struct RuleState {
    rule: FaultRule,
    /// Remaining firings of a `next` rule.
    remaining: Option<u64>,
    rng: SplitMix64,
}

/// A small deterministic generator, so a seeded fault rate replays exactly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct Inner {
    rules: Vec<RuleState>,
    counts: Counts,
    timeline: Vec<CallRecord>,
    /// Calls received and not answered yet.
    in_flight: u64,
}

/// State shared between the handle and the server.
pub struct Shared {
    config: ProxyConfig,
    inner: Mutex<Inner>,
    request_ids: AtomicU64,
}

/// The decision for one call.
struct Verdict {
    delay: Duration,
    terminal: Option<FaultKind>,
}

impl Shared {
    pub fn new(config: ProxyConfig) -> Arc<Self> {
        Arc::new(Shared {
            config,
            inner: Mutex::default(),
            request_ids: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide the counts.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_faults(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        for rule in &rules {
            rule.validate()?;
        }
        let mut inner = self.lock();
        for rule in rules {
            inner.rules.push(RuleState {
                remaining: rule.next,
                rng: SplitMix64(rule.seed),
                rule,
            });
        }
        Ok(())
    }

    pub fn faults(&self) -> Vec<FaultRule> {
        self.lock().rules.iter().map(|r| r.rule.clone()).collect()
    }

    pub fn clear_faults(&self) {
        self.lock().rules.clear();
    }

    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.rules.clear();
        inner.counts.clear();
        inner.timeline.clear();
    }

    pub fn timeline(&self) -> Vec<CallRecord> {
        self.lock().timeline.clone()
    }

    pub fn in_flight(&self) -> u64 {
        self.lock().in_flight
    }

    /// Notes a call's arrival; its index in the timeline.
    fn arrived(&self, action: &str) -> usize {
        let mut inner = self.lock();
        inner.in_flight += 1;
        inner.timeline.push(CallRecord {
            action: action.to_string(),
            received: std::time::SystemTime::now(),
            answered: None,
        });
        inner.timeline.len() - 1
    }

    /// Notes that the call at `index` is over (`answered`: moto answered it).
    fn finished(&self, index: usize, answered: bool) {
        let mut inner = self.lock();
        inner.in_flight -= 1;
        if answered {
            if let Some(r) = inner.timeline.get_mut(index) {
                r.answered = Some(std::time::SystemTime::now());
            }
        }
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    fn decide(&self, action: &str) -> Verdict {
        let mut inner = self.lock();
        inner.counts.entry(action.to_string()).or_default().calls += 1;
        let mut verdict = Verdict {
            delay: Duration::ZERO,
            terminal: None,
        };
        for state in inner.rules.iter_mut() {
            if state.rule.action != "*" && state.rule.action != action {
                continue;
            }
            let fires = match (state.remaining.as_mut(), state.rule.rate) {
                (Some(0), _) => false,
                (Some(n), _) => {
                    *n -= 1;
                    true
                }
                (None, Some(rate)) => state.rng.next_f64() < rate,
                (None, None) => true,
            };
            if !fires {
                continue;
            }
            if state.rule.fault == FaultKind::Latency {
                verdict.delay += Duration::from_millis(state.rule.latency_ms.unwrap_or(0));
            } else {
                verdict.terminal = Some(state.rule.fault);
                break;
            }
        }
        let counts = inner.counts.get_mut(action).expect("inserted above");
        if !verdict.delay.is_zero() {
            counts.delayed += 1;
        }
        match verdict.terminal {
            Some(FaultKind::Throttle) => counts.throttled += 1,
            Some(FaultKind::ServiceFailure) => counts.service_failures += 1,
            Some(FaultKind::Drop) => counts.dropped += 1,
            Some(FaultKind::Latency) | None => {}
        }
        verdict
    }

    fn record(&self, action: &str, f: impl FnOnce(&mut ActionCounts)) {
        f(self.lock().counts.entry(action.to_string()).or_default());
    }
}

/// A running proxy. Dropping it stops the proxy.
pub struct IamProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IamProxy {
    /// Start the proxy on its own thread and runtime, so it serves callers on
    /// any runtime (or none: a `kftenant` child process).
    pub fn start(config: ProxyConfig) -> std::io::Result<IamProxy> {
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("iam-proxy-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the IAM proxy");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the proxy listener with tokio");
                    serve(listener, server_shared, async {
                        let _ = rx.await;
                    })
                    .await;
                });
            })?;
        Ok(IamProxy {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The base URL to give a client as its IAM endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Append a rule. Panics on an invalid rule: that is a bug in the test.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared
            .add_faults(vec![rule])
            .unwrap_or_else(|e| panic!("invalid fault rule: {e}"));
    }

    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Forget rules and counts.
    pub fn reset(&self) {
        self.shared.reset();
    }

    pub fn counts(&self) -> Counts {
        self.shared.counts()
    }

    /// The counts of one action (all zero if it was never called).
    pub fn action(&self, action: &str) -> ActionCounts {
        self.counts().remove(action).unwrap_or_default()
    }

    /// Every call so far, in order of arrival.
    pub fn timeline(&self) -> Vec<CallRecord> {
        self.shared.timeline()
    }

    /// Calls received and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight()
    }

    /// Total calls per action, for comparing with an expected list in one assert.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.counts()
            .into_iter()
            .map(|(action, c)| (action, c.calls))
            .collect()
    }
}

impl Drop for IamProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serve until `shutdown` completes. Used by [`IamProxy::start`] and by the
/// standalone `iam-proxy` example.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: try again shortly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handle(shared.clone(), client.clone(), req));
            // An error here is either a dropped connection we chose or a
            // client that went away; neither concerns the proxy.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Returned by the service to make hyper close the connection unanswered.
#[derive(Debug)]
struct DroppedOnPurpose;

impl std::fmt::Display for DroppedOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault rule")
    }
}

impl std::error::Error for DroppedOnPurpose {}

async fn handle(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedOnPurpose> {
    if req.uri().path().starts_with("/_proxy/") {
        return Ok(control(&shared, req).await);
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(DroppedOnPurpose),
    };
    let action = action_of(parts.uri.query(), &body).unwrap_or_else(|| "(none)".to_string());
    // Finished on drop too: hyper drops this future when the client goes away.
    let mut call = InFlight {
        shared: &shared,
        index: shared.arrived(&action),
        answered: false,
    };
    match forward(&shared, client, parts, body, &action).await {
        Ok(Forwarded::Answered(r)) => {
            call.answered = true;
            Ok(r)
        }
        Ok(Forwarded::Local(r)) => Ok(r),
        Err(e) => Err(e),
    }
}

/// A call in the timeline until it is over.
struct InFlight<'a> {
    shared: &'a Shared,
    index: usize,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.finished(self.index, self.answered);
    }
}

/// What became of a call.
enum Forwarded {
    /// moto answered (whatever it said).
    Answered(Response<Full<Bytes>>),
    /// The proxy answered itself (a fault, or moto unreachable).
    Local(Response<Full<Bytes>>),
}

async fn forward(
    shared: &Shared,
    client: Client<HttpConnector, Full<Bytes>>,
    mut parts: hyper::http::request::Parts,
    body: Bytes,
    action: &str,
) -> Result<Forwarded, DroppedOnPurpose> {
    let action = action.to_string();
    let verdict = shared.decide(&action);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    let request_id = format!(
        "kftenant-proxy-{:08}",
        shared.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    match verdict.terminal {
        Some(FaultKind::Throttle) => {
            return Ok(Forwarded::Local(iam_error(
                StatusCode::BAD_REQUEST,
                "Sender",
                "Throttling",
                "Rate exceeded",
                &request_id,
            )));
        }
        Some(FaultKind::ServiceFailure) => {
            return Ok(Forwarded::Local(iam_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receiver",
                "ServiceFailure",
                "Request processing has failed due to some unknown error, exception or failure.",
                &request_id,
            )));
        }
        Some(FaultKind::Drop) => return Err(DroppedOnPurpose),
        Some(FaultKind::Latency) | None => {}
    }

    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("{}{}", shared.config.upstream, path).parse() {
        Ok(uri) => uri,
        Err(_) => {
            return Ok(Forwarded::Local(plain(
                StatusCode::BAD_GATEWAY,
                "bad upstream URL",
            )));
        }
    };
    if let Some(account) = &shared.config.account_id {
        if !parts.headers.contains_key(ACCOUNT_HEADER) {
            if let Ok(value) = HeaderValue::from_str(account) {
                parts.headers.insert(ACCOUNT_HEADER, value);
            }
        }
    }
    let upstream = Request::from_parts(parts, Full::new(body));
    let response = match client.request(upstream).await {
        Ok(response) => response,
        Err(e) => {
            shared.record(&action, |c| c.unreachable += 1);
            return Ok(Forwarded::Local(plain(
                StatusCode::BAD_GATEWAY,
                &format!("iam proxy: moto unreachable: {e}"),
            )));
        }
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            shared.record(&action, |c| c.unreachable += 1);
            return Ok(Forwarded::Local(plain(
                StatusCode::BAD_GATEWAY,
                "iam proxy: moto hung up",
            )));
        }
    };
    let failed = parts.status.is_client_error() || parts.status.is_server_error();
    shared.record(&action, |c| {
        c.forwarded += 1;
        if failed {
            c.upstream_errors += 1;
        }
    });
    Ok(Forwarded::Answered(Response::from_parts(
        parts,
        Full::new(body),
    )))
}

/// The `Action` parameter of a query-protocol call, from the form body or,
/// for a GET, the query string.
fn action_of(query: Option<&str>, body: &[u8]) -> Option<String> {
    let from = |s: &str| {
        s.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == "Action" && !value.is_empty()).then(|| value.to_string())
        })
    };
    std::str::from_utf8(body)
        .ok()
        .and_then(from)
        .or_else(|| query.and_then(from))
}

fn iam_error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let xml = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
         <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>{request_id}</RequestId></ErrorResponse>"
    );
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_str(request_id).unwrap(),
    );
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).expect("proxy state serializes");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(FaultRule),
    Many(Vec<FaultRule>),
}

async fn control(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    match (method, path.as_str()) {
        (Method::GET, "/_proxy/counts") => json(StatusCode::OK, &shared.counts()),
        (Method::GET, "/_proxy/faults") => json(StatusCode::OK, &shared.faults()),
        (Method::POST, "/_proxy/faults") => {
            let rules = match serde_json::from_slice::<OneOrMany>(&body) {
                Ok(OneOrMany::One(rule)) => vec![rule],
                Ok(OneOrMany::Many(rules)) => rules,
                Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad fault rule: {e}")),
            };
            match shared.add_faults(rules) {
                Ok(()) => json(StatusCode::OK, &shared.faults()),
                Err(e) => plain(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Method::DELETE, "/_proxy/faults") => {
            shared.clear_faults();
            json(StatusCode::OK, &shared.faults())
        }
        (Method::POST, "/_proxy/reset") => {
            shared.reset();
            plain(StatusCode::OK, "reset")
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "GET /_proxy/counts, GET|POST|DELETE /_proxy/faults, POST /_proxy/reset",
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The rule engine, without a network.
    use super::*;

    fn shared(rules: Vec<FaultRule>) -> Arc<Shared> {
        let shared = Shared::new(ProxyConfig::new("http://127.0.0.1:1"));
        shared.add_faults(rules).unwrap();
        shared
    }

    #[test]
    fn next_n_fires_n_times_for_its_action_only() {
        let s = shared(vec![FaultRule::throttle("CreateRole").next(2)]);
        let fired: Vec<_> = (0..4).map(|_| s.decide("CreateRole").terminal).collect();
        assert_eq!(
            fired,
            [
                Some(FaultKind::Throttle),
                Some(FaultKind::Throttle),
                None,
                None
            ]
        );
        assert_eq!(s.decide("GetRole").terminal, None);
        assert_eq!(s.counts()["CreateRole"].throttled, 2);
        assert_eq!(s.counts()["CreateRole"].calls, 4);
    }

    #[test]
    fn seeded_rate_is_repeatable_and_near_the_rate() {
        let run = || {
            let s = shared(vec![FaultRule::service_failure("*").rate(0.25, 7)]);
            (0..1000)
                .map(|_| s.decide("ListRoles").terminal.is_some())
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let fired = first.iter().filter(|f| **f).count();
        assert!((200..300).contains(&fired), "{fired} of 1000 at rate 0.25");
    }

    #[test]
    fn latency_adds_up_and_the_first_terminal_rule_wins() {
        let s = shared(vec![
            FaultRule::latency("*", Duration::from_millis(5)),
            FaultRule::latency("GetRole", Duration::from_millis(7)),
            FaultRule::drop_connection("GetRole").next(1),
            FaultRule::throttle("GetRole").next(1),
        ]);
        let v = s.decide("GetRole");
        assert_eq!(v.delay, Duration::from_millis(12));
        assert_eq!(v.terminal, Some(FaultKind::Drop));
        // The throttle rule was not consulted, so it fires now.
        assert_eq!(s.decide("GetRole").terminal, Some(FaultKind::Throttle));
        assert_eq!(s.decide("GetRole").terminal, None);
    }

    #[test]
    fn invalid_rules_are_refused() {
        let s = Shared::new(ProxyConfig::new("http://127.0.0.1:1"));
        assert!(
            s.add_faults(vec![FaultRule::throttle("*").rate(1.5, 0)])
                .is_err()
        );
        let mut latency = FaultRule::latency("*", Duration::ZERO);
        latency.latency_ms = None;
        assert!(s.add_faults(vec![latency]).is_err());
        assert!(s.faults().is_empty());
    }

    #[test]
    fn action_comes_from_the_form_body_or_the_query() {
        assert_eq!(
            action_of(None, b"Version=2010-05-08&Action=GetRole&RoleName=x").as_deref(),
            Some("GetRole")
        );
        assert_eq!(
            action_of(Some("Action=ListRoles"), b"").as_deref(),
            Some("ListRoles")
        );
        assert_eq!(action_of(None, b"Version=2010-05-08"), None);
    }
}
