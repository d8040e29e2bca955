//! Failure modes against the real local stack (issue 12): a stranger taking
//! a name between observation and apply, answers lost after the write
//! landed, reads that fail or crawl, and `kill -9` in the middle of an apply.
//!
//! IAM faults come from the world's counting proxy (tests/support/proxy.rs),
//! which also pages `GetAccountAuthorizationDetails` and `ListRoles` as IAM
//! does; Kubernetes faults from a proxy in front of the API server
//! (tests/support/kube_proxy.rs). Every scenario ends with the world read back
//! in bulk and compared with git exactly (tests/support/check.rs: one role per
//! tenant, attachments, inline policies, policy versions, Profiles) and an
//! empty plan.

mod support;

use aws_sdk_iam::error::ProvideErrorMetadata;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::World;
use support::check::assert_matches_git;
use support::kube_proxy::{KubeFault, KubeProxy, KubeRule};
use support::proxy::{FaultRule, Settings};
use support::repo::Repo;
use support::{expect_code, profiles, text};

/// Runs kftenant against the world, through `kubeconfig` when given (a
/// [`KubeProxy`]'s) instead of the stack's own.
fn kftenant_via(world: &World, kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut command = world.kftenant();
    if let Some(k) = kubeconfig {
        command.env("KUBECONFIG", k);
    }
    command.args(args).output().expect("kftenant runs")
}

fn kftenant(world: &World, args: &[&str]) -> Output {
    kftenant_via(world, None, args)
}

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

async fn setup(name: &str) -> (World, Repo, aws_sdk_iam::Client, Api<DynamicObject>) {
    let world = World::new(name);
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let repo = Repo::new(&world);
    let kube = profiles(world.kube_client().await);
    (world, repo, iam, kube)
}

/// The plan and the apply report of `apply --format json`.
fn plan_and_report(out: &Output) -> (Value, Value) {
    let stdout = text(&out.stdout);
    let mut docs = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let plan = docs.next().expect("a plan").expect("plan JSON");
    let report = docs.next().expect("a report").expect("report JSON");
    (plan, report)
}

/// The outcome of the change at `address` in an apply report.
fn outcome<'a>(report: &'a Value, address: &str) -> &'a Value {
    &report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in {report:#}"))["outcome"]
}

fn tag_count(role: &aws_sdk_iam::operation::get_role::GetRoleOutput) -> usize {
    role.role().unwrap().tags().len()
}

