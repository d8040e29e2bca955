//! The hand-written, positioned decoder of Tenant documents: every problem
//! is recorded with the line and column of the node it is about, and decoding
//! goes on, so one run reports every mistake of a file.

use super::{API_VERSION, INLINE_POLICIES_MAX_CHARS};
use super::{
    Adopt, ESCALATION_HINT, Escalation, Loaded, Pinned, PolicyRef, Reader, Tenant,
    check_denied_actions, escalations_in, load_policy_text,
};
use crate::config::Config;
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::kubeflow::{DEFAULT_SERVICE_ACCOUNT, MemberRole, binding_name};
use crate::names::{
    check_dns_label, check_dns_subdomain, check_iam_name_chars, check_iam_path, check_label_key,
    check_policy_arn, check_policy_name,
};
use crate::ownership::{MANAGED_BY_LABEL, RESERVED_PREFIX, ROLE_OWNERSHIP_TAGS};
use crate::policy::{self, PolicyKind};
use crate::quota::{self, Quota, QuotaOverride};
use crate::yaml::{Node, Value};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

/// Kubernetes: keys and values of all annotations of one object together
/// (`TotalAnnotationSizeLimitB` in apimachinery).
const ANNOTATIONS_MAX_BYTES: usize = 256 << 10;

pub(super) struct Cx<'a> {
    pub(super) file: &'a str,
    pub(super) diags: &'a mut Diagnostics,
    pub(super) src: &'a Reader<'a>,
    pub(super) config: Option<&'a Config>,
    /// `[profile] default_resource_quota`'s valid entries, parsed once.
    pub(super) default_quota: Option<&'a Quota>,
    pub(super) policy_names: &'a BTreeSet<String>,
    /// What each valid repo policy grants of `[guardrails] escalation_actions`.
    pub(super) repo_escalations: &'a BTreeMap<String, Vec<Escalation>>,
    /// The repo policies the tenant being decoded names by ARN.
    pub(super) pinned: Vec<Pinned>,
}

/// A valid inline policy of the tenant, kept with its positions until the
/// escalation check (which needs to know whether the role has a boundary).
struct InlineDocument {
    /// The file its positions refer to.
    file: String,
    node: Node,
    /// The document; moved into the tenant once the policy has a valid name.
    doc: Json,
}

/// Field names accepted by the decoder, kept beside the serde types so a test
/// can check they agree with the generated schema.
pub mod fields {
    /// Top level of a Tenant document.
    pub const DOCUMENT: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
    /// `metadata`.
    pub const METADATA: &[&str] = &["name"];
    /// `spec`.
    pub const SPEC: &[&str] = &[
        "owner",
        "adopt",
        "iam",
        "profile",
        "members",
        "clusters",
        "clusterSelector",
        "overrides",
    ];
    /// `spec.adopt`.
    pub const ADOPT: &[&str] = &["role", "profile", "policies"];
    /// `spec.members[]`.
    pub const MEMBER: &[&str] = &["user", "role"];
    /// `spec.iam`.
    pub const IAM: &[&str] = &[
        "roleName",
        "rolePath",
        "managedPolicies",
        "inlinePolicies",
        "permissionsBoundary",
        "maxSessionDuration",
        "tags",
        "serviceAccounts",
    ];
    /// `spec.iam.inlinePolicies[]`.
    pub const INLINE: &[&str] = &["name", "file", "document"];
    /// `spec.profile`.
    pub const PROFILE: &[&str] = &["resourceQuota", "labels", "annotations"];
    /// `spec.profile.resourceQuota`.
    pub const QUOTA: &[&str] = &["hard", "scopes"];
}

