//! The tenant repository: loading, decoding and validating everything a pull
//! request can change.
//!
//! Layout of a repository:
//!
//! ```text
//! kftenant.toml          cluster settings, defaults, guardrails (see `config`)
//! tenants/*.yaml         one or more `kind: Tenant` documents per file
//! policies/*.json        customer-managed IAM policies shared by tenants
//! <any path>.json        inline policy documents referenced by tenants
//! ```
//!
//! [`load`] reads the whole tree and returns either a [`Repository`] that is
//! valid in every respect, or every problem found, each with `file:line:column`.
//! Nothing half-valid ever leaves this module. The only I/O is reading files
//! through a [`Source`], so tests can also feed it from memory.
//!
//! Guardrails (`[guardrails]`) are checked here too: `denied_actions` on every
//! policy document, where it is written; `escalation_actions` and
//! `escalation_policy_arns` only for tenants whose role has no permissions
//! boundary, so a repo policy's escalations are computed once and reported at
//! each such tenant's `managedPolicies` entry.
//!
//! # Bounds
//! Pull requests from anyone are loaded, so the work and memory of [`load`]
//! are bounded whatever the files say:
//! - each file: [`source::MAX_FILE_BYTES`] of UTF-8 text, and the tree built
//!   from it within [`yaml::Limits::FILE`] (depth, documents, nodes and text,
//!   aliases counted as what they copy);
//! - the repository: the walk within [`source::MAX_FILES`] entries and
//!   [`source::MAX_PATH_BYTES`] of paths; at most [`MAX_REPO_BYTES`] of text
//!   read in all (each file is read once, however many tenants or clusters
//!   name it, and kept once); at most [`MAX_REPO_NODES`] nodes and [`MAX_REPO_TEXT`] bytes of
//!   scalar text built from all files together, which bounds everything kept
//!   of them; problems within [`crate::diag::MAX_TOTAL`].
//!
//! Each limit crossed is a problem at the file (and line and column) where it
//! was crossed. A byte-order mark at the start of any file is skipped.

pub mod clusters;
mod decode;
pub mod layout;
pub mod source;

pub use decode::{check_tag, check_user, fields};
pub use layout::Layout;
pub use source::{DirSource, MemSource, ReadError, Source};

use crate::config::{self, Config};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::names::check_policy_name;
use crate::policy::{self, PolicyKind, Reach};
use crate::quota::Quota;
use crate::yaml::{self, Node, Value};
use decode::Cx;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `apiVersion` of tenant documents.
pub const API_VERSION: &str = "kftenant.io/v1alpha1";
/// AWS quota: managed policy document size.
pub const MANAGED_POLICY_MAX_CHARS: usize = 6144;
/// AWS quota: all inline policies of one role together.
pub const INLINE_POLICIES_MAX_CHARS: usize = 10240;
/// Text read from all files of a repository together. The 10,000 tenants of
/// the benchmarks (`benches/synthetic.rs`) are 6 MiB in 10,022 files, and IAM
/// allows at most 5,000 roles per account.
pub const MAX_REPO_BYTES: u64 = 64 << 20;
/// Nodes built from all YAML and JSON files together (aliases counted as
/// what they copy; see [`yaml::Limits`]). The benchmarks' 10,000 tenants
/// build 570,000.
pub const MAX_REPO_NODES: usize = 2_000_000;
/// Bytes of scalar text built from all files together. The benchmarks'
/// 10,000 tenants build 4 MiB.
pub const MAX_REPO_TEXT: usize = 32 << 20;

// ---------------------------------------------------------------------------
// The file format (these types generate `schema/tenant.schema.json`).

/// One `kind: Tenant` document in `tenants/*.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantDocument {
    /// Always `kftenant.io/v1alpha1`.
    pub api_version: String,
    /// Always `Tenant`.
    pub kind: String,
    /// The tenant's name.
    pub metadata: TenantMetadata,
    /// What the tenant gets.
    pub spec: TenantSpec,
}

/// `metadata`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantMetadata {
    /// Profile and namespace name: a DNS-1123 label (lowercase letters, digits, `-`; at most 63).
    pub name: String,
}

/// `spec`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    /// The Profile owner (a user name as your identity provider gives it, usually an email).
    pub owner: String,
    /// Live resources that kftenant may take over although it did not create
    /// them (written by `kftenant import`). Without it, a live role, Profile
    /// or policy of the tenant that kftenant does not own is a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<TenantAdopt>,
    /// The tenant's IAM role.
    #[serde(default)]
    pub iam: TenantIam,
    /// The tenant's Kubeflow Profile.
    #[serde(default)]
    pub profile: TenantProfile,
    /// Who may use the tenant besides its owner (the dashboard's "contributors").
    #[serde(default)]
    pub members: Vec<MemberSpec>,
    /// The clusters the tenant is on, by name (default: every cluster of the
    /// repository). Not with `clusterSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    /// The clusters the tenant is on, by the labels of their `[cluster]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<ClusterSelector>,
    /// Changes for one cluster, by cluster name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, ClusterOverride>,
}

/// `spec.clusterSelector`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSelector {
    /// Labels every selected cluster has, e.g. `{env: prod}`.
    pub match_labels: BTreeMap<String, String>,
}

/// `spec.overrides.<cluster>`: what differs on that cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterOverride {
    /// Quota changes over the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileOverride>,
    /// Policies added to the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<IamOverride>,
    /// Contributors on that cluster, instead of the tenant's `members`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberSpec>>,
    /// What kftenant may take over on that cluster, instead of the tenant's
    /// `adopt` (each cluster's role made before kftenant is its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<TenantAdopt>,
}

/// `spec.overrides.<cluster>.profile`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileOverride {
    /// Limits set (or removed with `null`) over the tenant's quota; `scopes`
    /// replace the tenant's when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_quota: Option<TenantResourceQuota>,
}

/// `spec.overrides.<cluster>.iam`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IamOverride {
    /// Managed policies attached on that cluster besides the tenant's.
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// Inline policies on that cluster besides the tenant's.
    #[serde(default)]
    pub inline_policies: Vec<InlinePolicySpec>,
    /// The role's name on that cluster, instead of the tenant's `roleName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// The role's path on that cluster, instead of the tenant's `rolePath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_path: Option<String>,
}

/// `spec.adopt`: what kftenant may take over, each named exactly as it is
/// live, so a review sees what changes hands. Once taken over (ownership
/// tags and labels added), the block may stay or go: it changes nothing more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantAdopt {
    /// The ARN of the tenant's existing IAM role: it must be the role the
    /// tenant renders (`[iam] role_name_template` and `role_path`, or
    /// `spec.iam.roleName` and `spec.iam.rolePath`).
    #[serde(default)]
    pub role: Option<String>,
    /// The name of the tenant's existing Profile: the tenant's name.
    #[serde(default)]
    pub profile: Option<String>,
    /// ARNs of existing customer-managed policies that have a file in
    /// `policies/` and that this tenant attaches by that ARN.
    #[serde(default)]
    pub policies: Vec<String>,
}

/// One entry of `spec.members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberSpec {
    /// The user (as your identity provider gives it, usually an email).
    pub user: String,
    /// `edit` (the dashboard's contributor) or `view`.
    pub role: String,
}

/// `spec.iam`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantIam {
    /// The role's name, when it is not the one `[iam] role_name_template`
    /// renders (a role made before kftenant; IAM cannot rename a role).
    #[serde(default)]
    pub role_name: Option<String>,
    /// The role's IAM path, when it is not `[iam] role_path` (a role made
    /// before kftenant; IAM cannot move a role).
    #[serde(default)]
    pub role_path: Option<String>,
    /// Managed policies to attach: full ARNs, or names of files in `policies/`
    /// (without `.json`). An ARN of this account whose name has a file in
    /// `policies/` is that repo policy, kept at the ARN's path.
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// Inline policies of the role.
    #[serde(default)]
    pub inline_policies: Vec<InlinePolicySpec>,
    /// Permissions boundary (ARN or repo policy name); defaults to `[iam] permissions_boundary`.
    #[serde(default)]
    pub permissions_boundary: Option<String>,
    /// Maximum session duration in seconds; defaults to `[iam] max_session_duration`.
    #[serde(default)]
    pub max_session_duration: Option<u32>,
    /// Extra tags on the role (the `kftenant.io/` prefix and `aws:` are reserved).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Service accounts of the tenant namespace trusted besides `default-editor`.
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

/// One entry of `spec.iam.inlinePolicies`: exactly one of `file` or `document`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlinePolicySpec {
    /// Inline policy name.
    pub name: String,
    /// Path of a JSON policy document, relative to the repository root.
    #[serde(default)]
    pub file: Option<String>,
    /// The policy document, written inline.
    #[serde(default)]
    pub document: Option<Json>,
}

/// `spec.profile`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantProfile {
    /// Resource quota of the namespace, over `[profile] default_resource_quota`.
    #[serde(default)]
    pub resource_quota: Option<TenantResourceQuota>,
    /// Extra labels on the Profile.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the Profile.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.profile.resourceQuota`: changes to `[profile] default_resource_quota`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantResourceQuota {
    /// Limits by resource name, e.g. `cpu: "8"`, `requests.nvidia.com/gpu: 2`.
    /// Each sets or replaces the default's limit of that name; `null` removes
    /// the default's (e.g. `requests.nvidia.com/gpu: null`); defaults not
    /// named here stay.
    #[serde(default)]
    pub hard: BTreeMap<String, Option<config::Quantity>>,
    /// Quota scopes, e.g. `NotTerminating`. When given they replace the
    /// default's scopes (`[]` for none); when absent the default's apply.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------
// The validated repository.

/// A managed policy reference, as written in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PolicyRef {
    /// A full policy ARN (AWS-managed or customer-managed outside the repository).
    Arn(String),
    /// The name of a policy in `policies/`.
    Repo(String),
}

