//! A fault-injecting HTTP/1.1 proxy in front of moto's IAM endpoint.
//!
//! moto never throttles, never fails and never drops a connection, so the
//! failure paths of kftenant's IAM client (retries, backoff, giving up) need
//! something between the two. This proxy forwards every request and, per IAM
//! action (optionally only for calls whose form body contains a given text),
//! can instead answer `Throttling` (HTTP 400, the IAM error XML), answer
//! `ServiceFailure` (HTTP 500), delay the call or drop the connection; or
//! forward it and then lose moto's answer (drop the connection, or answer 500
//! although the write landed); or let a stranger create the same entity first
//! (`preempt`). The error bodies are produced here, not by moto: this is the one
//! place where the stack answers for AWS, because no local component can
//! produce the case.
//!
//! Two behaviours of real IAM that moto lacks are added here, both on by
//! default and both changeable at run time (`/_proxy/settings`):
//! - **Pagination** ([`Settings::page_size`]): IAM returns at most `MaxItems`
//!   (default 100, at most 1,000) entities per page of
//!   `GetAccountAuthorizationDetails` and `ListRoles`, with `IsTruncated` and an
//!   opaque `Marker`, and may return fewer ("IAM might return fewer results, even
//!   when there are more results available"). moto ignores `MaxItems` on GAAD
//!   and pages `ListRoles` without IAM's limit, so the proxy asks moto for the
//!   whole list and re-pages moto's real answer itself: it cuts the member lists
//!   of the XML to the page (`min(MaxItems, page_size)` entities, counted across
//!   GAAD's four lists in document order, as IAM counts them), sets
//!   `IsTruncated` and `Marker`, and leaves every byte of every member as moto
//!   wrote it. Nothing is invented: the pages concatenate to moto's answer. The
//!   marker is an offset into moto's whole answer at the time of each page, so
//!   an entity created or deleted while a client pages may be skipped or seen
//!   twice (IAM gives no stronger promise across pages either).
//! - **A write rate limit** ([`Settings::writes_per_second`]): a token bucket
//!   over every call that is not a read (`Get*`, `List*`, `Generate*`,
//!   `Simulate*`); above it the call is answered `Throttling` as IAM does, and
//!   counted as `rate_limited`. Off by default.
//!
//! It counts every call per action and per outcome (each page is a call), so a
//! test can assert the exact number of IAM calls kftenant made, and keeps a
//! timeline of calls (when each arrived and when moto's answer came back), so
//! a test can say when a write landed.
//!
//! Two ways in:
//! - Rust: [`IamProxy::start`] returns a handle; the proxy runs on its own thread
//!   and stops when the handle is dropped.
//! - HTTP, for scripts (see `examples/iam-proxy.rs`):
//!   `GET /_proxy/counts`, `GET /_proxy/faults`, `POST /_proxy/faults` (a JSON
//!   rule or array of rules, appended), `DELETE /_proxy/faults`,
//!   `POST /_proxy/reset` (rules and counts, not settings),
//!   `GET|POST /_proxy/settings` (`{"page_size": 1000, "writes_per_second": 15,
//!   "write_burst": 15}`; a POST replaces them all, absent fields are off).
//!
//! A rule in JSON: `{"action": "CreateRole", "fault": "throttle", "next": 3}`,
//! `{"action": "*", "fault": "latency", "latency_ms": 200, "rate": 0.25, "seed": 7}`
//! or `{"action": "CreateRole", "fault": "preempt", "body_contains": "RoleName=a-role"}`.
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
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
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
    /// Forward the call to moto, then close the connection without passing
    /// moto's answer on: the write landed, the client never hears of it.
    DropResponse,
    /// Forward the call to moto, then answer `ServiceFailure` (HTTP 500)
    /// instead of moto's answer: the write landed, the client hears it failed.
    ServiceFailureAfter,
    /// A stranger creates the same entity first: a copy of the call without
    /// its `Tags.member.*` and `Description` parameters (so without kftenant's
    /// ownership marks) goes to moto, then the call itself, whose answer
    /// (moto's own `EntityAlreadyExists`) goes back. For `CreateRole` and
    /// `CreatePolicy`.
    Preempt,
}

