//! The `kftenant` command line. `main` turns the result of [`run`] into an exit code.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kftenant::observed::Observed;
use kftenant::plan::PlanOptions;
use kftenant::report::{self, Format};
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
    },
    /// Write the JSON Schemas of tenant files and kftenant.toml.
    Schema {
        /// Folder to write into.
        #[arg(long, default_value = "schema")]
        out_dir: PathBuf,
    },
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
        } => {
            let repository = match model::load_dir(&repo) {
                Ok(r) => r,
                Err(diags) => {
                    report::write_diagnostics(&diags, &mut std::io::stderr())?;
                    return Ok(1);
                }
            };
            let observed = match observed {
                Some(f) => {
                    let text = std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    Observed::from_json(&text)
                        .with_context(|| format!("{}: not a kftenant snapshot", f.display()))?
                }
                None => Observed::default(),
            };
            let want = desired::render(&repository);
            let opts = PlanOptions {
                allow_mass_delete,
                source_commit: source_commit.or_else(|| head_commit(&repo)),
            };
            let p = match plan::plan(&want, &observed, &opts) {
                Ok(p) => p,
                Err(refused) => {
                    eprintln!("error: {refused}");
                    return Ok(1);
                }
            };
            let mut parts: Vec<Vec<u8>> = Vec::new();
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
