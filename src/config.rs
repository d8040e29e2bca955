//! `kftenant.toml`: the cluster-wide settings at the root of the tenant repository.
//!
//! This module owns the file's types (which also generate its JSON Schema),
//! its defaults, and its validation. It does no I/O: the text comes in.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::kubeflow::{DEFAULT_SERVICE_ACCOUNT, service_account_subject};
use crate::names::{self, Account};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

/// The file name of the repository configuration.
pub const CONFIG_FILE: &str = "kftenant.toml";

/// The whole `kftenant.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The EKS cluster this repository describes.
    pub cluster: ClusterConfig,
    /// How tenant IAM roles are named and shaped.
    #[serde(default)]
    pub iam: IamConfig,
    /// Defaults for the Kubeflow Profiles.
    #[serde(default)]
    pub profile: ProfileConfig,
    /// Rules every tenant must follow; a violation fails validation.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Deleting tenants that were removed from git.
    #[serde(default)]
    pub prune: PruneConfig,
    /// The text the config was read from, to locate keys in messages.
    #[serde(skip)]
    #[schemars(skip)]
    pub text: String,
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// EKS cluster name; used in role names and the `kftenant.io/cluster` tag.
    pub name: String,
    /// The 12-digit AWS account id that holds the roles.
    pub account_id: String,
    /// AWS region of the cluster, e.g. `us-west-2`.
    pub region: String,
    /// The cluster's OIDC issuer without `https://`,
    /// e.g. `oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E`.
    pub oidc_issuer: String,
}

/// `[iam]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IamConfig {
    /// Role name template; placeholders `{tenant}` and `{cluster}`.
    pub role_name_template: String,
    /// IAM path of every role and repo policy kftenant creates.
    pub role_path: String,
    /// Permissions boundary (policy ARN or repo policy name) for tenants that name none.
    pub permissions_boundary: Option<String>,
    /// Maximum session duration in seconds (3600 to 43200).
    pub max_session_duration: u32,
}

impl Default for IamConfig {
    fn default() -> Self {
        IamConfig {
            role_name_template: "{tenant}-{cluster}-role".into(),
            role_path: "/kftenant/".into(),
            permissions_boundary: None,
            max_session_duration: 3600,
        }
    }
}

/// `[profile]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// Resource quota for tenants that set none.
    pub default_resource_quota: Option<ResourceQuotaSpec>,
    /// `annotateOnly` of the `AwsIamForServiceAccount` plugin: when true the
    /// Kubeflow controller only annotates the service account and leaves the
    /// role's trust policy to kftenant.
    pub annotate_only: bool,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            default_resource_quota: None,
            annotate_only: true,
        }
    }
}

/// A Kubernetes `ResourceQuotaSpec` (the subset Profiles use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceQuotaSpec {
    /// Resource name to quantity, e.g. `cpu = "8"`, `"requests.nvidia.com/gpu" = 2`.
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
    /// Quota scopes, e.g. `NotTerminating`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A Kubernetes quantity: an integer or a string such as `32Gi`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A plain integer.
    Int(i64),
    /// A quantity string such as `500m` or `32Gi`.
    Str(String),
}

/// `[guardrails]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    /// Globs of managed policy ARNs tenants may attach; empty allows any.
    /// Repo policies are always allowed (they are reviewed in the repository).
    pub allowed_policy_arns: Vec<String>,
    /// Globs of managed policy ARNs tenants may never attach.
    pub denied_policy_arns: Vec<String>,
    /// Action patterns no `Allow` statement of a tenant or repo policy may grant in
    /// full (`*` covers `iam:*`; `NotAction` in an `Allow` grants what it does not exclude).
    pub denied_actions: Vec<String>,
    /// Every role must have a permissions boundary.
    pub require_boundary: bool,
    /// At most this many managed policies per role (AWS default quota 10, up to 20).
    pub max_managed_policies_per_role: usize,
    /// Maximum trust policy length in characters (AWS default quota 2048, up to 4096).
    pub trust_policy_max_chars: usize,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            allowed_policy_arns: Vec::new(),
            denied_policy_arns: vec![
                "arn:aws:iam::aws:policy/AdministratorAccess".into(),
                "arn:aws:iam::aws:policy/IAMFullAccess".into(),
            ],
            denied_actions: vec!["*".into(), "iam:*".into()],
            require_boundary: false,
            max_managed_policies_per_role: 10,
            trust_policy_max_chars: 2048,
        }
    }
}

