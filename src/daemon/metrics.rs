//! The daemon's Prometheus metrics, on `prometheus-client` (OpenMetrics text).
//!
//! Counters and gauges are updated once per cycle from its [`CycleOutcome`](super::CycleOutcome);
//! API calls are read from the clients' [`CallCounter`] at each scrape.

use crate::live::CallCounter;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Upper bounds, in seconds, of the cycle-duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

type Labels = Vec<(&'static str, String)>;

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// The gauges that describe the desired and live worlds after a cycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct World {
    /// Tenants in the desired world.
    pub tenants: usize,
    /// Managed resources that differ from git.
    pub drifted: usize,
    /// Live resources kftenant wants but does not own.
    pub conflicts: usize,
    /// Deletions held back.
    pub held: usize,
    /// Problems in the current commit.
    pub validation_errors: usize,
}

/// Every metric the daemon exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    cycles: Family<Labels, Counter>,
    cycle_duration: Histogram,
    last_success: Gauge,
    applied_commit: Family<Labels, Gauge>,
    managed_tenants: Gauge,
    drifted: Gauge,
    conflicts: Gauge,
    held: Gauge,
    validation_errors: Gauge,
    errors: Family<Labels, Counter>,
    webhooks: Family<Labels, Counter>,
    fetch_failures: Counter,
    refused_commits: Family<Labels, Counter>,
    leader: Gauge,
}