/// A tenant that passed validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    /// Profile and namespace name.
    pub name: String,
    /// The file that defines it, relative to the repository root.
    pub file: String,
    /// Profile owner.
    pub owner: String,
    /// Managed policies to attach.
    pub managed_policies: Vec<PolicyRef>,
    /// Inline policies by name, documents loaded.
    pub inline_policies: BTreeMap<String, Json>,
    /// The tenant's own boundary, if any (the config default applies otherwise).
    pub permissions_boundary: Option<PolicyRef>,
    /// The tenant's own maximum session duration, if any.
    pub max_session_duration: Option<u32>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
    /// Extra trusted service accounts.
    pub service_accounts: Vec<String>,
    /// The tenant's quota: the defaults with the tenant's changes (empty: none).
    pub resource_quota: Quota,
    /// Extra Profile labels.
    pub labels: BTreeMap<String, String>,
    /// Extra Profile annotations.
    pub annotations: BTreeMap<String, String>,
    /// Contributors: user and role, sorted by user.
    pub members: Vec<(String, crate::kubeflow::MemberRole)>,
    /// `spec.iam.roleName`: the role's name when it is not the template's.
    pub role_name: Option<String>,
    /// `spec.iam.rolePath`: the role's path when it is not `[iam] role_path`.
    pub role_path: Option<String>,
    /// `spec.adopt`: what kftenant may take over.
    pub adopt: Adopt,
}

/// What a tenant lets kftenant take over (`spec.adopt`), checked against
/// what the tenant renders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Adopt {
    /// The tenant's role.
    pub role: bool,
    /// The tenant's Profile.
    pub profile: bool,
    /// Repo policies, by name.
    pub policies: BTreeSet<String>,
}

impl Tenant {
    /// The name of the tenant's role: `spec.iam.roleName`, or the template's.
    pub fn role_name(&self, config: &Config) -> String {
        self.role_name
            .clone()
            .unwrap_or_else(|| config.role_name(&self.name))
    }

    /// The IAM path of the tenant's role: `spec.iam.rolePath`, or `[iam] role_path`.
    pub fn role_path<'a>(&'a self, config: &'a Config) -> &'a str {
        self.role_path.as_deref().unwrap_or(&config.iam.role_path)
    }

    /// The ARN of the tenant's role.
    pub fn role_arn(&self, config: &Config) -> String {
        config
            .account()
            .role_arn(self.role_path(config), &self.role_name(config))
    }
}

/// A shared policy from `policies/`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoPolicy {
    /// Policy name (the file name without `.json`).
    pub name: String,
    /// The file, relative to the repository root.
    pub file: String,
    /// Its IAM path: `[iam] role_path`, or the path of the ARN tenants name
    /// it by (a policy made before kftenant; IAM cannot move a policy).
    pub path: String,
    /// Tenants name it by an ARN (a policy made before kftenant, adopted):
    /// its IAM name is then the file name, not `[iam] policy_name_template`'s.
    pub pinned: bool,
    /// The document.
    pub document: Json,
}

impl RepoPolicy {
    /// The policy's IAM name: `[iam] policy_name_template`'s, or the file
    /// name when tenants name it by an ARN.
    pub fn iam_name(&self, config: &Config) -> String {
        if self.pinned {
            self.name.clone()
        } else {
            config.policy_name(&self.name)
        }
    }

    /// The policy's ARN in `config`'s account.
    pub fn arn(&self, config: &Config) -> String {
        config
            .account()
            .policy_arn(&self.path, &self.iam_name(config))
    }
}

/// A repository in which every check passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repository {
    /// `kftenant.toml`.
    pub config: Config,
    /// Tenants sorted by name.
    pub tenants: Vec<Tenant>,
    /// Repo policies sorted by name.
    pub policies: Vec<RepoPolicy>,
    /// Every file that was read, sorted (what `validate` lists).
    pub files: BTreeSet<String>,
}

/// Loads and validates the repository at `root`, which must describe one
/// cluster (see [`load`]).
pub fn load_dir(root: &Path) -> Result<Repository, Vec<Diagnostic>> {
    load(&DirSource::new(root))
}

/// Loads and validates a repository of one cluster. Returns every problem
/// when there is any; a repository of several clusters is a problem too
/// (load one with [`load_cluster`], or all with [`load_all`]).
pub fn load(src: &dyn Source) -> Result<Repository, Vec<Diagnostic>> {
    let mut all = load_with(src, None)?;
    if all.len() == 1 {
        return Ok(all.remove(0));
    }
    let names: Vec<&str> = all.iter().map(|r| r.config.cluster.name.as_str()).collect();
    Err(vec![
        Diagnostic::file(
            clusters::CLUSTERS_DIR,
            format!(
                "this repository describes {} clusters ({}); name one",
                names.len(),
                names.join(", ")
            ),
        )
        .with_hint("pass --cluster NAME"),
    ])
}

/// Loads and validates every cluster of a repository, sorted by name: one
/// [`Repository`] per cluster, each as that cluster sees it (its config over
/// the shared one, its tenants with their overrides). Checks across clusters
/// run too: no two clusters in one account render the same role or policy
/// name.
pub fn load_all(src: &dyn Source) -> Result<Vec<Repository>, Vec<Diagnostic>> {
    load_with(src, None)
}

/// Loads and validates what cluster `name` needs of a repository: the shared
/// files, its own cluster file (no other), and the tenants on it. In a
/// repository of one cluster, `name` must be that cluster's.
pub fn load_cluster(src: &dyn Source, name: &str) -> Result<Repository, Vec<Diagnostic>> {
    load_with(src, Some(name)).map(|mut r| r.remove(0))
}

/// The names of the clusters a repository declares in `clusters/` (empty for
/// a repository of one cluster), read from its tree alone.
pub fn cluster_names(src: &dyn Source) -> Vec<String> {
    let mut diags = Diagnostics::default();
    Layout::of(&src.tree(), &mut diags)
        .cluster_files
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

/// One cluster being loaded.
struct ClusterLoad {
    info: clusters::ClusterInfo,
    config: Option<Config>,
}

fn load_with(src: &dyn Source, only: Option<&str>) -> Result<Vec<Repository>, Vec<Diagnostic>> {
    let mut diags = Diagnostics::default();
    let reader = Reader::new(src);
    let layout = Layout::of(&src.tree(), &mut diags);
    let base = match reader.read(config::CONFIG_FILE) {
        Some(Ok(text)) => Some(text),
        Some(Err(e)) => {
            diags.push(e.diagnostic(config::CONFIG_FILE));
            None
        }
        None => {
            diags.push(
                Diagnostic::file(
                    config::CONFIG_FILE,
                    "missing: the repository root needs a kftenant.toml",
                )
                .with_hint("`kftenant init` writes one (and a first tenant and the CI workflow)"),
            );
            None
        }
    };
    let Some(mut loads) = cluster_configs(&reader, &layout, base.as_deref(), only, &mut diags)
    else {
        return Err(diags.sorted());
    };
    // Every cluster is known by name (for spec.clusters and spec.overrides);
    // tenants are decoded for the ones being loaded.
    let infos: Vec<clusters::ClusterInfo> = loads.iter().map(|l| l.info.clone()).collect();
    loads.retain(|l| only.is_none_or(|o| o == l.info.name));
    if loads.is_empty() {
        // No config to name a cluster: still check every file, so one run
        // shows every problem.
        loads.push(ClusterLoad {
            info: clusters::ClusterInfo {
                name: String::new(),
                labels: Some(BTreeMap::new()),
            },
            config: None,
        });
    }
    // Each tenant file is parsed once; each cluster decodes its own view.
    let mut docs: Vec<(&str, Vec<Node>)> = Vec::new();
    for path in &layout.tenant_files {
        match reader.read(path) {
            Some(Ok(text)) => match reader.parse_yaml(path, &text) {
                Ok(d) => {
                    if d.is_empty() {
                        diags.push(
                            Diagnostic::file(path, "no Tenant document in this file")
                                .with_hint("delete the file if the tenant is gone"),
                        );
                    }
                    docs.push((path, d));
                }
                Err(d) => diags.push(d),
            },
            Some(Err(e)) => diags.push(e.diagnostic(path)),
            None => {}
        }
    }
    let several = loads.len() > 1;
    let mut per_cluster: Vec<(String, Diagnostics)> = Vec::new();
    let mut out = Vec::new();
    let mut roles: Vec<RoleName> = Vec::new();
    for load in loads {
        let mut cd = Diagnostics::default();
        let config = load.config.as_ref();
        let (mut policies, repo_escalations) = load_policies(&reader, &layout, config, &mut cd);
        // Every file in policies/ names a policy, even one with errors of its own,
        // so a broken policy is reported once and not again at each tenant using it.
        let policy_names: BTreeSet<String> = layout
            .policy_files
            .iter()
            .map(|(_, name)| name.clone())
            .collect();
        let default_quota = config.and_then(Config::default_quota);
        let mut tenants = Vec::new();
        for (path, file_docs) in &docs {
            for doc in file_docs {
                let Some(doc) = clusters::view(doc, path, &load.info, &infos, &mut cd) else {
                    continue;
                };
                let mut cx = Cx {
                    file: path,
                    diags: &mut cd,
                    src: &reader,
                    config,
                    default_quota: default_quota.as_ref(),
                    policy_names: &policy_names,
                    repo_escalations: &repo_escalations,
                    pinned: Vec::new(),
                };
                if let Some(t) = cx.tenant(&doc) {
                    tenants.push(t);
                }
            }
        }
        if let Some(config) = config {
            cross_check(config, &tenants, &mut cd);
            pin_policy_paths(&mut policies, &tenants, &mut cd);
            for l in &tenants {
                roles.push(RoleName {
                    cluster: config.cluster.name.clone(),
                    account: config.cluster.account_id.clone(),
                    role: l.tenant.role_name(config),
                    tenant: l.tenant.name.clone(),
                    file: l.tenant.file.clone(),
                    pos: l.name_pos,
                });
            }
        }
        if cd.is_empty() && diags.is_empty() {
            if let Some(config) = load.config {
                let mut tenants: Vec<Tenant> = tenants.into_iter().map(|t| t.tenant).collect();
                tenants.sort_by(|a, b| a.name.cmp(&b.name));
                out.push(Repository {
                    config,
                    tenants,
                    policies,
                    files: BTreeSet::new(),
                });
            }
        }
        per_cluster.push((load.info.name, cd));
    }
    merge_cluster_diagnostics(per_cluster, several, &mut diags);
    if only.is_none() && several {
        cross_cluster_check(&roles, &out, &mut diags);
    }
    if !diags.is_empty() {
        return Err(diags.sorted());
    }
    let files = reader.read.into_inner();
    for r in &mut out {
        r.files = files.clone();
    }
    Ok(out)
}

/// The config of each cluster to load: the one of `kftenant.toml`, or one
/// per `clusters/<name>.toml` over it (only `only`'s when given); `None`
/// when `only` names no cluster of the repository (that one problem is
/// pushed, and nothing else is worth checking for a cluster that is not there).
fn cluster_configs(
    reader: &Reader<'_>,
    layout: &Layout,
    base: Option<&str>,
    only: Option<&str>,
    diags: &mut Diagnostics,
) -> Option<Vec<ClusterLoad>> {
    let Some(base) = base else {
        return Some(Vec::new());
    };
    if layout.cluster_files.is_empty() {
        let Some(config) = config::load(base, diags) else {
            return Some(Vec::new());
        };
        if let Some(want) = only.filter(|n| *n != config.cluster.name) {
            diags.push(
                Diagnostic::at(
                    config::CONFIG_FILE,
                    config.origin.locate(&["cluster", "name"]).1,
                    format!(
                        "no cluster `{want}`: this repository describes cluster `{}`",
                        config.cluster.name
                    ),
                )
                .with_hint("drop --cluster, or name that cluster"),
            );
            return None;
        }
        return Some(vec![ClusterLoad {
            info: clusters::ClusterInfo {
                name: config.cluster.name.clone(),
                labels: Some(config.cluster.labels.clone()),
            },
            config: Some(config),
        }]);
    }
    let base_ok = config::check_base(base, diags);
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (path, name) in &layout.cluster_files {
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), path) {
            diags.push(
                Diagnostic::file(path, format!("cluster `{name}` is declared twice: {first} and {path} differ only in case"))
                    .with_hint("cluster names are compared without case (they are part of IAM names): remove one"),
            );
        }
    }
    if let Some(want) = only {
        if !layout.cluster_files.iter().any(|(_, n)| n == want) {
            let names: Vec<&str> = layout
                .cluster_files
                .iter()
                .map(|(_, n)| n.as_str())
                .collect();
            diags.push(
                Diagnostic::file(
                    clusters::CLUSTERS_DIR,
                    format!(
                        "no cluster `{want}`: this repository declares {}",
                        names.join(", ")
                    ),
                )
                .with_hint(format!("add clusters/{want}.toml, or name one of those")),
            );
            return None;
        }
    }
    let mut loads = Vec::new();
    for (path, name) in &layout.cluster_files {
        if only.is_some_and(|o| o != name) {
            // Another daemon's cluster: not read, its labels unknown.
            loads.push(ClusterLoad {
                info: clusters::ClusterInfo {
                    name: name.clone(),
                    labels: None,
                },
                config: None,
            });
            continue;
        }
        let config = match reader.read(path) {
            Some(Ok(text)) if base_ok => config::load_layered(base, name, path, &text, diags),
            Some(Ok(_)) => None,
            Some(Err(e)) => {
                diags.push(e.diagnostic(path));
                None
            }
            None => None,
        };
        loads.push(ClusterLoad {
            info: clusters::ClusterInfo {
                name: name.clone(),
                labels: config.as_ref().map(|c| c.cluster.labels.clone()),
            },
            config,
        });
    }
    Some(loads)
}

