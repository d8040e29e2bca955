//! `kftenant run`: the reconcile loop, its HTTP endpoints and leader election.
//!
//! # Expected flow
//! Every cycle (on a timer with jitter, or at once on a valid webhook):
//! fetch the repository; with `--verify-signers`, refuse a head that is not
//! signed by an allowed key; if the head is new, validate it. A refused or
//! invalid commit is reported (status, metrics, logs with every `file:line`)
//! and the last good commit stays the desired world. Then observe, plan, and
//! (unless `--plan-only`, and only while holding the lease) apply. What the
//! cycle found is one [`CycleOutcome`], recorded once: status, metrics and the
//! closing log line always describe the same cycle.
//!
//! The last good commit is also recorded on the Lease (`lease` module), so a
//! daemon that starts on a broken or refused head heals from the recorded
//! commit, once it has checked that the branch still contains it (and, with
//! `--verify-signers`, its signature).
//!
//! # Guarantees
//! - Nothing is deleted because of a fetch failure, a parse error, a refused
//!   signature or an empty folder: the first three keep the last good desired
//!   world, the last is refused by the planner's prune guard.
//! - An unsigned or wrongly signed head is never applied (`--verify-signers`).
//! - Only the lease holder writes, and only while it is sure to hold the
//!   lease: the executor asks [`lease::Leadership`] before every call and
//!   stops (`LostLeadership`) as soon as a renewal fails or the last
//!   successful one is older than the renew deadline. `--plan-only` never
//!   writes and needs no lease.
//! - On shutdown the current cycle finishes its running steps, the lease is
//!   released, and [`run`] returns.
//!
//! # Errors
//! [`run`] fails only when it cannot start ([`Error`]); a cycle's failures are
//! part of its outcome, each with a stable code (`kftenant_errors_total`).

pub mod http;
pub mod lease;
pub mod metrics;

use crate::diag::Diagnostic;
use crate::git::verify::{AllowedSigners, Refusal};
use crate::git::{Checkout, GitSource, SourceError};
use crate::live::Clients;
use crate::live::apply::{AlwaysWrite, ApplyOptions, WriteGuard, execute};
use crate::live::observe::{IamMode, Scope, observe};
use crate::plan::desired::{self, Desired};
use crate::plan::{Plan, PlanOptions, plan};
use crate::status_page::{self, CommitInfo, CycleRecord, TenantStatus};
use crate::{model, report};
use lease::{KubeLease, Leadership};
use metrics::Metrics;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tracing::Instrument;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The IAM or Kubernetes client could not be made.
    #[error(transparent)]
    Clients(#[from] crate::live::Error),
    /// The HTTP endpoints could not listen.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

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
    /// Leader election; `None` runs as the only writer. The lease also
    /// keeps the last good commit across restarts.
    pub lease: Option<lease::LeaseConfig>,
    /// Apply only head commits signed by one of these keys (`--verify-signers`).
    pub signers: Option<AllowedSigners>,
    /// `/readyz` stays ready this long after the last good cycle.
    pub ready_grace: Duration,
    /// Region for the AWS SDK when the environment names none.
    pub region: String,
    /// Attempts per AWS call.
    pub aws_max_attempts: u32,
    /// The cluster to reconcile in a repository of several (`clusters/`):
    /// only its part of the repository is read.
    pub cluster: Option<String>,
    /// Hands the heap's free pages back to the operating system. Called after
    /// every cycle, when the cycle's observed world, plan inputs and API
    /// responses have just been freed: glibc keeps freed pages mapped (and
    /// counted in RSS) until told otherwise. Supplied by the binary, since the
    /// library forbids `unsafe`; `|| {}` where the allocator needs nothing.
    pub release_memory: fn(),
}

/// One problem of a cycle, with a stable code for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    /// Stable label (`FetchFailed`, `NoSuchEntity`, `Conflict`, ...).
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