/// `[prune]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PruneConfig {
    /// Delete managed tenants that are no longer in git and are listed in
    /// `decommissioned`. When false nothing is deleted, only reported.
    pub enabled: bool,
    /// Hold back every deletion when more tenants than this would be deleted
    /// at once (raise it in the same pull request, or `--allow-mass-delete`).
    pub max_deletions: usize,
    /// Tenants that may be deleted: their role, their Profile, and with it
    /// their namespace and everything in it. A tenant removed from `tenants/`
    /// but not listed here is held back (reported, never deleted), so a moved
    /// or lost file never deletes a namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decommissioned: Vec<String>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            enabled: true,
            max_deletions: 5,
            decommissioned: Vec::new(),
        }
    }
}

impl Config {
    /// AWS partition of the configured region.
    pub fn partition(&self) -> &'static str {
        names::partition_of(&self.cluster.region)
    }

    /// The account that holds the roles, in its partition.
    pub fn account(&self) -> Account<'_> {
        Account {
            partition: self.partition(),
            id: &self.cluster.account_id,
        }
    }

    /// ARN of the cluster's IAM OIDC provider.
    pub fn oidc_provider_arn(&self) -> String {
        self.account().oidc_provider_arn(&self.cluster.oidc_issuer)
    }

    /// The role name for `tenant`, from the template.
    pub fn role_name(&self, tenant: &str) -> String {
        self.iam
            .role_name_template
            .replace("{tenant}", tenant)
            .replace("{cluster}", &self.cluster.name)
    }

    /// The ARN of a tenant's role.
    pub fn role_arn(&self, tenant: &str) -> String {
        self.account()
            .role_arn(&self.iam.role_path, &self.role_name(tenant))
    }

    /// The ARN of a customer-managed policy kftenant creates from the repository.
    pub fn repo_policy_arn(&self, name: &str) -> String {
        self.account().policy_arn(&self.iam.role_path, name)
    }

    /// The trust policy of a tenant role: one statement, in exactly the shape the
    /// Kubeflow profile controller looks for (`Statement[0]`, `StringEquals` on
    /// `aud` and a list of `sub`s), so it never rewrites it. `default-editor` is
    /// always trusted, then `extra_service_accounts` in order.
    pub fn trust_policy(&self, tenant: &str, extra_service_accounts: &[String]) -> Json {
        let issuer = &self.cluster.oidc_issuer;
        let subs: Vec<String> = std::iter::once(DEFAULT_SERVICE_ACCOUNT)
            .chain(extra_service_accounts.iter().map(String::as_str))
            .map(|sa| service_account_subject(tenant, sa))
            .collect();
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": self.oidc_provider_arn()},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{issuer}:aud"): "sts.amazonaws.com",
                    format!("{issuer}:sub"): subs,
                }}
            }]
        })
    }
}

/// Parses and validates `kftenant.toml`. Every problem is recorded in `diags`;
/// the config is returned whenever it could be decoded.
///
/// A byte-order mark at the start is skipped. TOML's specification does not
/// mention one, but editors on Windows write it, the `toml` parser skips it,
/// and it cannot mean anything else; positions are counted without it.
pub fn load(text: &str, diags: &mut Diagnostics) -> Option<Config> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Syntax, unknown keys, missing keys and wrong types first, every one of
    // them with its position (serde would stop at the first).
    if !shape::check(text, diags) {
        return None;
    }
    let config: Config = match toml::from_str(text) {
        Ok(c) => Config {
            text: text.to_string(),
            ..c
        },
        Err(e) => {
            let pos = e
                .span()
                .map_or(Pos::new(1, 1), |s| offset_to_pos(text, s.start));
            diags.push(Diagnostic::at(
                CONFIG_FILE,
                pos,
                e.message().trim().to_string(),
            ));
            return None;
        }
    };
    // Semantic problems are recorded but the config is still returned, so
    // tenant checks that depend on it (guardrails, role names) run too and
    // every problem shows in one run. The repository is rejected either way.
    check(&config, text, diags);
    Some(config)
}

/// Byte offset to 1-based line and column.
pub fn offset_to_pos(text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos::new(line, col)
}

/// Where `key` is set inside `[section]`, for messages about its value: the
/// key's span from the TOML parser, so dotted keys (`iam.role_path = ...`) and
/// inline tables (`iam = { role_path = ... }`) are found as well as
/// `[iam]` sections. The section's own position when the key is not written
/// (a default), and 1:1 when the text does not parse.
pub fn locate(text: &str, section: &str, key: &str) -> Pos {
    Locator::new(text).locate(section, key)
}

