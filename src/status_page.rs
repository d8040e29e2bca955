//! The status page: one self-contained HTML document, rendered on the server
//! from plain data. `kftenant run` serves it at `/` (refreshing by itself);
//! `kftenant drift --format html` writes the same page, without the daemon's
//! parts, to a file for CI artifacts.
//!
//! # What it owns
//! - [`Page`], the data the page shows, and [`Page::render`].
//! - [`tenant_rows`]: each tenant's [`TenantState`] and the reasons for it,
//!   from a plan and, when the plan was applied, the apply report.
//! - [`content_security_policy`]: the page loads nothing from anywhere; its
//!   one inline script and one style sheet are allowed by their SHA-256 only.
//!
//! # Guarantees
//! - Everything that comes from the repository or the live world (tenant
//!   names, owners, reasons, file paths, commit messages, errors) is escaped,
//!   in text and in attributes: markup in it shows as text. No datum is put
//!   inside the script; the script reads the rows' `data-` attributes.
//! - Strings named in [`Page::redact`] (webhook secrets, git tokens) never
//!   appear in the output, escaped or not.
//!
//! # Must not
//! Use the network, the clock or the file system: the time is
//! [`Page::now_unix`], given like everything else.

use crate::applied::{ApplyReport, Outcome};
use crate::diag::Diagnostic;
use crate::plan::desired::Desired;
use crate::plan::{Action, Plan};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// At most this many reasons are listed per row; the rest are counted (the
/// whole plan is in `/report` and `drift --format json`).
pub const MAX_REASONS_PER_ROW: usize = 6;

/// What a tenant's row says about it, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// A step of its apply failed.
    Error,
    /// A resource it needs is taken by something kftenant does not own.
    Conflict,
    /// Gone from git, but its deletion is held back.
    Held,
    /// Managed resources of it were changed outside git.
    Drifted,
    /// Git wants changes that are not applied yet.
    Pending,
    /// Waits for the Kubeflow controller to make its namespace.
    Waiting,
    /// Gone from git and confirmed: it is to be deleted with its namespace.
    Deleting,
    /// Deleted in the cycle shown.
    Deleted,
    /// IAM and the cluster match git.
    Converged,
}

impl TenantState {
    /// Every state, in the order the page lists them.
    pub const ALL: [TenantState; 9] = [
        TenantState::Error,
        TenantState::Conflict,
        TenantState::Held,
        TenantState::Drifted,
        TenantState::Pending,
        TenantState::Waiting,
        TenantState::Deleting,
        TenantState::Deleted,
        TenantState::Converged,
    ];

    /// The state's name (also its filter value and CSS class).
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Error => "error",
            TenantState::Conflict => "conflict",
            TenantState::Held => "held",
            TenantState::Drifted => "drifted",
            TenantState::Pending => "pending",
            TenantState::Waiting => "waiting",
            TenantState::Deleting => "deleting",
            TenantState::Deleted => "deleted",
            TenantState::Converged => "converged",
        }
    }

    /// What the page calls it.
    pub fn label(self) -> &'static str {
        match self {
            TenantState::Held => "held deletion",
            other => other.as_str(),
        }
    }
}

/// One row of the tenants table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantStatus {
    /// The tenant (Profile and namespace name), or `shared policies` for
    /// the repository's shared IAM policies.
    pub name: String,
    /// Its owner, when git still names the tenant.
    pub owner: Option<String>,
    /// Its state.
    pub state: TenantState,
    /// Why, most important first (at most [`MAX_REASONS_PER_ROW`], then a count).
    pub reasons: Vec<String>,
}

/// A tenant as git describes it: what [`tenant_rows`] needs besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRef {
    /// Tenant name.
    pub name: String,
    /// Owner.
    pub owner: String,
}

