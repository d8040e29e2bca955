//! The `kftenant` command line. `main` turns the result of [`run`] into an exit code.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kftenant::daemon::lease::LeaseConfig;
use kftenant::daemon::{self, DaemonOptions};
use kftenant::live::observe::{IamMode, Scope};
use kftenant::live::{Clients, apply as live_apply, observe};
use kftenant::observed::Observed;
use kftenant::plan::PlanOptions;
use kftenant::report::{self, Format};
use kftenant::source::{GitAuth, GitSource};
use kftenant::{desired, model, plan, schema};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    Validate {
        /// The repository root (the folder with kftenant.toml).
        #[arg(default_value = ".")]
        repo: PathBuf,
        /// Output format for problems.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Show what would change to make IAM and the cluster match git.
    ///
    /// Nothing is changed. Without --observed the live world is taken as empty
    /// (a full creation plan). Exit codes, like terraform plan -detailed-exitcode:
    /// 0 no changes, 2 changes present, 1 error (invalid repository, refused plan).
    Plan {
        /// The repository root (the folder with kftenant.toml).
        #[arg(default_value = ".")]
        repo: PathBuf,
        /// A snapshot of the live world (JSON, as written by `kftenant observe`).
        #[arg(long, value_name = "FILE")]
        observed: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
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
        #[arg(long, conflicts_with = "observed")]
        live: bool,
        #[command(flatten)]
        live_opts: LiveOpts,
    },
    /// Read the live world (IAM roles and policies, Profiles) into a snapshot.
    ///
    /// The snapshot is what `plan --observed FILE` reads. Only kftenant's path,
    /// its tagged resources and the names the repository wants are read.
    Observe {
        /// The repository root (decides the IAM path and the names to look up).
        #[arg(default_value = ".")]
        repo: PathBuf,
        /// Where to write the snapshot (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        live_opts: LiveOpts,
    },
    /// Make IAM and the cluster match git: validate, observe, plan, show the plan, execute it.
    ///
    /// Asks for confirmation on a terminal unless --auto-approve. Exit codes:
    /// 0 converged (or nothing to do), 1 a step failed or the plan was refused.
    Apply {
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
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Allow deleting more tenants than [prune] max_deletions, or all of them.
        #[arg(long)]
        allow_mass_delete: bool,
        #[command(flatten)]
        live_opts: LiveOpts,
    },
    /// Report every difference between git and the live world, changing nothing.
    ///
    /// For scheduled jobs and dashboards. Exit codes: 0 no differences, 2 drift,
    /// pending changes or conflicts, 1 error.
    Drift {
        /// The repository root (the folder with kftenant.toml).
        #[arg(default_value = ".")]
        repo: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        live_opts: LiveOpts,
    },
    /// Run as a daemon: pull the tenant repository, reconcile on every new commit,
    /// on a timer and on push webhooks; serve health, metrics, status and drift reports.
    ///
    /// A commit that fails validation is reported and not applied; the last good
    /// commit stays the desired world. A fetch failure keeps the last good checkout.
    /// With --plan-only nothing is ever written (read-only credentials are enough).
    Run {
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
        live_opts: LiveOpts,
    },
    /// Write the JSON Schemas of tenant files and kftenant.toml.
    Schema {
        /// Folder to write into.
        #[arg(long, default_value = "schema")]
        out_dir: PathBuf,
    },
}

