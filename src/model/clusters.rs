//! Repositories of several clusters: which clusters a tenant is on, and its
//! document as one cluster sees it.
//!
//! A repository with `clusters/<name>.toml` files describes one cluster per
//! file (each over the shared `kftenant.toml`); one without describes the one
//! cluster of its `kftenant.toml`. A tenant is on every cluster unless it
//! names some (`spec.clusters`) or selects them by label
//! (`spec.clusterSelector.matchLabels`), and may change a few fields per
//! cluster (`spec.overrides.<cluster>`):
//!
//! - `profile.resourceQuota`: merged over the tenant's own, limit by limit
//!   (`null` removes one), `scopes` replaced when given;
//! - `iam.managedPolicies` and `iam.inlinePolicies`: added to the tenant's;
//! - `members`: replace the tenant's;
//! - `adopt`, `iam.roleName`, `iam.rolePath`: replace the tenant's (a role
//!   made before kftenant is one cluster's, with that cluster's name).
//!
//! [`view`] works on the positioned YAML tree, before the tenant is decoded:
//! it drops the document when the tenant is not on the cluster, splices the
//! cluster's overrides into the spec (nodes keep their positions, so a
//! mistake in an override is reported where it is written) and removes the
//! three fields, so the decoder sees an ordinary one-cluster tenant.

use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::yaml::{Node, Value};
use std::collections::BTreeMap;

/// The folder of cluster files.
pub const CLUSTERS_DIR: &str = "clusters";

/// `spec` fields that say where the tenant lives.
pub const PLACEMENT_FIELDS: &[&str] = &["clusters", "clusterSelector", "overrides"];
/// `spec.overrides.<cluster>`.
pub const OVERRIDE_FIELDS: &[&str] = &["profile", "iam", "members", "adopt"];
/// `spec.overrides.<cluster>.profile`.
pub const OVERRIDE_PROFILE_FIELDS: &[&str] = &["resourceQuota"];
/// `spec.overrides.<cluster>.iam`.
pub const OVERRIDE_IAM_FIELDS: &[&str] =
    &["managedPolicies", "inlinePolicies", "roleName", "rolePath"];

/// A cluster as tenants see it: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster's name.
    pub name: String,
    /// Its labels; `None` when not read (only one cluster is being loaded,
    /// and this is another).
    pub labels: Option<BTreeMap<String, String>>,
}

/// Where a tenant lives, as written.
#[derive(Debug, Default)]
struct Placement<'n> {
    /// `spec.clusters`, with each name's node.
    names: Option<Vec<(&'n Node, String)>>,
    /// `spec.clusterSelector.matchLabels`, with the selector's node.
    selector: Option<(&'n Node, BTreeMap<String, String>)>,
    /// `spec.overrides`: cluster name's node and the override.
    overrides: Vec<(&'n Node, &'n Node)>,
}

/// Decoding of the placement fields; problems go to `diags`.
struct Cx<'a> {
    file: &'a str,
    diags: &'a mut Diagnostics,
}

