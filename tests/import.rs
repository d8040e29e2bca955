//! Moving an existing installation to kftenant, on the real stack with
//! Kubeflow's profile controller and KFAM running: tenants made exactly as
//! Kubeflow's AWS guide makes them (a role `<profile>-<cluster>-role` at
//! path `/` whose trust policy has only the `aud` condition, AmazonS3FullAccess
//! attached, a Profile with the `AwsIamForServiceAccount` plugin and no
//! `annotateOnly`, applied with kubectl), then `kftenant import`, `validate`,
//! `plan --live` (adoptions only), `apply`, and the checks that nothing was
//! lost, recreated or fought over. kftenant runs as `deploy/`'s
//! ServiceAccount, so a Kubernetes permission it lacks fails here.

mod support;

use aws_sdk_iam::Client as Iam;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::World;
use support::kubeflow::{
    DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT, KUBEFLOW_TIMEOUT, PROFILE_FINALIZER,
    ROLE_ARN_ANNOTATION, apply_deploy_rbac, controller_eventually, kfam_create_binding,
    service_account_kubeconfig, wait_for_default_editor, wait_for_finalizer,
    wait_for_kfam_bindings, wait_for_namespace,
};

const S3_FULL: &str = "arn:aws:iam::aws:policy/AmazonS3FullAccess";
/// The label the test puts on the Profiles it imports (`--selector`).
const IMPORT_LABEL: &str = "kftenant.test/import";

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

fn profiles_api(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    Api::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "profiles"))
}

/// One role as IAM returns it: the raw documents, byte for byte.
#[derive(Debug, Clone, PartialEq)]
struct RoleState {
    trust: String,
    attached: BTreeSet<String>,
    inline: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    path: String,
    role_id: String,
}

async fn role_state(iam: &Iam, name: &str) -> RoleState {
    let role = iam.get_role().role_name(name).send().await.unwrap();
    let role = role.role().unwrap();
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(String::from))
        .collect();
    let mut inline = BTreeMap::new();
    for n in iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .policy_names()
    {
        let doc = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(n)
            .send()
            .await
            .unwrap();
        inline.insert(n.clone(), doc.policy_document().to_string());
    }
    let tags = iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    RoleState {
        trust: role
            .assume_role_policy_document()
            .unwrap_or_default()
            .to_string(),
        attached,
        inline,
        tags,
        path: role.path().to_string(),
        role_id: role.role_id().to_string(),
    }
}

/// The trust policy, decoded.
fn trust_of(state: &RoleState) -> Value {
    kftenant::policy::parse_live(&state.trust).expect("a JSON trust policy")
}

/// A Profile as JSON, without what the API server and the controller write
/// on their own (resourceVersion, managedFields, generation, status).
fn profile_json(p: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(p).unwrap();
    let meta = v["metadata"].as_object_mut().unwrap();
    for k in ["resourceVersion", "managedFields", "generation"] {
        meta.remove(k);
    }
    v.as_object_mut().unwrap().remove("status");
    v
}

/// The guide's world for one test.
struct Guide {
    world: World,
    iam: Iam,
    client: kube::Client,
    profiles: Api<DynamicObject>,
    kubeconfig: PathBuf,
    /// Short unique prefix, also the cluster name.
    p: String,
    dir: tempfile::TempDir,
}