/// Reads and parses through a [`Source`], remembering what was read and
/// holding the repository to its limits (see the module docs, Bounds).
pub(super) struct Reader<'s> {
    src: &'s dyn Source,
    read: std::cell::RefCell<BTreeSet<String>>,
    /// What was read, so each cluster of a repository reads a file once.
    cache: std::cell::RefCell<BTreeMap<String, Option<Result<String, ReadError>>>>,
    /// Bytes of text read so far, against [`MAX_REPO_BYTES`].
    bytes: std::cell::Cell<u64>,
    /// What the YAML loader built so far, against [`MAX_REPO_NODES`] and [`MAX_REPO_TEXT`].
    built: std::cell::Cell<yaml::Usage>,
}

impl<'s> Reader<'s> {
    fn new(src: &'s dyn Source) -> Self {
        Reader {
            src,
            read: Default::default(),
            cache: Default::default(),
            bytes: Default::default(),
            built: Default::default(),
        }
    }

    /// The text of `path` without a leading byte-order mark; see
    /// [`Source::read`]. Read once: a second call answers from memory.
    pub(super) fn read(&self, path: &str) -> Option<Result<String, ReadError>> {
        if let Some(r) = self.cache.borrow().get(path) {
            return r.clone();
        }
        let r = self.read_uncached(path);
        self.cache.borrow_mut().insert(path.to_string(), r.clone());
        r
    }

    fn read_uncached(&self, path: &str) -> Option<Result<String, ReadError>> {
        let mut text = match self.src.read(path)? {
            Ok(text) => text,
            Err(e) => return Some(Err(e)),
        };
        let total = self.bytes.get().saturating_add(text.len() as u64);
        if total > MAX_REPO_BYTES {
            return Some(Err(ReadError::RepositoryTooLarge {
                limit: MAX_REPO_BYTES,
            }));
        }
        self.bytes.set(total);
        self.read.borrow_mut().insert(path.to_string());
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        Some(Ok(text))
    }

    /// The documents of the YAML `text` (the file `path`), within the file's
    /// and the repository's limits; the problem when there is one.
    pub(super) fn parse_yaml(&self, path: &str, text: &str) -> Result<Vec<Node>, Diagnostic> {
        self.parse(path, text, "YAML", yaml::load)
    }

    /// [`Reader::parse_yaml`] for a JSON text that serde_json accepted.
    pub(super) fn parse_json(&self, path: &str, text: &str) -> Result<Vec<Node>, Diagnostic> {
        self.parse(
            path,
            text,
            "JSON (read as YAML for positions)",
            yaml::load_json,
        )
    }

    fn parse(
        &self,
        path: &str,
        text: &str,
        what: &str,
        load: fn(&str, &yaml::Limits) -> yaml::Loaded,
    ) -> Result<Vec<Node>, Diagnostic> {
        let built = self.built.get();
        if built.nodes >= MAX_REPO_NODES || built.scalar_bytes >= MAX_REPO_TEXT {
            return Err(Diagnostic::file(
                path,
                "not read: the repository's files before it already reached kftenant's limit on what all files together may build",
            ));
        }
        let (docs, used) = load(text, &yaml::Limits::FILE).map_err(|e| {
            let message = match &e {
                yaml::LoadError::Syntax { message, .. } => {
                    format!("{what} syntax error: {message}")
                }
                other => other.to_string(),
            };
            let d = Diagnostic::at(path, e.pos(), message);
            match e.hint() {
                Some(h) => d.with_hint(h),
                None => d,
            }
        })?;
        let total = yaml::Usage {
            nodes: built.nodes.saturating_add(used.nodes),
            scalar_bytes: built.scalar_bytes.saturating_add(used.scalar_bytes),
        };
        self.built.set(total);
        if total.nodes > MAX_REPO_NODES || total.scalar_bytes > MAX_REPO_TEXT {
            return Err(Diagnostic::file(
                path,
                format!("not read: with this file, the repository's files together build more than {MAX_REPO_NODES} values or {MAX_REPO_TEXT} bytes of text, over kftenant's limit"),
            )
            .with_hint("aliases (*name) count as every value they copy; split the repository, or write fewer aliases"));
        }
        Ok(docs)
    }
}

/// Loads `policies/*.json`. Besides the policies, returns what each valid one
/// grants of `[guardrails] escalation_actions`: a repo policy is shared, so that
/// is refused at each tenant without a boundary that attaches it, not here.
fn load_policies(
    reader: &Reader<'_>,
    layout: &Layout,
    config: Option<&Config>,
    diags: &mut Diagnostics,
) -> (Vec<RepoPolicy>, BTreeMap<String, Vec<Escalation>>) {
    let mut out = Vec::new();
    let mut escalations = BTreeMap::new();
    for (path, name) in &layout.policy_files {
        if let Some(msg) = check_policy_name(name) {
            diags.push(Diagnostic::file(
                path,
                format!("policy name `{name}` (from the file name): {msg}"),
            ));
        }
        let text = match reader.read(path) {
            Some(Ok(text)) => text,
            Some(Err(e)) => {
                diags.push(e.diagnostic(path));
                continue;
            }
            None => continue,
        };
        let Some((node, doc)) = load_policy_text(reader, path, &text, diags) else {
            continue;
        };
        let size = policy::iam_size(&doc);
        if size > MANAGED_POLICY_MAX_CHARS {
            diags.push(
                Diagnostic::at(path, node.pos, format!("managed policy is {size} characters, over the IAM limit of {MANAGED_POLICY_MAX_CHARS} (whitespace not counted)"))
                    .with_hint("split it into two policies"),
            );
        }
        if let Some(c) = config {
            check_denied_actions(&node, &doc, &c.guardrails.denied_actions, path, diags);
            let found = escalations_in(&node, &doc, &c.guardrails, path);
            if !found.is_empty() {
                escalations.insert(name.to_string(), found);
            }
        }
        out.push(RepoPolicy {
            name: name.clone(),
            file: path.clone(),
            path: config.map_or_else(String::new, |c| c.iam.role_path.clone()),
            pinned: false,
            document: doc,
        });
    }
    (out, escalations)
}

/// Parses a JSON policy document: JSON syntax first (serde_json's messages are
/// the clearest), then the IAM grammar with positions.
pub(super) fn load_policy_text(
    reader: &Reader<'_>,
    path: &str,
    text: &str,
    diags: &mut Diagnostics,
) -> Option<(Node, Json)> {
    if let Err(e) = serde_json::from_str::<Json>(text) {
        let pos = Pos::new(e.line().max(1), e.column().max(1));
        // serde_json stops at 128 levels; the same limit as the YAML loader's
        // gets the same message, whichever of the two meets it first.
        if e.to_string().starts_with("recursion limit exceeded") {
            let e = yaml::LoadError::Limit {
                pos,
                limit: yaml::Limit::Depth(yaml::Limits::FILE.depth),
            };
            let d = Diagnostic::at(path, pos, e.to_string());
            diags.push(match e.hint() {
                Some(h) => d.with_hint(h),
                None => d,
            });
        } else {
            diags.push(Diagnostic::at(path, pos, format!("invalid JSON: {e}")));
        }
        return None;
    }
    let node = match reader.parse_json(path, text) {
        Ok(mut docs) if !docs.is_empty() => docs.remove(0),
        Ok(_) => {
            diags.push(Diagnostic::file(path, "empty policy document"));
            return None;
        }
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let before = diags.len();
    policy::check_grammar(&node, PolicyKind::Identity, path, diags);
    let doc = node.to_json();
    (diags.len() == before).then_some((node, doc))
}

/// Where each statement of a policy document starts (the document's own
/// position when a statement cannot be found).
fn statement_pos(node: &Node, statement: usize) -> Pos {
    match node.get("Statement") {
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => items.get(statement).map_or(node.pos, |n| n.pos),
        Some(s) if statement == 0 => s.pos,
        _ => node.pos,
    }
}

pub(super) fn check_denied_actions(
    node: &Node,
    doc: &Json,
    denied: &[String],
    file: &str,
    diags: &mut Diagnostics,
) {
    for g in policy::granted_actions(doc, denied, Reach::Whole) {
        let pos = statement_pos(node, g.statement);
        diags.push(
            Diagnostic::at(file, pos, format!("guardrail: statement {} allows the denied action `{}` through {}", g.statement + 1, g.listed, g.through))
                .with_hint("name the actions the tenant needs, or change [guardrails] denied_actions in kftenant.toml"),
        );
    }
}

/// A statement that grants actions of `[guardrails] escalation_actions`: refused
/// for tenants whose role has no permissions boundary.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Escalation {
    /// The policy file (or tenant file, for a `document`).
    pub(super) file: String,
    /// Where the statement starts.
    pub(super) pos: Pos,
    /// Index of the statement (0-based).
    pub(super) statement: usize,
    /// What grants them: ``Action `iam:*Role*` `` or `NotAction`.
    pub(super) through: String,
    /// The escalation actions (patterns of the list) it grants, in the list's order.
    pub(super) actions: Vec<String>,
}

