//! Which files of a repository kftenant reads, and the rule that every other
//! file where a tenant or policy could be mistaken to live is an error, so a
//! file that kftenant does not read never silently stops existing for it
//! (a tenant whose file moved where it is not read would be deleted).
//!
//! The rule:
//! - `kftenant.toml` at the root;
//! - tenant files: every `*.yaml` / `*.yml` (any case) under `tenants/`, in
//!   any subfolder (a folder per department is normal);
//! - shared policies: `policies/<name>.json` (any case), directly in `policies/`;
//! - cluster files: `clusters/<name>.toml` (any case), directly in `clusters/`;
//! - inline policy documents: any path a tenant names;
//! - hidden files and folders (`.github/`, `.gitkeep`) and Markdown files
//!   (`*.md`: notes for people) are never read and never an error.
//!
//! Anything else under `tenants/`, `policies/` or `clusters/`, and any YAML file outside
//! `tenants/`, is an error saying it is not read.

use super::clusters::CLUSTERS_DIR;
use super::source::Tree;
use crate::diag::{Diagnostic, Diagnostics};

/// The folder of tenant files.
pub const TENANTS_DIR: &str = "tenants";
/// The folder of shared policies.
pub const POLICIES_DIR: &str = "policies";

/// The extension of `path`, lower case (`yaml` for `a.YAML`).
fn extension(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

fn is_yaml(path: &str) -> bool {
    matches!(extension(path).as_deref(), Some("yaml" | "yml"))
}

fn is_markdown(path: &str) -> bool {
    extension(path).as_deref() == Some("md")
}

/// The files kftenant reads, found in a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Tenant files, sorted.
    pub tenant_files: Vec<String>,
    /// Shared policy files with their policy name (the file name without `.json`), sorted.
    pub policy_files: Vec<(String, String)>,
    /// Cluster files with their cluster name (the file name without
    /// `.toml`), sorted; empty in a repository of one cluster.
    pub cluster_files: Vec<(String, String)>,
    /// True when `tenants/` exists (an empty one is allowed; a missing one is a mistake).
    pub tenants_dir: bool,
}