impl Guide {
    async fn new(name: &str) -> Guide {
        let world = World::new(name);
        let iam = world.iam_client(5).await;
        world.create_oidc_provider(&iam).await;
        let client = world.kube_client().await;
        apply_deploy_rbac(world.stack);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = service_account_kubeconfig(
            world.stack,
            &client,
            DEPLOY_NAMESPACE,
            DEPLOY_SERVICE_ACCOUNT,
            &dir.path().join("kubeconfig"),
        )
        .await;
        let mut h: u32 = 2166136261;
        for b in world.prefix.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16777619);
        }
        Guide {
            profiles: profiles_api(client.clone()),
            p: format!("g{:06x}", h & 0xff_ffff),
            world,
            iam,
            client,
            kubeconfig,
            dir,
        }
    }

    fn profile(&self, base: &str) -> String {
        format!("{}-{base}", self.p)
    }

    /// The guide's role name: `<profile>-<cluster>-role`.
    fn role(&self, base: &str) -> String {
        format!("{}-{}-role", self.profile(base), self.p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn kftenant(&self, args: &[&str]) -> Output {
        self.world
            .kftenant_as(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kftenant runs")
    }

    /// The guide's steps for one profile: the trust policy with the `aud`
    /// condition only, `aws iam create-role` at path `/`, `attach-role-policy`
    /// AmazonS3FullAccess, and the Profile applied with kubectl.
    async fn guide_tenant(&self, base: &str, owner: &str, import: bool) {
        let issuer = self.world.stack.oidc_issuer();
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{}:oidc-provider/{issuer}", self.world.account_id)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{issuer}:aud"): "sts.amazonaws.com"}}}]});
        let role = self
            .iam
            .create_role()
            .role_name(self.role(base))
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap();
        let arn = role.role().unwrap().arn().to_string();
        self.iam
            .attach_role_policy()
            .role_name(self.role(base))
            .policy_arn(S3_FULL)
            .send()
            .await
            .expect("AmazonS3FullAccess exists in moto's account (MOTO_IAM_LOAD_MANAGED_POLICIES)");
        let mut labels = format!("    {}: {}\n", support::WORLD_LABEL, self.world.prefix);
        if import {
            labels.push_str(&format!("    {IMPORT_LABEL}: {}\n", self.p));
        }
        let manifest = format!(
            "apiVersion: kubeflow.org/v1\nkind: Profile\nmetadata:\n  name: {}\n  labels:\n{labels}spec:\n  owner:\n    kind: User\n    name: {owner}\n  plugins:\n  - kind: AwsIamForServiceAccount\n    spec:\n      awsIamRole: {arn}\n",
            self.profile(base)
        );
        self.world
            .stack
            .kubectl_stdin(&["apply", "-f", "-"], &manifest);
    }

    async fn uid(&self, base: &str) -> String {
        self.profiles
            .get(&self.profile(base))
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap()
    }

    /// `kftenant import` of this test's Profiles into `out`.
    fn import(&self, out: &str, extra: &[&str]) -> Output {
        let selector = format!("{IMPORT_LABEL}={}", self.p);
        let config = self.path("config.toml");
        let out = self.path(out);
        let mut args = vec![
            "import",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(["--selector", &selector]);
        args.extend(extra);
        self.kftenant(&args)
    }
}