impl Escalation {
    /// "statement 2 grants the escalation action `iam:PassRole` through Action `iam:Pass*`"
    pub(super) fn describe(&self) -> String {
        const SHOWN: usize = 6;
        let names: Vec<String> = self
            .actions
            .iter()
            .take(SHOWN)
            .map(|a| format!("`{a}`"))
            .collect();
        let (what, more) = match self.actions.len() {
            1 => ("the escalation action", String::new()),
            n if n > SHOWN => ("the escalation actions", format!(" and {} more", n - SHOWN)),
            _ => ("the escalation actions", String::new()),
        };
        format!(
            "statement {} grants {what} {}{more} through {}",
            self.statement + 1,
            names.join(", "),
            self.through
        )
    }
}

/// The hint of every escalation diagnostic.
pub(super) const ESCALATION_HINT: &str = "give the tenant a permissions boundary (spec.iam.permissionsBoundary, or [iam] permissions_boundary in kftenant.toml), or grant only the actions it needs; [guardrails] escalation_actions in kftenant.toml lists those that need a boundary";

/// What the statements of a policy document grant of `[guardrails]
/// escalation_actions`, one entry per statement and granting element. A
/// statement element that `denied_actions` already refuses is left out (one
/// error for one mistake).
pub(super) fn escalations_in(
    node: &Node,
    doc: &Json,
    guardrails: &config::Guardrails,
    file: &str,
) -> Vec<Escalation> {
    let refused: BTreeSet<(usize, String)> =
        policy::granted_actions(doc, &guardrails.denied_actions, Reach::Whole)
            .into_iter()
            .map(|g| (g.statement, g.through))
            .collect();
    let mut out: Vec<Escalation> = Vec::new();
    for g in policy::granted_actions(doc, &guardrails.escalation_actions, Reach::Any) {
        if refused.contains(&(g.statement, g.through.clone())) {
            continue;
        }
        match out
            .iter_mut()
            .find(|e| e.statement == g.statement && e.through == g.through)
        {
            Some(e) => e.actions.push(g.listed),
            None => out.push(Escalation {
                file: file.to_string(),
                pos: statement_pos(node, g.statement),
                statement: g.statement,
                through: g.through,
                actions: vec![g.listed],
            }),
        }
    }
    out
}

/// What the loader keeps of a tenant for the cross-file checks.
pub(super) struct Loaded {
    pub(super) tenant: Tenant,
    pub(super) name_pos: Pos,
    /// The repo policies the tenant names by ARN, each with the path it says.
    pub(super) pinned: Vec<Pinned>,
}

/// A repo policy named by its ARN, which says its path.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pinned {
    /// The policy (file) name.
    pub(super) name: String,
    /// The path the ARN says.
    pub(super) path: String,
    /// The ARN as written.
    pub(super) arn: String,
    /// Where it is written.
    pub(super) pos: Pos,
}

/// A tenant's role name on one cluster, for the checks across clusters.
struct RoleName {
    cluster: String,
    account: String,
    role: String,
    tenant: String,
    file: String,
    pos: Pos,
}

/// Adds each cluster's problems to `diags`, once each. In a repository of
/// several clusters, a problem that only some clusters have (a guardrail of
/// one cluster, an override) says which.
fn merge_cluster_diagnostics(
    per_cluster: Vec<(String, Diagnostics)>,
    several: bool,
    diags: &mut Diagnostics,
) {
    let n = per_cluster.len();
    let mut seen: Vec<(Diagnostic, Vec<String>)> = Vec::new();
    let mut index: std::collections::HashMap<Diagnostic, usize> = Default::default();
    // Per file, the most problems one cluster found there.
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for (cluster, cd) in per_cluster {
        let (list, per_file) = cd.into_parts();
        for (file, k) in per_file {
            let f = found.entry(file).or_default();
            *f = (*f).max(k);
        }
        for d in list {
            match index.get(&d) {
                Some(&i) => {
                    let on = &mut seen[i].1;
                    if !on.contains(&cluster) {
                        on.push(cluster.clone());
                    }
                }
                None => {
                    index.insert(d.clone(), seen.len());
                    seen.push((d, vec![cluster.clone()]));
                }
            }
        }
    }
    let kept = seen
        .into_iter()
        .map(|(mut d, on)| {
            if several && on.len() < n && !d.file.starts_with(clusters::CLUSTERS_DIR) {
                let s = if on.len() == 1 { "" } else { "s" };
                d.message = format!("{} (on cluster{s} {})", d.message, on.join(", "));
            }
            d
        })
        .collect();
    diags.absorb(kept, found);
}

/// Checks across clusters: IAM names are unique per account, so two
/// clusters in one account must not render the same role name (compared
/// without case, as IAM does) or the same policy name.
fn cross_cluster_check(roles: &[RoleName], repos: &[Repository], diags: &mut Diagnostics) {
    let mut by_role: BTreeMap<(&str, String), &RoleName> = BTreeMap::new();
    for r in roles {
        let key = (r.account.as_str(), r.role.to_ascii_lowercase());
        match by_role.get(&key) {
            Some(first) if first.cluster != r.cluster => diags.push(
                Diagnostic::at(
                    &r.file,
                    r.pos,
                    format!(
                        "tenant `{}` on cluster `{}` renders IAM role name `{}`, which tenant `{}` on cluster `{}` renders too, in the same account {} (IAM role names are unique per account, without case)",
                        r.tenant, r.cluster, r.role, first.tenant, first.cluster, r.account
                    ),
                )
                .with_hint(format!(
                    "`{}` is defined at {}:{}:{}; put `{{cluster}}` in [iam] role_name_template (the default has it)",
                    first.tenant, first.file, first.pos.line, first.pos.column
                )),
            ),
            Some(_) => {}
            None => {
                by_role.insert(key, r);
            }
        }
    }
    let mut by_policy: BTreeMap<(&str, String), &str> = BTreeMap::new();
    for repo in repos {
        let c = &repo.config;
        for p in &repo.policies {
            let name = p.iam_name(c);
            let key = (c.cluster.account_id.as_str(), name.to_ascii_lowercase());
            match by_policy.get(&key) {
                // Named by its ARN: a policy made before kftenant, which the
                // template cannot rename; its tags give it to one cluster.
                Some(first) if *first != c.cluster.name && p.pinned => diags.push(
                    Diagnostic::file(
                        &p.file,
                        format!(
                            "clusters `{first}` and `{}` share account {} and both name policy `{}` by its ARN; its ownership tags give it to one cluster",
                            c.cluster.name,
                            c.cluster.account_id,
                            p.arn(c)
                        ),
                    )
                    .with_hint("place the tenants that name it by ARN on one cluster (spec.clusters), or give the other cluster its own copy by name"),
                ),
                Some(first) if *first != c.cluster.name => diags.push(
                    c.origin
                        .at(&["iam", "policy_name_template"], format!(
                            "clusters `{first}` and `{}` share account {} and both would create policy `{name}` from {}",
                            c.cluster.name, c.cluster.account_id, p.file
                        ))
                        .with_hint("set [iam] policy_name_template = \"{policy}-{cluster}\" in kftenant.toml, so each cluster has its own copy"),
                ),
                Some(_) => {}
                None => {
                    by_policy.insert(key, &c.cluster.name);
                }
            }
        }
    }
}

/// Decoding context: the file being read and where problems go.
fn cross_check(config: &Config, tenants: &[Loaded], diags: &mut Diagnostics) {
    let mut by_name: BTreeMap<&str, &Loaded> = BTreeMap::new();
    let mut by_role: BTreeMap<String, &Loaded> = BTreeMap::new();
    for l in tenants {
        let t = &l.tenant;
        if let Some(first) = by_name.get(t.name.as_str()) {
            diags.push(
                Diagnostic::at(
                    &t.file,
                    l.name_pos,
                    format!(
                        "duplicate tenant `{}`: {} defines it again; it is already defined at {}:{}:{}",
                        t.name, t.file, first.tenant.file, first.name_pos.line, first.name_pos.column
                    ),
                )
                .with_hint("tenant names are unique across every file under tenants/: rename one, or delete this one"),
            );
            continue;
        }
        by_name.insert(&t.name, l);
        let role = t.role_name(config);
        // A `roleName` is checked where it is written.
        if t.role_name.is_none() && role.len() > 64 {
            diags.push(
                Diagnostic::at(
                    &t.file,
                    l.name_pos,
                    format!(
                        "IAM role name `{role}` is {} characters, over the limit of 64",
                        role.len()
                    ),
                )
                .with_hint("shorten the tenant name or [iam] role_name_template"),
            );
        }
        if let Some(first) = by_role.get(&role.to_ascii_lowercase()) {
            diags.push(
                Diagnostic::at(&t.file, l.name_pos, format!("tenant `{}` renders IAM role name `{role}`, which collides with tenant `{}` (IAM role names are case-insensitive)", t.name, first.tenant.name))
                    .with_hint(format!("`{}` is defined at {}:{}:{}", first.tenant.name, first.tenant.file, first.name_pos.line, first.name_pos.column)),
            );
        } else {
            by_role.insert(role.to_ascii_lowercase(), l);
        }
        if config.guardrails.require_boundary
            && t.permissions_boundary.is_none()
            && config.iam.permissions_boundary.is_none()
            && !t.owner.is_empty()
        {
            diags.push(
                Diagnostic::at(&t.file, l.name_pos, format!("guardrail: tenant `{}` has no permissions boundary, and [guardrails] require_boundary is set", t.name))
                    .with_hint("set spec.iam.permissionsBoundary, or [iam] permissions_boundary in kftenant.toml"),
            );
        }
    }
    check_decommissioned(config, &by_name, diags);
}

