//! Snapshot tests of whole plans, in all three formats, for fixture worlds
//! built from `sample-repo`. Update with `cargo insta test --accept` (or
//! `INSTA_UPDATE=always cargo test`) and review the diff.

use kftenant::model::{self, Repository};
use kftenant::plan::converged::iam_encode;
use kftenant::plan::desired::{self, Desired};
use kftenant::plan::observed::Observed;
use kftenant::plan::{self, Action, Plan, PlanOptions, Verdict};
use kftenant::report;
use std::path::Path;

const COMMIT: &str = "4f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6";

fn repo() -> Repository {
    model::load_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample-repo")
            .as_path(),
    )
    .expect("sample-repo is valid")
}

fn opts() -> PlanOptions {
    PlanOptions {
        allow_mass_delete: false,
        source_commit: Some(COMMIT.into()),
    }
}

fn plan_of(desired: &Desired, observed: &Observed) -> Plan {
    plan::plan(desired, observed, &opts())
}

fn snapshot_all(name: &str, p: &Plan) {
    let mut text = Vec::new();
    report::write_text(p, &mut text).unwrap();
    insta::assert_snapshot!(format!("{name}.text"), String::from_utf8(text).unwrap());
    let md = report::markdown_parts(p, report::MARKDOWN_PART_LIMIT);
    assert_eq!(md.len(), 1, "fixture plans fit in one comment");
    insta::assert_snapshot!(format!("{name}.markdown"), md[0]);
    let mut json = Vec::new();
    report::write_json(p, &mut json).unwrap();
    insta::assert_snapshot!(format!("{name}.json"), String::from_utf8(json).unwrap());
}

fn role_mut<'a>(o: &'a mut Observed, name: &str) -> &'a mut kftenant::plan::observed::ObservedRole {
    o.roles
        .iter_mut()
        .find(|r| r.name == name)
        .expect("role exists")
}

#[test]
fn empty_world_creates_everything_in_order() {
    let d = desired::render(&repo());
    let p = plan_of(&d, &Observed::default());
    assert!(p.changes.iter().all(|c| c.action == Action::Create));
    assert!(p.drift.is_empty());
    // Policies first, then each tenant's role before its attachments and its Profile last.
    assert!(p.changes[..3].iter().all(|c| c.tenant.is_none()));
    let fd: Vec<&str> = p
        .changes
        .iter()
        .filter(|c| c.tenant.as_deref() == Some("fraud-detection"))
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(
        fd.first(),
        Some(&"iam_role.fraud-detection-kubeflow-prod-role")
    );
    // The Profile after the role; the namespace's objects after the Profile
    // (they wait for the namespace the controller makes from it).
    let profile = fd
        .iter()
        .position(|a| *a == "profile.fraud-detection")
        .unwrap();
    assert!(
        fd[profile + 1..]
            .iter()
            .all(|a| a.starts_with("service_account.")),
        "{fd:?}"
    );
    snapshot_all("empty_world", &p);
}

#[test]
fn converged_world_plans_nothing() {
    let d = desired::render(&repo());
    let p = plan_of(&d, &Observed::converged(&d));
    assert!(p.is_empty(), "{:#?}", p.changes);
    assert!(p.drift.is_empty() && p.conflicts.is_empty());
    snapshot_all("converged", &p);
}

#[test]
fn trust_policy_drift_is_reported_and_corrected() {
    let d = desired::render(&repo());
    let mut o = Observed::converged(&d);
    let mut trust = d.roles["forecasting"].trust_policy.to_json();
    trust["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E:sub"] =
        serde_json::json!([
            "system:serviceaccount:forecasting:default-editor",
            "system:serviceaccount:other-team:default-editor"
        ]);
    role_mut(&mut o, "forecasting-kubeflow-prod-role").assume_role_policy_document =
        iam_encode(&trust);
    let p = plan_of(&d, &o);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        p.changes[0].address,
        "iam_role.forecasting-kubeflow-prod-role.trust_policy"
    );
    assert_eq!(p.drift.len(), 1);
    snapshot_all("trust_drift", &p);
}