impl CycleError {
    fn new(code: impl Into<String>, message: impl Into<String>) -> CycleError {
        CycleError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// What the validation of a new head commit found.
#[derive(Debug, Clone)]
pub enum Validation {
    /// The commit is valid: it is the desired world from now on.
    Valid {
        /// The commit.
        commit: String,
        /// Tenants in it.
        tenants: usize,
    },
    /// The commit fails validation; the last good one stays the desired world.
    Invalid {
        /// The commit.
        commit: String,
        /// Every problem, `file:line:column`.
        problems: Vec<Diagnostic>,
    },
}

/// A head commit refused by `--verify-signers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCommit {
    /// The commit.
    pub commit: String,
    /// Why.
    pub reason: Refusal,
}

/// Everything one cycle found, recorded at once by [`Shared::record`].
#[derive(Debug, Clone, Default)]
pub struct CycleOutcome {
    /// The cycle number.
    pub cycle: u64,
    /// The branch head fetched (`None` when the fetch failed).
    pub head: Option<String>,
    /// True when the repository could not be fetched (the last checkout was kept).
    pub fetch_failed: bool,
    /// What validating the head found, when it was validated.
    pub validation: Option<Validation>,
    /// The head, when `--verify-signers` refused it (not checked out, not validated).
    pub refused: Option<RefusedCommit>,
    /// The last good commit recorded on the lease, when this cycle took it
    /// as the desired world (the daemon started on a broken or refused head).
    pub recovered: Option<Validation>,
    /// The plan against the last good commit, when one was made.
    pub plan: Option<Plan>,
    /// The commit whose plan was fully applied (or was already converged) by this writer.
    pub applied: Option<String>,
    /// Problems, each with its code.
    pub errors: Vec<CycleError>,
    /// How long the cycle took.
    pub duration: Duration,
    /// Something waits for the Kubeflow controller (a new tenant's
    /// namespace): run again soon, not after the whole interval.
    pub requeue_soon: bool,
    /// The head's time and subject, for the status page.
    pub head_info: Option<CommitInfo>,
    /// Each tenant's state after this cycle, when it planned.
    pub tenants: Option<Vec<TenantStatus>>,
}

/// How soon a cycle that waits for the Kubeflow controller runs again.
const REQUEUE_SOON: Duration = Duration::from_secs(5);

impl CycleOutcome {
    /// `success`, `invalid_commit` (a broken head, the last good commit
    /// healed), `refused_commit` (a head `--verify-signers` refused, the
    /// last good commit healed) or `error`: the `result` label of
    /// `kftenant_cycles_total`.
    pub fn result(&self) -> &'static str {
        if !self.errors.is_empty() {
            "error"
        } else if self.refused.is_some() {
            "refused_commit"
        } else if matches!(self.validation, Some(Validation::Invalid { .. })) {
            "invalid_commit"
        } else {
            "success"
        }
    }
}

/// What the daemon knows, for the endpoints.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// Head of the branch at the last fetch.
    pub current_commit: Option<String>,
    /// Last commit that passed validation (the desired world).
    pub last_good_commit: Option<String>,
    /// Where it came from: `branch` (a head fetched by this process) or
    /// `lease` (recorded by an earlier run, the head being unusable).
    pub last_good_source: Option<&'static str>,
    /// Heads refused by `--verify-signers`, the latest first (at most
    /// [`REFUSED_KEPT`]).
    pub refused_commits: VecDeque<RefusedCommit>,
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
    /// The last [`HISTORY`] cycles, oldest first (the status page's chart).
    pub history: VecDeque<CycleRecord>,
    /// Each tenant's state as of the last cycle that planned.
    pub tenant_rows: Vec<TenantStatus>,
    /// That cycle and when it ended (Unix seconds).
    pub rows_as_of: Option<(u64, u64)>,
    /// Time and subject of the commits named above, with when each was
    /// first fetched (Unix seconds); only those still named are kept.
    pub commits: BTreeMap<String, (CommitInfo, u64)>,
    /// Since when (Unix seconds) `last_applied_commit` has been applied.
    pub applied_since_unix: Option<u64>,
}

/// Cycles kept for the status page's chart.
pub const HISTORY: usize = 60;
/// Refused commits `/status` lists.
pub const REFUSED_KEPT: usize = 10;

