//! `kftenant import`: a tenant repository written from a live Kubeflow
//! installation, so that tenants made by hand (Kubeflow's AWS guide: a role
//! `<profile>-<cluster>-role` at path `/`, a Profile with the
//! `AwsIamForServiceAccount` plugin) come under kftenant without being
//! deleted and recreated.
//!
//! # Expected flow
//! The command line lists the Profiles to import and observes the live world
//! for them (`live::observe`); [`render`] turns that data into files:
//! `kftenant.toml` (the given one, as it is), `tenants/<name>.yaml` (comments
//! say where each value came from), the inline policies as JSON files under
//! `inline/<tenant>/`, and, with [`ImportOptions::import_policies`], the
//! account's customer-managed policies under `policies/`.
//!
//! # Guarantees
//! - Pure and deterministic: the same live world gives the same files, byte
//!   for byte (no clock, entries sorted).
//! - Nothing live is dropped silently. Every attachment, inline policy, tag,
//!   boundary, session duration, trusted service account, quota, label,
//!   annotation and contributor goes into git; what kftenant cannot express
//!   is a [`Note`]: either the Profile is not imported ([`NoteKind::Skipped`]),
//!   or adoption will change it, as the plan then shows ([`NoteKind::Changes`]),
//!   or it stays live as it is, outside git ([`NoteKind::Kept`]).
//! - What kftenant does not own yet is named in the tenant's `spec.adopt`,
//!   exactly (the role's ARN, the Profile's name, policies' ARNs): taking it
//!   over is what git then says, reviewably.
//! - The files are checked as `kftenant validate` checks them
//!   ([`Imported::problems`]): a live value that kftenant's rules refuse (a
//!   guardrail, an IAM limit) is reported at its file and line.

use crate::config::Config;
use crate::diag::Diagnostic;
use crate::kubeflow::{
    DEFAULT_SERVICE_ACCOUNT, IAM_PLUGIN_KIND, MemberRole, OWNER_ROLE_BINDING, ROLE_ANNOTATION,
    ROLE_ARN_ANNOTATION, USER_ANNOTATION, UserIdentity, binding_name, member_authorization_spec,
};
use crate::model::{self, MemSource};
use crate::names::{check_dns_label, check_label_key};
use crate::ownership::{MANAGED_BY_LABEL, MANAGER, RESERVED_PREFIX, TAG_CLUSTER, TAG_TENANT};
use crate::plan::observed::{
    Observed, ObservedObject, ObservedPolicy, ObservedProfile, ObservedRole,
};
use crate::policy;
use crate::quota;
use crate::yaml;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// What to import besides the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Write the account's customer-managed policies the roles attach into
    /// `policies/<name>.json` (named by their ARN, so they stay where they
    /// are, and adopted) instead of referencing them by ARN only.
    pub import_policies: bool,
}

/// The repository written from the live world, and what could not be said in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imported {
    /// Files by path relative to the repository root, with their text.
    pub files: BTreeMap<String, String>,
    /// The tenants written, by name.
    pub tenants: Vec<ImportedTenant>,
    /// What kftenant cannot express, what adoption will change, and what was
    /// not imported, sorted by Profile.
    pub notes: Vec<Note>,
    /// What `kftenant validate` says of the files (empty when they are valid).
    pub problems: Vec<Diagnostic>,
}

impl Imported {
    /// The report as data, without the files' text: the paths written, the
    /// tenants, the notes and the problems (`kftenant import --format json`).
    pub fn summary(&self) -> Json {
        serde_json::json!({
            "files": self.files.keys().collect::<Vec<_>>(),
            "tenants": self.tenants,
            "notes": self.notes,
            "problems": self.problems,
        })
    }
}

/// One tenant written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedTenant {
    /// Tenant (Profile) name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// The role the Profile names.
    pub role_arn: String,
    /// The role exists and is not kftenant's yet: `spec.adopt.role`.
    pub adopt_role: bool,
    /// The Profile is not kftenant's yet: `spec.adopt.profile`.
    pub adopt_profile: bool,
}

/// Something the import could not carry into git as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Note {
    /// The Profile it is about.
    pub profile: String,
    /// What happens to it.
    pub kind: NoteKind,
    /// What and why, in words.
    pub message: String,
}

/// What happens to something the import noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// The Profile is not imported: kftenant cannot express it.
    Skipped,
    /// Adopting the tenant changes this (the plan shows it): review it.
    Changes,
    /// It stays live as it is, outside git (kftenant does not manage it).
    Kept,
}

impl NoteKind {
    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            NoteKind::Skipped => "not imported",
            NoteKind::Changes => "changes on adoption",
            NoteKind::Kept => "kept outside git",
        }
    }
}

/// The first line of every tenant file: editors check it with kftenant's schema.
pub const SCHEMA_LINE: &str = "# yaml-language-server: $schema=https://raw.githubusercontent.com/OWNER/kftenant/main/schema/tenant.schema.json";

/// Annotation and label prefixes written by tools, not by people: not imported.
const TOOL_PREFIXES: [&str; 1] = ["kubectl.kubernetes.io/"];

/// The role ARNs the Profiles name in their `AwsIamForServiceAccount`
/// plugin: what the command line observes for [`render`].
pub fn role_arns<'a>(
    profiles: impl IntoIterator<Item = &'a ObservedProfile>,
) -> BTreeMap<String, String> {
    profiles
        .into_iter()
        .filter_map(|p| Some((p.name.clone(), iam_plugin(&p.spec.to_json()).ok()?.0)))
        .collect()
}

/// The names of the roles the Profiles name, for observing them.
pub fn role_names(profiles: &[ObservedProfile]) -> BTreeSet<String> {
    role_arns(profiles)
        .into_values()
        .filter_map(|arn| arn.rsplit('/').next().map(str::to_string))
        .collect()
}

