//! The whole Kubeflow tenant, with the real Kubeflow profile controller and
//! access management (KFAM) running beside kftenant (see `scripts/stack`):
//! what kftenant writes becomes a working tenant, neither side fights the
//! other, and deletion survives the controller's finalizer. kftenant runs as
//! `deploy/`'s ServiceAccount, so a permission it lacks fails a test here.

mod support;
use support::{expect_code, profiles, text};

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use std::path::PathBuf;
use std::process::Output;
use support::World;
use support::kubeflow::{
    DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT, ROLE_ARN_ANNOTATION, apply_deploy_rbac,
    default_editor_annotations, kfam_bindings, kfam_create_binding, service_account_kubeconfig,
    wait_for_finalizer, wait_for_kfam_bindings, wait_for_namespace,
};
use support::repo::Repo;

/// A world whose kftenant runs as `deploy/`'s ServiceAccount.
struct Tenancy {
    world: World,
    repo: Repo,
    iam: aws_sdk_iam::Client,
    client: kube::Client,
    profiles: Api<DynamicObject>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tenancy {
    async fn new(name: &str) -> Tenancy {
        let world = World::new(name);
        let iam = world.iam_client(5).await;
        world.create_oidc_provider(&iam).await;
        let repo = Repo::new(&world);
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
        Tenancy {
            profiles: profiles(client.clone()),
            world,
            repo,
            iam,
            client,
            kubeconfig,
            _dir: dir,
        }
    }

    fn kftenant(&self, args: &[&str]) -> Output {
        self.world
            .kftenant_as(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kftenant runs")
    }

    fn apply(&self) -> Output {
        self.kftenant(&["apply", self.repo.path(), "--auto-approve", "--stats"])
    }

    /// `plan --live` exits 0 and plans nothing.
    #[track_caller]
    fn assert_converged(&self) {
        let out = self.kftenant(&["plan", self.repo.path(), "--live"]);
        expect_code(&out, 0);
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.repo.file(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    /// Makes the controller reconcile every Profile of this world `times`
    /// times (an annotation of another manager, as any user may add), and
    /// checks after each that kftenant plans nothing: no fight.
    async fn poke_and_stay_converged(&self, times: usize) {
        let names: Vec<String> = self.repo.desired().profiles.keys().cloned().collect();
        for i in 0..times {
            for name in &names {
                let patch = serde_json::json!({"metadata": {"annotations": {"kftenant.test/poke": i.to_string()}}});
                self.profiles
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
            // The controller's reconcile of each: its Update bumps nothing when
            // nothing changed, so wait for its finalizer pass to be seen again.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            self.assert_converged();
        }
    }
}

/// The calls a `--stats` run printed on standard error, by operation.
fn stats(out: &Output) -> std::collections::BTreeMap<String, u64> {
    text(&out.stderr)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_becomes_a_working_kubeflow_namespace_and_nothing_fights() {
    let t = Tenancy::new("kubeflow tenant").await;
    let controller_iam = t.world.controller_iam();
    let out = t.apply();
    expect_code(&out, 0);
    let want = t.repo.desired();
    for (tenant, role) in &want.roles {
        wait_for_namespace(t.world.stack, &t.client, tenant).await;
        wait_for_finalizer(t.world.stack, &t.profiles, tenant).await;
        let annotations = default_editor_annotations(t.world.stack, &t.client, tenant).await;
        assert_eq!(
            annotations.get(ROLE_ARN_ANNOTATION),
            Some(&role.arn),
            "{tenant}"
        );
    }
    // The controller's quota is what git says (defaults merged per key).
    for (tenant, profile) in &want.profiles {
        let spec = profile.spec.to_json();
        let Some(hard) = spec["resourceQuotaSpec"]["hard"]
            .as_object()
            .filter(|h| !h.is_empty())
        else {
            continue;
        };
        let quotas: Api<ResourceQuota> = Api::namespaced(t.client.clone(), tenant);
        let q = quotas.get("kf-resource-quota").await.unwrap();
        let got = serde_json::to_value(q.spec.unwrap().hard.unwrap()).unwrap();
        assert_eq!(
            &got,
            &serde_json::Value::Object(hard.clone()),
            "quota of {tenant}"
        );
    }
    // Extra service accounts carry the role; `default` stays Kubernetes'.
    for (ns, name) in want.service_accounts() {
        let accounts: Api<ServiceAccount> = Api::namespaced(t.client.clone(), ns);
        let sa = accounts.get(name).await.unwrap();
        let annotations = sa.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get(ROLE_ARN_ANNOTATION),
            Some(&want.roles[ns].arn),
            "{ns}/{name}"
        );
        let labels = sa.metadata.labels.unwrap_or_default();
        assert_eq!(
            name != "default",
            labels.contains_key("app.kubernetes.io/managed-by"),
            "{ns}/{name}"
        );
    }
    // KFAM, asked as the dashboard asks, lists exactly git's contributors and the owner.
    for (tenant, access) in &want.access {
        let mut expected: Vec<(String, String)> = access
            .members
            .values()
            .map(|m| (m.user.clone(), m.role.as_str().to_string()))
            .collect();
        expected.push((access.owner.clone(), "admin".into()));
        let expected: Vec<(&str, &str)> = expected
            .iter()
            .map(|(u, r)| (u.as_str(), r.as_str()))
            .collect();
        wait_for_kfam_bindings(t.world.stack, tenant, &access.owner, &expected).await;
    }
    t.assert_converged();
    t.poke_and_stay_converged(3).await;
    // With annotateOnly the controller makes no IAM call at all.
    assert!(
        controller_iam.calls().is_empty(),
        "{:?}",
        controller_iam.calls()
    );
    // A no-op run writes nothing, and reads Kubernetes in a fixed number of LISTs.
    let out = t.apply();
    expect_code(&out, 0);
    let calls = stats(&out);
    assert!(
        calls
            .keys()
            .all(|op| !op.contains("apply") && !op.contains("Put") && !op.contains("Attach")),
        "{calls:?}"
    );
    assert_eq!(calls.get("kube:list"), Some(&5), "{calls:?}");
    assert_eq!(calls.get("kube:get"), None, "no GET per tenant: {calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_annotate_only_off_the_controller_edits_trust_and_deletion_survives_its_finalizer() {
    let t = Tenancy::new("kubeflow trust").await;
    let controller_iam = t.world.controller_iam();
    t.edit(
        "kftenant.toml",
        "annotate_only = true",
        "annotate_only = false",
    );
    expect_code(&t.apply(), 0);
    let want = t.repo.desired();
    for tenant in want.roles.keys() {
        wait_for_finalizer(t.world.stack, &t.profiles, tenant).await;
    }
    t.assert_converged();
    t.poke_and_stay_converged(2).await;
    // The controller read each role; the trust policy kftenant writes already
    // lets default-editor in, so it never rewrote one.
    let counts = controller_iam.counts();
    assert!(
        counts.get("GetRole").copied().unwrap_or(0) >= want.roles.len() as u64,
        "{counts:?}"
    );
    assert_eq!(counts.get("UpdateAssumeRolePolicy"), None, "{counts:?}");

    // Decommission a tenant: its Profile goes first, the controller's finalizer
    // edits the trust policy of the role (which still exists), then the role goes.
    let forecasting = t.repo.tenant("forecasting");
    let role = t.repo.role("forecasting");
    t.repo.decommission(&["forecasting"]);
    let out = t.apply();
    expect_code(&out, 0);
    assert!(
        t.profiles.get_opt(&forecasting).await.unwrap().is_none(),
        "Profile gone"
    );
    let err = t.iam.get_role().role_name(&role).send().await.unwrap_err();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&err),
        Some("NoSuchEntity")
    );
    let revoke: Vec<_> = controller_iam
        .calls()
        .into_iter()
        .filter(|c| {
            c.action == "UpdateAssumeRolePolicy" && c.role.as_deref() == Some(role.as_str())
        })
        .collect();
    assert_eq!(revoke.len(), 1, "the finalizer's trust edit: {revoke:?}");
    assert_eq!(
        revoke[0].status, 200,
        "it succeeded: the role still existed: {revoke:?}"
    );
    // Nothing of this world is left Terminating.
    for p in t.profiles.list(&Default::default()).await.unwrap() {
        if p.metadata
            .labels
            .unwrap_or_default()
            .get("kftenant.io/cluster")
            == Some(&t.repo.p)
        {
            assert!(
                p.metadata.deletion_timestamp.is_none(),
                "{:?} is Terminating",
                p.metadata.name
            );
        }
    }
    t.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_owner_member_and_plugin_changes_converge_and_stay_converged() {
    let t = Tenancy::new("kubeflow changes").await;
    expect_code(&t.apply(), 0);
    let nlp = t.repo.tenant("nlp-research");
    wait_for_finalizer(t.world.stack, &t.profiles, &nlp).await;
    // One pull request: a quota change, a new owner, a member's role, the plugin.
    t.edit("tenants/research.yaml", "cpu: \"64\"", "cpu: \"1500m\"");
    t.edit(
        "tenants/research.yaml",
        "owner: chen.wei@acme.example",
        "owner: new.lead@acme.example",
    );
    t.edit(
        "tenants/research.yaml",
        "{user: tom.becker@acme.example, role: view}",
        "{user: tom.becker@acme.example, role: edit}",
    );
    t.edit(
        "kftenant.toml",
        "annotate_only = true",
        "annotate_only = false",
    );
    let out = t.apply();
    expect_code(&out, 0);
    // The controller takes the new owner only once the namespace says so.
    let stack = t.world.stack;
    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    let ns = namespaces.get(&nlp).await.unwrap();
    assert_eq!(
        ns.metadata.annotations.unwrap()["owner"],
        "new.lead@acme.example"
    );
    let bindings: Api<RoleBinding> = Api::namespaced(t.client.clone(), &nlp);
    support::kubeflow::controller_eventually(
        stack,
        "namespaceAdmin to name the new owner",
        support::kubeflow::KUBEFLOW_TIMEOUT,
        || async {
            let b = bindings.get("namespaceAdmin").await.ok()?;
            (b.subjects
                .unwrap_or_default()
                .first()
                .map(|s| s.name.as_str())
                == Some("new.lead@acme.example"))
            .then_some(())
        },
    )
    .await;
    // The dashboard (KFAM) shows the new owner and the changed member.
    wait_for_kfam_bindings(
        stack,
        &nlp,
        "new.lead@acme.example",
        &[
            ("new.lead@acme.example", "admin"),
            ("li.na@acme.example", "edit"),
            ("tom.becker@acme.example", "edit"),
        ],
    )
    .await;
    let quotas: Api<ResourceQuota> = Api::namespaced(t.client.clone(), &nlp);
    support::kubeflow::controller_eventually(
        stack,
        "the quota to follow git",
        support::kubeflow::KUBEFLOW_TIMEOUT,
        || async {
            let q = quotas.get("kf-resource-quota").await.ok()?;
            let cpu = q.spec?.hard?.get("cpu")?.0.clone();
            (cpu == "1500m").then_some(())
        },
    )
    .await;
    t.assert_converged();
    t.poke_and_stay_converged(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn contributors_added_in_the_dashboard_are_reported_and_pruned_only_when_asked() {
    let t = Tenancy::new("kubeflow dashboard").await;
    expect_code(&t.apply(), 0);
    let vision = t.repo.tenant("vision-research");
    wait_for_finalizer(t.world.stack, &t.profiles, &vision).await;
    wait_for_namespace(t.world.stack, &t.client, &vision).await;
    // The owner adds a contributor in the dashboard.
    let (status, body) = kfam_create_binding(
        t.world.stack,
        "ana.gomez@acme.example",
        &vision,
        "guest@acme.example",
        "edit",
    );
    assert_eq!(status, 200, "{body}");
    let out = t.kftenant(&["drift", t.repo.path()]);
    expect_code(&out, 2);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Access not in git") && stdout.contains("guest@acme.example as edit"),
        "{stdout}"
    );
    // plan says so too, and keeps it: nothing to change.
    let out = t.kftenant(&["plan", t.repo.path(), "--live"]);
    expect_code(&out, 0);
    assert!(text(&out.stdout).contains("guest@acme.example"));
    // Git lists the same contributor: taken over, not recreated.
    t.edit("tenants/research.yaml", "    - {user: raj.patel@acme.example, role: edit}", "    - {user: raj.patel@acme.example, role: edit}\n    - {user: guest@acme.example, role: edit}");
    expect_code(&t.apply(), 0);
    t.assert_converged();
    // Removed from git again: kftenant's now, so it goes.
    t.edit(
        "tenants/research.yaml",
        "\n    - {user: guest@acme.example, role: edit}",
        "",
    );
    expect_code(&t.apply(), 0);
    let bindings = kfam_bindings(t.world.stack, &vision, "ana.gomez@acme.example");
    assert!(
        bindings.iter().all(|b| b.user.name != "guest@acme.example"),
        "{bindings:?}"
    );
    // Another added by hand, and [members] prune_unmanaged: deleted.
    let (status, _) = kfam_create_binding(
        t.world.stack,
        "ana.gomez@acme.example",
        &vision,
        "intruder@acme.example",
        "view",
    );
    assert_eq!(status, 200);
    t.edit(
        "kftenant.toml",
        "[prune]\n",
        "[members]\nprune_unmanaged = true\n\n[prune]\n",
    );
    expect_code(&t.apply(), 0);
    wait_for_kfam_bindings(
        t.world.stack,
        &vision,
        "ana.gomez@acme.example",
        &[
            ("ana.gomez@acme.example", "admin"),
            ("raj.patel@acme.example", "edit"),
        ],
    )
    .await;
    t.assert_converged();
}