/// Writes a new document for the repo policy `name` (one more action each time).
fn change_policy(repo: &Repo, name: &str, n: usize) {
    let actions: Vec<String> = (0..=n)
        .map(|i| format!("\"s3:GetObjectVersion{i}\""))
        .collect();
    std::fs::write(
        repo.file(&format!("policies/{name}.json")),
        format!(
            r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": [{}], "Resource": "*"}}]}}"#,
            actions.join(", ")
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_taken_between_observation_and_apply_is_a_conflict_and_left_untouched() {
    let (world, repo, iam, kube) = setup("stranger").await;
    let role = repo.role("forecasting");
    // Someone else creates the role and a repo policy after kftenant read the
    // world and just before its own CreateRole / CreatePolicy: the same
    // request without kftenant's tags and marker, so moto answers kftenant's
    // EntityAlreadyExists itself.
    world
        .proxy
        .add_fault(FaultRule::preempt("CreateRole").matching(&format!("RoleName={role}")));
    world
        .proxy
        .add_fault(FaultRule::preempt("CreatePolicy").matching("PolicyName=ecr-pull"));
    let out = kftenant(
        &world,
        &["apply", repo.path(), "--auto-approve", "--format", "json"],
    );
    expect_code(&out, 1);
    let (plan, report) = plan_and_report(&out);
    assert!(
        plan["conflicts"].as_array().unwrap().is_empty(),
        "neither existed when the world was read"
    );
    assert_eq!(world.proxy.action("CreateRole").preempted, 1);
    assert_eq!(world.proxy.action("CreatePolicy").preempted, 1);

    let conflict = |address: &str| {
        let o = outcome(&report, address);
        assert_eq!(o["status"], "failed", "{address}: {o}");
        assert_eq!(o["code"], "Conflict", "{address}: {o}");
        o["message"].as_str().unwrap().to_string()
    };
    let message = conflict(&format!("iam_role.{role}"));
    assert!(
        message.contains("without kftenant's tags") && message.contains("nothing was written"),
        "{message}"
    );
    conflict("iam_policy.ecr-pull");
    // That tenant stops: the rest of its steps are skipped.
    let forecasting = repo.tenant("forecasting");
    for r in report["results"].as_array().unwrap() {
        if r["tenant"] == forecasting.as_str() && r["address"] != format!("iam_role.{role}") {
            assert_eq!(r["outcome"]["status"], "skipped", "{r}");
        }
    }
    // The tenants that attach the stranger's policy are refused it.
    let ecr = format!("arn:aws:iam::{}:policy/kftenant/ecr-pull", world.account_id);
    for t in ["fraud-detection", "platform-sandbox", "recommendations"] {
        conflict(&format!("iam_role.{}.attachment[{ecr}]", repo.role(t)));
        assert!(
            kube.get_opt(&repo.tenant(t)).await.unwrap().is_none(),
            "{t}: skipped after the refused attachment"
        );
    }

    // Nothing was written to either stranger.
    let got = iam.get_role().role_name(&role).send().await.unwrap();
    assert_eq!(tag_count(&got), 0, "no tags on the stranger's role");
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty(), "nothing attached");
    let inline = iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert!(inline.policy_names().is_empty(), "no inline policy");
    let policy = iam.get_policy().policy_arn(&ecr).send().await.unwrap();
    let policy = policy.policy().unwrap();
    assert!(policy.tags().is_empty(), "no tags on the stranger's policy");
    assert_eq!(policy.description().unwrap_or_default(), "", "no marker");
    assert_eq!(policy.attachment_count(), Some(0), "attached to nobody");
    let versions = iam
        .list_policy_versions()
        .policy_arn(&ecr)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "no new version");
    assert!(
        kube.get_opt(&forecasting).await.unwrap().is_none(),
        "no Profile naming the stranger's role"
    );
    // The tenants that need neither converged.
    for t in ["nlp-research", "vision-research"] {
        let r = iam.get_role().role_name(repo.role(t)).send().await.unwrap();
        assert!(tag_count(&r) >= 3, "{t}: its role is kftenant's");
        assert!(
            kube.get_opt(&repo.tenant(t)).await.unwrap().is_some(),
            "{t}"
        );
    }
    // From now on the planner sees them, as conflicts.
    let out = kftenant(&world, &["plan", repo.path(), "--live"]);
    expect_code(&out, 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("! iam_role.{role}")) && stdout.contains("! iam_policy.ecr-pull"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_whose_answer_was_lost_converge_without_duplicates() {
    let (world, repo, iam, kube) = setup("lost answers").await;
    // The write reaches moto, then its answer is lost: the connection drops,
    // or a 500 comes back. The SDK sends it again; kftenant recognises what it
    // made itself (EntityAlreadyExists on a role or policy carrying its marks),
    // and attaching or putting twice is harmless.
    for (action, drops, failures) in [
        ("CreateRole", 2, 1),
        ("CreatePolicy", 1, 1),
        ("AttachRolePolicy", 2, 2),
        ("PutRolePolicy", 1, 1),
    ] {
        world
            .proxy
            .add_fault(FaultRule::drop_response(action).next(drops));
        world
            .proxy
            .add_fault(FaultRule::service_failure_after(action).next(failures));
    }
    let t = Instant::now();
    let out = kftenant(&world, &["apply", repo.path(), "--auto-approve"]);
    expect_code(&out, 0);
    eprintln!("apply with lost answers: {:?}", t.elapsed());
    let counts = world.proxy.counts();
    let lost: u64 = counts.values().map(|c| c.lost_after_forward).sum();
    assert_eq!(lost, 11, "every injected loss happened: {counts:?}");
    let create_role = &counts["CreateRole"];
    assert_eq!(
        (create_role.forwarded, create_role.upstream_errors),
        (6 + 3, 3),
        "6 roles, 3 sent again and answered EntityAlreadyExists: {create_role:?}"
    );
    assert_matches_git(&repo, &iam, &kube, &BTreeMap::new()).await;
    assert_converged(&world, &repo);

    // Policy versions: IAM keeps 5, and CreatePolicyVersion sent twice makes
    // two. Each update below loses its answer (but the first two are clean),
    // and the policy still gains exactly one version per update.
    let arn = format!(
        "arn:aws:iam::{}:policy/kftenant/datalake-read",
        world.account_id
    );
    for update in 1..=6 {
        change_policy(&repo, "datalake-read", update);
        world.proxy.reset();
        match update % 3 {
            0 => world
                .proxy
                .add_fault(FaultRule::drop_response("CreatePolicyVersion")),
            1 => world
                .proxy
                .add_fault(FaultRule::service_failure_after("CreatePolicyVersion")),
            _ => {}
        }
        let t = Instant::now();
        let out = kftenant(&world, &["apply", repo.path(), "--auto-approve"]);
        expect_code(&out, 0);
        eprintln!("update {update}: {:?}", t.elapsed());
        assert_eq!(
            world.proxy.action("CreatePolicyVersion").forwarded,
            1,
            "update {update}: sent once"
        );
        let versions = iam
            .list_policy_versions()
            .policy_arn(&arn)
            .send()
            .await
            .unwrap();
        let mut ids: Vec<(String, bool)> = versions
            .versions()
            .iter()
            .map(|v| (v.version_id().unwrap().to_string(), v.is_default_version()))
            .collect();
        ids.sort_by_key(|(v, _)| v[1..].parse::<u32>().unwrap());
        assert_eq!(ids.len(), (update + 1).min(5), "update {update}: {ids:?}");
        assert_eq!(
            ids.last().unwrap(),
            &(format!("v{}", update + 1), true),
            "update {update}: the new version is the default"
        );
    }
    world.proxy.clear_faults();
    assert_matches_git(
        &repo,
        &iam,
        &kube,
        &BTreeMap::from([("datalake-read".to_string(), 5)]),
    )
    .await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_apply_whose_answer_was_lost_converges() {
    let (world, repo, iam, kube) = setup("lost profile answer").await;
    let proxy = KubeProxy::start(world.stack);
    let path = "/apis/kubeflow.org/v1/profiles/";
    // Two applies land and their answers are lost: kftenant applies again
    // (a server-side apply of the same content changes nothing).
    proxy.add(KubeRule::new(Some("PATCH"), path, KubeFault::ResetAfter).next(1));
    proxy.add(KubeRule::new(Some("PATCH"), path, KubeFault::StatusAfter(500)).next(1));
    let out = kftenant_via(
        &world,
        Some(proxy.kubeconfig()),
        &["apply", repo.path(), "--auto-approve"],
    );
    expect_code(&out, 0);
    let patches: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|l| l.method == "PATCH" && l.path.starts_with(path))
        .collect();
    let lost: Vec<_> = patches.iter().filter(|l| l.fault.is_some()).collect();
    assert_eq!(lost.len(), 2, "{patches:#?}");
    for l in &lost {
        assert!(
            l.upstream_status.is_some_and(|s| (200..300).contains(&s)),
            "the apply landed: {l:?}"
        );
    }
    assert_eq!(patches.len(), 6 + 2, "6 Profiles, 2 applied again");
    assert_matches_git(&repo, &iam, &kube, &BTreeMap::new()).await;

    // A new tenant whose Profile apply keeps losing its answer: the step
    // fails after the last attempt (each of which landed), the rest of that
    // tenant waits, and the next run finds the Profile and does the rest.
    let late = repo.tenant("late");
    std::fs::write(
        repo.file("tenants/late.yaml"),
        format!(
            "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {late}\nspec:\n  owner: late@example.com\n  iam:\n    managedPolicies: [datalake-read]\n    serviceAccounts: [runner]\n"
        ),
    )
    .unwrap();
    proxy.reset_log();
    proxy.add(KubeRule::new(
        Some("PATCH"),
        &format!("{path}{late}"),
        KubeFault::ResetAfter,
    ));
    let out = kftenant_via(
        &world,
        Some(proxy.kubeconfig()),
        &["apply", repo.path(), "--auto-approve", "--format", "json"],
    );
    expect_code(&out, 1);
    let (_, report) = plan_and_report(&out);
    let profile = outcome(&report, &format!("profile.{late}"));
    assert_eq!(profile["status"], "failed", "{profile}");
    for r in report["results"].as_array().unwrap() {
        if r["tenant"] == late.as_str() && r["address"].as_str().unwrap().contains(".runner") {
            assert_eq!(r["outcome"]["status"], "skipped", "{r}");
        }
    }
    let attempts = proxy
        .log()
        .into_iter()
        .filter(|l| l.path.ends_with(&late) && l.method == "PATCH")
        .count();
    assert_eq!(attempts, kftenant::live::KUBE_ATTEMPTS as usize);
    assert!(kube.get_opt(&late).await.unwrap().is_some(), "it landed");
    proxy.clear();
    let out = kftenant_via(
        &world,
        Some(proxy.kubeconfig()),
        &["apply", repo.path(), "--auto-approve"],
    );
    expect_code(&out, 0);
    assert_matches_git(&repo, &iam, &kube, &BTreeMap::new()).await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_throttled_above_a_rate_all_land() {
    let (world, repo, iam, kube) = setup("write rate").await;
    // IAM caps the writes of an account; here at 4 a second (a bucket of 4).
    // kftenant sends 8 tenants' writes at once, is refused, and paces itself.
    world.proxy.set_settings(Settings {
        writes_per_second: Some(4.0),
        write_burst: Some(4.0),
        ..world.proxy.settings()
    });
    world.proxy.reset();
    let started = Instant::now();
    let out = kftenant(&world, &["apply", repo.path(), "--auto-approve"]);
    expect_code(&out, 0);
    let elapsed = started.elapsed();
    let (landed, refused) = world.proxy.writes();
    eprintln!("{landed} writes landed, {refused} refused, in {elapsed:?}");
    assert!(refused > 0, "the rate limit was reached");
    // Paced once refused, retries included: fewer refusals than writes (an
    // unpaced client, retrying after the SDK's random backoff, had more).
    assert!(refused < landed, "{refused} refused for {landed} writes");
    // Every write landed once: as many as the plan of an empty world has
    // IAM changes (the refused ones were sent again).
    let planned = repo
        .desired()
        .roles
        .values()
        .map(|r| 1 + r.managed_policy_arns.len() + r.inline_policies.len())
        .sum::<usize>()
        + repo.desired().policies.len();
    assert_eq!(landed as usize, planned, "{:?}", world.proxy.counts());
    world.proxy.set_settings(Settings {
        writes_per_second: None,
        write_burst: None,
        ..world.proxy.settings()
    });
    assert_matches_git(&repo, &iam, &kube, &BTreeMap::new()).await;
    assert_converged(&world, &repo);
}

/// A fault on one read, in IAM or in Kubernetes.
enum ReadFault {
    Iam(FaultRule),
    Kube(KubeRule),
}

/// What a failed read must leave behind: no write at all, to IAM or Kubernetes.
#[track_caller]
fn assert_nothing_written(world: &World, proxy: &KubeProxy, what: &str) {
    let (iam_writes, _) = world.proxy.writes();
    assert_eq!(
        iam_writes,
        0,
        "{what}: IAM writes: {:?}",
        world.proxy.calls()
    );
    let kube_writes: Vec<_> = proxy.log().into_iter().filter(|l| l.is_write()).collect();
    assert!(
        kube_writes.is_empty(),
        "{what}: Kubernetes writes: {kube_writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_that_fail_plan_nothing_and_change_nothing() {
    let (world, repo, iam, kube) = setup("failed reads").await;
    expect_code(
        &kftenant(&world, &["apply", repo.path(), "--auto-approve"]),
        0,
    );
    // Git now deletes a tenant and changes a policy; 6 roles and 3 policies
    // take 5 pages of GetAccountAuthorizationDetails.
    repo.decommission(&["platform-sandbox"]);
    change_policy(&repo, "datalake-read", 1);
    world.proxy.set_page_size(2);
    let proxy = KubeProxy::start(world.stack);
    let kubeconfig = Some(proxy.kubeconfig());
    let profiles_path = "/apis/kubeflow.org/v1/profiles";
    use ReadFault::{Iam, Kube};
    let scenarios = [
        (
            "GetAccountAuthorizationDetails throttled after its first page",
            Iam(FaultRule::throttle("GetAccountAuthorizationDetails").matching("Marker=")),
        ),
        (
            "GetAccountAuthorizationDetails answering 500 after its first page",
            Iam(FaultRule::service_failure("GetAccountAuthorizationDetails").matching("Marker=")),
        ),
        (
            "GetAccountAuthorizationDetails reset after its first page",
            Iam(FaultRule::drop_connection("GetAccountAuthorizationDetails").matching("Marker=")),
        ),
        (
            "ListRoles answering 500",
            Iam(FaultRule::service_failure("ListRoles")),
        ),
        ("ListRoles throttled", Iam(FaultRule::throttle("ListRoles"))),
        (
            "the Profiles LIST answering 429",
            Kube(KubeRule::new(
                Some("GET"),
                profiles_path,
                KubeFault::Status(429),
            )),
        ),
        (
            "the Profiles LIST answering 500",
            Kube(KubeRule::new(
                Some("GET"),
                profiles_path,
                KubeFault::Status(500),
            )),
        ),
        (
            "the Profiles LIST reset",
            Kube(KubeRule::new(Some("GET"), profiles_path, KubeFault::Reset)),
        ),
        (
            "the Namespaces LIST reset",
            Kube(KubeRule::new(
                Some("GET"),
                "/api/v1/namespaces",
                KubeFault::Reset,
            )),
        ),
    ];
    for (what, fault) in scenarios {
        world.proxy.reset();
        proxy.clear();
        proxy.reset_log();
        match fault {
            Iam(rule) => world.proxy.add_fault(rule),
            Kube(rule) => proxy.add(rule),
        }
        // Each rule fires on every attempt, so the read fails however often
        // it is retried; one IAM attempt keeps the test short.
        for args in [
            vec![
                "apply",
                repo.path(),
                "--auto-approve",
                "--aws-max-attempts",
                "1",
            ],
            vec!["plan", repo.path(), "--live", "--aws-max-attempts", "1"],
        ] {
            let out = kftenant_via(&world, kubeconfig, &args);
            expect_code(&out, 1);
            assert!(
                out.stdout.is_empty(),
                "{what}: `{}` planned from a partial world:\n{}",
                args[0],
                text(&out.stdout)
            );
            let stderr = text(&out.stderr);
            assert!(stderr.starts_with("error: "), "{what}: {stderr}");
            eprintln!("{what}: {}", stderr.trim_end());
        }
        assert_nothing_written(&world, &proxy, what);
    }
    // Nothing was deleted or changed.
    iam.get_role()
        .role_name(repo.role("platform-sandbox"))
        .send()
        .await
        .expect("the decommissioned tenant's role is still there");
    assert!(
        kube.get_opt(&repo.tenant("platform-sandbox"))
            .await
            .unwrap()
            .is_some(),
        "and its Profile"
    );
    let arn = format!(
        "arn:aws:iam::{}:policy/kftenant/datalake-read",
        world.account_id
    );
    let versions = iam
        .list_policy_versions()
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "no new policy version");

    // Once the reads work, the next run does it all.
    world.proxy.reset();
    proxy.clear();
    let out = kftenant_via(
        &world,
        kubeconfig,
        &["apply", repo.path(), "--auto-approve"],
    );
    expect_code(&out, 0);
    let err = iam
        .get_role()
        .role_name(repo.role("platform-sandbox"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchEntity"));
    assert_matches_git(
        &repo,
        &iam,
        &kube,
        &BTreeMap::from([("datalake-read".to_string(), 2)]),
    )
    .await;
    assert_converged(&world, &repo);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_briefly_failing_reads_still_plan_from_the_whole_world() {
    let (world, repo, iam, kube) = setup("slow reads").await;
    expect_code(
        &kftenant(&world, &["apply", repo.path(), "--auto-approve"]),
        0,
    );
    repo.decommission(&["platform-sandbox"]);
    world.proxy.set_page_size(2);
    let slow = Duration::from_millis(600);
    for rule in [
        FaultRule::latency("GetAccountAuthorizationDetails", slow),
        FaultRule::latency("ListRoles", slow),
        FaultRule::throttle("GetAccountAuthorizationDetails")
            .matching("Marker=")
            .next(2),
        FaultRule::service_failure("ListRoles").next(1),
        FaultRule::drop_connection("GetAccountAuthorizationDetails")
            .matching("Marker=")
            .next(1),
    ] {
        world.proxy.add_fault(rule);
    }
    let proxy = KubeProxy::start(world.stack);
    proxy.add(KubeRule::new(
        Some("GET"),
        "/apis/kubeflow.org/v1/profiles",
        KubeFault::Latency(slow),
    ));
    let started = Instant::now();
    let out = kftenant_via(
        &world,
        Some(proxy.kubeconfig()),
        &["apply", repo.path(), "--auto-approve", "--format", "json"],
    );
    expect_code(&out, 0);
    let (plan, _) = plan_and_report(&out);
    assert_eq!(
        plan["deleted_tenants"],
        serde_json::json!([repo.tenant("platform-sandbox")]),
        "the plan saw the whole world: only the decommissioned tenant goes"
    );
    let gaad = world.proxy.action("GetAccountAuthorizationDetails");
    assert_eq!((gaad.throttled, gaad.dropped), (2, 1), "{gaad:?}");
    assert!(gaad.forwarded >= 5, "every page was read: {gaad:?}");
    let list_roles = world.proxy.action("ListRoles");
    assert_eq!(list_roles.service_failures, 1, "{list_roles:?}");
    eprintln!("apply with slow, failing reads: {:?}", started.elapsed());
    world.proxy.clear_faults();
    assert_matches_git(&repo, &iam, &kube, &BTreeMap::new()).await;
    assert_converged(&world, &repo);
}

/// A small deterministic generator for the kill points, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Tenants of the kill tests.
const KILL_TENANTS: usize = 200;
/// Kills per kill test.
const KILLS: usize = 20;
/// 21 CreatePolicy and 5 writes per tenant: 1,021 IAM writes in all; 20
/// runs killed after at most 45 writes each (and a few more sent while the
/// kill is on its way) leave some for the last run.
const MAX_WRITES_PER_RUN: u64 = 45;
/// The shared policies git changes half-way through the kills.
const CHANGED_POLICIES: [&str; 3] = ["shared-3", "shared-7", "shared-11"];

/// A 200-tenant world that kftenant is killed in, with things it must
/// never touch.
struct KillWorld {
    world: World,
    repo: Repo,
    iam: aws_sdk_iam::Client,
    kube: Api<DynamicObject>,
    /// Someone else's policy under kftenant's path, attached to the two
    /// roles in [`OTHER_ROLES`].
    theirs: String,
    started: Instant,
}

/// Roles kftenant does not own: one under its path, one outside it.
const OTHER_ROLES: [(&str, &str); 2] = [("other-app-a", "/kftenant/"), ("other-app-b", "/")];

impl KillWorld {
    async fn new(name: &str) -> KillWorld {
        let started = Instant::now();
        let world = World::new(name);
        let iam = world.iam_client(5).await;
        world.create_oidc_provider(&iam).await;
        let repo = Repo::synthetic(&world, KILL_TENANTS);
        // Without the extra service account, which kftenant annotates only
        // once the Kubeflow controller has made the namespace: on a busy
        // shared stack it makes about one a second, which would make this
        // test minutes longer (that wait is tested in tests/kubeflow.rs).
        for e in std::fs::read_dir(repo.file("tenants")).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                &path,
                text.replace("    serviceAccounts: [ml-pipeline-runner]\n", ""),
            )
            .unwrap();
        }
        let kube = profiles(world.kube_client().await);
        let trust = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"#;
        let theirs = iam
            .create_policy()
            .policy_name("not-kftenants")
            .path("/kftenant/")
            .policy_document(r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}"#)
            .send()
            .await
            .unwrap();
        let theirs = theirs.policy().unwrap().arn().unwrap().to_string();
        for (name, path) in OTHER_ROLES {
            iam.create_role()
                .role_name(name)
                .path(path)
                .assume_role_policy_document(trust)
                .send()
                .await
                .unwrap();
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(&theirs)
                .send()
                .await
                .unwrap();
        }
        KillWorld {
            world,
            repo,
            iam,
            kube,
            theirs,
            started,
        }
    }

    /// Kills what `spawn` starts (`kftenant apply`, or the daemon) with
    /// SIGKILL, [`KILLS`] times, each time at a random point, starting it
    /// again each time. A kill point is a random number of IAM writes into
    /// the run (counted by the proxy, so the points spread over the apply
    /// however fast the machine is), or for every fifth run a random time,
    /// which mostly lands while it reads the world (or, for the daemon,
    /// clones or fetches). Profile applies run among the IAM writes of
    /// other tenants, so kills land between them too. Half-way,
    /// `change_policies` (git changes [`CHANGED_POLICIES`]) runs, so policy
    /// versions are written, and killed, as well.
    fn kill_repeatedly(
        &self,
        seed: u64,
        mut spawn: impl FnMut() -> std::process::Child,
        mut change_policies: impl FnMut(),
    ) {
        let mut rng = Rng(seed);
        let (mut kills_among_writes, mut kill_points) = (0, Vec::new());
        for kill in 0..KILLS {
            if kill == KILLS / 2 {
                change_policies();
            }
            let (writes_before, _) = self.world.proxy.writes();
            let by_time = kill % 5 == 4;
            let after_writes = 1 + (rng.next_f64() * MAX_WRITES_PER_RUN as f64) as u64;
            let after_time = Duration::from_millis(200 + (rng.next_f64() * 2000.0) as u64);
            let run_started = Instant::now();
            let mut child = spawn();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "run {} ended ({status}) before its kill point: fewer writes per run",
                        kill + 1
                    );
                }
                assert!(
                    run_started.elapsed() < Duration::from_secs(120),
                    "run {} made {} writes in 120 s, short of its kill point {after_writes}",
                    kill + 1,
                    self.world.proxy.writes().0 - writes_before
                );
                let written = self.world.proxy.writes().0 - writes_before;
                // A kill by time comes at the latest where a kill by writes
                // would, so the kills never run out of apply.
                let due = if by_time {
                    run_started.elapsed() >= after_time || written >= MAX_WRITES_PER_RUN
                } else {
                    written >= after_writes
                };
                if due {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
            let written = self.world.proxy.writes().0 - writes_before;
            if written > 0 {
                kills_among_writes += 1;
            }
            kill_points.push(if by_time {
                format!("{}ms:{written}w", after_time.as_millis())
            } else {
                format!("{written}w")
            });
        }
        eprintln!(
            "{KILLS} kills ({kills_among_writes} after writes began) at {kill_points:?}; {:?} so far",
            self.started.elapsed()
        );
        assert!(
            kills_among_writes >= KILLS * 3 / 4,
            "{kills_among_writes} kills landed among writes"
        );
        assert!(
            self.world.proxy.writes().0 > 300,
            "the kills spread over a good part of the apply"
        );
    }

    /// The end state the issue asks for: converged; exactly one role per
    /// tenant; no attachment, inline policy, policy version or Profile
    /// missing or extra; nothing unmanaged touched. Then the tenants'
    /// Profiles (and so their namespaces) are deleted, not awaited, to
    /// leave the shared API server as it was.
    async fn assert_converged_untouched(&self) {
        let versions = CHANGED_POLICIES
            .into_iter()
            .map(|p| (p.to_string(), 2))
            .collect();
        let live = assert_matches_git(&self.repo, &self.iam, &self.kube, &versions).await;
        assert_converged(&self.world, &self.repo);
        // Untouched: the other roles keep no tags and their one attachment,
        // and the other policy its one version.
        for (name, _) in OTHER_ROLES {
            let (_, tags) = &live.roles[name];
            assert!(tags.is_empty(), "{name} tags");
            let attached: BTreeSet<String> = self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .unwrap()
                .attached_policies()
                .iter()
                .map(|a| a.policy_arn().unwrap().to_string())
                .collect();
            assert_eq!(attached, BTreeSet::from([self.theirs.clone()]), "{name}");
        }
        assert_eq!(live.policy_versions[&self.theirs], ["v1"]);
        assert_eq!(
            live.roles.len(),
            KILL_TENANTS + OTHER_ROLES.len(),
            "no role besides one per tenant and the two others"
        );
        eprintln!(
            "converged after {KILLS} kills in {:?}",
            self.started.elapsed()
        );
        let _ = self
            .kube
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&format!("kftenant.io/cluster={}", self.repo.p)),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_points_of_a_200_tenant_apply_converges() {
    let kw = KillWorld::new("kill 9 apply").await;
    kw.kill_repeatedly(
        0x5eed_0012,
        || {
            kw.world
                .kftenant()
                .args(["apply", kw.repo.path(), "--auto-approve"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("kftenant starts")
        },
        || {
            for p in CHANGED_POLICIES {
                change_policy(&kw.repo, p, 1);
            }
        },
    );
    let out = kftenant(&kw.world, &["apply", kw.repo.path(), "--auto-approve"]);
    expect_code(&out, 0);
    kw.assert_converged_untouched().await;
}

/// GET `path` of a daemon's HTTP endpoints: the body of a 200, else None.
fn daemon_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_daemon_at_random_points_of_a_200_tenant_apply_converges() {
    let kw = KillWorld::new("kill 9 daemon").await;
    let dir = kw.repo.dir.path();
    let commit = |msg: &str| {
        support::git(dir, &["add", "-A"]);
        support::git(dir, &["commit", "-q", "-m", msg]);
        support::git(dir, &["rev-parse", "HEAD"])
    };
    support::git(dir, &["init", "-q", "-b", "main"]);
    let mut head = commit("200 tenants");
    // The daemon's clone outlives each kill, as a pod's cache volume does.
    let cache = tempfile::tempdir().unwrap();
    let clone = cache.path().join("clone");
    let daemon = |port: u16| {
        kw.world
            .kftenant()
            .args([
                "run",
                "--repo",
                kw.repo.path(),
                "--interval",
                "1s",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--cache-dir",
                clone.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kftenant run starts")
    };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    kw.kill_repeatedly(
        0x5eed_0d43,
        || daemon(free_port()),
        || {
            for p in CHANGED_POLICIES {
                change_policy(&kw.repo, p, 1);
            }
            head = commit("change three shared policies");
        },
    );
    // The last start runs until it has applied the head, then stops on SIGTERM.
    let port = free_port();
    let mut child = daemon(port);
    let waited = Instant::now();
    let status = loop {
        let status: Option<Value> =
            daemon_get(port, "/status").and_then(|b| serde_json::from_str(&b).ok());
        if let Some(s) = status.filter(|s| s["last_applied_commit"] == head.as_str()) {
            break s;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited before applying {head}"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(180),
            "the daemon did not apply {head} in 180 s: {:?}",
            daemon_get(port, "/status")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["last_errors"], serde_json::json!([]), "{status:#}");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = child.wait().unwrap();
    assert_eq!(exited.code(), Some(0), "exit on SIGTERM");
    kw.assert_converged_untouched().await;
}