/// The tenants of a desired world, by name.
pub fn tenants_of(desired: &Desired) -> Vec<TenantRef> {
    desired
        .roles
        .keys()
        .map(|name| TenantRef {
            name: name.clone(),
            owner: desired
                .access
                .get(name)
                .map(|a| a.owner.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// The name of the row of the repository's shared policies.
pub const SHARED_ROW: &str = "shared policies";

/// What the plan, and the apply report when it was applied, say about one
/// tenant (or the shared policies).
#[derive(Default)]
struct Facts<'a> {
    changes: Vec<&'a crate::plan::Change>,
    drift: Vec<&'a crate::plan::Drift>,
    conflicts: Vec<&'a crate::plan::Conflict>,
    results: Vec<&'a crate::applied::StepResult>,
    unmanaged: Vec<&'a crate::plan::UnmanagedAccess>,
}

/// Each tenant's state and the reasons for it: every tenant of git in
/// `tenants` (converged or not), then those gone from git that the plan
/// deletes or holds back, then the shared policies when something is to be
/// done about them. `applied` is the report of applying `plan`, when this
/// replica applied it: a tenant whose changes were all done is converged.
///
/// Precedence, most urgent first: conflict, error (a failed step; a step
/// that timed out waiting for the namespace is `waiting`), drift, pending
/// changes (a new tenant: `pending`; only steps waiting for a namespace
/// the controller has not made yet: `waiting`), converged.
pub fn tenant_rows(
    tenants: &[TenantRef],
    plan: &Plan,
    applied: Option<&ApplyReport>,
) -> Vec<TenantStatus> {
    let mut facts: BTreeMap<Option<&str>, Facts<'_>> = BTreeMap::new();
    for c in &plan.changes {
        facts
            .entry(c.tenant.as_deref())
            .or_default()
            .changes
            .push(c);
    }
    for d in &plan.drift {
        facts.entry(d.tenant.as_deref()).or_default().drift.push(d);
    }
    for c in &plan.conflicts {
        facts
            .entry(c.tenant.as_deref())
            .or_default()
            .conflicts
            .push(c);
    }
    for u in &plan.unmanaged_access {
        facts
            .entry(Some(u.tenant.as_str()))
            .or_default()
            .unmanaged
            .push(u);
    }
    if let Some(r) = applied {
        for s in &r.results {
            facts
                .entry(s.tenant.as_deref())
                .or_default()
                .results
                .push(s);
        }
    }
    let none = Facts::default();
    let mut rows: Vec<TenantStatus> = tenants
        .iter()
        .map(|t| {
            let f = facts.get(&Some(t.name.as_str())).unwrap_or(&none);
            let (state, reasons) = judge(f, applied.is_some());
            TenantStatus {
                name: t.name.clone(),
                owner: Some(t.owner.clone()),
                state,
                reasons: capped(reasons),
            }
        })
        .collect();
    for h in &plan.held {
        rows.push(TenantStatus {
            name: h.tenant.clone(),
            owner: None,
            state: TenantState::Held,
            reasons: capped(vec![
                h.reason.clone(),
                format!("would delete {}", h.resources.join(", ")),
            ]),
        });
    }
    for t in &plan.deleted_tenants {
        let f = facts.get(&Some(t.as_str())).unwrap_or(&none);
        let (state, reasons) = match judge(f, applied.is_some()) {
            (TenantState::Converged, mut why) => {
                why.insert(0, "deleted with its namespace: gone from git and confirmed in [prune] decommissioned".into());
                (TenantState::Deleted, why)
            }
            (TenantState::Pending | TenantState::Drifted | TenantState::Waiting, mut why) => {
                why.insert(0, "to be deleted with its namespace: gone from git and confirmed in [prune] decommissioned".into());
                (TenantState::Deleting, why)
            }
            other => other,
        };
        rows.push(TenantStatus {
            name: t.clone(),
            owner: None,
            state,
            reasons: capped(reasons),
        });
    }
    if let Some(f) = facts.get(&None) {
        let (state, reasons) = judge(f, applied.is_some());
        rows.push(TenantStatus {
            name: SHARED_ROW.into(),
            owner: None,
            state,
            reasons: capped(reasons),
        });
    }
    rows
}

/// A tenant's state from its facts.
fn judge(f: &Facts<'_>, applied: bool) -> (TenantState, Vec<String>) {
    if !f.conflicts.is_empty() {
        let why = f
            .conflicts
            .iter()
            .map(|c| format!("{}: {}", c.address, c.reason))
            .collect();
        return (TenantState::Conflict, why);
    }
    let failed: Vec<(&str, &str, &str)> = f
        .results
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed { code, message } => {
                Some((s.address.as_str(), code.as_str(), message.as_str()))
            }
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        let skipped = f
            .results
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Skipped { .. }))
            .count();
        let mut why: Vec<String> = failed
            .iter()
            .map(|(address, code, message)| format!("{address}: {code}: {message}"))
            .collect();
        if skipped > 0 {
            why.push(format!(
                "{skipped} later step{} not attempted",
                plural(skipped)
            ));
        }
        let only_waiting = failed.iter().all(|(_, code, _)| *code == "Timeout");
        let state = if only_waiting {
            TenantState::Waiting
        } else {
            TenantState::Error
        };
        return (state, why);
    }
    let drift: Vec<String> = f
        .drift
        .iter()
        .map(|d| {
            // The values, where they are short: what was changed by hand.
            let values: Vec<String> = f
                .changes
                .iter()
                .filter(|c| c.address == d.address)
                .flat_map(|c| &c.diffs)
                .filter_map(value_change)
                .collect();
            if values.is_empty() {
                format!("{}: {} [{}]", d.address, d.message, d.fields.join(", "))
            } else {
                format!("{}: {}: {}", d.address, d.message, values.join("; "))
            }
        })
        .collect();
    let notes: Vec<String> = f
        .unmanaged
        .iter()
        .map(|u| format!("access not in git (kept): {} as {}", u.user, u.role))
        .collect();
    if applied && !f.results.is_empty() {
        // Every step of it was done in this cycle.
        let mut why = vec![format!(
            "{} change{} applied in this cycle",
            f.results.len(),
            plural(f.results.len())
        )];
        why.extend(drift.into_iter().map(|d| format!("drift corrected: {d}")));
        why.extend(notes);
        return (TenantState::Converged, why);
    }
    if f.changes.is_empty() {
        return (TenantState::Converged, notes);
    }
    let count = |a: Action| f.changes.iter().filter(|c| c.action == a).count();
    let mut why = Vec::new();
    let state = if !drift.is_empty() {
        why.extend(drift);
        TenantState::Drifted
    } else if f
        .changes
        .iter()
        .all(|c| c.waits_for_namespace() && c.action != Action::Delete)
    {
        TenantState::Waiting
    } else {
        TenantState::Pending
    };
    why.push(format!(
        "{} change{} to apply: {} to create, {} to update, {} to delete",
        f.changes.len(),
        plural(f.changes.len()),
        count(Action::Create),
        count(Action::Update),
        count(Action::Delete)
    ));
    why.extend(
        f.changes
            .iter()
            .filter(|c| !c.drift)
            .map(|c| format!("{} {} ({})", c.action.symbol(), c.address, c.reason)),
    );
    why.extend(notes);
    (state, why)
}

/// `field: "live" in the live world, "git" in git` for a diff of two short
/// scalars; `None` for documents (the plan shows those as diffs).
fn value_change(d: &crate::plan::FieldDiff) -> Option<String> {
    const MAX: usize = 80;
    let scalar = |v: &serde_json::Value| -> Option<String> {
        let text = match v {
            serde_json::Value::Null => "(none)".to_string(),
            serde_json::Value::String(s) => format!("{s:?}"),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => return None,
            other => other.to_string(),
        };
        (text.chars().count() <= MAX).then_some(text)
    };
    Some(format!(
        "{}: {} in the live world, {} in git",
        d.field,
        scalar(&d.before)?,
        scalar(&d.after)?
    ))
}

fn capped(mut reasons: Vec<String>) -> Vec<String> {
    if reasons.len() > MAX_REASONS_PER_ROW {
        let more = reasons.len() - (MAX_REASONS_PER_ROW - 1);
        reasons.truncate(MAX_REASONS_PER_ROW - 1);
        reasons.push(format!(
            "… and {more} more (the whole plan is in the JSON report)"
        ));
    }
    reasons
}

use crate::report::plural;

/// A commit as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitInfo {
    /// The commit id.
    pub id: String,
    /// The first line of its message, when known.
    pub subject: Option<String>,
    /// Committer time, Unix seconds, when known.
    pub committed_unix: Option<i64>,
}

/// How a card is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tone {
    /// Nothing to say.
    #[default]
    Neutral,
    /// As it should be.
    Good,
    /// Needs a look.
    Warn,
    /// Something is wrong.
    Bad,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Neutral => "neutral",
            Tone::Good => "good",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
        }
    }
}

/// A commit card: "Commit applied", "Newest commit seen", "Commit".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitCard {
    /// Card title.
    pub title: String,
    /// The commit, if there is one.
    pub commit: Option<CommitInfo>,
    /// When something happened to it (`("applied", unix)`, `("first seen", unix)`).
    pub event: Option<(String, u64)>,
    /// What to say about it (or why there is none).
    pub note: Option<String>,
    /// Colour.
    pub tone: Tone,
}

