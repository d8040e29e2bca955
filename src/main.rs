//! The `kftenant` command line.
//!
//! Arguments are read in two steps, as ripgrep does: `clap` parses them into
//! plain structs (no file or environment is touched), then each command's
//! function turns them into what the library needs (reading files and
//! environment variables) and calls it. `main` turns the result into an exit
//! code and prints an error's whole cause chain.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kftenant::daemon::lease::LeaseConfig;
use kftenant::daemon::{self, DaemonOptions};
use kftenant::git::{self, GitAuth, GitSource, GitTreeSource};
use kftenant::live::observe::{IamMode, Scope, observe};
use kftenant::live::{Clients, apply as live_apply};
use kftenant::model::{self, Repository};
use kftenant::plan::desired::{self, Desired};
use kftenant::plan::observed::Observed;
use kftenant::plan::{self, Plan, PlanKind, PlanOptions, PullRequest};
use kftenant::report::{self, Format};
use kftenant::schema;
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
    /// For scheduled jobs and dashboards. Exit codes: 0 no differences, 2 drift,
    /// pending changes or conflicts, 1 error.
    Drift(DriftArgs),
    /// Run as a daemon: pull the tenant repository, reconcile on every new commit,
    /// on a timer and on push webhooks; serve health, metrics, status and drift reports.
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
}

