//! What Kubeflow's profile controller expects of the objects kftenant writes:
//! names, kinds and conventions, as data. A leaf module.
//!
//! The reference is the controller's own source (`controllers/plugin_iam.go`,
//! `controllers/profile_controller.go`) and KFAM's (`kfam/bindings.go`).

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

/// The `sub` claim of a service account's projected token: what an IRSA trust
/// policy lets in.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}