/// Who may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// `--plan-only`: never writes, holds no lease.
    PlanOnly,
    /// No lease configured: this replica is the only writer.
    OnlyWriter,
    /// Leader election with a Lease.
    Elected {
        /// `namespace/name` of the Lease.
        lease: String,
        /// This replica's identity.
        identity: String,
        /// Whether this replica holds it.
        leader: bool,
        /// Who holds it, as last seen (`None`: nobody, or not read yet).
        holder: Option<String>,
    },
}

/// One past cycle, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CycleRecord {
    /// Cycle number.
    pub cycle: u64,
    /// Unix seconds when it ended.
    pub finished_unix: u64,
    /// `success`, `invalid_commit` or `error`.
    pub result: String,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// Changes planned in it (applied, when this replica writes).
    pub changes: usize,
}

/// What only the daemon knows.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonView {
    /// Who writes.
    pub leadership: Leadership,
    /// The last cycles, oldest first.
    pub cycles: Vec<CycleRecord>,
    /// Where the repository comes from (credentials removed).
    pub repository: String,
}

/// The tenants of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterSection {
    /// Cluster name.
    pub cluster: String,
    /// What the rows describe ("cycle 12, 5 s ago"), when it helps.
    pub as_of: Option<String>,
    /// The rows.
    pub tenants: Vec<TenantStatus>,
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// "status" (the daemon) or "drift report" (a file).
    pub title: String,
    /// The time the page is made, Unix seconds: ages are counted from it.
    pub now_unix: u64,
    /// Reload every this many seconds (the daemon); `None` never reloads (a file).
    pub refresh_seconds: Option<u32>,
    /// Commit cards.
    pub commits: Vec<CommitCard>,
    /// The daemon's own state; `None` in a drift report.
    pub daemon: Option<DaemonView>,
    /// The commit whose validation problems are shown, and the problems.
    pub validation: Option<(String, Vec<Diagnostic>)>,
    /// Errors of the last cycle (fetch, observe, apply), in words.
    pub errors: Vec<String>,
    /// Tenants, by cluster.
    pub clusters: Vec<ClusterSection>,
    /// Strings that must never appear on the page (secrets): each is
    /// replaced by `[redacted]`.
    pub redact: Vec<String>,
}

/// Escapes text for HTML text and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first 12 characters of a commit id.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// "12 s", "5 min", "3 h", "2 d" between two Unix times (never negative).
pub fn age(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `2024-05-01 12:34:56 UTC` (the civil calendar from days, after H. Hinnant).
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

fn unix_i64(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// The page's style sheet (allowed by its hash).
const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--card:#f6f8fa;
--good:#1a7f37;--good-bg:#dafbe1;--warn:#9a6700;--warn-bg:#fff8c5;--bad:#cf222e;--bad-bg:#ffebe9;--info:#0969da;--info-bg:#ddf4ff}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1200px;margin:0 auto;padding:12px 16px}
header{border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0}h1 span{color:var(--muted);font-weight:normal}
h2{font-size:16px;margin:20px 0 8px}h3{font-size:15px;margin:16px 0 6px}
.meta,.muted,.legend,#shown{color:var(--muted);font-size:13px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:12.5px}
code,.reason,.subject,li,.card p{overflow-wrap:anywhere}
td.name,td.owner{overflow-wrap:break-word;min-width:8ch}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-left:4px solid var(--line);border-radius:6px;padding:8px 12px;min-width:0}
.card h2{margin:0 0 4px;font-size:13px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.card p{margin:2px 0}
.card.good{border-left-color:var(--good)}.card.warn{border-left-color:var(--warn)}.card.bad{border-left-color:var(--bad)}
.big{font-size:16px;font-weight:600}
.chart svg{display:block;width:100%;height:110px;background:var(--card);border:1px solid var(--line);border-radius:6px}
.bar.success{fill:var(--good)}.bar.invalid_commit{fill:#bf8700}.bar.error{fill:var(--bad)}.bar.changes{fill:var(--info)}
.axis{stroke:var(--line)}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 3px 0 8px;vertical-align:-1px}
.sw.success{background:var(--good)}.sw.invalid_commit{background:#bf8700}.sw.error{background:var(--bad)}.sw.changes{background:var(--info)}
.problems{border:1px solid var(--bad);background:var(--bad-bg);border-radius:6px;padding:4px 12px 8px}
.problems h2{color:var(--bad)}
.problems ul{margin:0;padding-left:18px}.problems li{margin:3px 0}
.loc{font-weight:600}.hint{color:var(--muted)}
.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}
.filters button{font:inherit;font-size:13px;border:1px solid var(--line);background:var(--bg);border-radius:14px;padding:2px 10px;cursor:pointer}
.filters button[aria-pressed="true"]{background:var(--fg);color:var(--bg);border-color:var(--fg)}
.filters input{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;min-width:0;flex:1 1 200px;max-width:360px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
th{font-size:12px;color:var(--muted);font-weight:600}
td.reason ul{margin:0;padding-left:16px}
@media (min-width:641px){table{table-layout:fixed}th.name,th.owner{width:22%}th.state{width:120px}}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;white-space:nowrap;background:var(--card);border:1px solid var(--line)}
.badge.converged,.badge.deleted{color:var(--good);background:var(--good-bg);border-color:var(--good)}
.badge.drifted,.badge.pending,.badge.waiting,.badge.deleting{color:var(--warn);background:var(--warn-bg);border-color:var(--warn)}
.badge.error,.badge.conflict,.badge.held{color:var(--bad);background:var(--bad-bg);border-color:var(--bad)}
.result.success{color:var(--good)}.result.invalid_commit{color:var(--warn)}.result.error{color:var(--bad)}
[hidden]{display:none!important}
footer{color:var(--muted);font-size:12px;border-top:1px solid var(--line);margin-top:24px}
footer a{color:var(--info)}
@media (max-width:640px){
 header,main,footer{padding:8px 10px}
 table,thead,tbody,tr,td{display:block;width:100%}
 thead{display:none}
 tr{border:1px solid var(--line);border-radius:6px;margin:0 0 8px;padding:4px 0}
 td{border:0;padding:2px 8px}
 td.name{font-weight:600}
 td.name,td.owner{overflow-wrap:anywhere}
}
"#;

/// The page's script: filters by state and name, keeps them in the URL's
/// fragment (so a reload keeps them), and reloads every `data-refresh`
/// seconds unless the name box has the focus or auto refresh is off.
const SCRIPT: &str = r#"
(function () {
  var q = document.getElementById('q');
  if (!q) { return; }
  var buttons = Array.prototype.slice.call(document.querySelectorAll('button[data-filter]'));
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr[data-state]'));
  var clusters = Array.prototype.slice.call(document.querySelectorAll('section.cluster'));
  var shown = document.getElementById('shown');
  var state = '';
  var params = new URLSearchParams(location.hash.slice(1));
  state = params.get('state') || '';
  q.value = params.get('q') || '';
  function update() {
    var text = q.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var ok = (!state || r.getAttribute('data-state') === state) &&
        (!text || r.getAttribute('data-name').indexOf(text) >= 0 ||
          r.getAttribute('data-owner').indexOf(text) >= 0);
      r.hidden = !ok;
      if (ok) { n++; }
    });
    clusters.forEach(function (c) {
      c.hidden = !c.querySelector('tr[data-state]:not([hidden])') && rows.length > 0;
    });
    buttons.forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.getAttribute('data-filter') === state));
    });
    shown.textContent = n + ' of ' + rows.length + ' shown';
    var h = new URLSearchParams();
    if (state) { h.set('state', state); }
    if (text) { h.set('q', text); }
    var s = h.toString();
    history.replaceState(null, '', s ? '#' + s : location.pathname + location.search);
  }
  buttons.forEach(function (b) {
    b.addEventListener('click', function () { state = b.getAttribute('data-filter'); update(); });
  });
  q.addEventListener('input', update);
  update();
  var secs = Number(document.body.getAttribute('data-refresh'));
  var auto = document.getElementById('auto');
  if (secs > 0 && auto) {
    setInterval(function () {
      if (auto.checked && document.activeElement !== q) { location.reload(); }
    }, secs * 1000);
  }
})();
"#;

