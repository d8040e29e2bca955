//! Live convergence against the real local stack (etcd + kube-apiserver + moto).
//!
//! Every scenario prepares the live world, runs the `kftenant` binary (pointed at
//! the world with standard settings only), reads the result back with the AWS SDK
//! and the kube client (never with kftenant's own reader), and checks that an
//! immediate second plan is empty.
//!
//! Isolation: each test has its own moto account and its own cluster name
//! (kftenant owns only Profiles labelled with its cluster), and prefixes its
//! tenant names, so tests run in parallel on one stack.

mod support;

use aws_sdk_iam::error::ProvideErrorMetadata;
use kftenant::ownership::{MANAGER, TAG_CLUSTER, TAG_MANAGED_BY};
use kftenant::policy::{parse_live, same_policy};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use support::World;
use support::proxy::FaultRule;
use support::repo::Repo;

fn kftenant(world: &World, args: &[&str]) -> Output {
    world.kftenant().args(args).output().expect("kftenant runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn expect_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn apply(world: &World, repo: &Repo) -> Output {
    kftenant(world, &["apply", repo.path(), "--auto-approve"])
}

/// The convergence check: an immediate second plan against the live world is empty.
#[track_caller]
fn assert_converged(world: &World, repo: &Repo) {
    let out = kftenant(world, &["plan", repo.path(), "--live"]);
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("No changes."),
        "{}",
        text(&out.stdout)
    );
}

fn profiles(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    Api::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "profiles"))
}

async fn setup(name: &str) -> (World, Repo, aws_sdk_iam::Client, Api<DynamicObject>) {
    let world = World::new(name);
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let repo = Repo::new(&world);
    let kube = profiles(world.kube_client().await);
    (world, repo, iam, kube)
}