/// Options of every command that reads the live world.
#[derive(clap::Args, Debug, Clone)]
struct LiveOpts {
    /// How to read IAM: `bulk` (GetAccountAuthorizationDetails) or `per-role`
    /// (for accounts without iam:GetAccountAuthorizationDetails).
    #[arg(long, value_enum, default_value_t = IamMode::Bulk)]
    iam_mode: IamMode,
    /// Attempts per AWS call (the SDK's adaptive retry mode).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
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

fn run(cli: Cli) -> Result<u8> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Validate { repo, format } => match model::load_dir(&repo) {
            Ok(r) => {
                match format {
                    ValidateFormat::Text => writeln!(
                        out,
                        "{}: valid ({} tenants, {} shared policies)",
                        repo.display(),
                        r.tenants.len(),
                        r.policies.len()
                    )?,
                    ValidateFormat::Json => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"valid": true, "tenants": r.tenants.len(), "policies": r.policies.len(), "problems": []})
                    )?,
                }
                Ok(0)
            }
            Err(diags) => {
                match format {
                    ValidateFormat::Text => {
                        report::write_diagnostics(&diags, &mut std::io::stderr())?
                    }
                    ValidateFormat::Json => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"valid": false, "problems": diags})
                    )?,
                }
                Ok(1)
            }
        },
        Command::Plan {
            repo,
            observed,
            format,
            out: out_file,
            allow_mass_delete,
            source_commit,
            base,
            live,
            live_opts,
        } => {
            let repository = match model::load_dir(&repo) {
                Ok(r) => r,
                Err(diags) => {
                    report::write_diagnostics(&diags, &mut std::io::stderr())?;
                    return Ok(1);
                }
            };
            // Memory (heap in use with 10,000 tenants): repository 46 MiB,
            // desired world 137, observed world 85. The repository is freed
            // once rendered, before the observed world is read, so only the
            // two worlds the planner compares are ever held together.
            let want = desired::render(&repository);
            let observed = if live {
                let o = runtime()?.block_on(observe_live(&repository, &want, &live_opts))?;
                drop(repository);
                o
            } else {
                drop(repository);
                match observed {
                    Some(f) => read_snapshot(&f)?,
                    None => Observed::default(),
                }
            };
            let opts = PlanOptions {
                allow_mass_delete,
                source_commit: source_commit.or_else(|| head_commit(&repo)),
            };
            let p = match plan::plan(&want, &observed, &opts) {
                Ok(mut p) => {
                    if live {
                        // Lets `apply --plan-file` refuse this plan once the live world moves on.
                        p.observed_digest = Some(observed.digest());
                    }
                    p
                }
                Err(refused) => {
                    eprintln!("error: {refused}");
                    return Ok(1);
                }
            };
            // Planned: the observed world is not needed again, and `--base`
            // below loads a second repository.
            drop(observed);
            let mut parts: Vec<Vec<u8>> = Vec::new();
            if let Some(rev) = &base {
                let (src, base_commit) = kftenant::source::GitTreeSource::open(&repo, rev)?;
                let changed = match model::load(&src) {
                    Ok(base_repo) => desired::changed_tenants(&base_repo, &want),
                    // A broken base still lets the PR be planned; every tenant counts as changed.
                    Err(_) => want.roles.keys().map(|t| (t.clone(), "changed")).collect(),
                };
                let mut head = format!(
                    "Tenants changed by this pull request (against {rev}, {}): {}\n",
                    &base_commit[..12.min(base_commit.len())],
                    changed.len()
                );
                if format == Format::Markdown {
                    head = format!("#### {}", head);
                }
                for (t, kind) in &changed {
                    head.push_str(&format!("- {t} ({kind})\n"));
                }
                head.push('\n');
                if format != Format::Json {
                    parts.push(head.into_bytes());
                }
            }
            match format {
                Format::Text => {
                    let mut buf = Vec::new();
                    report::write_text(&p, &mut buf)?;
                    parts.push(buf);
                }
                Format::Json => {
                    let mut buf = Vec::new();
                    report::write_json(&p, &mut buf)?;
                    parts.push(buf);
                }
                Format::Markdown => parts.extend(
                    report::markdown_parts(&p, report::MARKDOWN_PART_LIMIT)
                        .into_iter()
                        .map(String::into_bytes),
                ),
            }
            match out_file {
                Some(f) => write_parts(&f, &parts)?,
                None => {
                    for part in &parts {
                        out.write_all(part)?;
                    }
                }
            }
            Ok(if p.is_empty() { 0 } else { 2 })
        }
        Command::Observe {
            repo,
            out: out_file,
            live_opts,
        } => {
            let Some(repository) = load_or_report(&repo)? else {
                return Ok(1);
            };
            let want = desired::render(&repository);
            let observed = runtime()?.block_on(observe_live(&repository, &want, &live_opts))?;
            match out_file {
                Some(f) => std::fs::write(&f, observed.to_json())
                    .with_context(|| format!("writing {}", f.display()))?,
                None => out.write_all(observed.to_json().as_bytes())?,
            }
            Ok(0)
        }
        Command::Drift {
            repo,
            format,
            live_opts,
        } => {
            let Some(repository) = load_or_report(&repo)? else {
                return Ok(1);
            };
            let want = desired::render(&repository);
            let observed = runtime()?.block_on(observe_live(&repository, &want, &live_opts))?;
            // Drift changes nothing, so the mass-delete guard does not apply: report everything.
            let opts = PlanOptions {
                allow_mass_delete: true,
                source_commit: head_commit(&repo),
            };
            let p = plan::plan(&want, &observed, &opts).context("planning")?;
            write_plan(&p, format, &mut out)?;
            Ok(if p.is_empty() && p.conflicts.is_empty() {
                0
            } else {
                2
            })
        }
        Command::Apply {
            repo,
            auto_approve,
            plan_file,
            workers,
            profile_delete_timeout,
            format,
            allow_mass_delete,
            live_opts,
        } => {
            let Some(repository) = load_or_report(&repo)? else {
                return Ok(1);
            };
            let want = desired::render(&repository);
            let rt = runtime()?;
            let clients = rt.block_on(Clients::from_env(
                &repository.config.cluster.region,
                live_opts.aws_max_attempts,
            ))?;
            let observed = rt.block_on(observe::observe(
                &clients,
                &Scope::of(&want),
                live_opts.iam_mode,
            ))?;
            let p = match plan_file {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    let saved: plan::Plan = serde_json::from_str(&text)
                        .with_context(|| format!("{}: not a kftenant JSON plan", f.display()))?;
                    match &saved.observed_digest {
                        Some(d) if *d == observed.digest() => saved,
                        Some(_) => anyhow::bail!(
                            "{}: stale plan: the live world changed since it was made; make a new plan",
                            f.display()
                        ),
                        None => anyhow::bail!(
                            "{}: the plan has no observed_digest (make it with `kftenant plan --live --format json`)",
                            f.display()
                        ),
                    }
                }
                None => {
                    let opts = PlanOptions {
                        allow_mass_delete,
                        source_commit: head_commit(&repo),
                    };
                    match plan::plan(&want, &observed, &opts) {
                        Ok(mut p) => {
                            p.observed_digest = Some(observed.digest());
                            p
                        }
                        Err(refused) => {
                            eprintln!("error: {refused}");
                            return Ok(1);
                        }
                    }
                }
            };
            write_plan(&p, format, &mut out)?;
            if p.is_empty() {
                return Ok(0);
            }
            if !auto_approve && !confirm()? {
                writeln!(out, "Apply cancelled.")?;
                return Ok(1);
            }
            let opts = live_apply::ApplyOptions {
                workers,
                profile_delete_timeout: std::time::Duration::from_secs(profile_delete_timeout),
                ..Default::default()
            };
            let report = rt.block_on(live_apply::execute(&clients, &p, &opts));
            match format {
                Format::Text => report::write_apply_text(&report, &mut out)?,
                Format::Markdown => report::write_apply_markdown(&report, &mut out)?,
                Format::Json => report::write_apply_json(&report, &mut out)?,
            }
            if live_opts.stats {
                eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
            }
            Ok(if report.converged() { 0 } else { 1 })
        }
        Command::Run {
            repo,
            branch,
            path,
            interval,
            jitter,
            plan_only,
            listen,
            webhook_secret_file,
            git_token_file,
            ssh_key_file,
            known_hosts_file,
            cache_dir,
            lease_name,
            lease_namespace,
            workers,
            ready_grace,
            log_format,
            live_opts,
        } => {
            init_logs(log_format);
            let read_secret = |f: &Path| -> Result<String> {
                Ok(std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .trim()
                    .to_string())
            };
            let auth = match (
                git_token_file,
                std::env::var("KFTENANT_GIT_TOKEN").ok(),
                ssh_key_file,
                known_hosts_file,
            ) {
                (Some(f), _, _, _) => GitAuth::Token(read_secret(&f)?),
                (None, Some(t), _, _) => GitAuth::Token(t),
                (None, None, Some(key), Some(known_hosts)) => GitAuth::Ssh { key, known_hosts },
                _ => GitAuth::None,
            };
            let webhook_secret = webhook_secret_file
                .map(|f| read_secret(&f).map(String::into_bytes))
                .transpose()?;
            let source = GitSource {
                url: repo,
                branch,
                path,
                cache_dir,
                auth,
            };
            let identity = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("kftenant-{}", std::process::id()));
            let lease = lease_name.map(|name| LeaseConfig {
                name,
                namespace: lease_namespace,
                identity,
                duration: std::time::Duration::from_secs(15),
                renew: std::time::Duration::from_secs(5),
            });
            let options = DaemonOptions {
                interval,
                jitter,
                plan_only,
                listen,
                webhook_secret,
                iam_mode: live_opts.iam_mode,
                apply: live_apply::ApplyOptions {
                    workers,
                    ..Default::default()
                },
                lease,
                ready_grace: ready_grace
                    .unwrap_or(interval * 3 + std::time::Duration::from_secs(30)),
                region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
                aws_max_attempts: live_opts.aws_max_attempts,
                release_memory: heap::release,
            };
            tracing::info!(options = ?daemon::describe(&options), "starting");
            daemon_runtime()?.block_on(async {
                let shutdown = shutdown_signal();
                daemon::run(source, options, shutdown).await
            })?;
            Ok(0)
        }
        Command::Schema { out_dir } => {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            for (name, text) in schema::all() {
                let path = out_dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                writeln!(out, "wrote {}", path.display())?;
            }
            Ok(0)
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

/// `90s`, `5m`, `1h`, `250ms`, or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30s, 5m or 1h"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    Ok(std::time::Duration::from_millis(ms))
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

fn load_or_report(repo: &Path) -> Result<Option<model::Repository>> {
    match model::load_dir(repo) {
        Ok(r) => Ok(Some(r)),
        Err(diags) => {
            report::write_diagnostics(&diags, &mut std::io::stderr())?;
            Ok(None)
        }
    }
}

async fn observe_live(
    repo: &model::Repository,
    want: &desired::Desired,
    o: &LiveOpts,
) -> Result<Observed> {
    let clients = Clients::from_env(&repo.config.cluster.region, o.aws_max_attempts).await?;
    let observed = observe::observe(&clients, &Scope::of(want), o.iam_mode).await?;
    if o.stats {
        eprintln!("{}", serde_json::to_string(&clients.calls.snapshot())?);
    }
    Ok(observed)
}

fn write_plan(p: &plan::Plan, format: Format, out: &mut impl Write) -> Result<()> {
    match format {
        Format::Text => report::write_text(p, out)?,
        Format::Json => report::write_json(p, out)?,
        Format::Markdown => {
            for part in report::markdown_parts(p, report::MARKDOWN_PART_LIMIT) {
                out.write_all(part.as_bytes())?;
            }
        }
    }
    Ok(())
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

/// Reads a snapshot written by `kftenant observe` for `plan --observed`.
///
/// Parsed as it is read, not from a string of the whole file: the text
/// (25 MiB for 10,000 tenants) would otherwise be held beside the desired
/// world and the snapshot being built from it, at the peak of the process.
fn read_snapshot(path: &Path) -> Result<Observed> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
        .with_context(|| format!("{}: not a kftenant snapshot", path.display()))
}

/// The commit checked out in `repo`, read from `.git` without a git library
/// (enough for `plan`; the daemon uses its own checkout).
fn head_commit(repo: &Path) -> Option<String> {
    let git = repo.join(".git");
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(r) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(sha) = std::fs::read_to_string(git.join(r)) {
        return Some(sha.trim().to_string());
    }
    let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
    packed
        .lines()
        .find_map(|l| l.strip_suffix(r).map(|sha| sha.trim().to_string()))
}