fn sha256_base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// The page's Content-Security-Policy, as the daemon sends it: nothing is
/// loaded from anywhere, no form is sent, no frame embeds it; the one inline
/// script and style sheet run by their hashes, so an injected `<script>`
/// never would.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| format!("{}; frame-ancestors 'none'", meta_policy()))
}

/// The same policy in the page's `<meta>` element, for the file `drift
/// --format html` writes: without `frame-ancestors`, which browsers ignore
/// there (with a console warning).
fn meta_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; img-src 'none'; base-uri 'none'; form-action 'none'",
            sha256_base64(SCRIPT),
            sha256_base64(STYLE)
        )
    })
}

impl Page {
    /// The page of `kftenant drift --format html`: for each cluster, each
    /// tenant's state in its drift report (`tenants`: the cluster's tenants
    /// in git, [`tenants_of`] its desired world), for the repository at
    /// `commit`; a section per cluster.
    pub fn drift_report<'a>(
        now_unix: u64,
        commit: Option<CommitInfo>,
        clusters: impl IntoIterator<Item = (&'a [TenantRef], &'a Plan)>,
    ) -> Page {
        let clusters: Vec<ClusterSection> = clusters
            .into_iter()
            .map(|(tenants, plan)| ClusterSection {
                cluster: plan.cluster.clone(),
                as_of: None,
                tenants: tenant_rows(tenants, plan, None),
            })
            .collect();
        let bad = clusters
            .iter()
            .flat_map(|c| &c.tenants)
            .any(|r| r.state != TenantState::Converged && r.state != TenantState::Deleted);
        Page {
            title: "drift report".into(),
            now_unix,
            commits: vec![CommitCard {
                title: "Commit".into(),
                note: Some(if bad {
                    "IAM and the cluster differ from git (below)".into()
                } else {
                    "IAM and the cluster match git".into()
                }),
                tone: if bad { Tone::Warn } else { Tone::Good },
                commit,
                event: None,
            }],
            clusters,
            ..Page::default()
        }
    }

    /// The page of `kftenant drift --format html` for a repository that
    /// fails validation: its problems, and no tenants (nothing was observed).
    pub fn invalid_repository(
        now_unix: u64,
        commit: Option<CommitInfo>,
        problems: Vec<Diagnostic>,
    ) -> Page {
        Page {
            title: "drift report".into(),
            now_unix,
            validation: Some((
                commit.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
                problems,
            )),
            commits: vec![CommitCard {
                title: "Commit".into(),
                note: Some("fails validation: nothing was observed or compared".into()),
                tone: Tone::Bad,
                commit,
                event: None,
            }],
            ..Page::default()
        }
    }

    /// The whole HTML document.
    pub fn render(&self) -> String {
        let mut h = String::with_capacity(16 * 1024 + self.rows() * 400);
        let refresh = self.refresh_seconds.unwrap_or(0);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
             <meta name=\"referrer\" content=\"no-referrer\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n\
             <body data-refresh=\"{refresh}\">\n",
            escape(meta_policy()),
            escape(&self.page_title()),
        );
        let _ = write!(
            h,
            "<header>\n<h1>kftenant <span>{}</span></h1>\n<p class=\"meta\">{} · made {}",
            escape(&self.title),
            escape(&self.clusters_line()),
            utc(unix_i64(self.now_unix))
        );
        if refresh > 0 {
            let _ = write!(
                h,
                " · <label><input type=\"checkbox\" id=\"auto\" checked> refresh every {refresh} s</label>"
            );
        }
        h.push_str("</p>\n</header>\n<main>\n");
        self.cards(&mut h);
        self.chart(&mut h);
        self.problems(&mut h);
        self.tenants(&mut h);
        h.push_str("</main>\n<footer>\n");
        if self.daemon.is_some() {
            h.push_str(
                "<p>Machine-readable: <a href=\"/status\">/status</a> · <a href=\"/report\">/report</a> (the last plan, JSON) · \
                 <a href=\"/report?format=markdown\">/report?format=markdown</a> · <a href=\"/metrics\">/metrics</a></p>\n",
            );
        } else {
            h.push_str("<p>Made by <code>kftenant drift --format html</code>; <code>--format json</code> has the whole plan.</p>\n");
        }
        let _ = write!(
            h,
            "</footer>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
        );
        self.redacted(h)
    }

    fn rows(&self) -> usize {
        self.clusters.iter().map(|c| c.tenants.len()).sum()
    }

    fn page_title(&self) -> String {
        let bad = self
            .clusters
            .iter()
            .flat_map(|c| &c.tenants)
            .filter(|t| t.state != TenantState::Converged && t.state != TenantState::Deleted)
            .count();
        let problems = self.validation.as_ref().map_or(0, |(_, p)| p.len());
        let mark = if bad == 0 && problems == 0 && self.errors.is_empty() {
            "✓"
        } else {
            "!"
        };
        format!("{mark} kftenant {} · {}", self.title, self.clusters_line())
    }

    fn clusters_line(&self) -> String {
        let names: Vec<&str> = self.clusters.iter().map(|c| c.cluster.as_str()).collect();
        match names.len() {
            0 => "no cluster".into(),
            1 => format!("cluster {}", names[0]),
            _ => format!("clusters {}", names.join(", ")),
        }
    }

    fn redacted(&self, mut html: String) -> String {
        for secret in self.redact.iter().filter(|s| !s.is_empty()) {
            for form in [secret.clone(), escape(secret)] {
                if html.contains(&form) {
                    html = html.replace(&form, "[redacted]");
                }
            }
        }
        html
    }

    fn cards(&self, h: &mut String) {
        h.push_str("<section class=\"cards\" aria-label=\"summary\">\n");
        for c in &self.commits {
            let _ = write!(
                h,
                "<div class=\"card {}\"><h2>{}</h2>",
                c.tone.class(),
                escape(&c.title)
            );
            match &c.commit {
                Some(info) => {
                    let _ = write!(
                        h,
                        "<p class=\"big\"><code title=\"{}\">{}</code></p>",
                        escape(&info.id),
                        escape(&short(&info.id))
                    );
                    if let Some(s) = &info.subject {
                        let _ = write!(h, "<p class=\"subject\">{}</p>", escape(s));
                    }
                    let mut when = Vec::new();
                    if let Some(t) = info.committed_unix {
                        let ago = age(self.now_unix, u64::try_from(t).unwrap_or(0));
                        when.push(format!(
                            "committed <time title=\"{}\">{ago} ago</time>",
                            utc(t)
                        ));
                    }
                    if let Some((what, t)) = &c.event {
                        when.push(format!(
                            "{} <time title=\"{}\">{} ago</time>",
                            escape(what),
                            utc(unix_i64(*t)),
                            age(self.now_unix, *t)
                        ));
                    }
                    if !when.is_empty() {
                        let _ = write!(h, "<p class=\"muted\">{}</p>", when.join(" · "));
                    }
                }
                None => h.push_str("<p class=\"big\">none</p>"),
            }
            if let Some(n) = &c.note {
                let _ = write!(h, "<p>{}</p>", escape(n));
            }
            h.push_str("</div>\n");
        }
        if let Some(d) = &self.daemon {
            let (tone, head, detail) = match &d.leadership {
                Leadership::PlanOnly => (
                    Tone::Neutral,
                    "plan only".to_string(),
                    "never writes; holds no lease".to_string(),
                ),
                Leadership::OnlyWriter => (
                    Tone::Good,
                    "only writer".to_string(),
                    "no lease configured: this replica applies".to_string(),
                ),
                Leadership::Elected {
                    lease,
                    identity,
                    leader: true,
                    ..
                } => (
                    Tone::Good,
                    "leader".to_string(),
                    format!("this replica ({identity}) holds lease {lease} and applies"),
                ),
                Leadership::Elected {
                    lease,
                    identity,
                    leader: false,
                    holder,
                } => (
                    Tone::Neutral,
                    "follower".to_string(),
                    match holder {
                        Some(hd) => format!(
                            "lease {lease} is held by {hd}; this replica ({identity}) only plans"
                        ),
                        None => format!(
                            "lease {lease} is held by nobody yet; this replica ({identity}) only plans"
                        ),
                    },
                ),
            };
            let _ = writeln!(
                h,
                "<div class=\"card {}\" id=\"leadership\"><h2>Leadership</h2><p class=\"big\">{}</p><p>{}</p></div>",
                tone.class(),
                escape(&head),
                escape(&detail)
            );
            match d.cycles.last() {
                Some(c) => {
                    let tone = match c.result.as_str() {
                        "success" => Tone::Good,
                        "invalid_commit" => Tone::Warn,
                        _ => Tone::Bad,
                    };
                    let _ = writeln!(
                        h,
                        "<div class=\"card {}\" id=\"last-cycle\"><h2>Last cycle</h2><p class=\"big result {}\">{}</p>\
                         <p>cycle {} · {} · {} change{} · <time title=\"{}\">{} ago</time></p></div>",
                        tone.class(),
                        escape(&c.result),
                        escape(&c.result.replace('_', " ")),
                        c.cycle,
                        seconds(c.seconds),
                        c.changes,
                        plural(c.changes),
                        utc(unix_i64(c.finished_unix)),
                        age(self.now_unix, c.finished_unix)
                    );
                }
                None => h.push_str(
                    "<div class=\"card neutral\" id=\"last-cycle\"><h2>Last cycle</h2><p class=\"big\">none yet</p><p>the first cycle is running</p></div>\n",
                ),
            }
        }
        h.push_str("</section>\n");
        if let Some(d) = &self.daemon {
            let _ = writeln!(
                h,
                "<p class=\"muted\">Repository <code>{}</code></p>",
                escape(&d.repository)
            );
        }
    }

    fn chart(&self, h: &mut String) {
        let Some(d) = &self.daemon else { return };
        if d.cycles.is_empty() {
            return;
        }
        let n = d.cycles.len();
        // Units: one bar per 10; durations above the axis, changes below.
        let (bar, gap, top, bottom) = (8.0, 2.0, 70.0, 26.0);
        // At least 40 slots wide, so a young daemon's few bars keep their
        // width and stand at the left.
        let width = (n.max(40) as f64) * (bar + gap);
        let max_s = d
            .cycles
            .iter()
            .map(|c| c.seconds)
            .fold(0.0, f64::max)
            .max(0.001);
        let max_c = d.cycles.iter().map(|c| c.changes).max().unwrap_or(0);
        let _ = write!(
            h,
            "<section class=\"chart\" id=\"cycles\">\n<h2>Last {n} cycle{}</h2>\n\
             <svg viewBox=\"0 0 {width} {}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"duration and changes of the last {n} cycles\">\n\
             <line class=\"axis\" x1=\"0\" y1=\"{top}\" x2=\"{width}\" y2=\"{top}\"/>\n",
            plural(n),
            top + bottom + 4.0
        );
        for (i, c) in d.cycles.iter().enumerate() {
            let x = i as f64 * (bar + gap) + gap / 2.0;
            let hgt = (c.seconds / max_s * (top - 4.0)).max(1.5);
            let tip = format!(
                "cycle {}: {}, {}, {} change{}, {} ago",
                c.cycle,
                c.result.replace('_', " "),
                seconds(c.seconds),
                c.changes,
                plural(c.changes),
                age(self.now_unix, c.finished_unix)
            );
            let _ = writeln!(
                h,
                "<rect class=\"bar {}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{hgt:.1}\"><title>{}</title></rect>",
                escape(&c.result),
                top - hgt,
                escape(&tip)
            );
            if c.changes > 0 {
                let ch = (c.changes as f64 / max_c.max(1) as f64 * (bottom - 2.0)).max(1.5);
                let _ = writeln!(
                    h,
                    "<rect class=\"bar changes\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"{ch:.1}\"><title>{}</title></rect>",
                    top + 1.0,
                    escape(&tip)
                );
            }
        }
        let _ = write!(
            h,
            "</svg>\n<p class=\"legend\">Above the line: duration (tallest {}), by result:\
             <span class=\"sw success\"></span>success<span class=\"sw invalid_commit\"></span>invalid commit\
             <span class=\"sw error\"></span>error. Below: <span class=\"sw changes\"></span>changes planned (most {max_c}). Oldest left.</p>\n</section>\n",
            seconds(max_s)
        );
    }

    fn problems(&self, h: &mut String) {
        if let Some((commit, problems)) = &self.validation {
            if !problems.is_empty() {
                let what = if commit.is_empty() {
                    "The repository".to_string()
                } else {
                    format!("Commit <code>{}</code>", escape(&short(commit)))
                };
                let consequence = if self.daemon.is_some() {
                    "Nothing of it is applied; the last good commit stays the desired world."
                } else {
                    "Nothing was compared with the live world."
                };
                let _ = write!(
                    h,
                    "<section class=\"problems\" id=\"validation\">\n<h2>{what} fails validation: {} problem{}</h2>\n\
                     <p>{consequence}</p>\n<ul>\n",
                    problems.len(),
                    plural(problems.len())
                );
                for d in problems {
                    let loc = match d.pos {
                        Some(p) => format!("{}:{}:{}", d.file, p.line, p.column),
                        None => d.file.clone(),
                    };
                    let _ = write!(
                        h,
                        "<li><code class=\"loc\">{}</code>: {}",
                        escape(&loc),
                        escape(&d.message)
                    );
                    if let Some(hint) = &d.hint {
                        let _ = write!(h, "<div class=\"hint\">hint: {}</div>", escape(hint));
                    }
                    h.push_str("</li>\n");
                }
                h.push_str("</ul>\n</section>\n");
            }
        }
        if !self.errors.is_empty() {
            let _ = write!(
                h,
                "<section class=\"problems\" id=\"errors\">\n<h2>Errors of the last cycle: {}</h2>\n<ul>\n",
                self.errors.len()
            );
            for e in &self.errors {
                let _ = writeln!(h, "<li>{}</li>", escape(e));
            }
            h.push_str("</ul>\n</section>\n");
        }
    }

    fn tenants(&self, h: &mut String) {
        let mut counts: BTreeMap<TenantState, usize> = BTreeMap::new();
        for t in self.clusters.iter().flat_map(|c| &c.tenants) {
            *counts.entry(t.state).or_default() += 1;
        }
        let total = self.rows();
        let _ = write!(
            h,
            "<section id=\"tenants\">\n<h2>Tenants</h2>\n<div class=\"filters\">\n\
             <div role=\"group\" aria-label=\"filter by state\">\
             <button type=\"button\" data-filter=\"\" aria-pressed=\"true\">all {total}</button>"
        );
        for s in TenantState::ALL {
            if let Some(n) = counts.get(&s) {
                let _ = write!(
                    h,
                    " <button type=\"button\" data-filter=\"{}\" aria-pressed=\"false\">{} {n}</button>",
                    s.as_str(),
                    s.label()
                );
            }
        }
        let _ = write!(
            h,
            "</div>\n<input type=\"search\" id=\"q\" placeholder=\"filter by name or owner\" aria-label=\"filter by name or owner\" autocomplete=\"off\">\n\
             </div>\n<p id=\"shown\">{total} of {total} shown</p>\n"
        );
        for c in &self.clusters {
            let _ = write!(
                h,
                "<section class=\"cluster\" data-cluster=\"{}\">\n<h3>Cluster <code>{}</code>",
                escape(&c.cluster),
                escape(&c.cluster)
            );
            if let Some(a) = &c.as_of {
                let _ = write!(h, " <span class=\"muted\">({})</span>", escape(a));
            }
            h.push_str("</h3>\n");
            if c.tenants.is_empty() {
                h.push_str("<p class=\"muted\">No tenant known yet.</p>\n</section>\n");
                continue;
            }
            h.push_str(
                "<table>\n<thead><tr><th class=\"name\">tenant</th><th class=\"owner\">owner</th><th class=\"state\">state</th><th>reason</th></tr></thead>\n<tbody>\n",
            );
            for t in &c.tenants {
                let owner = t.owner.as_deref().unwrap_or("");
                let _ = write!(
                    h,
                    "<tr data-state=\"{}\" data-name=\"{}\" data-owner=\"{}\">\
                     <td class=\"name\">{}</td><td class=\"owner\">{}</td>\
                     <td class=\"state\"><span class=\"badge {}\">{}</span></td><td class=\"reason\">",
                    t.state.as_str(),
                    escape(&t.name.to_lowercase()),
                    escape(&owner.to_lowercase()),
                    escape(&t.name),
                    if owner.is_empty() {
                        "—".to_string()
                    } else {
                        escape(owner)
                    },
                    t.state.as_str(),
                    t.state.label()
                );
                match t.reasons.as_slice() {
                    [] => h.push_str("<span class=\"muted\">IAM and the cluster match git</span>"),
                    [one] => h.push_str(&escape(one)),
                    many => {
                        h.push_str("<ul>");
                        for r in many {
                            let _ = write!(h, "<li>{}</li>", escape(r));
                        }
                        h.push_str("</ul>");
                    }
                }
                h.push_str("</td></tr>\n");
            }
            h.push_str("</tbody>\n</table>\n</section>\n");
        }
        h.push_str("</section>\n");
    }
}