/// A repo policy's path: the path of the ARN tenants name it by (a policy
/// made before kftenant, which IAM cannot move), else `[iam] role_path`.
/// Every ARN naming one policy must say the same path.
fn pin_policy_paths(policies: &mut [RepoPolicy], tenants: &[Loaded], diags: &mut Diagnostics) {
    let mut first: BTreeMap<&str, (&Pinned, &str)> = BTreeMap::new();
    for l in tenants {
        for p in &l.pinned {
            match first.get(p.name.as_str()) {
                None => {
                    first.insert(&p.name, (p, &l.tenant.file));
                }
                Some((f, file)) if f.path != p.path => diags.push(
                    Diagnostic::at(
                        &l.tenant.file,
                        p.pos,
                        format!(
                            "`{}` names policy `{}` at path `{}`, but {}:{}:{} names it at `{}`; a policy has one path",
                            p.arn, p.name, p.path, file, f.pos.line, f.pos.column, f.path
                        ),
                    )
                    .with_hint("name it by the same ARN everywhere (or by its name alone)"),
                ),
                Some(_) => {}
            }
        }
    }
    for policy in policies {
        if let Some((p, _)) = first.get(policy.name.as_str()) {
            policy.path.clone_from(&p.path);
            policy.pinned = true;
        }
    }
}

