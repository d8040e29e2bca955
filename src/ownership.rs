//! Ownership: the marks kftenant puts on what it creates, and the checks that
//! decide whether a live resource is kftenant's to change or delete.
//!
//! IAM roles and policies carry tags; policies also carry a marker in their
//! immutable `Description`; Kubernetes objects carry labels. A resource is
//! kftenant's only when its marks name kftenant *and this cluster*: two
//! clusters' kftenants sharing an account or an API server never touch each
//! other's resources. A leaf module: plain data in, a yes or no out.

use std::collections::BTreeMap;

/// Tag key: who manages the resource.
pub const TAG_MANAGED_BY: &str = "kftenant.io/managed-by";
/// Value of [`TAG_MANAGED_BY`] and of [`MANAGED_BY_LABEL`]; also the field
/// manager of kftenant's server-side applies.
pub const MANAGER: &str = "kftenant";
/// Tag key: which tenant a role belongs to.
pub const TAG_TENANT: &str = "kftenant.io/tenant";
/// Tag and label key: which cluster's kftenant owns the resource.
pub const TAG_CLUSTER: &str = "kftenant.io/cluster";
/// The label kftenant sets on every Kubernetes object it manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Tag and label key prefix reserved for kftenant's own marks.
pub const RESERVED_PREFIX: &str = "kftenant.io/";
/// How many ownership tags a tenant role carries (they count against IAM's 50).
pub const ROLE_OWNERSHIP_TAGS: usize = 3;

/// The `Description` kftenant gives every policy it creates: a second
/// ownership mark beside the tags. IAM returns a policy's description in the
/// bulk read (`GetAccountAuthorizationDetails`) but its tags only through one
/// `ListPolicyTags` call per policy, and nobody can edit a description after
/// creation, so this mark lets a no-op cycle prove ownership without N reads.
pub fn policy_marker(cluster: &str) -> String {
    format!("Managed by kftenant: {TAG_MANAGED_BY}={MANAGER} {TAG_CLUSTER}={cluster}")
}

/// True when `description` is kftenant's marker for any cluster: the policy
/// is some kftenant's, so whose it is needs no read of its tags (another
/// cluster's is never this cluster's to adopt or edit).
pub fn is_policy_marker(description: &str) -> bool {
    let prefix = format!("Managed by kftenant: {TAG_MANAGED_BY}={MANAGER} {TAG_CLUSTER}=");
    description
        .strip_prefix(&prefix)
        .is_some_and(|c| !c.is_empty() && !c.contains(char::is_whitespace))
}

/// Ownership tags for a tenant's role (`tenant` set) or a repo policy.
pub fn ownership_tags(cluster: &str, tenant: Option<&str>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::from([
        (TAG_MANAGED_BY.to_string(), MANAGER.to_string()),
        (TAG_CLUSTER.to_string(), cluster.to_string()),
    ]);
    if let Some(t) = tenant {
        tags.insert(TAG_TENANT.to_string(), t.to_string());
    }
    tags
}

/// Ownership labels for a Kubernetes object kftenant manages.
pub fn ownership_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (TAG_CLUSTER.to_string(), cluster.to_string()),
    ])
}

/// The label selector of everything kftenant manages for `cluster`.
pub fn label_selector(cluster: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGER},{TAG_CLUSTER}={cluster}")
}

/// True when IAM tags say the resource is kftenant's for `cluster`.
pub fn owns_tags(tags: &BTreeMap<String, String>, cluster: &str) -> bool {
    tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGER)
        && tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
}

/// True when Kubernetes labels say the object is kftenant's for `cluster`
/// (an object labelled for another cluster's kftenant, as when two instances
/// share an API server, is not ours to touch).
pub fn owns_labels(labels: &BTreeMap<String, String>, cluster: &str) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
        && labels.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
}

/// A policy is ours when kftenant created it for this cluster (its description
/// carries the marker) or when it carries the ownership tags (adopted by hand).
/// `tags` is `None` when they were not read.
pub fn owns_policy(
    description: &str,
    tags: Option<&BTreeMap<String, String>>,
    cluster: &str,
) -> bool {
    description == policy_marker(cluster) || tags.is_some_and(|t| owns_tags(t, cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_clusters_marker_is_known_as_one() {
        assert!(is_policy_marker(&policy_marker("prod")));
        assert!(is_policy_marker(&policy_marker("dev-2")));
        assert!(!is_policy_marker("Managed by kftenant: "));
        assert!(!is_policy_marker(&format!(
            "{} and more",
            policy_marker("prod")
        )));
        assert!(!is_policy_marker("Read access to the data lake"));
    }

    #[test]
    fn ownership_needs_both_marks_for_this_cluster() {
        let tags = ownership_tags("prod", Some("a"));
        assert!(owns_tags(&tags, "prod"));
        assert!(!owns_tags(&tags, "staging"));
        let mut half = tags.clone();
        half.remove(TAG_CLUSTER);
        assert!(!owns_tags(&half, "prod"));
        assert!(owns_labels(&ownership_labels("prod"), "prod"));
        assert!(!owns_labels(&ownership_labels("prod"), "dev"));
        assert!(owns_policy(&policy_marker("prod"), None, "prod"));
        assert!(!owns_policy(&policy_marker("dev"), None, "prod"));
        assert!(owns_policy("by hand", Some(&tags), "prod"));
        assert_eq!(
            label_selector("prod"),
            "app.kubernetes.io/managed-by=kftenant,kftenant.io/cluster=prod"
        );
    }
}