impl Cx<'_> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>, hint: Option<String>) {
        let mut d = Diagnostic::at(self.file, pos, msg);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        self.diags.push(d);
    }

    fn known_cluster(&mut self, node: &Node, name: &str, clusters: &[ClusterInfo], what: &str) {
        // An unnamed cluster: the config did not load, the names are unknown.
        if clusters.iter().any(|c| c.name == name || c.name.is_empty()) {
            return;
        }
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        let hint = match did_you_mean(name, &names) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("the clusters of this repository: {}", names.join(", ")),
        };
        self.err(
            node.pos,
            format!("{what}: no cluster `{name}` in this repository"),
            Some(hint),
        );
    }

    fn string_map(&mut self, node: &Node, what: &str) -> Option<BTreeMap<String, String>> {
        let Value::Map(entries) = &node.value else {
            self.err(
                node.pos,
                format!("{what} must be a mapping, found {}", node.type_name()),
                None,
            );
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            match &v.value {
                Value::Str(_) | Value::Int(_) | Value::Bool(_) | Value::Float(_) => {
                    out.insert(k.scalar_text(), v.scalar_text());
                }
                _ => self.err(
                    v.pos,
                    format!(
                        "{what}.{} must be a string, found {}",
                        k.scalar_text(),
                        v.type_name()
                    ),
                    None,
                ),
            }
        }
        Some(out)
    }

    fn unknown_keys(&mut self, node: &Node, what: &str, allowed: &[&str]) {
        if let Value::Map(entries) = &node.value {
            for (k, _) in entries {
                let key = k.scalar_text();
                if !allowed.contains(&key.as_str()) {
                    let hint = match did_you_mean(&key, allowed) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None => format!("known fields: {}", allowed.join(", ")),
                    };
                    self.err(
                        k.pos,
                        format!("unknown field `{key}` in {what}"),
                        Some(hint),
                    );
                }
            }
        }
    }

    /// Reads the placement fields of `spec`, reporting their mistakes.
    fn placement<'n>(&mut self, spec: &'n Node, clusters: &[ClusterInfo]) -> Placement<'n> {
        let mut p = Placement::default();
        if let Some(list) = spec.get("clusters") {
            match &list.value {
                Value::Seq(items) => {
                    let mut names = Vec::new();
                    for item in items {
                        match item.as_str() {
                            Some(name) => {
                                if names.iter().any(|(_, n): &(&Node, String)| n == name) {
                                    self.err(
                                        item.pos,
                                        format!("spec.clusters lists `{name}` twice"),
                                        None,
                                    );
                                }
                                self.known_cluster(item, name, clusters, "spec.clusters");
                                names.push((item, name.to_string()));
                            }
                            None => self.err(
                                item.pos,
                                format!(
                                    "spec.clusters entries must be cluster names, found {}",
                                    item.type_name()
                                ),
                                None,
                            ),
                        }
                    }
                    if items.is_empty() {
                        self.err(
                            list.pos,
                            "spec.clusters is empty: the tenant would be on no cluster",
                            Some("delete the tenant's file to remove it everywhere, or name its clusters".into()),
                        );
                    }
                    p.names = Some(names);
                }
                _ => self.err(
                    list.pos,
                    format!(
                        "spec.clusters must be a list of cluster names, found {}",
                        list.type_name()
                    ),
                    None,
                ),
            }
        }
        if let Some(sel) = spec.get("clusterSelector") {
            self.unknown_keys(sel, "spec.clusterSelector", &["matchLabels"]);
            match sel.get("matchLabels") {
                Some(ml) => {
                    if let Some(labels) = self.string_map(ml, "spec.clusterSelector.matchLabels") {
                        p.selector = Some((sel, labels));
                    }
                }
                None => self.err(
                    sel.pos,
                    "spec.clusterSelector needs matchLabels",
                    Some("e.g. `clusterSelector: {matchLabels: {env: prod}}`, matching the labels of [cluster] in clusters/<name>.toml".into()),
                ),
            }
            if let Some(list) = spec.get("clusters") {
                self.err(
                    list.pos,
                    "spec.clusters and spec.clusterSelector both given: use one",
                    None,
                );
            }
        }
        if let Some(ov) = spec.get("overrides") {
            match &ov.value {
                Value::Map(entries) => {
                    for (k, v) in entries {
                        let name = k.scalar_text();
                        self.known_cluster(k, &name, clusters, "spec.overrides");
                        let what = format!("spec.overrides.{name}");
                        if !matches!(v.value, Value::Map(_)) {
                            self.err(
                                v.pos,
                                format!("{what} must be a mapping, found {}", v.type_name()),
                                None,
                            );
                            continue;
                        }
                        self.unknown_keys(v, &what, OVERRIDE_FIELDS);
                        if let Some(pr) = v.get("profile") {
                            self.unknown_keys(
                                pr,
                                &format!("{what}.profile"),
                                OVERRIDE_PROFILE_FIELDS,
                            );
                        }
                        if let Some(iam) = v.get("iam") {
                            self.unknown_keys(iam, &format!("{what}.iam"), OVERRIDE_IAM_FIELDS);
                        }
                        p.overrides.push((k, v));
                    }
                }
                _ => self.err(
                    ov.pos,
                    format!(
                        "spec.overrides must be a mapping of cluster names, found {}",
                        ov.type_name()
                    ),
                    None,
                ),
            }
        }
        p
    }
}

