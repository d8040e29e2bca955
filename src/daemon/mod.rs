//! `kftenant run`: the reconcile loop, its HTTP endpoints and leader election.
//!
//! # Expected flow
//! Every cycle (on a timer with jitter, or at once on a valid webhook):
//! fetch the repository; if the head is new, validate it; a commit that fails
//! validation is reported (status, metrics, logs with every `file:line`) and
//! the last good commit stays the desired world. Then observe, plan, and
//! (unless `--plan-only`, and only while holding the lease) apply.
//!
//! # Guarantees
//! - Nothing is deleted because of a fetch failure, a parse error or an empty
//!   folder: the first two keep the last good desired world, the last is
//!   refused by the planner's prune guard.
//! - Only the lease holder writes; `--plan-only` never writes and needs no lease.
//! - On shutdown the current cycle finishes its running steps, the lease is
//!   released, and the process exits 0.

pub mod http;
pub mod lease;

use crate::desired::{self, Desired};
use crate::diag::Diagnostic;
use crate::live::Clients;
use crate::live::apply::{ApplyOptions, execute};
use crate::live::observe::{IamMode, Scope, observe};
use crate::plan::{Plan, PlanOptions, plan};
use crate::source::{Checkout, GitSource};
use crate::{model, report};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::Instrument;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Time between cycles without a new commit (drift correction).
    pub interval: Duration,
    /// Up to this much random delay is added to each interval.
    pub jitter: Duration,
    /// Never write; only plan and report.
    pub plan_only: bool,
    /// Address of the HTTP endpoints.
    pub listen: SocketAddr,
    /// Shared secret of the push webhook (never logged); `None` disables `/hook`.
    pub webhook_secret: Option<Vec<u8>>,
    /// How to read IAM.
    pub iam_mode: IamMode,
    /// How to execute plans.
    pub apply: ApplyOptions,
    /// Leader election; `None` runs as the only writer.
    pub lease: Option<lease::LeaseConfig>,
    /// `/readyz` stays ready this long after the last good cycle.
    pub ready_grace: Duration,
    /// Region for the AWS SDK when the environment names none.
    pub region: String,
    /// Attempts per AWS call.
    pub aws_max_attempts: u32,
    /// Hands the heap's free pages back to the operating system. Called after
    /// every cycle, when the cycle's observed world, plan inputs and API
    /// responses have just been freed: glibc keeps freed pages mapped (and
    /// counted in RSS) until told otherwise. Supplied by the binary, since the
    /// library forbids `unsafe`; `|| {}` where the allocator needs nothing.
    pub release_memory: fn(),
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    cycles_ok: AtomicU64,
    cycles_failed: AtomicU64,
    cycles_invalid: AtomicU64,
    hooks_accepted: AtomicU64,
    hooks_rejected: AtomicU64,
    fetch_failures: AtomicU64,
    /// Cycle durations, for the histogram.
    durations: Mutex<DurationHistogram>,
}

/// Upper bounds, in seconds, of the cycle-duration histogram's buckets.
const DURATION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Cycle durations as Prometheus needs them: a count per bucket, a sum and a
/// count. Fixed size, unlike a list of every duration, which grew by one entry
/// per cycle for the life of the process and was re-scanned on every scrape.
#[derive(Debug, Default, Clone, PartialEq)]
struct DurationHistogram {
    /// Cycles that took at most `DURATION_BUCKETS[i]` (cumulative, as exposed).
    buckets: [u64; DURATION_BUCKETS.len()],
    /// All cycles (the `+Inf` bucket).
    count: u64,
    /// Sum of all durations in milliseconds.
    sum_ms: u64,
}

impl DurationHistogram {
    fn observe(&mut self, ms: u64) {
        for (n, bound) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if (ms as f64) / 1000.0 <= bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
    }
}

/// What the daemon knows, for the endpoints.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// Head of the branch at the last fetch.
    pub current_commit: Option<String>,
    /// Last commit that passed validation (the desired world).
    pub last_good_commit: Option<String>,
    /// Last commit whose plan was applied without failures.
    pub last_applied_commit: Option<String>,
    /// Validation problems of the current commit, if it is broken.
    pub validation_errors: Vec<Diagnostic>,
    /// Errors of the last cycle (fetch, observe, apply), in words.
    pub last_errors: Vec<String>,
    /// The last plan (drift, pending changes, conflicts).
    pub last_plan: Option<Plan>,
    /// Unix seconds of the last successful cycle.
    pub last_success_unix: Option<u64>,
    /// Managed tenants in the desired world.
    pub tenants: usize,
    /// Cycle counter (for log correlation).
    pub cycle: u64,
}

