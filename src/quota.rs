//! Resource quotas: what Kubernetes accepts in the `ResourceQuota` the
//! Kubeflow controller makes from a Profile's `spec.resourceQuotaSpec`
//! (`kf-resource-quota`), how a tenant's quota is merged over the defaults
//! of `kftenant.toml`, and how a live `resourceQuotaSpec` is compared with
//! the desired one.
//!
//! The rules are Kubernetes v1.36.3's (`pkg/apis/core/validation`
//! `ValidateResourceQuotaSpec`, `pkg/apis/core/helper`): an invalid quota
//! makes the controller's reconcile fail on every pass, so kftenant refuses
//! it before applying. Where Kubernetes accepts a name that no quota counts
//! (`nvidia.com/gpu` without `requests.`, a storage-class quota on an unknown
//! resource) kftenant refuses it too: it is a typo that would silently limit
//! nothing. Positions are the callers' business: this module says what is
//! wrong and how to fix it.
//!
//! A pure leaf beside [`crate::quantity`]: no I/O, no file formats.

use crate::diag::did_you_mean;
use crate::names::check_label_key;
use crate::quantity::{Adjustment, ParseError, Quantity};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};

/// Resource names without a `/` that a quota may limit (`standardQuotaResources`).
pub const STANDARD_RESOURCES: [&str; 19] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Quota scopes (`standardResourceQuotaScopes` and CrossNamespacePodAffinity).
pub const SCOPES: [&str; 7] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Standard resources counted in whole numbers (`integerResources`).
const INTEGER_RESOURCES: [&str; 9] = [
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// What the PVC evaluator counts per storage class.
const STORAGE_CLASS_RESOURCES: [&str; 2] = ["requests.storage", "persistentvolumeclaims"];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io";
const DEVICE_CLASS_SUFFIX: &str = ".deviceclass.resource.k8s.io";
const HUGEPAGES: &str = "hugepages-";
const REQUESTS_HUGEPAGES: &str = "requests.hugepages-";

/// One thing wrong with a quota, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl Problem {
    fn new(message: impl Into<String>, hint: Option<String>) -> Problem {
        Problem {
            message: message.into(),
            hint,
        }
    }
}

fn standard(name: &str) -> bool {
    STANDARD_RESOURCES.contains(&name)
        || name.starts_with(HUGEPAGES)
        || name.starts_with(REQUESTS_HUGEPAGES)
}

/// `helper.IsExtendedResourceName`: outside `kubernetes.io/`, not a
/// `requests.` name, and a qualified name once `requests.` is put in front.
fn extended(name: &str) -> bool {
    name.contains('/')
        && !name.contains("kubernetes.io/")
        && !name.starts_with("requests.")
        && check_label_key(&format!("requests.{name}")).is_none()
}

/// Checks a `hard` key: Kubernetes' `ValidateResourceQuotaResourceName`, plus
/// the names it accepts that no quota evaluator counts.
pub fn check_resource_name(name: &str) -> Option<Problem> {
    if let Some(msg) = check_label_key(name) {
        return Some(Problem::new(
            format!("`{name}` is not a resource name: {msg}"),
            Some("for example `cpu`, `requests.memory`, `requests.nvidia.com/gpu`, `count/jobs.batch`".into()),
        ));
    }
    let Some((prefix, resource)) = name.split_once('/') else {
        if standard(name) {
            return None;
        }
        let hint = match name {
            "storage" => Some("did you mean `requests.storage`?".to_string()),
            "gpu" | "gpus" | "nvidia.com" => {
                Some("did you mean `requests.nvidia.com/gpu`?".to_string())
            }
            _ => {
                let mut candidates = STANDARD_RESOURCES.to_vec();
                candidates.extend([
                    "hugepages-2Mi",
                    "hugepages-1Gi",
                    "requests.hugepages-2Mi",
                    "requests.hugepages-1Gi",
                ]);
                Some(match did_you_mean(name, &candidates) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "names without a `/` are {}, `hugepages-<size>` and `requests.hugepages-<size>`; others have a domain, e.g. `requests.nvidia.com/gpu`, `count/jobs.batch`",
                        STANDARD_RESOURCES.join(", ")
                    ),
                })
            }
        };
        return Some(Problem::new(
            format!("`{name}` is not a resource a Kubernetes quota can limit"),
            hint,
        ));
    };
    if prefix.ends_with(STORAGE_CLASS_SUFFIX) && !STORAGE_CLASS_RESOURCES.contains(&resource) {
        let hint = did_you_mean(resource, &STORAGE_CLASS_RESOURCES)
            .or((resource == "storage").then_some("requests.storage"))
            .map_or_else(
                || format!("use `{prefix}/requests.storage` or `{prefix}/persistentvolumeclaims`"),
                |r| format!("did you mean `{prefix}/{r}`?"),
            );
        return Some(Problem::new(
            format!(
                "`{name}` limits nothing: a storage-class quota counts `requests.storage` or `persistentvolumeclaims`"
            ),
            Some(hint),
        ));
    }
    let counted_elsewhere = prefix == "count"
        || prefix.ends_with(STORAGE_CLASS_SUFFIX)
        || prefix.ends_with(DEVICE_CLASS_SUFFIX);
    if extended(name) && !counted_elsewhere {
        let fixed = match name.strip_prefix("limits.") {
            Some(rest) => format!("requests.{rest}"),
            None => format!("requests.{name}"),
        };
        return Some(Problem::new(
            format!(
                "`{name}` limits nothing: Kubernetes quotas count extended resources only as `requests.<name>`"
            ),
            Some(format!("did you mean `{fixed}`?")),
        ));
    }
    None
}