/// The customer-managed policy ARNs of `config`'s account that the observed
/// roles of the Profiles attach or use as a boundary: what
/// `--import-policies` reads.
pub fn local_policy_arns(
    config: &Config,
    profiles: &[ObservedProfile],
    observed: &Observed,
) -> BTreeSet<String> {
    let names: BTreeSet<String> = role_names(profiles)
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let prefix = format!(
        "arn:{}:iam::{}:policy/",
        config.partition(),
        config.cluster.account_id
    );
    observed
        .roles
        .iter()
        .filter(|r| names.contains(&r.name.to_ascii_lowercase()))
        .flat_map(|r| r.attached_policy_arns.iter().chain(&r.permissions_boundary))
        .filter(|a| a.starts_with(&prefix))
        .cloned()
        .collect()
}

/// `(role ARN, annotateOnly, other keys of the plugin's spec)` of a Profile
/// spec with exactly one plugin, `AwsIamForServiceAccount`; or why not.
fn iam_plugin(spec: &Json) -> Result<(String, bool, Vec<String>), String> {
    let plugins = spec.get("plugins").and_then(Json::as_array);
    let Some(plugins) = plugins.filter(|p| !p.is_empty()) else {
        return Err(format!(
            "it has no {IAM_PLUGIN_KIND} plugin, and every kftenant tenant has an IAM role (to bring it under kftenant with a new role, write its tenant by hand with `adopt: {{profile: NAME}}`)"
        ));
    };
    let kinds: Vec<&str> = plugins
        .iter()
        .map(|p| p.get("kind").and_then(Json::as_str).unwrap_or("?"))
        .collect();
    if kinds != [IAM_PLUGIN_KIND] {
        return Err(format!(
            "its plugins are [{}]; kftenant writes the plugin list whole, with {IAM_PLUGIN_KIND} only, and would drop the others",
            kinds.join(", ")
        ));
    }
    let plugin_spec = plugins[0].get("spec").cloned().unwrap_or(Json::Null);
    let role = plugin_spec
        .get("awsIamRole")
        .and_then(Json::as_str)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("its {IAM_PLUGIN_KIND} plugin names no awsIamRole"))?;
    let annotate_only = plugin_spec
        .get("annotateOnly")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let others = plugin_spec
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter(|k| *k != "awsIamRole" && *k != "annotateOnly")
        .cloned()
        .collect();
    Ok((role.to_string(), annotate_only, others))
}

/// `(path, name)` of a role ARN of `config`'s account, or why not.
fn role_in_account<'a>(config: &Config, arn: &'a str) -> Result<(&'a str, &'a str), String> {
    let prefix = format!(
        "arn:{}:iam::{}:role",
        config.partition(),
        config.cluster.account_id
    );
    let rest = arn.strip_prefix(&prefix).ok_or_else(|| {
        format!(
            "its role `{arn}` is not a role of account {} ([cluster] account_id), the one kftenant manages",
            config.cluster.account_id
        )
    })?;
    let cut = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, name) = rest.split_at(cut);
    if !path.starts_with('/') || name.is_empty() {
        return Err(format!("its role `{arn}` is not a role ARN"));
    }
    Ok((path, name))
}

/// Everything the import writes for one Profile, before it becomes text.
struct Draft {
    name: String,
    owner: String,
    role_arn: String,
    adopt_role: Option<String>,
    adopt_profile: bool,
    adopt_policies: Vec<String>,
    role_name: Option<String>,
    role_path: Option<String>,
    role_exists: bool,
    managed_policies: Vec<String>,
    inline_policies: Vec<(String, String)>,
    permissions_boundary: Option<String>,
    max_session_duration: Option<u32>,
    tags: BTreeMap<String, String>,
    service_accounts: Vec<String>,
    quota_hard: Vec<(String, Option<String>)>,
    quota_scopes: Option<Vec<String>>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    members: Vec<(String, MemberRole)>,
    /// Inline policy files: path and text.
    files: Vec<(String, String)>,
}

/// Collects the notes of one import.
#[derive(Default)]
struct Notes(Vec<Note>);

impl Notes {
    fn add(&mut self, profile: &str, kind: NoteKind, message: impl Into<String>) {
        self.0.push(Note {
            profile: profile.to_string(),
            kind,
            message: message.into(),
        });
    }
}

/// The repository for `profiles` (the Profiles chosen), from the live world
/// `observed` (their roles, namespaces' contributors, and with
/// `import_policies` the account's policies they attach). `config_text` is
/// `kftenant.toml` as given; `config` is it loaded.
pub fn render(
    config_text: &str,
    config: &Config,
    profiles: &[ObservedProfile],
    observed: &Observed,
    opts: &ImportOptions,
) -> Imported {
    let mut notes = Notes::default();
    let mut files = BTreeMap::new();
    files.insert(
        crate::config::CONFIG_FILE.to_string(),
        config_text.to_string(),
    );
    let mut profiles: Vec<&ObservedProfile> = profiles.iter().collect();
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    // Two Profiles naming one role: kftenant gives each tenant its own.
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (profile, arn) in role_arns(profiles.iter().copied()) {
        users
            .entry(arn.to_ascii_lowercase())
            .or_default()
            .push(profile);
    }
    let shared: BTreeMap<String, String> = users
        .values()
        .filter(|v| v.len() > 1)
        .flat_map(|v| v.iter().map(move |p| (p.clone(), v.join(", "))))
        .collect();
    let mut policies: BTreeMap<String, &ObservedPolicy> = BTreeMap::new();
    // Who uses each policy ARN: tenant names.
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut tenants = Vec::new();
    for p in profiles {
        if let Some(all) = shared.get(p.name.as_str()) {
            notes.add(
                &p.name,
                NoteKind::Skipped,
                format!("its role is also named by Profiles {all}; a kftenant tenant has a role of its own"),
            );
            continue;
        }
        let Some(draft) = draft(config, p, observed, opts, &mut notes, &mut policies) else {
            continue;
        };
        for arn in draft
            .managed_policies
            .iter()
            .chain(&draft.permissions_boundary)
        {
            uses.entry(arn.clone())
                .or_default()
                .push(draft.name.clone());
        }
        let file = format!("tenants/{}.yaml", draft.name);
        files.insert(file.clone(), tenant_yaml(&draft));
        for (path, text) in &draft.files {
            files.insert(path.clone(), text.clone());
        }
        tenants.push(ImportedTenant {
            name: draft.name.clone(),
            file,
            role_arn: draft.role_arn.clone(),
            adopt_role: draft.adopt_role.is_some(),
            adopt_profile: draft.adopt_profile,
        });
    }
    for (name, p) in policies {
        let doc = policy::parse_live(&p.document).unwrap_or(Json::Null);
        files.insert(format!("policies/{name}.json"), pretty(&doc));
        // Attached elsewhere too: kftenant's changes to it reach those.
        let users = uses.get(&p.arn).map_or(&[][..], Vec::as_slice);
        if p.attachment_count > users.len() {
            notes.add(
                users.first().map_or("", String::as_str),
                NoteKind::Changes,
                format!(
                    "policy `{}` is also attached to {} roles, users or groups that are not imported: once kftenant manages policies/{name}.json, its changes reach them",
                    p.arn,
                    p.attachment_count - users.len()
                ),
            );
        }
    }
    if tenants.is_empty() {
        // tenants/ must exist: a missing folder is refused (it would prune everything).
        files.insert("tenants/.gitkeep".into(), String::new());
    }
    let source = files
        .iter()
        .fold(MemSource::default(), |src, (path, text)| {
            src.with(path, text)
        });
    let problems = match model::load(&source) {
        Ok(_) => Vec::new(),
        Err(diags) => diags,
    };
    let mut notes = notes.0;
    notes.sort();
    Imported {
        files,
        tenants,
        notes,
        problems,
    }
}

