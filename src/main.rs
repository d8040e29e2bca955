//! The `kftenant` command line.
//!
//! Arguments are read in two steps, as ripgrep does: `clap` parses them into
//! plain structs (no file or environment is touched), then each command's
//! function turns them into what the library needs (reading files and
//! environment variables) and calls it. `main` turns the result into an exit
//! code and prints an error's whole cause chain. A usage error exits 1, like
//! any other error: 2 is `plan`'s and `drift`'s "changes present".

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kftenant::daemon::lease::LeaseConfig;
use kftenant::daemon::{self, DaemonOptions};
use kftenant::git::verify::AllowedSigners;
use kftenant::git::{self, GitAuth, GitSource, GitTreeSource};
use kftenant::live::observe::{IamMode, Scope, observe};
use kftenant::live::{Clients, apply as live_apply};
use kftenant::model::{self, Repository};
use kftenant::plan::desired::{self, Desired};
use kftenant::plan::observed::Observed;
use kftenant::plan::{self, Plan, PlanKind, PlanOptions, PullRequest};
use kftenant::report::{self, Format};
use kftenant::schema;
use kftenant::status_page;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// GitOps for Kubeflow tenants on EKS: one git repository of tenants becomes
/// per-tenant IAM roles (IRSA) and Kubeflow Profiles.
///
/// A tenant repository holds kftenant.toml (cluster settings and guardrails),
/// tenants/*.yaml (one Tenant per team) and policies/*.json (shared IAM
/// policies). Start with `kftenant validate REPO`, then `kftenant plan REPO`.
#[derive(Parser, Debug)]
#[command(name = "kftenant", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing would only obscure the arguments
enum Command {
    /// Check a tenant repository and report every problem as file:line:column.
    ///
    /// Exit codes: 0 valid, 1 problems found.
    Validate(ValidateArgs),
    /// Show what would change to make IAM and the cluster match git.
    ///
    /// Nothing is changed. Without --observed the live world is taken as empty
    /// (a full creation plan). Exit codes, like terraform plan -detailed-exitcode:
    /// 0 no changes, 2 changes present, 1 error (invalid repository, refused plan).
    Plan(PlanArgs),
    /// Read the live world (IAM roles and policies, Profiles) into a snapshot.
    ///
    /// The snapshot is what `plan --observed FILE` reads. Only kftenant's path,
    /// its tagged resources and the names the repository wants are read.
    Observe(ObserveArgs),
    /// Make IAM and the cluster match git: validate, observe, plan, show the plan, execute it.
    ///
    /// Asks for confirmation on a terminal unless --auto-approve. Exit codes:
    /// 0 converged (or nothing to do), 1 a step failed or the plan was refused.
    Apply(ApplyArgs),
    /// Report every difference between git and the live world, changing nothing.
    ///
    /// For scheduled jobs and dashboards. `--format html --out FILE` writes the
    /// status page (every tenant with its state and the reason, filterable; the
    /// validation problems of a broken repository) as one self-contained file,
    /// for CI artifacts. Exit codes: 0 no differences, 2 drift, pending
    /// changes or conflicts, 1 error.
    Drift(DriftArgs),
    /// Run as a daemon: pull the tenant repository, reconcile on every new commit,
    /// on a timer and on push webhooks; serve health, metrics, status and drift reports.
    ///
    /// HTTP (--listen): `/` the status page (commits applied and seen, the last
    /// cycles, leadership, validation problems, every tenant's state; refreshes
    /// itself), `/status` and `/report` (JSON; `?format=markdown`), `/metrics`,
    /// `/healthz`, `/readyz`, and `POST /hook` for push webhooks.
    ///
    /// A commit that fails validation is reported and not applied; the last good
    /// commit stays the desired world. A fetch failure keeps the last good checkout.
    /// With --plan-only nothing is ever written (read-only credentials are enough).
    Run(RunArgs),
    /// Write the JSON Schemas of tenant files and kftenant.toml.
    Schema(SchemaArgs),
    /// Start a tenant repository: kftenant.toml, a first tenant and the CI
    /// workflow that validates and plans pull requests. Writes no file that exists.
    Init(InitArgs),
    /// Write a tenant repository from a live Kubeflow installation, so its
    /// Profiles and IAM roles come under kftenant without being recreated.
    ///
    /// Reads the cluster's Profiles (all, or those of --profile / --selector),
    /// the IAM role each names in its AwsIamForServiceAccount plugin (path,
    /// attached and inline policies, boundary, tags, maximum session duration,
    /// the service accounts its trust policy lets in), and the contributors of
    /// each namespace; writes DIR: the kftenant.toml given, tenants/NAME.yaml
    /// (with `spec.adopt` naming exactly what kftenant takes over) and the
    /// inline policies as files. Reports what kftenant cannot express. Changes
    /// nothing live: review the files, then `kftenant plan DIR --live` shows one
    /// `adopt` change per resource, and `kftenant apply DIR` takes them over in
    /// place (same role, same Profile UID, namespace untouched).
    ///
    /// Needs read access only (deploy/iam-readonly-policy.json); the apply
    /// that adopts needs deploy/iam-adopt-policy.json besides kftenant's usual
    /// policy, and roles it adopts outside /kftenant/ need
    /// deploy/iam-adopted-policy.json from then on. README: "Moving an
    /// existing installation".
    ///
    /// Exit codes: 0 written and valid; 1 an error, or the written repository
    /// does not validate (its problems are printed: a live value kftenant's
    /// rules refuse, e.g. a guardrail).
    Import(ImportArgs),
}

