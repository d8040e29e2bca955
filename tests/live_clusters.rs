//! One repository, two clusters, one IAM account, on the real stack: the
//! stack's kube-apiserver and a second one (`scripts/stack add-cluster`),
//! each with Kubeflow's profile controller running, and moto.
//!
//! A tenant on both, one on each, a per-cluster override; convergence of
//! both (plans empty with the controllers running); removing the shared
//! tenant from one cluster leaves the other's role and Profile untouched;
//! a change to the shared tenant plans changes on both; a daemon for one
//! cluster reads only its part.

mod support;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use std::path::{Path, PathBuf};
use std::process::Output;
use support::World;

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

fn profiles(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    Api::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "profiles"))
}

/// Two clusters of one repository, on the stack.
struct Two {
    world: World,
    dir: tempfile::TempDir,
    /// Holds `kubeconfig` (outside the repository).
    _kube_dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// Short, unique names: `<id>-a`, `<id>-b`; tenants are `<id>-<name>`.
    id: String,
    iam: aws_sdk_iam::Client,
    a: Api<DynamicObject>,
    b: Api<DynamicObject>,
}

impl Two {
    fn cluster(&self, x: &str) -> String {
        format!("{}-{x}", self.id)
    }
    fn tenant(&self, name: &str) -> String {
        format!("{}-{name}", self.id)
    }
    fn role(&self, tenant: &str, cluster: &str) -> String {
        format!("{}-{}-role", self.tenant(tenant), self.cluster(cluster))
    }
    fn repo(&self) -> &Path {
        self.dir.path()
    }
    fn write(&self, rel: &str, text: &str) {
        let p = self.repo().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn kftenant(&self, args: &[&str]) -> Output {
        self.world
            .kftenant()
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kftenant runs")
    }
    fn tenant_file(&self, name: &str, spec: &str) {
        self.write(
            &format!("tenants/{name}.yaml"),
            &format!(
                "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {}\nspec:\n  owner: {name}@example.com\n{spec}",
                self.tenant(name)
            ),
        );
    }
}

async fn setup(test: &str) -> Two {
    let world = World::new(test);
    let second = support::second_cluster();
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let issuer_b = "oidc.eks.us-east-1.amazonaws.com/id/SECONDCLUSTER0000000000000000000";
    iam.create_open_id_connect_provider()
        .url(format!("https://{issuer_b}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("the second cluster's OIDC provider");
    let id = format!("m{}", &world.account_id[world.account_id.len() - 7..]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let ctx_a = format!("ctx-{id}-a");
    let ctx_b = format!("ctx-{id}-b");
    support::merged_kubeconfig(
        &kubeconfig,
        &[(&ctx_a, world.stack.kubeconfig()), (&ctx_b, second)],
    );
    let repo = tempfile::tempdir().unwrap();
    let two = Two {
        a: profiles(support::kube_client_at(world.stack.kubeconfig()).await),
        b: profiles(support::kube_client_at(second).await),
        world,
        dir: repo,
        _kube_dir: dir,
        kubeconfig,
        id,
        iam,
    };
    two.write(
        "kftenant.toml",
        &format!(
            "[cluster]\naccount_id = \"{}\"\nregion = \"us-east-1\"\n\n[iam]\npolicy_name_template = \"{{policy}}-{{cluster}}\"\n\n[prune]\nmax_deletions = 2\n",
            two.world.account_id
        ),
    );
    two.write(
        &format!("clusters/{}.toml", two.cluster("a")),
        &format!(
            "[cluster]\noidc_issuer = \"{}\"\nkube_context = \"{ctx_a}\"\nlabels = {{ env = \"dev\" }}\n",
            two.world.stack.oidc_issuer()
        ),
    );
    two.write(
        &format!("clusters/{}.toml", two.cluster("b")),
        &format!(
            "[cluster]\noidc_issuer = \"{issuer_b}\"\nkube_context = \"{ctx_b}\"\nlabels = {{ env = \"prod\" }}\n\n[profile.default_resource_quota.hard]\ncpu = \"16\"\n"
        ),
    );
    two.write(
        "policies/read.json",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#,
    );
    two.tenant_file(
        "shared",
        &format!(
            "  iam:\n    managedPolicies: [read]\n    tags: {{team: ml}}\n  overrides:\n    {}:\n      profile:\n        resourceQuota:\n          hard: {{cpu: '64'}}\n",
            two.cluster("b")
        ),
    );
    two.tenant_file("only-a", &format!("  clusters: [{}]\n", two.cluster("a")));
    two.tenant_file(
        "only-b",
        "  clusterSelector:\n    matchLabels: {env: prod}\n",
    );
    two
}

async fn role_tags(iam: &aws_sdk_iam::Client, role: &str) -> Option<Vec<(String, String)>> {
    let r = iam.get_role().role_name(role).send().await.ok()?;
    let mut tags: Vec<(String, String)> = r
        .role()
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    Some(tags)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clusters_in_one_account_converge_and_never_touch_each_other() {
    let t = setup("two clusters").await;
    let repo = t.repo().to_str().unwrap().to_string();
    expect_code(&t.kftenant(&["validate", &repo]), 0);
    let out = t.kftenant(&["apply", &repo, "--auto-approve"]);
    expect_code(&out, 0);
    // Both converge, with each cluster's profile controller running.
    let out = t.kftenant(&["plan", &repo, "--live"]);
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).contains(&format!(
            "2 clusters:\n  {}: No changes. IAM and the cluster match git.\n  {}: No changes.",
            t.cluster("a"),
            t.cluster("b")
        )),
        "{}",
        text(&out.stdout)
    );

    // Where everything is: roles tagged with their cluster, each trusting its
    // own issuer; Profiles on their own API servers.
    for (tenant, cluster, present) in [
        ("shared", "a", true),
        ("shared", "b", true),
        ("only-a", "a", true),
        ("only-a", "b", false),
        ("only-b", "a", false),
        ("only-b", "b", true),
    ] {
        let tags = role_tags(&t.iam, &t.role(tenant, cluster)).await;
        assert_eq!(tags.is_some(), present, "{tenant} on {cluster}");
        if let Some(tags) = tags {
            assert!(tags.contains(&("kftenant.io/cluster".into(), t.cluster(cluster))));
        }
        let api = if cluster == "a" { &t.a } else { &t.b };
        let p = api.get_opt(&t.tenant(tenant)).await.unwrap();
        assert_eq!(p.is_some(), present, "Profile {tenant} on {cluster}");
    }
    let trust = |role: String| {
        let iam = t.iam.clone();
        async move {
            let r = iam.get_role().role_name(role).send().await.unwrap();
            // IAM returns documents percent-encoded.
            kftenant::policy::parse_live(r.role().unwrap().assume_role_policy_document().unwrap())
                .unwrap()
                .to_string()
        }
    };
    assert!(trust(t.role("shared", "b")).await.contains("SECONDCLUSTER"));
    assert!(
        trust(t.role("shared", "a"))
            .await
            .contains(t.world.stack.oidc_issuer())
    );
    // The override: cpu 64 on b, b's default (16) is replaced; a has no quota.
    let shared_b = t.b.get(&t.tenant("shared")).await.unwrap();
    assert_eq!(
        shared_b.data["spec"]["resourceQuotaSpec"]["hard"]["cpu"],
        "64"
    );
    let only_b = t.b.get(&t.tenant("only-b")).await.unwrap();
    assert_eq!(
        only_b.data["spec"]["resourceQuotaSpec"]["hard"]["cpu"],
        "16"
    );
    let shared_a = t.a.get(&t.tenant("shared")).await.unwrap();
    assert!(
        shared_a.data["spec"]["resourceQuotaSpec"]
            .get("hard")
            .is_none_or(|h| h.get("cpu").is_none())
    );

    // A change to the shared tenant plans changes on both clusters.
    let f = t.repo().join("tenants/shared.yaml");
    let before = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, before.replace("team: ml", "team: ml-platform")).unwrap();
    let out = t.kftenant(&["plan", &repo, "--live", "--format", "json"]);
    expect_code(&out, 2);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in all["clusters"].as_array().unwrap() {
        let addrs: Vec<&str> = p["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["address"].as_str().unwrap())
            .collect();
        let cluster = p["cluster"].as_str().unwrap();
        let x = if cluster.ends_with("-a") { "a" } else { "b" };
        assert_eq!(
            addrs,
            [format!("iam_role.{}.tags", t.role("shared", x))],
            "{cluster}"
        );
    }
    std::fs::write(&f, &before).unwrap();

    // Remove the shared tenant from b (and decommission it there): b's role
    // and Profile go, a's stay exactly as they were.
    let a_role_before = role_tags(&t.iam, &t.role("shared", "a")).await;
    let a_profile_before = t.a.get(&t.tenant("shared")).await.unwrap();
    let overrides = before.find("  overrides:").unwrap();
    std::fs::write(
        &f,
        format!("{}  clusters: [{}]\n", &before[..overrides], t.cluster("a")),
    )
    .unwrap();
    // Without decommissioning, b's deletion is held and nothing changes.
    let out = t.kftenant(&["plan", &repo, "--live"]);
    expect_code(&out, 1);
    assert!(
        text(&out.stdout).contains(&format!("! {} (", t.tenant("shared"))),
        "{}",
        text(&out.stdout)
    );
    let b_file = t.repo().join(format!("clusters/{}.toml", t.cluster("b")));
    let b_text = std::fs::read_to_string(&b_file).unwrap();
    std::fs::write(
        &b_file,
        format!(
            "{b_text}\n[prune]\ndecommissioned = [\"{}\"]\n",
            t.tenant("shared")
        ),
    )
    .unwrap();
    let out = t.kftenant(&[
        "apply",
        &repo,
        "--auto-approve",
        "--profile-delete-timeout",
        "60",
    ]);
    expect_code(&out, 0);
    assert!(role_tags(&t.iam, &t.role("shared", "b")).await.is_none());
    assert!(t.b.get_opt(&t.tenant("shared")).await.unwrap().is_none());
    assert_eq!(
        role_tags(&t.iam, &t.role("shared", "a")).await,
        a_role_before
    );
    let a_profile_after = t.a.get(&t.tenant("shared")).await.unwrap();
    assert_eq!(a_profile_after.metadata.uid, a_profile_before.metadata.uid);
    assert_eq!(a_profile_after.data["spec"], a_profile_before.data["spec"]);
    expect_code(&t.kftenant(&["plan", &repo, "--live"]), 0);

    // One cluster alone, through the current context of its own kubeconfig
    // (as its daemon would): only its part, converged.
    let out = t
        .world
        .kftenant()
        .env("KUBECONFIG", support::second_cluster())
        .args(["plan", &repo, "--live", "--cluster", &t.cluster("b")])
        .output()
        .unwrap();
    expect_code(&out, 0);
    assert!(
        text(&out.stdout).starts_with(&format!("kftenant plan for cluster `{}`", t.cluster("b")))
    );
}

/// `examples/deploy-per-cluster/` renders (with the stack's kubectl, as
/// `kubectl kustomize` would) a Deployment that runs `kftenant run
/// --cluster=$(KFTENANT_CLUSTER)` with the variable taken from the generated
/// (hashed) settings ConfigMap, which keeps the base's settings and names the
/// cluster, and a ServiceAccount with that cluster's role.
#[test]
fn the_multi_cluster_overlay_runs_the_daemon_for_its_cluster() {
    let stack = support::stack();
    let overlay = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy-per-cluster");
    let rendered = stack.kubectl(&["kustomize", overlay.to_str().unwrap()]);
    let doc = |kind: &str| -> String {
        rendered
            .split("\n---\n")
            .find(|d| d.lines().any(|l| l == format!("kind: {kind}")))
            .unwrap_or_else(|| panic!("no {kind} in:\n{rendered}"))
            .to_string()
    };
    let deployment = doc("Deployment");
    let config_map = doc("ConfigMap");
    let account = doc("ServiceAccount");
    assert!(
        deployment.contains("- --cluster=$(KFTENANT_CLUSTER)"),
        "{deployment}"
    );
    let cm_name = config_map
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(cm_name.starts_with("kftenant-settings-"), "{cm_name}");
    assert!(
        deployment.contains(&format!(
            "key: KFTENANT_CLUSTER\n              name: {cm_name}"
        )),
        "{deployment}"
    );
    for data in ["KFTENANT_CLUSTER: prod", "KFTENANT_REPO: "] {
        assert!(config_map.contains(data), "{config_map}");
    }
    assert!(
        account
            .contains("eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/kftenant-prod"),
        "{account}"
    );
    // The daemon accepts the argument it is given.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = text(&help.stdout);
    assert!(help.contains("--cluster <NAME>"), "{help}");
}
