//! Smoke tests of the real local stack: do the servers behave like the parts of
//! EKS, IAM and Kubeflow that kftenant relies on, and does the harness around
//! them work?
//!
//! Needs the stack's prerequisites (`scripts/ci-stack-prereqs`); a missing one
//! fails these tests, it does not skip them.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use aws_sdk_iam::error::ProvideErrorMetadata;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;
use support::World;
use support::kubeflow;
use support::proxy::{ActionCounts, FaultRule};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

fn profiles(client: kube::Client, version: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kubeflow.org", version, "Profile");
    Api::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "profiles"))
}

fn trust_policy(world: &World, provider_arn: &str, service_account: &str) -> String {
    let issuer = world.stack.oidc_issuer();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): format!("system:serviceaccount:{service_account}"),
                format!("{issuer}:aud"): "sts.amazonaws.com",
            }},
        }],
    })
    .to_string()
}

#[tokio::test]
async fn profile_create_read_apply_delete() {
    let world = World::new("profile crud");
    let client = world.kube_client().await;
    let v1 = profiles(client.clone(), "v1");
    let name = world.name("alice");
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "profiles");

    let mut profile = DynamicObject::new(&name, &ar).data(json!({
        "spec": {
            "owner": {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"},
            "resourceQuotaSpec": {"hard": {"cpu": "4", "requests.nvidia.com/gpu": 1}},
        }
    }));
    profile.metadata.labels = Some(world.labels());
    let created = v1
        .create(&PostParams::default(), &profile)
        .await
        .expect("create Profile");
    assert_eq!(created.metadata.name.as_deref(), Some(name.as_str()));

    // Served as v1beta1 too, from the same stored object.
    let read = profiles(client.clone(), "v1beta1")
        .get(&name)
        .await
        .expect("get Profile as v1beta1");
    assert_eq!(read.data["spec"]["owner"]["name"], "alice@example.com");

    // Server-side apply as kftenant: adds the IRSA plugin, and the server
    // records kftenant as the manager of the fields it sent.
    let role = format!("arn:aws:iam::{}:role/kf-alice", world.account_id);
    let applied = v1
        .patch(
            &name,
            &PatchParams::apply("kftenant").force(),
            &Patch::Apply(json!({
                "apiVersion": "kubeflow.org/v1",
                "kind": "Profile",
                "metadata": {"name": name, "labels": world.labels()},
                "spec": {
                    "owner": {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"},
                    "plugins": [{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": role, "annotateOnly": true}}],
                },
            })),
        )
        .await
        .expect("server-side apply Profile");
    assert_eq!(
        applied.data["spec"]["plugins"][0]["spec"]["awsIamRole"],
        role
    );
    // The quota set at create time is kept: apply only owns what it sent.
    assert_eq!(
        applied.data["spec"]["resourceQuotaSpec"]["hard"]["cpu"],
        "4"
    );
    let managers: Vec<(String, String)> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("kftenant".to_string(), "Apply".to_string())),
        "managedFields: {managers:?}"
    );

    // kubectl from the same binary sees it.
    let listed = world.stack.kubectl(&[
        "get",
        "profiles",
        "-l",
        &format!("{}={}", support::WORLD_LABEL, world.prefix),
        "-o",
        "name",
    ]);
    assert_eq!(listed.trim(), format!("profile.kubeflow.org/{name}"));

    v1.delete(&name, &DeleteParams::default())
        .await
        .expect("delete Profile");
    // Kubeflow's profile controller may have put its finalizer on it by now;
    // then it is gone once the finalizer ran.
    kubeflow::wait_for_profile_gone(world.stack, &v1, &name).await;
    match v1.delete(&name, &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) => assert!(status.is_not_found(), "{status:?}"),
        other => panic!("second delete should be NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn profile_schema_rejects_a_plugin_without_kind() {
    let world = World::new("profile schema");
    let v1 = profiles(world.kube_client().await, "v1");
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "profiles");
    let profile = DynamicObject::new(&world.name("bad"), &ar).data(json!({
        "spec": {"owner": {"kind": "User", "name": "x"}, "plugins": [{"spec": {}}]}
    }));
    match v1.create(&PostParams::default(), &profile).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.is_invalid(), "{status:?}");
            assert!(status.message.contains("kind"), "{}", status.message);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn iam_role_lifecycle_as_in_aws() {
    let world = World::new("iam role");
    let iam = world.iam_client(3).await;
    let provider = world.create_oidc_provider(&iam).await;
    assert_eq!(
        provider,
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            world.account_id,
            world.stack.oidc_issuer()
        ),
        "the proxy puts the call in the world's account"
    );
    let role = world.name("fraud-detection");
    let trust = trust_policy(&world, &provider, "fraud-detection:default-editor");

    let created = iam
        .create_role()
        .role_name(&role)
        .path("/kftenant/")
        .assume_role_policy_document(&trust)
        .send()
        .await
        .expect("CreateRole");
    let arn = created.role.expect("role").arn;
    assert_eq!(
        arn,
        format!("arn:aws:iam::{}:role/kftenant/{role}", world.account_id)
    );

    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn(READ_ONLY)
        .send()
        .await
        .expect("AttachRolePolicy of an AWS managed policy");

    // Like IAM, GetRole returns the trust policy percent-encoded.
    let got = iam
        .get_role()
        .role_name(&role)
        .send()
        .await
        .expect("GetRole")
        .role
        .expect("role");
    let document = got.assume_role_policy_document.expect("trust policy");
    assert!(document.starts_with("%7B"), "not encoded: {document}");
    let decoded: serde_json::Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(&document)
            .decode_utf8()
            .expect("UTF-8"),
    )
    .expect("decoded trust policy is JSON");
    assert_eq!(
        decoded,
        serde_json::from_str::<serde_json::Value>(&trust).unwrap()
    );

    // Like IAM, a role with attached policies cannot be deleted.
    let err = iam
        .delete_role()
        .role_name(&role)
        .send()
        .await
        .expect_err("DeleteRole while a policy is attached");
    assert_eq!(err.code(), Some("DeleteConflict"), "{err:?}");

    iam.detach_role_policy()
        .role_name(&role)
        .policy_arn(READ_ONLY)
        .send()
        .await
        .expect("DetachRolePolicy");
    iam.delete_role()
        .role_name(&role)
        .send()
        .await
        .expect("DeleteRole");

    // Every call, exactly once, and nothing else.
    assert_eq!(
        world.proxy.calls(),
        BTreeMap::from(
            [
                ("AttachRolePolicy", 1),
                ("CreateOpenIDConnectProvider", 1),
                ("CreateRole", 1),
                ("DeleteRole", 2),
                ("DetachRolePolicy", 1),
                ("GetRole", 1),
            ]
            .map(|(a, n)| (a.to_string(), n))
        )
    );
    assert_eq!(world.proxy.action("DeleteRole").upstream_errors, 1);
}