impl Cx<'_> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.error(self.file, pos, msg);
    }

    fn err_hint(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::at(self.file, pos, msg).with_hint(hint));
    }

    /// The entries of a mapping, after reporting unknown and duplicate keys.
    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'n [(Node, Node)]> {
        let Value::Map(entries) = &node.value else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, found {}", node.type_name()),
            );
            return None;
        };
        let mut seen = BTreeSet::new();
        for (k, _) in entries {
            let key = k.scalar_text();
            if !seen.insert(key.clone()) {
                self.err(k.pos, format!("duplicate key `{key}` in {what}"));
            } else if !allowed.is_empty() && !allowed.contains(&key.as_str()) {
                let mut d =
                    Diagnostic::at(self.file, k.pos, format!("unknown field `{key}` in {what}"));
                d = match did_you_mean(&key, allowed) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(format!("known fields: {}", allowed.join(", "))),
                };
                self.diags.push(d);
            }
        }
        Some(entries)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    fn string_list<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(String, &'n Node)> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| {
                    self.string(i, &format!("each entry of {what}"))
                        .map(|s| (s, i))
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a list, found {}", node.type_name()),
                );
                Vec::new()
            }
        }
    }

    fn string_map<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(String, &'n Node, String)> {
        if node.value == Value::Null {
            return Vec::new();
        }
        let Some(entries) = self.mapping(node, what, &[]) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = k.scalar_text();
            let val = match &v.value {
                Value::Str(s) => s.clone(),
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                    self.err_hint(
                        v.pos,
                        format!(
                            "value of `{key}` in {what} must be a string, found {}",
                            v.type_name()
                        ),
                        format!("quote it: \"{}\"", v.scalar_text()),
                    );
                    continue;
                }
                _ => {
                    self.err(
                        v.pos,
                        format!(
                            "value of `{key}` in {what} must be a string, found {}",
                            v.type_name()
                        ),
                    );
                    continue;
                }
            };
            out.push((key, k, val));
        }
        out
    }

    pub(super) fn tenant(&mut self, doc: &Node) -> Option<Loaded> {
        let before = self.diags.len();
        let entries = self.mapping(doc, "the Tenant document", fields::DOCUMENT)?;
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        match get("apiVersion").map(|n| (n, n.as_str())) {
            Some((_, Some(API_VERSION))) => {}
            Some((n, _)) => self.err_hint(
                n.pos,
                format!(
                    "apiVersion must be `{API_VERSION}`, found `{}`",
                    n.scalar_text()
                ),
                "this version of kftenant reads kftenant.io/v1alpha1",
            ),
            None => self.err_hint(
                doc.pos,
                "missing apiVersion",
                format!("add `apiVersion: {API_VERSION}`"),
            ),
        }
        match get("kind").map(|n| (n, n.as_str())) {
            Some((_, Some("Tenant"))) => {}
            Some((n, _)) => self.err(
                n.pos,
                format!("kind must be `Tenant`, found `{}`", n.scalar_text()),
            ),
            None => self.err_hint(doc.pos, "missing kind", "add `kind: Tenant`"),
        }
        let (name, name_pos) = match get("metadata") {
            Some(m) => match self.mapping(m, "metadata", fields::METADATA) {
                Some(me) => match me.iter().find(|(k, _)| k.as_str() == Some("name")) {
                    Some((_, n)) => {
                        let s = self.string(n, "metadata.name");
                        if let Some(s) = &s {
                            if let Some(msg) = check_dns_label(s) {
                                self.err_hint(n.pos, format!("tenant name `{s}` is not a DNS-1123 label: {msg}"), "it becomes a namespace: use lowercase letters, digits and `-`, at most 63 characters");
                            }
                        }
                        (s, n.pos)
                    }
                    None => {
                        self.err(m.pos, "missing metadata.name");
                        (None, m.pos)
                    }
                },
                None => (None, m.pos),
            },
            None => {
                self.err(doc.pos, "missing metadata");
                (None, doc.pos)
            }
        };
        let spec = match get("spec") {
            Some(s) => self.spec(s, name.as_deref().unwrap_or("")),
            None => {
                self.err(doc.pos, "missing spec");
                None
            }
        };
        if self.diags.len() != before {
            // Keep the name for the duplicate checks even when the tenant is broken,
            // so one mistake does not hide another.
            return name.map(|name| Loaded {
                tenant: placeholder_tenant(name, self.file),
                name_pos,
                pinned: std::mem::take(&mut self.pinned),
            });
        }
        let mut tenant = spec?;
        tenant.name = name?;
        Some(Loaded {
            tenant,
            name_pos,
            pinned: std::mem::take(&mut self.pinned),
        })
    }

    fn spec(&mut self, node: &Node, tenant: &str) -> Option<Tenant> {
        let entries = self.mapping(node, "spec", fields::SPEC)?;
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        let owner = match get("owner") {
            Some(o) => {
                let s = self.string(o, "spec.owner");
                if s.as_deref()
                    .is_some_and(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
                {
                    self.err_hint(
                        o.pos,
                        "spec.owner must be a user name without spaces",
                        "usually the owner's email, as your identity provider reports it",
                    );
                }
                s
            }
            None => {
                self.err_hint(
                    node.pos,
                    "missing spec.owner",
                    "the Profile owner, e.g. `owner: alice@example.com`",
                );
                None
            }
        };
        let mut t = placeholder_tenant(String::new(), self.file);
        t.owner = owner.unwrap_or_default();
        if let Some(iam) = get("iam") {
            self.iam(iam, tenant, &mut t);
        }
        // After `iam`: the role and the policies it names are known.
        if let Some(adopt) = get("adopt") {
            self.adopt(adopt, tenant, &mut t);
        }
        let quota = get("profile").and_then(|p| self.profile(p, &mut t));
        t.resource_quota = Quota::merged(self.default_quota, quota.as_ref().map(|q| &q.over));
        if let Some(q) = &quota {
            self.check_quota(&t.resource_quota, q);
        }
        if let Some(m) = get("members") {
            self.members(m, &mut t);
        }
        Some(t)
    }

    /// `spec.members`: each an email-like user, `edit` or `view`, listed
    /// once, not the owner; and no two users whose KFAM binding names collide.
    fn members(&mut self, node: &Node, t: &mut Tenant) {
        let items = match &node.value {
            Value::Seq(items) => items,
            Value::Null => return,
            _ => {
                self.err(
                    node.pos,
                    format!("spec.members must be a list, found {}", node.type_name()),
                );
                return;
            }
        };
        let mut users: BTreeMap<String, Pos> = BTreeMap::new();
        let mut names: BTreeMap<String, (String, Pos)> = BTreeMap::new();
        for item in items {
            let Some(entries) = self.mapping(item, "a member", fields::MEMBER) else {
                continue;
            };
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(key, _)| key.as_str() == Some(k))
                    .map(|(_, v)| v)
            };
            let user = match get("user") {
                Some(u) => self.string(u, "member user").map(|s| (s, u.pos)),
                None => {
                    self.err_hint(
                        item.pos,
                        "a member needs a user",
                        "e.g. `- {user: alice@example.com, role: edit}`",
                    );
                    None
                }
            };
            let role = match get("role") {
                Some(r) => match self.string(r, "member role") {
                    Some(s) => match MemberRole::parse(&s) {
                        Some(role) => Some(role),
                        None => {
                            let hint = match did_you_mean(&s, &["edit", "view"]) {
                                Some(m) => format!("did you mean `{m}`?"),
                                None => "`edit` (a contributor) or `view`".into(),
                            };
                            self.err_hint(
                                r.pos,
                                format!("member role must be `edit` or `view`, found `{s}`"),
                                hint,
                            );
                            None
                        }
                    },
                    None => None,
                },
                None => {
                    self.err_hint(
                        item.pos,
                        "a member needs a role",
                        "`edit` (a contributor) or `view`",
                    );
                    None
                }
            };
            let (Some((user, pos)), Some(role)) = (user, role) else {
                continue;
            };
            if let Some(msg) = check_user(&user) {
                self.err_hint(pos, format!("member user `{user}` {msg}"), "members are email addresses, as the dashboard and KFAM store them: e.g. lina.ng@acme.example");
                continue;
            }
            if user == t.owner {
                self.err_hint(
                    pos,
                    format!("`{user}` is the owner of this tenant"),
                    "the owner has every right already; remove this member",
                );
                continue;
            }
            if let Some(first) = users.get(&user) {
                self.err(
                    pos,
                    format!(
                        "member `{user}` is listed twice (first at line {})",
                        first.line
                    ),
                );
                continue;
            }
            let name = binding_name(&user, role);
            if let Some((other, _)) = names.get(&name) {
                self.err_hint(pos, format!("members `{other}` and `{user}` would get the same RoleBinding `{name}` (KFAM names bindings by the letters and digits of the user id)"), "Kubernetes cannot hold both; give one of them another role or user id");
                continue;
            }
            users.insert(user.clone(), pos);
            names.insert(name, (user.clone(), pos));
            t.members.push((user, role));
        }
        t.members.sort();
    }

    /// `spec.adopt`: each entry names exactly what the tenant renders (its
    /// role's ARN, its Profile, policies it attaches by ARN), so the block
    /// says in the review what changes hands.
    fn adopt(&mut self, node: &Node, tenant: &str, t: &mut Tenant) {
        let Some(entries) = self.mapping(node, "spec.adopt", fields::ADOPT) else {
            return;
        };
        if entries.is_empty() {
            self.err_hint(
                node.pos,
                "spec.adopt names nothing to take over",
                "name the live role (`role: <ARN>`), the Profile (`profile: <name>`) or `policies`, or remove the block",
            );
        }
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "role" => {
                    let Some(arn) = self.string(v, "spec.adopt.role") else {
                        continue;
                    };
                    let Some(c) = self.config.filter(|_| !tenant.is_empty()) else {
                        continue;
                    };
                    let name = t.role_name.clone().unwrap_or_else(|| c.role_name(tenant));
                    let path = t.role_path.as_deref().unwrap_or(&c.iam.role_path);
                    let want = c.account().role_arn(path, &name);
                    if arn == want {
                        t.adopt.role = true;
                    } else {
                        self.err_hint(
                            v.pos,
                            format!("spec.adopt.role `{arn}` is not this tenant's role `{want}`"),
                            "kftenant takes over only the role the tenant renders: set spec.iam.roleName and spec.iam.rolePath to the live role's name and path (`kftenant import` writes them); with several clusters, in spec.overrides.<cluster> of the role's cluster",
                        );
                    }
                }
                "profile" => {
                    let Some(profile) = self.string(v, "spec.adopt.profile") else {
                        continue;
                    };
                    if profile == tenant {
                        t.adopt.profile = true;
                    } else if !tenant.is_empty() {
                        self.err_hint(
                            v.pos,
                            format!("spec.adopt.profile `{profile}` is not this tenant's Profile `{tenant}`"),
                            "a tenant's Profile (and namespace) has the tenant's name",
                        );
                    }
                }
                "policies" => {
                    for (arn, n) in self.string_list(v, "spec.adopt.policies") {
                        match self.pinned.iter().find(|p| p.arn == arn) {
                            Some(p) => {
                                if !t.adopt.policies.insert(p.name.clone()) {
                                    self.err(n.pos, format!("`{arn}` is listed twice in spec.adopt.policies"));
                                }
                            }
                            None => self.err_hint(
                                n.pos,
                                format!("spec.adopt.policies: `{arn}` is not a policy this tenant attaches by ARN from policies/"),
                                "name it by this ARN in spec.iam.managedPolicies (or permissionsBoundary), with its document in policies/<name>.json",
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn iam(&mut self, node: &Node, tenant: &str, t: &mut Tenant) {
        if node.value == Value::Null {
            return;
        }
        let Some(entries) = self.mapping(node, "spec.iam", fields::IAM) else {
            return;
        };
        // For the escalation check, done once the boundary is known.
        let mut attached: Vec<(PolicyRef, Pos)> = Vec::new();
        let mut inline: Vec<(String, InlineDocument)> = Vec::new();
        // A written boundary counts even when invalid: its own error says so.
        let mut bounded = false;
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "roleName" => {
                    if let Some(name) = self.string(v, "spec.iam.roleName") {
                        if name.is_empty() || name.len() > 64 {
                            self.err(v.pos, format!("spec.iam.roleName `{name}` must be 1 to 64 characters"));
                        } else if let Some(msg) = check_iam_name_chars(&name) {
                            self.err(v.pos, format!("spec.iam.roleName `{name}`: {msg}"));
                        } else {
                            t.role_name = Some(name);
                        }
                    }
                }
                "rolePath" => {
                    if let Some(path) = self.string(v, "spec.iam.rolePath") {
                        if check_iam_path(&path).is_some() {
                            self.err_hint(v.pos, format!("spec.iam.rolePath `{path}` is not an IAM path"), "a path starts and ends with `/`, e.g. `/` or `/teams/`");
                        } else {
                            t.role_path = Some(path);
                        }
                    }
                }
                "managedPolicies" => {
                    let mut seen = BTreeSet::new();
                    let list = self.string_list(v, "spec.iam.managedPolicies");
                    let max = self.config.map_or(10, |c| c.guardrails.max_managed_policies_per_role);
                    if list.len() > max {
                        self.err_hint(k.pos, format!("{} managed policies, over the limit of {max} per role", list.len()), "merge policies, or raise [guardrails] max_managed_policies_per_role (AWS quota: up to 20)");
                    }
                    for (s, n) in list {
                        if !seen.insert(s.to_ascii_lowercase()) {
                            self.err(n.pos, format!("`{s}` is listed twice in spec.iam.managedPolicies"));
                            continue;
                        }
                        if let Some(r) = self.policy_ref(&s, n, "spec.iam.managedPolicies") {
                            self.check_attachable(&r, n);
                            attached.push((r.clone(), n.pos));
                            t.managed_policies.push(r);
                        }
                    }
                }
                "inlinePolicies" => self.inline_policies(v, k.pos, t, &mut inline),
                "permissionsBoundary" => {
                    bounded = true;
                    if let Some(s) = self.string(v, "spec.iam.permissionsBoundary") {
                        t.permissions_boundary = self.policy_ref(&s, v, "spec.iam.permissionsBoundary");
                    }
                }
                "maxSessionDuration" => match v.value {
                    Value::Int(i) if (3600..=43200).contains(&i) => t.max_session_duration = Some(i as u32),
                    Value::Str(_) => self.err_hint(v.pos, format!("spec.iam.maxSessionDuration must be a number of seconds from 3600 to 43200, found the string \"{}\"", v.scalar_text()), "remove the quotes"),
                    _ => self.err(v.pos, format!("spec.iam.maxSessionDuration must be a number of seconds from 3600 to 43200, found {}", v.scalar_text())),
                },
                "tags" => {
                    let tags = self.string_map(v, "spec.iam.tags");
                    if tags.len() + ROLE_OWNERSHIP_TAGS > 50 {
                        self.err_hint(k.pos, format!("{} tags plus kftenant's {ROLE_OWNERSHIP_TAGS} ownership tags exceed the IAM limit of 50 per role", tags.len()), "remove some tags");
                    }
                    for (key, kn, val) in tags {
                        if let Some(msg) = check_tag(&key, &val) {
                            self.err(kn.pos, msg);
                        }
                        t.tags.insert(key, val);
                    }
                }
                "serviceAccounts" => {
                    let mut seen = BTreeSet::new();
                    for (s, n) in self.string_list(v, "spec.iam.serviceAccounts") {
                        if s == DEFAULT_SERVICE_ACCOUNT {
                            self.err_hint(n.pos, "`default-editor` is always trusted", "remove it from serviceAccounts");
                        } else if let Some(msg) = check_dns_subdomain(&s) {
                            self.err(n.pos, format!("service account `{s}` in namespace `{tenant}` is not a valid name: {msg}"));
                        } else if !seen.insert(s.clone()) {
                            self.err(n.pos, format!("service account `{s}` is listed twice"));
                        } else {
                            t.service_accounts.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(c) = self.config {
            if !bounded && c.iam.permissions_boundary.is_none() {
                self.check_escalations(c, tenant, t, &attached, &inline);
            }
        }
        let sa_key = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("serviceAccounts"))
            .map(|(k, _)| k.pos);
        if let (Some(c), Some(pos)) = (self.config, sa_key) {
            let size = policy::iam_size(&c.trust_policy(tenant, &t.service_accounts));
            if size > c.guardrails.trust_policy_max_chars {
                self.err_hint(pos, format!("the trust policy would be {size} characters, over the limit of {}", c.guardrails.trust_policy_max_chars), "trust fewer service accounts, or raise [guardrails] trust_policy_max_chars (AWS quota: up to 4096)");
            }
        }
    }

    fn policy_ref(&mut self, s: &str, n: &Node, what: &str) -> Option<PolicyRef> {
        if s.starts_with("arn:") {
            if let Some(msg) = check_policy_arn(s) {
                self.err(n.pos, format!("{what}: {msg}"));
                return None;
            }
            // An ARN of this account naming a repo policy is that policy, at
            // the ARN's path (one made before kftenant, which IAM cannot move).
            if let Some((path, name)) = self.config.and_then(|c| repo_policy_at(c, s)) {
                if self.policy_names.contains(name) {
                    self.pinned.push(Pinned {
                        name: name.to_string(),
                        path: path.to_string(),
                        arn: s.to_string(),
                        pos: n.pos,
                    });
                    return Some(PolicyRef::Repo(name.to_string()));
                }
            }
            return Some(PolicyRef::Arn(s.to_string()));
        }
        if self.policy_names.contains(s) {
            return Some(PolicyRef::Repo(s.to_string()));
        }
        let names: Vec<&str> = self.policy_names.iter().map(String::as_str).collect();
        let hint = match did_you_mean(s, &names) {
            Some(m) => format!("did you mean `{m}`?"),
            None => "use a full policy ARN, or add policies/<name>.json".to_string(),
        };
        self.err_hint(
            n.pos,
            format!("{what}: `{s}` is neither an ARN nor a policy in policies/"),
            hint,
        );
        None
    }

    fn check_attachable(&mut self, r: &PolicyRef, n: &Node) {
        let (Some(c), PolicyRef::Arn(arn)) = (self.config, r) else {
            return;
        };
        let g = &c.guardrails;
        if let Some(p) = g
            .denied_policy_arns
            .iter()
            .find(|p| policy::glob_match(p, arn))
        {
            self.err_hint(n.pos, format!("guardrail: `{arn}` is denied by `{p}`"), "ask the platform team; denied policies are listed in kftenant.toml [guardrails] denied_policy_arns");
        } else if !g.allowed_policy_arns.is_empty()
            && !g
                .allowed_policy_arns
                .iter()
                .any(|p| policy::glob_match(p, arn))
        {
            self.err_hint(
                n.pos,
                format!("guardrail: `{arn}` is not in the allowed list"),
                format!("allowed: {}", g.allowed_policy_arns.join(", ")),
            );
        }
    }

    /// The guardrail for roles without a permissions boundary (no
    /// `spec.iam.permissionsBoundary`, no `[iam] permissions_boundary`): no
    /// escalation action in an inline policy (reported at the statement), nor in
    /// an attached repo policy (reported at the attachment, naming the policy's
    /// statement), and no managed policy of `escalation_policy_arns`.
    fn check_escalations(
        &mut self,
        c: &Config,
        tenant: &str,
        t: &Tenant,
        attached: &[(PolicyRef, Pos)],
        inline: &[(String, InlineDocument)],
    ) {
        let g = &c.guardrails;
        for (name, d) in inline {
            let Some(doc) = t.inline_policies.get(name) else {
                continue;
            };
            for e in escalations_in(&d.node, doc, g, &d.file) {
                self.diags.push(
                    Diagnostic::at(
                        &e.file,
                        e.pos,
                        format!(
                            "guardrail: {}, and tenant `{tenant}` has no permissions boundary",
                            e.describe()
                        ),
                    )
                    .with_hint(ESCALATION_HINT),
                );
            }
        }
        for (r, pos) in attached {
            match r {
                PolicyRef::Repo(name) => {
                    for e in self.repo_escalations.get(name).into_iter().flatten() {
                        self.err_hint(
                            *pos,
                            format!(
                                "guardrail: tenant `{tenant}` has no permissions boundary, and `{name}` ({}:{}:{}) {}",
                                e.file,
                                e.pos.line,
                                e.pos.column,
                                e.describe()
                            ),
                            ESCALATION_HINT,
                        );
                    }
                }
                PolicyRef::Arn(arn) => {
                    // A denied ARN has its own error already.
                    if g.denied_policy_arns
                        .iter()
                        .any(|p| policy::glob_match(p, arn))
                    {
                        continue;
                    }
                    if let Some(p) = g
                        .escalation_policy_arns
                        .iter()
                        .find(|p| policy::glob_match(p, arn))
                    {
                        self.err_hint(
                            *pos,
                            format!("guardrail: tenant `{tenant}` has no permissions boundary, and `{arn}` grants privilege-escalation actions (`{p}` in [guardrails] escalation_policy_arns)"),
                            "give the tenant a permissions boundary (spec.iam.permissionsBoundary, or [iam] permissions_boundary in kftenant.toml), or attach a policy that grants only what it needs",
                        );
                    }
                }
            }
        }
    }

    fn inline_policies(
        &mut self,
        node: &Node,
        key_pos: Pos,
        t: &mut Tenant,
        kept: &mut Vec<(String, InlineDocument)>,
    ) {
        let Value::Seq(items) = &node.value else {
            if node.value != Value::Null {
                self.err(
                    node.pos,
                    format!(
                        "spec.iam.inlinePolicies must be a list, found {}",
                        node.type_name()
                    ),
                );
            }
            return;
        };
        let mut total = 0;
        let mut seen = BTreeSet::new();
        for item in items {
            let Some(entries) = self.mapping(item, "an inline policy", fields::INLINE) else {
                continue;
            };
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(key, _)| key.as_str() == Some(k))
                    .map(|(_, v)| v)
            };
            let name = match get("name") {
                Some(n) => self.string(n, "inline policy name").map(|s| (s, n.pos)),
                None => {
                    self.err(item.pos, "an inline policy needs a name");
                    None
                }
            };
            let doc = match (get("file"), get("document")) {
                (Some(_), Some(d)) => {
                    self.err(
                        d.pos,
                        "an inline policy has either `file` or `document`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.err_hint(item.pos, "an inline policy needs `file` or `document`", "file: policies-inline/my-policy.json, or document: {Version: ..., Statement: [...]}");
                    None
                }
                (Some(f), None) => self.inline_file(f),
                (None, Some(d)) => {
                    let before = self.diags.len();
                    policy::check_grammar(d, PolicyKind::Identity, self.file, self.diags);
                    let doc = d.to_json();
                    if let Some(c) = self.config {
                        check_denied_actions(
                            d,
                            &doc,
                            &c.guardrails.denied_actions,
                            self.file,
                            self.diags,
                        );
                    }
                    (self.diags.len() == before).then(|| InlineDocument {
                        file: self.file.to_string(),
                        node: d.clone(),
                        doc,
                    })
                }
            };
            if let Some((name, pos)) = name {
                if let Some(msg) = check_policy_name(&name) {
                    self.err(pos, format!("inline policy name `{name}`: {msg}"));
                } else if !seen.insert(name.clone()) {
                    self.err(pos, format!("inline policy `{name}` is defined twice"));
                } else if let Some(mut inline) = doc {
                    total += policy::iam_size(&inline.doc);
                    t.inline_policies
                        .insert(name.clone(), std::mem::take(&mut inline.doc));
                    kept.push((name, inline));
                }
            }
        }
        if total > INLINE_POLICIES_MAX_CHARS {
            self.err_hint(key_pos, format!("inline policies total {total} characters, over the IAM limit of {INLINE_POLICIES_MAX_CHARS} per role (whitespace not counted)"), "move some statements into a managed policy in policies/");
        }
    }

    fn inline_file(&mut self, f: &Node) -> Option<InlineDocument> {
        let path = self.string(f, "inline policy file")?;
        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
            self.err(
                f.pos,
                format!("inline policy file `{path}` must be a path inside the repository"),
            );
            return None;
        }
        match self.src.read(&path) {
            None => {
                self.err_hint(
                    f.pos,
                    format!("inline policy file `{path}` does not exist"),
                    "paths are relative to the repository root",
                );
                None
            }
            Some(Err(e)) => {
                self.err(f.pos, format!("inline policy file `{path}` {e}"));
                None
            }
            Some(Ok(text)) => {
                let (node, doc) = load_policy_text(self.src, &path, &text, self.diags)?;
                if let Some(c) = self.config {
                    let before = self.diags.len();
                    check_denied_actions(
                        &node,
                        &doc,
                        &c.guardrails.denied_actions,
                        &path,
                        self.diags,
                    );
                    if self.diags.len() != before {
                        return None;
                    }
                }
                Some(InlineDocument {
                    file: path,
                    node,
                    doc,
                })
            }
        }
    }

    /// `spec.profile`; returns what the tenant wrote under `resourceQuota`.
    fn profile(&mut self, node: &Node, t: &mut Tenant) -> Option<QuotaWritten> {
        if node.value == Value::Null {
            return None;
        }
        let entries = self.mapping(node, "spec.profile", fields::PROFILE)?;
        let mut quota = None;
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "resourceQuota" => quota = self.quota(v),
                "labels" => {
                    for (key, kn, val) in self.string_map(v, "spec.profile.labels") {
                        if key == MANAGED_BY_LABEL || key.starts_with(RESERVED_PREFIX) {
                            self.err(kn.pos, format!("label `{key}` is set by kftenant"));
                        } else if let Some(msg) = check_label_key(&key) {
                            self.err(kn.pos, format!("label `{key}`: {msg}"));
                        } else if val.len() > 63 {
                            self.err(
                                kn.pos,
                                format!("label `{key}`: value longer than 63 characters"),
                            );
                        } else {
                            t.labels.insert(key, val);
                        }
                    }
                }
                "annotations" => {
                    let mut total = 0;
                    for (key, kn, val) in self.string_map(v, "spec.profile.annotations") {
                        total += key.len() + val.len();
                        if let Some(msg) = check_label_key(&key) {
                            self.err(kn.pos, format!("annotation `{key}`: {msg}"));
                        } else {
                            t.annotations.insert(key, val);
                        }
                    }
                    if total > ANNOTATIONS_MAX_BYTES {
                        self.err_hint(
                            k.pos,
                            format!("annotations total {total} bytes, over Kubernetes' limit of {ANNOTATIONS_MAX_BYTES} per object"),
                            "the API server would refuse the Profile; keep large data out of annotations",
                        );
                    }
                }
                _ => {}
            }
        }
        quota
    }

    /// `spec.profile.resourceQuota`: what the tenant changes in the default
    /// quota, each entry checked on its own. The checks that need the merged
    /// quota are [`Cx::check_quota`]'s.
    fn quota(&mut self, node: &Node) -> Option<QuotaWritten> {
        let entries = self.mapping(node, "spec.profile.resourceQuota", fields::QUOTA)?;
        let mut w = QuotaWritten::default();
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "hard" => {
                    if v.value == Value::Null {
                        continue;
                    }
                    let Some(hard) = self.mapping(v, "spec.profile.resourceQuota.hard", &[]) else {
                        continue;
                    };
                    for (rk, rv) in hard {
                        self.quota_entry(rk, rv, &mut w);
                    }
                }
                "scopes" => {
                    let mut scopes: Vec<(String, Pos)> = Vec::new();
                    for (s, n) in self.string_list(v, "spec.profile.resourceQuota.scopes") {
                        if let Some(p) = quota::check_scope(&s) {
                            self.problem(n.pos, p);
                        } else if scopes.iter().any(|(x, _)| *x == s) {
                            self.err(n.pos, format!("quota scope `{s}` is listed twice"));
                        } else {
                            scopes.push((s, n.pos));
                        }
                    }
                    let names: Vec<&str> = scopes.iter().map(|(s, _)| s.as_str()).collect();
                    if let Some((a, b)) = quota::conflicting_scopes(&names) {
                        self.err(
                            k.pos,
                            format!("quota scopes `{a}` and `{b}` exclude each other"),
                        );
                    }
                    w.over.scopes = Some(names.iter().map(|s| s.to_string()).collect());
                    w.scopes = Some((k.pos, scopes));
                }
                _ => {}
            }
        }
        Some(w)
    }

    /// One `hard` entry: a limit, or `null` to remove the default's.
    fn quota_entry(&mut self, key: &Node, value: &Node, w: &mut QuotaWritten) {
        let name = key.scalar_text();
        if let Some(p) = quota::check_resource_name(&name) {
            self.problem(key.pos, p);
            return;
        }
        w.keys.insert(name.clone(), key.pos);
        let text = match &value.value {
            Value::Null => {
                let defaults: Vec<&str> = self
                    .default_quota
                    .map(|d| d.hard.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if defaults.contains(&name.as_str()) {
                    w.over.hard.insert(name, None);
                    return;
                }
                let hint = match (did_you_mean(&name, &defaults), defaults.is_empty()) {
                    (Some(d), _) => format!("did you mean `{d}`?"),
                    (None, true) => {
                        "kftenant.toml sets no default limits; remove this line".to_string()
                    }
                    (None, false) => format!("the default limits are {}", defaults.join(", ")),
                };
                self.err_hint(
                    key.pos,
                    format!("`{name}: null` removes a default limit, but [profile.default_resource_quota] has no `{name}`"),
                    hint,
                );
                return;
            }
            Value::Int(_) | Value::Float(_) | Value::Str(_) => value.scalar_text(),
            _ => {
                self.err_hint(
                    value.pos,
                    format!(
                        "the limit of `{name}` must be a quantity, found {}",
                        value.type_name()
                    ),
                    "for example 8, \"500m\", \"32Gi\"; or null to remove the default limit",
                );
                return;
            }
        };
        match quota::parse_value(&name, &text) {
            Ok(q) => {
                w.over.hard.insert(name, Some(q));
            }
            Err(p) => self.problem(value.pos, p),
        }
    }

    /// The checks of the merged quota that Kubernetes makes across keys:
    /// scopes against the resources they limit, and scopes without limits.
    /// A problem is reported where the tenant can fix it.
    fn check_quota(&mut self, merged: &Quota, w: &QuotaWritten) {
        const DEFAULTS: &str = "[profile.default_resource_quota]";
        match &w.scopes {
            Some((scopes_pos, scopes)) => {
                if merged.hard.is_empty() && !scopes.is_empty() {
                    self.err_hint(
                        *scopes_pos,
                        "quota scopes without any `hard` limit limit nothing",
                        "add a limit under `hard`, or remove the scopes",
                    );
                }
                for (scope, pos) in scopes {
                    for k in merged.hard.keys() {
                        if let Some(mut p) = quota::check_scope_for(scope, k) {
                            if !w.keys.contains_key(k) {
                                p.message.push_str(&format!(" (a limit from {DEFAULTS})"));
                                p.hint = Some(format!(
                                    "{}; remove the default here with `{k}: null`",
                                    p.hint.unwrap_or_default()
                                ));
                            }
                            self.problem(*pos, p);
                        }
                    }
                }
            }
            None => {
                for scope in &merged.scopes {
                    for (k, pos) in &w.keys {
                        if !merged.hard.contains_key(k) {
                            continue;
                        }
                        if let Some(mut p) = quota::check_scope_for(scope, k) {
                            p.message.push_str(&format!(" (a scope from {DEFAULTS})"));
                            p.hint = Some(format!(
                                "{}; give this tenant its own `scopes` (`[]` for none)",
                                p.hint.unwrap_or_default()
                            ));
                            self.problem(*pos, p);
                        }
                    }
                }
            }
        }
    }

    fn problem(&mut self, pos: Pos, p: quota::Problem) {
        let mut d = Diagnostic::at(self.file, pos, p.message);
        if let Some(h) = p.hint {
            d = d.with_hint(h);
        }
        self.diags.push(d);
    }
}

/// What a tenant wrote under `resourceQuota`, and where.
#[derive(Default)]
struct QuotaWritten {
    /// The changes to the default quota.
    over: QuotaOverride,
    /// Where each valid `hard` key is (set or removed).
    keys: BTreeMap<String, Pos>,
    /// The `scopes` key and each valid scope with its position, when written.
    scopes: Option<(Pos, Vec<(String, Pos)>)>,
}

/// `None` when `user` can be a member: an email address (what Kubeflow's
/// dashboards and KFAM expect), or at least a name without spaces or control
/// characters.
pub fn check_user(user: &str) -> Option<String> {
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must be a user id without spaces".into());
    }
    if user.len() > 254 {
        return Some("is longer than 254 characters".into());
    }
    let Some((local, domain)) = user.rsplit_once('@') else {
        return Some("is not an email address".into());
    };
    let labels_ok = domain.split('.').count() >= 2
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if local.is_empty() || local.contains('@') || !labels_ok {
        return Some("is not an email address".into());
    }
    None
}

