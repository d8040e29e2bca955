//! Reads a world back in bulk and compares it with git, exactly: what the
//! fault tests assert after kftenant was interrupted, throttled or lied to.
//!
//! Independent of kftenant's own reader: the AWS SDK's paginators (through
//! the world's proxy, which pages as IAM does) and the kube client. One
//! `GetAccountAuthorizationDetails`, one `ListRoles` and one LIST of Profiles
//! per check, so it scales to the hundreds of tenants of the crash test.

use super::repo::Repo;
use kftenant::ownership::{TAG_CLUSTER, owns_tags, policy_marker};
use kftenant::policy::{parse_live, same_policy};
use kube::api::{Api, DynamicObject, ListParams};
use std::collections::{BTreeMap, BTreeSet};

/// What a check found, for the test's own assertions beyond [`assert_matches_git`].
pub struct Live {
    /// Every role of the account: name -> (path, tags).
    pub roles: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// Version ids of every customer-managed policy: ARN -> ids.
    pub policy_versions: BTreeMap<String, Vec<String>>,
}

fn tags(t: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    t.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// Asserts that IAM and the Profiles are exactly what git says: one role
/// per tenant and no other role carrying kftenant's tags for the cluster;
/// each role's path, trust policy, boundary, session duration, tags,
/// attachments and inline policies; each repo policy's marker, document and
/// number of versions (`versions`, by policy name; 1 when absent); and one
/// Profile per tenant, with kftenant's fields as git says, and no other
/// Profile labelled for the cluster.
pub async fn assert_matches_git(
    repo: &Repo,
    iam: &aws_sdk_iam::Client,
    profiles: &Api<DynamicObject>,
    versions: &BTreeMap<String, usize>,
) -> Live {
    use aws_sdk_iam::types::EntityType;
    let want = repo.desired();
    let pages: Vec<_> = iam
        .get_account_authorization_details()
        .filter(EntityType::Role)
        .filter(EntityType::LocalManagedPolicy)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .expect("GetAccountAuthorizationDetails");
    let durations: BTreeMap<String, i32> = iam
        .list_roles()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListRoles")
        .into_iter()
        .map(|r| {
            (
                r.role_name().to_string(),
                r.max_session_duration().unwrap_or(3600),
            )
        })
        .collect();
    let mut live = Live {
        roles: BTreeMap::new(),
        policy_versions: BTreeMap::new(),
    };
    let mut managed = BTreeSet::new();
    for r in pages.iter().flat_map(|p| p.role_detail_list()) {
        let name = r.role_name().unwrap().to_string();
        let t = tags(r.tags());
        if owns_tags(&t, &want.cluster) {
            managed.insert(name.clone());
        }
        live.roles.insert(
            name.clone(),
            (r.path().unwrap_or_default().to_string(), t.clone()),
        );
        let Some(d) = want.roles.values().find(|d| d.name == name) else {
            continue;
        };
        assert_eq!(r.path(), Some(d.path.as_str()), "{name} path");
        let trust = parse_live(r.assume_role_policy_document().unwrap()).unwrap();
        assert!(
            same_policy(&trust, &d.trust_policy.to_json()),
            "{name} trust policy"
        );
        assert_eq!(
            r.permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn()),
            d.permissions_boundary.as_deref(),
            "{name} boundary"
        );
        assert_eq!(
            durations.get(&name).copied(),
            Some(d.max_session_duration as i32),
            "{name} max session duration"
        );
        assert_eq!(t, d.tags, "{name} tags");
        let attached: BTreeSet<String> = r
            .attached_managed_policies()
            .iter()
            .map(|a| a.policy_arn().unwrap().to_string())
            .collect();
        assert_eq!(attached, d.managed_policy_arns, "{name} attachments");
        let inline: BTreeMap<String, serde_json::Value> = r
            .role_policy_list()
            .iter()
            .map(|p| {
                (
                    p.policy_name().unwrap().to_string(),
                    parse_live(p.policy_document().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            inline.keys().collect::<Vec<_>>(),
            d.inline_policies.keys().collect::<Vec<_>>(),
            "{name} inline policies"
        );
        for (n, doc) in &d.inline_policies {
            assert!(same_policy(&inline[n], &doc.to_json()), "{name} inline {n}");
        }
    }
    let wanted: BTreeSet<String> = want.roles.values().map(|r| r.name.clone()).collect();
    assert_eq!(
        managed, wanted,
        "exactly one role per tenant carries kftenant's tags for cluster {}",
        want.cluster
    );
    let marker = policy_marker(&want.cluster);
    let mut marked = BTreeSet::new();
    for p in pages.iter().flat_map(|p| p.policies()) {
        let arn = p.arn().unwrap().to_string();
        let mut ids: Vec<String> = p
            .policy_version_list()
            .iter()
            .map(|v| v.version_id().unwrap().to_string())
            .collect();
        ids.sort_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap());
        live.policy_versions.insert(arn.clone(), ids.clone());
        if p.description() == Some(marker.as_str()) {
            marked.insert(arn.clone());
        }
        let Some(d) = want.policies.values().find(|d| d.arn == arn) else {
            continue;
        };
        assert_eq!(p.description(), Some(marker.as_str()), "{arn} marker");
        let default = p
            .policy_version_list()
            .iter()
            .find(|v| v.is_default_version())
            .expect("a default version");
        let doc = parse_live(default.document().unwrap()).unwrap();
        assert!(same_policy(&doc, &d.document.to_json()), "{arn} document");
        assert_eq!(
            ids.len(),
            versions.get(&d.name).copied().unwrap_or(1),
            "{arn} versions: {ids:?}"
        );
    }
    let wanted: BTreeSet<String> = want.policies.values().map(|p| p.arn.clone()).collect();
    assert_eq!(marked, wanted, "exactly the repo policies carry the marker");

    let listed = profiles
        .list(&ListParams::default().labels(&format!("{TAG_CLUSTER}={}", want.cluster)))
        .await
        .expect("list Profiles");
    let names: BTreeSet<String> = listed
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        want.profiles.keys().cloned().collect::<BTreeSet<_>>(),
        "exactly one Profile per tenant"
    );
    for got in &listed.items {
        let name = got.metadata.name.as_deref().unwrap();
        let d = &want.profiles[name];
        let spec = d.spec.to_json();
        for k in ["owner", "plugins", "resourceQuotaSpec"] {
            assert_eq!(
                got.data["spec"].get(k),
                spec.get(k),
                "Profile {name} spec.{k}"
            );
        }
        let labels = got.metadata.labels.clone().unwrap_or_default();
        for (k, v) in &d.labels {
            assert_eq!(labels.get(k), Some(v), "Profile {name} label {k}");
        }
    }
    live
}