/// State shared between the loop and the HTTP server.
pub struct Shared {
    /// Options.
    pub options: DaemonOptions,
    /// Status for `/`, `/status`, `/report`, `/readyz`.
    pub status: Mutex<Status>,
    /// Metrics for `/metrics`.
    pub metrics: Metrics,
    /// Wakes the loop (webhook).
    pub trigger: Notify,
    started: Instant,
    /// This replica's view of the lease, when it takes part in the election
    /// (a lease is configured and it may write).
    leadership: Option<Arc<Leadership>>,
    /// The repository, without credentials, for the status page.
    repository: String,
    /// Secrets the status page must never show (webhook secret, git token,
    /// a password in the repository URL).
    secrets: Vec<String>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// True when this replica may write now: it holds the lease with
    /// certainty, or there is no lease (the only writer). With a lease and
    /// `--plan-only` it never is.
    pub fn leading(&self) -> bool {
        match &self.leadership {
            Some(l) => l.leading(),
            None => self.options.lease.is_none(),
        }
    }

    /// The executor's guard: the lease, or nothing to ask without one.
    fn guard(&self) -> Arc<dyn WriteGuard> {
        match &self.leadership {
            Some(l) => l.clone(),
            None => Arc::new(AlwaysWrite),
        }
    }

    /// Records a cycle's outcome: status and metrics under one lock, so
    /// `/status` never pairs one cycle's commit with another's plan.
    pub fn record(&self, outcome: CycleOutcome) {
        self.metrics
            .cycle(outcome.result(), outcome.duration.as_secs_f64());
        let mut st = self.status.lock().expect("status lock");
        let now = now_unix();
        st.cycle = outcome.cycle;
        if outcome.head.is_some() {
            st.current_commit.clone_from(&outcome.head);
        }
        if let Some(info) = &outcome.head_info {
            st.commits
                .entry(info.id.clone())
                .or_insert_with(|| (info.clone(), now));
        }
        if outcome.fetch_failed {
            self.metrics.fetch_failed();
        }
        match &outcome.validation {
            Some(Validation::Valid { commit, tenants }) => {
                st.validation_errors.clear();
                st.last_good_commit = Some(commit.clone());
                st.last_good_source = Some("branch");
                st.tenants = *tenants;
            }
            Some(Validation::Invalid { problems, .. }) => {
                st.validation_errors.clone_from(problems);
            }
            None => {}
        }
        if let Some(Validation::Valid { commit, tenants }) = &outcome.recovered {
            st.last_good_commit = Some(commit.clone());
            st.last_good_source = Some("lease");
            st.tenants = *tenants;
        }
        if let Some(refused) = &outcome.refused {
            st.validation_errors.clear();
            if st.refused_commits.front() != Some(refused) {
                self.metrics.refused(refused.reason.label());
                st.refused_commits.retain(|r| r.commit != refused.commit);
                st.refused_commits.push_front(refused.clone());
                st.refused_commits.truncate(REFUSED_KEPT);
            }
        }
        if let Some(commit) = &outcome.applied {
            if st.last_applied_commit.as_ref() != Some(commit) {
                st.applied_since_unix = Some(now);
            }
            st.last_applied_commit = Some(commit.clone());
            self.metrics.applied(commit);
        }
        let named = [
            st.current_commit.clone(),
            st.last_good_commit.clone(),
            st.last_applied_commit.clone(),
        ];
        st.commits
            .retain(|id, _| named.iter().flatten().any(|n| n == id));
        st.history.push_back(CycleRecord {
            cycle: outcome.cycle,
            finished_unix: now,
            result: outcome.result().to_string(),
            seconds: outcome.duration.as_secs_f64(),
            changes: outcome.plan.as_ref().map_or(0, |p| p.changes.len()),
        });
        while st.history.len() > HISTORY {
            st.history.pop_front();
        }
        if let Some(rows) = outcome.tenants {
            st.tenant_rows = rows;
            st.rows_as_of = Some((outcome.cycle, now));
        }
        if outcome.plan.is_some() {
            st.last_plan = outcome.plan;
        }
        if outcome.errors.is_empty() {
            st.last_success_unix = Some(now);
            self.metrics.success_at(now);
        }
        for e in &outcome.errors {
            self.metrics.error(&e.code);
        }
        st.last_errors = outcome.errors.iter().map(|e| e.message.clone()).collect();
        let summary = st.last_plan.as_ref().map(|p| &p.summary);
        self.metrics.world(&metrics::World {
            tenants: st.tenants,
            drifted: summary.map_or(0, |s| s.drift),
            conflicts: summary.map_or(0, |s| s.conflicts),
            held: summary.map_or(0, |s| s.held),
            validation_errors: crate::diag::count(&st.validation_errors),
        });
    }

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
            "current_commit_refused": st.refused_commits.front().is_some_and(|r| Some(&r.commit) == st.current_commit.as_ref()),
            "refused_commits": st.refused_commits.iter().map(|r| json!({
                "commit": r.commit,
                "reason": r.reason.to_string(),
                "kind": r.reason.label(),
            })).collect::<Vec<_>>(),
            "last_good_commit": st.last_good_commit,
            "last_good_source": st.last_good_source,
            "last_applied_commit": st.last_applied_commit,
            "validation_errors": st.validation_errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "last_errors": st.last_errors,
            "last_plan_summary": summary,
            "held_deletions": st.last_plan.as_ref().map(|p| &p.held),
            "conflicts": st.last_plan.as_ref().map(|p| &p.conflicts),
            "last_success_unix": st.last_success_unix,
            "tenants": st.tenants,
            "cycle": st.cycle,
            "leader": self.leading(),
            "verify_signers": self.options.signers.is_some(),
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