/// `(path, name)` of a customer-managed policy ARN of `config`'s account
/// (partition and account id), e.g. `("/", "s3-access")`.
fn repo_policy_at<'a>(config: &Config, arn: &'a str) -> Option<(&'a str, &'a str)> {
    let prefix = format!(
        "arn:{}:iam::{}:policy",
        config.partition(),
        config.cluster.account_id
    );
    let resource = arn.strip_prefix(&prefix)?;
    let cut = resource.rfind('/')? + 1;
    let (path, name) = resource.split_at(cut);
    check_iam_path(path).is_none().then_some((path, name))
}

pub(super) fn placeholder_tenant(name: String, file: &str) -> Tenant {
    Tenant {
        name,
        file: file.to_string(),
        owner: String::new(),
        managed_policies: Vec::new(),
        inline_policies: BTreeMap::new(),
        permissions_boundary: None,
        max_session_duration: None,
        tags: BTreeMap::new(),
        service_accounts: Vec::new(),
        resource_quota: Quota::default(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        members: Vec::new(),
        role_name: None,
        role_path: None,
        adopt: Adopt::default(),
    }
}

/// `None` when `key` and `val` make a tag IAM and kftenant accept on a role; otherwise what is wrong.
pub fn check_tag(key: &str, val: &str) -> Option<String> {
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Some(format!(
            "tag key `{key}`: the `aws:` prefix is reserved by AWS"
        ));
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Some(format!(
            "tag key `{key}`: the `{RESERVED_PREFIX}` prefix is reserved for kftenant's ownership tags"
        ));
    }
    if key.is_empty() || key.chars().count() > 128 {
        return Some(format!("tag key `{key}` must be 1 to 128 characters"));
    }
    if val.chars().count() > 256 {
        return Some(format!(
            "value of tag `{key}` is longer than 256 characters"
        ));
    }
    let ok = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    if !key.chars().all(ok) || !val.chars().all(ok) {
        return Some(format!(
            "tag `{key}` has characters IAM does not allow (letters, digits, spaces and _.:/=+-@)"
        ));
    }
    None
}