/// [`locate`] for many keys of one text, parsed once: a config can have a
/// problem per entry of a list, and parsing a megabyte again for each would
/// take hours.
struct Locator<'t> {
    text: &'t str,
    root: Option<toml::de::DeTable<'t>>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        let root = toml::de::DeTable::parse(text)
            .ok()
            .map(toml::Spanned::into_inner);
        Locator { text, root }
    }

    fn locate(&self, section: &str, key: &str) -> Pos {
        let Some(root) = &self.root else {
            return Pos::new(1, 1);
        };
        locate_in(self.text, root, section, key)
    }
}

fn locate_in(text: &str, root: &toml::de::DeTable<'_>, section: &str, key: &str) -> Pos {
    fn entry<'t, 'i>(
        table: &'t toml::de::DeTable<'i>,
        name: &str,
    ) -> Option<(std::ops::Range<usize>, &'t toml::de::DeValue<'i>)> {
        table
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(k, v)| (k.span(), v.get_ref()))
    }
    let Some((section_span, toml::de::DeValue::Table(table))) = entry(root, section) else {
        return Pos::new(1, 1);
    };
    let span = entry(table, key).map_or(section_span, |(span, _)| span);
    offset_to_pos(text, span.start)
}

fn check(c: &Config, text: &str, diags: &mut Diagnostics) {
    let locator = Locator::new(text);
    let mut err = |section: &str, key: &str, msg: String, hint: Option<&str>| {
        let mut d = Diagnostic::at(CONFIG_FILE, locator.locate(section, key), msg);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        diags.push(d);
    };
    let cl = &c.cluster;
    let name_ok = !cl.name.is_empty()
        && cl.name.len() <= 100
        && cl.name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && cl
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !name_ok {
        err(
            "cluster",
            "name",
            format!("cluster name `{}` is not a valid EKS cluster name", cl.name),
            Some(
                "use letters, digits, `-` and `_`, starting with a letter or digit, at most 100 characters",
            ),
        );
    }
    if cl.account_id.len() != 12 || !cl.account_id.chars().all(|ch| ch.is_ascii_digit()) {
        err(
            "cluster",
            "account_id",
            format!(
                "account_id `{}` is not a 12-digit AWS account id",
                cl.account_id
            ),
            Some("quote it as a string so leading zeros are kept: account_id = \"012345678901\""),
        );
    }
    let region_ok = {
        let parts: Vec<&str> = cl.region.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|p| p.chars().all(|ch| ch.is_ascii_digit()))
    };
    if !region_ok {
        err(
            "cluster",
            "region",
            format!("region `{}` is not an AWS region name", cl.region),
            Some("for example `us-west-2`"),
        );
    }
    let issuer = &cl.oidc_issuer;
    if issuer.contains("://") {
        err(
            "cluster",
            "oidc_issuer",
            format!("oidc_issuer `{issuer}` must not include a scheme"),
            Some("drop `https://`: IAM condition keys use the bare host and path"),
        );
    } else if issuer.ends_with('/') || !issuer.contains('/') || issuer.contains(char::is_whitespace)
    {
        err(
            "cluster",
            "oidc_issuer",
            format!("oidc_issuer `{issuer}` is not an OIDC issuer host and path"),
            Some(
                "for example `oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E` (from `aws eks describe-cluster --query cluster.identity.oidc.issuer`)",
            ),
        );
    }
    let t = &c.iam.role_name_template;
    if !t.contains("{tenant}") {
        err(
            "iam",
            "role_name_template",
            format!("role_name_template `{t}` must contain `{{tenant}}`"),
            Some("otherwise every tenant gets the same role"),
        );
    }
    let stripped = t.replace("{tenant}", "").replace("{cluster}", "");
    if stripped.contains('{') || stripped.contains('}') {
        err(
            "iam",
            "role_name_template",
            format!("role_name_template `{t}` has an unknown placeholder"),
            Some("only `{tenant}` and `{cluster}` are known"),
        );
    } else if let Some(msg) = names::check_iam_name_chars(&stripped) {
        err(
            "iam",
            "role_name_template",
            format!("role_name_template `{t}`: {msg}"),
            None,
        );
    }
    if let Some(msg) = names::check_iam_path(&c.iam.role_path) {
        err(
            "iam",
            "role_path",
            msg,
            Some("a path starts and ends with `/`, e.g. `/kftenant/`"),
        );
    }
    if let Some(b) = &c.iam.permissions_boundary {
        if b.starts_with("arn:") {
            if let Some(msg) = names::check_policy_arn(b) {
                err("iam", "permissions_boundary", msg, None);
            }
        }
    }
    if !(3600..=43200).contains(&c.iam.max_session_duration) {
        err(
            "iam",
            "max_session_duration",
            format!(
                "max_session_duration {} is outside 3600..=43200 seconds",
                c.iam.max_session_duration
            ),
            None,
        );
    }
    let g = &c.guardrails;
    if !(1..=20).contains(&g.max_managed_policies_per_role) {
        err(
            "guardrails",
            "max_managed_policies_per_role",
            format!(
                "max_managed_policies_per_role {} is outside 1..=20",
                g.max_managed_policies_per_role
            ),
            Some("AWS allows 10 by default; a quota increase raises it to at most 20"),
        );
    }
    if !(1..=4096).contains(&g.trust_policy_max_chars) {
        err(
            "guardrails",
            "trust_policy_max_chars",
            format!(
                "trust_policy_max_chars {} is outside 1..=4096",
                g.trust_policy_max_chars
            ),
            Some("AWS allows 2048 by default; a quota increase raises it to at most 4096"),
        );
    }
    for (key, list) in [
        ("allowed_policy_arns", &g.allowed_policy_arns),
        ("denied_policy_arns", &g.denied_policy_arns),
    ] {
        for pat in list {
            if !pat.starts_with("arn:") {
                err(
                    "guardrails",
                    key,
                    format!("`{pat}` in {key} is not an ARN pattern"),
                    Some(
                        "patterns are ARNs with `*` wildcards, e.g. `arn:aws:iam::aws:policy/*ReadOnly*`",
                    ),
                );
            }
        }
    }
    for a in &g.denied_actions {
        if let Some(msg) = crate::policy::action_syntax(a) {
            err("guardrails", "denied_actions", msg, None);
        }
    }
}