#[tokio::test]
async fn sdk_retries_survive_three_throttles() {
    let world = World::new("throttles");
    world
        .proxy
        .add_fault(FaultRule::throttle("CreateRole").next(3));
    let trust = trust_policy(&world, "arn:aws:iam::000000000000:oidc-provider/x", "a:b");

    // The default of 3 attempts gives up on the third throttle ...
    let default_retries = world.iam_client(3).await;
    let err = default_retries
        .create_role()
        .role_name(world.name("gives-up"))
        .assume_role_policy_document(&trust)
        .send()
        .await
        .expect_err("3 attempts, 3 throttles");
    assert_eq!(err.code(), Some("Throttling"), "{err:?}");
    assert_eq!(
        world.proxy.action("CreateRole"),
        ActionCounts {
            calls: 3,
            throttled: 3,
            ..Default::default()
        }
    );

    // ... while 5 attempts get through 3 more.
    world.proxy.reset();
    world
        .proxy
        .add_fault(FaultRule::throttle("CreateRole").next(3));
    let patient = world.iam_client(5).await;
    patient
        .create_role()
        .role_name(world.name("succeeds"))
        .assume_role_policy_document(&trust)
        .send()
        .await
        .expect("CreateRole succeeds on the 4th attempt");
    assert_eq!(
        world.proxy.action("CreateRole"),
        ActionCounts {
            calls: 4,
            throttled: 3,
            forwarded: 1,
            ..Default::default()
        }
    );
}