#[test]
fn policy_attached_by_hand_is_detached() {
    let d = desired::render(&repo());
    let mut o = Observed::converged(&d);
    role_mut(&mut o, "recommendations-kubeflow-prod-role")
        .attached_policy_arns
        .push("arn:aws:iam::aws:policy/AdministratorAccess".into());
    let p = plan_of(&d, &o);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].action, Action::Delete);
    assert_eq!(
        p.changes[0].address,
        "iam_role.recommendations-kubeflow-prod-role.attachment[arn:aws:iam::aws:policy/AdministratorAccess]"
    );
    snapshot_all("extra_attachment", &p);
}

#[test]
fn encoding_and_ordering_differences_are_not_changes() {
    let d = desired::render(&repo());
    let mut o = Observed::converged(&d);
    // Plain (not percent-encoded) documents with whitespace, as GetAccountAuthorizationDetails
    // returns some of them, and a Version-less inline policy equal to a 2008 default... not ours:
    // every git document names 2012-10-17, so only encodings and ordering vary here.
    let r = role_mut(&mut o, "fraud-detection-kubeflow-prod-role");
    r.assume_role_policy_document =
        serde_json::to_string_pretty(&d.roles["fraud-detection"].trust_policy).unwrap();
    let inline = r.inline_policies.get_mut("artifacts").unwrap();
    let mut doc = d.roles["fraud-detection"].inline_policies["artifacts"].to_json();
    doc["Statement"].as_array_mut().unwrap().reverse();
    doc["Statement"][0]["Action"] = serde_json::json!("s3:ListBucket");
    *inline = serde_json::to_string(&doc).unwrap();
    o.roles.reverse();
    let p = plan_of(&d, &o);
    assert!(p.is_empty(), "{:#?}", p.changes);
    snapshot_all("encoding_only", &p);
}

fn profile_mut<'a>(
    o: &'a mut Observed,
    name: &str,
) -> &'a mut kftenant::plan::observed::ObservedProfile {
    o.profiles
        .iter_mut()
        .find(|p| p.name == name)
        .expect("profile exists")
}

/// Sets the live `resourceQuotaSpec` of a Profile (`None`: absent).
fn set_live_quota(o: &mut Observed, name: &str, rqs: Option<serde_json::Value>) {
    let p = profile_mut(o, name);
    let mut spec = p.spec.to_json();
    let fields = spec.as_object_mut().unwrap();
    match rqs {
        Some(q) => fields.insert("resourceQuotaSpec".into(), q),
        None => fields.remove("resourceQuotaSpec"),
    };
    p.spec = spec.into();
}

#[test]
fn rendered_quotas_are_what_the_kubeflow_controller_writes_back() {
    let d = desired::render(&repo());
    for p in d.profiles.values() {
        let rqs = p.spec.to_json()["resourceQuotaSpec"].clone();
        assert_eq!(
            kftenant::quota::as_written_back(Some(&rqs)),
            rqs,
            "{}: the controller's rewrite must change nothing",
            p.name
        );
    }
}

#[test]
fn quotas_the_kubeflow_controller_rewrote_plan_nothing() {
    let mut r = repo();
    // A tenant without any quota renders `resourceQuotaSpec: {}`.
    r.tenants
        .iter_mut()
        .find(|t| t.name == "recommendations")
        .unwrap()
        .resource_quota = Default::default();
    let d = desired::render(&r);
    assert_eq!(
        d.profiles["recommendations"].spec.to_json()["resourceQuotaSpec"],
        serde_json::json!({})
    );
    let mut o = Observed::converged(&d);
    // What kftenant wrote before quantities were strings, as the controller
    // rewrote it (numbers became Go strings); the same amounts in forms Go
    // keeps as written, or that someone applied by hand; no
    // resourceQuotaSpec where the controller has not run yet.
    set_live_quota(
        &mut o,
        "fraud-detection",
        Some(kftenant::quota::as_written_back(Some(&serde_json::json!(
            {"hard": {"cpu": "32", "memory": "128Gi", "requests.nvidia.com/gpu": 4}}
        )))),
    );
    set_live_quota(
        &mut o,
        "nlp-research",
        Some(serde_json::json!(
            {"hard": {"cpu": "64.", "memory": "262144Mi", "requests.nvidia.com/gpu": "8000m"}}
        )),
    );
    set_live_quota(&mut o, "recommendations", None);
    let p = plan_of(&d, &o);
    assert!(p.is_empty(), "{:#?}", p.changes);
    assert!(p.drift.is_empty());
    snapshot_all("quota_rewritten", &p);
}