/// State shared between the loop and the HTTP server.
pub struct Shared {
    /// Options.
    pub options: DaemonOptions,
    /// Status for `/status`, `/report`, `/readyz`.
    pub status: Mutex<Status>,
    /// Counters.
    pub metrics: Metrics,
    /// Wakes the loop (webhook).
    pub trigger: Notify,
    /// API calls, shared with the clients.
    pub calls: Arc<crate::live::CallCounter>,
    started: Instant,
    leader: AtomicBool,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    fn readiness(&self) -> (bool, String) {
        let st = self.status.lock().expect("status lock");
        match st.last_success_unix {
            Some(t) if now_unix().saturating_sub(t) <= self.options.ready_grace.as_secs() => {
                (true, format!("ready: last good cycle at {t}"))
            }
            Some(t) => (
                false,
                format!(
                    "not ready: last good cycle at {t}, over {} s ago: {:?}",
                    self.options.ready_grace.as_secs(),
                    st.last_errors
                ),
            ),
            None if self.started.elapsed() < self.options.ready_grace => (true, "starting".into()),
            None => (
                false,
                format!("not ready: no good cycle yet: {:?}", st.last_errors),
            ),
        }
    }

    fn status_json(&self) -> String {
        let st = self.status.lock().expect("status lock");
        let summary = st.last_plan.as_ref().map(|p| &p.summary);
        serde_json::to_string_pretty(&json!({
            "current_commit": st.current_commit,
            "last_good_commit": st.last_good_commit,
            "last_applied_commit": st.last_applied_commit,
            "validation_errors": st.validation_errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "last_errors": st.last_errors,
            "last_plan_summary": summary,
            "last_success_unix": st.last_success_unix,
            "tenants": st.tenants,
            "cycle": st.cycle,
            "leader": self.leader.load(Ordering::Relaxed),
            "plan_only": self.options.plan_only,
        }))
        .expect("status serialises")
            + "\n"
    }

    fn report_json(&self) -> String {
        let st = self.status.lock().expect("status lock");
        match &st.last_plan {
            Some(p) => serde_json::to_string_pretty(p).expect("plan serialises") + "\n",
            None => "null\n".into(),
        }
    }

    fn report_markdown(&self) -> String {
        let st = self.status.lock().expect("status lock");
        match &st.last_plan {
            Some(p) => report::markdown_parts(p, usize::MAX).concat(),
            None => "No report yet.\n".into(),
        }
    }

    fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let st = self.status.lock().expect("status lock");
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("# HELP kftenant_cycles_total Reconcile cycles by result.".into());
        line("# TYPE kftenant_cycles_total counter".into());
        for (result, v) in [
            ("success", &m.cycles_ok),
            ("error", &m.cycles_failed),
            ("invalid_commit", &m.cycles_invalid),
        ] {
            line(format!(
                "kftenant_cycles_total{{result=\"{result}\"}} {}",
                v.load(Ordering::Relaxed)
            ));
        }
        line("# HELP kftenant_cycle_duration_seconds Duration of reconcile cycles.".into());
        line("# TYPE kftenant_cycle_duration_seconds histogram".into());
        let durations = m.durations.lock().expect("durations lock").clone();
        for (b, n) in DURATION_BUCKETS.iter().zip(durations.buckets) {
            line(format!(
                "kftenant_cycle_duration_seconds_bucket{{le=\"{b}\"}} {n}"
            ));
        }
        line(format!(
            "kftenant_cycle_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            durations.count
        ));
        line(format!(
            "kftenant_cycle_duration_seconds_sum {}",
            durations.sum_ms as f64 / 1000.0
        ));
        line(format!(
            "kftenant_cycle_duration_seconds_count {}",
            durations.count
        ));
        line("# HELP kftenant_last_success_timestamp_seconds Unix time of the last successful cycle.".into());
        line("# TYPE kftenant_last_success_timestamp_seconds gauge".into());
        line(format!(
            "kftenant_last_success_timestamp_seconds {}",
            st.last_success_unix.unwrap_or(0)
        ));
        line("# HELP kftenant_last_applied_commit_info The last applied commit.".into());
        line("# TYPE kftenant_last_applied_commit_info gauge".into());
        line(format!(
            "kftenant_last_applied_commit_info{{commit=\"{}\"}} 1",
            st.last_applied_commit.as_deref().unwrap_or("")
        ));
        let summary = st
            .last_plan
            .as_ref()
            .map(|p| p.summary.clone())
            .unwrap_or_default();
        for (name, help, v) in [
            (
                "kftenant_managed_tenants",
                "Tenants in the desired world.",
                st.tenants,
            ),
            (
                "kftenant_drifted_resources",
                "Managed resources that differ from git.",
                summary.drift,
            ),
            (
                "kftenant_conflicts",
                "Live resources kftenant wants but does not own.",
                summary.conflicts,
            ),
            (
                "kftenant_validation_errors",
                "Problems in the current commit (0 when valid).",
                st.validation_errors.len(),
            ),
        ] {
            line(format!("# HELP {name} {help}"));
            line(format!("# TYPE {name} gauge"));
            line(format!("{name} {v}"));
        }
        line("# HELP kftenant_webhooks_total Push webhooks by result.".into());
        line("# TYPE kftenant_webhooks_total counter".into());
        line(format!(
            "kftenant_webhooks_total{{result=\"accepted\"}} {}",
            m.hooks_accepted.load(Ordering::Relaxed)
        ));
        line(format!(
            "kftenant_webhooks_total{{result=\"rejected\"}} {}",
            m.hooks_rejected.load(Ordering::Relaxed)
        ));
        line(
            "# HELP kftenant_git_fetch_failures_total Failed fetches of the tenant repository."
                .into(),
        );
        line("# TYPE kftenant_git_fetch_failures_total counter".into());
        line(format!(
            "kftenant_git_fetch_failures_total {}",
            m.fetch_failures.load(Ordering::Relaxed)
        ));
        line("# HELP kftenant_api_calls_total IAM and Kubernetes API calls by operation.".into());
        line("# TYPE kftenant_api_calls_total counter".into());
        for (op, n) in self.calls.snapshot() {
            let (api, op) = op.split_once(':').unwrap_or(("", &op));
            line(format!(
                "kftenant_api_calls_total{{api=\"{api}\",operation=\"{op}\"}} {n}"
            ));
        }
        line("# HELP kftenant_leader Whether this replica holds the lease (1) or not (0).".into());
        line("# TYPE kftenant_leader gauge".into());
        line(format!(
            "kftenant_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        ));
        out
    }
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    source: GitSource,
    options: DaemonOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let clients = Clients::from_env(&options.region, options.aws_max_attempts).await?;
    let shared = Arc::new(Shared {
        calls: clients.calls.clone(),
        leader: AtomicBool::new(options.lease.is_none()),
        options: options.clone(),
        status: Mutex::new(Status::default()),
        metrics: Metrics::default(),
        trigger: Notify::new(),
        started: Instant::now(),
    });
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving /healthz /readyz /metrics /status /report /hook");
    let server = tokio::spawn(serve(listener, shared.clone()));
    let lease_task = options
        .lease
        .clone()
        .filter(|_| !options.plan_only)
        .map(|cfg| {
            let (client, shared) = (clients.kube.clone(), shared.clone());
            tokio::spawn(async move { lease::keep(client, cfg, &shared.leader).await })
        });
    tokio::pin!(shutdown);
    let mut desired: Option<(String, Desired)> = None;
    loop {
        let cycle = {
            let mut st = shared.status.lock().expect("status lock");
            st.cycle += 1;
            st.cycle
        };
        // Shutdown is only looked at between cycles: a running cycle always
        // finishes its steps, so no IAM step is left half-written and unreported.
        let span = tracing::info_span!("cycle", cycle, commit = tracing::field::Empty);
        cycle_once(&shared, &clients, &source, &mut desired)
            .instrument(span)
            .await;
        (options.release_memory)();
        let wait = options.interval + jitter(options.jitter, cycle);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = shared.trigger.notified() => tracing::info!("webhook: reconciling now"),
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("shutting down");
    if let Some(t) = lease_task {
        t.abort();
        if let Some(cfg) = &options.lease {
            lease::release(clients.kube.clone(), cfg).await;
        }
    }
    server.abort();
    Ok(())
}

/// A deterministic spread in `0..max`, different per cycle and per process.
fn jitter(max: Duration, cycle: u64) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let seed = (u64::from(std::process::id()) << 32) ^ cycle.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Duration::from_millis(seed % max.as_millis().max(1) as u64)
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| http::handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

async fn cycle_once(
    shared: &Shared,
    clients: &Clients,
    source: &GitSource,
    desired: &mut Option<(String, Desired)>,
) {
    let started = Instant::now();
    let span = tracing::Span::current();
    let mut errors = Vec::new();
    // 1. Fetch (blocking git work off the async threads).
    let src = source.clone();
    match tokio::task::spawn_blocking(move || src.sync()).await {
        Ok(Ok(Checkout { commit, root })) => {
            span.record("commit", commit.as_str());
            shared.status.lock().expect("status lock").current_commit = Some(commit.clone());
            if desired.as_ref().map(|(c, _)| c) != Some(&commit) {
                match model::load_dir(&root) {
                    Ok(repo) => {
                        tracing::info!(tenants = repo.tenants.len(), "new commit is valid");
                        let mut st = shared.status.lock().expect("status lock");
                        st.validation_errors.clear();
                        st.last_good_commit = Some(commit.clone());
                        st.tenants = repo.tenants.len();
                        *desired = Some((commit, desired::render(&repo)));
                    }
                    Err(diags) => {
                        shared
                            .metrics
                            .cycles_invalid
                            .fetch_add(1, Ordering::Relaxed);
                        for d in &diags {
                            tracing::error!(problem = %d, "commit fails validation; keeping the last good commit");
                        }
                        shared.status.lock().expect("status lock").validation_errors = diags;
                    }
                }
            }
        }
        Ok(Err(e)) => {
            shared
                .metrics
                .fetch_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "fetch failed; keeping the last good checkout");
            errors.push(format!("fetch: {e}"));
        }
        Err(e) => errors.push(format!("fetch task: {e}")),
    }
    // 2. Observe, plan, apply against the last good desired world.
    if let Some((commit, want)) = desired.as_ref() {
        match observe(clients, &Scope::of(want), shared.options.iam_mode).await {
            Ok(observed) => match plan(
                want,
                &observed,
                &PlanOptions {
                    allow_mass_delete: false,
                    source_commit: Some(commit.clone()),
                },
            ) {
                Ok(p) => {
                    let writer = !shared.options.plan_only && shared.leader.load(Ordering::Relaxed);
                    tracing::info!(
                        changes = p.changes.len(),
                        drift = p.summary.drift,
                        conflicts = p.summary.conflicts,
                        writer,
                        "planned"
                    );
                    if writer && !p.is_empty() {
                        let r = execute(clients, &p, &shared.options.apply).await;
                        tracing::info!(
                            done = r.summary.done,
                            failed = r.summary.failed,
                            skipped = r.summary.skipped,
                            "applied"
                        );
                        for s in &r.results {
                            if let crate::applied::Outcome::Failed { code, message } = &s.outcome {
                                errors.push(format!("{}: {code}: {message}", s.address));
                            }
                        }
                        if r.converged() {
                            shared
                                .status
                                .lock()
                                .expect("status lock")
                                .last_applied_commit = Some(commit.clone());
                        }
                    } else if writer {
                        shared
                            .status
                            .lock()
                            .expect("status lock")
                            .last_applied_commit = Some(commit.clone());
                    }
                    shared.status.lock().expect("status lock").last_plan = Some(p);
                }
                Err(refused) => {
                    tracing::error!(error = %refused, "plan refused");
                    errors.push(refused.to_string());
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "observe failed");
                errors.push(format!("observe: {e}"));
            }
        }
    } else if errors.is_empty() {
        errors.push("no valid commit yet".into());
    }
    let ok = errors.is_empty();
    {
        let mut st = shared.status.lock().expect("status lock");
        if ok {
            st.last_success_unix = Some(now_unix());
        }
        st.last_errors = errors;
    }
    let counter = if ok {
        &shared.metrics.cycles_ok
    } else {
        &shared.metrics.cycles_failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    shared
        .metrics
        .durations
        .lock()
        .expect("durations lock")
        .observe(started.elapsed().as_millis() as u64);
}

/// Labels for logs: kept here so `main` need not know the daemon's internals.
pub fn describe(options: &DaemonOptions) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("interval", format!("{:?}", options.interval)),
        ("plan_only", options.plan_only.to_string()),
        ("listen", options.listen.to_string()),
        ("webhook", options.webhook_secret.is_some().to_string()),
        (
            "lease",
            options
                .lease
                .as_ref()
                .map_or("none".into(), |l| format!("{}/{}", l.namespace, l.name)),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_histogram_counts_cumulatively_with_inclusive_bounds() {
        let mut h = DurationHistogram::default();
        for ms in [100, 101, 2_500, 400_000] {
            h.observe(ms);
        }
        // le=0.1 holds 100 ms (bounds are inclusive), le=0.5 adds 101 ms,
        // le=2.5 adds 2.5 s; 400 s is only in +Inf.
        assert_eq!(h.buckets, [1, 2, 2, 3, 3, 3, 3, 3, 3, 3]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_ms, 402_701);
    }
}