/// Raw HTTP/1.1, as a benchmark script would use the control endpoint.
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to proxy");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn faults_over_http_failures_drops_and_counts() {
    let world = World::new("proxy http");
    let addr = world.proxy.addr();
    let (status, _) = http(
        addr,
        "POST",
        "/_proxy/faults",
        r#"[{"action": "*", "fault": "latency", "latency_ms": 50, "next": 1},
            {"action": "ListRoles", "fault": "service_failure", "next": 1},
            {"action": "ListRoles", "fault": "drop", "next": 1}]"#,
    );
    assert_eq!(status, 200);
    let (status, body) = http(
        addr,
        "POST",
        "/_proxy/faults",
        r#"{"action": "*", "fault": "throttle", "rate": 2.0}"#,
    );
    assert_eq!(status, 400, "an invalid rate is refused: {body}");

    // 1st attempt: 50 ms late, then ServiceFailure; 2nd: dropped; 3rd: moto.
    let iam = world.iam_client(3).await;
    let started = std::time::Instant::now();
    let roles = iam
        .list_roles()
        .send()
        .await
        .expect("ListRoles after 2 failures");
    assert!(roles.roles.is_empty(), "a fresh account has no roles");
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));

    let (status, body) = http(addr, "GET", "/_proxy/counts", "");
    assert_eq!(status, 200);
    let counts: serde_json::Value = serde_json::from_str(&body).expect("counts are JSON");
    assert_eq!(
        counts["ListRoles"],
        json!({"calls": 3, "forwarded": 1, "upstream_errors": 0, "throttled": 0,
               "rate_limited": 0, "service_failures": 1, "dropped": 1,
               "lost_after_forward": 0, "preempted": 0, "delayed": 1, "unreachable": 0})
    );

    let (status, _) = http(addr, "POST", "/_proxy/reset", "");
    assert_eq!(status, 200);
    assert!(world.proxy.counts().is_empty());
    assert!(http(addr, "GET", "/_proxy/faults", "").1.trim() == "[]");
}

// --- Kubeflow's profile controller, its IAM router and KFAM -------------------

fn iam_plugin(role_arn: &str, annotate_only: bool) -> serde_json::Value {
    json!([{"kind": "AwsIamForServiceAccount",
            "spec": {"awsIamRole": role_arn, "annotateOnly": annotate_only}}])
}