/// A JSON document as the files show it: pretty, keys sorted, a final newline.
fn pretty(doc: &Json) -> String {
    serde_json::to_string_pretty(doc).expect("JSON serialises") + "\n"
}

/// The draft of one Profile's tenant, or `None` (noted) when it cannot be one.
fn draft<'o>(
    config: &Config,
    p: &ObservedProfile,
    observed: &'o Observed,
    opts: &ImportOptions,
    notes: &mut Notes,
    policies: &mut BTreeMap<String, &'o ObservedPolicy>,
) -> Option<Draft> {
    let name = p.name.as_str();
    let cluster = config.cluster.name.as_str();
    let skip = |notes: &mut Notes, why: String| {
        notes.add(name, NoteKind::Skipped, why);
        None
    };
    if let Some(msg) = check_dns_label(name) {
        return skip(
            notes,
            format!("its name is not a kftenant tenant name: {msg}"),
        );
    }
    if p.deleting {
        return skip(notes, "it is being deleted".into());
    }
    let owned_profile = match p.labels.get(TAG_CLUSTER) {
        Some(c) if c == cluster => true,
        Some(c) => {
            return skip(
                notes,
                format!("kftenant of cluster `{c}` manages it ({TAG_CLUSTER}={c})"),
            );
        }
        None => false,
    };
    let spec = p.spec.to_json();
    let owner = &spec["owner"];
    let owner_kind = owner.get("kind").and_then(Json::as_str).unwrap_or("");
    let owner_name = owner.get("name").and_then(Json::as_str).unwrap_or("");
    if owner_kind != "User" {
        return skip(
            notes,
            format!("its owner is a {owner_kind:?}, and a kftenant tenant's owner is a User"),
        );
    }
    if owner_name.is_empty() || owner_name.contains(char::is_whitespace) {
        return skip(
            notes,
            format!("its owner name {owner_name:?} is not a user name"),
        );
    }
    let (role_arn, _annotate_only, plugin_keys) = match iam_plugin(&spec) {
        Ok(x) => x,
        Err(why) => return skip(notes, why),
    };
    if !plugin_keys.is_empty() {
        notes.add(
            name,
            NoteKind::Changes,
            format!(
                "its {IAM_PLUGIN_KIND} plugin also says {}: kftenant writes awsIamRole and annotateOnly only",
                plugin_keys.join(", ")
            ),
        );
    }
    let (arn_path, arn_name) = match role_in_account(config, &role_arn) {
        Ok(x) => x,
        Err(why) => return skip(notes, why),
    };
    let rqs = spec.get("resourceQuotaSpec").cloned().unwrap_or(Json::Null);
    if rqs
        .get("scopeSelector")
        .is_some_and(|s| s.as_object().is_some_and(|m| !m.is_empty()))
    {
        return skip(
            notes,
            "its resourceQuotaSpec has a scopeSelector, which kftenant does not write (it would plan to remove it on every run)".into(),
        );
    }
    let live_role = observed
        .roles
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(arn_name));
    let mut d = Draft {
        name: name.to_string(),
        owner: owner_name.to_string(),
        role_arn: role_arn.clone(),
        adopt_role: None,
        adopt_profile: !owned_profile,
        adopt_policies: Vec::new(),
        role_name: None,
        role_path: None,
        role_exists: live_role.is_some(),
        managed_policies: Vec::new(),
        inline_policies: Vec::new(),
        permissions_boundary: None,
        max_session_duration: None,
        tags: BTreeMap::new(),
        service_accounts: Vec::new(),
        quota_hard: Vec::new(),
        quota_scopes: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        members: Vec::new(),
        files: Vec::new(),
    };
    let (role_path, role_name) = match live_role {
        Some(r) => (r.path.as_str(), r.name.as_str()),
        None => {
            notes.add(
                name,
                NoteKind::Changes,
                format!("its role `{role_arn}` does not exist in IAM: kftenant creates it, with that name and path"),
            );
            (arn_path, arn_name)
        }
    };
    if role_name != config.role_name(name) {
        d.role_name = Some(role_name.to_string());
    }
    if role_path != config.iam.role_path {
        d.role_path = Some(role_path.to_string());
    }
    if let Some(r) = live_role {
        if !role(config, r, &mut d, observed, opts, notes, policies) {
            return None;
        }
    }
    profile_fields(config, p, &rqs, &mut d, notes);
    members(config, p, observed, &mut d, notes);
    Some(d)
}