/// Checks a scope name.
pub fn check_scope(scope: &str) -> Option<Problem> {
    if SCOPES.contains(&scope) {
        return None;
    }
    let hint = match did_you_mean(scope, &SCOPES) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("scopes are {}", SCOPES.join(", ")),
    };
    Some(Problem::new(
        format!("unknown quota scope `{scope}`"),
        Some(hint),
    ))
}

/// The standard resources a scope can limit (`IsResourceQuotaScopeValidForResource`);
/// `None` for scopes that allow any.
fn scope_resources(scope: &str) -> Option<&'static [&'static str]> {
    const POD_COMPUTE: &[&str] = &[
        "pods",
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => Some(POD_COMPUTE),
        "BestEffort" => Some(&["pods"]),
        "VolumeAttributesClass" => Some(&["persistentvolumeclaims", "requests.storage"]),
        _ => None,
    }
}

/// Checks that `scope` can limit `resource`: Kubernetes checks standard
/// names only (hugepages included), never names with a `/`.
pub fn check_scope_for(scope: &str, resource: &str) -> Option<Problem> {
    let allowed = scope_resources(scope)?;
    if resource.contains('/') || !standard(resource) || allowed.contains(&resource) {
        return None;
    }
    Some(Problem::new(
        format!("quota scope `{scope}` cannot limit `{resource}`"),
        Some(format!(
            "a `{scope}` quota limits only {}",
            allowed
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ))
}

/// The first pair of scopes that exclude each other, if any.
pub fn conflicting_scopes(scopes: &[&str]) -> Option<(&'static str, &'static str)> {
    [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ]
    .into_iter()
    .find(|(a, b)| scopes.contains(a) && scopes.contains(b))
}

/// Parses a `hard` value written as `text` (a YAML or TOML number is its
/// text) and checks it for `resource`.
pub fn parse_value(resource: &str, text: &str) -> Result<Quantity, Problem> {
    let q = Quantity::parse(text).map_err(|e| {
        let hint = match (e, suggest_quantity(text)) {
            (ParseError::Exponent, _) => "no quota needs an exponent that large".to_string(),
            (_, Some(s)) => format!("did you mean {s}?"),
            (ParseError::Suffix, None) => {
                "suffixes are n, u, m, k, M, G, T, P, E (powers of 1000), Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) and e<exponent>".to_string()
            }
            _ => "a number with an optional suffix, e.g. 8, \"500m\", \"1.5\", \"32Gi\", \"1e3\"".to_string(),
        };
        let message = match e {
            ParseError::Format => format!("`{text}` is not a Kubernetes quantity"),
            _ => format!("`{text}` is not a Kubernetes quantity: {e}"),
        };
        Problem::new(message, Some(hint))
    })?;
    match check_value(resource, text, &q) {
        Some(p) => Err(p),
        None => Ok(q),
    }
}

/// Quantities close to a mistyped one: spaces dropped, a byte unit's `B`
/// dropped (`16GB`: `16G` or `16Gi`), `K` as `k` or `Ki`.
fn suggest_quantity(text: &str) -> Option<String> {
    let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(&t);
    let t = t
        .strip_suffix('i')
        .filter(|s| s.ends_with('K'))
        .unwrap_or(t);
    let mut found: Vec<String> = Vec::new();
    let mut try_one = |s: String| {
        if s != text && Quantity::parse(&s).is_ok() && !found.contains(&s) {
            found.push(s);
        }
    };
    match t.strip_suffix('K') {
        Some(n) => {
            try_one(format!("{n}k"));
            try_one(format!("{n}Ki"));
        }
        None => {
            try_one(t.to_string());
            if t.ends_with(['k', 'M', 'G', 'T', 'P', 'E']) {
                let binary = match t.strip_suffix('k') {
                    Some(n) => format!("{n}Ki"),
                    None => format!("{t}i"),
                };
                try_one(binary);
            }
        }
    }
    match found.as_slice() {
        [] => None,
        [one] => Some(format!("`{one}`")),
        [a, b, ..] => Some(format!("`{a}` or `{b}`")),
    }
}

/// Checks the value `text` parses to for `resource`: what
/// `ValidateResourceQuantityValue` checks, and what Kubernetes would store
/// differently from what is written.
fn check_value(resource: &str, text: &str, q: &Quantity) -> Option<Problem> {
    if q.value().is_negative() {
        return Some(Problem::new(
            format!("`{resource}` must not be negative, found `{text}`"),
            None,
        ));
    }
    if !q.round_trips() {
        return Some(Problem::new(
            format!(
                "`{text}` cannot be written back by Kubernetes: it prints DecimalSI quantities of 1000E and more without a suffix (as `{}`)",
                q.canonical()
            ),
            Some(
                "no quota needs values this large; the largest Kubernetes holds exactly is 2^63-1"
                    .into(),
            ),
        ));
    }
    if q.exceeds_int64() {
        return Some(Problem::new(
            format!(
                "`{text}` is out of range: Kubernetes' 64-bit quantity arithmetic holds at most 9223372036854775807"
            ),
            None,
        ));
    }
    if let Some(how) = q.adjustment() {
        let why = match how {
            Adjustment::Capped => "above Kubernetes' cap for binary quantities (2^63-1)",
            Adjustment::RoundedUp => "finer than Kubernetes' precision of 1n",
        };
        return Some(Problem::new(
            format!("`{text}` is {why}: it would be stored as `{}`", q.as_str()),
            Some(format!("write `{}`", q.as_str())),
        ));
    }
    let whole = INTEGER_RESOURCES.contains(&resource) || extended(resource);
    if whole && !q.value().is_integer() {
        let why = if extended(resource) {
            "extended resources and other names with a `/` are counted in whole numbers"
        } else {
            "it is counted in whole numbers"
        };
        return Some(Problem::new(
            format!("`{resource}` must be a whole number, found `{text}`: {why}"),
            None,
        ));
    }
    None
}

/// A valid quota: what goes into the Profile's `spec.resourceQuotaSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Resource name to limit.
    pub hard: BTreeMap<String, Quantity>,
    /// Scopes, in the order written.
    pub scopes: Vec<String>,
}

/// A tenant's changes to the default quota.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaOverride {
    /// A limit per resource; `None` (written `null`) removes the default's.
    pub hard: BTreeMap<String, Option<Quantity>>,
    /// Scopes replacing the default's, when written (`[]` clears them).
    pub scopes: Option<Vec<String>>,
}

