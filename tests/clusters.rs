//! Repositories of several clusters, through the binary: `sample-clusters/`
//! planned against empty and converged worlds, `--cluster`, per-cluster
//! summaries and exit codes, removing a tenant from one cluster, and a pull
//! request that changes a tenant every cluster has. (The same against two
//! real API servers and one IAM account: tests/live_clusters.rs.)

mod support;

use kftenant::model::{self, DirSource};
use kftenant::plan::desired;
use kftenant::plan::observed::Observed;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::repo::copy_dir;
use support::text;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kftenant(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("kftenant runs")
}

/// A copy of sample-clusters, with a converged snapshot of each cluster
/// written beside it (`<cluster>.json`).
fn converged_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_dir(&root().join("sample-clusters"), &repo);
    for r in model::load_all(&DirSource::new(&repo)).unwrap() {
        let want = desired::render(&r);
        std::fs::write(
            tmp.path().join(format!("{}.json", r.config.cluster.name)),
            Observed::converged(&want).to_json(),
        )
        .unwrap();
    }
    (tmp, repo)
}

fn plan_cluster(tmp: &Path, repo: &Path, cluster: &str) -> (Option<i32>, Json) {
    let snapshot = tmp.join(format!("{cluster}.json"));
    let out = kftenant(&[
        "plan",
        repo.to_str().unwrap(),
        "--cluster",
        cluster,
        "--observed",
        snapshot.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), plan)
}