    /// The status page (`/`): everything in [`Status`], with leadership and
    /// the secrets taken out.
    pub(crate) fn status_page(&self) -> String {
        use status_page::{ClusterSection, CommitCard, DaemonView, Page, Tone};
        let st = self.status.lock().expect("status lock");
        let now = now_unix();
        let info = |id: &str| -> (CommitInfo, Option<u64>) {
            match st.commits.get(id) {
                Some((i, seen)) => (i.clone(), Some(*seen)),
                None => (
                    CommitInfo {
                        id: id.to_string(),
                        ..Default::default()
                    },
                    None,
                ),
            }
        };
        let leader = self.leading();
        let leadership = match (&self.options.lease, self.options.plan_only) {
            (_, true) => status_page::Leadership::PlanOnly,
            (None, false) => status_page::Leadership::OnlyWriter,
            (Some(l), false) => status_page::Leadership::Elected {
                lease: format!("{}/{}", l.namespace, l.name),
                identity: l.identity.clone(),
                leader,
                holder: self.leadership.as_ref().and_then(|l| l.holder()),
            },
        };
        let why_not_written = || -> Option<String> {
            if self.options.plan_only {
                Some("plan only: this replica never applies".into())
            } else if !leader {
                Some("this replica does not hold the lease: the leader applies".into())
            } else {
                None
            }
        };
        let applied = match &st.last_applied_commit {
            Some(id) => {
                let (commit, _) = info(id);
                CommitCard {
                    title: "Commit applied".into(),
                    commit: Some(commit),
                    event: st.applied_since_unix.map(|t| ("applied".to_string(), t)),
                    note: None,
                    tone: Tone::Good,
                }
            }
            None => CommitCard {
                title: "Commit applied".into(),
                commit: None,
                event: None,
                note: Some(why_not_written().unwrap_or_else(|| {
                    "nothing applied yet: IAM and the cluster do not match a commit fully".into()
                })),
                tone: if why_not_written().is_some() {
                    Tone::Neutral
                } else {
                    Tone::Warn
                },
            },
        };
        let newest = match &st.current_commit {
            Some(id) => {
                let (commit, seen) = info(id);
                let (note, tone) = if !st.validation_errors.is_empty() {
                    (
                        format!(
                            "fails validation ({} problem{}, below): not applied",
                            st.validation_errors.len(),
                            if st.validation_errors.len() == 1 {
                                ""
                            } else {
                                "s"
                            }
                        ),
                        Tone::Bad,
                    )
                } else if st.last_applied_commit.as_ref() == Some(id) {
                    ("applied".to_string(), Tone::Good)
                } else if let Some(why) = why_not_written() {
                    (format!("valid; {why}"), Tone::Neutral)
                } else {
                    (
                        "valid, not fully applied yet (see the errors and tenants below)".into(),
                        Tone::Warn,
                    )
                };
                CommitCard {
                    title: "Newest commit seen".into(),
                    commit: Some(commit),
                    event: seen.map(|t| ("first seen".to_string(), t)),
                    note: Some(note),
                    tone,
                }
            }
            None => CommitCard {
                title: "Newest commit seen".into(),
                commit: None,
                event: None,
                note: Some("nothing fetched yet".into()),
                tone: Tone::Warn,
            },
        };
        let cluster = st
            .last_plan
            .as_ref()
            .map(|p| p.cluster.clone())
            .unwrap_or_else(|| "(not known yet)".into());
        let as_of = st
            .rows_as_of
            .map(|(cycle, t)| format!("as of cycle {cycle}, {} ago", status_page::age(now, t)));
        let page = Page {
            title: "status".into(),
            now_unix: now,
            refresh_seconds: Some(self.options.interval.as_secs().clamp(5, 30) as u32),
            commits: vec![applied, newest],
            daemon: Some(DaemonView {
                leadership,
                cycles: st.history.iter().cloned().collect(),
                repository: self.repository.clone(),
            }),
            validation: st
                .current_commit
                .clone()
                .filter(|_| !st.validation_errors.is_empty())
                .map(|c| (c, st.validation_errors.clone())),
            errors: st.last_errors.clone(),
            clusters: vec![ClusterSection {
                cluster,
                as_of,
                tenants: st.tenant_rows.clone(),
            }],
            redact: self.secrets.clone(),
        };
        drop(st);
        page.render()
    }