/// `[prune] decommissioned`: tenant names, each once, none still in git.
fn check_decommissioned(
    config: &Config,
    tenants: &BTreeMap<&str, &Loaded>,
    diags: &mut Diagnostics,
) {
    let mut seen = BTreeSet::new();
    for name in &config.prune.decommissioned {
        let err = |msg: String, hint: String| {
            config
                .origin
                .at(&["prune", "decommissioned"], msg)
                .with_hint(hint)
        };
        if let Some(msg) = crate::names::check_dns_label(name) {
            diags.push(err(
                format!("[prune] decommissioned: `{name}` is not a tenant name: {msg}"),
                "list the names of tenants whose namespace may be deleted".into(),
            ));
        } else if !seen.insert(name) {
            diags.push(err(
                format!("[prune] decommissioned lists `{name}` twice"),
                "remove one".into(),
            ));
        } else if let Some(l) = tenants.get(name.as_str()) {
            diags.push(err(
                format!(
                    "[prune] decommissioned lists `{name}`, which {}:{}:{} still defines",
                    l.tenant.file, l.name_pos.line, l.name_pos.column
                ),
                format!("delete the tenant's file to decommission it, or remove `{name}` from the list to keep it"),
            ));
        }
    }
}
#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod escalation_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) const CONFIG: &str = "[cluster]\nname = \"prod\"\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\noidc_issuer = \"oidc.eks.us-west-2.amazonaws.com/id/X\"\n";
    pub(super) const POLICY: &str = "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"*\"}]}";

    pub(super) fn base() -> MemSource {
        MemSource::default()
            .with("kftenant.toml", CONFIG)
            .with("policies/shared.json", POLICY)
            .with("tenants/.keep", "")
    }

    pub(super) fn tenant(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    }

    /// Loads `src` and returns the rendered problems (empty when valid).
    pub(super) fn problems(src: &MemSource) -> Vec<String> {
        match load(src) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    fn one_tenant(spec: &str) -> Vec<String> {
        problems(&base().with("tenants/a.yaml", &tenant("team-a", spec)))
    }

    #[test]
    fn a_minimal_tenant_is_valid() {
        let r = load(&base().with(
            "tenants/a.yaml",
            &tenant("team-a", "  owner: a@example.com\n"),
        ))
        .unwrap();
        assert_eq!(r.tenants.len(), 1);
        assert_eq!(r.tenants[0].owner, "a@example.com");
        assert_eq!(r.policies[0].name, "shared");
    }

    #[test]
    fn empty_tenants_folder_is_valid_but_missing_one_is_not() {
        assert!(problems(&base()).is_empty());
        let src = MemSource::default().with("kftenant.toml", CONFIG);
        assert_eq!(
            problems(&src),
            vec![
                "tenants: missing: tenant definitions live in tenants/ (*.yaml, in any subfolder)\n  hint: an empty tenants/ folder is allowed (keep it in git with tenants/.gitkeep), but a missing one is treated as a mistake so nothing gets pruned by accident"
            ]
        );
    }

    #[test]
    fn yaml_syntax_error_has_line() {
        let p = problems(&base().with(
            "tenants/a.yaml",
            "apiVersion: kftenant.io/v1alpha1\nkind: [Tenant\nspec: {}\n",
        ));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("tenants/a.yaml:3:5: YAML syntax error:"),
            "{p:?}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_accepted_in_every_kind_of_file() {
        const BOM: &str = "\u{feff}";
        let src = base()
            .with("kftenant.toml", &format!("{BOM}{CONFIG}"))
            .with("policies/shared.json", &format!("{BOM}{POLICY}"))
            .with("inline/a.json", &format!("{BOM}{POLICY}"))
            .with(
                "tenants/a.yaml",
                &format!(
                    "{BOM}{}",
                    tenant(
                        "team-a",
                        "  owner: a@example.com\n  iam:\n    inlinePolicies: [{name: a, file: inline/a.json}]\n"
                    )
                ),
            );
        let repo = load(&src).unwrap();
        assert_eq!(repo.tenants[0].inline_policies.len(), 1);
        // Positions on the first line are counted without it, as editors show them.
        let p = problems(&base().with("tenants/a.yaml", &format!("{BOM}kind: [\n")));
        assert!(
            p[0].starts_with("tenants/a.yaml:2:1: YAML syntax error"),
            "{p:?}"
        );
        let p = problems(&base().with("kftenant.toml", &format!("{BOM}{CONFIG}nmae = 1\n")));
        assert!(
            p[0].starts_with("kftenant.toml:6:1: unknown key `nmae`"),
            "{p:?}"
        );
    }

    #[test]
    fn an_alias_bomb_is_one_located_problem() {
        let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            bomb.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(", ")
            ));
        }
        let p = problems(&base().with("tenants/a.yaml", &bomb));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:6:15: builds more than 250000 values (an alias counts as every value it copies), over kftenant's limit; the file was not read further\n  hint: an alias (*name) copies its anchor (&name), and aliases of aliases multiply: write the values out, or split the file"
            ]
        );
        // The same in an inline policy file and in a shared policy: JSON has
        // no aliases, but depth is bounded the same way by both parsers.
        let deep = |n: usize| format!("{{\"Statement\": {}1{}}}", "[".repeat(n), "]".repeat(n));
        let p = problems(&base().with("policies/deep.json", &deep(100)));
        assert_eq!(
            p,
            vec![
                "policies/deep.json:1:78: nested more than 64 levels deep (aliases included), over kftenant's limit; the file was not read further\n  hint: a tenant document is about 12 levels deep at most; flatten this structure"
            ]
        );
        let p = problems(&base().with("policies/deep.json", &deep(200)));
        assert_eq!(
            p,
            vec![
                "policies/deep.json:1:141: nested more than 64 levels deep (aliases included), over kftenant's limit; the file was not read further\n  hint: a tenant document is about 12 levels deep at most; flatten this structure"
            ]
        );
    }

    #[test]
    fn the_repository_as_a_whole_is_bounded() {
        // Each file builds about 216,000 nodes: under the file's limit; the
        // tenth crosses the repository's 2,000,000, and later files are not parsed.
        let mut file = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..5 {
            file.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(", ")
            ));
        }
        file.push_str("b: [*a4]\n");
        let mut src = base();
        for i in 10..22 {
            src = src.with(&format!("tenants/t{i}.yaml"), &file);
        }
        let p = problems(&src);
        assert!(p.contains(&"tenants/t19.yaml: not read: with this file, the repository's files together build more than 2000000 values or 33554432 bytes of text, over kftenant's limit\n  hint: aliases (*name) count as every value they copy; split the repository, or write fewer aliases".to_string()), "{p:#?}");
        assert!(p.contains(&"tenants/t21.yaml: not read: the repository's files before it already reached kftenant's limit on what all files together may build".to_string()), "{p:#?}");
        // Text read: each file counts once (a file named again and again is
        // read once); the 64th file of a mebibyte crosses the limit.
        let big = "x".repeat(1 << 20);
        let inline: String = (0..70)
            .map(|i| format!("      - {{name: p{i}, file: big{i}.json}}\n"))
            .collect();
        let mut src = base();
        for i in 0..70 {
            src = src.with(&format!("big{i}.json"), &big);
        }
        let src = src.with(
            "tenants/a.yaml",
            &tenant(
                "team-a",
                &format!("  owner: a@example.com\n  iam:\n    inlinePolicies:\n{inline}"),
            ),
        );
        let p = problems(&src);
        assert!(p.contains(&"tenants/a.yaml:72:27: inline policy file `big63.json` not read: the repository's files add up to more than 67108864 bytes, over kftenant's limit".to_string()), "{p:#?}");
    }

    #[test]
    fn unknown_fields_are_all_reported_with_hints() {
        let p = one_tenant("  ownr: a@example.com\n  iam:\n    managedPolicy: [shared]\n");
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:6:3: missing spec.owner\n  hint: the Profile owner, e.g. `owner: alice@example.com`",
                "tenants/a.yaml:6:3: unknown field `ownr` in spec\n  hint: did you mean `owner`?",
                "tenants/a.yaml:8:5: unknown field `managedPolicy` in spec.iam\n  hint: did you mean `managedPolicies`?",
            ]
        );
    }

    #[test]
    fn wrong_api_version_kind_and_types() {
        let p = problems(&base().with(
            "tenants/a.yaml",
            "apiVersion: v1\nkind: Tenat\nmetadata:\n  name: a\nspec:\n  owner: 5\n",
        ));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:1:13: apiVersion must be `kftenant.io/v1alpha1`, found `v1`\n  hint: this version of kftenant reads kftenant.io/v1alpha1",
                "tenants/a.yaml:2:7: kind must be `Tenant`, found `Tenat`",
                "tenants/a.yaml:6:10: spec.owner must be a string, found a number",
            ]
        );
    }

    #[test]
    fn names_must_be_dns_labels() {
        let p = problems(&base().with(
            "tenants/a.yaml",
            &tenant("Team_A", "  owner: a@example.com\n"),
        ));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:4:9: tenant name `Team_A` is not a DNS-1123 label: only lowercase letters, digits and `-` are allowed\n  hint: it becomes a namespace: use lowercase letters, digits and `-`, at most 63 characters"
            ]
        );
    }

    #[test]
    fn duplicates_across_files_point_at_the_first() {
        let p = problems(
            &base()
                .with(
                    "tenants/a.yaml",
                    &tenant("team-a", "  owner: a@example.com\n"),
                )
                .with(
                    "tenants/b.yaml",
                    &format!(
                        "# comment\n{}",
                        tenant("team-a", "  owner: b@example.com\n")
                    ),
                ),
        );
        assert_eq!(
            p,
            vec![
                "tenants/b.yaml:5:9: duplicate tenant `team-a`: tenants/b.yaml defines it again; it is already defined at tenants/a.yaml:4:9\n  hint: tenant names are unique across every file under tenants/: rename one, or delete this one"
            ]
        );
    }

    #[test]
    fn role_names_collide_case_insensitively_and_have_a_length_limit() {
        let cfg = CONFIG.to_string() + "[iam]\nrole_name_template = \"{tenant}-ROLE\"\n";
        let src = base()
            .with("kftenant.toml", &cfg)
            .with("tenants/a.yaml", &tenant("x", "  owner: a@example.com\n"))
            .with(
                "tenants/b.yaml",
                &tenant(&"a".repeat(60), "  owner: a@example.com\n"),
            );
        let p = problems(&src);
        assert_eq!(
            p,
            vec![format!(
                "tenants/b.yaml:4:9: IAM role name `{}-ROLE` is 65 characters, over the limit of 64\n  hint: shorten the tenant name or [iam] role_name_template",
                "a".repeat(60)
            )]
        );
        // Tenant names are lowercase, so a collision needs a template that differs only in case.
        let cfg = CONFIG.to_string() + "[iam]\nrole_name_template = \"kf-{tenant}\"\n";
        let src = base()
            .with("kftenant.toml", &cfg)
            .with(
                "tenants/a.yaml",
                &tenant("team-a", "  owner: a@example.com\n"),
            )
            .with(
                "tenants/b.yaml",
                &tenant("team-a", "  owner: b@example.com\n"),
            );
        assert_eq!(
            problems(&src).len(),
            1,
            "a duplicate is reported once, not also as a collision"
        );
    }

    #[test]
    fn role_name_collision_is_reported() {
        // `{cluster}` can make two tenants render the same name: "a-b" + "c" vs "a" + "b-c".
        let cfg = CONFIG
            .replace("name = \"prod\"", "name = \"b-c\"")
            .to_string()
            + "[iam]\nrole_name_template = \"{tenant}-{cluster}\"\n";
        let src = base()
            .with("kftenant.toml", &cfg)
            .with("tenants/a.yaml", &tenant("a-b", "  owner: a@example.com\n"))
            .with(
                "tenants/b.yaml",
                &tenant("a-b-b", "  owner: a@example.com\n"),
            );
        assert!(problems(&src).is_empty());
        let cfg2 = CONFIG.to_string() + "[iam]\nrole_name_template = \"x{tenant}\"\n";
        let src = base()
            .with("kftenant.toml", &cfg2)
            .with("tenants/a.yaml", &tenant("a", "  owner: a@example.com\n"))
            .with(
                "tenants/b.yaml",
                &format!(
                    "{}\n---\n{}",
                    tenant("b", "  owner: a@example.com\n"),
                    tenant("c", "  owner: a@example.com\n")
                ),
            );
        assert!(problems(&src).is_empty());
    }

    #[test]
    fn arns_policy_refs_and_guardrails() {
        let p = one_tenant(
            "  owner: a@example.com\n  iam:\n    managedPolicies:\n      - arn:aws:iam::aws:policy/AdministratorAccess\n      - arn:aws:iam::12345:policy/x\n      - sharde\n      - shared\n      - shared\n    permissionsBoundary: arn:aws:s3:::bucket\n",
        );
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:9:9: guardrail: `arn:aws:iam::aws:policy/AdministratorAccess` is denied by `arn:aws:iam::aws:policy/AdministratorAccess`\n  hint: ask the platform team; denied policies are listed in kftenant.toml [guardrails] denied_policy_arns",
                "tenants/a.yaml:10:9: spec.iam.managedPolicies: `arn:aws:iam::12345:policy/x` is not a valid IAM policy ARN: account must be 12 digits or `aws`",
                "tenants/a.yaml:11:9: spec.iam.managedPolicies: `sharde` is neither an ARN nor a policy in policies/\n  hint: did you mean `shared`?",
                "tenants/a.yaml:13:9: `shared` is listed twice in spec.iam.managedPolicies",
                "tenants/a.yaml:14:26: spec.iam.permissionsBoundary: `arn:aws:s3:::bucket` is not a valid IAM policy ARN: service must be `iam`",
            ]
        );
    }

    #[test]
    fn allow_list_and_managed_policy_count() {
        let cfg = CONFIG.to_string()
            + "[guardrails]\nallowed_policy_arns = [\"arn:aws:iam::aws:policy/*ReadOnly*\"]\nmax_managed_policies_per_role = 2\n";
        let src = base().with("kftenant.toml", &cfg).with(
            "tenants/a.yaml",
            &tenant("team-a", "  owner: a@example.com\n  iam:\n    managedPolicies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess, arn:aws:iam::aws:policy/AmazonS3FullAccess, shared]\n"),
        );
        assert_eq!(
            problems(&src),
            vec![
                "tenants/a.yaml:8:5: 3 managed policies, over the limit of 2 per role\n  hint: merge policies, or raise [guardrails] max_managed_policies_per_role (AWS quota: up to 20)",
                "tenants/a.yaml:8:71: guardrail: `arn:aws:iam::aws:policy/AmazonS3FullAccess` is not in the allowed list\n  hint: allowed: arn:aws:iam::aws:policy/*ReadOnly*",
            ]
        );
    }

    #[test]
    fn require_boundary() {
        let cfg = CONFIG.to_string() + "[guardrails]\nrequire_boundary = true\n";
        let src = base().with("kftenant.toml", &cfg).with(
            "tenants/a.yaml",
            &tenant("team-a", "  owner: a@example.com\n"),
        );
        assert_eq!(
            problems(&src),
            vec![
                "tenants/a.yaml:4:9: guardrail: tenant `team-a` has no permissions boundary, and [guardrails] require_boundary is set\n  hint: set spec.iam.permissionsBoundary, or [iam] permissions_boundary in kftenant.toml"
            ]
        );
        let ok = base().with("kftenant.toml", &cfg).with(
            "tenants/a.yaml",
            &tenant(
                "team-a",
                "  owner: a@example.com\n  iam:\n    permissionsBoundary: shared\n",
            ),
        );
        assert!(problems(&ok).is_empty());
    }

    #[test]
    fn tags_rules() {
        let p = one_tenant(
            "  owner: a@example.com\n  iam:\n    tags:\n      aws:team: x\n      kftenant.io/tenant: y\n      cost: 5\n      ok: \"fine\"\n",
        );
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:9:7: tag key `aws:team`: the `aws:` prefix is reserved by AWS",
                "tenants/a.yaml:10:7: tag key `kftenant.io/tenant`: the `kftenant.io/` prefix is reserved for kftenant's ownership tags",
                "tenants/a.yaml:11:13: value of `cost` in spec.iam.tags must be a string, found a number\n  hint: quote it: \"5\"",
            ]
        );
        let many: String = (0..48).map(|i| format!("      k{i}: v\n")).collect();
        let p = one_tenant(&format!(
            "  owner: a@example.com\n  iam:\n    tags:\n{many}"
        ));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:8:5: 48 tags plus kftenant's 3 ownership tags exceed the IAM limit of 50 per role\n  hint: remove some tags"
            ]
        );
        let long_key = "k".repeat(129);
        let p = one_tenant(&format!(
            "  owner: a@example.com\n  iam:\n    tags:\n      {long_key}: v\n      short: \"{}\"\n",
            "v".repeat(257)
        ));
        assert_eq!(
            p,
            vec![
                format!("tenants/a.yaml:9:7: tag key `{long_key}` must be 1 to 128 characters"),
                "tenants/a.yaml:10:7: value of tag `short` is longer than 256 characters"
                    .to_string()
            ]
        );
    }

    #[test]
    fn inline_policies_files_grammar_and_sizes() {
        let src = base().with("bad.json", "{\"Statement\": [}").with("tenants/a.yaml", &tenant(
            "team-a",
            "  owner: a@example.com\n  iam:\n    inlinePolicies:\n      - name: missing\n        file: nope.json\n      - name: broken\n        file: bad.json\n      - name: grammar\n        document:\n          Statement:\n            - Effect: Allow\n              Action: s3:GetObject\n              Principal: \"*\"\n              Resource: \"*\"\n      - name: admin\n        document: {Statement: [{Effect: Allow, Action: \"*\", Resource: \"*\"}]}\n      - name: both\n        file: x.json\n        document: {}\n",
        ));
        assert_eq!(
            problems(&src),
            vec![
                "bad.json:1:16: invalid JSON: expected value at line 1 column 16",
                "tenants/a.yaml:10:15: inline policy file `nope.json` does not exist\n  hint: paths are relative to the repository root",
                "tenants/a.yaml:18:15: Principal is only allowed in trust (resource-based) policies\n  hint: identity policies apply to the role they are attached to; remove the Principal",
                "tenants/a.yaml:21:32: guardrail: statement 1 allows the denied action `*` through Action `*`\n  hint: name the actions the tenant needs, or change [guardrails] denied_actions in kftenant.toml",
                "tenants/a.yaml:21:32: guardrail: statement 1 allows the denied action `iam:*` through Action `*`\n  hint: name the actions the tenant needs, or change [guardrails] denied_actions in kftenant.toml",
                "tenants/a.yaml:24:19: an inline policy has either `file` or `document`, not both",
            ]
        );
        let big: String = (0..120).map(|i| format!("{{\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::bucket-number-{i:04}/*\"}}")).collect::<Vec<_>>().join(",");
        let src = base().with("big.json", &format!("{{\"Version\": \"2012-10-17\", \"Statement\": [{big}]}}")).with("tenants/a.yaml", &tenant("team-a", "  owner: a@example.com\n  iam:\n    inlinePolicies:\n      - {name: big, file: big.json}\n"));
        let p = problems(&src);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("tenants/a.yaml:8:5: inline policies total 10")
                && p[0].contains("over the IAM limit of 10240"),
            "{p:?}"
        );
    }

    #[test]
    fn repo_policy_size_name_and_grammar() {
        let stmts: String = (0..70).map(|i| format!("{{\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::bucket-number-{i:04}/*\"}}")).collect::<Vec<_>>().join(",\n");
        let src = base().with("policies/huge.json", &format!("{{\"Version\": \"2012-10-17\",\n\"Statement\": [{stmts}]}}")).with("policies/bad name.json", POLICY).with("policies/v.json", "{\"Version\": \"2012-10-17\", \"Statement\": {\"Effect\": \"Allow\", \"NotAction\": \"s3:*\", \"Resource\": \"*\"}}");
        let p = problems(&src);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert_eq!(
            p[0],
            "policies/bad name.json: policy name `bad name` (from the file name): ` ` is not allowed in IAM names (letters, digits and +=,.@_- only)"
        );
        assert!(
            p[1].starts_with("policies/huge.json:1:1: managed policy is 6")
                && p[1].contains("over the IAM limit of 6144"),
            "{}",
            p[1]
        );
        assert!(p[2].starts_with("policies/v.json:1:40: guardrail: statement 1 allows the denied action `*` through NotAction"), "{}", p[2]);
    }

    #[test]
    fn service_accounts_and_trust_policy_size() {
        let p = one_tenant(
            "  owner: a@example.com\n  iam:\n    serviceAccounts: [default-editor, Bad_SA, runner, runner]\n",
        );
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:8:23: `default-editor` is always trusted\n  hint: remove it from serviceAccounts",
                "tenants/a.yaml:8:39: service account `Bad_SA` in namespace `team-a` is not a valid name: only lowercase letters, digits and `-` are allowed",
                "tenants/a.yaml:8:55: service account `runner` is listed twice",
            ]
        );
        let sas: String = (0..40)
            .map(|i| format!("      - service-account-number-{i}\n"))
            .collect();
        let p = one_tenant(&format!(
            "  owner: a@example.com\n  iam:\n    serviceAccounts:\n{sas}"
        ));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("tenants/a.yaml:8:5: the trust policy would be")
                && p[0].contains("over the limit of 2048"),
            "{p:?}"
        );
    }

    #[test]
    fn profile_rules() {
        let p = one_tenant(
            "  owner: a@example.com\n  profile:\n    resourceQuota:\n      hard: {cpu: lots, memory: 32Gi}\n    labels:\n      app.kubernetes.io/managed-by: me\n      bad key!: x\n",
        );
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:9:19: `lots` is not a Kubernetes quantity\n  hint: a number with an optional suffix, e.g. 8, \"500m\", \"1.5\", \"32Gi\", \"1e3\"",
                "tenants/a.yaml:11:7: label `app.kubernetes.io/managed-by` is set by kftenant",
                "tenants/a.yaml:12:7: label `bad key!`: name must be 1 to 63 alphanumeric characters, `-`, `_` or `.`",
            ]
        );
    }

    const QUOTA_DEFAULTS: &str = "[profile.default_resource_quota]\nscopes = [\"NotTerminating\"]\n[profile.default_resource_quota.hard]\ncpu = \"16\"\nmemory = \"64Gi\"\n\"requests.nvidia.com/gpu\" = 0\n";

    fn quota_of(spec: &str) -> Json {
        let cfg = CONFIG.to_string() + QUOTA_DEFAULTS;
        let src = base()
            .with("kftenant.toml", &cfg)
            .with("tenants/a.yaml", &tenant("team-a", spec));
        let r = load(&src).unwrap_or_else(|p| panic!("{p:#?}"));
        r.tenants[0].resource_quota.to_json()
    }

    #[test]
    fn a_tenant_quota_overrides_the_defaults_key_by_key() {
        let owner = "  owner: a@example.com\n";
        assert_eq!(
            quota_of(owner),
            json!({"hard": {"cpu": "16", "memory": "64Gi", "requests.nvidia.com/gpu": "0"}, "scopes": ["NotTerminating"]})
        );
        assert_eq!(
            quota_of(&format!(
                "{owner}  profile:\n    resourceQuota:\n      hard:\n        cpu: 4\n        memory: 1.5Gi\n        requests.nvidia.com/gpu: null\n"
            )),
            json!({"hard": {"cpu": "4", "memory": "1536Mi"}, "scopes": ["NotTerminating"]})
        );
        assert_eq!(
            quota_of(&format!(
                "{owner}  profile:\n    resourceQuota:\n      hard:\n        requests.storage: 100Gi\n      scopes: []\n"
            )),
            json!({"hard": {"cpu": "16", "memory": "64Gi", "requests.nvidia.com/gpu": "0", "requests.storage": "100Gi"}})
        );
        assert_eq!(
            quota_of(&format!(
                "{owner}  profile:\n    resourceQuota:\n      hard: {{cpu: null, memory: null, requests.nvidia.com/gpu: null}}\n"
            )),
            json!({}),
            "every default removed: no quota"
        );
        let cfg = CONFIG.to_string() + QUOTA_DEFAULTS;
        let src = base().with("kftenant.toml", &cfg).with(
            "tenants/a.yaml",
            &tenant("team-a", &format!("{owner}  profile:\n    resourceQuota:\n      hard: {{cpu: null, memory: null, requests.nvidia.com/gpu: null}}\n      scopes: [NotBestEffort]\n")),
        );
        assert_eq!(
            problems(&src),
            vec![
                "tenants/a.yaml:10:7: quota scopes without any `hard` limit limit nothing\n  hint: add a limit under `hard`, or remove the scopes"
            ]
        );
        assert_eq!(
            quota_of(&format!(
                "{owner}  profile:\n    resourceQuota:\n      scopes: [NotBestEffort]\n"
            )),
            json!({"hard": {"cpu": "16", "memory": "64Gi", "requests.nvidia.com/gpu": "0"}, "scopes": ["NotBestEffort"]})
        );
    }

    #[test]
    fn quota_names_values_and_scopes_are_checked_where_written() {
        let cfg = CONFIG.to_string() + QUOTA_DEFAULTS;
        let src = base().with("kftenant.toml", &cfg).with(
            "tenants/a.yaml",
            &format!(
                "{}\n---\n{}",
                tenant(
                    "team-a",
                    "  owner: a@example.com\n  profile:\n    resourceQuota:\n      hard:\n        memmory: 1Gi\n        storage: 1Gi\n        pods: 1.5\n        nvidia.com/gpu: 1\n        cpu: 16GB\n        limits.cpu: null\n        requests.storage: 10Gi\n        count/jobs.batch: [1]\n"
                ),
                tenant(
                    "team-b",
                    "  owner: a@example.com\n  profile:\n    resourceQuota:\n      hard:\n        pods: 10\n      scopes: [NotTerminatin, BestEffort, NotBestEffort, BestEffort]\n"
                ),
            ),
        );
        assert_eq!(
            problems(&src),
            vec![
                "tenants/a.yaml:10:9: `memmory` is not a resource a Kubernetes quota can limit\n  hint: did you mean `memory`?",
                "tenants/a.yaml:11:9: `storage` is not a resource a Kubernetes quota can limit\n  hint: did you mean `requests.storage`?",
                "tenants/a.yaml:12:15: `pods` must be a whole number, found `1.5`: it is counted in whole numbers",
                "tenants/a.yaml:13:9: `nvidia.com/gpu` limits nothing: Kubernetes quotas count extended resources only as `requests.<name>`\n  hint: did you mean `requests.nvidia.com/gpu`?",
                "tenants/a.yaml:14:14: `16GB` is not a Kubernetes quantity\n  hint: did you mean `16G` or `16Gi`?",
                "tenants/a.yaml:15:9: `limits.cpu: null` removes a default limit, but [profile.default_resource_quota] has no `limits.cpu`\n  hint: the default limits are cpu, memory, requests.nvidia.com/gpu",
                "tenants/a.yaml:16:9: quota scope `NotTerminating` cannot limit `requests.storage` (a scope from [profile.default_resource_quota])\n  hint: a `NotTerminating` quota limits only `pods`, `cpu`, `memory`, `requests.cpu`, `requests.memory`, `limits.cpu`, `limits.memory`; give this tenant its own `scopes` (`[]` for none)",
                "tenants/a.yaml:17:27: the limit of `count/jobs.batch` must be a quantity, found a list\n  hint: for example 8, \"500m\", \"32Gi\"; or null to remove the default limit",
                "tenants/a.yaml:30:7: quota scopes `BestEffort` and `NotBestEffort` exclude each other",
                "tenants/a.yaml:30:16: unknown quota scope `NotTerminatin`\n  hint: did you mean `NotTerminating`?",
                "tenants/a.yaml:30:31: quota scope `BestEffort` cannot limit `cpu` (a limit from [profile.default_resource_quota])\n  hint: a `BestEffort` quota limits only `pods`; remove the default here with `cpu: null`",
                "tenants/a.yaml:30:31: quota scope `BestEffort` cannot limit `memory` (a limit from [profile.default_resource_quota])\n  hint: a `BestEffort` quota limits only `pods`; remove the default here with `memory: null`",
                "tenants/a.yaml:30:58: quota scope `BestEffort` is listed twice",
            ]
        );
    }

    #[test]
    fn member_rules() {
        let p = one_tenant(
            "  owner: a@example.com\n  members:\n    - {user: b@example.com, role: edit}\n    - {user: b@example.com, role: view}\n    - {user: a@example.com, role: edit}\n    - {user: not-an-email, role: view}\n    - {user: c@example.com, role: admin}\n    - {user: d@example.com, role: veiw}\n    - {user: B@Example.com, role: edit}\n    - {user: e@example.com}\n    - {user: f@example.com, role: edit, extra: 1}\n",
        );
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:9:14: member `b@example.com` is listed twice (first at line 8)",
                "tenants/a.yaml:10:14: `a@example.com` is the owner of this tenant\n  hint: the owner has every right already; remove this member",
                "tenants/a.yaml:11:14: member user `not-an-email` is not an email address\n  hint: members are email addresses, as the dashboard and KFAM store them: e.g. lina.ng@acme.example",
                "tenants/a.yaml:12:35: member role must be `edit` or `view`, found `admin`\n  hint: `edit` (a contributor) or `view`",
                "tenants/a.yaml:13:35: member role must be `edit` or `view`, found `veiw`\n  hint: did you mean `view`?",
                "tenants/a.yaml:14:14: members `b@example.com` and `B@Example.com` would get the same RoleBinding `user-b-example-com-clusterrole-edit` (KFAM names bindings by the letters and digits of the user id)\n  hint: Kubernetes cannot hold both; give one of them another role or user id",
                "tenants/a.yaml:15:7: a member needs a role\n  hint: `edit` (a contributor) or `view`",
                "tenants/a.yaml:16:41: unknown field `extra` in a member\n  hint: known fields: user, role",
            ]
        );
    }

    #[test]
    fn annotations_are_held_to_the_api_servers_limit() {
        let big = "v".repeat(200_000);
        let p = one_tenant(&format!(
            "  owner: a@example.com\n  profile:\n    annotations:\n      a.example/x: {big}\n      a.example/y: {big}\n"
        ));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:8:5: annotations total 400022 bytes, over Kubernetes' limit of 262144 per object\n  hint: the API server would refuse the Profile; keep large data out of annotations"
            ]
        );
    }

    #[test]
    fn config_errors_and_tenant_errors_come_together() {
        let src = base()
            .with("kftenant.toml", &CONFIG.replace("123456789012", "12"))
            .with("tenants/a.yaml", &tenant("BAD", "  owner: a@example.com\n"));
        let p = problems(&src);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("kftenant.toml:3:1: account_id `12`"));
        assert!(p[1].starts_with("tenants/a.yaml:4:9: tenant name `BAD`"));
    }

    #[test]
    fn a_role_made_before_kftenant_keeps_its_name_and_path() {
        let r = load(&base().with(
            "tenants/a.yaml",
            &tenant(
                "team-a",
                "  owner: a@example.com\n  iam:\n    roleName: TeamA-Legacy\n    rolePath: /\n",
            ),
        ))
        .unwrap_or_else(|p| panic!("{p:#?}"));
        let t = &r.tenants[0];
        assert_eq!(t.role_name(&r.config), "TeamA-Legacy");
        assert_eq!(t.role_path(&r.config), "/");
        assert_eq!(
            t.role_arn(&r.config),
            "arn:aws:iam::123456789012:role/TeamA-Legacy"
        );
        // Without them: the template's name and [iam] role_path.
        let r = load(&base().with(
            "tenants/a.yaml",
            &tenant("team-a", "  owner: a@example.com\n"),
        ))
        .unwrap();
        assert_eq!(
            r.tenants[0].role_arn(&r.config),
            "arn:aws:iam::123456789012:role/kftenant/team-a-prod-role"
        );
        let long = "r".repeat(65);
        let src = base().with(
            "tenants/a.yaml",
            &format!(
                "{}\n---\n{}\n---\n{}",
                tenant("team-a", &format!("  owner: a@example.com\n  iam:\n    roleName: {long}\n    rolePath: kftenant\n")),
                tenant("team-b", "  owner: a@example.com\n  iam:\n    roleName: bad/name\n"),
                // Collides with team-c's template name, case-insensitively.
                tenant("team-d", "  owner: a@example.com\n  iam:\n    roleName: TEAM-C-prod-role\n    rolePath: /\n"),
            ),
        )
        .with("tenants/c.yaml", &tenant("team-c", "  owner: a@example.com\n"));
        assert_eq!(
            problems(&src),
            vec![
                format!("tenants/a.yaml:8:15: spec.iam.roleName `{long}` must be 1 to 64 characters"),
                "tenants/a.yaml:9:15: spec.iam.rolePath `kftenant` is not an IAM path\n  hint: a path starts and ends with `/`, e.g. `/` or `/teams/`".to_string(),
                "tenants/a.yaml:19:15: spec.iam.roleName `bad/name`: `/` is not allowed in IAM names (letters, digits and +=,.@_- only)".to_string(),
                "tenants/c.yaml:4:9: tenant `team-c` renders IAM role name `team-c-prod-role`, which collides with tenant `team-d` (IAM role names are case-insensitive)\n  hint: `team-d` is defined at tenants/a.yaml:25:9".to_string(),
            ]
        );
    }

    const POLICY_AT_ROOT: &str = "arn:aws:iam::123456789012:policy/shared";

    #[test]
    fn adopt_names_exactly_what_the_tenant_renders() {
        let spec = format!(
            "  owner: a@example.com\n  adopt:\n    role: arn:aws:iam::123456789012:role/team-a-prod-role\n    profile: team-a\n    policies: [{POLICY_AT_ROOT}]\n  iam:\n    rolePath: /\n    managedPolicies: [{POLICY_AT_ROOT}]\n"
        );
        let r = load(&base().with("tenants/a.yaml", &tenant("team-a", &spec)))
            .unwrap_or_else(|p| panic!("{p:#?}"));
        let t = &r.tenants[0];
        assert_eq!(
            t.adopt,
            Adopt {
                role: true,
                profile: true,
                policies: ["shared".to_string()].into(),
            }
        );
        assert_eq!(t.managed_policies, vec![PolicyRef::Repo("shared".into())]);
        // Anything else is refused where it is written.
        let spec = "  owner: a@example.com\n  adopt:\n    role: arn:aws:iam::123456789012:role/team-a-prod-role\n    profile: team-b\n    policies: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n    roles: x\n  iam:\n    managedPolicies: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n";
        let p = problems(&base().with("tenants/a.yaml", &tenant("team-a", spec)));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:8:11: spec.adopt.role `arn:aws:iam::123456789012:role/team-a-prod-role` is not this tenant's role `arn:aws:iam::123456789012:role/kftenant/team-a-prod-role`\n  hint: kftenant takes over only the role the tenant renders: set spec.iam.roleName and spec.iam.rolePath to the live role's name and path (`kftenant import` writes them); with several clusters, in spec.overrides.<cluster> of the role's cluster",
                "tenants/a.yaml:9:14: spec.adopt.profile `team-b` is not this tenant's Profile `team-a`\n  hint: a tenant's Profile (and namespace) has the tenant's name",
                "tenants/a.yaml:10:16: spec.adopt.policies: `arn:aws:iam::aws:policy/ReadOnlyAccess` is not a policy this tenant attaches by ARN from policies/\n  hint: name it by this ARN in spec.iam.managedPolicies (or permissionsBoundary), with its document in policies/<name>.json",
                "tenants/a.yaml:11:5: unknown field `roles` in spec.adopt\n  hint: did you mean `role`?",
            ]
        );
        let p = problems(&base().with(
            "tenants/a.yaml",
            &tenant("team-a", "  owner: a@example.com\n  adopt: {}\n"),
        ));
        assert_eq!(
            p,
            vec![
                "tenants/a.yaml:7:10: spec.adopt names nothing to take over\n  hint: name the live role (`role: <ARN>`), the Profile (`profile: <name>`) or `policies`, or remove the block"
            ]
        );
    }

    #[test]
    fn a_repo_policy_named_by_its_arn_keeps_its_path() {
        let by_arn = |t: &str| {
            tenant(
                t,
                &format!(
                    "  owner: a@example.com\n  iam:\n    managedPolicies: [{POLICY_AT_ROOT}]\n"
                ),
            )
        };
        let src = base().with("tenants/a.yaml", &by_arn("team-a")).with(
            "tenants/b.yaml",
            &tenant(
                "team-b",
                "  owner: a@example.com\n  iam:\n    managedPolicies: [shared]\n",
            ),
        );
        let r = load(&src).unwrap_or_else(|p| panic!("{p:#?}"));
        assert_eq!(r.policies[0].path, "/");
        assert_eq!(r.policies[0].arn(&r.config), POLICY_AT_ROOT);
        // Both tenants attach the one policy, by ARN or by name.
        let d = crate::plan::desired::render(&r);
        for t in ["team-a", "team-b"] {
            assert_eq!(
                d.roles[t].managed_policy_arns,
                [POLICY_AT_ROOT.to_string()].into(),
                "{t}"
            );
        }
        assert_eq!(d.policies["shared"].arn, POLICY_AT_ROOT);
        // Named by name only: under [iam] role_path, as always.
        let r = load(&base().with(
            "tenants/b.yaml",
            &tenant(
                "team-b",
                "  owner: a@example.com\n  iam:\n    managedPolicies: [shared]\n",
            ),
        ))
        .unwrap();
        assert_eq!(r.policies[0].path, "/kftenant/");
        // Two paths for one policy: refused. Another account's ARN is not the repo policy.
        let src = base()
            .with("tenants/a.yaml", &by_arn("team-a"))
            .with("tenants/c.yaml", &tenant("team-c", "  owner: a@example.com\n  iam:\n    managedPolicies:\n      - arn:aws:iam::123456789012:policy/ml/shared\n      - arn:aws:iam::999999999999:policy/shared\n"));
        assert_eq!(
            problems(&src),
            vec![
                "tenants/c.yaml:9:9: `arn:aws:iam::123456789012:policy/ml/shared` names policy `shared` at path `/ml/`, but tenants/a.yaml:8:23 names it at `/`; a policy has one path\n  hint: name it by the same ARN everywhere (or by its name alone)"
            ]
        );
    }

    #[test]
    fn decoder_fields_match_the_schema() {
        let schema = serde_json::to_value(schemars::schema_for!(TenantDocument)).unwrap();
        let props = |v: &Json| -> Vec<String> {
            let mut k: Vec<String> = v["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            k.sort();
            k
        };
        let def = |name: &str| schema["$defs"][name].clone();
        let sorted = |f: &[&str]| {
            let mut v: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(props(&schema), sorted(fields::DOCUMENT));
        assert_eq!(props(&def("TenantMetadata")), sorted(fields::METADATA));
        assert_eq!(props(&def("TenantSpec")), sorted(fields::SPEC));
        assert_eq!(props(&def("TenantAdopt")), sorted(fields::ADOPT));
        assert_eq!(props(&def("TenantIam")), sorted(fields::IAM));
        assert_eq!(props(&def("InlinePolicySpec")), sorted(fields::INLINE));
        assert_eq!(props(&def("TenantProfile")), sorted(fields::PROFILE));
        assert_eq!(props(&def("TenantResourceQuota")), sorted(fields::QUOTA));
    }
}
