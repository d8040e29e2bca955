//! What Kubeflow's controllers expect of the objects kftenant writes:
//! names, kinds and conventions, as data. A leaf module.
//!
//! The reference is the controller's own source (`controllers/plugin_iam.go`,
//! `controllers/profile_controller.go`) and KFAM's (`kfam/bindings.go`).

use serde_json::{Value as Json, json};

/// The service account the controller creates in every profile namespace and
/// annotates with the plugin's role; notebooks and pipelines run as it.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default-editor";
/// The plugin that binds a profile namespace to an IAM role.
pub const IAM_PLUGIN_KIND: &str = "AwsIamForServiceAccount";
/// API group of `Profile`.
pub const PROFILE_GROUP: &str = "kubeflow.org";
/// API version of the `Profile`s kftenant writes.
pub const PROFILE_VERSION: &str = "v1";
/// Kind of a Profile.
pub const PROFILE_KIND: &str = "Profile";
/// Plural (resource) name of Profiles.
pub const PROFILE_PLURAL: &str = "profiles";
/// The annotation that gives a service account an IAM role (IRSA).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The annotation on a profile namespace that names its owner: the
/// controller takes over an existing namespace only when it matches.
pub const NAMESPACE_OWNER_ANNOTATION: &str = "owner";
/// The annotations KFAM (and the dashboard) read on access objects.
pub const USER_ANNOTATION: &str = "user";
/// See [`USER_ANNOTATION`].
pub const ROLE_ANNOTATION: &str = "role";
/// The controller's RoleBinding of the owner in a profile namespace.
pub const OWNER_ROLE_BINDING: &str = "namespaceAdmin";
/// The controller's AuthorizationPolicy for the owner in a profile namespace.
pub const OWNER_AUTHORIZATION_POLICY: &str = "ns-owner-access-istio";
/// API group of RBAC, also the `apiGroup` of `User` subjects as the API
/// server stores them (writing it spares the controller a no-op update).
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// Istio's AuthorizationPolicy: group and version KFAM writes.
pub const ISTIO_SECURITY_GROUP: &str = "security.istio.io";
/// See [`ISTIO_SECURITY_GROUP`].
pub const ISTIO_SECURITY_VERSION: &str = "v1beta1";

/// The `sub` claim of a service account's projected token: what an IRSA trust
/// policy lets in.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// A contributor's role, as KFAM and the dashboard name it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// May change the namespace's workloads (the dashboard's "contributor").
    Edit,
    /// May read them.
    View,
}

impl MemberRole {
    /// `edit` or `view`: the `role` annotation and the name's suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Edit => "edit",
            MemberRole::View => "view",
        }
    }

    /// The ClusterRole the RoleBinding names.
    pub fn cluster_role(self) -> &'static str {
        match self {
            MemberRole::Edit => "kubeflow-edit",
            MemberRole::View => "kubeflow-view",
        }
    }

    /// `edit` or `view`, as written in tenant files.
    pub fn parse(s: &str) -> Option<MemberRole> {
        match s {
            "edit" => Some(MemberRole::Edit),
            "view" => Some(MemberRole::View),
            _ => None,
        }
    }
}

/// The name KFAM gives the RoleBinding and AuthorizationPolicy of a
/// contributor (`kfam/bindings.go` `getBindingName`): `user-<email>-clusterrole-<role>`
/// where every run of characters other than ASCII letters and digits becomes
/// one `-`, in lower case. (Distinct emails can share a name: `a.b@x` and `a_b@x`.)
pub fn binding_name(user: &str, role: MemberRole) -> String {
    let raw = format!("User-{}-ClusterRole-{}", user, role.as_str()).to_lowercase();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

/// How the Istio ingress tells workloads who the user is, and who may pass it
/// on: KFAM's flags and environment, as kubeflow/manifests set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity<'a> {
    /// The request header with the user id (`kubeflow-userid`).
    pub header: &'a str,
    /// The prefix before the user id in that header (empty in kubeflow/manifests).
    pub prefix: &'a str,
    /// The principals allowed to send the header: the ingress gateway and
    /// the Pipelines UI.
    pub principals: &'a [String],
}

/// The `spec` of a contributor's AuthorizationPolicy, exactly as KFAM writes
/// it (and the API server stores it): one rule, `from` the principals, `when`
/// the user-id header equals the user. No `action` (ALLOW is the default and
/// protobuf JSON leaves it out).
pub fn member_authorization_spec(id: &UserIdentity<'_>, user: &str) -> Json {
    json!({
        "rules": [{
            "from": [{"source": {"principals": id.principals}}],
            "when": [{"key": format!("request.headers[{}]", id.header), "values": [format!("{}{user}", id.prefix)]}],
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_names_are_kfams() {
        // kfam/bindings_test.go and the Go function run on these inputs.
        for (user, role, name) in [
            (
                "lalith.vaka@zq.msds.kp.org",
                MemberRole::Edit,
                "user-lalith-vaka-zq-msds-kp-org-clusterrole-edit",
            ),
            (
                "397401@zq.msds.kp.org",
                MemberRole::Edit,
                "user-397401-zq-msds-kp-org-clusterrole-edit",
            ),
            (
                "Alice.Smith+ml@Example.com",
                MemberRole::View,
                "user-alice-smith-ml-example-com-clusterrole-view",
            ),
            (
                "_bob_@x.io",
                MemberRole::Edit,
                "user-bob-x-io-clusterrole-edit",
            ),
            ("a--b@c", MemberRole::Edit, "user-a-b-c-clusterrole-edit"),
            (
                "ünïcødé@exämple.de",
                MemberRole::Edit,
                "user-n-c-d-ex-mple-de-clusterrole-edit",
            ),
            (
                "UPPER@CASE.COM",
                MemberRole::Edit,
                "user-upper-case-com-clusterrole-edit",
            ),
        ] {
            assert_eq!(binding_name(user, role), name, "{user}");
        }
    }

    #[test]
    fn authorization_spec_is_kfams() {
        let principals = [
            "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account".to_string(),
            "cluster.local/ns/kubeflow/sa/ml-pipeline-ui".to_string(),
        ];
        let id = UserIdentity {
            header: "kubeflow-userid",
            prefix: "",
            principals: &principals,
        };
        assert_eq!(
            member_authorization_spec(&id, "a@b.c"),
            json!({"rules":[{"from":[{"source":{"principals":["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account","cluster.local/ns/kubeflow/sa/ml-pipeline-ui"]}}],"when":[{"key":"request.headers[kubeflow-userid]","values":["a@b.c"]}]}]})
        );
    }
}