/// `kftenant validate`.
#[derive(clap::Args, Debug)]
struct ValidateArgs {
    /// The repository root (the folder with kftenant.toml).
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// Output format for problems.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    format: ValidateFormat,
    #[command(flatten)]
    cluster: ClusterArg,
}

/// `kftenant plan`.
#[derive(clap::Args, Debug)]
struct PlanArgs {
    /// The repository root (the folder with kftenant.toml).
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// A snapshot of the live world (JSON, as written by `kftenant observe`).
    #[arg(long, value_name = "FILE")]
    observed: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Write the plan to FILE instead of standard output. Markdown too long
    /// for one pull-request comment is split into FILE, FILE.2, FILE.3, ...
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Allow deleting more tenants than [prune] max_deletions, or all of them.
    #[arg(long)]
    allow_mass_delete: bool,
    /// The git commit to record in the plan (default: read from REPO/.git when present).
    #[arg(long, value_name = "SHA")]
    source_commit: Option<String>,
    /// Pull-request mode: also report which tenants differ from this git revision
    /// (the PR's base, e.g. origin/main), read from REPO's git history.
    #[arg(long, value_name = "REF")]
    base: Option<String>,
    /// Observe the live world (AWS IAM and the cluster) instead of a snapshot.
    #[arg(long = "live", conflicts_with = "observed")]
    observe_live: bool,
    #[command(flatten)]
    live: LiveOpts,
    #[command(flatten)]
    cluster: ClusterArg,
}

/// `kftenant observe`.
#[derive(clap::Args, Debug)]
struct ObserveArgs {
    /// The repository root (decides the IAM path and the names to look up).
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// Where to write the snapshot (default: standard output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    live: LiveOpts,
    #[command(flatten)]
    cluster: ClusterArg,
}

/// `kftenant apply`.
#[derive(clap::Args, Debug)]
struct ApplyArgs {
    /// The repository root (the folder with kftenant.toml).
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// Apply without asking.
    #[arg(long)]
    auto_approve: bool,
    /// Apply a saved JSON plan (`plan --live --format json --out FILE`); refused when
    /// the live world changed since it was made.
    #[arg(long, value_name = "FILE")]
    plan_file: Option<PathBuf>,
    /// Tenants worked on at once.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Seconds to wait for a deleted Profile's finalizers before deleting its role.
    #[arg(long, default_value_t = 120)]
    profile_delete_timeout: u64,
    /// Output format of the plan and the apply report.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Allow deleting more tenants than [prune] max_deletions, or all of them.
    #[arg(long)]
    allow_mass_delete: bool,
    #[command(flatten)]
    live: LiveOpts,
    #[command(flatten)]
    cluster: ClusterArg,
}

/// `kftenant drift`.
#[derive(clap::Args, Debug)]
struct DriftArgs {
    /// The repository root (the folder with kftenant.toml).
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DriftFormat::Text)]
    format: DriftFormat,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    live: LiveOpts,
    #[command(flatten)]
    cluster: ClusterArg,
}

/// `kftenant run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The tenant repository: a URL (https://, ssh://, file://) or a local path.
    #[arg(long)]
    repo: String,
    /// Branch to follow.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Folder inside the repository that holds kftenant.toml.
    #[arg(long)]
    path: Option<String>,
    /// Time between cycles without a new commit (drift correction), e.g. 1m, 30s.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    interval: std::time::Duration,
    /// Random delay up to this much added to each interval, to spread replicas and clusters.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    jitter: std::time::Duration,
    /// Never write: compute and publish plans and drift only.
    #[arg(long)]
    plan_only: bool,
    /// Address of the HTTP endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: std::net::SocketAddr,
    /// File with the push webhook's shared secret; without it POST /hook is disabled.
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// File with an HTTPS token for the repository (or env KFTENANT_GIT_TOKEN).
    #[arg(long, value_name = "FILE")]
    git_token_file: Option<PathBuf>,
    /// SSH private key for the repository.
    #[arg(long, value_name = "FILE", requires = "known_hosts_file")]
    ssh_key_file: Option<PathBuf>,
    /// known_hosts file the SSH server's key must be in.
    #[arg(long, value_name = "FILE")]
    known_hosts_file: Option<PathBuf>,
    /// Where the clone lives.
    #[arg(long, default_value = "/var/cache/kftenant")]
    cache_dir: PathBuf,
    /// Apply only head commits with an SSH signature by a key in FILE (git's
    /// gpg.ssh.allowedSignersFile format: `principals [options] key-type key`
    /// per line). Unsigned or wrongly signed heads are refused, reported on
    /// /status and in kftenant_refused_commits_total, and never applied.
    #[arg(long, value_name = "FILE")]
    verify_signers: Option<PathBuf>,
    /// Lease for leader election (only the holder writes, and only while it is
    /// sure to hold it); omit to run as the only writer. The lease also keeps
    /// the last good commit, so a restart on a broken head still heals drift.
    #[arg(long)]
    lease_name: Option<String>,
    /// Namespace of the lease.
    #[arg(long, default_value = "kubeflow")]
    lease_namespace: String,
    /// Tenants worked on at once.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// /readyz fails when the last good cycle is older than this (default: 3 intervals + 30s).
    #[arg(long, value_parser = parse_duration)]
    ready_grace: Option<std::time::Duration>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    live: LiveOpts,
    /// The cluster to reconcile, in a repository of several (clusters/<name>.toml);
    /// only its part of the repository is read. One daemon (Deployment) per cluster.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
}

