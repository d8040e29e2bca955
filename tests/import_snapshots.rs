//! `kftenant import` and adoption without network: a live world built as
//! Kubeflow's AWS guide leaves it (data only), the repository
//! [`import::render`] writes for it (snapshots of the files and the report),
//! and the plan of that repository against the same world: one `adopt`
//! change per resource, nothing deleted, nothing recreated (snapshots in the
//! three formats). Update with `cargo insta test --accept` and review.

use kftenant::config;
use kftenant::diag::Diagnostics;
use kftenant::import::{self, ImportOptions, Imported, NoteKind};
use kftenant::model::{self, MemSource};
use kftenant::plan::desired::{self, Desired};
use kftenant::plan::observed::{
    Observed, ObservedObject, ObservedPolicy, ObservedProfile, ObservedRole,
};
use kftenant::plan::{self, Action, Operation, Plan, PlanOptions, Verdict};
use kftenant::report;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

const CONFIG: &str = r#"# The platform team's settings for the cluster.
[cluster]
name = "ml-prod"
account_id = "123456789012"
region = "us-west-2"
oidc_issuer = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E"
"#;
const ACCOUNT: &str = "123456789012";
const ISSUER: &str = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E";
const S3_FULL: &str = "arn:aws:iam::aws:policy/AmazonS3FullAccess";
const ARTIFACTS: &str = "arn:aws:iam::123456789012:policy/kubeflow-artifacts";

fn role_arn(profile: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{profile}-ml-prod-role")
}

/// The guide's trust policy: the cluster's OIDC provider, `aud` only.
fn guide_trust() -> Json {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{ISSUER}:aud"): "sts.amazonaws.com"}}}]})
}

/// The trust policy once the profile controller edited it for `profile`
/// (plugin_iam.go: `aud` and `sub` as lists).
fn controller_trust(profile: &str) -> Json {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}")},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{ISSUER}:aud"): ["sts.amazonaws.com"],
            format!("{ISSUER}:sub"): [format!("system:serviceaccount:{profile}:default-editor")]}}}]})
}

fn role(profile: &str, trust: Json) -> ObservedRole {
    ObservedRole {
        name: format!("{profile}-ml-prod-role"),
        path: "/".into(),
        arn: role_arn(profile),
        assume_role_policy_document: trust.to_string(),
        permissions_boundary: None,
        max_session_duration: 3600,
        tags: BTreeMap::new(),
        attached_policy_arns: vec![S3_FULL.into()],
        inline_policies: BTreeMap::new(),
    }
}