impl Quota {
    /// The tenant's quota: the defaults, with the tenant's limits set or
    /// removed key by key, and the tenant's scopes instead of the defaults'
    /// when it has any.
    pub fn merged(defaults: Option<&Quota>, tenant: Option<&QuotaOverride>) -> Quota {
        let mut q = defaults.cloned().unwrap_or_default();
        if let Some(t) = tenant {
            for (k, v) in &t.hard {
                match v {
                    Some(v) => q.hard.insert(k.clone(), v.clone()),
                    None => q.hard.remove(k),
                };
            }
            if let Some(scopes) = &t.scopes {
                q.scopes = scopes.clone();
            }
        }
        q
    }

    /// `spec.resourceQuotaSpec` as kftenant writes it: values as the strings
    /// Go prints, so the controller's rewrite changes nothing. With no limits
    /// it is `{}`, which is what the controller writes for a Profile without a
    /// quota (and it deletes `kf-resource-quota`); scopes alone limit nothing.
    pub fn to_json(&self) -> Json {
        if self.hard.is_empty() {
            return json!({});
        }
        let mut spec = json!({"hard": self.hard});
        if !self.scopes.is_empty() {
            spec["scopes"] = json!(self.scopes);
        }
        spec
    }
}

/// A `resourceQuotaSpec` as the Kubeflow controller writes it back through its
/// typed Go struct on every reconcile: `{}` when absent, `hard` values as
/// `String()` of the parsed value, empty `hard`, `scopes` and `values` lists
/// dropped. A value Go cannot parse is left as it is (the controller would
/// fail to read the Profile).
pub fn as_written_back(spec: Option<&Json>) -> Json {
    let Some(Json::Object(spec)) = spec else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in spec {
        let v = match (k.as_str(), v) {
            ("hard", Json::Object(hard)) if hard.is_empty() => continue,
            ("hard", Json::Object(hard)) => Json::Object(
                hard.iter()
                    .map(|(r, q)| {
                        let written = quantity_text(q)
                            .and_then(|t| Quantity::parse(&t).ok())
                            .map_or_else(|| q.clone(), |q| Json::String(q.as_str().to_string()));
                        (r.clone(), written)
                    })
                    .collect(),
            ),
            ("scopes", Json::Array(a)) if a.is_empty() => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Json::Object(out)
}

/// The text Go's `UnmarshalJSON` reads for a JSON value: a string's content
/// (trimmed), or a number's literal text.
fn quantity_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.trim().to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// True when two `resourceQuotaSpec`s mean the same quota: absent equals
/// `{}`, an empty field (`hard: {}`, `scopes: []`, `scopeSelector: {}`) equals none, values compare by amount
/// (`0` and `"0"`, `1Gi` and `1024Mi`), scopes as a set. A value that does
/// not parse equals only the same JSON.
pub fn same_spec(a: Option<&Json>, b: Option<&Json>) -> bool {
    let empty = Map::new();
    let fields = |v: Option<&Json>| -> Option<Map<String, Json>> {
        match v {
            None | Some(Json::Null) => Some(empty.clone()),
            Some(Json::Object(m)) => Some(
                m.iter()
                    .filter(|(_, v)| !is_empty(v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            Some(_) => None,
        }
    };
    let (Some(a), Some(b)) = (fields(a), fields(b)) else {
        return a == b;
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .all(|k| match (k.as_str(), a.get(k), b.get(k)) {
            ("hard", Some(Json::Object(x)), Some(Json::Object(y))) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(r, q)| y.get(r).is_some_and(|p| same_quantity(q, p)))
            }
            ("scopes", Some(Json::Array(x)), Some(Json::Array(y))) => {
                let set = |l: &[Json]| l.iter().map(Json::to_string).collect::<BTreeSet<_>>();
                set(x) == set(y)
            }
            (_, x, y) => x == y,
        })
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Object(o) => o.is_empty(),
        Json::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn same_quantity(a: &Json, b: &Json) -> bool {
    let parse = |v: &Json| quantity_text(v).and_then(|t| Quantity::parse(&t).ok());
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.same_value(&y),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(name: &str) -> String {
        let p = check_resource_name(name).unwrap_or_else(|| panic!("{name} passes"));
        format!("{}; {}", p.message, p.hint.unwrap_or_default())
    }

    #[test]
    fn resource_names_follow_kubernetes() {
        for ok in [
            "cpu",
            "limits.memory",
            "requests.storage",
            "services.loadbalancers",
            "hugepages-2Mi",
            "requests.hugepages-1Gi",
            "requests.nvidia.com/gpu",
            "count/jobs.batch",
            "count/pods",
            "gold.storageclass.storage.k8s.io/requests.storage",
            "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
            "gpuclass.deviceclass.resource.k8s.io/devices",
            "requests.deviceclass.resource.kubernetes.io/gpuclass",
        ] {
            assert_eq!(check_resource_name(ok), None, "{ok}");
        }
        assert_eq!(
            problem("memmory"),
            "`memmory` is not a resource a Kubernetes quota can limit; did you mean `memory`?"
        );
        assert!(problem("storage").ends_with("did you mean `requests.storage`?"));
        assert!(problem("gpu").ends_with("did you mean `requests.nvidia.com/gpu`?"));
        assert!(problem("requests.cpus").ends_with("did you mean `requests.cpu`?"));
        assert!(problem("nvidia.com/gpu").ends_with("did you mean `requests.nvidia.com/gpu`?"));
        assert!(
            problem("limits.nvidia.com/gpu").ends_with("did you mean `requests.nvidia.com/gpu`?")
        );
        assert!(
            problem("gold.storageclass.storage.k8s.io/storage")
                .ends_with("did you mean `gold.storageclass.storage.k8s.io/requests.storage`?")
        );
        assert!(problem("a/b/c").starts_with("`a/b/c` is not a resource name"));
        assert!(problem("Bad_Domain/x").starts_with("`Bad_Domain/x` is not a resource name"));
        assert!(problem("frobs").contains("names without a `/` are cpu, memory"));
    }

    #[test]
    fn scopes_and_their_resources() {
        assert_eq!(check_scope("NotTerminating"), None);
        let p = check_scope("NotTerminatin").unwrap();
        assert_eq!(p.message, "unknown quota scope `NotTerminatin`");
        assert_eq!(p.hint.as_deref(), Some("did you mean `NotTerminating`?"));
        assert_eq!(check_scope_for("BestEffort", "pods"), None);
        assert_eq!(
            check_scope_for("BestEffort", "cpu")
                .unwrap()
                .hint
                .as_deref(),
            Some("a `BestEffort` quota limits only `pods`")
        );
        assert!(check_scope_for("NotTerminating", "requests.storage").is_some());
        assert!(check_scope_for("NotTerminating", "hugepages-2Mi").is_some());
        assert_eq!(
            check_scope_for("NotTerminating", "requests.nvidia.com/gpu"),
            None
        );
        assert_eq!(
            check_scope_for("VolumeAttributesClass", "requests.storage"),
            None
        );
        assert!(check_scope_for("VolumeAttributesClass", "pods").is_some());
        assert_eq!(
            conflicting_scopes(&["NotTerminating", "BestEffort", "Terminating"]),
            Some(("Terminating", "NotTerminating"))
        );
        assert_eq!(conflicting_scopes(&["BestEffort", "NotTerminating"]), None);
    }

    #[test]
    fn values_are_checked_for_their_resource() {
        let msg = |r: &str, v: &str| parse_value(r, v).unwrap_err().message;
        assert_eq!(parse_value("cpu", "1.5").unwrap().as_str(), "1500m");
        assert_eq!(
            parse_value("requests.nvidia.com/gpu", "0.5")
                .unwrap()
                .as_str(),
            "500m"
        );
        assert_eq!(
            parse_value("memory", "100.035k").unwrap().as_str(),
            "100.035k"
        );
        assert_eq!(msg("cpu", "lots"), "`lots` is not a Kubernetes quantity");
        let hint = |v: &str| parse_value("memory", v).unwrap_err().hint.unwrap();
        assert_eq!(hint("16GB"), "did you mean `16G` or `16Gi`?");
        assert_eq!(hint("16GiB"), "did you mean `16Gi`?");
        assert_eq!(hint("1K"), "did you mean `1k` or `1Ki`?");
        assert_eq!(hint("1KiB"), "did you mean `1k` or `1Ki`?");
        assert_eq!(hint(" 1"), "did you mean `1`?");
        assert!(hint("4 cores").starts_with("a number with an optional suffix"));
        assert!(hint("1Q").starts_with("a number with an optional suffix"));
        assert!(hint("1Mi3").starts_with("suffixes are n, u, m"));
        assert_eq!(
            msg("cpu", ".Pi"),
            "`.Pi` is not a Kubernetes quantity: the number has no digits"
        );
        assert_eq!(msg("cpu", "-1"), "`cpu` must not be negative, found `-1`");
        assert!(msg("cpu", "1000E").contains("without a suffix (as `1`)"));
        assert!(msg("cpu", "1e19").contains("out of range"));
        assert!(
            msg("cpu", "1e-300")
                .contains("finer than Kubernetes' precision of 1n: it would be stored as `1e-9`")
        );
        assert!(msg("memory", "9Ei").contains("cap for binary quantities"));
        assert!(msg("cpu", "1e4294967296").contains("more than 9 digits"));
        assert!(msg("pods", "1.5").starts_with("`pods` must be a whole number, found `1.5`"));
        assert!(msg("nvidia.com/gpu", "500m").contains("extended resources"));
        assert!(msg("count/jobs.batch", "0.5").contains("whole number"));
        assert!(
            msg("gold.storageclass.storage.k8s.io/requests.storage", "500m")
                .contains("whole number")
        );
        assert!(parse_value("gold.storageclass.storage.k8s.io/requests.storage", "1.5Gi").is_ok());
        assert!(parse_value("pods", "1e3").is_ok());
    }

    fn quota(hard: &[(&str, &str)], scopes: &[&str]) -> Quota {
        Quota {
            hard: hard
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
                .collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tenants_override_defaults_key_by_key() {
        let defaults = quota(
            &[
                ("cpu", "16"),
                ("memory", "64Gi"),
                ("requests.nvidia.com/gpu", "0"),
            ],
            &["NotTerminating"],
        );
        let tenant = QuotaOverride {
            hard: [
                ("cpu".to_string(), Some(Quantity::parse("4").unwrap())),
                ("requests.nvidia.com/gpu".to_string(), None),
            ]
            .into(),
            scopes: None,
        };
        let m = Quota::merged(Some(&defaults), Some(&tenant));
        assert_eq!(
            m,
            quota(&[("cpu", "4"), ("memory", "64Gi")], &["NotTerminating"])
        );
        let cleared = QuotaOverride {
            scopes: Some(vec![]),
            ..tenant
        };
        assert!(
            Quota::merged(Some(&defaults), Some(&cleared))
                .scopes
                .is_empty()
        );
        assert_eq!(Quota::merged(Some(&defaults), None), defaults);
        assert_eq!(Quota::merged(None, None), Quota::default());
    }

    #[test]
    fn rendered_specs_are_what_the_controller_writes_back() {
        let q = quota(
            &[("cpu", "1.5"), ("memory", "1024Mi"), ("pods", "+5")],
            &["NotBestEffort"],
        );
        let spec = q.to_json();
        assert_eq!(
            spec,
            json!({"hard": {"cpu": "1500m", "memory": "1Gi", "pods": "+5"}, "scopes": ["NotBestEffort"]})
        );
        assert_eq!(as_written_back(Some(&spec)), spec);
        assert_eq!(Quota::default().to_json(), json!({}));
        assert_eq!(as_written_back(Some(&json!({}))), json!({}));
        assert_eq!(as_written_back(None), json!({}));
        assert_eq!(
            as_written_back(Some(
                &json!({"hard": {"gpu": 0, "cpu": 1.5, "x": "1 "}, "scopes": []})
            )),
            json!({"hard": {"gpu": "0", "cpu": "1500m", "x": "1"}})
        );
        assert_eq!(as_written_back(Some(&json!({"hard": {}}))), json!({}));
    }

    #[test]
    fn specs_compare_by_meaning() {
        let want =
            json!({"hard": {"cpu": "16", "memory": "1Gi", "gpu": "0"}, "scopes": ["A", "B"]});
        let live =
            json!({"hard": {"cpu": 16, "memory": "1024Mi", "gpu": "0m"}, "scopes": ["B", "A"]});
        assert!(same_spec(Some(&live), Some(&want)));
        let changed =
            json!({"hard": {"cpu": "8", "memory": "1Gi", "gpu": "0"}, "scopes": ["A", "B"]});
        assert!(!same_spec(Some(&changed), Some(&want)));
        let extra = json!({"hard": {"cpu": "16", "memory": "1Gi", "gpu": "0", "pods": "1"}, "scopes": ["A", "B"]});
        assert!(!same_spec(Some(&extra), Some(&want)));
        assert!(!same_spec(
            Some(&json!({"hard": {"cpu": "16", "memory": "1Gi", "gpu": "0"}})),
            Some(&want)
        ));
        assert!(same_spec(None, Some(&json!({}))));
        assert!(same_spec(Some(&json!({"hard": {}, "scopes": []})), None));
        assert!(same_spec(Some(&json!({"scopeSelector": {}})), None));
        let selector = json!({"scopeSelector": {"matchExpressions": [{"operator": "Exists", "scopeName": "BestEffort"}]}});
        assert!(!same_spec(Some(&selector), None));
        assert!(same_spec(
            Some(&json!({"hard": {"x": "lots"}})),
            Some(&json!({"hard": {"x": "lots"}}))
        ));
        assert!(!same_spec(
            Some(&json!({"hard": {"x": "lots"}})),
            Some(&json!({"hard": {"x": "1"}}))
        ));
    }
}