/// `kftenant schema`.
#[derive(clap::Args, Debug)]
struct SchemaArgs {
    /// Folder to write into.
    #[arg(long, default_value = "schema")]
    out_dir: PathBuf,
}

/// `kftenant init`.
#[derive(clap::Args, Debug)]
struct InitArgs {
    /// Folder of the new repository (created if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// EKS cluster name.
    #[arg(long)]
    cluster: String,
    /// 12-digit AWS account id that holds the roles.
    #[arg(long)]
    account_id: String,
    /// AWS region of the cluster.
    #[arg(long)]
    region: String,
    /// The cluster's OIDC issuer (`aws eks describe-cluster --query cluster.identity.oidc.issuer`).
    #[arg(long)]
    oidc_issuer: String,
    /// Name of the first tenant (its Profile and namespace).
    #[arg(long, default_value = "team-a")]
    tenant: String,
    /// Owner of the first tenant (the user name your identity provider gives, usually an email).
    #[arg(long, default_value = "owner@example.com")]
    owner: String,
}

/// `kftenant import`.
#[derive(clap::Args, Debug)]
struct ImportArgs {
    /// A kftenant.toml with at least [cluster] (name, account_id, region,
    /// oidc_issuer): copied into DIR as it is; its settings decide what the
    /// tenants need to say (role name template and path, defaults).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The folder to write the repository into: new, or empty (hidden entries
    /// such as .git and the --config file itself may be there).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Import only this Profile (repeatable); default: every Profile the selector matches.
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// Import only the Profiles with these labels (a Kubernetes label selector, e.g. `team=ml`).
    #[arg(long, value_name = "SELECTOR", default_value = "")]
    selector: String,
    /// Write the account's customer-managed policies the roles attach into
    /// policies/NAME.json (kept at their ARN and adopted in place) instead of
    /// naming them by ARN only. Policies with tags stay ARNs (repo policies
    /// carry only kftenant's).
    #[arg(long)]
    import_policies: bool,
    /// Format of the report on standard output.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    format: ValidateFormat,
    /// The kubeconfig context of the cluster to read (default: the current
    /// one). The repository written describes that one cluster.
    #[arg(long, value_name = "NAME")]
    kube_context: Option<String>,
    #[command(flatten)]
    live: LiveOpts,
}

/// `--cluster`, of every command that reads a repository.
#[derive(clap::Args, Debug, Clone, Default)]
struct ClusterArg {
    /// In a repository of several clusters (clusters/<name>.toml), only this
    /// one; the default is every cluster.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
}

/// Options of every command that reads the live world.
#[derive(clap::Args, Debug, Clone)]
struct LiveOpts {
    /// How to read IAM: `bulk` (GetAccountAuthorizationDetails) or `per-role`
    /// (for accounts without iam:GetAccountAuthorizationDetails).
    #[arg(long, value_enum, default_value_t = IamModeArg::Bulk)]
    iam_mode: IamModeArg,
    /// Attempts per AWS call (the SDK's standard retry mode; IAM writes are paced once IAM throttles).
    #[arg(long, default_value_t = 8)]
    aws_max_attempts: u32,
    /// Print the API calls made, by operation, to standard error (JSON).
    #[arg(long)]
    stats: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ValidateFormat {
    Text,
    Json,
}

/// Output formats of plans and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// Human-readable, like `terraform plan`.
    Text,
    /// Markdown for pull-request comments.
    Markdown,
    /// Versioned JSON for machines.
    Json,
}

/// Output formats of `drift`: those of plans, and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DriftFormat {
    /// Human-readable, like `terraform plan`.
    Text,
    /// Markdown for pull-request comments.
    Markdown,
    /// Versioned JSON for machines.
    Json,
    /// The status page as one self-contained HTML file (no external assets).
    Html,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Markdown => Format::Markdown,
            FormatArg::Json => Format::Json,
        }
    }
}

/// How to read IAM.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum IamModeArg {
    /// `GetAccountAuthorizationDetails`: a few calls for the whole account.
    Bulk,
    /// Per-role reads, for accounts without `iam:GetAccountAuthorizationDetails`.
    PerRole,
}

impl From<IamModeArg> for IamMode {
    fn from(m: IamModeArg) -> IamMode {
        match m {
            IamModeArg::Bulk => IamMode::Bulk,
            IamModeArg::PerRole => IamMode::PerRole,
        }
    }
}