/// The shape of `kftenant.toml` checked against its JSON Schema (generated
/// from [`Config`]), with the TOML parser's spans: every syntax error, unknown
/// key (with "did you mean"), missing key and value of the wrong type is
/// reported in one run, each at its place.
mod shape {
    use super::{CONFIG_FILE, Config, offset_to_pos};
    use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
    use serde_json::Value as Json;
    use toml::de::{DeTable, DeValue};

    type Spanned<T> = toml::Spanned<T>;

    /// True when the shape is right (then serde can read it).
    pub(super) fn check(text: &str, diags: &mut Diagnostics) -> bool {
        let before = diags.len();
        let (root, errors) = DeTable::parse_recoverable(text);
        for e in &errors {
            let pos = e.span().map_or(crate::diag::Pos::new(1, 1), |s| {
                offset_to_pos(text, s.start)
            });
            diags.push(Diagnostic::at(
                CONFIG_FILE,
                pos,
                format!("TOML syntax error: {}", e.message().trim()),
            ));
        }
        if !errors.is_empty() {
            return false;
        }
        let schema =
            serde_json::to_value(schemars::schema_for!(Config)).expect("schema serialises");
        let cx = Cx {
            text,
            root: &schema,
        };
        cx.table(root.get_ref(), root.span(), &schema, "", diags);
        diags.len() == before
    }