impl Metrics {
    /// The metrics, registered under the `kftenant_` prefix, with `calls`
    /// read at each scrape.
    pub fn new(calls: Arc<CallCounter>) -> Metrics {
        let mut registry = Registry::with_prefix("kftenant");
        let m = Metrics {
            cycles: Family::default(),
            cycle_duration: Histogram::new(DURATION_BUCKETS),
            last_success: Gauge::default(),
            applied_commit: Family::default(),
            managed_tenants: Gauge::default(),
            drifted: Gauge::default(),
            conflicts: Gauge::default(),
            held: Gauge::default(),
            validation_errors: Gauge::default(),
            errors: Family::default(),
            webhooks: Family::default(),
            fetch_failures: Counter::default(),
            refused_commits: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("cycles", "Reconcile cycles by result", m.cycles.clone());
        registry.register(
            "cycle_duration_seconds",
            "Duration of reconcile cycles",
            m.cycle_duration.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful cycle",
            m.last_success.clone(),
        );
        registry.register(
            "last_applied_commit_info",
            "The last applied commit",
            m.applied_commit.clone(),
        );
        registry.register(
            "managed_tenants",
            "Tenants in the desired world",
            m.managed_tenants.clone(),
        );
        registry.register(
            "drifted_resources",
            "Managed resources that differ from git",
            m.drifted.clone(),
        );
        registry.register(
            "conflicts",
            "Live resources kftenant wants but does not own",
            m.conflicts.clone(),
        );
        registry.register(
            "held_deletions",
            "Tenants gone from git whose deletion is held back (not confirmed in [prune] decommissioned, or over max_deletions)",
            m.held.clone(),
        );
        registry.register(
            "validation_errors",
            "Problems in the current commit (0 when valid)",
            m.validation_errors.clone(),
        );
        registry.register(
            "errors",
            "Errors of cycles by stable code (fetch, validation, observe, plan, apply)",
            m.errors.clone(),
        );
        registry.register("webhooks", "Push webhooks by result", m.webhooks.clone());
        registry.register(
            "git_fetch_failures",
            "Failed fetches of the tenant repository",
            m.fetch_failures.clone(),
        );
        registry.register(
            "refused_commits",
            "Head commits refused by --verify-signers (each counted once), by reason: unsigned, unknown_key, bad_signature, unsupported",
            m.refused_commits.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica holds the lease (1) or not (0)",
            m.leader.clone(),
        );
        registry.register_collector(Box::new(ApiCalls(calls)));
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts a cycle by result (`success`, `error`, `invalid_commit`) and its duration.
    pub fn cycle(&self, result: &str, seconds: f64) {
        self.cycles.get_or_create(&label("result", result)).inc();
        self.cycle_duration.observe(seconds);
    }

    /// Counts an error by its stable code.
    pub fn error(&self, code: &str) {
        self.errors.get_or_create(&label("code", code)).inc();
    }

    /// Sets the gauges that describe the desired and live worlds.
    pub fn world(&self, w: &World) {
        let set = |g: &Gauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&self.managed_tenants, w.tenants);
        set(&self.drifted, w.drifted);
        set(&self.conflicts, w.conflicts);
        set(&self.held, w.held);
        set(&self.validation_errors, w.validation_errors);
    }

    /// Records the unix time of a successful cycle.
    pub fn success_at(&self, unix: u64) {
        self.last_success
            .set(i64::try_from(unix).unwrap_or(i64::MAX));
    }

    /// Records the last applied commit (one series).
    pub fn applied(&self, commit: &str) {
        self.applied_commit.clear();
        self.applied_commit
            .get_or_create(&label("commit", commit))
            .set(1);
    }

    /// Counts a webhook by result (`accepted`, `rejected`, `too_large`).
    pub fn webhook(&self, result: &str) {
        self.webhooks.get_or_create(&label("result", result)).inc();
    }

    /// Counts a head commit refused by `--verify-signers`, by reason.
    pub fn refused(&self, reason: &str) {
        self.refused_commits
            .get_or_create(&label("reason", reason))
            .inc();
    }

    /// Counts a failed fetch.
    pub fn fetch_failed(&self) {
        self.fetch_failures.inc();
    }

    /// Records leadership.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// `kftenant_api_calls_total{api,operation}` and
/// `kftenant_api_call_seconds_total{api,operation}`, from the clients' counter.
#[derive(Debug)]
struct ApiCalls(Arc<CallCounter>);

impl Collector for ApiCalls {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let labels = |op: &str| -> Labels {
            let (api, operation) = op.split_once(':').unwrap_or(("", op));
            vec![
                ("api", api.to_string()),
                ("operation", operation.to_string()),
            ]
        };
        let mut calls = encoder.encode_descriptor(
            "api_calls",
            "IAM and Kubernetes API calls by operation",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (op, s) in &stats {
            ConstCounter::new(s.count).encode(calls.encode_family(&labels(op))?)?;
        }
        let mut seconds = encoder.encode_descriptor(
            "api_call_seconds",
            "Time spent waiting for IAM and Kubernetes API calls, by operation",
            None,
            ConstCounter::new(0f64).metric_type(),
        )?;
        for (op, s) in &stats {
            ConstCounter::new(s.total.as_secs_f64()).encode(seconds.encode_family(&labels(op))?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn metrics_encode_with_their_names_labels_and_buckets() {
        let calls = Arc::new(CallCounter::default());
        calls.record("iam:ListRoles", 2, Duration::from_millis(500));
        let m = Metrics::new(calls);
        for ms in [100, 101, 2_500, 400_000] {
            m.cycle("success", ms as f64 / 1000.0);
        }
        m.cycle("invalid_commit", 0.01);
        m.error("NoSuchEntity");
        m.applied("abc");
        m.applied("def");
        m.world(&World {
            tenants: 3,
            drifted: 1,
            held: 2,
            ..Default::default()
        });
        let text = m.encode();
        for line in [
            "kftenant_cycles_total{result=\"success\"} 4",
            "kftenant_cycles_total{result=\"invalid_commit\"} 1",
            // Bounds are inclusive: 0.1 holds 100 ms, 0.5 adds 101 ms, 2.5 adds 2.5 s.
            "kftenant_cycle_duration_seconds_bucket{le=\"0.1\"} 2",
            "kftenant_cycle_duration_seconds_bucket{le=\"2.5\"} 4",
            "kftenant_cycle_duration_seconds_bucket{le=\"+Inf\"} 5",
            "kftenant_errors_total{code=\"NoSuchEntity\"} 1",
            "kftenant_last_applied_commit_info{commit=\"def\"} 1",
            "kftenant_managed_tenants 3",
            "kftenant_drifted_resources 1",
            "kftenant_held_deletions 2",
            "kftenant_api_calls_total{api=\"iam\",operation=\"ListRoles\"} 2",
            "kftenant_api_call_seconds_total{api=\"iam\",operation=\"ListRoles\"} 0.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("commit=\"abc\""),
            "one applied commit series"
        );
    }

    #[test]
    fn the_shipped_alerts_name_metrics_that_exist() {
        let m = Metrics::new(Arc::new(CallCounter::default()));
        // Labelled families show once they have a series.
        m.cycle("success", 1.0);
        m.error("Throttling");
        m.applied("abc");
        m.webhook("accepted");
        m.refused("unsigned");
        let text = m.encode();
        let rules = include_str!("../../deploy/monitoring/prometheusrule.yaml");
        let mut named = 0;
        for (i, _) in rules.match_indices("kftenant_") {
            let name: String = rules[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            named += 1;
            // Counters are typed by their name without `_total`.
            let family = name.strip_suffix("_total").unwrap_or(&name);
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# TYPE {family} "))),
                "the alert rules name `{name}`, which /metrics does not expose:\n{text}"
            );
        }
        assert!(named >= 5, "{named} metric names in the rules");
    }
}