/// The longest `--interval`, `--jitter` or `--ready-grace`. Longer ones are
/// mistakes, and the daemon adds and multiplies them (the default grace is
/// three intervals): a limit keeps that arithmetic far from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `90s`, `5m`, `1h 30m`, `250ms` (any `humantime` duration), or plain
/// seconds; at most [`MAX_DURATION`].
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        s.parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{s}` is too many seconds"))?
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration such as 30s, 5m or 1h: {e}"))?
    };
    if d > MAX_DURATION {
        return Err(format!(
            "`{s}` is longer than 30 days, the longest kftenant takes"
        ));
    }
    Ok(d)
}

/// Parses the command line. A usage error (unknown flag, bad value, missing
/// argument) exits 1, not clap's 2: `plan` and `drift` exit 2 for "changes
/// present", and CI must not read a typo as that. `--help` and `--version`
/// exit 0.
fn parse_args() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        // Printing can only fail on a closed stream, where there is no one to tell.
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Validate(a) => validate(a),
        Command::Plan(a) => plan_cmd(a),
        Command::Observe(a) => observe_cmd(a),
        Command::Apply(a) => apply(a),
        Command::Drift(a) => drift(a),
        Command::Run(a) => run_daemon(a),
        Command::Schema(a) => write_schemas(a),
        Command::Init(a) => init(a),
        Command::Import(a) => import_cmd(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Loads the repository (every cluster, or `cluster`), printing every
/// problem to standard error when it does not validate.
fn load(repo: &Path, cluster: &ClusterArg) -> Result<Option<Vec<Repository>>> {
    match load_clusters(repo, cluster) {
        Ok(r) => Ok(Some(r)),
        Err(diags) => {
            report::write_diagnostics(&diags, &mut std::io::stderr())?;
            Ok(None)
        }
    }
}

fn load_clusters(
    repo: &Path,
    cluster: &ClusterArg,
) -> Result<Vec<Repository>, Vec<kftenant::diag::Diagnostic>> {
    let src = model::DirSource::new(repo);
    match &cluster.cluster {
        Some(name) => model::load_cluster(&src, name).map(|r| vec![r]),
        None => model::load_all(&src),
    }
}

/// The one cluster a command that cannot read several works on.
fn only_one(mut repos: Vec<Repository>, what: &str) -> Result<Repository> {
    if repos.len() != 1 {
        let names: Vec<&str> = repos
            .iter()
            .map(|r| r.config.cluster.name.as_str())
            .collect();
        anyhow::bail!(
            "{what} works on one cluster and this repository describes {} ({}): name one with --cluster",
            names.len(),
            names.join(", ")
        );
    }
    Ok(repos.remove(0))
}

fn validate(a: ValidateArgs) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    match (load_clusters(&a.repo, &a.cluster), a.format) {
        (Ok(repos), ValidateFormat::Text) => {
            let policies = repos.first().map_or(0, |r| r.policies.len());
            if let [r] = repos.as_slice() {
                writeln!(
                    out,
                    "{}: valid ({} tenant{}, {} shared polic{})",
                    a.repo.display(),
                    r.tenants.len(),
                    report::plural(r.tenants.len()),
                    policies,
                    if policies == 1 { "y" } else { "ies" }
                )?;
            } else {
                let each: Vec<String> = repos
                    .iter()
                    .map(|r| {
                        let n = r.tenants.len();
                        format!("{} {n} tenant{}", r.config.cluster.name, report::plural(n))
                    })
                    .collect();
                writeln!(
                    out,
                    "{}: valid ({} clusters: {}; {} shared policies)",
                    a.repo.display(),
                    repos.len(),
                    each.join(", "),
                    policies
                )?;
            }
            report::write_files_read(&repos, &mut out)?;
        }
        (Ok(repos), ValidateFormat::Json) => {
            let clusters: Vec<_> = repos
                .iter()
                .map(|r| serde_json::json!({"name": r.config.cluster.name, "tenants": r.tenants.len()}))
                .collect();
            let tenants: std::collections::BTreeSet<&str> = repos
                .iter()
                .flat_map(|r| r.tenants.iter().map(|t| t.name.as_str()))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "valid": true,
                    "tenants": tenants.len(),
                    "policies": repos.first().map_or(0, |r| r.policies.len()),
                    "clusters": clusters,
                    "files": repos.first().map(|r| &r.files),
                    "problems": []
                })
            )?
        }
        (Err(diags), ValidateFormat::Text) => {
            report::write_diagnostics(&diags, &mut std::io::stderr())?;
            return Ok(1);
        }
        (Err(diags), ValidateFormat::Json) => {
            writeln!(
                out,
                "{}",
                serde_json::json!({"valid": false, "problems": diags})
            )?;
            return Ok(1);
        }
    }
    Ok(0)
}

/// The clients of one cluster. Reading several clusters, each is reached
/// through its own kubeconfig context ([cluster] kube_context, default its
/// name); reading one, through the current context.
async fn connect(repo: &Repository, several: bool, live: &LiveOpts) -> Result<Clients> {
    let c = &repo.config.cluster;
    let context = several.then(|| c.kube_context.as_deref().unwrap_or(&c.name));
    Clients::from_env(&c.region, live.aws_max_attempts, context)
        .await
        .with_context(|| format!("cluster `{}`", c.name))
}

/// Observes what `want` cares about; with `--stats`, prints the calls made.
async fn observe_with(clients: &Clients, want: &Desired, o: &LiveOpts) -> Result<Observed> {
    let observed = observe(clients, &Scope::of(want), o.iam_mode.into()).await?;
    if o.stats {
        eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
    }
    Ok(observed)
}

/// The verdict of several plans as an exit code: the worst of them.
fn exit_code(plans: &[Plan]) -> u8 {
    plans
        .iter()
        .map(|p| p.verdict().exit_code())
        .max_by_key(|code| match code {
            0 => 0,
            2 => 1,
            _ => 2,
        })
        .unwrap_or(0)
}

fn plan_cmd(a: PlanArgs) -> Result<u8> {
    let Some(repos) = load(&a.repo, &a.cluster)? else {
        return Ok(1);
    };
    let several = repos.len() > 1;
    if several && a.observed.is_some() {
        anyhow::bail!(
            "--observed is one cluster's snapshot and this repository describes {} clusters: name one with --cluster",
            repos.len()
        );
    }
    let format = Format::from(a.format);
    let opts = PlanOptions {
        allow_mass_delete: a.allow_mass_delete,
        source_commit: a
            .source_commit
            .clone()
            .or_else(|| git::head_commit(&a.repo)),
    };
    // The pull request's base, every cluster of it (a cluster the pull
    // request adds has none).
    let base = match &a.base {
        Some(rev) => {
            let (src, base_commit) = GitTreeSource::open(&a.repo, rev)?;
            Some((rev.clone(), base_commit, model::load_all(&src).ok()))
        }
        None => None,
    };
    let rt = a.observe_live.then(runtime).transpose()?;
    let mut plans = Vec::new();
    for repository in repos {
        // Memory (heap in use with 10,000 tenants): repository 46 MiB, desired
        // world 137, observed world 85. The repository is freed once rendered,
        // before the observed world is read, so only the two worlds the planner
        // compares are ever held together.
        let want = desired::render(&repository);
        let observed = match (&a.observed, &rt) {
            (_, Some(rt)) => rt.block_on(async {
                let clients = connect(&repository, several, &a.live).await?;
                drop(repository);
                observe_with(&clients, &want, &a.live).await
            })?,
            (Some(f), None) => read_snapshot(f)?,
            (None, None) => Observed::default(),
        };
        let mut p = plan::plan(&want, &observed, &opts);
        if a.observe_live {
            // Lets `apply --plan-file` refuse this plan once the live world moves on.
            p.observed_digest = Some(observed.digest());
        }
        if let Some((rev, base_commit, base_repos)) = &base {
            let base_repo = base_repos
                .iter()
                .flatten()
                .find(|r| r.config.cluster.name == want.cluster);
            let tenants = desired::changed_tenants(base_repo, &want)
                .into_iter()
                .map(|(t, kind)| (t, kind.to_string()))
                .collect();
            let pull_request = PullRequest {
                base: rev.clone(),
                base_commit: base_commit.clone(),
                tenants,
            };
            // Drift is what the live world changed against the base; the
            // pull request's own changes are not drift.
            let base_plan = base_repo
                .map(|r| plan::plan(&desired::render(r), &observed, &opts))
                .unwrap_or_else(|| plan::plan(&want, &Observed::default(), &opts));
            p.against_base(&base_plan, pull_request);
        }
        // Planned: the observed world is not needed again.
        drop(observed);
        plans.push(p);
    }
    let mut parts: Vec<Vec<u8>> = Vec::new();
    match format {
        Format::Markdown => parts.extend(
            report::markdown_parts_all(&plans, report::MARKDOWN_PART_LIMIT)
                .into_iter()
                .map(String::into_bytes),
        ),
        _ => {
            let mut buf = Vec::new();
            report::write_plans(&plans, format, &mut buf)?;
            parts.push(buf);
        }
    }
    match &a.out {
        Some(f) => write_parts(f, &parts)?,
        None => {
            let mut out = std::io::stdout().lock();
            for part in &parts {
                out.write_all(part)?;
            }
        }
    }
    Ok(exit_code(&plans))
}

fn observe_cmd(a: ObserveArgs) -> Result<u8> {
    let Some(repos) = load(&a.repo, &a.cluster)? else {
        return Ok(1);
    };
    let repository = only_one(repos, "observe")?;
    let want = desired::render(&repository);
    let observed = runtime()?.block_on(async {
        let clients = connect(&repository, false, &a.live).await?;
        observe_with(&clients, &want, &a.live).await
    })?;
    match &a.out {
        Some(f) => std::fs::write(f, observed.to_json())
            .with_context(|| format!("writing {}", f.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(observed.to_json().as_bytes())?,
    }
    Ok(0)
}

fn drift(a: DriftArgs) -> Result<u8> {
    let head = git::head_commit(&a.repo);
    let commit_info = || {
        head.as_ref().map(|id| {
            let meta = git::commit_meta(&a.repo, id);
            status_page::CommitInfo {
                id: id.clone(),
                subject: meta.as_ref().map(|m| m.subject.clone()),
                committed_unix: meta.map(|m| m.time_unix),
            }
        })
    };
    let repos = match load_clusters(&a.repo, &a.cluster) {
        Ok(r) => r,
        Err(diags) => {
            report::write_diagnostics(&diags, &mut std::io::stderr())?;
            if a.format == DriftFormat::Html {
                // The CI artifact shows the problems too.
                let page = status_page::Page::invalid_repository(now_unix(), commit_info(), diags);
                write_output(a.out.as_deref(), page.render().as_bytes())?;
            }
            return Ok(1);
        }
    };
    let several = repos.len() > 1;
    let opts = PlanOptions {
        allow_mass_delete: false,
        source_commit: head.clone(),
    };
    let rt = runtime()?;
    let mut plans = Vec::new();
    let mut tenants = Vec::new();
    for repository in repos {
        let want = desired::render(&repository);
        let observed = rt.block_on(async {
            let clients = connect(&repository, several, &a.live).await?;
            observe_with(&clients, &want, &a.live).await
        })?;
        drop(repository);
        plans.push(Plan {
            kind: PlanKind::Drift,
            ..plan::plan(&want, &observed, &opts)
        });
        tenants.push(status_page::tenants_of(&want));
    }
    let mut buf = Vec::new();
    match a.format {
        DriftFormat::Text => report::write_plans(&plans, Format::Text, &mut buf)?,
        DriftFormat::Markdown => report::write_plans(&plans, Format::Markdown, &mut buf)?,
        DriftFormat::Json => report::write_plans(&plans, Format::Json, &mut buf)?,
        DriftFormat::Html => {
            buf = status_page::Page::drift_report(
                now_unix(),
                commit_info(),
                tenants.iter().map(Vec::as_slice).zip(&plans),
            )
            .render()
            .into_bytes()
        }
    }
    write_output(a.out.as_deref(), &buf)?;
    Ok(exit_code(&plans))
}

/// Writes `bytes` to FILE, or to standard output without one.
fn write_output(file: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match file {
        Some(f) => std::fs::write(f, bytes).with_context(|| format!("writing {}", f.display())),
        None => Ok(std::io::stdout().lock().write_all(bytes)?),
    }
}

/// Now, in Unix seconds (the status page counts ages from it).
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn apply(a: ApplyArgs) -> Result<u8> {
    let Some(repos) = load(&a.repo, &a.cluster)? else {
        return Ok(1);
    };
    let several = repos.len() > 1;
    if several && a.plan_file.is_some() {
        anyhow::bail!(
            "--plan-file is one cluster's plan and this repository describes {} clusters: name it with --cluster",
            repos.len()
        );
    }
    let format = Format::from(a.format);
    // A saved plan of another format version, or of another cluster, is
    // refused before anything is read from AWS or the cluster.
    let saved = match &a.plan_file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            Some((
                f,
                Plan::from_json(&text).with_context(|| f.display().to_string())?,
            ))
        }
        None => None,
    };
    let rt = runtime()?;
    // Every cluster is planned (and the plans shown) before anything is
    // written, and the answer is asked once.
    let mut work = Vec::new();
    for repository in repos {
        let want = desired::render(&repository);
        if let Some((f, saved)) = &saved {
            if saved.cluster != want.cluster {
                anyhow::bail!(
                    "{}: the plan is for cluster `{}`, not `{}`",
                    f.display(),
                    saved.cluster,
                    want.cluster
                );
            }
        }
        let clients = rt.block_on(connect(&repository, several, &a.live))?;
        let observed = rt.block_on(observe(&clients, &Scope::of(&want), a.live.iam_mode.into()))?;
        let p = match &saved {
            Some((f, saved)) => {
                saved
                    .check_fresh(&observed)
                    .with_context(|| f.display().to_string())?;
                saved.clone()
            }
            None => {
                let opts = PlanOptions {
                    allow_mass_delete: a.allow_mass_delete,
                    source_commit: git::head_commit(&a.repo),
                };
                Plan {
                    observed_digest: Some(observed.digest()),
                    ..plan::plan(&want, &observed, &opts)
                }
            }
        };
        work.push((clients, p));
    }
    let mut out = std::io::stdout().lock();
    let plans: Vec<Plan> = work.iter().map(|(_, p)| p.clone()).collect();
    report::write_plans(&plans, format, &mut out)?;
    let print_stats = |clients: &Clients| -> Result<()> {
        if a.live.stats {
            eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
        }
        Ok(())
    };
    if plans.iter().all(Plan::is_empty) {
        for (clients, _) in &work {
            print_stats(clients)?;
        }
        return Ok(exit_code(&plans));
    }
    if !a.auto_approve && !confirm()? {
        writeln!(out, "Apply cancelled.")?;
        return Ok(1);
    }
    let opts = live_apply::ApplyOptions {
        workers: a.workers,
        profile_delete_timeout: Duration::from_secs(a.profile_delete_timeout),
        ..Default::default()
    };
    let mut converged = true;
    for (clients, p) in &work {
        if p.is_empty() {
            print_stats(clients)?;
            continue;
        }
        if several {
            writeln!(out, "\nCluster `{}`:", p.cluster)?;
        }
        let report = rt.block_on(live_apply::execute(clients, p, &opts));
        report::write_apply(&report, format, &mut out)?;
        print_stats(clients)?;
        converged &= report.converged();
    }
    Ok(if converged { 0 } else { 1 })
}

/// A secret from a file, trimmed; an empty one is refused (an empty webhook
/// secret would let anyone sign a webhook, an empty token is a mistake).
fn read_secret(f: &Path) -> Result<String> {
    let secret = std::fs::read_to_string(f)
        .with_context(|| format!("reading {}", f.display()))?
        .trim()
        .to_string();
    if secret.is_empty() {
        anyhow::bail!(
            "{} is empty: refusing to start without the secret it should hold",
            f.display()
        );
    }
    Ok(secret)
}

fn run_daemon(a: RunArgs) -> Result<u8> {
    init_logs(a.log_format);
    let auth = match (
        &a.git_token_file,
        std::env::var("KFTENANT_GIT_TOKEN").ok(),
        &a.ssh_key_file,
        &a.known_hosts_file,
    ) {
        (Some(f), _, _, _) => GitAuth::Token(read_secret(f)?),
        (None, Some(t), _, _) if t.trim().is_empty() => {
            anyhow::bail!("KFTENANT_GIT_TOKEN is set but empty: refusing to start")
        }
        (None, Some(t), _, _) => GitAuth::Token(t.trim().to_string()),
        (None, None, Some(key), Some(known_hosts)) => GitAuth::Ssh {
            key: key.clone(),
            known_hosts: known_hosts.clone(),
        },
        _ => GitAuth::None,
    };
    let webhook_secret = a
        .webhook_secret_file
        .as_deref()
        .map(|f| read_secret(f).map(String::into_bytes))
        .transpose()?;
    let source = GitSource {
        url: a.repo,
        branch: a.branch,
        path: a.path,
        cache_dir: a.cache_dir,
        auth,
    };
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("kftenant-{}", std::process::id()));
    let lease = a
        .lease_name
        .map(|name| LeaseConfig::new(name, a.lease_namespace, identity));
    let signers = a
        .verify_signers
        .as_deref()
        .map(AllowedSigners::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let options = DaemonOptions {
        interval: a.interval,
        jitter: a.jitter,
        plan_only: a.plan_only,
        listen: a.listen,
        webhook_secret,
        iam_mode: a.live.iam_mode.into(),
        apply: live_apply::ApplyOptions {
            workers: a.workers,
            ..Default::default()
        },
        lease,
        signers,
        // At most 90 days and 30 seconds: the parser caps every duration.
        ready_grace: a
            .ready_grace
            .unwrap_or(a.interval * 3 + Duration::from_secs(30)),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        aws_max_attempts: a.live.aws_max_attempts,
        cluster: a.cluster,
        release_memory: heap::release,
    };
    tracing::info!(options = ?daemon::describe(&options), "starting");
    daemon_runtime()?.block_on(async {
        let shutdown = shutdown_signal();
        daemon::run(source, options, shutdown).await
    })?;
    Ok(0)
}

fn init(a: InitArgs) -> Result<u8> {
    let files = kftenant::scaffold::files(&kftenant::scaffold::InitOptions {
        cluster: a.cluster,
        account_id: a.account_id,
        region: a.region,
        oidc_issuer: a.oidc_issuer,
        tenant: a.tenant,
        owner: a.owner,
    });
    let existing: Vec<String> = files
        .iter()
        .map(|(path, _)| a.dir.join(path))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!("refusing to overwrite {}", existing.join(", "));
    }
    let mut out = std::io::stdout().lock();
    for (path, text) in &files {
        let path = a.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "wrote {}", path.display())?;
    }
    // Written from the command line's values: say at once if one is wrong.
    match model::load_dir(&a.dir) {
        Ok(_) => {
            writeln!(
                out,
                "next: `kftenant validate {}`, then `kftenant plan {}`",
                a.dir.display(),
                a.dir.display()
            )?;
            Ok(0)
        }
        Err(diags) => {
            report::write_diagnostics(&diags, &mut std::io::stderr())?;
            Ok(1)
        }
    }
}

/// Refuses to write into a folder that already holds something (but hidden
/// entries such as `.git`, and the config file given).
fn check_empty_out(out: &Path, config: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    let config = std::fs::canonicalize(config).ok();
    let mut found = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", out.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || std::fs::canonicalize(e.path()).ok() == config {
            continue;
        }
        found.push(name);
    }
    if !found.is_empty() {
        found.sort();
        anyhow::bail!(
            "refusing to write into {}: it holds {} (import into a new or empty folder)",
            out.display(),
            found.join(", ")
        );
    }
    Ok(())
}

fn import_cmd(a: ImportArgs) -> Result<u8> {
    use kftenant::import::{self, ImportOptions};
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading {}", a.config.display()))?;
    let mut diags = kftenant::diag::Diagnostics::default();
    let config = kftenant::config::load(&text, &mut diags);
    let diags = diags.sorted();
    let Some(config) = config.filter(|_| diags.is_empty()) else {
        report::write_diagnostics(&diags, &mut std::io::stderr())?;
        return Ok(1);
    };
    check_empty_out(&a.out, &a.config)?;
    let rt = runtime()?;
    let clients = rt.block_on(Clients::from_env(
        &config.cluster.region,
        a.live.aws_max_attempts,
        a.kube_context.as_deref(),
    ))?;
    let mut profiles = rt.block_on(kftenant::live::observe::list_profiles(
        &clients,
        &a.selector,
    ))?;
    if !a.profiles.is_empty() {
        let missing: Vec<&String> = a
            .profiles
            .iter()
            .filter(|n| !profiles.iter().any(|p| p.name == **n))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "no Profile {} in the cluster{}",
                missing
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if a.selector.is_empty() {
                    String::new()
                } else {
                    format!(" with labels `{}`", a.selector)
                }
            );
        }
        profiles.retain(|p| a.profiles.contains(&p.name));
    }
    let scope = Scope {
        path: config.iam.role_path.clone(),
        role_names: import::role_names(&profiles)
            .into_iter()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        policy_names: Default::default(),
        profile_names: profiles.iter().map(|p| p.name.clone()).collect(),
        cluster: config.cluster.name.clone(),
        external_policy_arns: Default::default(),
        account_id: config.cluster.account_id.clone(),
        service_accounts: Default::default(),
    };
    let mut observed = rt.block_on(observe(&clients, &scope, a.live.iam_mode.into()))?;
    if a.import_policies {
        let arns = import::local_policy_arns(&config, &profiles, &observed);
        let read = rt.block_on(kftenant::live::observe::policies_by_arn(&clients, &arns))?;
        observed.policies.retain(|p| !arns.contains(&p.arn));
        observed.policies.extend(read);
    }
    if a.live.stats {
        eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
    }
    let imported = import::render(
        &text,
        &config,
        &profiles,
        &observed,
        &ImportOptions {
            import_policies: a.import_policies,
        },
    );
    for (path, content) in &imported.files {
        let path = a.out.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        ValidateFormat::Text => report::write_import(&imported, &a.out, &mut out)?,
        ValidateFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&imported.summary())?
        )?,
    }
    if !imported.problems.is_empty() {
        report::write_diagnostics(&imported.problems, &mut std::io::stderr())?;
        return Ok(1);
    }
    Ok(0)
}

fn write_schemas(a: SchemaArgs) -> Result<u8> {
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let mut out = std::io::stdout().lock();
    for (name, text) in schema::all() {
        let path = a.out_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "wrote {}", path.display())?;
    }
    Ok(0)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// Completes on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called (inside the runtime), not when the future is first polled, so a
/// signal during the first cycle is not lost to the default "terminate".
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Worker threads of the daemon's runtime. The daemon waits on git, IAM and
/// the API server almost all the time; its CPU work (parsing, planning) is a
/// fraction of a second per cycle. A worker per core would give a large node
/// dozens of threads, each with a stack and, under glibc, a malloc arena.
const DAEMON_WORKER_THREADS: usize = 2;

/// The runtime of `kftenant run`: see [`DAEMON_WORKER_THREADS`] and [`heap`].
fn daemon_runtime() -> Result<tokio::runtime::Runtime> {
    heap::limit_arenas(DAEMON_WORKER_THREADS);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(DAEMON_WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// glibc malloc settings for the long-running daemon, which otherwise idles
/// with several times the memory it holds: with 1,000 tenants, 17 MiB in use
/// in 59 MiB of mapped heap, 78 MiB RSS in all (`scripts/bench-daemon`).
///
/// - Freed memory inside the heap stays mapped: glibc gives back only the
///   top of the main heap by itself. Each cycle frees its observed world and
///   API responses (about 14 MiB with 1,000 tenants), so `malloc_trim(0)`
///   after each cycle returns them. The price is faulting those pages in
///   again in the next cycle: about 3,600 page faults, 10 ms of CPU.
/// - A thread that finds the arenas busy gets an arena of its own (up to 8
///   per core). A big cycle (the first convergence) spreads long-lived data
///   over all of them, with free holes between that no trim can return: idle
///   RSS was 61 MiB with trimming alone, 46 MiB with two arenas. One arena
///   per worker thread; the short-lived blocking threads (git, DNS) share
///   them. A single arena saved another 1 MiB but cost about 10 ms of CPU
///   per cycle.
///
/// Elsewhere (musl, macOS, Windows) these are no-ops: those allocators
/// return memory by their own rules.
mod heap {
    /// Caps malloc at `arenas` arenas. Call before any thread is started.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn limit_arenas(arenas: usize) {
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets one of malloc's tuning parameters from
        // two integers; M_ARENA_MAX is documented for it and may be set at any
        // time (it applies to arenas created later: here, all of them). On
        // failure (return 0) glibc keeps its default, which is merely larger.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }

    /// Returns the free pages of every arena to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn release() {
        // SAFETY: malloc_trim takes each arena's lock itself and releases only
        // pages that hold no allocation, so it is safe from any thread at any
        // time; its argument is a plain size (0: keep no slack at the top).
        unsafe {
            libc::malloc_trim(0);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn limit_arenas(_arenas: usize) {}

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn release() {}
}

/// Asks for "yes" on a terminal; refuses when there is no terminal to ask.
fn confirm() -> Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("refusing to apply without --auto-approve: standard input is not a terminal");
    }
    eprint!("Apply these changes? Only 'yes' is accepted: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Writes `parts` to FILE, FILE.2, FILE.3, ...
fn write_parts(first: &Path, parts: &[Vec<u8>]) -> Result<()> {
    for (i, part) in parts.iter().enumerate() {
        let path = if i == 0 {
            first.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{}", first.display(), i + 1))
        };
        std::fs::write(&path, part).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Reads a snapshot written by `kftenant observe` for `plan --observed`,
/// parsed as it is read: the text (25 MiB for 10,000 tenants) would otherwise
/// be held beside the world built from it, at the peak of the process.
fn read_snapshot(path: &Path) -> Result<Observed> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    Observed::read(std::io::BufReader::with_capacity(1 << 16, file))
        .with_context(|| path.display().to_string())
}