impl FaultKind {
    /// Faults that decide the call before it reaches moto.
    fn answers_instead(self) -> bool {
        matches!(
            self,
            FaultKind::Throttle | FaultKind::ServiceFailure | FaultKind::Drop
        )
    }
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
    /// Only calls whose form body contains this text (e.g.
    /// `RoleName=team-a-role`), to aim at one entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
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
            body_contains: None,
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

    /// Forward, then drop the connection: the write lands, its answer is lost.
    pub fn drop_response(action: &str) -> Self {
        Self::new(action, FaultKind::DropResponse)
    }

    /// Forward, then answer `ServiceFailure`: the write lands, the client hears 500.
    pub fn service_failure_after(action: &str) -> Self {
        Self::new(action, FaultKind::ServiceFailureAfter)
    }

    /// A stranger creates the entity (without kftenant's tags) just before the call.
    pub fn preempt(action: &str) -> Self {
        Self::new(action, FaultKind::Preempt)
    }

    /// Only calls whose form body contains `text`.
    #[must_use]
    pub fn matching(mut self, text: &str) -> Self {
        self.body_contains = Some(text.to_string());
        self
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
        if self.fault == FaultKind::Preempt
            && !matches!(self.action.as_str(), "CreateRole" | "CreatePolicy")
        {
            return Err("preempt is for CreateRole or CreatePolicy".into());
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
    /// Calls answered `Throttling` by the write rate limit (not by a rule).
    pub rate_limited: u64,
    pub service_failures: u64,
    pub dropped: u64,
    /// Calls forwarded whose answer was then lost (`drop_response`,
    /// `service_failure_after`; also counted as forwarded).
    pub lost_after_forward: u64,
    /// Calls a stranger's copy went ahead of (`preempt`).
    pub preempted: u64,
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
    /// Settings at start (IAM's pagination, no rate limit).
    pub settings: Settings,
}

/// What the proxy adds to moto besides faults; see the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Re-page `GetAccountAuthorizationDetails` and `ListRoles` with at most
    /// this many entities a page (and at most the call's `MaxItems`); `None`
    /// passes moto's answer through.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Answer `Throttling` to writes above this rate (token bucket).
    #[serde(default)]
    pub writes_per_second: Option<f64>,
    /// The bucket's size: writes allowed at once after a quiet spell
    /// (default: one second's worth).
    #[serde(default)]
    pub write_burst: Option<f64>,
}

/// IAM's largest page.
pub const IAM_MAX_ITEMS: u32 = 1000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            page_size: Some(IAM_MAX_ITEMS),
            writes_per_second: None,
            write_burst: None,
        }
    }
}

impl Settings {
    fn validate(&self) -> Result<(), String> {
        if self.page_size.is_some_and(|n| n == 0 || n > IAM_MAX_ITEMS) {
            return Err(format!("page_size must be within 1..={IAM_MAX_ITEMS}"));
        }
        if self
            .writes_per_second
            .is_some_and(|r| !(r.is_finite() && r > 0.0))
        {
            return Err("writes_per_second must be above 0".into());
        }
        if self
            .write_burst
            .is_some_and(|b| !(b.is_finite() && b >= 1.0))
        {
            return Err("write_burst must be at least 1".into());
        }
        Ok(())
    }
}

impl ProxyConfig {
    pub fn new(upstream: impl Into<String>) -> Self {
        ProxyConfig {
            upstream: upstream.into().trim_end_matches('/').to_string(),
            account_id: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings::default(),
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

/// IAM's throttling as a token bucket: `rate` tokens a second, at most `burst`.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: std::time::Instant::now(),
        }
    }