    fn metrics_text(&self) -> String {
        self.metrics.set_leader(self.leading());
        self.metrics.encode()
    }
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    source: GitSource,
    options: DaemonOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let clients = Clients::from_env(&options.region, options.aws_max_attempts, None).await?;
    let elected = options.lease.clone().filter(|_| !options.plan_only);
    let (repository, url_secret) = crate::git::url_without_credentials(&source.url);
    let secrets = secrets(&options, &source, url_secret);
    let shared = Arc::new(Shared {
        leadership: elected.as_ref().map(|cfg| Arc::new(Leadership::new(cfg))),
        repository,
        secrets,
        options: options.clone(),
        status: Mutex::new(Status::default()),
        metrics: Metrics::new(clients.calls.clone()),
        trigger: Notify::new(),
        started: Instant::now(),
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: options.listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_or_else(|_| options.listen.to_string(), |a| a.to_string());
    tracing::info!(listen = %local, "serving / (status page) /healthz /readyz /metrics /status /report /hook");
    let server = tokio::spawn(serve(listener, shared.clone()));
    // The lease is renewed in a task of its own, so it goes on during a
    // cycle; without kube's retry layer, so a refused renewal counts at once.
    let lease_task = elected.clone().map(|cfg| {
        let store = KubeLease::new(clients.kube_single_attempt(), &cfg);
        let shared = shared.clone();
        tokio::spawn(async move {
            let leadership = shared.leadership.as_ref().expect("elected");
            lease::keep(store, cfg, leadership).await
        })
    });
    tokio::pin!(shutdown);
    let mut state = LoopState::default();
    for cycle in 1.. {
        // Shutdown is only looked at between cycles: a running cycle always
        // finishes its steps, so no IAM step is left half-written and unreported.
        let span = tracing::info_span!("cycle", cycle, commit = tracing::field::Empty);
        let outcome = cycle_once(&shared, &clients, &source, &mut state, cycle)
            .instrument(span)
            .await;
        let wait = if outcome.requeue_soon {
            REQUEUE_SOON.min(options.interval)
        } else {
            options.interval + jitter(options.jitter, cycle)
        };
        shared.record(outcome);
        (options.release_memory)();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = shared.trigger.notified() => tracing::info!("webhook: reconciling now"),
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("shutting down");
    if let (Some(t), Some(cfg), Some(leadership)) = (lease_task, &elected, &shared.leadership) {
        t.abort();
        let store = KubeLease::new(clients.kube_single_attempt(), cfg);
        lease::release(&store, cfg, leadership).await;
    }
    server.abort();
    Ok(())
}

/// What the status page must never show: the webhook secret, the git token,
/// a secret in the repository URL, and the AWS secret key and session token
/// of the environment when they look real (a 40-character secret key; the
/// short placeholders of local test setups, such as `testing`, would only
/// blank out ordinary words).
fn secrets(options: &DaemonOptions, source: &GitSource, url_secret: Option<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(s) = &options.webhook_secret {
        out.push(String::from_utf8_lossy(s).into_owned());
    }
    if let crate::git::GitAuth::Token(t) = &source.auth {
        out.push(t.clone());
    }
    out.extend(url_secret);
    for var in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
        if let Ok(v) = std::env::var(var) {
            if v.len() >= 16 {
                out.push(v);
            }
        }
    }
    out.retain(|s| !s.is_empty());
    // Longest first, so a secret that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// What the loop carries from one cycle to the next.
#[derive(Default)]
struct LoopState {
    /// The last good commit and its desired world.
    desired: Option<(String, Desired)>,
    /// The last commit that failed validation and its problems (not re-read).
    rejected: Option<(String, Vec<Diagnostic>)>,
    /// The last good commit recorded on the lease (`Some(None)`: none), read
    /// once, when first needed.
    recorded: Option<Option<String>>,
    /// The head at which healing from the recorded commit failed, and why
    /// (not tried again until the head moves).
    recovery_failed: Option<(String, CycleError)>,
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

fn source_code(e: &SourceError) -> &'static str {
    match e {
        SourceError::Git { .. } => "FetchFailed",
        SourceError::NoBranch(_) => "NoBranch",
        SourceError::Unverified { .. } => "UnverifiedCommit",
        SourceError::NotOnBranch { .. } => "NotOnBranch",
    }
}

/// Fetches and, for a new head, verifies and validates it, recording both in
/// `out`; then, when this run has no desired world yet and the head gives
/// none, heals from the last good commit recorded on the lease.
async fn sync(
    shared: &Shared,
    clients: &Clients,
    source: &GitSource,
    state: &mut LoopState,
    out: &mut CycleOutcome,
) {
    let src = source.clone();
    let signers = shared.options.signers.clone();
    let synced = tokio::task::spawn_blocking(move || {
        src.sync_verified(signers.as_ref()).map(|c| {
            let meta = crate::git::commit_meta(&c.root, &c.commit);
            (c, meta)
        })
    })
    .await;
    let checkout = match synced {
        Ok(Ok((c, meta))) => {
            out.head_info = Some(CommitInfo {
                id: c.commit.clone(),
                subject: meta.as_ref().map(|m| m.subject.clone()),
                committed_unix: meta.map(|m| m.time_unix),
            });
            c
        }
        Ok(Err(SourceError::Unverified { commit, reason })) => {
            // Fetched but neither checked out nor validated: the last good
            // commit stays the desired world.
            tracing::Span::current().record("commit", commit.as_str());
            let known = shared
                .status
                .lock()
                .expect("status lock")
                .refused_commits
                .iter()
                .any(|r| r.commit == commit);
            if !known {
                tracing::error!(%commit, %reason, "head commit refused: not signed by an allowed signer; keeping the last good commit");
            }
            out.head = Some(commit.clone());
            out.head_info = Some(CommitInfo {
                id: commit.clone(),
                ..Default::default()
            });
            out.refused = Some(RefusedCommit { commit, reason });
            recover(shared, clients, source, state, out).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "fetch failed; keeping the last good checkout");
            out.fetch_failed = true;
            out.errors
                .push(CycleError::new(source_code(&e), format!("fetch: {e}")));
            return;
        }
        Err(e) => {
            out.fetch_failed = true;
            out.errors
                .push(CycleError::new("FetchFailed", format!("fetch task: {e}")));
            return;
        }
    };
    let Checkout { commit, root } = checkout;
    tracing::Span::current().record("commit", commit.as_str());
    out.head = Some(commit.clone());
    if state.desired.as_ref().is_some_and(|(c, _)| *c == commit) {
        return;
    }
    if let Some((c, problems)) = &state.rejected {
        if *c == commit {
            out.validation = Some(Validation::Invalid {
                commit,
                problems: problems.clone(),
            });
            recover(shared, clients, source, state, out).await;
            return;
        }
    }
    let loaded = load_part(
        &model::DirSource::new(&root),
        shared.options.cluster.as_deref(),
    );
    match loaded {
        Ok(repo) => {
            tracing::info!(tenants = repo.tenants.len(), "new commit is valid");
            out.validation = Some(Validation::Valid {
                commit: commit.clone(),
                tenants: repo.tenants.len(),
            });
            if let Some(l) = &shared.leadership {
                l.set_last_good(&commit);
            }
            state.desired = Some((commit, desired::render(&repo)));
            state.rejected = None;
        }
        Err(problems) => {
            for d in &problems {
                tracing::error!(problem = %d, "commit fails validation; keeping the last good commit");
            }
            state.rejected = Some((commit.clone(), problems.clone()));
            out.validation = Some(Validation::Invalid { commit, problems });
            recover(shared, clients, source, state, out).await;
        }
    }
}

/// This daemon's part of a repository: its cluster's (`--cluster`), or the
/// repository's one cluster.
fn load_part(
    src: &dyn model::Source,
    cluster: Option<&str>,
) -> Result<model::Repository, Vec<crate::diag::Diagnostic>> {
    match cluster {
        Some(name) => model::load_cluster(src, name),
        None => model::load(src),
    }
}

/// The head (`out.head`) is unusable and this run has no desired world yet
/// (it started on that head): heal from the last good commit recorded on
/// the lease, once git confirms that the branch still contains it (it is the
/// head or an ancestor of it) and, with `--verify-signers`, that it is signed.
/// A recorded commit the branch no longer contains (force-pushed away) is
/// refused with a message on `/status`: nothing is applied then.
async fn recover(
    shared: &Shared,
    clients: &Clients,
    source: &GitSource,
    state: &mut LoopState,
    out: &mut CycleOutcome,
) {
    let (Some(head), None, Some(cfg)) = (&out.head, &state.desired, &shared.options.lease) else {
        return;
    };
    if let Some((at, error)) = &state.recovery_failed {
        if at == head {
            out.errors.push(error.clone());
            return;
        }
    }
    let recorded = match &state.recorded {
        Some(r) => r.clone(),
        None => {
            let store = KubeLease::new(clients.kube.clone(), cfg);
            match lease::read_last_good(&store).await {
                Ok(r) => {
                    state.recorded = Some(r.clone());
                    r
                }
                Err(e) => {
                    out.errors.push(CycleError::new(
                        "LeaseReadFailed",
                        format!(
                            "reading the last good commit from lease {}/{}: {e}",
                            cfg.namespace, cfg.name
                        ),
                    ));
                    return;
                }
            }
        }
    };
    let Some(commit) = recorded else {
        return;
    };
    let (src, signers, at) = (
        source.clone(),
        shared.options.signers.clone(),
        commit.clone(),
    );
    let head_id = head.clone();
    let cluster = shared.options.cluster.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        src.commit_tree(&at, &head_id, signers.as_ref())
            .map(|tree| load_part(&tree, cluster.as_deref()))
    })
    .await;
    let lease_name = format!("{}/{}", cfg.namespace, cfg.name);
    let failure = match loaded {
        Ok(Ok(Ok(repo))) => {
            tracing::warn!(%commit, lease = %lease_name, "healing from the last good commit recorded on the lease");
            out.recovered = Some(Validation::Valid {
                commit: commit.clone(),
                tenants: repo.tenants.len(),
            });
            if let Some(l) = &shared.leadership {
                l.set_last_good(&commit);
            }
            state.desired = Some((commit, desired::render(&repo)));
            return;
        }
        Ok(Ok(Err(problems))) => CycleError::new(
            "LastGoodInvalid",
            format!(
                "the last good commit {commit} recorded on lease {lease_name} no longer validates ({} problems, the first: {}); nothing is applied",
                problems.len(),
                problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
        ),
        Ok(Err(e @ SourceError::NotOnBranch { .. })) => CycleError::new(
            "LastGoodNotOnBranch",
            format!(
                "refusing the last good commit recorded on lease {lease_name}: {e}; nothing is applied until the branch head is valid"
            ),
        ),
        Ok(Err(e @ SourceError::Unverified { .. })) => CycleError::new(
            "LastGoodUnverified",
            format!(
                "refusing the last good commit recorded on lease {lease_name}: {e}; nothing is applied"
            ),
        ),
        Ok(Err(e)) => CycleError::new(
            source_code(&e),
            format!("reading the last good commit {commit} recorded on lease {lease_name}: {e}"),
        ),
        Err(e) => CycleError::new("FetchFailed", format!("reading the last good commit: {e}")),
    };
    tracing::error!(code = %failure.code, "{}", failure.message);
    state.recovery_failed = Some((head.clone(), failure.clone()));
    out.errors.push(failure);
}

async fn cycle_once(
    shared: &Shared,
    clients: &Clients,
    source: &GitSource,
    state: &mut LoopState,
    cycle: u64,
) -> CycleOutcome {
    let started = Instant::now();
    let mut out = CycleOutcome {
        cycle,
        ..Default::default()
    };
    sync(shared, clients, source, state, &mut out).await;
    // Observe, plan, apply against the last good desired world.
    let Some((commit, want)) = state.desired.as_ref() else {
        if out.errors.is_empty() {
            out.errors
                .push(CycleError::new("NoValidCommit", "no valid commit yet"));
        }
        out.duration = started.elapsed();
        return out;
    };
    let observed = match observe(clients, &Scope::of(want), shared.options.iam_mode).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "observe failed");
            out.errors
                .push(CycleError::new(e.code(), format!("observe: {e}")));
            out.duration = started.elapsed();
            return out;
        }
    };
    let opts = PlanOptions {
        allow_mass_delete: false,
        source_commit: Some(commit.clone()),
    };
    let p = plan(want, &observed, &opts);
    drop(observed);
    // A held deletion stops nothing else; it is said every cycle until git
    // confirms it or brings the tenant back.
    for h in &p.held {
        tracing::warn!(tenant = %h.tenant, resources = ?h.resources, reason = %h.reason, "deletion held back");
    }
    let writer = !shared.options.plan_only && shared.leading();
    tracing::info!(
        changes = p.changes.len(),
        drift = p.summary.drift,
        conflicts = p.summary.conflicts,
        writer,
        "planned"
    );
    let mut all_done = true;
    let mut report = None;
    if writer && !p.is_empty() {
        // Asked before every call: a replica that stops being sure of the
        // lease during the apply stops writing there.
        let opts = ApplyOptions {
            guard: shared.guard(),
            ..shared.options.apply.clone()
        };
        let r = execute(clients, &p, &opts).await;
        tracing::info!(
            done = r.summary.done,
            failed = r.summary.failed,
            skipped = r.summary.skipped,
            "applied"
        );
        let mut stopped = None;
        for s in &r.results {
            match &s.outcome {
                crate::applied::Outcome::Failed { code, message } => {
                    out.requeue_soon |= code == "Timeout";
                    out.errors.push(CycleError::new(
                        code.clone(),
                        format!("{}: {code}: {message}", s.address),
                    ));
                }
                crate::applied::Outcome::Stopped { code, reason } => {
                    let n = stopped.get_or_insert((code, reason, 0)).2 + 1;
                    stopped = Some((code, reason, n));
                }
                _ => {}
            }
        }
        if let Some((code, reason, n)) = stopped {
            tracing::warn!(code = %code, steps = n, "writing stopped: {reason}");
            out.errors.push(CycleError::new(
                code.clone(),
                format!("{code}: writing stopped, {n} steps not attempted: {reason}"),
            ));
        }
        all_done = r.all_done();
        report = Some(r);
    }
    out.tenants = Some(status_page::tenant_rows(
        &status_page::tenants_of(want),
        &p,
        report.as_ref(),
    ));
    // Applied: everything git wants is there (nothing failed, in conflict or held back).
    if writer && all_done && p.conflicts.is_empty() && p.held.is_empty() {
        out.applied = Some(commit.clone());
    }
    out.plan = Some(p);
    out.duration = started.elapsed();
    out
}

/// Labels for logs: kept here so `main` need not know the daemon's internals.
pub fn describe(options: &DaemonOptions) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (
            "interval",
            humantime::format_duration(options.interval).to_string(),
        ),
        ("plan_only", options.plan_only.to_string()),
        ("listen", options.listen.to_string()),
        ("webhook", options.webhook_secret.is_some().to_string()),
        ("verify_signers", options.signers.is_some().to_string()),
        (
            "lease",
            options
                .lease
                .as_ref()
                .map_or("none".into(), |l| format!("{}/{}", l.namespace, l.name)),
        ),
    ])
}