fn addresses(plan: &Json) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_cluster_is_validated_and_planned_at_once() {
    let out = kftenant(&["validate", "sample-clusters"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("sample-clusters: valid (3 clusters: dev 3 tenants, prod 3 tenants, staging 2 tenants; 3 shared policies)"),
        "{stdout}"
    );
    assert!(stdout.contains("\n  tenants/platform-sandbox.yaml: platform-sandbox (dev)\n"));
    assert!(stdout.contains("\n  tenants/forecasting.yaml: forecasting\n"));

    let out = kftenant(&["plan", "sample-clusters", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["format_version"], 2);
    let plans = all["clusters"].as_array().unwrap();
    let names: Vec<&str> = plans
        .iter()
        .map(|p| p["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "prod", "staging"]);
    // Each role trusts its own cluster's OIDC issuer, in its own account.
    for p in plans {
        let cluster = p["cluster"].as_str().unwrap();
        let issuer = match cluster {
            "dev" => "DEV0000",
            "staging" => "STAGING0",
            _ => "PROD0000",
        };
        let account = if cluster == "prod" {
            "222222222222"
        } else {
            "111111111111"
        };
        let roles: Vec<&Json> = p["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["operation"]["op"] == "create_role")
            .collect();
        assert!(!roles.is_empty());
        for c in roles {
            let trust = c["operation"]["trust_policy"].to_string();
            assert!(trust.contains(issuer), "{cluster}: {trust}");
            assert!(
                trust.contains(&format!("arn:aws:iam::{account}:oidc-provider/")),
                "{cluster}: {trust}"
            );
            assert!(
                c["operation"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("-{cluster}-role"))
            );
        }
    }
    // Where the tenants are.
    let tenants = |i: usize| -> Vec<String> {
        let mut t: Vec<String> = addresses(&plans[i])
            .iter()
            .filter_map(|a| a.strip_prefix("profile.").map(String::from))
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        tenants(0),
        ["forecasting", "nlp-research", "platform-sandbox"]
    );
    assert_eq!(
        tenants(1),
        ["forecasting", "fraud-detection", "nlp-research"]
    );
    assert_eq!(tenants(2), ["forecasting", "fraud-detection"]);
    // The prod override: a larger quota and other members for forecasting.
    let prod_profile = plans[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "profile.forecasting")
        .unwrap();
    let hard = &prod_profile["operation"]["spec"]["resourceQuotaSpec"]["hard"];
    assert_eq!(hard["cpu"], "64");
    assert_eq!(hard["requests.nvidia.com/gpu"], "1");
    assert_eq!(
        hard["memory"], "128Gi",
        "prod's default, from clusters/prod.toml"
    );

    // Markdown: a summary of every cluster at the top, then each plan.
    let out = kftenant(&["plan", "sample-clusters", "--format", "markdown"]);
    let md = text(&out.stdout);
    assert!(
        md.starts_with("### kftenant plan: 3 clusters"),
        "{}",
        &md[..200.min(md.len())]
    );
    let table = md.split("\n\n").nth(1).unwrap();
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(
        table.contains("| `prod` | 19 | 0 | 0 | 0 | 0 | 0 | changes |"),
        "{table}"
    );
    for c in ["dev", "prod", "staging"] {
        assert!(md.contains(&format!("### kftenant plan for cluster `{c}`")));
    }
}

#[test]
fn cluster_narrows_to_one_and_its_output_is_a_one_cluster_plan() {
    let out = kftenant(&[
        "plan",
        "sample-clusters",
        "--cluster",
        "staging",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let p: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["cluster"], "staging");
    assert!(p.get("clusters").is_none());
    let out = kftenant(&["plan", "sample-clusters", "--cluster", "qa"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("clusters: no cluster `qa`: this repository declares dev, prod, staging"),
        "{}",
        text(&out.stderr)
    );
    // What reads one cluster's snapshot says so.
    let out = kftenant(&["plan", "sample-clusters", "--observed", "x.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("name one with --cluster"));
}

#[test]
fn converged_clusters_plan_to_nothing_each() {
    let (tmp, repo) = converged_copy();
    for c in ["dev", "prod", "staging"] {
        let (code, p) = plan_cluster(tmp.path(), &repo, c);
        assert_eq!(code, Some(0), "{c}: {p:#}");
        assert!(p["changes"].as_array().unwrap().is_empty());
    }
}

#[test]
fn removing_a_tenant_from_one_cluster_leaves_the_others_alone() {
    let (tmp, repo) = converged_copy();
    let f = repo.join("tenants/nlp-research.yaml");
    let t = std::fs::read_to_string(&f).unwrap();
    let overrides = t.find("  overrides:").unwrap();
    std::fs::write(
        &f,
        t[..overrides].replace("clusters: [dev, prod]", "clusters: [dev]"),
    )
    .unwrap();
    // prod: the deletion is held until git decommissions the tenant there.
    let (code, p) = plan_cluster(tmp.path(), &repo, "prod");
    assert_eq!(code, Some(1), "{p:#}");
    assert_eq!(p["held"][0]["tenant"], "nlp-research");
    assert!(p["changes"].as_array().unwrap().is_empty(), "{p:#}");
    // dev and staging: nothing.
    for c in ["dev", "staging"] {
        let (code, p) = plan_cluster(tmp.path(), &repo, c);
        assert_eq!(code, Some(0), "{c}: {p:#}");
    }
    // Decommissioned in prod's file: deleted there, and only there.
    let prod = repo.join("clusters/prod.toml");
    let t = std::fs::read_to_string(&prod).unwrap();
    std::fs::write(
        &prod,
        t.replace(
            "max_deletions = 1",
            "max_deletions = 1\ndecommissioned = [\"nlp-research\"]",
        ),
    )
    .unwrap();
    let (code, p) = plan_cluster(tmp.path(), &repo, "prod");
    assert_eq!(code, Some(2), "{p:#}");
    assert_eq!(p["deleted_tenants"], serde_json::json!(["nlp-research"]));
    assert!(
        addresses(&p)
            .iter()
            .all(|a| a.contains("nlp-research") && !a.contains("-dev-")),
        "{p:#}"
    );
    let (code, _) = plan_cluster(tmp.path(), &repo, "dev");
    assert_eq!(code, Some(0));
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs (install git)");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

#[test]
fn a_pull_request_changing_a_shared_tenant_plans_every_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-clusters"), tmp.path());
    git(tmp.path(), &["init", "-q", "-b", "main"]);
    git(tmp.path(), &["add", "-A"]);
    git(tmp.path(), &["commit", "-qm", "base"]);
    let f = tmp.path().join("tenants/forecasting.yaml");
    let t = std::fs::read_to_string(&f).unwrap();
    std::fs::write(
        &f,
        t.replace("cost-center: \"4300\"", "cost-center: \"4301\""),
    )
    .unwrap();
    let out = kftenant(&[
        "plan",
        tmp.path().to_str().unwrap(),
        "--base",
        "main",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all: Json = serde_json::from_slice(&out.stdout).unwrap();
    for p in all["clusters"].as_array().unwrap() {
        let changed = &p["pull_request"]["tenants"];
        assert_eq!(
            changed,
            &serde_json::json!([["forecasting", "changed"]]),
            "{}: {p:#}",
            p["cluster"]
        );
    }
}

/// A tenant on dev and staging (one account) whose dev role and Profile were
/// made before kftenant: dev's plan adopts exactly those, tagged for dev;
/// staging's creates its own role under kftenant's path and adopts nothing.
#[test]
fn adoption_on_one_cluster_touches_only_that_clusters_resources() {
    use kftenant::plan::observed::{ObservedProfile, ObservedRole};
    let (tmp, repo) = converged_copy();
    std::fs::write(
        repo.join("tenants/legacy.yaml"),
        "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: legacy\nspec:\n  owner: lee@acme.example\n  clusters: [dev, staging]\n  overrides:\n    dev:\n      adopt:\n        role: arn:aws:iam::111111111111:role/legacy-dev-role\n        profile: legacy\n      iam:\n        rolePath: /\n",
    )
    .unwrap();
    // Dev's live world: the guide's role at `/` and its Profile, untagged.
    let snapshot = tmp.path().join("dev.json");
    let mut dev = Observed::from_json(&std::fs::read_to_string(&snapshot).unwrap()).unwrap();
    let issuer = "oidc.eks.us-west-2.amazonaws.com/id/DEV0000000000000000000000000000A";
    dev.roles.push(ObservedRole {
        name: "legacy-dev-role".into(),
        path: "/".into(),
        arn: "arn:aws:iam::111111111111:role/legacy-dev-role".into(),
        assume_role_policy_document:
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::111111111111:oidc-provider/{issuer}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{issuer}:aud"): "sts.amazonaws.com"}}}]})
            .to_string(),
        permissions_boundary: None,
        max_session_duration: 3600,
        tags: Default::default(),
        attached_policy_arns: vec![],
        inline_policies: Default::default(),
    });
    dev.profiles.push(ObservedProfile {
        name: "legacy".into(),
        labels: Default::default(),
        annotations: Default::default(),
        spec: serde_json::json!({"owner": {"kind": "User", "name": "lee@acme.example"},
            "plugins": [{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": "arn:aws:iam::111111111111:role/legacy-dev-role"}}]})
        .into(),
        deleting: false,
    });
    std::fs::write(&snapshot, dev.to_json()).unwrap();

    let (code, p) = plan_cluster(tmp.path(), &repo, "dev");
    assert_eq!(code, Some(2), "{p:#}");
    let changes = p["changes"].as_array().unwrap();
    let adopted: Vec<(&str, &str)> = changes
        .iter()
        .filter(|c| c["action"] == "adopt")
        .map(|c| {
            (
                c["operation"]["op"].as_str().unwrap(),
                c["address"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        adopted,
        [
            ("adopt_profile", "profile.legacy"),
            ("adopt_role", "iam_role.legacy-dev-role")
        ]
    );
    let tags = changes
        .iter()
        .find(|c| c["operation"]["op"] == "adopt_role")
        .map(|c| &c["operation"]["tags"])
        .unwrap();
    assert_eq!(tags["set"]["kftenant.io/cluster"], "dev", "{tags:#}");
    // Everything else dev plans is the tenant's own (its boundary, its
    // service account), nothing of another tenant or cluster.
    assert!(
        addresses(&p)
            .iter()
            .all(|a| a.contains("legacy") && !a.contains("staging")),
        "{p:#}"
    );
    assert!(p["conflicts"].as_array().unwrap().is_empty(), "{p:#}");

    // Staging: its own role, created under /kftenant/; no adoption.
    let (code, p) = plan_cluster(tmp.path(), &repo, "staging");
    assert_eq!(code, Some(2), "{p:#}");
    let changes = p["changes"].as_array().unwrap();
    assert!(changes.iter().all(|c| c["action"] == "create"), "{p:#}");
    let role = changes
        .iter()
        .find(|c| c["operation"]["op"] == "create_role")
        .unwrap();
    assert_eq!(role["operation"]["name"], "legacy-staging-role");
    assert_eq!(role["operation"]["path"], "/kftenant/");
    assert!(!p.to_string().contains("legacy-dev-role"), "{p:#}");
}
