//! Smoke tests of the real local stack: do the servers behave like the parts of
//! EKS and IAM that kftenant relies on, and does the harness around them work?
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
    // No finalizers here (no profile controller), so it is gone at once.
    assert!(v1.get_opt(&name).await.expect("get after delete").is_none());
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
               "service_failures": 1, "dropped": 1, "delayed": 1, "unreachable": 0})
    );

    let (status, _) = http(addr, "POST", "/_proxy/reset", "");
    assert_eq!(status, 200);
    assert!(world.proxy.counts().is_empty());
    assert!(http(addr, "GET", "/_proxy/faults", "").1.trim() == "[]");
}