/// A Profile as a user would write one (not through kftenant).
async fn create_profile(
    world: &World,
    api: &Api<DynamicObject>,
    name: &str,
    owner: &str,
    spec: serde_json::Value,
) {
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "profiles");
    let mut data = json!({"spec": {"owner": {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": owner}}});
    for (k, v) in spec.as_object().into_iter().flatten() {
        data["spec"][k] = v.clone();
    }
    let mut profile = DynamicObject::new(name, &ar).data(data);
    profile.metadata.labels = Some(world.labels());
    api.create(&PostParams::default(), &profile)
        .await
        .expect("create Profile");
}

async fn trust_document(iam: &aws_sdk_iam::Client, role: &str) -> serde_json::Value {
    let got = iam
        .get_role()
        .role_name(role)
        .send()
        .await
        .expect("GetRole");
    let encoded = got
        .role
        .expect("role")
        .assume_role_policy_document
        .expect("trust");
    serde_json::from_str(
        &percent_encoding::percent_decode_str(&encoded)
            .decode_utf8()
            .expect("UTF-8"),
    )
    .expect("trust policy is JSON")
}

fn subjects(world: &World, trust: &serde_json::Value) -> serde_json::Value {
    let key = format!("{}:sub", world.stack.oidc_issuer());
    let sub = &trust["Statement"][0]["Condition"]["StringEquals"][key.as_str()];
    // IAM (and moto) may keep a one-element list as a string.
    match sub {
        serde_json::Value::String(s) => json!([s]),
        other => other.clone(),
    }
}

#[tokio::test]
async fn controller_makes_the_namespace_annotates_default_editor_and_finalizes_without_iam() {
    use k8s_openapi::api::core::v1::{ResourceQuota, ServiceAccount};
    use k8s_openapi::api::rbac::v1::RoleBinding;

    let world = World::new("controller annotate");
    let client = world.kube_client().await;
    let v1 = profiles(client.clone(), "v1");
    let name = world.name("annotate");
    // The role exists in the world's account and the router knows the account,
    // so an IAM call of the controller would be seen.
    let route = world.controller_iam();
    let iam = world.iam_client(3).await;
    let provider = world.create_oidc_provider(&iam).await;
    let role = world.name("annotate-role");
    iam.create_role()
        .role_name(&role)
        .path("/kftenant/")
        .assume_role_policy_document(trust_policy(&world, &provider, "other:default-editor"))
        .send()
        .await
        .expect("CreateRole");
    let arn = format!("arn:aws:iam::{}:role/kftenant/{role}", world.account_id);

    create_profile(
        &world,
        &v1,
        &name,
        "alice@example.com",
        json!({"plugins": iam_plugin(&arn, true), "resourceQuotaSpec": {"hard": {"cpu": "2"}}}),
    )
    .await;

    let ns = kubeflow::wait_for_namespace(world.stack, &client, &name).await;
    let meta = &ns.metadata;
    assert_eq!(
        meta.annotations.as_ref().and_then(|a| a.get("owner")),
        Some(&"alice@example.com".to_string())
    );
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("app.kubernetes.io/part-of").map(String::as_str),
        Some("kubeflow-profile"),
        "Kubeflow's default namespace labels: {labels:?}"
    );
    let owner = &meta.owner_references.as_ref().expect("owner reference")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Profile", name.as_str())
    );

    let annotations = kubeflow::default_editor_annotations(world.stack, &client, &name).await;
    assert_eq!(annotations.get(kubeflow::ROLE_ARN_ANNOTATION), Some(&arn));

    // The rest of what it makes per Profile.
    kubeflow::wait_for_finalizer(world.stack, &v1, &name).await;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &name);
    for (binding, role_ref) in [
        ("namespaceAdmin", "kubeflow-admin"),
        ("default-editor", "kubeflow-edit"),
        ("default-viewer", "kubeflow-view"),
    ] {
        let got = bindings.get(binding).await.expect("RoleBinding");
        assert_eq!(got.role_ref.name, role_ref, "{binding}");
    }
    let admin = bindings.get("namespaceAdmin").await.unwrap();
    assert_eq!(admin.subjects.unwrap()[0].name, "alice@example.com");
    Api::<ServiceAccount>::namespaced(client.clone(), &name)
        .get("default-viewer")
        .await
        .expect("default-viewer");
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), &name)
        .get("kf-resource-quota")
        .await
        .expect("kf-resource-quota");
    assert_eq!(
        quota.spec.unwrap().hard.unwrap()["cpu"],
        k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into())
    );
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1beta1", "AuthorizationPolicy");
    let policies: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &name,
        &ApiResource::from_gvk_with_plural(&gvk, "authorizationpolicies"),
    );
    let policy = policies
        .get("ns-owner-access-istio")
        .await
        .expect("the owner's AuthorizationPolicy");
    assert_eq!(
        policy.data["spec"]["rules"][0]["when"][0],
        json!({"key": "request.headers[kubeflow-userid]", "values": ["alice@example.com"]})
    );

    // annotateOnly: the plugin ran (the finalizer comes after it) and made no
    // IAM call, in the world's account or any other.
    assert_eq!(
        kubeflow::controller_iam_calls_for_role(world.stack, &role),
        vec![]
    );

    // Deleting the Profile runs the finalizer: the plugin's revoke takes the
    // annotation away (still without IAM), then the Profile is gone. The
    // namespace stays: no kube-controller-manager collects it.
    v1.delete(&name, &DeleteParams::default())
        .await
        .expect("delete Profile");
    kubeflow::wait_for_profile_gone(world.stack, &v1, &name).await;
    kubeflow::wait_for_default_editor(world.stack, &client, &name, "annotation removed", |a| {
        !a.contains_key(kubeflow::ROLE_ARN_ANNOTATION)
    })
    .await;
    assert_eq!(
        kubeflow::controller_iam_calls_for_role(world.stack, &role),
        vec![]
    );
    assert_eq!(route.counts(), BTreeMap::new());
}