impl Layout {
    /// Sorts `tree` into what is read and what is an error (recorded in `diags`).
    pub fn of(tree: &Tree, diags: &mut Diagnostics) -> Layout {
        if let Some(why) = &tree.truncated {
            diags.push(Diagnostic::file(".", why.clone()));
        }
        let mut layout = Layout {
            tenants_dir: tree.dirs.contains(TENANTS_DIR),
            ..Default::default()
        };
        let tenants_prefix = format!("{TENANTS_DIR}/");
        let policies_prefix = format!("{POLICIES_DIR}/");
        let clusters_prefix = format!("{CLUSTERS_DIR}/");
        for path in &tree.files {
            if is_markdown(path) {
                continue;
            }
            if let Some(rest) = path.strip_prefix(&tenants_prefix) {
                if is_yaml(rest) {
                    layout.tenant_files.push(path.clone());
                } else {
                    diags.push(
                        Diagnostic::file(path, "not read: a file under tenants/ must be a tenant file (*.yaml or *.yml)")
                            .with_hint("rename it to .yaml if it defines tenants, or move it out of tenants/"),
                    );
                }
            } else if let Some(rest) = path.strip_prefix(&policies_prefix) {
                match rest.rsplit_once('.') {
                    Some((name, ext)) if !rest.contains('/') && ext.eq_ignore_ascii_case("json") => {
                        layout.policy_files.push((path.clone(), name.to_string()));
                    }
                    _ if rest.contains('/') => diags.push(
                        Diagnostic::file(path, "not read: shared policies live directly in policies/, not in subfolders")
                            .with_hint("move it to policies/<name>.json (the file name is the policy name)"),
                    ),
                    _ => diags.push(
                        Diagnostic::file(path, "not read: a file in policies/ must be a policy document (<name>.json)")
                            .with_hint("rename it to .json if it is a policy, or move it out of policies/"),
                    ),
                }
            } else if let Some(rest) = path.strip_prefix(&clusters_prefix) {
                match rest.rsplit_once('.') {
                    Some((name, ext))
                        if !rest.contains('/') && !name.is_empty() && ext.eq_ignore_ascii_case("toml") =>
                    {
                        layout.cluster_files.push((path.clone(), name.to_string()));
                    }
                    _ => diags.push(
                        Diagnostic::file(path, "not read: a file in clusters/ must be a cluster file (<name>.toml), directly in clusters/")
                            .with_hint("name it clusters/<cluster name>.toml, or move it out of clusters/"),
                    ),
                }
            } else if is_yaml(path) {
                diags.push(
                    Diagnostic::file(path, "not read: tenant files live under tenants/")
                        .with_hint("move it under tenants/ (any subfolder) if it defines tenants; keep other YAML (CI workflows, manifests) in a hidden folder such as .github/ or outside the folder kftenant reads"),
                );
            }
        }
        if !layout.tenants_dir {
            diags.push(
                Diagnostic::file(TENANTS_DIR, "missing: tenant definitions live in tenants/ (*.yaml, in any subfolder)")
                    .with_hint("an empty tenants/ folder is allowed (keep it in git with tenants/.gitkeep), but a missing one is treated as a mistake so nothing gets pruned by accident"),
            );
        }
        layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::source::{MemSource, Source};

    fn layout(files: &[&str]) -> (Layout, Vec<String>) {
        let mut src = MemSource::default();
        for f in files {
            src = src.with(f, "");
        }
        let mut d = Diagnostics::default();
        let l = Layout::of(&src.tree(), &mut d);
        (l, d.sorted().iter().map(ToString::to_string).collect())
    }

    #[test]
    fn tenants_are_read_in_any_subfolder_with_any_case_of_extension() {
        let (l, problems) = layout(&[
            "tenants/a.yaml",
            "tenants/risk/b.YML",
            "tenants/risk/deep/c.Yaml",
            "tenants/README.md",
            "tenants/.gitkeep",
            ".github/workflows/plan.yml",
            "policies/s3.JSON",
            "inline/x.json",
            "clusters/prod.toml",
        ]);
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(
            l.tenant_files,
            vec![
                "tenants/a.yaml",
                "tenants/risk/b.YML",
                "tenants/risk/deep/c.Yaml"
            ]
        );
        assert_eq!(
            l.policy_files,
            vec![("policies/s3.JSON".to_string(), "s3".to_string())]
        );
        assert_eq!(
            l.cluster_files,
            vec![("clusters/prod.toml".to_string(), "prod".to_string())]
        );
    }

    #[test]
    fn files_that_are_not_read_are_errors() {
        let (_, problems) = layout(&[
            "tenants/a.yaml.bak",
            "tenants/b.json",
            "tenants/.yaml",
            "policies/team/x.json",
            "policies/notes.txt",
            "team-a.yaml",
            "old/tenants/c.yml",
            "clusters/eu/prod.toml",
            "clusters/prod.yaml",
        ]);
        let files: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            files,
            vec![
                "clusters/eu/prod.toml",
                "clusters/prod.yaml",
                "old/tenants/c.yml",
                "policies/notes.txt",
                "policies/team/x.json",
                "team-a.yaml",
                "tenants/a.yaml.bak",
                "tenants/b.json",
            ],
            "{problems:#?}"
        );
        assert!(problems[5].contains("not read: tenant files live under tenants/"));
    }

    #[test]
    fn a_missing_tenants_folder_is_an_error_an_empty_one_is_not() {
        let (_, problems) = layout(&["kftenant.toml"]);
        assert!(problems[0].starts_with("tenants: missing"), "{problems:?}");
        let (l, problems) = layout(&["tenants/.gitkeep"]);
        assert!(problems.is_empty() && l.tenants_dir && l.tenant_files.is_empty());
    }
}
