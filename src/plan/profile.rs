//! A tenant's Profile: compared only on the labels, annotations and spec
//! fields kftenant sets, so what other controllers add (the Kubeflow
//! controller's finalizer, others' labels) never shows as a difference.
//! `resourceQuotaSpec` is compared by meaning ([`quota::same_spec`]): the
//! controller rewrites it on every reconcile (quantities in Go's string
//! form, `{}` when absent), and that is not drift.

use super::desired::DesiredProfile;
use super::observed::ObservedProfile;
use super::{Action, Change, FieldDiff, Operation, Part, Resource};
use crate::ownership::{MANAGED_BY_LABEL, MANAGER, TAG_CLUSTER};
use crate::quota;
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};

/// The spec fields kftenant sets (and therefore compares).
const SPEC_FIELDS: [&str; 3] = ["owner", "plugins", "resourceQuotaSpec"];

/// Whether a live spec field equals the desired one.
fn same_field(field: &str, live: Option<&Json>, want: Option<&Json>) -> bool {
    match field {
        "resourceQuotaSpec" => quota::same_spec(live, want),
        _ => live == want,
    }
}

/// Whether a live Profile that kftenant does not own may be taken over:
/// `None` when git adopts it (`spec.adopt.profile`) and no other kftenant
/// labelled it; otherwise why not (a conflict).
pub(super) fn refuse_adoption(
    cluster: &str,
    want: &DesiredProfile,
    live: &ObservedProfile,
) -> Option<String> {
    let tenant = live.name.as_str();
    if !want.adopt {
        return Some(format!(
            "Profile `{tenant}` exists without the labels {MANAGED_BY_LABEL}={MANAGER} and {TAG_CLUSTER}={cluster}; kftenant will not touch it. To take it over, add `adopt: {{profile: {tenant}}}` to the tenant's spec (`kftenant import` writes it), or rename the tenant"
        ));
    }
    if let Some(other) = live.labels.get(TAG_CLUSTER) {
        return Some(format!(
            "Profile `{tenant}` is labelled {TAG_CLUSTER}={other}: adoption never takes over what another kftenant manages"
        ));
    }
    if live.deleting {
        return Some(format!(
            "Profile `{tenant}` is being deleted; it cannot be adopted"
        ));
    }
    None
}

/// Records the conflict of a live Profile that kftenant does not own.
pub(super) fn conflict(out: &mut Part, live: &ObservedProfile, reason: String) {
    let tenant = live.name.as_str();
    out.conflict(
        &Resource::Profile {
            name: tenant.to_string(),
        },
        Some(tenant),
        reason,
    );
}

fn operation(want: &DesiredProfile) -> Operation {
    Operation::ApplyProfile {
        name: want.name.clone(),
        labels: want.labels.clone(),
        annotations: want.annotations.clone(),
        spec: want.spec.clone(),
    }
}

/// The change that makes the live Profile (if any) match git, or `None`.
pub(super) fn change(want: &DesiredProfile, live: Option<&ObservedProfile>) -> Option<Change> {
    let tenant = Some(want.name.as_str());
    let Some(live) = live else {
        return Some(Change::new(
            operation(want),
            tenant,
            Action::Create,
            format!("tenant `{}` is in git and has no Profile", want.name),
        ));
    };
    if converged(live, want) {
        return None;
    }
    let (before, diffs) = differences(live, want);
    if diffs.is_empty() {
        return None;
    }
    Some(
        Change::new(
            operation(want),
            tenant,
            Action::Update,
            "Profile in the cluster differs from git",
        )
        .before(before)
        .drift(diffs),
    )
}

/// Taking over a live Profile git adopts: a server-side apply of kftenant's
/// labels and spec, shown with what it changes (kftenant's labels,
/// `annotateOnly`, the owner's `apiGroup`, ...). The Profile is updated in
/// place: same UID, and the namespace and everything in it stay.
pub(super) fn adopt(want: &DesiredProfile, live: &ObservedProfile) -> Change {
    let (before, diffs) = differences(live, want);
    let mut c = Change::new(
        Operation::AdoptProfile {
            name: want.name.clone(),
            labels: want.labels.clone(),
            annotations: want.annotations.clone(),
            spec: want.spec.clone(),
        },
        Some(&want.name),
        Action::Adopt,
        format!(
            "git adopts Profile `{}` (spec.adopt.profile): kftenant's labels and its spec, updated in place (same UID; the namespace and its workloads stay)",
            want.name
        ),
    )
    .before(before);
    c.diffs = diffs;
    c
}

/// What kftenant compares of the live Profile, and the fields that differ.
fn differences(live: &ObservedProfile, want: &DesiredProfile) -> (Json, Vec<FieldDiff>) {
    let before = subset(live, want);
    let after = json!({"labels": want.labels, "annotations": want.annotations, "spec": want.spec});
    let mut diffs = Vec::new();
    for section in ["labels", "annotations", "spec"] {
        let (b, a) = (&before[section], &after[section]);
        let keys: BTreeSet<&String> = b
            .as_object()
            .into_iter()
            .chain(a.as_object())
            .flat_map(|m| m.keys())
            .collect();
        diffs.extend(
            keys.into_iter()
                .filter(|k| match section {
                    "spec" => !same_field(k, b.get(*k), a.get(*k)),
                    _ => b.get(*k) != a.get(*k),
                })
                .map(|k| FieldDiff {
                    field: format!("{section}.{k}"),
                    before: b.get(k).cloned().unwrap_or(Json::Null),
                    after: a.get(k).cloned().unwrap_or(Json::Null),
                }),
        );
    }
    (before, diffs)
}

/// The part of a live Profile that kftenant compares: its own label and
/// annotation keys, and the spec fields it sets.
fn subset(live: &ObservedProfile, want: &DesiredProfile) -> Json {
    let own = |live: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        live.iter()
            .filter(|(k, _)| want.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let live_spec = live.spec.to_json();
    let spec: serde_json::Map<String, Json> = SPEC_FIELDS
        .iter()
        .filter_map(|k| live_spec.get(k).map(|v| (k.to_string(), v.clone())))
        .collect();
    json!({
        "labels": own(&live.labels, &want.labels),
        "annotations": own(&live.annotations, &want.annotations),
        "spec": spec,
    })
}

/// The fast check of [`subset`] equality, without building JSON (most
/// Profiles are converged on most runs).
fn converged(live: &ObservedProfile, want: &DesiredProfile) -> bool {
    let same_spec = live.spec == want.spec || {
        let (live_spec, want_spec) = (live.spec.to_json(), want.spec.to_json());
        SPEC_FIELDS
            .iter()
            .all(|k| same_field(k, live_spec.get(k), want_spec.get(k)))
    };
    let has_all = |live: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| live.get(k) == Some(v))
    };
    same_spec
        && has_all(&live.labels, &want.labels)
        && has_all(&live.annotations, &want.annotations)
}

/// The deletion of a Profile no longer in git (its namespace goes with it).
pub(super) fn delete(live: &ObservedProfile, tenant: &str, reason: &str) -> Change {
    Change::new(
        Operation::DeleteProfile {
            name: live.name.clone(),
        },
        Some(tenant),
        Action::Delete,
        reason,
    )
    .before(json!({"labels": live.labels, "annotations": live.annotations, "spec": live.spec}))
}