/// The role's fields into the draft; `false` (noted) when the role is
/// another kftenant's.
#[allow(clippy::too_many_arguments)]
fn role<'o>(
    config: &Config,
    r: &ObservedRole,
    d: &mut Draft,
    observed: &'o Observed,
    opts: &ImportOptions,
    notes: &mut Notes,
    policies: &mut BTreeMap<String, &'o ObservedPolicy>,
) -> bool {
    let name = d.name.clone();
    let cluster = config.cluster.name.as_str();
    let marks: Vec<String> = r
        .tags
        .iter()
        .filter(|(k, _)| k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let owned = crate::ownership::owns_tags(&r.tags, cluster);
    if owned && r.tags.get(TAG_TENANT).map(String::as_str) != Some(name.as_str()) {
        notes.add(
            &name,
            NoteKind::Skipped,
            format!(
                "its role `{}` is kftenant's for tenant `{}`",
                r.name,
                r.tags.get(TAG_TENANT).map_or("?", String::as_str)
            ),
        );
        return false;
    }
    if !owned && !marks.is_empty() {
        notes.add(
            &name,
            NoteKind::Skipped,
            format!(
                "its role `{}` carries another kftenant's tags ({})",
                r.name,
                marks.join(", ")
            ),
        );
        return false;
    }
    if !owned {
        d.adopt_role = Some(r.arn.clone());
    }
    let account_policy = format!(
        "arn:{}:iam::{}:policy/",
        config.partition(),
        config.cluster.account_id
    );
    let mut import = |arn: &str, d: &mut Draft, notes: &mut Notes| {
        if !opts.import_policies || !arn.starts_with(&account_policy) {
            return;
        }
        let Some(p) = observed.policies.iter().find(|p| p.arn == *arn) else {
            notes.add(
                &name,
                NoteKind::Kept,
                format!("policy `{arn}` could not be read: kept by ARN"),
            );
            return;
        };
        let owned = crate::ownership::owns_policy(&p.description, p.tags.as_ref(), cluster);
        let user_tags: Vec<&str> = p
            .tags
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .filter(|k| !k.starts_with(RESERVED_PREFIX))
            .collect();
        let marked = p.description.starts_with("Managed by kftenant")
            || p.tags
                .iter()
                .flatten()
                .any(|(k, _)| k.starts_with(RESERVED_PREFIX));
        if !owned && marked {
            notes.add(
                &name,
                NoteKind::Kept,
                format!("policy `{arn}` is another kftenant's: kept by ARN"),
            );
            return;
        }
        if !owned && !user_tags.is_empty() {
            notes.add(
                &name,
                NoteKind::Kept,
                format!(
                    "policy `{arn}` has tags ({}), which repo policies cannot carry: kept by ARN, not imported",
                    user_tags.join(", ")
                ),
            );
            return;
        }
        if policy::parse_live(&p.document).is_err() {
            notes.add(
                &name,
                NoteKind::Kept,
                format!("policy `{arn}` has a document that is not JSON: kept by ARN"),
            );
            return;
        }
        policies.insert(p.name.clone(), p);
        if !owned && !d.adopt_policies.contains(&p.arn) {
            d.adopt_policies.push(p.arn.clone());
        }
    };
    let mut attached = r.attached_policy_arns.clone();
    attached.sort();
    for arn in &attached {
        import(arn, d, notes);
    }
    d.managed_policies = attached;
    if let Some(b) = &r.permissions_boundary {
        import(b, d, notes);
        d.permissions_boundary = Some(b.clone());
    }
    d.adopt_policies.sort();
    if r.max_session_duration != config.iam.max_session_duration {
        d.max_session_duration = Some(r.max_session_duration);
    }
    for (k, v) in &r.tags {
        if k.starts_with(RESERVED_PREFIX) {
            continue;
        }
        d.tags.insert(k.clone(), v.clone());
    }
    for (policy_name, raw) in &r.inline_policies {
        match policy::parse_live(raw) {
            Ok(doc) => {
                let file = format!("inline/{}/{policy_name}.json", d.name);
                d.files.push((file.clone(), pretty(&doc)));
                d.inline_policies.push((policy_name.clone(), file));
            }
            Err(e) => {
                notes.add(
                    &name,
                    NoteKind::Skipped,
                    format!("its role's inline policy `{policy_name}` is not JSON ({e})"),
                );
                return false;
            }
        }
    }
    trust(config, r, owned, d, notes);
    service_accounts(r, d, observed, notes);
    true
}

/// The service accounts the role trusts besides `default-editor` go into
/// `spec.iam.serviceAccounts`, and kftenant annotates each with the role (it
/// creates one that does not exist): a note for each not annotated so yet,
/// since that is a change besides the adoptions.
fn service_accounts(r: &ObservedRole, d: &Draft, observed: &Observed, notes: &mut Notes) {
    for sa in &d.service_accounts {
        // Only accounts annotated with some role (or kftenant's) are read,
        // so one that is absent here may exist without the annotation.
        let annotated = observed
            .service_accounts
            .iter()
            .find(|a| a.namespace == d.name && a.name == *sa)
            .and_then(|a| a.annotations.get(ROLE_ARN_ANNOTATION));
        let what = match annotated {
            Some(arn) if *arn == r.arn => continue,
            Some(arn) => format!("is annotated with role `{arn}`"),
            None => "is not annotated with it, or does not exist".to_string(),
        };
        notes.add(
            &d.name,
            NoteKind::Changes,
            format!(
                "service account `{sa}`, which the role's trust policy lets in, {what}: kftenant annotates it with `{}` (creating it when absent); remove it from spec.iam.serviceAccounts to leave it as it is (the role then no longer trusts it)",
                r.arn
            ),
        );
    }
}

/// The service accounts the role's trust policy lets in from the tenant's
/// namespace, and notes on whatever else it says that kftenant's trust
/// policy (one statement: the cluster's OIDC provider, `aud`, the `sub`s of
/// the tenant's service accounts) does not.
fn trust(config: &Config, r: &ObservedRole, owned: bool, d: &mut Draft, notes: &mut Notes) {
    let name = d.name.clone();
    let Ok(doc) = policy::parse_live(&r.assume_role_policy_document) else {
        notes.add(
            &name,
            NoteKind::Changes,
            "its role's trust policy is not JSON: adoption replaces it with kftenant's",
        );
        return;
    };
    let issuer = &config.cluster.oidc_issuer;
    let provider = config.oidc_provider_arn();
    let sub_key = format!("{issuer}:sub");
    let ns_prefix = format!("system:serviceaccount:{name}:");
    let mut foreign = Vec::new();
    let mut has_sub = false;
    let statements = match &doc["Statement"] {
        Json::Array(s) => s.clone(),
        s @ Json::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    for s in &statements {
        let federated = &s["Principal"]["Federated"];
        if federated.as_str() != Some(provider.as_str()) {
            foreign.push(format!("the principal {}", compact(&s["Principal"])));
        }
        let Some(conditions) = s.get("Condition").and_then(Json::as_object) else {
            continue;
        };
        for (op, keys) in conditions {
            for (key, values) in keys.as_object().into_iter().flatten() {
                if key == &format!("{issuer}:aud") {
                    continue;
                }
                let values: Vec<&str> = match values {
                    Json::String(v) => vec![v.as_str()],
                    Json::Array(v) => v.iter().filter_map(Json::as_str).collect(),
                    _ => Vec::new(),
                };
                if key == &sub_key && op == "StringEquals" {
                    has_sub = true;
                    for v in values {
                        match v.strip_prefix(&ns_prefix) {
                            Some(sa) if sa == DEFAULT_SERVICE_ACCOUNT => {}
                            Some(sa) if crate::names::check_dns_subdomain(sa).is_none() => {
                                if !d.service_accounts.iter().any(|x| x == sa) {
                                    d.service_accounts.push(sa.to_string());
                                }
                            }
                            _ => foreign.push(format!("`{v}`")),
                        }
                    }
                } else {
                    if key == &sub_key {
                        has_sub = true;
                    }
                    foreign.push(format!("{op} {key} {}", values.join(", ")));
                }
            }
        }
    }
    d.service_accounts.sort();
    if owned {
        return;
    }
    let want = policy::normalize_owned(config.trust_policy(&name, &d.service_accounts));
    if policy::normalize(&doc) == want {
        return;
    }
    let mut what = Vec::new();
    if !has_sub {
        what.push(
            "it has no `sub` condition, so any service account of the cluster may assume the role; adoption lets in default-editor only (and spec.iam.serviceAccounts)".to_string(),
        );
    }
    if !foreign.is_empty() {
        what.push(format!(
            "it lets in {}, which kftenant's trust policy cannot say: adoption removes it",
            foreign.join("; ")
        ));
    }
    if what.is_empty() {
        what.push("its form differs from kftenant's (shown by `kftenant plan`)".into());
    }
    notes.add(
        &name,
        NoteKind::Changes,
        format!("trust policy of role `{}`: {}", r.name, what.join("; ")),
    );
}

fn compact(v: &Json) -> String {
    v.to_string()
}

/// The Profile's quota, labels and annotations into the draft.
fn profile_fields(
    config: &Config,
    p: &ObservedProfile,
    rqs: &Json,
    d: &mut Draft,
    notes: &mut Notes,
) {
    let name = p.name.as_str();
    // The quota over `[profile] default_resource_quota`: what differs, key by key.
    let defaults = config.default_quota().unwrap_or_default();
    let live_hard = rqs.get("hard").and_then(Json::as_object);
    for (k, v) in live_hard.into_iter().flatten() {
        let text = match v {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        match quota::parse_value(k, &text) {
            Ok(q) => {
                if !defaults.hard.get(k).is_some_and(|dq| dq.same_value(&q)) {
                    d.quota_hard.push((k.clone(), Some(text)));
                }
            }
            Err(_) => d.quota_hard.push((k.clone(), Some(text))),
        }
    }
    for k in defaults.hard.keys() {
        if !live_hard.is_some_and(|h| h.contains_key(k)) {
            d.quota_hard.push((k.clone(), None));
        }
    }
    d.quota_hard.sort();
    let live_scopes: Vec<String> = rqs
        .get("scopes")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let as_set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    let has_limits = live_hard.is_some_and(|h| !h.is_empty());
    if has_limits && as_set(&live_scopes) != as_set(&defaults.scopes) {
        d.quota_scopes = Some(live_scopes);
    }
    for (k, v) in &p.labels {
        if k == MANAGED_BY_LABEL {
            if v != MANAGER {
                notes.add(
                    name,
                    NoteKind::Changes,
                    format!("its label {MANAGED_BY_LABEL}={v} becomes {MANAGER}: if another tool manages this Profile, stop it first (it would fight kftenant, or delete the Profile when uninstalled)"),
                );
            }
            continue;
        }
        if k.starts_with(RESERVED_PREFIX) || TOOL_PREFIXES.iter().any(|t| k.starts_with(t)) {
            continue;
        }
        if check_label_key(k).is_some() || v.len() > 63 {
            notes.add(name, NoteKind::Kept, format!("its label `{k}` is not one kftenant accepts: it stays on the Profile, outside git"));
            continue;
        }
        d.labels.insert(k.clone(), v.clone());
    }
    for (k, v) in &p.annotations {
        if TOOL_PREFIXES.iter().any(|t| k.starts_with(t)) {
            notes.add(
                name,
                NoteKind::Kept,
                format!("its annotation `{k}` (written by a tool) stays on the Profile, outside git; do not `kubectl apply` its old manifest once kftenant manages it"),
            );
            continue;
        }
        if check_label_key(k).is_some() {
            notes.add(name, NoteKind::Kept, format!("its annotation `{k}` is not one kftenant accepts: it stays on the Profile, outside git"));
            continue;
        }
        d.annotations.insert(k.clone(), v.clone());
    }
}

/// The namespace's contributors, as KFAM writes them, into the draft.
fn members(
    config: &Config,
    p: &ObservedProfile,
    observed: &Observed,
    d: &mut Draft,
    notes: &mut Notes,
) {
    let ns = p.name.as_str();
    let cluster = config.cluster.name.as_str();
    let id = UserIdentity {
        header: &config.members.userid_header,
        prefix: &config.members.userid_prefix,
        principals: &config.members.principals,
    };
    let in_ns = |list: &'_ [ObservedObject]| -> Vec<ObservedObject> {
        list.iter().filter(|o| o.namespace == ns).cloned().collect()
    };
    let policies = in_ns(&observed.authorization_policies);
    for b in in_ns(&observed.role_bindings) {
        if b.name == OWNER_ROLE_BINDING {
            continue;
        }
        let keep = |notes: &mut Notes, why: &str| {
            notes.add(
                ns,
                NoteKind::Kept,
                format!("RoleBinding `{}` {why}: it stays as access not in git (`kftenant plan` lists it)", b.name),
            );
        };
        if b.labels.get(TAG_CLUSTER).is_some_and(|c| c != cluster) {
            keep(notes, "is another kftenant's");
            continue;
        }
        let user = b
            .annotations
            .get(USER_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let role_annotation = b
            .annotations
            .get(ROLE_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let Some(role) = MemberRole::parse(&role_annotation) else {
            keep(
                notes,
                &format!("has role `{role_annotation}`, and contributors are `edit` or `view`"),
            );
            continue;
        };
        let body = b.body.to_json();
        let subjects = body["subjects"].as_array().cloned().unwrap_or_default();
        let kfam_shaped = body["roleRef"]["kind"] == "ClusterRole"
            && body["roleRef"]["name"] == role.cluster_role()
            && subjects.len() == 1
            && subjects[0]["kind"] == "User"
            && subjects[0]["name"] == user.as_str()
            && binding_name(&user, role) == b.name;
        if !kfam_shaped {
            keep(notes, "is not a contributor binding as KFAM writes one");
            continue;
        }
        if user == d.owner {
            keep(notes, "binds the owner");
            continue;
        }
        if let Some(msg) = model::check_user(&user) {
            keep(notes, &format!("names user `{user}`, which {msg}"));
            continue;
        }
        let want = member_authorization_spec(&id, &user);
        match policies.iter().find(|a| a.name == b.name) {
            Some(a) if a.body.to_json() == want => {}
            Some(_) => notes.add(
                ns,
                NoteKind::Changes,
                format!("AuthorizationPolicy `{}` differs from what [members] in kftenant.toml renders: taking contributor `{user}` over rewrites it", b.name),
            ),
            None => notes.add(
                ns,
                NoteKind::Changes,
                format!("contributor `{user}` has no AuthorizationPolicy `{}`: kftenant adds it", b.name),
            ),
        }
        d.members.push((user, role));
    }
    d.members.sort();
}

/// A YAML scalar: plain when that reads back as the same string, else
/// double-quoted (JSON's escaping, which YAML reads the same).
fn scalar(s: &str) -> String {
    let plain_chars = !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@/:+=-".contains(c))
        && !s.ends_with(':');
    if plain_chars {
        if let Ok(docs) = yaml::load_documents(&format!("k: {s}\n")) {
            if docs
                .first()
                .and_then(|d| d.get("k"))
                .and_then(|n| n.as_str())
                == Some(s)
            {
                return s.to_string();
            }
        }
    }
    Json::String(s.to_string()).to_string()
}

/// The tenant file of a draft, with comments saying where each value came from.
fn tenant_yaml(d: &Draft) -> String {
    let mut y = String::new();
    let mut w = |line: String| {
        y.push_str(&line);
        y.push('\n');
    };
    w(SCHEMA_LINE.to_string());
    w(format!(
        "# Written by `kftenant import` from Profile `{}` and IAM role `{}`.",
        d.name, d.role_arn
    ));
    w("# Comments say where each value came from; edit it as any tenant.".into());
    w("apiVersion: kftenant.io/v1alpha1".into());
    w("kind: Tenant".into());
    w("metadata:".into());
    w(format!("  name: {}", scalar(&d.name)));
    w("spec:".into());
    w(format!(
        "  owner: {}  # the Profile's spec.owner",
        scalar(&d.owner)
    ));
    if d.adopt_role.is_some() || d.adopt_profile || !d.adopt_policies.is_empty() {
        w("  # What kftenant takes over as it is (marked as kftenant's, never recreated).".into());
        w("  # Once applied, this block may stay or go.".into());
        w("  adopt:".into());
        if let Some(arn) = &d.adopt_role {
            w(format!("    role: {}", scalar(arn)));
        }
        if d.adopt_profile {
            w(format!("    profile: {}", scalar(&d.name)));
        }
        if !d.adopt_policies.is_empty() {
            w("    policies:".into());
            for arn in &d.adopt_policies {
                w(format!("      - {}", scalar(arn)));
            }
        }
    }
    let mut iam = Vec::new();
    if let Some(n) = &d.role_name {
        iam.push(format!(
            "    roleName: {}  # the role's name (IAM cannot rename a role)",
            scalar(n)
        ));
    }
    if let Some(p) = &d.role_path {
        iam.push(format!(
            "    rolePath: {}  # the role's path (IAM cannot move a role)",
            scalar(p)
        ));
    }
    if !d.managed_policies.is_empty() {
        iam.push("    managedPolicies:  # attached to the role".into());
        for a in &d.managed_policies {
            iam.push(format!("      - {}", scalar(a)));
        }
    }
    if !d.inline_policies.is_empty() {
        iam.push("    inlinePolicies:  # the role's inline policies, one file each".into());
        for (n, f) in &d.inline_policies {
            iam.push(format!("      - name: {}", scalar(n)));
            iam.push(format!("        file: {}", scalar(f)));
        }
    }
    if let Some(b) = &d.permissions_boundary {
        iam.push(format!(
            "    permissionsBoundary: {}  # the role's boundary",
            scalar(b)
        ));
    }
    if let Some(s) = d.max_session_duration {
        iam.push(format!(
            "    maxSessionDuration: {s}  # the role's, in seconds"
        ));
    }
    if !d.tags.is_empty() {
        iam.push("    tags:  # the role's tags".into());
        for (k, v) in &d.tags {
            iam.push(format!("      {}: {}", scalar(k), scalar(v)));
        }
    }
    if !d.service_accounts.is_empty() {
        iam.push(
            "    serviceAccounts:  # let in by the role's trust policy, besides default-editor"
                .into(),
        );
        for s in &d.service_accounts {
            iam.push(format!("      - {}", scalar(s)));
        }
    }
    if !d.role_exists {
        w("  # The role the Profile names does not exist: kftenant creates it.".into());
    }
    if !iam.is_empty() {
        w("  iam:".into());
        for l in iam {
            w(l);
        }
    }
    let mut profile = Vec::new();
    if !d.quota_hard.is_empty() || d.quota_scopes.is_some() {
        profile.push("    resourceQuota:  # the Profile's spec.resourceQuotaSpec, over [profile] default_resource_quota".into());
        if !d.quota_hard.is_empty() {
            profile.push("      hard:".into());
            for (k, v) in &d.quota_hard {
                let value = match v {
                    Some(v) => Json::String(v.clone()).to_string(),
                    None => "null  # not limited in the Profile".into(),
                };
                profile.push(format!("        {}: {value}", scalar(k)));
            }
        }
        match &d.quota_scopes {
            Some(s) if s.is_empty() => profile.push("      scopes: []".into()),
            Some(s) => {
                profile.push("      scopes:".into());
                for x in s {
                    profile.push(format!("        - {}", scalar(x)));
                }
            }
            None => {}
        }
    }
    for (section, map) in [("labels", &d.labels), ("annotations", &d.annotations)] {
        if map.is_empty() {
            continue;
        }
        profile.push(format!("    {section}:  # the Profile's"));
        for (k, v) in map {
            profile.push(format!("      {}: {}", scalar(k), scalar(v)));
        }
    }
    if !profile.is_empty() {
        w("  profile:".into());
        for l in profile {
            w(l);
        }
    }
    if !d.members.is_empty() {
        w("  members:  # contributors: RoleBindings in the namespace, as KFAM writes them".into());
        for (user, role) in &d.members {
            w(format!("    - user: {}", scalar(user)));
            w(format!("      role: {}", role.as_str()));
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[cluster]\nname = \"prod\"\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\noidc_issuer = \"oidc.example/id/X\"\n[profile.default_resource_quota]\nscopes = [\"NotTerminating\"]\n[profile.default_resource_quota.hard]\ncpu = \"16\"\nmemory = \"64Gi\"\n";

    fn config() -> Config {
        let mut diags = crate::diag::Diagnostics::default();
        let c = crate::config::load(CONFIG, &mut diags).unwrap();
        assert!(diags.is_empty(), "{:?}", diags.sorted());
        c
    }

    fn world(trust: Json, spec: Json) -> (Vec<ObservedProfile>, Observed) {
        let role = ObservedRole {
            name: "Team-A-Legacy".into(),
            path: "/ml/".into(),
            arn: "arn:aws:iam::123456789012:role/ml/Team-A-Legacy".into(),
            assume_role_policy_document: trust.to_string(),
            permissions_boundary: Some("arn:aws:iam::123456789012:policy/boundary".into()),
            max_session_duration: 3600,
            tags: [("owner team".to_string(), "a".to_string())].into(),
            attached_policy_arns: vec![],
            inline_policies: BTreeMap::new(),
        };
        let profile = ObservedProfile {
            name: "team-a".into(),
            labels: [(MANAGED_BY_LABEL.to_string(), "Helm".to_string())].into(),
            annotations: BTreeMap::new(),
            spec: spec.into(),
            deleting: false,
        };
        let observed = Observed {
            roles: vec![role],
            profiles: vec![profile.clone()],
            ..Default::default()
        };
        (vec![profile], observed)
    }

    fn spec_with(quota: Json) -> Json {
        serde_json::json!({
            "owner": {"kind": "User", "name": "a@example.com"},
            "plugins": [{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": "arn:aws:iam::123456789012:role/ml/Team-A-Legacy", "annotateOnly": false, "extra": 1}}],
            "resourceQuotaSpec": quota,
        })
    }

    fn trust_with(conditions: Json) -> Json {
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.example/id/X"},
            "Action": "sts:AssumeRoleWithWebIdentity", "Condition": conditions}]})
    }

    #[test]
    fn a_tenant_says_what_the_live_world_says_and_notes_the_rest() {
        let trust = trust_with(serde_json::json!({
            "StringEquals": {"oidc.example/id/X:aud": "sts.amazonaws.com",
                "oidc.example/id/X:sub": ["system:serviceaccount:team-a:default-editor", "system:serviceaccount:team-a:runner", "system:serviceaccount:team-a:trainer", "system:serviceaccount:other:x"]},
            "StringLike": {"oidc.example/id/X:sub": "system:serviceaccount:team-a:*"}}));
        let (profiles, mut observed) = world(
            trust,
            spec_with(
                serde_json::json!({"hard": {"cpu": "16", "pods": "10"}, "scopes": ["NotTerminating"]}),
            ),
        );
        // `trainer` already carries the role's annotation: nothing to note.
        observed.service_accounts.push(ObservedObject {
            namespace: "team-a".into(),
            name: "trainer".into(),
            labels: BTreeMap::new(),
            annotations: [(
                ROLE_ARN_ANNOTATION.to_string(),
                "arn:aws:iam::123456789012:role/ml/Team-A-Legacy".to_string(),
            )]
            .into(),
            body: Json::Null.into(),
            deleting: false,
        });
        let imported = render(
            CONFIG,
            &config(),
            &profiles,
            &observed,
            &ImportOptions::default(),
        );
        assert!(imported.problems.is_empty(), "{:#?}", imported.problems);
        let file = &imported.files["tenants/team-a.yaml"];
        for line in [
            "    role: arn:aws:iam::123456789012:role/ml/Team-A-Legacy\n",
            "    roleName: Team-A-Legacy  # the role's name (IAM cannot rename a role)\n",
            "    rolePath: /ml/  # the role's path (IAM cannot move a role)\n",
            "    permissionsBoundary: arn:aws:iam::123456789012:policy/boundary  # the role's boundary\n",
            "      \"owner team\": a\n",
            "      - runner\n",
            // The quota over the defaults: same cpu (left out), no memory (null), pods.
            "        memory: null  # not limited in the Profile\n        pods: \"10\"\n",
        ] {
            assert!(file.contains(line), "{line:?} in\n{file}");
        }
        assert!(!file.contains("cpu:") && !file.contains("scopes"), "{file}");
        assert!(
            !file.contains("Helm"),
            "the managed-by label is kftenant's: {file}"
        );
        let notes: Vec<String> = imported
            .notes
            .iter()
            .map(|n| format!("{:?}: {}", n.kind, n.message))
            .collect();
        assert_eq!(
            notes,
            vec![
                "Changes: its AwsIamForServiceAccount plugin also says extra: kftenant writes awsIamRole and annotateOnly only".to_string(),
                "Changes: its label app.kubernetes.io/managed-by=Helm becomes kftenant: if another tool manages this Profile, stop it first (it would fight kftenant, or delete the Profile when uninstalled)".to_string(),
                "Changes: service account `runner`, which the role's trust policy lets in, is not annotated with it, or does not exist: kftenant annotates it with `arn:aws:iam::123456789012:role/ml/Team-A-Legacy` (creating it when absent); remove it from spec.iam.serviceAccounts to leave it as it is (the role then no longer trusts it)".to_string(),
                "Changes: trust policy of role `Team-A-Legacy`: it lets in `system:serviceaccount:other:x`; StringLike oidc.example/id/X:sub system:serviceaccount:team-a:*, which kftenant's trust policy cannot say: adoption removes it".to_string(),
            ]
        );
        // The plan then trusts exactly default-editor, runner and trainer.
        let src = imported
            .files
            .iter()
            .fold(MemSource::default(), |s, (p, t)| s.with(p, t));
        let d = crate::plan::desired::render(&model::load(&src).unwrap());
        assert_eq!(
            d.roles["team-a"].trust_policy.to_json()["Statement"][0]["Condition"]["StringEquals"]["oidc.example/id/X:sub"],
            serde_json::json!([
                "system:serviceaccount:team-a:default-editor",
                "system:serviceaccount:team-a:runner",
                "system:serviceaccount:team-a:trainer"
            ])
        );
    }

    #[test]
    fn what_kftenant_cannot_express_is_not_imported_and_says_why() {
        let trust = trust_with(
            serde_json::json!({"StringEquals": {"oidc.example/id/X:aud": "sts.amazonaws.com"}}),
        );
        let mut spec = spec_with(
            serde_json::json!({"hard": {"cpu": "1"}, "scopeSelector": {"matchExpressions": [{"operator": "Exists", "scopeName": "BestEffort"}]}}),
        );
        let (profiles, observed) = world(trust.clone(), spec.clone());
        let imported = render(
            CONFIG,
            &config(),
            &profiles,
            &observed,
            &ImportOptions::default(),
        );
        assert!(imported.tenants.is_empty());
        assert_eq!(
            imported.files.keys().collect::<Vec<_>>(),
            vec!["kftenant.toml", "tenants/.gitkeep"]
        );
        assert!(
            imported.problems.is_empty(),
            "an empty tenants/ still validates"
        );
        assert!(
            imported.notes[0].message.contains("scopeSelector"),
            "{:?}",
            imported.notes
        );
        // A role of another account, another kftenant's Profile.
        spec["plugins"][0]["spec"]["awsIamRole"] = "arn:aws:iam::999999999999:role/x".into();
        let (profiles, observed) = world(trust.clone(), spec);
        let imported = render(
            CONFIG,
            &config(),
            &profiles,
            &observed,
            &ImportOptions::default(),
        );
        assert!(
            imported.notes[0]
                .message
                .contains("not a role of account 123456789012"),
            "{:?}",
            imported.notes
        );
        let (mut profiles, observed) = world(trust, spec_with(serde_json::json!({})));
        profiles[0]
            .labels
            .insert(TAG_CLUSTER.into(), "staging".into());
        let imported = render(
            CONFIG,
            &config(),
            &profiles,
            &observed,
            &ImportOptions::default(),
        );
        assert_eq!(imported.notes[0].kind, NoteKind::Skipped);
        assert!(imported.notes[0].message.contains("cluster `staging`"));
    }

    #[test]
    fn scalars_are_plain_only_when_they_read_back_the_same() {
        for (s, want) in [
            ("team-a", "team-a"),
            (
                "arn:aws:iam::aws:policy/AmazonS3FullAccess",
                "arn:aws:iam::aws:policy/AmazonS3FullAccess",
            ),
            ("alice@example.com", "alice@example.com"),
            ("/", "/"),
            ("true", "\"true\""),
            ("null", "\"null\""),
            ("0123", "\"0123\""),
            ("1e3", "\"1e3\""),
            ("a b", "\"a b\""),
            ("", "\"\""),
            ("-x", "\"-x\""),
            ("x:", "\"x:\""),
            ("quote\"d", "\"quote\\\"d\""),
            ("k: v", "\"k: v\""),
            ("#x", "\"#x\""),
        ] {
            assert_eq!(scalar(s), want, "{s}");
        }
    }
}