/// "0.42 s", "12.3 s", "2 min 5 s".
fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applied::{ApplySummary, StepResult};
    use crate::diag::Pos;
    use crate::model::{self, Repository};
    use crate::plan::desired;
    use crate::plan::observed::Observed;
    use crate::plan::{PlanOptions, plan};
    use std::path::Path;

    fn repo() -> Repository {
        model::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo"))
            .expect("sample-repo is valid")
    }

    fn plan_of(d: &Desired, o: &Observed) -> Plan {
        plan(d, o, &PlanOptions::default())
    }

    fn state_of<'a>(rows: &'a [TenantStatus], name: &str) -> &'a TenantStatus {
        rows.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name}: {rows:#?}"))
    }

    /// One tenant in each state a plan alone gives: `recommendations` gone
    /// from git (held), `forecasting` not created yet (pending),
    /// `fraud-detection` with a tag changed by hand (drifted), `nlp-research`
    /// whose role is someone else's (conflict), `vision-research` without
    /// its namespace yet (waiting), `platform-sandbox` converged.
    fn mixed() -> (Desired, Plan) {
        let mut r = repo();
        let full = desired::render(&r);
        r.tenants.retain(|t| t.name != "recommendations");
        let d = desired::render(&r);
        let mut o = Observed::converged(&full);
        o.roles.retain(|x| !x.name.starts_with("forecasting-"));
        o.profiles.retain(|x| x.name != "forecasting");
        for list in [
            &mut o.namespaces,
            &mut o.role_bindings,
            &mut o.authorization_policies,
            &mut o.service_accounts,
        ] {
            list.retain(|x| {
                let ns = if x.namespace.is_empty() {
                    &x.name
                } else {
                    &x.namespace
                };
                ns != "forecasting" && ns != "vision-research"
            });
        }
        let role = |o: &mut Observed, prefix: &str| -> usize {
            o.roles
                .iter()
                .position(|x| x.name.starts_with(prefix))
                .expect("role")
        };
        let i = role(&mut o, "fraud-detection-");
        o.roles[i]
            .tags
            .insert("team".into(), "<b>hacked</b>".into());
        let i = role(&mut o, "nlp-research-");
        o.roles[i].tags.clear();
        (d.clone(), plan_of(&d, &o))
    }

    #[test]
    fn a_converged_world_is_all_converged_without_reasons() {
        let d = desired::render(&repo());
        let p = plan_of(&d, &Observed::converged(&d));
        let rows = tenant_rows(&tenants_of(&d), &p, None);
        assert_eq!(rows.len(), d.roles.len());
        for r in &rows {
            assert_eq!(r.state, TenantState::Converged, "{r:?}");
            assert!(r.reasons.is_empty(), "{r:?}");
            assert!(r.owner.as_deref().is_some_and(|o| o.contains('@')));
        }
    }

    #[test]
    fn each_state_a_plan_gives_with_its_reason() {
        let (d, p) = mixed();
        let rows = tenant_rows(&tenants_of(&d), &p, None);
        let want = [
            ("forecasting", TenantState::Pending, "to create"),
            ("fraud-detection", TenantState::Drifted, "tags"),
            (
                "nlp-research",
                TenantState::Conflict,
                "iam_role.nlp-research",
            ),
            (
                "vision-research",
                TenantState::Waiting,
                "waits for namespace",
            ),
            ("platform-sandbox", TenantState::Converged, ""),
            ("recommendations", TenantState::Held, "decommissioned"),
        ];
        for (name, state, reason) in want {
            let r = state_of(&rows, name);
            assert_eq!(r.state, state, "{r:#?}");
            assert!(
                reason.is_empty() || r.reasons.iter().any(|x| x.contains(reason)),
                "{name}: {reason:?} not in {:#?}",
                r.reasons
            );
        }
        assert!(state_of(&rows, "recommendations").owner.is_none());
        insta::assert_json_snapshot!("rows_mixed", rows);
    }

    #[test]
    fn an_applied_plan_makes_its_tenants_converged_or_failed() {
        let (d, p) = mixed();
        let results = p
            .changes
            .iter()
            .map(|c| StepResult {
                address: c.address.clone(),
                tenant: c.tenant.clone(),
                action: c.action,
                outcome: match c.tenant.as_deref() {
                    Some("forecasting") if c.address.starts_with("iam_role.") => Outcome::Failed {
                        code: "AccessDenied".into(),
                        message: "not allowed".into(),
                    },
                    Some("forecasting") => Outcome::Skipped {
                        after_failure_of: "iam_role.forecasting".into(),
                    },
                    Some("vision-research") => Outcome::Failed {
                        code: "Timeout".into(),
                        message:
                            "namespace vision-research, which the Kubeflow profile controller makes"
                                .into(),
                    },
                    _ => Outcome::Done,
                },
            })
            .collect();
        let report = ApplyReport {
            format_version: 1,
            source_commit: None,
            results,
            conflicts: p.conflicts.clone(),
            held: p.held.clone(),
            summary: ApplySummary::default(),
        };
        let rows = tenant_rows(&tenants_of(&d), &p, Some(&report));
        let fc = state_of(&rows, "forecasting");
        assert_eq!(fc.state, TenantState::Error);
        assert!(
            fc.reasons[0].contains("AccessDenied: not allowed"),
            "{fc:?}"
        );
        assert!(
            fc.reasons.iter().any(|r| r.contains("not attempted")),
            "{fc:?}"
        );
        assert_eq!(
            state_of(&rows, "vision-research").state,
            TenantState::Waiting
        );
        let fd = state_of(&rows, "fraud-detection");
        assert_eq!(fd.state, TenantState::Converged);
        assert!(fd.reasons[0].ends_with("applied in this cycle"), "{fd:?}");
        assert!(
            fd.reasons
                .iter()
                .any(|r| r.starts_with("drift corrected: ")),
            "{fd:?}"
        );
        // Conflicts and held deletions are never applied away.
        assert_eq!(state_of(&rows, "nlp-research").state, TenantState::Conflict);
        assert_eq!(state_of(&rows, "recommendations").state, TenantState::Held);
    }

    #[test]
    fn confirmed_deletions_are_deleting_then_deleted() {
        let mut r = repo();
        let full = desired::render(&r);
        r.tenants.retain(|t| t.name != "recommendations");
        r.config.prune.decommissioned = vec!["recommendations".into()];
        let d = desired::render(&r);
        let p = plan_of(&d, &Observed::converged(&full));
        let rows = tenant_rows(&tenants_of(&d), &p, None);
        assert_eq!(
            state_of(&rows, "recommendations").state,
            TenantState::Deleting
        );
        let done = ApplyReport {
            format_version: 1,
            source_commit: None,
            results: p
                .changes
                .iter()
                .map(|c| StepResult {
                    address: c.address.clone(),
                    tenant: c.tenant.clone(),
                    action: c.action,
                    outcome: Outcome::Done,
                })
                .collect(),
            conflicts: vec![],
            held: vec![],
            summary: ApplySummary::default(),
        };
        let rows = tenant_rows(&tenants_of(&d), &p, Some(&done));
        assert_eq!(
            state_of(&rows, "recommendations").state,
            TenantState::Deleted
        );
    }

    #[test]
    fn shared_policies_get_a_row_only_when_something_is_to_do() {
        let d = desired::render(&repo());
        let mut o = Observed::converged(&d);
        assert!(
            !tenant_rows(&tenants_of(&d), &plan_of(&d, &o), None)
                .iter()
                .any(|r| r.name == SHARED_ROW)
        );
        o.policies.clear();
        let rows = tenant_rows(&tenants_of(&d), &plan_of(&d, &o), None);
        let shared = state_of(&rows, SHARED_ROW);
        assert_eq!(shared.state, TenantState::Pending);
        assert!(shared.reasons[0].contains("3 to create"), "{shared:?}");
    }

    #[test]
    fn reasons_are_capped_with_a_count_of_the_rest() {
        let many: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
        let c = capped(many);
        assert_eq!(c.len(), MAX_REASONS_PER_ROW);
        assert!(c.last().unwrap().starts_with("… and 15 more"), "{c:?}");
        assert_eq!(capped(vec!["a".into()]), vec!["a".to_string()]);
    }

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<img src=x onerror='alert(1)'>&"#),
            "&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;"
        );
        assert_eq!(escape("\"</script>"), "&quot;&lt;/script&gt;");
    }

    #[test]
    fn times_and_ages() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(age(100, 100), "0 s");
        assert_eq!(age(100, 200), "0 s", "a clock behind is no negative age");
        assert_eq!(age(1_000, 1_000 - 119), "119 s");
        assert_eq!(age(10_000, 10_000 - 600), "10 min");
        assert_eq!(age(100_000, 100_000 - 7_200), "2 h");
        assert_eq!(age(1_000_000, 1_000_000 - 3 * 86_400), "3 d");
        assert_eq!(seconds(0.1234), "0.12 s");
        assert_eq!(seconds(42.04), "42.0 s");
        assert_eq!(seconds(125.0), "2 min 5 s");
    }

    /// A page with hostile text everywhere the repository or the live world
    /// can put some.
    fn hostile_page() -> Page {
        let evil = r#"<img src=x onerror=alert(1)></script><script>alert(2)</script>"#;
        Page {
            title: "status".into(),
            now_unix: 1_700_000_000,
            refresh_seconds: Some(10),
            commits: vec![CommitCard {
                title: "Commit applied".into(),
                commit: Some(CommitInfo {
                    id: "0123456789abcdef0123456789abcdef01234567".into(),
                    subject: Some(format!("merge {evil}")),
                    committed_unix: Some(1_699_990_000),
                }),
                event: Some(("applied".into(), 1_699_999_000)),
                note: Some(evil.into()),
                tone: Tone::Good,
            }],
            daemon: Some(DaemonView {
                leadership: Leadership::Elected {
                    lease: "kubeflow/kftenant".into(),
                    identity: "pod-a".into(),
                    leader: false,
                    holder: Some(evil.into()),
                },
                cycles: vec![CycleRecord {
                    cycle: 1,
                    finished_unix: 1_699_999_990,
                    result: "success".into(),
                    seconds: 1.5,
                    changes: 3,
                }],
                repository: "https://git.example/t.git".into(),
            }),
            validation: Some((
                "feedbeef".into(),
                vec![
                    Diagnostic::at(format!("tenants/{evil}.yaml"), Pos::new(3, 10), evil)
                        .with_hint(evil),
                ],
            )),
            errors: vec![format!("fetch: {evil} token=hunter2-secret")],
            clusters: vec![ClusterSection {
                cluster: evil.into(),
                as_of: Some(evil.into()),
                tenants: vec![TenantStatus {
                    name: evil.into(),
                    owner: Some(evil.into()),
                    state: TenantState::Drifted,
                    reasons: vec![evil.into(), "hunter2-secret".into()],
                }],
            }],
            redact: vec!["hunter2-secret".into()],
        }
    }

    #[test]
    fn markup_from_the_repository_is_text_and_secrets_are_gone() {
        let html = hostile_page().render();
        assert!(!html.contains("<img"), "{html}");
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert_eq!(html.matches("</script>").count(), 1);
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&lt;/script&gt;"));
        assert!(!html.contains("hunter2"), "secret redacted");
        assert!(html.contains("[redacted]"));
        assert!(html.contains("tenants/&lt;img"), "file paths escaped");
        assert!(html.contains(":3:10</code>"), "file:line:column");
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style() {
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none'; "), "{csp}");
        assert!(csp.contains(&format!("script-src 'sha256-{}'", sha256_base64(SCRIPT))));
        assert!(csp.contains(&format!("style-src 'sha256-{}'", sha256_base64(STYLE))));
        assert!(!csp.contains("unsafe"), "{csp}");
        let html = hostile_page().render();
        // The hashed texts are exactly what sits between the tags.
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(
            html.contains(&format!("content=\"{}\"", escape(meta_policy()))),
            "the meta element carries it for files"
        );
        assert_eq!(csp, format!("{}; frame-ancestors 'none'", meta_policy()));
    }

    #[test]
    fn a_drift_report_has_no_daemon_parts_and_a_file_never_reloads() {
        let (d, p) = mixed();
        let tenants = tenants_of(&d);
        let page = Page::drift_report(1_700_000_000, None, [(tenants.as_slice(), &p)]);
        let html = page.render();
        assert!(html.contains("data-refresh=\"0\""));
        assert!(!html.contains("id=\"auto\""));
        assert!(!html.contains("id=\"leadership\""));
        assert!(!html.contains("href=\"/status\""));
        assert!(html.contains("Cluster <code>kubeflow-prod</code>"));
        for s in [
            "pending",
            "drifted",
            "conflict",
            "waiting",
            "held",
            "converged",
        ] {
            assert!(
                html.contains(&format!("data-filter=\"{s}\"")),
                "a filter button for {s}"
            );
        }
        let invalid = Page::invalid_repository(
            1_700_000_000,
            None,
            vec![Diagnostic::at("tenants/a.yaml", Pos::new(2, 5), "bad")],
        )
        .render();
        assert!(invalid.contains("<code class=\"loc\">tenants/a.yaml:2:5</code>: bad"));
        assert!(invalid.contains("The repository fails validation: 1 problem"));
    }

    #[test]
    fn the_main_part_of_a_daemon_page() {
        let mut page = hostile_page();
        page.redact.clear();
        let html = page.render();
        let main = &html[html.find("<main>").unwrap()..html.find("</main>").unwrap() + 7];
        insta::assert_snapshot!("daemon_page_main", main);
    }
}
