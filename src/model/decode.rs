//! The hand-written, positioned decoder of Tenant documents: every problem
//! is recorded with the line and column of the node it is about, and decoding
//! goes on, so one run reports every mistake of a file.

use super::{API_VERSION, INLINE_POLICIES_MAX_CHARS};
use super::{Loaded, PolicyRef, Reader, Tenant, check_denied_actions, load_policy_text};
use crate::config::{self, Config, ResourceQuotaSpec};
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::kubeflow::DEFAULT_SERVICE_ACCOUNT;
use crate::names::{
    check_dns_label, check_dns_subdomain, check_label_key, check_policy_arn, check_policy_name,
};
use crate::ownership::{MANAGED_BY_LABEL, RESERVED_PREFIX, ROLE_OWNERSHIP_TAGS};
use crate::policy::{self, PolicyKind};
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
    pub(super) policy_names: &'a BTreeSet<String>,
}

/// Field names accepted by the decoder, kept beside the serde types so a test
/// can check they agree with the generated schema.
pub mod fields {
    /// Top level of a Tenant document.
    pub const DOCUMENT: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
    /// `metadata`.
    pub const METADATA: &[&str] = &["name"];
    /// `spec`.
    pub const SPEC: &[&str] = &["owner", "iam", "profile"];
    /// `spec.iam`.
    pub const IAM: &[&str] = &[
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
            });
        }
        let mut tenant = spec?;
        tenant.name = name?;
        Some(Loaded { tenant, name_pos })
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
        if let Some(p) = get("profile") {
            self.profile(p, &mut t);
        }
        Some(t)
    }

    fn iam(&mut self, node: &Node, tenant: &str, t: &mut Tenant) {
        if node.value == Value::Null {
            return;
        }
        let Some(entries) = self.mapping(node, "spec.iam", fields::IAM) else {
            return;
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
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
                            t.managed_policies.push(r);
                        }
                    }
                }
                "inlinePolicies" => self.inline_policies(v, k.pos, t),
                "permissionsBoundary" => {
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

    fn inline_policies(&mut self, node: &Node, key_pos: Pos, t: &mut Tenant) {
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
                    (self.diags.len() == before).then_some(doc)
                }
            };
            if let Some((name, pos)) = name {
                if let Some(msg) = check_policy_name(&name) {
                    self.err(pos, format!("inline policy name `{name}`: {msg}"));
                } else if !seen.insert(name.clone()) {
                    self.err(pos, format!("inline policy `{name}` is defined twice"));
                } else if let Some(doc) = doc {
                    total += policy::iam_size(&doc);
                    t.inline_policies.insert(name, doc);
                }
            }
        }
        if total > INLINE_POLICIES_MAX_CHARS {
            self.err_hint(key_pos, format!("inline policies total {total} characters, over the IAM limit of {INLINE_POLICIES_MAX_CHARS} per role (whitespace not counted)"), "move some statements into a managed policy in policies/");
        }
    }

    fn inline_file(&mut self, f: &Node) -> Option<Json> {
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
                Some(doc)
            }
        }
    }

    fn profile(&mut self, node: &Node, t: &mut Tenant) {
        if node.value == Value::Null {
            return;
        }
        let Some(entries) = self.mapping(node, "spec.profile", fields::PROFILE) else {
            return;
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "resourceQuota" => t.resource_quota = self.quota(v),
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
    }

    fn quota(&mut self, node: &Node) -> Option<ResourceQuotaSpec> {
        let entries = self.mapping(node, "spec.profile.resourceQuota", fields::QUOTA)?;
        let mut q = ResourceQuotaSpec {
            hard: BTreeMap::new(),
            scopes: Vec::new(),
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "hard" => {
                    let Some(hard) = self.mapping(v, "spec.profile.resourceQuota.hard", &[]) else {
                        continue;
                    };
                    for (rk, rv) in hard {
                        let q_val = match &rv.value {
                            Value::Int(i) => i64::try_from(*i).ok().map(config::Quantity::Int),
                            Value::Str(s) if is_quantity(s) => {
                                Some(config::Quantity::Str(s.clone()))
                            }
                            Value::Float(f) => Some(config::Quantity::Str(f.to_string())),
                            _ => None,
                        };
                        match q_val {
                            Some(qv) => {
                                q.hard.insert(rk.scalar_text(), qv);
                            }
                            None => self.err_hint(
                                rv.pos,
                                format!("`{}` is not a Kubernetes quantity", rv.scalar_text()),
                                "for example 8, \"500m\", \"32Gi\"",
                            ),
                        }
                    }
                }
                "scopes" => {
                    q.scopes = self
                        .string_list(v, "resourceQuota.scopes")
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                }
                _ => {}
            }
        }
        Some(q)
    }
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
        resource_quota: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

/// Checks that span tenants: duplicates, role name collisions and lengths, boundaries.
fn check_tag(key: &str, val: &str) -> Option<String> {
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

fn is_quantity(s: &str) -> bool {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    !num.is_empty()
        && num.parse::<f64>().is_ok()
        && [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix)
}