#[tokio::test]
async fn controller_edits_the_trust_policy_in_the_worlds_account_and_reverts_it_on_delete() {
    let world = World::new("controller iam");
    let route = world.controller_iam();
    let client = world.kube_client().await;
    let v1 = profiles(client.clone(), "v1");
    let name = world.name("trusting");
    let iam = world.iam_client(3).await;
    let provider = world.create_oidc_provider(&iam).await;
    let role = world.name("trusting-role");
    let other = format!("{name}:ml-pipeline-runner");
    iam.create_role()
        .role_name(&role)
        .path("/kftenant/")
        .assume_role_policy_document(trust_policy(&world, &provider, &other))
        .send()
        .await
        .expect("CreateRole");
    let arn = format!("arn:aws:iam::{}:role/kftenant/{role}", world.account_id);

    create_profile(
        &world,
        &v1,
        &name,
        "alice@example.com",
        json!({"plugins": iam_plugin(&arn, false)}),
    )
    .await;

    let editor = format!("system:serviceaccount:{name}:default-editor");
    let want = json!([format!("system:serviceaccount:{other}"), editor]);
    let trust = kubeflow::controller_eventually(
        world.stack,
        "the controller adding default-editor to the trust policy",
        kubeflow::KUBEFLOW_TIMEOUT,
        || async {
            let trust = trust_document(&iam, &role).await;
            (subjects(&world, &trust) == want).then_some(trust)
        },
    )
    .await;
    assert_eq!(trust["Statement"][0]["Principal"]["Federated"], provider);
    kubeflow::wait_for_finalizer(world.stack, &v1, &name).await;

    // Every call on the role landed in the world's account and succeeded; the
    // trust policy was written once (later reconciles find the subject there).
    let calls = kubeflow::controller_iam_calls_for_role(world.stack, &role);
    assert!(
        calls
            .iter()
            .all(|c| c.account.as_deref() == Some(world.account_id.as_str()) && c.status == 200),
        "{calls:#?}"
    );
    let counts = route.counts();
    assert_eq!(counts.get("UpdateAssumeRolePolicy"), Some(&1), "{counts:?}");
    assert!(counts.get("GetRole").is_some_and(|n| *n >= 1), "{counts:?}");
    assert_eq!(
        counts.len(),
        2,
        "only GetRole and UpdateAssumeRolePolicy: {counts:?}"
    );

    // The finalizer takes the subject out again, then lets the Profile go.
    v1.delete(&name, &DeleteParams::default())
        .await
        .expect("delete Profile");
    kubeflow::wait_for_profile_gone(world.stack, &v1, &name).await;
    let trust = trust_document(&iam, &role).await;
    assert_eq!(
        subjects(&world, &trust),
        json!([format!("system:serviceaccount:{other}")])
    );
    assert_eq!(route.counts().get("UpdateAssumeRolePolicy"), Some(&2));
    assert!(route.errors().is_empty(), "{:#?}", route.errors());
}