    struct Cx<'a> {
        text: &'a str,
        root: &'a Json,
    }

    impl Cx<'_> {
        fn resolve<'s>(&'s self, schema: &'s Json) -> &'s Json {
            match schema.get("$ref").and_then(Json::as_str) {
                Some(r) => r
                    .strip_prefix("#/$defs/")
                    .and_then(|name| self.root["$defs"].get(name))
                    .unwrap_or(schema),
                None => schema,
            }
        }

        fn err(
            &self,
            span: std::ops::Range<usize>,
            msg: String,
            hint: Option<String>,
            diags: &mut Diagnostics,
        ) {
            let mut d = Diagnostic::at(CONFIG_FILE, offset_to_pos(self.text, span.start), msg);
            if let Some(h) = hint {
                d = d.with_hint(h);
            }
            diags.push(d);
        }

        /// The JSON types a schema allows (`anyOf` alternatives included).
        fn types(&self, schema: &Json) -> Vec<String> {
            let schema = self.resolve(schema);
            if let Some(alts) = schema
                .get("anyOf")
                .or_else(|| schema.get("oneOf"))
                .and_then(Json::as_array)
            {
                return alts.iter().flat_map(|a| self.types(a)).collect();
            }
            match schema.get("type") {
                Some(Json::String(t)) => vec![t.clone()],
                Some(Json::Array(ts)) => ts
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            }
        }

        fn table(
            &self,
            table: &DeTable<'_>,
            span: std::ops::Range<usize>,
            schema: &Json,
            path: &str,
            diags: &mut Diagnostics,
        ) {
            let schema = self.resolve(schema);
            let props = schema.get("properties").and_then(Json::as_object);
            let known: Vec<&str> = props
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            for (k, v) in table.iter() {
                let key = k.get_ref().as_ref();
                let full = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                let sub = props
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                match sub {
                    Some(sub) => self.value(v, sub, &full, diags),
                    None => {
                        let hint = match did_you_mean(key, &known) {
                            Some(m) => format!("did you mean `{m}`?"),
                            None => format!("known keys here: {}", known.join(", ")),
                        };
                        let place = if path.is_empty() {
                            "at the top level".to_string()
                        } else {
                            format!("in [{path}]")
                        };
                        self.err(
                            k.span(),
                            format!("unknown key `{key}` {place}"),
                            Some(hint),
                            diags,
                        );
                    }
                }
            }
            for req in schema
                .get("required")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(req) = req.as_str() else { continue };
                if !table.iter().any(|(k, _)| k.get_ref().as_ref() == req) {
                    let (msg, at) = if path.is_empty() {
                        (format!("missing [{req}]"), 0..0)
                    } else {
                        (format!("missing `{req}` in [{path}]"), span.clone())
                    };
                    self.err(at, msg, None, diags);
                }
            }
        }

        fn value(
            &self,
            v: &Spanned<DeValue<'_>>,
            schema: &Json,
            path: &str,
            diags: &mut Diagnostics,
        ) {
            let types = self.types(schema);
            let found = match v.get_ref() {
                DeValue::String(_) => "string",
                DeValue::Integer(_) => "integer",
                DeValue::Float(_) => "number",
                DeValue::Boolean(_) => "boolean",
                DeValue::Datetime(_) => "datetime",
                DeValue::Array(_) => "array",
                DeValue::Table(_) => "object",
            };
            let fits = types.is_empty()
                || types
                    .iter()
                    .any(|t| t == found || (t == "number" && found == "integer"));
            if !fits {
                let wanted = types
                    .iter()
                    .filter(|t| *t != "null")
                    .map(|t| match t.as_str() {
                        "object" => "a table",
                        "array" => "a list",
                        "string" => "a string",
                        "integer" => "a whole number",
                        "number" => "a number",
                        "boolean" => "true or false",
                        other => other,
                    })
                    .collect::<Vec<_>>()
                    .join(" or ");
                let raw = &self.text[v.span()];
                let hint = match (types.iter().any(|t| t == "string"), found) {
                    (true, "integer" | "number" | "boolean") => Some(format!(
                        "quote it: {} = \"{raw}\"{}",
                        path.rsplit('.').next().unwrap_or(path),
                        if path.ends_with("account_id") {
                            " (as a string, an account id keeps its leading zeros)"
                        } else {
                            ""
                        }
                    )),
                    (false, "string") if types.iter().any(|t| t == "integer" || t == "boolean") => {
                        Some(format!("remove the quotes: {}", raw.trim_matches('"')))
                    }
                    _ => None,
                };
                let found_words = match found {
                    "object" => "a table",
                    "array" => "a list",
                    "string" => "a string",
                    "integer" | "number" => "a number",
                    "boolean" => "a boolean",
                    _ => "a date",
                };
                self.err(
                    v.span(),
                    format!("`{path}` must be {wanted}, found {found_words}"),
                    hint,
                    diags,
                );
                return;
            }
            let schema = self.resolve(schema);
            match v.get_ref() {
                DeValue::Table(t) => {
                    // An object alternative of an anyOf: check against it.
                    let obj = schema
                        .get("anyOf")
                        .and_then(Json::as_array)
                        .and_then(|alts| {
                            alts.iter()
                                .find(|a| self.types(a).iter().any(|t| t == "object"))
                        })
                        .unwrap_or(schema);
                    self.table(t, v.span(), obj, path, diags);
                }
                DeValue::Array(items) => {
                    if let Some(item) = schema.get("items") {
                        for (i, it) in items.iter().enumerate() {
                            self.value(it, item, &format!("{path}[{i}]"), diags);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "kubeflow-prod"
account_id = "123456789012"
region = "us-west-2"
oidc_issuer = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE"
"#;

    fn errors(text: &str) -> Vec<String> {
        let mut d = Diagnostics::default();
        let _ = load(text, &mut d);
        d.sorted().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_follow_the_kubeflow_guide() {
        let mut d = Diagnostics::default();
        let c = load(GOOD, &mut d).unwrap();
        assert_eq!(c.role_name("team-a"), "team-a-kubeflow-prod-role");
        assert_eq!(c.iam.role_path, "/kftenant/");
        assert!(c.profile.annotate_only);
        assert_eq!(
            c.oidc_provider_arn(),
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE"
        );
        assert_eq!(
            c.repo_policy_arn("s3"),
            "arn:aws:iam::123456789012:policy/kftenant/s3"
        );
    }

    #[test]
    fn syntax_and_unknown_fields_have_positions() {
        let e = errors("[cluster]\nname = \"x\"\nnmae = 1\n");
        assert_eq!(
            e,
            vec![
                "kftenant.toml:1:1: missing `account_id` in [cluster]",
                "kftenant.toml:1:1: missing `oidc_issuer` in [cluster]",
                "kftenant.toml:1:1: missing `region` in [cluster]",
                "kftenant.toml:3:1: unknown key `nmae` in [cluster]\n  hint: did you mean `name`?",
            ]
        );
        let e = errors("[cluster\n");
        assert!(e[0].starts_with("kftenant.toml:1:"), "{e:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_its_key() {
        let text = "[cluster]\nname = \"prod\"\naccount_id = \"1234\"\nregion = \"west\"\noidc_issuer = \"https://oidc.example/id/X\"\n\n[iam]\nrole_name_template = \"{team}-role\"\nrole_path = \"kftenant\"\nmax_session_duration = 60\n\n[guardrails]\ntrust_policy_max_chars = 5000\n";
        let e = errors(text);
        let lines: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            lines,
            vec![
                "kftenant.toml:3:1",
                "kftenant.toml:4:1",
                "kftenant.toml:5:1",
                "kftenant.toml:8:1",
                "kftenant.toml:8:1",
                "kftenant.toml:9:1",
                "kftenant.toml:10:1",
                "kftenant.toml:13:1"
            ],
            "{e:#?}"
        );
        assert!(e[4].contains("unknown placeholder") || e[3].contains("unknown placeholder"));
    }

    #[test]
    fn every_shape_error_is_reported_in_one_run_with_hints() {
        let text = "[cluster]\nname = \"prod\"\naccount_id = 123456789012\noidc_issuer = \"oidc.example/id/X\"\n\n[iam]\nrole_paht = \"/x/\"\nmax_session_duration = \"3600\"\n\n[prune]\nmax_deletions = \"5\"\n";
        let e = errors(text);
        assert_eq!(
            e,
            vec![
                "kftenant.toml:1:1: missing `region` in [cluster]",
                "kftenant.toml:3:14: `cluster.account_id` must be a string, found a number\n  hint: quote it: account_id = \"123456789012\" (as a string, an account id keeps its leading zeros)",
                "kftenant.toml:7:1: unknown key `role_paht` in [iam]\n  hint: did you mean `role_path`?",
                "kftenant.toml:8:24: `iam.max_session_duration` must be a whole number, found a string\n  hint: remove the quotes: 3600",
                "kftenant.toml:11:17: `prune.max_deletions` must be a whole number, found a string\n  hint: remove the quotes: 5",
            ]
        );
        // Dotted keys and inline tables are checked the same way.
        let e = errors(
            "cluster = { name = \"p\", account_id = \"123456789012\", region = \"us-west-2\", oidc_issuer = \"o.example/id/X\" }\niam.role_path = 7\n",
        );
        assert_eq!(
            e,
            vec![
                "kftenant.toml:2:17: `iam.role_path` must be a string, found a number\n  hint: quote it: role_path = \"7\""
            ]
        );
        let e = errors("[cluster\nname = 1\n");
        assert!(e[0].starts_with("kftenant.toml:1:"), "{e:?}");
        assert!(e[0].contains("TOML syntax error"), "{e:?}");
    }

    #[test]
    fn offsets_map_to_lines() {
        assert_eq!(offset_to_pos("ab\ncd", 4), Pos::new(2, 2));
        assert_eq!(names::partition_of("cn-north-1"), "aws-cn");
    }
}