/// A Profile as `kubectl apply` of the guide's manifest leaves it, after the
/// controller's reconcile (which adds `resourceQuotaSpec: {}`).
fn profile(name: &str, owner: Json, plugins: Json) -> ObservedProfile {
    ObservedProfile {
        name: name.into(),
        labels: BTreeMap::new(),
        annotations: [(
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{\"apiVersion\":\"kubeflow.org/v1\",\"kind\":\"Profile\"}".to_string(),
        )]
        .into(),
        spec: json!({"owner": owner, "plugins": plugins, "resourceQuotaSpec": {}}).into(),
        deleting: false,
    }
}

fn iam_plugin(profile: &str) -> Json {
    json!([{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": role_arn(profile)}}])
}

fn user(name: &str) -> Json {
    json!({"kind": "User", "name": name})
}

fn object(namespace: &str, name: &str, annotations: &[(&str, &str)], body: Json) -> ObservedObject {
    ObservedObject {
        namespace: namespace.into(),
        name: name.into(),
        labels: BTreeMap::new(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
        deleting: false,
    }
}

/// The live world: what the controller and the guide's steps leave.
///
/// - `team-a`: the guide's role (trust `aud` only: the controller could not
///   edit it), AmazonS3FullAccess, and a contributor added in the dashboard;
/// - `team-b`: trust edited by the controller, an extra inline policy, tags,
///   a longer session, a customer-managed policy at `/`, a quota and a label;
/// - `team-c`: a second plugin (kftenant cannot express it);
/// - `team-d`: a Group owner (kftenant cannot express it);
/// - `team-e`: its role is gone from IAM;
/// - `other`: a Profile and a role nobody imports.
fn guide_world() -> (Vec<ObservedProfile>, Observed) {
    let mut b = role("team-b", controller_trust("team-b"));
    b.inline_policies.insert(
        "s3-scratch".into(),
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::scratch/team-b/*"}]}).to_string(),
    );
    b.tags = [
        ("team".to_string(), "b".to_string()),
        ("cost-center".to_string(), "0042".to_string()),
    ]
    .into();
    b.max_session_duration = 7200;
    b.attached_policy_arns.push(ARTIFACTS.into());
    let mut other = role("other", guide_trust());
    other.name = "other-role".into();
    other.arn = format!("arn:aws:iam::{ACCOUNT}:role/other-role");
    let roles = vec![role("team-a", guide_trust()), b, other];
    let policies = vec![ObservedPolicy {
        name: "kubeflow-artifacts".into(),
        path: "/".into(),
        arn: ARTIFACTS.into(),
        document: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": ["arn:aws:s3:::artifacts", "arn:aws:s3:::artifacts/*"]}]}).to_string(),
        default_version_id: "v1".into(),
        version_ids: vec!["v1".into()],
        attachment_count: 1,
        description: String::new(),
        tags: Some(BTreeMap::new()),
    }];
    let mut pb = profile("team-b", user("carol@example.com"), iam_plugin("team-b"));
    pb.labels.insert("acme.example/team".into(), "b".into());
    pb.spec = json!({"owner": user("carol@example.com"), "plugins": iam_plugin("team-b"),
        "resourceQuotaSpec": {"hard": {"cpu": "8", "memory": "32Gi"}}})
    .into();
    let profiles = vec![
        profile("team-a", user("alice@example.com"), iam_plugin("team-a")),
        pb,
        profile(
            "team-c",
            user("dan@example.com"),
            json!([{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": role_arn("team-c")}},
                   {"kind": "WorkloadIdentity", "spec": {"gcpServiceAccount": "x@p.iam.gserviceaccount.com"}}]),
        ),
        profile(
            "team-d",
            json!({"kind": "Group", "name": "ml-team"}),
            iam_plugin("team-d"),
        ),
        profile("team-e", user("erin@example.com"), iam_plugin("team-e")),
        profile(
            "other",
            user("olga@example.com"),
            json!([{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": format!("arn:aws:iam::{ACCOUNT}:role/other-role")}}]),
        ),
    ];
    let owner_objects = |ns: &str, owner: &str| {
        vec![object(
            ns,
            "namespaceAdmin",
            &[("user", owner), ("role", "admin")],
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-admin"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner}]}),
        )]
    };
    let mut role_bindings = owner_objects("team-a", "alice@example.com");
    role_bindings.extend(owner_objects("team-b", "carol@example.com"));
    role_bindings.push(object(
        "team-a",
        "user-bob-example-com-clusterrole-edit",
        &[("user", "bob@example.com"), ("role", "edit")],
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob@example.com"}]}),
    ));
    let authorization_policies = vec![object(
        "team-a",
        "user-bob-example-com-clusterrole-edit",
        &[("user", "bob@example.com"), ("role", "edit")],
        json!({"rules": [{"from": [{"source": {"principals": [
                "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
                "cluster.local/ns/kubeflow/sa/ml-pipeline-ui"]}}],
            "when": [{"key": "request.headers[kubeflow-userid]", "values": ["bob@example.com"]}]}]}),
    )];
    let namespaces = [
        ("team-a", "alice@example.com"),
        ("team-b", "carol@example.com"),
        ("team-e", "erin@example.com"),
    ]
    .into_iter()
    .map(|(ns, owner)| ObservedObject {
        namespace: String::new(),
        ..object(ns, ns, &[("owner", owner)], Json::Null)
    })
    .collect();
    let service_accounts = ["team-a", "team-b"]
        .into_iter()
        .map(|ns| {
            object(
                ns,
                "default-editor",
                &[("eks.amazonaws.com/role-arn", &role_arn(ns))],
                Json::Null,
            )
        })
        .collect();
    let observed = Observed {
        roles,
        policies,
        profiles: profiles.clone(),
        namespaces,
        role_bindings,
        authorization_policies,
        service_accounts,
        ..Default::default()
    };
    // `other` is not chosen (`--profile` / `--selector`).
    let chosen = profiles.into_iter().filter(|p| p.name != "other").collect();
    (chosen, observed)
}

fn config() -> config::Config {
    let mut diags = Diagnostics::default();
    let c = config::load(CONFIG, &mut diags).expect("config loads");
    assert!(diags.is_empty(), "{:?}", diags.sorted());
    c
}

fn import_guide_world(opts: &ImportOptions) -> (Imported, Observed) {
    let (chosen, observed) = guide_world();
    (
        import::render(CONFIG, &config(), &chosen, &observed, opts),
        observed,
    )
}

fn all_files(imported: &Imported) -> String {
    imported
        .files
        .iter()
        .map(|(path, text)| format!("=== {path}\n{text}"))
        .collect()
}

fn desired_of(files: &BTreeMap<String, String>) -> Desired {
    let src = files
        .iter()
        .fold(MemSource::default(), |s, (p, t)| s.with(p, t));
    desired::render(&model::load(&src).unwrap_or_else(|d| panic!("{d:#?}")))
}

fn plan_of(d: &Desired, o: &Observed) -> Plan {
    plan::plan(
        d,
        o,
        &PlanOptions {
            allow_mass_delete: false,
            source_commit: Some("4f1c2d3e4b5a69788796a5b4c3d2e1f0a9b8c7d6".into()),
        },
    )
}

#[test]
fn the_guide_world_imports_into_a_valid_repository_with_notes() {
    let opts = ImportOptions {
        import_policies: true,
    };
    let (imported, _) = import_guide_world(&opts);
    assert!(
        imported.problems.is_empty(),
        "the written repository validates: {:#?}",
        imported.problems
    );
    insta::assert_snapshot!("guide_world.files", all_files(&imported));
    let mut out = Vec::new();
    report::write_import(&imported, std::path::Path::new("DIR"), &mut out).unwrap();
    insta::assert_snapshot!("guide_world.report", String::from_utf8(out).unwrap());
    let skipped: Vec<&str> = imported
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Skipped)
        .map(|n| n.profile.as_str())
        .collect();
    assert_eq!(skipped, vec!["team-c", "team-d"]);
    let names: Vec<&str> = imported.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["team-a", "team-b", "team-e"]);
    // Nothing is lost: every attachment, inline policy and tag is in git.
    let d = desired_of(&imported.files);
    let b = &d.roles["team-b"];
    assert_eq!(
        b.managed_policy_arns,
        [ARTIFACTS.to_string(), S3_FULL.to_string()].into()
    );
    assert!(b.inline_policies.contains_key("s3-scratch"));
    assert_eq!(b.tags.get("cost-center").map(String::as_str), Some("0042"));
    assert_eq!((b.path.as_str(), b.max_session_duration), ("/", 7200));
    assert_eq!(
        d.policies["kubeflow-artifacts"].arn, ARTIFACTS,
        "kept at its ARN"
    );
    assert_eq!(d.access["team-a"].members.len(), 1);
}

#[test]
fn importing_twice_gives_the_same_files_whatever_the_order() {
    let opts = ImportOptions::default();
    let (first, _) = import_guide_world(&opts);
    let (mut chosen, observed) = guide_world();
    chosen.reverse();
    let mut shuffled = observed.clone();
    shuffled.roles.reverse();
    shuffled.role_bindings.reverse();
    let second = import::render(CONFIG, &config(), &chosen, &shuffled, &opts);
    assert_eq!(first, second);
    // Without --import-policies, customer-managed policies stay ARNs.
    assert!(!first.files.keys().any(|p| p.starts_with("policies/")));
    assert!(first.files["tenants/team-b.yaml"].contains(ARTIFACTS));
    assert!(!first.files["tenants/team-b.yaml"].contains("policies:"));
}

#[test]
fn the_imported_repository_plans_only_adoptions_then_nothing() {
    let opts = ImportOptions {
        import_policies: true,
    };
    let (imported, observed) = import_guide_world(&opts);
    let d = desired_of(&imported.files);
    let p = plan_of(&d, &observed);
    let mut text = Vec::new();
    report::write_text(&p, &mut text).unwrap();
    insta::assert_snapshot!("guide_world.plan.text", String::from_utf8(text).unwrap());
    insta::assert_snapshot!(
        "guide_world.plan.markdown",
        report::markdown_parts(&p, report::MARKDOWN_PART_LIMIT).concat()
    );
    let mut json = Vec::new();
    report::write_json(&p, &mut json).unwrap();
    insta::assert_snapshot!("guide_world.plan.json", String::from_utf8(json).unwrap());
    assert_eq!(p.verdict(), Verdict::Changes);
    assert!(p.conflicts.is_empty() && p.drift.is_empty() && p.held.is_empty());
    // Only adoptions, but for team-e, whose role is gone: kftenant makes it.
    for c in &p.changes {
        match c.tenant.as_deref() {
            Some("team-e") => assert!(
                matches!(
                    c.operation,
                    Operation::CreateRole { .. } | Operation::AdoptProfile { .. }
                ),
                "{c:#?}"
            ),
            _ => assert_eq!(c.action, Action::Adopt, "{c:#?}"),
        }
        assert!(
            !matches!(
                c.operation,
                Operation::DeleteRole { .. }
                    | Operation::DeleteProfile { .. }
                    | Operation::DetachPolicy { .. }
                    | Operation::DeleteInlinePolicy { .. }
            ),
            "nothing is deleted: {c:#?}"
        );
    }
    let adopted: Vec<&str> = p
        .changes
        .iter()
        .filter(|c| c.action == Action::Adopt)
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(
        adopted,
        vec![
            "iam_policy.kubeflow-artifacts",
            "profile.team-a",
            "iam_role.team-a-ml-prod-role",
            "member.team-a.user-bob-example-com-clusterrole-edit",
            "profile.team-b",
            "iam_role.team-b-ml-prod-role",
            "profile.team-e",
        ]
    );
    // Applied, the world plans nothing, with the adopt blocks or without.
    let after = Observed::converged(&d);
    assert!(plan_of(&d, &after).is_empty());
    let without: BTreeMap<String, String> = imported
        .files
        .iter()
        .map(|(p, t)| (p.clone(), strip_adopt(t)))
        .collect();
    assert!(plan_of(&desired_of(&without), &after).is_empty());
}

/// A tenant file without its `adopt:` block.
fn strip_adopt(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line == "  adopt:" {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with("    ") {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn without_the_adopt_blocks_the_same_world_is_conflicts_not_deletes() {
    let (imported, observed) = import_guide_world(&ImportOptions {
        import_policies: true,
    });
    let files: BTreeMap<String, String> = imported
        .files
        .iter()
        .map(|(p, t)| (p.clone(), strip_adopt(t)))
        .collect();
    assert!(!files.values().any(|t| t.contains("adopt:")));
    let p = plan_of(&desired_of(&files), &observed);
    assert_eq!(p.verdict(), Verdict::Blocked);
    assert!(
        p.changes
            .iter()
            .all(|c| c.action != Action::Delete && c.action != Action::Adopt),
        "{:#?}",
        p.changes
    );
    let conflicts: Vec<&str> = p.conflicts.iter().map(|c| c.address.as_str()).collect();
    assert_eq!(
        conflicts,
        vec![
            "iam_policy.kubeflow-artifacts",
            "iam_role.team-a-ml-prod-role",
            "profile.team-a",
            "iam_role.team-b-ml-prod-role",
            "profile.team-b",
            "iam_role.team-b-ml-prod-role",
            "profile.team-e",
        ]
    );
}