#[tokio::test]
async fn iam_router_puts_a_call_in_the_account_holding_the_role() {
    let a = World::new("router a");
    let b = World::new("router b");
    let (_route_a, _route_b) = (a.controller_iam(), b.controller_iam());
    let trust = trust_policy(&a, "arn:aws:iam::000000000000:oidc-provider/x", "a:b");
    let only_a = a.name("only");
    let both = a.name("both");
    let iam_a = a.iam_client(3).await;
    let iam_b = b.iam_client(3).await;
    for (iam, role) in [(&iam_a, &only_a), (&iam_a, &both), (&iam_b, &both)] {
        iam.create_role()
            .role_name(role)
            .assume_role_policy_document(&trust)
            .send()
            .await
            .expect("CreateRole");
    }

    // As the controller calls it: no account, only the role name.
    let router = support::iam_client_at(a.stack.controller_iam_router(), 1).await;
    let got = router
        .get_role()
        .role_name(&only_a)
        .send()
        .await
        .expect("GetRole through the router");
    assert_eq!(
        got.role.unwrap().arn,
        format!("arn:aws:iam::{}:role/{only_a}", a.account_id)
    );
    let err = router
        .get_role()
        .role_name(&both)
        .send()
        .await
        .expect_err("a role name in two registered accounts");
    assert_eq!(err.code(), Some("AmbiguousRole"), "{err:?}");
    let err = router
        .get_role()
        .role_name(a.name("nowhere"))
        .send()
        .await
        .expect_err("a role nobody holds");
    assert_eq!(err.code(), Some("NoSuchEntity"), "moto's answer: {err:?}");

    assert_eq!(
        kubeflow::controller_iam_calls_for_role(a.stack, &only_a),
        vec![kubeflow::RouterCall {
            account: Some(a.account_id.clone()),
            action: "GetRole".into(),
            role: Some(only_a.clone()),
            status: 200,
            error: None,
        }]
    );
    let nowhere = kubeflow::controller_iam_calls_for_role(a.stack, &a.name("nowhere"));
    assert_eq!(
        nowhere[0].account.as_deref(),
        a.stack
            .vars
            .get("KFTENANT_STACK_ACCOUNT")
            .map(String::as_str),
        "unknown roles go to the default account"
    );
    assert_eq!(nowhere[0].error.as_deref(), Some("NoSuchEntity"));
}