    /// Takes a token if there is one.
    fn take(&mut self, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Inner {
    rules: Vec<RuleState>,
    counts: Counts,
    settings: Settings,
    bucket: Option<TokenBucket>,
    timeline: Vec<CallRecord>,
    /// Calls received and not answered yet.
    in_flight: u64,
}

impl Inner {
    fn new(settings: Settings) -> Inner {
        let bucket = settings
            .writes_per_second
            .map(|r| TokenBucket::new(r, settings.write_burst.unwrap_or(r.max(1.0))));
        Inner {
            rules: Vec::new(),
            counts: Counts::new(),
            settings,
            bucket,
            timeline: Vec::new(),
            in_flight: 0,
        }
    }
}

/// True for IAM's read actions; everything else writes (and is rate-limited).
pub fn is_read(action: &str) -> bool {
    ["Get", "List", "Generate", "Simulate"]
        .iter()
        .any(|p| action.starts_with(p))
        || action == "(none)"
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
            inner: Mutex::new(Inner::new(config.settings.clone())),
            config,
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

    pub fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    /// Replaces the settings (and restarts the write bucket full).
    pub fn set_settings(&self, settings: Settings) -> Result<(), String> {
        settings.validate()?;
        let mut inner = self.lock();
        let mut new = Inner::new(settings);
        std::mem::swap(&mut new.rules, &mut inner.rules);
        std::mem::swap(&mut new.counts, &mut inner.counts);
        std::mem::swap(&mut new.timeline, &mut inner.timeline);
        new.in_flight = inner.in_flight;
        *inner = new;
        Ok(())
    }

    fn decide(&self, action: &str, body: &str) -> Verdict {
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
            if let Some(text) = &state.rule.body_contains {
                if !body.contains(text.as_str()) {
                    continue;
                }
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
        // The rate limit sees the calls no rule answered, as IAM would.
        let mut rate_limited = false;
        if verdict.terminal.is_none_or(|t| !t.answers_instead()) && !is_read(action) {
            if let Some(bucket) = inner.bucket.as_mut() {
                rate_limited = !bucket.take(std::time::Instant::now());
            }
        }
        let counts = inner.counts.get_mut(action).expect("inserted above");
        if !verdict.delay.is_zero() {
            counts.delayed += 1;
        }
        if rate_limited {
            counts.rate_limited += 1;
            verdict.terminal = Some(FaultKind::Throttle);
            return verdict;
        }
        match verdict.terminal {
            Some(FaultKind::Throttle) => counts.throttled += 1,
            Some(FaultKind::ServiceFailure) => counts.service_failures += 1,
            Some(FaultKind::Drop) => counts.dropped += 1,
            Some(FaultKind::DropResponse | FaultKind::ServiceFailureAfter) => {
                counts.lost_after_forward += 1
            }
            Some(FaultKind::Preempt) => counts.preempted += 1,
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

    /// Every call so far, in order of arrival.
    pub fn timeline(&self) -> Vec<CallRecord> {
        self.shared.timeline()
    }

    /// Calls received and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight()
    }

    pub fn counts(&self) -> Counts {
        self.shared.counts()
    }

    pub fn settings(&self) -> Settings {
        self.shared.settings()
    }

    /// Replace the settings. Panics on invalid ones: that is a bug in the test.
    pub fn set_settings(&self, settings: Settings) {
        self.shared
            .set_settings(settings)
            .unwrap_or_else(|e| panic!("invalid proxy settings: {e}"));
    }

    /// Re-page GAAD and ListRoles at most `n` entities a page.
    pub fn set_page_size(&self, n: u32) {
        self.set_settings(Settings {
            page_size: Some(n),
            ..self.settings()
        });
    }

    /// Writes summed over every action: those that reached moto, and those
    /// answered `Throttling` by the write rate limit.
    pub fn writes(&self) -> (u64, u64) {
        self.counts()
            .iter()
            .filter(|(a, _)| !is_read(a))
            .fold((0, 0), |(f, t), (_, c)| {
                (f + c.forwarded, t + c.rate_limited)
            })
    }

    /// The counts of one action (all zero if it was never called).
    pub fn action(&self, action: &str) -> ActionCounts {
        self.counts().remove(action).unwrap_or_default()
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
    respond(&shared, &client, parts, body, &action, &mut call).await
}

/// A call in the timeline until it is over.
struct InFlight<'a> {
    shared: &'a Shared,
    index: usize,
    /// moto answered it (whatever the client was then told).
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared.finished(self.index, self.answered);
    }
}

/// The faults, pages and forwarding of one IAM call.
async fn respond(
    shared: &Shared,
    client: &Client<HttpConnector, Full<Bytes>>,
    parts: hyper::http::request::Parts,
    body: Bytes,
    action: &str,
    call: &mut InFlight<'_>,
) -> Result<Response<Full<Bytes>>, DroppedOnPurpose> {
    let action = action.to_string();
    let verdict = shared.decide(&action, std::str::from_utf8(&body).unwrap_or_default());
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    let request_id = format!(
        "kftenant-proxy-{:08}",
        shared.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    let service_failure = |request_id: &str| {
        iam_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Receiver",
            "ServiceFailure",
            "Request processing has failed due to some unknown error, exception or failure.",
            request_id,
        )
    };
    match verdict.terminal {
        Some(FaultKind::Throttle) => {
            return Ok(iam_error(
                StatusCode::BAD_REQUEST,
                "Sender",
                "Throttling",
                "Rate exceeded",
                &request_id,
            ));
        }
        Some(FaultKind::ServiceFailure) => return Ok(service_failure(&request_id)),
        Some(FaultKind::Drop) => return Err(DroppedOnPurpose),
        _ => {}
    }
    let page = match PageRequest::of(shared.settings().page_size, &action, &body) {
        Ok(page) => page,
        Err(message) => {
            return Ok(iam_error(
                StatusCode::BAD_REQUEST,
                "Sender",
                "ValidationError",
                &message,
                &request_id,
            ));
        }
    };
    if verdict.terminal == Some(FaultKind::Preempt) {
        // The stranger's answer is not the client's business.
        let _ = forward(shared, client, &parts, without_ownership(&body)).await;
    }
    let upstream_body = page.as_ref().map_or(body, |p| p.upstream_body.clone());
    let (mut response, body) = match forward(shared, client, &parts, upstream_body).await {
        Ok(answer) => {
            call.answered = true;
            answer
        }
        Err(e) => {
            shared.record(&action, |c| c.unreachable += 1);
            return Ok(plain(StatusCode::BAD_GATEWAY, &format!("iam proxy: {e}")));
        }
    };
    let failed = response.status.is_client_error() || response.status.is_server_error();
    shared.record(&action, |c| {
        c.forwarded += 1;
        if failed {
            c.upstream_errors += 1;
        }
    });
    match verdict.terminal {
        Some(FaultKind::DropResponse) => return Err(DroppedOnPurpose),
        Some(FaultKind::ServiceFailureAfter) => return Ok(service_failure(&request_id)),
        _ => {}
    }
    let body = match page {
        Some(page) if response.status.is_success() => match page.cut(&action, &body) {
            Ok(cut) => cut,
            Err(e) => {
                return Ok(plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("iam proxy: cannot page moto's {action} answer: {e}"),
                ));
            }
        },
        _ => body,
    };
    // The body may have changed: hyper sets the length of the one sent.
    response.headers.remove(CONTENT_LENGTH);
    response.headers.remove(TRANSFER_ENCODING);
    Ok(Response::from_parts(response, Full::new(body)))
}

/// Sends a request like `parts` with `body` to moto (in the world's account)
/// and reads the whole answer.
async fn forward(
    shared: &Shared,
    client: &Client<HttpConnector, Full<Bytes>>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<(hyper::http::response::Parts, Bytes), String> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: hyper::Uri = format!("{}{}", shared.config.upstream, path)
        .parse()
        .map_err(|_| "bad upstream URL".to_string())?;
    let mut request = Request::builder().method(parts.method.clone()).uri(uri);
    let headers = request.headers_mut().expect("a valid request so far");
    for (name, value) in &parts.headers {
        if name != CONTENT_LENGTH {
            headers.append(name, value.clone());
        }
    }
    if let Some(account) = &shared.config.account_id {
        if !headers.contains_key(ACCOUNT_HEADER) {
            if let Ok(value) = HeaderValue::from_str(account) {
                headers.insert(ACCOUNT_HEADER, value);
            }
        }
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("moto unreachable: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|_| "moto hung up".to_string())?
        .to_bytes();
    Ok((parts, body))
}

/// A call's form body without `Tags.member.*` and `Description`: the same
/// create, by someone who does not mark what they make as kftenant's.
fn without_ownership(body: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let kept: Vec<&str> = text
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !key.starts_with("Tags.member.") && key != "Description"
        })
        .collect();
    Bytes::from(kept.join("&"))
}

/// The form parameter `key` of a query-protocol body (values kftenant and
/// the proxy use here are plain digits and letters, so not decoded).
fn form_param<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// The marker the proxy gives: an offset into moto's whole answer. IAM's are
/// opaque too; clients only pass them back.
const MARKER_PREFIX: &str = "kftenant-proxy-page-";

/// One page asked of a paginated read that the proxy re-pages.
#[derive(Debug, PartialEq)]
struct PageRequest {
    /// Entities before the page.
    offset: usize,
    /// Entities on a full page: `min(MaxItems, page_size)`.
    size: usize,
    /// The call as sent to moto: without `MaxItems` and `Marker`, asking for
    /// everything.
    upstream_body: Bytes,
}

/// The member lists of each re-paged action, in document order (GAAD counts
/// its users, groups, roles and policies together, as IAM does).
fn paged_lists(action: &str) -> &'static [&'static str] {
    match action {
        "GetAccountAuthorizationDetails" => &[
            "UserDetailList",
            "GroupDetailList",
            "RoleDetailList",
            "Policies",
        ],
        "ListRoles" => &["Roles"],
        _ => &[],
    }
}

impl PageRequest {
    /// The page `body` asks for, or `None` when the action is not re-paged
    /// (or paging is off); the error message of IAM's `ValidationError` for a
    /// `MaxItems` or `Marker` IAM would refuse.
    fn of(
        page_size: Option<u32>,
        action: &str,
        body: &[u8],
    ) -> Result<Option<PageRequest>, String> {
        let Some(page_size) = page_size else {
            return Ok(None);
        };
        if paged_lists(action).is_empty() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(body);
        let max_items = match form_param(&text, "MaxItems") {
            None => 100,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=IAM_MAX_ITEMS).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {IAM_MAX_ITEMS}"
                    ));
                }
            },
        };
        let offset = match form_param(&text, "Marker") {
            None => 0,
            Some(m) => m
                .strip_prefix(MARKER_PREFIX)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("Invalid Marker: {m}"))?,
        };
        let mut upstream: Vec<&str> = text
            .split('&')
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                key != "MaxItems" && key != "Marker"
            })
            .collect();
        // moto ignores MaxItems on GAAD; on ListRoles it pages (100 by
        // default, no upper limit), so ask it for everything at once.
        if action == "ListRoles" {
            upstream.push("MaxItems=100000000");
        }
        Ok(Some(PageRequest {
            offset,
            size: max_items.min(page_size) as usize,
            upstream_body: Bytes::from(upstream.join("&")),
        }))
    }

    /// moto's whole answer cut to this page: the member lists keep only the
    /// page's entities (byte for byte as moto wrote them), `IsTruncated` and
    /// `Marker` say whether and where the next page starts.
    fn cut(&self, action: &str, xml: &[u8]) -> Result<Bytes, String> {
        let xml = std::str::from_utf8(xml).map_err(|_| "not UTF-8".to_string())?;
        let mut lists: Vec<XmlList> = paged_lists(action)
            .iter()
            .filter_map(|tag| XmlList::find(xml, tag).transpose())
            .collect::<Result<_, _>>()?;
        lists.sort_by_key(|l| l.start);
        let total: usize = lists.iter().map(|l| l.members.len()).sum();
        if self.offset > total {
            return Err(format!("marker past the end ({} of {total})", self.offset));
        }
        let end = (self.offset + self.size).min(total);
        let mut out = String::with_capacity(xml.len());
        let (mut at, mut seen) = (0, 0);
        for list in &lists {
            out.push_str(&xml[at..list.start]);
            let kept: Vec<&str> = list
                .members
                .iter()
                .enumerate()
                .filter(|(i, _)| (self.offset..end).contains(&(seen + i)))
                .map(|(_, r)| &xml[r.clone()])
                .collect();
            seen += list.members.len();
            if kept.is_empty() {
                out.push_str(&format!("<{}/>", list.tag));
            } else {
                out.push_str(&format!("<{}>{}</{}>", list.tag, kept.concat(), list.tag));
            }
            at = list.end;
        }
        out.push_str(&xml[at..]);
        // moto's own IsTruncated (and Marker) give way to the page's.
        let truncated = end < total;
        let flag = element_range(&out, "IsTruncated").ok_or("no IsTruncated")?;
        if out[flag.clone()].contains("true") {
            return Err("moto paged its answer itself".into());
        }
        let mut replacement = format!("<IsTruncated>{truncated}</IsTruncated>");
        if truncated {
            replacement.push_str(&format!("<Marker>{MARKER_PREFIX}{end}</Marker>"));
        }
        out.replace_range(flag, &replacement);
        if let Some(marker) = element_range(&out, "Marker").filter(|_| !truncated) {
            out.replace_range(marker, "");
        }
        Ok(Bytes::from(out))
    }
}

