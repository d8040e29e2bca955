//! [`Observed::converged`]: the live world as IAM and Kubernetes would report
//! it once a desired world is fully applied. Test fixtures, benchmarks and the
//! convergence property ("a converged world plans to nothing") are built from it.

use super::desired::{Desired, DesiredAccess};
use super::observed::{
    Observed, ObservedObject, ObservedPolicy, ObservedProfile, ObservedRole,
    SNAPSHOT_FORMAT_VERSION,
};
use crate::kubeflow::{
    NAMESPACE_OWNER_ANNOTATION, OWNER_AUTHORIZATION_POLICY, OWNER_ROLE_BINDING, RBAC_GROUP,
    ROLE_ANNOTATION, ROLE_ARN_ANNOTATION, USER_ANNOTATION,
};
use crate::ownership::policy_marker;
use crate::quota;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

impl Observed {
    /// The live world IAM and Kubernetes would report once `desired` is fully
    /// applied, written the way IAM writes it back: documents percent-encoded,
    /// one-element lists collapsed to strings, lists in another order; and
    /// Profiles as the Kubeflow controller writes them back on every
    /// reconcile ([`quota::as_written_back`]).
    /// Used for converged fixtures, benchmarks and the convergence property.
    pub fn converged(desired: &Desired) -> Observed {
        let roles = desired
            .roles
            .values()
            .map(|r| ObservedRole {
                name: r.name.clone(),
                path: r.path.clone(),
                arn: r.arn.clone(),
                assume_role_policy_document: iam_encode(&r.trust_policy.to_json()),
                permissions_boundary: r.permissions_boundary.clone(),
                max_session_duration: r.max_session_duration,
                tags: r.tags.clone(),
                attached_policy_arns: r.managed_policy_arns.iter().rev().cloned().collect(),
                inline_policies: r
                    .inline_policies
                    .iter()
                    .map(|(k, v)| (k.clone(), iam_encode(&v.to_json())))
                    .collect(),
            })
            .collect();
        let policies = desired
            .policies
            .values()
            .map(|p| ObservedPolicy {
                name: p.name.clone(),
                path: p.path.clone(),
                arn: p.arn.clone(),
                document: iam_encode(&p.document.to_json()),
                default_version_id: "v1".into(),
                version_ids: vec!["v1".into()],
                attachment_count: desired
                    .roles
                    .values()
                    .filter(|r| {
                        r.managed_policy_arns.contains(&p.arn)
                            || r.permissions_boundary.as_ref() == Some(&p.arn)
                    })
                    .count(),
                // As the bulk read sees a policy kftenant created.
                description: policy_marker(&desired.cluster),
                tags: None,
            })
            .collect();
        let profiles = desired
            .profiles
            .values()
            .map(|p| {
                let mut labels = p.labels.clone();
                // Other controllers add their own metadata; kftenant must ignore it.
                labels.insert("kubernetes.io/metadata.name".into(), p.name.clone());
                let mut spec = p.spec.to_json();
                if let Json::Object(fields) = &mut spec {
                    let rqs = quota::as_written_back(fields.get("resourceQuotaSpec"));
                    fields.insert("resourceQuotaSpec".into(), rqs);
                }
                ObservedProfile {
                    name: p.name.clone(),
                    labels,
                    annotations: p.annotations.clone(),
                    spec: spec.into(),
                    deleting: false,
                }
            })
            .collect();
        let mut o = Observed {
            format_version: SNAPSHOT_FORMAT_VERSION,
            roles,
            policies,
            profiles,
            ..Default::default()
        };
        for (tenant, access) in &desired.access {
            add_access(&mut o, tenant, access);
        }
        o
    }
}

/// What the Kubeflow controller and kftenant leave in a tenant's namespace.
fn add_access(o: &mut Observed, tenant: &str, access: &DesiredAccess) {
    let object = |name: &str,
                  annotations: &[(&str, &str)],
                  labels: &BTreeMap<String, String>,
                  body: Json| {
        ObservedObject {
            namespace: tenant.to_string(),
            name: name.to_string(),
            labels: labels.clone(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            deleting: false,
        }
    };
    let none = BTreeMap::new();
    let owner = [
        (USER_ANNOTATION, access.owner.as_str()),
        (ROLE_ANNOTATION, "admin"),
    ];
    o.namespaces.push(ObservedObject {
        namespace: String::new(),
        ..object(
            tenant,
            &[(NAMESPACE_OWNER_ANNOTATION, access.owner.as_str())],
            &none,
            Json::Null,
        )
    });
    o.role_bindings.push(object(
        OWNER_ROLE_BINDING,
        &owner,
        &none,
        json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "kubeflow-admin"},
               "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": access.owner}]}),
    ));
    o.authorization_policies
        .push(object(OWNER_AUTHORIZATION_POLICY, &owner, &none, json!({})));
    for (name, m) in &access.members {
        let annotations = [
            (USER_ANNOTATION, m.user.as_str()),
            (ROLE_ANNOTATION, m.role.as_str()),
        ];
        o.role_bindings.push(object(
            name,
            &annotations,
            &m.labels,
            json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": m.role.cluster_role()},
                   "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": m.user}]}),
        ));
        o.authorization_policies.push(object(
            name,
            &annotations,
            &m.labels,
            m.authorization.to_json(),
        ));
    }
    for (name, sa) in &access.service_accounts {
        o.service_accounts.push(object(
            name,
            &[(ROLE_ARN_ANNOTATION, sa.role_arn.as_str())],
            &sa.labels,
            Json::Null,
        ));
    }
}

/// A document as IAM returns it from GetRole / GetRolePolicy: re-serialised
/// (one-element lists as strings, statements reversed) and percent-encoded.
pub fn iam_encode(doc: &Json) -> String {
    let reshaped = reshape(doc);
    percent_encoding::utf8_percent_encode(&reshaped.to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

fn reshape(v: &Json) -> Json {
    match v {
        Json::Array(items) if items.len() == 1 => reshape(&items[0]),
        Json::Array(items) => Json::Array(items.iter().rev().map(reshape).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), reshape(v))).collect()),
        other => other.clone(),
    }
}