#[tokio::test]
async fn kfam_lists_contributors_added_through_kfam_and_by_hand() {
    use k8s_openapi::api::rbac::v1::RoleBinding;

    let world = World::new("kfam");
    let stack = world.stack;
    let client = world.kube_client().await;
    let v1 = profiles(client.clone(), "v1");
    let name = world.name("team");
    let (alice, bob, carol) = ("alice@example.com", "bob@example.com", "carol@example.com");
    create_profile(&world, &v1, &name, alice, json!({})).await;
    kubeflow::wait_for_namespace(stack, &client, &name).await;
    // The owner, from the controller's namespaceAdmin RoleBinding.
    kubeflow::wait_for_kfam_bindings(stack, &name, alice, &[(alice, "admin")]).await;

    // "Manage contributors" in the dashboard: the owner adds bob as an editor ...
    let (status, body) = kubeflow::kfam_create_binding(stack, alice, &name, bob, "edit");
    assert_eq!(status, 200, "{body}");
    // ... which nobody else may do.
    let (status, _) = kubeflow::kfam_create_binding(
        stack,
        "mallory@example.com",
        &name,
        "mallory@example.com",
        "edit",
    );
    assert_eq!(status, 403);

    // KFAM wrote the RoleBinding that kfam_role_binding describes, and an
    // AuthorizationPolicy of the same name.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &name);
    let want = kubeflow::kfam_role_binding(&name, bob, "edit");
    let binding_name = want.metadata.name.clone().unwrap();
    assert_eq!(binding_name, "user-bob-example-com-clusterrole-edit");
    let got = bindings
        .get(&binding_name)
        .await
        .expect("KFAM's RoleBinding");
    assert_eq!(got.role_ref, want.role_ref);
    assert_eq!(got.metadata.annotations, want.metadata.annotations);
    let subject = &got.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("User", bob)
    );
    let gvk = GroupVersionKind::gvk("security.istio.io", "v1beta1", "AuthorizationPolicy");
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &name,
        &ApiResource::from_gvk_with_plural(&gvk, "authorizationpolicies"),
    )
    .get(&binding_name)
    .await
    .expect("KFAM's AuthorizationPolicy");

    // A contributor written by hand the way KFAM writes one is listed like one.
    bindings
        .create(
            &PostParams::default(),
            &kubeflow::kfam_role_binding(&name, carol, "view"),
        )
        .await
        .expect("create carol's RoleBinding");
    let listed = kubeflow::wait_for_kfam_bindings(
        stack,
        &name,
        alice,
        &[(alice, "admin"), (bob, "edit"), (carol, "view")],
    )
    .await;
    assert!(
        listed
            .iter()
            .all(|b| b.namespace == name && b.user.kind == "User")
    );
}

#[tokio::test]
async fn kftenant_service_account_has_deploys_rbac_and_no_more() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Namespace, Secret};

    let world = World::new("deploy rbac");
    let admin = world.kube_client().await;
    kubeflow::apply_deploy_rbac(world.stack);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeflow::service_account_kubeconfig(
        world.stack,
        &admin,
        kubeflow::DEPLOY_NAMESPACE,
        kubeflow::DEPLOY_SERVICE_ACCOUNT,
        &dir.path().join("kubeconfig"),
    )
    .await;
    let sa = kubeflow::kube_client_for(&kubeconfig).await;
    let forbidden = |r: Result<_, kube::Error>| match r {
        Err(kube::Error::Api(s)) => s.code == 403,
        _ => false,
    };

    profiles(sa.clone(), "v1")
        .list(&Default::default())
        .await
        .expect("deploy/'s ClusterRole lists Profiles");
    // Its own Lease may be read (absent here); no other.
    let leases: Api<Lease> = Api::namespaced(sa.clone(), kubeflow::DEPLOY_NAMESPACE);
    match leases.get("kftenant").await {
        Err(kube::Error::Api(s)) => assert!(s.is_not_found(), "{s:?}"),
        other => panic!("Lease kftenant: {other:?}"),
    }
    assert!(forbidden(leases.get("someone-else").await.map(|_| ())));
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), kubeflow::DEPLOY_NAMESPACE);
    assert!(forbidden(
        secrets.list(&Default::default()).await.map(|_| ())
    ));
    // Namespaces are read and annotated, never created or deleted: the
    // profile controller owns their lifecycle.
    let namespaces: Api<Namespace> = Api::all(sa.clone());
    namespaces
        .list(&Default::default())
        .await
        .expect("deploy/'s ClusterRole lists Namespaces");
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kftenant-rbac-probe"}
    }))
    .unwrap();
    assert!(forbidden(
        namespaces
            .create(&Default::default(), &ns)
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        namespaces
            .delete("default", &Default::default())
            .await
            .map(|_| ())
    ));

    // kftenant itself, as that ServiceAccount: a live plan reads Profiles fine.
    let repo = support::repo::Repo::new(&world);
    let out = world
        .kftenant_as(&kubeconfig)
        .args(["plan", repo.path(), "--live"])
        .output()
        .expect("run kftenant");
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes to make, read without a Forbidden: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