/// The byte range of the first `<tag>...</tag>` element (no nesting of the
/// same tag), or of `<tag/>`.
fn element_range(xml: &str, tag: &str) -> Option<std::ops::Range<usize>> {
    let empty = format!("<{tag}/>");
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    match (xml.find(&open), xml.find(&empty)) {
        (Some(s), e) if e.is_none_or(|e| s < e) => {
            let end = xml[s..].find(&close)? + s + close.len();
            Some(s..end)
        }
        (_, Some(e)) => Some(e..e + empty.len()),
        _ => None,
    }
}

/// A member list of a query-protocol XML answer: where it is and the byte
/// ranges of its top-level `<member>` elements.
#[derive(Debug)]
struct XmlList {
    tag: &'static str,
    start: usize,
    end: usize,
    members: Vec<std::ops::Range<usize>>,
}

impl XmlList {
    /// Finds `<tag>` (or `<tag/>`) and splits it into its members, counting
    /// nested `<member>` elements (attachments, tags, versions) so only the
    /// list's own are cut. Text never holds a `<` (XML escapes it).
    fn find(xml: &str, tag: &'static str) -> Result<Option<XmlList>, String> {
        let empty = format!("<{tag}/>");
        let open = format!("<{tag}>");
        let Some(start) = xml.find(&open) else {
            return Ok(xml.find(&empty).map(|start| XmlList {
                tag,
                start,
                end: start + empty.len(),
                members: Vec::new(),
            }));
        };
        let close = format!("/{tag}");
        let mut members = Vec::new();
        let (mut depth, mut member_start) = (0usize, 0);
        let mut at = start + open.len();
        loop {
            let lt = xml[at..]
                .find('<')
                .map(|i| at + i)
                .ok_or_else(|| format!("unterminated <{tag}>"))?;
            let gt = xml[lt..]
                .find('>')
                .map(|i| lt + i)
                .ok_or_else(|| format!("unterminated tag in <{tag}>"))?;
            let name = &xml[lt + 1..gt];
            at = gt + 1;
            if name == close && depth == 0 {
                return Ok(Some(XmlList {
                    tag,
                    start,
                    end: at,
                    members,
                }));
            } else if name == "member/" {
                if depth == 0 {
                    members.push(lt..at);
                }
            } else if name == "member" || name.starts_with("member ") {
                if depth == 0 {
                    member_start = lt;
                }
                depth += 1;
            } else if name == "/member" {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("stray </member> in <{tag}>"))?;
                if depth == 0 {
                    members.push(member_start..at);
                }
            }
        }
    }
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
        (Method::GET, "/_proxy/settings") => json(StatusCode::OK, &shared.settings()),
        (Method::POST, "/_proxy/settings") => {
            let settings = match serde_json::from_slice::<Settings>(&body) {
                Ok(settings) => settings,
                Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("bad settings: {e}")),
            };
            match shared.set_settings(settings) {
                Ok(()) => json(StatusCode::OK, &shared.settings()),
                Err(e) => plain(StatusCode::BAD_REQUEST, &e),
            }
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "GET /_proxy/counts, GET|POST|DELETE /_proxy/faults, POST /_proxy/reset, GET|POST /_proxy/settings",
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
        let fired: Vec<_> = (0..4)
            .map(|_| s.decide("CreateRole", "").terminal)
            .collect();
        assert_eq!(
            fired,
            [
                Some(FaultKind::Throttle),
                Some(FaultKind::Throttle),
                None,
                None
            ]
        );
        assert_eq!(s.decide("GetRole", "").terminal, None);
        assert_eq!(s.counts()["CreateRole"].throttled, 2);
        assert_eq!(s.counts()["CreateRole"].calls, 4);
    }

    #[test]
    fn seeded_rate_is_repeatable_and_near_the_rate() {
        let run = || {
            let s = shared(vec![FaultRule::service_failure("*").rate(0.25, 7)]);
            (0..1000)
                .map(|_| s.decide("ListRoles", "").terminal.is_some())
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
        let v = s.decide("GetRole", "");
        assert_eq!(v.delay, Duration::from_millis(12));
        assert_eq!(v.terminal, Some(FaultKind::Drop));
        // The throttle rule was not consulted, so it fires now.
        assert_eq!(s.decide("GetRole", "").terminal, Some(FaultKind::Throttle));
        assert_eq!(s.decide("GetRole", "").terminal, None);
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

    /// moto 5.2.5's answer for two roles (one with a nested attachment and
    /// tags) and one policy (with a nested version), as it wrote it.
    const GAAD: &str = concat!(
        r#"<GetAccountAuthorizationDetailsResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><GetAccountAuthorizationDetailsResult>"#,
        r#"<UserDetailList/><GroupDetailList/><RoleDetailList>"#,
        r#"<member><Path>/kftenant/</Path><RoleName>a</RoleName><AssumeRolePolicyDocument>{}</AssumeRolePolicyDocument><RolePolicyList/>"#,
        r#"<AttachedManagedPolicies><member><PolicyName>pp</PolicyName><PolicyArn>arn:aws:iam::1:policy/pp</PolicyArn></member></AttachedManagedPolicies>"#,
        r#"<Tags><member><Key>a</Key><Value>b</Value></member></Tags><RoleLastUsed/></member>"#,
        r#"<member><Path>/kftenant/</Path><RoleName>b</RoleName><AttachedManagedPolicies/><Tags/></member>"#,
        r#"</RoleDetailList><Policies><member><Arn>arn:aws:iam::1:policy/pp</Arn><Description/>"#,
        r#"<PolicyVersionList><member><Document>%7B%7D</Document><VersionId>v1</VersionId></member></PolicyVersionList></member></Policies>"#,
        r#"<IsTruncated>false</IsTruncated></GetAccountAuthorizationDetailsResult>"#,
        r#"<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetAccountAuthorizationDetailsResponse>"#,
    );

    fn page(size: u32, body: &str) -> PageRequest {
        PageRequest::of(
            Some(size),
            "GetAccountAuthorizationDetails",
            body.as_bytes(),
        )
        .unwrap()
        .unwrap()
    }

    fn names(xml: &str) -> Vec<String> {
        xml.split("<RoleName>")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().to_string())
            .chain(
                xml.split("<Arn>")
                    .skip(1)
                    .map(|s| s.split('<').next().unwrap().to_string()),
            )
            .collect()
    }

    #[test]
    fn gaad_is_cut_into_pages_that_add_up_to_motos_answer() {
        let first = page(2, "Action=GetAccountAuthorizationDetails&MaxItems=1000");
        assert_eq!((first.offset, first.size), (0, 2));
        assert_eq!(
            first.upstream_body, "Action=GetAccountAuthorizationDetails",
            "moto is asked for everything"
        );
        let one = String::from_utf8(
            first
                .cut("GetAccountAuthorizationDetails", GAAD.as_bytes())
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(names(&one), ["a", "b"]);
        assert!(one.contains("<Policies/>"), "{one}");
        assert!(
            one.contains(&format!(
                "<IsTruncated>true</IsTruncated><Marker>{MARKER_PREFIX}2</Marker>"
            )),
            "{one}"
        );
        // The nested members of role a are whole.
        assert!(one.contains("<AttachedManagedPolicies><member><PolicyName>pp</PolicyName>"));
        let second = page(
            2,
            &format!("Action=GetAccountAuthorizationDetails&MaxItems=1000&Marker={MARKER_PREFIX}2"),
        );
        let two = String::from_utf8(
            second
                .cut("GetAccountAuthorizationDetails", GAAD.as_bytes())
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert_eq!(names(&two), ["arn:aws:iam::1:policy/pp"]);
        assert!(two.contains("<RoleDetailList/>"), "{two}");
        assert!(
            two.contains("<IsTruncated>false</IsTruncated></GetAccountAuthorizationDetailsResult>")
        );
        assert!(two.contains("<PolicyVersionList><member><Document>%7B%7D</Document>"));
        // A page as large as the answer is the answer.
        let whole = page(1000, "Action=GetAccountAuthorizationDetails&MaxItems=1000");
        assert_eq!(
            whole
                .cut("GetAccountAuthorizationDetails", GAAD.as_bytes())
                .unwrap(),
            GAAD
        );
        // MaxItems is honoured below the page size; IAM's default is 100.
        assert_eq!(
            page(1000, "Action=GetAccountAuthorizationDetails&MaxItems=1").size,
            1
        );
        assert_eq!(
            page(1000, "Action=GetAccountAuthorizationDetails").size,
            100
        );
    }

    #[test]
    fn list_roles_asks_moto_for_everything_and_bad_paging_is_refused() {
        let p = PageRequest::of(
            Some(1000),
            "ListRoles",
            b"Action=ListRoles&PathPrefix=/k/&MaxItems=1000",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p.upstream_body,
            "Action=ListRoles&PathPrefix=/k/&MaxItems=100000000"
        );
        let moto = "<ListRolesResponse><ListRolesResult><Roles><member><RoleName>x</RoleName></member><member><RoleName>y</RoleName></member></Roles><IsTruncated>false</IsTruncated></ListRolesResult></ListRolesResponse>";
        let p = PageRequest::of(
            Some(1),
            "ListRoles",
            b"Action=ListRoles&MaxItems=1000&Marker=kftenant-proxy-page-1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p.cut("ListRoles", moto.as_bytes()).unwrap(),
            "<ListRolesResponse><ListRolesResult><Roles><member><RoleName>y</RoleName></member></Roles><IsTruncated>false</IsTruncated></ListRolesResult></ListRolesResponse>"
        );
        assert!(
            PageRequest::of(Some(1000), "ListRoles", b"Action=ListRoles&MaxItems=1001").is_err()
        );
        assert!(PageRequest::of(Some(1000), "ListRoles", b"Action=ListRoles&Marker=7").is_err());
        assert_eq!(
            PageRequest::of(None, "ListRoles", b"Action=ListRoles"),
            Ok(None)
        );
        assert_eq!(
            PageRequest::of(Some(5), "GetRole", b"Action=GetRole"),
            Ok(None)
        );
    }

    #[test]
    fn a_stranger_creates_without_ownership_marks() {
        assert_eq!(
            without_ownership(
                b"Action=CreateRole&RoleName=r&Tags.member.1.Key=k&Tags.member.1.Value=v&Path=/p/"
            ),
            "Action=CreateRole&RoleName=r&Path=/p/"
        );
        assert_eq!(
            without_ownership(b"Action=CreatePolicy&Description=Managed+by&PolicyName=p"),
            "Action=CreatePolicy&PolicyName=p"
        );
        let s = shared(vec![
            FaultRule::preempt("CreateRole")
                .matching("RoleName=b&")
                .next(1),
        ]);
        assert_eq!(
            s.decide("CreateRole", "Action=CreateRole&RoleName=a&")
                .terminal,
            None
        );
        assert_eq!(
            s.decide("CreateRole", "Action=CreateRole&RoleName=b&")
                .terminal,
            Some(FaultKind::Preempt)
        );
        assert!(FaultRule::preempt("AttachRolePolicy").validate().is_err());
    }

    #[test]
    fn the_write_bucket_throttles_writes_above_its_rate_only() {
        let s = shared(vec![]);
        s.set_settings(Settings {
            writes_per_second: Some(1.0),
            write_burst: Some(3.0),
            ..Settings::default()
        })
        .unwrap();
        let verdicts: Vec<_> = (0..5)
            .map(|_| s.decide("CreateRole", "").terminal)
            .collect();
        assert_eq!(
            verdicts.iter().filter(|v| v.is_none()).count(),
            3,
            "{verdicts:?}"
        );
        assert_eq!(s.counts()["CreateRole"].rate_limited, 2);
        assert_eq!(
            s.decide("GetAccountAuthorizationDetails", "").terminal,
            None,
            "reads are not limited"
        );
        let mut bucket = TokenBucket::new(10.0, 1.0);
        let t0 = std::time::Instant::now();
        assert!(bucket.take(t0));
        assert!(!bucket.take(t0));
        assert!(bucket.take(t0 + Duration::from_millis(100)));
        assert!(
            s.set_settings(Settings {
                page_size: Some(0),
                ..Settings::default()
            })
            .is_err()
        );
    }
}