impl Placement<'_> {
    /// Whether the tenant is on `cluster`; `None` when the cluster's labels
    /// were not read and the tenant selects by label.
    fn selects(&self, cluster: &ClusterInfo) -> Option<bool> {
        if cluster.name.is_empty() {
            // The config did not load: decode the tenant to report its mistakes.
            return Some(true);
        }
        if let Some(names) = &self.names {
            return Some(names.iter().any(|(_, n)| *n == cluster.name));
        }
        if let Some((_, want)) = &self.selector {
            let labels = cluster.labels.as_ref()?;
            return Some(want.iter().all(|(k, v)| labels.get(k) == Some(v)));
        }
        Some(true)
    }
}

/// The tenant document `doc` (of `file`) as `cluster` sees it, or `None` when
/// the tenant is not on it. `clusters` are all the repository's clusters.
/// Mistakes in the placement fields are reported to `diags` (the same ones
/// for every cluster: the caller keeps one of each).
pub fn view(
    doc: &Node,
    file: &str,
    cluster: &ClusterInfo,
    clusters: &[ClusterInfo],
    diags: &mut Diagnostics,
) -> Option<Node> {
    let Some(spec) = doc.get("spec").filter(|s| matches!(s.value, Value::Map(_))) else {
        return Some(doc.clone());
    };
    if !PLACEMENT_FIELDS.iter().any(|f| spec.get(f).is_some()) {
        return Some(doc.clone());
    }
    let mut cx = Cx { file, diags };
    let placement = cx.placement(spec, clusters);
    // Every cluster checks that the tenant is somewhere and that its
    // overrides are for clusters it is on; the caller keeps one of each.
    let on: Vec<Option<bool>> = clusters.iter().map(|c| placement.selects(c)).collect();
    if let Some((sel, _)) = &placement.selector {
        if on.iter().all(|s| *s == Some(false)) {
            cx.err(
                sel.pos,
                "spec.clusterSelector selects no cluster: the tenant would be on none",
                Some("check the labels of [cluster] in clusters/<name>.toml; delete the tenant's file to remove it everywhere".into()),
            );
        }
    }
    for (k, _) in &placement.overrides {
        let name = k.scalar_text();
        if let Some(i) = clusters.iter().position(|c| c.name == name) {
            if on[i] == Some(false) {
                cx.err(
                    k.pos,
                    format!("spec.overrides.{name}: the tenant is not on cluster `{name}`"),
                    Some("add the cluster to spec.clusters (or its labels to the selector), or remove the override".into()),
                );
            }
        }
    }
    if placement.selects(cluster) != Some(true) {
        return None;
    }
    let mut doc = doc.clone();
    let Some(Value::Map(spec_entries)) = map_get_mut(&mut doc, "spec").map(|n| &mut n.value) else {
        unreachable!("spec was checked to be a mapping");
    };
    let over = placement
        .overrides
        .iter()
        .find(|(k, _)| k.scalar_text() == cluster.name)
        .map(|(_, v)| (*v).clone());
    spec_entries.retain(|(k, _)| !PLACEMENT_FIELDS.contains(&k.scalar_text().as_str()));
    if let Some(over) = over {
        apply_override(spec_entries, over);
    }
    Some(doc)
}

/// The value of `key` in a mapping node, for changing it.
fn map_get_mut<'n>(node: &'n mut Node, key: &str) -> Option<&'n mut Node> {
    match &mut node.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The entry `key` of `entries`, inserted (with `key_node` as its key and an
/// empty mapping as its value) when missing.
fn entry<'e>(entries: &'e mut Vec<(Node, Node)>, key_node: &Node) -> &'e mut Node {
    let key = key_node.scalar_text();
    let i = match entries.iter().position(|(k, _)| k.scalar_text() == key) {
        Some(i) => i,
        None => {
            entries.push((
                key_node.clone(),
                Node {
                    value: Value::Map(Vec::new()),
                    pos: key_node.pos,
                },
            ));
            entries.len() - 1
        }
    };
    &mut entries[i].1
}

/// Sets `key` in `entries` to `value`, replacing an entry of that key.
fn set(entries: &mut Vec<(Node, Node)>, key_node: Node, value: Node) {
    let key = key_node.scalar_text();
    match entries.iter_mut().find(|(k, _)| k.scalar_text() == key) {
        Some(e) => e.1 = value,
        None => entries.push((key_node, value)),
    }
}