#[test]
fn a_changed_quota_plans_one_profile_update() {
    let d = desired::render(&repo());
    let mut o = Observed::converged(&d);
    set_live_quota(
        &mut o,
        "fraud-detection",
        Some(serde_json::json!(
            {"hard": {"cpu": "16", "memory": "128Gi", "requests.nvidia.com/gpu": "4"}}
        )),
    );
    let p = plan_of(&d, &o);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].address, "profile.fraud-detection");
    assert_eq!(p.changes[0].action, Action::Update);
    let fields: Vec<&str> = p.changes[0]
        .diffs
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(fields, ["spec.resourceQuotaSpec"]);
    snapshot_all("quota_changed", &p);
}

#[test]
fn removed_tenant_is_deleted_profile_first_role_last() {
    let mut r = repo();
    let full = desired::render(&r);
    r.tenants.retain(|t| t.name != "fraud-detection");
    r.config.prune.decommissioned = vec!["fraud-detection".into()];
    let d = desired::render(&r);
    let p = plan_of(&d, &Observed::converged(&full));
    assert_eq!(p.deleted_tenants, vec!["fraud-detection"]);
    let addrs: Vec<&str> = p.changes.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(addrs.first(), Some(&"profile.fraud-detection"));
    assert_eq!(
        addrs.last(),
        Some(&"iam_role.fraud-detection-kubeflow-prod-role")
    );
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
    assert!(p.drift.is_empty(), "a tenant removed from git is not drift");
    snapshot_all("tenant_removed", &p);
}

#[test]
fn unmanaged_role_with_a_desired_name_is_a_conflict() {
    let d = desired::render(&repo());
    let mut o = Observed::converged(&d);
    let r = role_mut(&mut o, "nlp-research-kubeflow-prod-role");
    r.tags.clear();
    r.tags.insert("owner".into(), "someone-else".into());
    let p = plan_of(&d, &o);
    assert!(
        p.is_empty(),
        "an unowned role is never touched: {:#?}",
        p.changes
    );
    assert_eq!(p.conflicts.len(), 1);
    snapshot_all("unmanaged_conflict", &p);
}

#[test]
fn a_removed_tenant_is_held_back_until_decommissioned() {
    let mut r = repo();
    let full = desired::render(&r);
    r.tenants.retain(|t| t.name != "fraud-detection");
    let p = plan_of(&desired::render(&r), &Observed::converged(&full));
    assert!(p.is_empty(), "nothing is deleted: {:#?}", p.changes);
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.verdict(), Verdict::Blocked);
    snapshot_all("tenant_removed_held", &p);
}

#[test]
fn mass_delete_is_held_back() {
    let mut r = repo();
    let full = desired::render(&r);
    let all: Vec<String> = r.tenants.iter().map(|t| t.name.clone()).collect();
    r.tenants.clear();
    r.config.prune.decommissioned = all.clone();
    let p = plan::plan(&desired::render(&r), &Observed::converged(&full), &opts());
    assert!(p.changes.iter().all(|c| c.action != Action::Delete));
    assert_eq!(p.held.len(), all.len());
    insta::assert_snapshot!("mass_delete_all", p.held[0].reason.clone());

    let mut r = repo();
    r.tenants.truncate(2);
    r.config.prune.decommissioned = all;
    let p = plan::plan(&desired::render(&r), &Observed::converged(&full), &opts());
    assert_eq!(p.held.len(), 4);
    insta::assert_snapshot!("mass_delete_over_limit", p.held[0].reason.clone());

    let allowed = plan::plan(
        &desired::render(&r),
        &Observed::converged(&full),
        &PlanOptions {
            allow_mass_delete: true,
            ..opts()
        },
    );
    assert!(allowed.held.is_empty());
    assert_eq!(
        allowed
            .changes
            .iter()
            .filter(|c| c.resource
                == kftenant::plan::Resource::Profile {
                    name: "recommendations".into()
                })
            .count(),
        1
    );
}