/// `kftenant drift`.
#[derive(clap::Args, Debug)]
struct DriftArgs {
    /// The repository root (the folder with kftenant.toml).
    #[arg(default_value = ".")]
    repo: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    #[command(flatten)]
    live: LiveOpts,
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
    /// Lease for leader election (only the holder writes); omit to run as the only writer.
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

/// `90s`, `5m`, `1h 30m`, `250ms` (any `humantime` duration), or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{s}` is too many seconds"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration such as 30s, 5m or 1h: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => validate(a),
        Command::Plan(a) => plan_cmd(a),
        Command::Observe(a) => observe_cmd(a),
        Command::Apply(a) => apply(a),
        Command::Drift(a) => drift(a),
        Command::Run(a) => run_daemon(a),
        Command::Schema(a) => write_schemas(a),
        Command::Init(a) => init(a),
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

/// Loads the repository, printing every problem to standard error when it
/// does not validate.
fn load(repo: &Path) -> Result<Option<Repository>> {
    match model::load_dir(repo) {
        Ok(r) => Ok(Some(r)),
        Err(diags) => {
            report::write_diagnostics(&diags, &mut std::io::stderr())?;
            Ok(None)
        }
    }
}

fn validate(a: ValidateArgs) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    match (model::load_dir(&a.repo), a.format) {
        (Ok(r), ValidateFormat::Text) => {
            writeln!(
                out,
                "{}: valid ({} tenants, {} shared policies)",
                a.repo.display(),
                r.tenants.len(),
                r.policies.len()
            )?;
            report::write_files_read(&r, &mut out)?;
        }
        (Ok(r), ValidateFormat::Json) => writeln!(
            out,
            "{}",
            serde_json::json!({"valid": true, "tenants": r.tenants.len(), "policies": r.policies.len(), "files": r.files, "problems": []})
        )?,
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

fn plan_cmd(a: PlanArgs) -> Result<u8> {
    let Some(repository) = load(&a.repo)? else {
        return Ok(1);
    };
    let format = Format::from(a.format);
    // Memory (heap in use with 10,000 tenants): repository 46 MiB, desired
    // world 137, observed world 85. The repository is freed once rendered,
    // before the observed world is read, so only the two worlds the planner
    // compares are ever held together.
    let want = desired::render(&repository);
    let region = repository.config.cluster.region.clone();
    drop(repository);
    let observed = match (&a.observed, a.observe_live) {
        (_, true) => runtime()?.block_on(observe_live(&region, &want, &a.live))?,
        (Some(f), false) => read_snapshot(f)?,
        (None, false) => Observed::default(),
    };
    let opts = PlanOptions {
        allow_mass_delete: a.allow_mass_delete,
        source_commit: a.source_commit.or_else(|| git::head_commit(&a.repo)),
    };
    let mut p = plan::plan(&want, &observed, &opts);
    if a.observe_live {
        // Lets `apply --plan-file` refuse this plan once the live world moves on.
        p.observed_digest = Some(observed.digest());
    }
    if let Some(rev) = &a.base {
        let (src, base_commit) = GitTreeSource::open(&a.repo, rev)?;
        let base_repo = model::load(&src).ok();
        let tenants = desired::changed_tenants(base_repo.as_ref(), &want)
            .into_iter()
            .map(|(t, kind)| (t, kind.to_string()))
            .collect();
        let pull_request = PullRequest {
            base: rev.clone(),
            base_commit,
            tenants,
        };
        // Drift is what the live world changed against the base; the
        // pull request's own changes are not drift.
        let base_plan = base_repo
            .map(|r| plan::plan(&desired::render(&r), &observed, &opts))
            .unwrap_or_else(|| plan::plan(&want, &Observed::default(), &opts));
        p.against_base(&base_plan, pull_request);
    }
    // Planned: the observed world is not needed again.
    drop(observed);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    match format {
        Format::Markdown => parts.extend(
            report::markdown_parts(&p, report::MARKDOWN_PART_LIMIT)
                .into_iter()
                .map(String::into_bytes),
        ),
        _ => {
            let mut buf = Vec::new();
            report::write_plan(&p, format, &mut buf)?;
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
    Ok(p.verdict().exit_code())
}

fn load_and_observe(repo: &Path, live: &LiveOpts) -> Result<Option<(Desired, Observed)>> {
    let Some(repository) = load(repo)? else {
        return Ok(None);
    };
    let want = desired::render(&repository);
    let observed =
        runtime()?.block_on(observe_live(&repository.config.cluster.region, &want, live))?;
    Ok(Some((want, observed)))
}

fn observe_cmd(a: ObserveArgs) -> Result<u8> {
    let Some((_, observed)) = load_and_observe(&a.repo, &a.live)? else {
        return Ok(1);
    };
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
    let Some((want, observed)) = load_and_observe(&a.repo, &a.live)? else {
        return Ok(1);
    };
    let opts = PlanOptions {
        allow_mass_delete: false,
        source_commit: git::head_commit(&a.repo),
    };
    let p = Plan {
        kind: PlanKind::Drift,
        ..plan::plan(&want, &observed, &opts)
    };
    report::write_plan(&p, a.format.into(), &mut std::io::stdout().lock())?;
    Ok(p.verdict().exit_code())
}

fn apply(a: ApplyArgs) -> Result<u8> {
    let Some(repository) = load(&a.repo)? else {
        return Ok(1);
    };
    let format = Format::from(a.format);
    let want = desired::render(&repository);
    let rt = runtime()?;
    let clients = rt.block_on(Clients::from_env(
        &repository.config.cluster.region,
        a.live.aws_max_attempts,
    ))?;
    let observed = rt.block_on(observe(&clients, &Scope::of(&want), a.live.iam_mode.into()))?;
    let p = match &a.plan_file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let saved = Plan::from_json(&text).with_context(|| f.display().to_string())?;
            saved
                .check_fresh(&observed)
                .with_context(|| f.display().to_string())?;
            saved
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
    let mut out = std::io::stdout().lock();
    report::write_plan(&p, format, &mut out)?;
    let print_stats = || -> Result<()> {
        if a.live.stats {
            eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
        }
        Ok(())
    };
    if p.is_empty() {
        print_stats()?;
        return Ok(p.verdict().exit_code());
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
    let report = rt.block_on(live_apply::execute(&clients, &p, &opts));
    report::write_apply(&report, format, &mut out)?;
    print_stats()?;
    Ok(if report.converged() { 0 } else { 1 })
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
    let lease = a.lease_name.map(|name| LeaseConfig {
        name,
        namespace: a.lease_namespace,
        identity,
        duration: Duration::from_secs(15),
        renew: Duration::from_secs(5),
    });
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
        ready_grace: a
            .ready_grace
            .unwrap_or(a.interval * 3 + Duration::from_secs(30)),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        aws_max_attempts: a.live.aws_max_attempts,
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

/// Connects with the standard settings and reads the live world `want` cares
/// about; with `--stats`, prints the calls made.
async fn observe_live(region: &str, want: &Desired, o: &LiveOpts) -> Result<Observed> {
    let clients = Clients::from_env(region, o.aws_max_attempts).await?;
    let observed = observe(&clients, &Scope::of(want), o.iam_mode.into()).await?;
    if o.stats {
        eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
    }
    Ok(observed)
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