/// Splices one cluster's override (checked by [`Cx::placement`]) into `spec`.
/// Where a spec value has the wrong type, the override's replaces it: the
/// decoder reports the spec's mistake in the other clusters' view anyway.
fn apply_override(spec: &mut Vec<(Node, Node)>, over: Node) {
    let Value::Map(fields) = over.value else {
        return;
    };
    for (k, v) in fields {
        match k.scalar_text().as_str() {
            "members" | "adopt" => set(spec, k, v),
            "iam" => {
                let Value::Map(iam_over) = v.value else {
                    set(spec, k, v);
                    continue;
                };
                let iam = entry(spec, &k);
                if !matches!(iam.value, Value::Map(_)) {
                    iam.value = Value::Map(Vec::new());
                }
                let Value::Map(iam) = &mut iam.value else {
                    unreachable!()
                };
                for (ik, iv) in iam_over {
                    // Lists are added to the tenant's; roleName and rolePath
                    // replace it.
                    let existing = iam
                        .iter_mut()
                        .find(|(e, _)| e.scalar_text() == ik.scalar_text());
                    match (existing, iv.value) {
                        (
                            Some((
                                _,
                                Node {
                                    value: Value::Seq(have),
                                    ..
                                },
                            )),
                            Value::Seq(more),
                        ) => have.extend(more),
                        (_, value) => set(iam, ik, Node { value, pos: iv.pos }),
                    }
                }
            }
            "profile" => {
                let Some(rq_over) = v.get("resourceQuota").cloned() else {
                    continue;
                };
                let rq_key = match &v.value {
                    Value::Map(e) => e
                        .iter()
                        .find(|(k, _)| k.as_str() == Some("resourceQuota"))
                        .map(|(k, _)| k.clone()),
                    _ => None,
                };
                let Some(rq_key) = rq_key else {
                    continue;
                };
                let profile = entry(spec, &k);
                if !matches!(profile.value, Value::Map(_)) {
                    profile.value = Value::Map(Vec::new());
                }
                let Value::Map(profile) = &mut profile.value else {
                    unreachable!()
                };
                let Value::Map(rq_fields) = rq_over.value else {
                    set(profile, rq_key, rq_over);
                    continue;
                };
                let rq = entry(profile, &rq_key);
                if !matches!(rq.value, Value::Map(_)) {
                    rq.value = Value::Map(Vec::new());
                }
                let Value::Map(rq) = &mut rq.value else {
                    unreachable!()
                };
                for (qk, qv) in rq_fields {
                    match (qk.scalar_text().as_str(), qv.value) {
                        // Limits are merged one by one over the tenant's.
                        ("hard", Value::Map(limits)) => {
                            let hard = entry(rq, &qk);
                            if !matches!(hard.value, Value::Map(_)) {
                                hard.value = Value::Map(Vec::new());
                            }
                            let Value::Map(hard) = &mut hard.value else {
                                unreachable!()
                            };
                            for (lk, lv) in limits {
                                set(hard, lk, lv);
                            }
                        }
                        (_, value) => set(rq, qk, Node { value, pos: qv.pos }),
                    }
                }
            }
            // Unknown fields were reported by `placement`.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_documents;

    fn clusters() -> Vec<ClusterInfo> {
        [("dev", "dev"), ("staging", "prod"), ("prod", "prod")]
            .iter()
            .map(|(n, env)| ClusterInfo {
                name: n.to_string(),
                labels: Some(BTreeMap::from([("env".to_string(), env.to_string())])),
            })
            .collect()
    }

    fn views(spec: &str) -> (BTreeMap<String, Option<serde_json::Value>>, Vec<String>) {
        let text = format!("metadata:\n  name: a\nspec:\n{spec}");
        let doc = load_documents(&text).unwrap().remove(0);
        let all = clusters();
        let mut diags = Diagnostics::default();
        let out = all
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    view(&doc, "t.yaml", c, &all, &mut diags).map(|d| d.to_json()["spec"].clone()),
                )
            })
            .collect();
        (
            out,
            diags.sorted().iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn a_tenant_without_placement_is_on_every_cluster_unchanged() {
        let (v, problems) = views("  owner: a@x\n");
        assert!(problems.is_empty());
        for spec in v.values() {
            assert_eq!(spec.as_ref().unwrap(), &serde_json::json!({"owner": "a@x"}));
        }
    }

    #[test]
    fn names_and_selectors_choose_clusters_and_vanish_from_the_spec() {
        let (v, problems) = views("  owner: a@x\n  clusters: [dev, prod]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(v["staging"].is_none());
        assert_eq!(
            v["dev"].as_ref().unwrap(),
            &serde_json::json!({"owner": "a@x"})
        );
        let (v, problems) =
            views("  owner: a@x\n  clusterSelector:\n    matchLabels: {env: prod}\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(v["dev"].is_none() && v["staging"].is_some() && v["prod"].is_some());
    }

    #[test]
    fn overrides_merge_quota_add_policies_and_replace_members() {
        let spec = "  owner: a@x
  iam:
    managedPolicies: [base]
  profile:
    resourceQuota:
      hard: {cpu: '4', memory: 8Gi}
  members:
    - {user: b@x, role: edit}
  overrides:
    prod:
      iam:
        managedPolicies: [extra]
        inlinePolicies: [{name: p, file: p.json}]
      profile:
        resourceQuota:
          hard: {cpu: '16', requests.nvidia.com/gpu: 2, memory: null}
          scopes: [NotTerminating]
      members: []
";
        let (v, problems) = views(spec);
        assert!(problems.is_empty(), "{problems:?}");
        let prod = v["prod"].as_ref().unwrap();
        assert_eq!(
            prod["iam"]["managedPolicies"],
            serde_json::json!(["base", "extra"])
        );
        assert_eq!(prod["iam"]["inlinePolicies"][0]["name"], "p");
        assert_eq!(
            prod["profile"]["resourceQuota"],
            serde_json::json!({"hard": {"cpu": "16", "memory": null, "requests.nvidia.com/gpu": 2}, "scopes": ["NotTerminating"]})
        );
        assert_eq!(prod["members"], serde_json::json!([]));
        assert!(prod.get("overrides").is_none());
        let dev = v["dev"].as_ref().unwrap();
        assert_eq!(dev["iam"]["managedPolicies"], serde_json::json!(["base"]));
        assert_eq!(dev["members"][0]["user"], "b@x");
    }

    #[test]
    fn an_override_creates_what_the_tenant_does_not_have() {
        let (v, _) = views(
            "  owner: a@x\n  overrides:\n    dev:\n      profile:\n        resourceQuota:\n          hard: {cpu: '1'}\n",
        );
        assert_eq!(
            v["dev"].as_ref().unwrap()["profile"],
            serde_json::json!({"resourceQuota": {"hard": {"cpu": "1"}}})
        );
        assert_eq!(
            v["prod"].as_ref().unwrap(),
            &serde_json::json!({"owner": "a@x"})
        );
    }

    #[test]
    fn placement_mistakes_are_reported_where_they_are_written() {
        let (_, problems) = views(
            "  owner: a@x
  clusters: [dev, prd, dev]
  overrides:
    staging: {members: []}
    qa: {}
    prod: {quota: {}, iam: {tags: {}}}
",
        );
        assert_eq!(
            problems,
            vec![
                "t.yaml:5:19: spec.clusters: no cluster `prd` in this repository\n  hint: did you mean `prod`?",
                "t.yaml:5:24: spec.clusters lists `dev` twice",
                "t.yaml:7:5: spec.overrides.staging: the tenant is not on cluster `staging`\n  hint: add the cluster to spec.clusters (or its labels to the selector), or remove the override",
                "t.yaml:8:5: spec.overrides: no cluster `qa` in this repository\n  hint: the clusters of this repository: dev, staging, prod",
                "t.yaml:9:5: spec.overrides.prod: the tenant is not on cluster `prod`\n  hint: add the cluster to spec.clusters (or its labels to the selector), or remove the override",
                "t.yaml:9:12: unknown field `quota` in spec.overrides.prod\n  hint: known fields: profile, iam, members, adopt",
                "t.yaml:9:29: unknown field `tags` in spec.overrides.prod.iam\n  hint: known fields: managedPolicies, inlinePolicies, roleName, rolePath",
            ]
        );
        let (_, problems) =
            views("  owner: a@x\n  clusters: []\n  clusterSelector: {matchLabels: {env: qa}}\n");
        assert_eq!(problems.len(), 3, "{problems:#?}");
        for want in ["both given", "spec.clusters is empty", "selects no cluster"] {
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:#?}"
            );
        }
    }
}