/// Reads every desired role, policy and Profile back and compares it exactly.
async fn assert_live_matches(repo: &Repo, iam: &aws_sdk_iam::Client, kube: &Api<DynamicObject>) {
    let want = repo.desired();
    for p in want.policies.values() {
        let got = iam
            .get_policy()
            .policy_arn(&p.arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("policy {}: {e:?}", p.name));
        let got = got.policy().unwrap();
        assert_eq!(got.path(), Some(p.path.as_str()));
        assert_eq!(
            got.description(),
            Some(kftenant::ownership::policy_marker(&want.cluster).as_str()),
            "policy {} description (the ownership marker)",
            p.name
        );
        let v = iam
            .get_policy_version()
            .policy_arn(&p.arn)
            .version_id(got.default_version_id().unwrap())
            .send()
            .await
            .unwrap();
        let doc = parse_live(v.policy_version().unwrap().document().unwrap()).unwrap();
        assert!(
            same_policy(&doc, &p.document.to_json()),
            "policy {} document",
            p.name
        );
        let tags: BTreeMap<String, String> = iam
            .list_policy_tags()
            .policy_arn(&p.arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().into(), t.value().into()))
            .collect();
        assert_eq!(tags, p.tags, "policy {} tags", p.name);
    }
    for r in want.roles.values() {
        let got = iam
            .get_role()
            .role_name(&r.name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("role {}: {e:?}", r.name));
        let got = got.role().unwrap();
        assert_eq!(got.path(), r.path);
        assert_eq!(got.arn(), r.arn);
        assert_eq!(
            got.max_session_duration(),
            Some(r.max_session_duration as i32),
            "{}",
            r.name
        );
        assert_eq!(
            got.permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn()),
            r.permissions_boundary.as_deref(),
            "{}",
            r.name
        );
        let raw = got.assume_role_policy_document().unwrap();
        assert!(
            raw.starts_with("%7B"),
            "IAM returns the trust policy percent-encoded"
        );
        assert!(
            same_policy(&parse_live(raw).unwrap(), &r.trust_policy.to_json()),
            "{} trust policy",
            r.name
        );
        let tags: BTreeMap<String, String> = got
            .tags()
            .iter()
            .map(|t| (t.key().into(), t.value().into()))
            .collect();
        assert_eq!(tags, r.tags, "{} tags", r.name);
        let attached: BTreeSet<String> = iam
            .list_attached_role_policies()
            .role_name(&r.name)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .map(|a| a.policy_arn().unwrap().to_string())
            .collect();
        assert_eq!(attached, r.managed_policy_arns, "{} attachments", r.name);
        let names: BTreeSet<String> = iam
            .list_role_policies()
            .role_name(&r.name)
            .send()
            .await
            .unwrap()
            .policy_names()
            .iter()
            .cloned()
            .collect();
        assert_eq!(
            names,
            r.inline_policies.keys().cloned().collect::<BTreeSet<_>>(),
            "{} inline policies",
            r.name
        );
        for (n, d) in &r.inline_policies {
            let got = iam
                .get_role_policy()
                .role_name(&r.name)
                .policy_name(n)
                .send()
                .await
                .unwrap();
            assert!(
                same_policy(&parse_live(got.policy_document()).unwrap(), &d.to_json()),
                "{} inline {n}",
                r.name
            );
        }
    }
    for p in want.profiles.values() {
        let got = kube
            .get(&p.name)
            .await
            .unwrap_or_else(|e| panic!("Profile {}: {e}", p.name));
        let labels = got.metadata.labels.clone().unwrap_or_default();
        for (k, v) in &p.labels {
            assert_eq!(labels.get(k), Some(v), "Profile {} label {k}", p.name);
        }
        let spec = &got.data["spec"];
        for k in ["owner", "plugins", "resourceQuotaSpec"] {
            assert_eq!(
                spec.get(k),
                p.spec.to_json().get(k),
                "Profile {} spec.{k}",
                p.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_world_to_sample_repo() {
    let (world, repo, iam, kube) = setup("empty world").await;
    let out = apply(&world, &repo);
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains("Apply: 35 done, 0 failed, 0 skipped."),
        "{}",
        text(&out.stdout)
    );
    assert_live_matches(&repo, &iam, &kube).await;

    // Literal spot checks, independent of kftenant's renderer.
    let fd = iam
        .get_role()
        .role_name(repo.role("fraud-detection"))
        .send()
        .await
        .unwrap();
    let trust = parse_live(fd.role().unwrap().assume_role_policy_document().unwrap()).unwrap();
    let subs = &trust["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E:sub"];
    let t = repo.tenant("fraud-detection");
    assert_eq!(
        subs,
        &json!([
            format!("system:serviceaccount:{t}:default-editor"),
            format!("system:serviceaccount:{t}:ml-pipeline-runner"),
            format!("system:serviceaccount:{t}:batch-scoring")
        ])
    );
    assert_eq!(
        trust["Statement"][0]["Principal"]["Federated"],
        json!(format!(
            "arn:aws:iam::{}:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E",
            world.account_id
        ))
    );
    let profile = kube.get(&t).await.unwrap();
    assert_eq!(
        profile.data["spec"]["plugins"][0]["spec"]["awsIamRole"],
        json!(format!(
            "arn:aws:iam::{}:role/kftenant/{}",
            world.account_id,
            repo.role("fraud-detection")
        ))
    );
    // Quantities are written as the strings the Kubeflow controller writes back.
    assert_eq!(
        profile.data["spec"]["resourceQuotaSpec"]["hard"]["requests.nvidia.com/gpu"],
        json!("4")
    );

    // A no-op run reads IAM in a few calls and writes nothing.
    world.proxy.reset();
    assert_converged(&world, &repo);
    let calls = world.proxy.calls();
    assert_eq!(
        calls.get("GetAccountAuthorizationDetails"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(calls.get("ListRoles"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.values().sum::<u64>(),
        2,
        "GAAD + ListRoles, no ListPolicyTags for the marked repo policies: {calls:?}"
    );

    let out = kftenant(&world, &["drift", repo.path()]);
    expect_code(&out, 0);
    // Applying again does nothing.
    let out = apply(&world, &repo);
    expect_code(&out, 0);
    assert!(text(&out.stdout).contains("No changes."));
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_made_drift_is_reported_then_corrected() {
    let (world, repo, iam, kube) = setup("drift").await;
    expect_code(&apply(&world, &repo), 0);
    let want = repo.desired();
    let forecasting = repo.role("forecasting");
    let reco = repo.role("recommendations");

    let mut trust = want.roles[&repo.tenant("forecasting")]
        .trust_policy
        .to_json();
    trust["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E:sub"] =
        json!("system:serviceaccount:intruder:default-editor");
    iam.update_assume_role_policy()
        .role_name(&forecasting)
        .policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name(&reco)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    iam.untag_role()
        .role_name(&forecasting)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    iam.put_role_policy().role_name(&reco).policy_name("feature-store").policy_document(json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}]}).to_string()).send().await.unwrap();
    let nlp = repo.tenant("nlp-research");
    kube.patch(
        &nlp,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resourceQuotaSpec": {"hard": {"cpu": "999"}}}})),
    )
    .await
    .unwrap();

    let out = kftenant(&world, &["drift", repo.path(), "--format", "json"]);
    expect_code(&out, 2);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let drifted: BTreeSet<String> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = [
        format!("iam_role.{forecasting}.trust_policy"),
        format!("iam_role.{reco}.attachment[arn:aws:iam::aws:policy/AdministratorAccess]"),
        format!("iam_role.{forecasting}.tags"),
        format!("iam_role.{reco}.inline_policy[feature-store]"),
        format!("profile.{nlp}"),
    ]
    .into();
    assert_eq!(drifted, expected);
    // Drift changed nothing.
    let attached = iam
        .list_attached_role_policies()
        .role_name(&reco)
        .send()
        .await
        .unwrap();
    assert!(
        attached
            .attached_policies()
            .iter()
            .any(|a| a.policy_arn() == Some("arn:aws:iam::aws:policy/AdministratorAccess"))
    );

    expect_code(&apply(&world, &repo), 0);
    assert_live_matches(&repo, &iam, &kube).await;
    assert_converged(&world, &repo);
    expect_code(&kftenant(&world, &["drift", repo.path()]), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_tenants_are_deleted_profile_first_and_unused_policies_last() {
    let (world, repo, iam, kube) = setup("removal").await;
    // A policy only the sandbox tenant uses.
    std::fs::write(repo.file("policies/sandbox-only.json"), r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}"#).unwrap();
    let sandbox = repo.file("tenants/platform-sandbox.yaml");
    std::fs::write(
        &sandbox,
        std::fs::read_to_string(&sandbox)
            .unwrap()
            .replace("      - ecr-pull", "      - ecr-pull\n      - sandbox-only"),
    )
    .unwrap();
    expect_code(&apply(&world, &repo), 0);
    let sandbox_only = format!(
        "arn:aws:iam::{}:policy/kftenant/sandbox-only",
        world.account_id
    );
    iam.get_policy()
        .policy_arn(&sandbox_only)
        .send()
        .await
        .unwrap();

    std::fs::remove_file(repo.file("policies/sandbox-only.json")).unwrap();
    repo.decommission(&["platform-sandbox", "forecasting"]);
    let out = kftenant(
        &world,
        &["apply", repo.path(), "--auto-approve", "--format", "json"],
    );
    expect_code(&out, 0);
    // The plan JSON, then the report JSON.
    let stdout = text(&out.stdout);
    let mut docs = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let plan = docs.next().unwrap().unwrap();
    let report = docs.next().unwrap().unwrap();
    let order: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    let pos = |a: &str| {
        order
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("{a} not in {order:?}"))
    };
    let sb = repo.tenant("platform-sandbox");
    assert!(
        pos(&format!("profile.{sb}")) < pos(&format!("iam_role.{}", repo.role("platform-sandbox")))
    );
    assert_eq!(order.last(), Some(&"iam_policy.sandbox-only"));
    assert_eq!(report["summary"]["failed"], 0);

    for (tenant, role) in [
        ("platform-sandbox", repo.role("platform-sandbox")),
        ("forecasting", repo.role("forecasting")),
    ] {
        let err = iam.get_role().role_name(&role).send().await.unwrap_err();
        assert_eq!(err.code(), Some("NoSuchEntity"), "{role} is deleted");
        assert!(
            kube.get_opt(&repo.tenant(tenant)).await.unwrap().is_none(),
            "Profile of {tenant} is deleted"
        );
    }
    assert_eq!(
        iam.get_policy()
            .policy_arn(&sandbox_only)
            .send()
            .await
            .unwrap_err()
            .code(),
        Some("NoSuchEntity")
    );
    // Still used by other tenants: kept.
    iam.get_policy()
        .policy_arn(format!(
            "arn:aws:iam::{}:policy/kftenant/ecr-pull",
            world.account_id
        ))
        .send()
        .await
        .unwrap();
    assert_live_matches(&repo, &iam, &kube).await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn unmanaged_role_and_profile_are_conflicts_and_untouched() {
    let (world, repo, iam, kube) = setup("conflicts").await;
    let role = repo.role("forecasting");
    let foreign_trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}).to_string();
    iam.create_role()
        .role_name(&role)
        .path("/kftenant/")
        .assume_role_policy_document(&foreign_trust)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("owner")
                .value("someone-else")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
        .send()
        .await
        .unwrap();
    let before_role = format!(
        "{:?}",
        iam.get_role()
            .role_name(&role)
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .assume_role_policy_document()
    );
    let nlp = repo.tenant("nlp-research");
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    let mut foreign =
        DynamicObject::new(&nlp, &ApiResource::from_gvk_with_plural(&gvk, "profiles"))
            .data(json!({"spec": {"owner": {"kind": "User", "name": "someone@else"}}}));
    foreign.metadata.labels = Some(world.labels());
    let created = kube.create(&PostParams::default(), &foreign).await.unwrap();

    // Applies what it can; the conflicts were not done: exit 1.
    let out = apply(&world, &repo);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("! iam_role.{role}")), "{stdout}");
    assert!(stdout.contains("2 conflicts not touched."), "{stdout}");
    assert!(stdout.contains(&format!("! profile.{nlp}")), "{stdout}");

    let after_role = format!(
        "{:?}",
        iam.get_role()
            .role_name(&role)
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .assume_role_policy_document()
    );
    assert_eq!(before_role, after_role, "trust policy untouched");
    let got = iam.get_role().role_name(&role).send().await.unwrap();
    assert_eq!(got.role().unwrap().tags().len(), 1, "tags untouched");
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached
            .attached_policies()
            .iter()
            .map(|a| a.policy_arn().unwrap())
            .collect::<Vec<_>>(),
        vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    );
    // The profile controller writes the Profile's status; kftenant must own
    // no field of it.
    let now = kube.get(&nlp).await.unwrap();
    let managers: Vec<_> = now
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        !managers.iter().any(|m| m == "kftenant"),
        "Profile untouched by kftenant: {managers:?}"
    );
    // (The controller itself writes its Go struct back, adding an empty
    // resourceQuotaSpec; the owner is what matters.)
    assert_eq!(
        now.data["spec"]["owner"], created.data["spec"]["owner"],
        "Profile owner untouched"
    );
    // The conflicted tenants are skipped; the rest converged; plan and drift
    // keep reporting the conflicts, and exit 1: what git wants cannot be done.
    let out = kftenant(&world, &["drift", repo.path()]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("kftenant drift report for cluster"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Conflicts") && stdout.contains("2 conflicts."),
        "{stdout}"
    );
    let out = kftenant(&world, &["plan", repo.path(), "--live"]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("match git."), "{stdout}");
    assert!(
        stdout.contains(
            "No changes can be made, yet IAM and the cluster do not match git: 2 conflicts."
        ),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_unmanaged_roles_are_untouched() {
    let (world, repo, iam, kube) = setup("unmanaged roles").await;
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}).to_string();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/" } else { "/kftenant/" };
        iam.create_role()
            .role_name(format!("other-app-{i:03}"))
            .path(path)
            .assume_role_policy_document(&trust)
            .send()
            .await
            .unwrap();
    }
    expect_code(&apply(&world, &repo), 0);
    for i in 0..100 {
        let r = iam
            .get_role()
            .role_name(format!("other-app-{i:03}"))
            .send()
            .await
            .unwrap();
        assert!(r.role().unwrap().tags().is_empty());
        assert!(same_policy(
            &parse_live(r.role().unwrap().assume_role_policy_document().unwrap()).unwrap(),
            &serde_json::from_str(&trust).unwrap()
        ));
    }
    assert_live_matches(&repo, &iam, &kube).await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_faults_still_converge_with_bounded_calls() {
    let (world, repo, iam, kube) = setup("faults").await;
    const WRITES: &[&str] = &[
        "CreateRole",
        "CreatePolicy",
        "AttachRolePolicy",
        "PutRolePolicy",
    ];
    for (i, a) in WRITES.iter().enumerate() {
        world
            .proxy
            .add_fault(FaultRule::throttle(a).rate(0.3, 7 + i as u64));
    }
    world
        .proxy
        .add_fault(FaultRule::service_failure("CreateRole").next(2));
    world
        .proxy
        .add_fault(FaultRule::service_failure("PutRolePolicy").next(1));
    expect_code(&apply(&world, &repo), 0);
    let counts = world.proxy.counts();
    let throttled: u64 = counts.values().map(|c| c.throttled).sum();
    let failures: u64 = counts.values().map(|c| c.service_failures).sum();
    assert!(
        throttled > 0 && failures == 3,
        "faults were injected: {counts:?}"
    );
    let calls: u64 = counts.values().map(|c| c.calls).sum();
    // 29 changes plus reads: bounded well below an unbounded retry loop.
    assert!(calls < 150, "{calls} calls: {counts:?}");
    world.proxy.clear_faults();
    assert_live_matches(&repo, &iam, &kube).await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanently_failing_tenant_does_not_stop_the_others() {
    let (world, repo, iam, kube) = setup("partial failure").await;
    let sandbox = repo.file("tenants/platform-sandbox.yaml");
    std::fs::write(
        &sandbox,
        std::fs::read_to_string(&sandbox).unwrap().replace(
            "      - ecr-pull",
            "      - arn:aws:iam::aws:policy/DoesNotExistAnywhere\n      - ecr-pull",
        ),
    )
    .unwrap();
    // A managed policy that does not exist is known before anything is
    // written (one bulk ListPolicies): that tenant is a conflict and is
    // skipped whole, every other tenant converges, and the run exits 1.
    let out = kftenant(&world, &["apply", repo.path(), "--auto-approve"]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("DoesNotExistAnywhere") && stdout.contains("1 conflict"),
        "{stdout}"
    );
    let sb = repo.tenant("platform-sandbox");
    assert!(!stdout.contains(&format!("+ profile.{sb}")), "{stdout}");
    let want = repo.desired();
    for (t, r) in &want.roles {
        let got = iam.get_role().role_name(&r.name).send().await;
        assert_eq!(got.is_ok(), *t != sb, "{t}: role");
        let p = kube.get_opt(t).await.unwrap();
        assert_eq!(p.is_some(), *t != sb, "{t}: Profile");
    }
    // Fixing git converges the rest with nothing else to do.
    std::fs::write(
        &sandbox,
        std::fs::read_to_string(&sandbox)
            .unwrap()
            .replace("      - arn:aws:iam::aws:policy/DoesNotExistAnywhere\n", ""),
    )
    .unwrap();
    expect_code(&apply(&world, &repo), 0);
    assert_live_matches(&repo, &iam, &kube).await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_adopted_by_its_tags_is_managed_and_its_tags_are_read() {
    let (world, repo, iam, _kube) = setup("adopted policy").await;
    let want = repo.desired();
    let p = &want.policies["ecr-pull"];
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    // Made by hand before kftenant (no marker), tagged to be adopted, with an
    // older document and a stray tag.
    let old = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]});
    iam.create_policy()
        .policy_name(&p.name)
        .path(&p.path)
        .policy_document(old.to_string())
        .tags(tag(TAG_MANAGED_BY, MANAGER))
        .tags(tag(TAG_CLUSTER, &want.cluster))
        .tags(tag("stray", "1"))
        .send()
        .await
        .unwrap();

    let out = apply(&world, &repo);
    expect_code(&out, 0);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("! iam_policy."), "no conflict: {stdout}");
    assert!(
        stdout.contains(&format!("~ iam_policy.{}", p.name)),
        "{stdout}"
    );
    let got = iam.get_policy().policy_arn(&p.arn).send().await.unwrap();
    let got = got.policy().unwrap();
    assert_eq!(got.default_version_id(), Some("v2"), "a new version");
    let v = iam
        .get_policy_version()
        .policy_arn(&p.arn)
        .version_id("v2")
        .send()
        .await
        .unwrap();
    let doc = parse_live(v.policy_version().unwrap().document().unwrap()).unwrap();
    assert!(
        same_policy(&doc, &p.document.to_json()),
        "the document from git"
    );
    assert_eq!(got.description(), None, "a description cannot change");
    let mut tags: Vec<_> = got.tags().iter().map(|t| t.key().to_string()).collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![TAG_CLUSTER, TAG_MANAGED_BY],
        "the stray tag removed"
    );

    // Converged; the unmarked policy costs one tag read, the marked ones none.
    world.proxy.reset();
    assert_converged(&world, &repo);
    let calls = world.proxy.calls();
    assert_eq!(calls.get("ListPolicyTags"), Some(&1), "{calls:?}");
    assert_eq!(calls.values().sum::<u64>(), 3, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_and_per_role_observation_agree() {
    let (world, repo, _iam, _kube) = setup("observe modes").await;
    expect_code(&apply(&world, &repo), 0);
    let dir = tempfile::tempdir().unwrap();
    let (bulk, per_role) = (
        dir.path().join("bulk.json"),
        dir.path().join("per-role.json"),
    );
    world.proxy.reset();
    expect_code(
        &kftenant(
            &world,
            &["observe", repo.path(), "--out", bulk.to_str().unwrap()],
        ),
        0,
    );
    let bulk_calls: u64 = world.proxy.calls().values().sum();
    world.proxy.reset();
    expect_code(
        &kftenant(
            &world,
            &[
                "observe",
                repo.path(),
                "--iam-mode",
                "per-role",
                "--out",
                per_role.to_str().unwrap(),
            ],
        ),
        0,
    );
    let per_role_calls: u64 = world.proxy.calls().values().sum();
    let (a, b) = (
        std::fs::read_to_string(&bulk).unwrap(),
        std::fs::read_to_string(&per_role).unwrap(),
    );
    let first_diff = a.lines().zip(b.lines()).position(|(x, y)| x != y);
    assert!(
        a == b,
        "the observation paths disagree, first at line {first_diff:?}: bulk {:?} vs per-role {:?}",
        first_diff.map(|i| a.lines().nth(i)),
        first_diff.map(|i| b.lines().nth(i))
    );
    assert!(
        per_role_calls > 5 * bulk_calls,
        "bulk {bulk_calls} vs per-role {per_role_calls}"
    );
    // The snapshot feeds `plan --observed`, which agrees the world is converged.
    expect_code(
        &kftenant(
            &world,
            &["plan", repo.path(), "--observed", bulk.to_str().unwrap()],
        ),
        0,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_plan_is_refused_once_the_world_moved() {
    let (world, repo, iam, _kube) = setup("stale plan").await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let out = kftenant(
        &world,
        &[
            "plan",
            repo.path(),
            "--live",
            "--format",
            "json",
            "--out",
            plan.to_str().unwrap(),
        ],
    );
    expect_code(&out, 2);
    // Someone creates a repo policy by hand in between.
    iam.create_policy().policy_name("datalake-read").path("/kftenant/").policy_document(r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#).send().await.unwrap();
    let out = kftenant(
        &world,
        &[
            "apply",
            repo.path(),
            "--auto-approve",
            "--plan-file",
            plan.to_str().unwrap(),
        ],
    );
    expect_code(&out, 1);
    assert!(
        text(&out.stderr).contains("stale plan"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        iam.list_roles()
            .path_prefix("/kftenant/")
            .send()
            .await
            .unwrap()
            .roles()
            .len(),
        0,
        "nothing applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_plan_applies_when_fresh() {
    let (world, repo, iam, kube) = setup("fresh plan").await;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    expect_code(
        &kftenant(
            &world,
            &[
                "plan",
                repo.path(),
                "--live",
                "--format",
                "json",
                "--out",
                plan.to_str().unwrap(),
            ],
        ),
        2,
    );
    expect_code(
        &kftenant(
            &world,
            &[
                "apply",
                repo.path(),
                "--auto-approve",
                "--plan-file",
                plan.to_str().unwrap(),
            ],
        ),
        0,
    );
    assert_live_matches(&repo, &iam, &kube).await;
    assert_converged(&world, &repo);
}