/// Every file under `dir`, by relative path, with its text.
fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Writes `files` under `dir`.
fn write_tree(dir: &Path, files: &BTreeMap<String, String>) {
    for (rel, content) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
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

/// `plan --live --format json` of `repo`: the exit code and the plan.
fn plan_json(g: &Guide, repo: &Path) -> (Option<i32>, Value) {
    let out = g.kftenant(&["plan", repo.to_str().unwrap(), "--live", "--format", "json"]);
    let plan = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plan --format json: {e}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.code(), plan)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guide_installation_is_imported_adopted_in_place_and_nothing_fights() {
    let g = Guide::new("import adopt").await;
    let stack = g.world.stack;
    std::fs::write(
        g.path("config.toml"),
        format!(
            "# The platform team's kftenant.toml: the cluster, nothing else yet.\n[cluster]\nname = \"{}\"\naccount_id = \"{}\"\nregion = \"us-west-2\"\noidc_issuer = \"{}\"\n",
            g.p,
            g.world.account_id,
            stack.oidc_issuer()
        ),
    )
    .unwrap();

    // 1. With the controller able to reach IAM: `alpha`, whose trust policy the
    //    controller edits (adds `sub`), and `legacy`, which nobody imports.
    let registered = g.world.controller_iam();
    g.guide_tenant("alpha", "ana@acme.example", true).await;
    g.guide_tenant("legacy", "leo@acme.example", false).await;
    for base in ["alpha", "legacy"] {
        wait_for_finalizer(stack, &g.profiles, &g.profile(base)).await;
        let role = g.role(base);
        controller_eventually(
            stack,
            &format!("the controller's trust policy edit of {role}"),
            KUBEFLOW_TIMEOUT,
            || async {
                registered
                    .calls()
                    .iter()
                    .any(|c| {
                        c.action == "UpdateAssumeRolePolicy"
                            && c.role.as_deref() == Some(role.as_str())
                            && c.status == 200
                    })
                    .then_some(())
            },
        )
        .await;
    }
    let sub_key = format!("{}:sub", stack.oidc_issuer());
    let alpha = role_state(&g.iam, &g.role("alpha")).await;
    assert!(
        trust_of(&alpha).to_string().contains(&sub_key),
        "the controller added `sub`: {}",
        alpha.trust
    );
    // 2. Without it (the controller's IAM calls fail): `beta` with an extra
    //    inline policy, tags and a longer session; `gamma` as the guide
    //    leaves it, with a contributor added in the dashboard.
    drop(registered);
    g.guide_tenant("beta", "bo@acme.example", true).await;
    g.guide_tenant("gamma", "gil@acme.example", true).await;
    g.iam
        .put_role_policy()
        .role_name(g.role("beta"))
        .policy_name("s3-scratch")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::scratch/beta/*"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    g.iam
        .tag_role()
        .role_name(g.role("beta"))
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("beta")
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("cost-center")
                .value("0042")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    g.iam
        .update_role()
        .role_name(g.role("beta"))
        .max_session_duration(7200)
        .send()
        .await
        .unwrap();
    for base in ["beta", "gamma"] {
        let ns = g.profile(base);
        wait_for_namespace(stack, &g.client, &ns).await;
        wait_for_default_editor(stack, &g.client, &ns, "annotated with its role", |a| {
            a.contains_key(ROLE_ARN_ANNOTATION)
        })
        .await;
    }
    // The controller could not finish them: no finalizer yet.
    for base in ["beta", "gamma"] {
        let p = g.profiles.get(&g.profile(base)).await.unwrap();
        assert!(
            !p.metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == PROFILE_FINALIZER),
            "{base}"
        );
    }
    let gamma = g.profile("gamma");
    let (status, body) = kfam_create_binding(
        stack,
        "gil@acme.example",
        &gamma,
        "guest@acme.example",
        "edit",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        !trust_of(&role_state(&g.iam, &g.role("gamma")).await)
            .to_string()
            .contains(&sub_key),
        "gamma's trust policy is the guide's, `aud` only"
    );
    // A workload in alpha's namespace (no kubelet runs it; it must stay as it is).
    let alpha_ns = g.profile("alpha");
    let cms: Api<ConfigMap> = Api::namespaced(g.client.clone(), &alpha_ns);
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "notebook-state"}, "data": {"k": "v"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(g.client.clone(), &alpha_ns);
    let pod = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "notebook-0"}, "spec": {"serviceAccountName": "default-editor", "containers": [{"name": "nb", "image": "jupyter"}]}})).unwrap(),
        )
        .await
        .unwrap();

    // What there is before kftenant.
    let imported = ["alpha", "beta", "gamma"];
    let mut before = BTreeMap::new();
    let mut uids = BTreeMap::new();
    let namespaces: Api<Namespace> = Api::all(g.client.clone());
    let mut ns_before = BTreeMap::new();
    for base in imported {
        before.insert(base, role_state(&g.iam, &g.role(base)).await);
        uids.insert(base, g.uid(base).await);
        let ns = namespaces.get(&g.profile(base)).await.unwrap();
        ns_before.insert(
            base,
            (ns.metadata.uid, ns.metadata.labels, ns.metadata.annotations),
        );
    }
    let legacy_role = role_state(&g.iam, &g.role("legacy")).await;
    let legacy_profile = profile_json(&g.profiles.get(&g.profile("legacy")).await.unwrap());

    // 3. Import, twice: the same files.
    let out = g.import("repo", &["--format", "json"]);
    expect_code(&out, 0);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenants: Vec<(String, bool, bool)> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["adopt_role"].as_bool().unwrap(),
                t["adopt_profile"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tenants,
        imported
            .iter()
            .map(|b| (g.profile(b), true, true))
            .collect::<Vec<_>>()
    );
    let aud_only: BTreeSet<String> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["message"]
                .as_str()
                .unwrap()
                .contains("no `sub` condition")
        })
        .map(|n| n["profile"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        aud_only,
        [g.profile("beta"), g.profile("gamma")].into(),
        "alpha's trust was edited by the controller: {report:#}"
    );
    expect_code(&g.import("again", &[]), 0);
    let repo = g.path("repo");
    let files = read_tree(&repo);
    assert_eq!(
        files,
        read_tree(&g.path("again")),
        "importing twice gives the same files"
    );
    let beta_file = &files[&format!("tenants/{}.yaml", g.profile("beta"))];
    for want in [
        "    rolePath: /",
        "      - arn:aws:iam::aws:policy/AmazonS3FullAccess",
        "      - name: s3-scratch",
        "    maxSessionDuration: 7200",
        "      cost-center: \"0042\"",
    ] {
        assert!(beta_file.contains(want), "{want:?} in\n{beta_file}");
    }
    assert!(
        files[&format!("tenants/{gamma}.yaml")]
            .contains("    - user: guest@acme.example\n      role: edit"),
        "the dashboard's contributor is imported"
    );

    // 4. It validates, and the live plan lists adoptions only.
    expect_code(&g.kftenant(&["validate", repo.to_str().unwrap()]), 0);
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(2), "{plan:#}");
    let changes: Vec<(String, String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["operation"]["op"].as_str().unwrap().to_string(),
                c["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(changes.iter().all(|(a, _, _)| a == "adopt"), "{changes:#?}");
    let mut want: Vec<(String, String, String)> = Vec::new();
    for base in imported {
        want.push((
            "adopt".into(),
            "adopt_profile".into(),
            format!("profile.{}", g.profile(base)),
        ));
        want.push((
            "adopt".into(),
            "adopt_role".into(),
            format!("iam_role.{}", g.role(base)),
        ));
        if base == "gamma" {
            want.push((
                "adopt".into(),
                "apply_member".into(),
                format!("member.{gamma}.user-guest-acme-example-clusterrole-edit"),
            ));
        }
    }
    assert_eq!(changes, want);
    assert_eq!(plan["summary"]["adopt"], want.len());
    assert!(plan["conflicts"].as_array().unwrap().is_empty());

    // 5. Without the adopt blocks, the same world is conflicts, not deletes.
    let stripped: BTreeMap<String, String> = files
        .iter()
        .map(|(p, t)| (p.clone(), strip_adopt(t)))
        .collect();
    write_tree(&g.path("no-adopt"), &stripped);
    let (code, plan) = plan_json(&g, &g.path("no-adopt"));
    assert_eq!(code, Some(1), "{plan:#}");
    assert!(plan["changes"].as_array().unwrap().is_empty(), "{plan:#}");
    let conflicts: BTreeSet<String> = plan["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect();
    let mut expected = BTreeSet::new();
    for base in imported {
        expected.insert(format!("profile.{}", g.profile(base)));
        expected.insert(format!("iam_role.{}", g.role(base)));
    }
    assert_eq!(conflicts, expected);

    // 6. Apply, as deploy/'s ServiceAccount; then nothing to do.
    let out = g.kftenant(&["apply", repo.to_str().unwrap(), "--auto-approve"]);
    expect_code(&out, 0);
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(0), "{plan:#}");

    // Nothing lost, nothing recreated.
    let issuer = stack.oidc_issuer();
    for base in imported {
        let after = role_state(&g.iam, &g.role(base)).await;
        let was = &before[base];
        assert_eq!(after.role_id, was.role_id, "{base}: the same role");
        assert_eq!(after.attached, was.attached, "{base}: attachments");
        assert_eq!(
            after.inline, was.inline,
            "{base}: inline policies, byte for byte"
        );
        for (k, v) in &was.tags {
            assert_eq!(after.tags.get(k), Some(v), "{base}: tag {k}");
        }
        assert_eq!(
            after.tags.get("kftenant.io/managed-by").map(String::as_str),
            Some("kftenant")
        );
        assert_eq!(after.tags.get("kftenant.io/cluster"), Some(&g.p));
        // IAM (and the controller) write a one-element list or a string.
        let trust = trust_of(&after);
        let statements = trust["Statement"].as_array().map_or(1, Vec::len);
        let subs =
            match &trust["Statement"][0]["Condition"]["StringEquals"][format!("{issuer}:sub")] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                other => panic!("{base}: no sub list: {other}"),
            };
        assert_eq!(
            (statements, subs),
            (
                1,
                vec![format!(
                    "system:serviceaccount:{}:default-editor",
                    g.profile(base)
                )]
            ),
            "{base}: kftenant's trust policy, default-editor only: {trust}"
        );
        assert_eq!(
            g.uid(base).await,
            uids[base],
            "{base}: the Profile is updated, not recreated"
        );
        let ns = namespaces.get(&g.profile(base)).await.unwrap();
        assert_eq!(
            (ns.metadata.uid, ns.metadata.labels, ns.metadata.annotations),
            ns_before[base],
            "{base}: its namespace"
        );
        let p = g.profiles.get(&g.profile(base)).await.unwrap();
        assert_eq!(
            p.data["spec"]["plugins"][0]["spec"]["annotateOnly"],
            json!(true)
        );
    }
    assert_eq!(before["beta"].inline.len(), 1);
    let cm_after = cms.get("notebook-state").await.unwrap();
    let pod_after = pods.get("notebook-0").await.unwrap();
    assert_eq!(
        (cm_after.metadata.uid, cm_after.metadata.resource_version),
        (cm.metadata.uid, cm.metadata.resource_version),
        "the namespace's workloads are untouched"
    );
    assert_eq!(
        (pod_after.metadata.uid, pod_after.metadata.resource_version),
        (pod.metadata.uid, pod.metadata.resource_version)
    );
    wait_for_kfam_bindings(
        stack,
        &gamma,
        "gil@acme.example",
        &[
            ("gil@acme.example", "admin"),
            ("guest@acme.example", "edit"),
        ],
    )
    .await;
    // The unrelated role and Profile, byte for byte.
    assert_eq!(role_state(&g.iam, &g.role("legacy")).await, legacy_role);
    assert_eq!(
        profile_json(&g.profiles.get(&g.profile("legacy")).await.unwrap()),
        legacy_profile
    );

    // 7. The controller, able to reach IAM again, rewrites no trust policy:
    //    it reconciles the adopted Profiles (its finalizer comes now to the
    //    two it could not finish) and leaves IAM alone.
    let registered = g.world.controller_iam();
    let mark = registered.calls().len();
    let adopted: BTreeMap<&str, RoleState> = {
        let mut m = BTreeMap::new();
        for base in imported {
            m.insert(base, role_state(&g.iam, &g.role(base)).await);
        }
        m
    };
    for base in imported {
        let patch = json!({"metadata": {"annotations": {"kftenant.test/poke": "1"}}});
        g.profiles
            .patch(
                &g.profile(base),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap();
    }
    for base in imported {
        wait_for_finalizer(stack, &g.profiles, &g.profile(base)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rewrites = |calls: &[support::kubeflow::RouterCall]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.action == "UpdateAssumeRolePolicy")
            .filter_map(|c| c.role.clone())
            .collect()
    };
    assert!(rewrites(&registered.calls()[mark..]).is_empty());
    for base in imported {
        assert_eq!(
            role_state(&g.iam, &g.role(base)).await,
            adopted[base],
            "{base}"
        );
    }
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(0), "{plan:#}");

    // 8. Even with `annotate_only = false` the controller accepts kftenant's
    //    trust policy as it is: it reads each role and writes none.
    let cfg = repo.join("kftenant.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[profile]\nannotate_only = false\n")).unwrap();
    let out = g.kftenant(&["apply", repo.to_str().unwrap(), "--auto-approve"]);
    expect_code(&out, 0);
    for base in imported {
        let role = g.role(base);
        controller_eventually(
            stack,
            &format!("the controller's GetRole of {role}"),
            KUBEFLOW_TIMEOUT,
            || async {
                registered.calls()[mark..]
                    .iter()
                    .any(|c| c.action == "GetRole" && c.role.as_deref() == Some(role.as_str()))
                    .then_some(())
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        rewrites(&registered.calls()[mark..]).is_empty(),
        "{:?}",
        registered.calls()
    );
    for base in imported {
        assert_eq!(
            role_state(&g.iam, &g.role(base)).await,
            adopted[base],
            "{base}"
        );
        let p = g.profiles.get(&g.profile(base)).await.unwrap();
        assert!(
            p.metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == PROFILE_FINALIZER)
        );
    }
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(0), "{plan:#}");

    // 9. Once adopted, the adopt blocks may go: still nothing to do.
    for (rel, content) in &files {
        if rel.starts_with("tenants/") {
            std::fs::write(repo.join(rel), strip_adopt(content)).unwrap();
        }
    }
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(0), "{plan:#}");
    assert_eq!(role_state(&g.iam, &g.role("legacy")).await, legacy_role);
}

#[tokio::test(flavor = "multi_thread")]
async fn import_policies_adopts_a_customer_managed_policy_where_it_is() {
    let g = Guide::new("import policies").await;
    let stack = g.world.stack;
    std::fs::write(
        g.path("config.toml"),
        format!(
            "[cluster]\nname = \"{}\"\naccount_id = \"{}\"\nregion = \"us-west-2\"\noidc_issuer = \"{}\"\n",
            g.p,
            g.world.account_id,
            stack.oidc_issuer()
        ),
    )
    .unwrap();
    // The guide's tenant, and a bucket policy of the platform team at `/`.
    g.guide_tenant("delta", "dee@acme.example", true).await;
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::artifacts"}]});
    let name = format!("{}-artifacts", g.p);
    let policy = g
        .iam
        .create_policy()
        .policy_name(&name)
        .policy_document(doc.to_string())
        .send()
        .await
        .unwrap();
    let arn = policy.policy().unwrap().arn().unwrap().to_string();
    assert_eq!(
        arn,
        format!("arn:aws:iam::{}:policy/{name}", g.world.account_id)
    );
    g.iam
        .attach_role_policy()
        .role_name(g.role("delta"))
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    wait_for_namespace(stack, &g.client, &g.profile("delta")).await;
    let before = role_state(&g.iam, &g.role("delta")).await;
    let version = |p: &aws_sdk_iam::operation::get_policy::GetPolicyOutput| {
        p.policy()
            .unwrap()
            .default_version_id()
            .unwrap()
            .to_string()
    };
    let v_before = version(&g.iam.get_policy().policy_arn(&arn).send().await.unwrap());

    // Only the Profile asked for, per-role reads; the policy into policies/.
    let delta = g.profile("delta");
    let out = g.import(
        "repo",
        &[
            "--import-policies",
            "--profile",
            &delta,
            "--iam-mode",
            "per-role",
        ],
    );
    expect_code(&out, 0);
    let repo = g.path("repo");
    let files = read_tree(&repo);
    let file = &files[&format!("tenants/{delta}.yaml")];
    assert!(
        file.contains(&format!("    policies:\n      - {arn}\n")),
        "adopt.policies names it:\n{file}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&files[&format!("policies/{name}.json")]).unwrap(),
        doc
    );
    // An unknown --profile is an error that names it.
    let out = g.import("nope", &["--profile", "no-such-profile"]);
    expect_code(&out, 1);
    assert!(
        text(&out.stderr).contains("no Profile `no-such-profile`"),
        "{}",
        text(&out.stderr)
    );

    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(2), "{plan:#}");
    let ops: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["operation"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, vec!["adopt_policy", "adopt_profile", "adopt_role"]);
    expect_code(
        &g.kftenant(&["apply", repo.to_str().unwrap(), "--auto-approve"]),
        0,
    );
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(0), "{plan:#}");
    // The same policy, at its ARN, its version untouched, now tagged as kftenant's.
    let after = role_state(&g.iam, &g.role("delta")).await;
    assert_eq!(after.attached, before.attached);
    let got = g.iam.get_policy().policy_arn(&arn).send().await.unwrap();
    assert_eq!(version(&got), v_before, "no new version: the same document");
    let tags: BTreeMap<String, String> = g
        .iam
        .list_policy_tags()
        .policy_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_eq!(tags.get("kftenant.io/cluster"), Some(&g.p));
    // A change to policies/<name>.json is now a new version of that policy.
    let edited = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": ["arn:aws:s3:::artifacts", "arn:aws:s3:::artifacts/*"]}]});
    std::fs::write(
        repo.join(format!("policies/{name}.json")),
        edited.to_string(),
    )
    .unwrap();
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(2), "{plan:#}");
    assert_eq!(plan["changes"][0]["operation"]["op"], "update_policy");
    expect_code(
        &g.kftenant(&["apply", repo.to_str().unwrap(), "--auto-approve"]),
        0,
    );
    let got = g.iam.get_policy().policy_arn(&arn).send().await.unwrap();
    assert_ne!(version(&got), v_before);
    let (code, plan) = plan_json(&g, &repo);
    assert_eq!(code, Some(0), "{plan:#}");
}
