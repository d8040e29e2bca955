//! The desired world: what IAM and the cluster must look like, rendered from a
//! validated [`Repository`] by [`render`]. A pure function: no I/O, no clock.
//! One of the planner's two inputs; [`super::observed`] is the other, and the
//! two know nothing of each other.

use crate::config::Config;
use crate::document::Document;
use crate::kubeflow::{
    IAM_PLUGIN_KIND, MemberRole, PROFILE_GROUP, PROFILE_KIND, PROFILE_VERSION, RBAC_GROUP,
    UserIdentity, binding_name, member_authorization_spec,
};
use crate::model::{PolicyRef, Repository, Tenant};
use crate::ownership::{ownership_labels, ownership_tags};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};

/// Everything kftenant wants to exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// Cluster name (the `kftenant.io/cluster` tag value).
    pub cluster: String,
    /// The IAM path kftenant manages.
    pub iam_path: String,
    /// Tenant roles by tenant name.
    pub roles: BTreeMap<String, DesiredRole>,
    /// Repo policies by policy name.
    pub policies: BTreeMap<String, DesiredPolicy>,
    /// Profiles by tenant name.
    pub profiles: BTreeMap<String, DesiredProfile>,
    /// Delete tenants that are gone from git (and decommissioned).
    pub prune: bool,
    /// Hold back every deletion when more tenants than this would go at once.
    pub max_deletions: usize,
    /// Tenants that git says may be deleted (`[prune] decommissioned`).
    #[serde(default)]
    pub decommissioned: BTreeSet<String>,
    /// What each tenant needs in its namespace besides what the Kubeflow
    /// controller makes, by tenant.
    #[serde(default)]
    pub access: BTreeMap<String, DesiredAccess>,
    /// Delete contributors added by hand that git does not list.
    #[serde(default)]
    pub prune_unmanaged_members: bool,
}

/// What a tenant needs in its namespace (named like the tenant) besides what
/// the Kubeflow controller makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredAccess {
    /// The owner: kftenant keeps the owner marks the controller does not
    /// update when the owner changes (the namespace's `owner` annotation, the
    /// `user` annotation of `namespaceAdmin` and `ns-owner-access-istio`).
    pub owner: String,
    /// Contributors, by binding name.
    pub members: BTreeMap<String, DesiredMember>,
    /// Service accounts besides `default-editor` that get the tenant's role, by name.
    pub service_accounts: BTreeMap<String, DesiredServiceAccount>,
}

/// A contributor: a RoleBinding and an Istio AuthorizationPolicy of the same
/// name, as KFAM writes them when a contributor is added in the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredMember {
    /// The user.
    pub user: String,
    /// `edit` or `view`.
    pub role: MemberRole,
    /// Labels kftenant sets (ownership).
    pub labels: BTreeMap<String, String>,
    /// The AuthorizationPolicy's `spec`.
    pub authorization: Document,
}

/// A service account that gets the tenant's IAM role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredServiceAccount {
    /// The role (`eks.amazonaws.com/role-arn`).
    pub role_arn: String,
    /// Labels kftenant sets when it creates the account (ownership).
    pub labels: BTreeMap<String, String>,
}

impl Desired {
    /// Every service account git names, as (namespace, name).
    pub fn service_accounts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.access.iter().flat_map(|(ns, a)| {
            a.service_accounts
                .keys()
                .map(move |name| (ns.as_str(), name.as_str()))
        })
    }
}

/// A tenant's IAM role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredRole {
    /// Tenant (and namespace) name.
    pub tenant: String,
    /// Role name.
    pub name: String,
    /// IAM path.
    pub path: String,
    /// Role ARN (named by the Profile).
    pub arn: String,
    /// The IRSA trust policy.
    pub trust_policy: Document,
    /// Boundary policy ARN.
    pub permissions_boundary: Option<String>,
    /// Seconds.
    pub max_session_duration: u32,
    /// All tags, ownership tags included.
    pub tags: BTreeMap<String, String>,
    /// Attached managed policy ARNs.
    pub managed_policy_arns: BTreeSet<String>,
    /// Inline policies by name.
    pub inline_policies: BTreeMap<String, Document>,
    /// Git lets kftenant take over a live role of this name that it does
    /// not own (`spec.adopt.role`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// A customer-managed policy from `policies/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredPolicy {
    /// Policy name.
    pub name: String,
    /// IAM path.
    pub path: String,
    /// Policy ARN.
    pub arn: String,
    /// Document.
    pub document: Document,
    /// Ownership tags.
    pub tags: BTreeMap<String, String>,
    /// Git lets kftenant take over the live policy of this ARN (a tenant's
    /// `spec.adopt.policies`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// A Kubeflow `Profile` (kubeflow.org/v1), the fields kftenant owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredProfile {
    /// Profile (and namespace) name.
    pub name: String,
    /// Labels kftenant sets (the managed-by label included).
    pub labels: BTreeMap<String, String>,
    /// Annotations kftenant sets.
    pub annotations: BTreeMap<String, String>,
    /// `spec` as kftenant sets it: owner, plugins, resourceQuotaSpec.
    pub spec: Document,
    /// Git lets kftenant take over a live Profile of this name that it does
    /// not own (`spec.adopt.profile`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

impl DesiredProfile {
    /// The whole object for a server-side apply.
    pub fn manifest(&self) -> Json {
        json!({
            "apiVersion": format!("{PROFILE_GROUP}/{PROFILE_VERSION}"),
            "kind": PROFILE_KIND,
            "metadata": {"name": self.name, "labels": self.labels, "annotations": self.annotations},
            "spec": self.spec.to_json(),
        })
    }
}

/// The ARNs of the repo policies, by name (each at its own path).
type RepoArns = BTreeMap<String, String>;

fn repo_arns(repo: &Repository) -> RepoArns {
    repo.policies
        .iter()
        .map(|p| (p.name.clone(), p.arn(&repo.config)))
        .collect()
}

fn resolve(config: &Config, repo: &RepoArns, r: &PolicyRef) -> String {
    match r {
        PolicyRef::Arn(a) => a.clone(),
        PolicyRef::Repo(name) => repo
            .get(name)
            .cloned()
            .unwrap_or_else(|| config.repo_policy_arn(name)),
    }
}

/// Renders the desired world from a validated repository.
pub fn render(repo: &Repository) -> Desired {
    let c = &repo.config;
    let arns = repo_arns(repo);
    let adopted: BTreeSet<&String> = repo
        .tenants
        .iter()
        .flat_map(|t| &t.adopt.policies)
        .collect();
    let policies = repo
        .policies
        .iter()
        .map(|p| {
            let d = DesiredPolicy {
                name: p.iam_name(c),
                path: p.path.clone(),
                arn: p.arn(c),
                document: Document::from(&p.document),
                tags: ownership_tags(&c.cluster.name, None),
                adopt: adopted.contains(&p.name),
            };
            (p.name.clone(), d)
        })
        .collect();
    let mut roles = BTreeMap::new();
    let mut profiles = BTreeMap::new();
    let mut access = BTreeMap::new();
    for t in &repo.tenants {
        let role = render_role(c, &arns, t);
        profiles.insert(t.name.clone(), render_profile(c, t, &role.arn));
        access.insert(t.name.clone(), render_access(c, t, &role.arn));
        roles.insert(t.name.clone(), role);
    }
    Desired {
        cluster: c.cluster.name.clone(),
        iam_path: c.iam.role_path.clone(),
        roles,
        policies,
        profiles,
        prune: c.prune.enabled,
        max_deletions: c.prune.max_deletions,
        decommissioned: c.prune.decommissioned.iter().cloned().collect(),
        access,
        prune_unmanaged_members: c.members.prune_unmanaged,
    }
}

fn render_access(c: &Config, t: &Tenant, role_arn: &str) -> DesiredAccess {
    let labels = ownership_labels(&c.cluster.name);
    let id = UserIdentity {
        header: &c.members.userid_header,
        prefix: &c.members.userid_prefix,
        principals: &c.members.principals,
    };
    DesiredAccess {
        owner: t.owner.clone(),
        members: t
            .members
            .iter()
            .map(|(user, role)| {
                let member = DesiredMember {
                    user: user.clone(),
                    role: *role,
                    labels: labels.clone(),
                    authorization: Document::from(member_authorization_spec(&id, user)),
                };
                (binding_name(user, *role), member)
            })
            .collect(),
        service_accounts: t
            .service_accounts
            .iter()
            .map(|sa| {
                let account = DesiredServiceAccount {
                    role_arn: role_arn.to_string(),
                    labels: labels.clone(),
                };
                (sa.clone(), account)
            })
            .collect(),
    }
}

fn render_role(c: &Config, arns: &RepoArns, t: &Tenant) -> DesiredRole {
    let name = t.role_name(c);
    let mut tags = t.tags.clone();
    tags.extend(ownership_tags(&c.cluster.name, Some(&t.name)));
    let boundary = t.permissions_boundary.clone().or_else(|| {
        c.iam.permissions_boundary.as_ref().map(|b| {
            if b.starts_with("arn:") {
                PolicyRef::Arn(b.clone())
            } else {
                PolicyRef::Repo(b.clone())
            }
        })
    });
    DesiredRole {
        tenant: t.name.clone(),
        arn: t.role_arn(c),
        name,
        path: t.role_path(c).to_string(),
        trust_policy: Document::from(c.trust_policy(&t.name, &t.service_accounts)),
        permissions_boundary: boundary.map(|b| resolve(c, arns, &b)),
        max_session_duration: t.max_session_duration.unwrap_or(c.iam.max_session_duration),
        tags,
        managed_policy_arns: t
            .managed_policies
            .iter()
            .map(|r| resolve(c, arns, r))
            .collect(),
        inline_policies: t
            .inline_policies
            .iter()
            .map(|(k, v)| (k.clone(), Document::from(v)))
            .collect(),
        adopt: t.adopt.role,
    }
}

fn render_profile(c: &Config, t: &Tenant, role_arn: &str) -> DesiredProfile {
    let mut labels = t.labels.clone();
    labels.extend(ownership_labels(&c.cluster.name));
    // `resourceQuotaSpec` is always written, `{}` when there is no quota:
    // exactly what the Kubeflow controller writes back (it adds `{}` to a
    // Profile without one), so its rewrite never differs from kftenant's.
    // The owner with the `apiGroup` the API server gives a User subject: the
    // controller compares its `namespaceAdmin` subject with it, and would
    // otherwise send a no-op update on every reconcile.
    let spec = json!({
        "owner": {"apiGroup": RBAC_GROUP, "kind": "User", "name": t.owner},
        "plugins": [{
            "kind": IAM_PLUGIN_KIND,
            "spec": {"awsIamRole": role_arn, "annotateOnly": c.profile.annotate_only}
        }],
        "resourceQuotaSpec": t.resource_quota.to_json(),
    });
    DesiredProfile {
        name: t.name.clone(),
        labels,
        annotations: t.annotations.clone(),
        spec: Document::from(spec),
        adopt: t.adopt.profile,
    }
}

/// Tenants whose rendered role or Profile differ between a base repository
/// and the desired world of the head (added, removed or changed), sorted:
/// what a pull request changes. A base that does not validate (`None`) lets
/// the pull request be planned still: every tenant of the head counts as changed.
///
/// The base is rendered one tenant at a time and compared at once, so the
/// base's whole desired world is never held beside the head's (with 10,000
/// tenants, each is about 120 MiB).
pub fn changed_tenants(base: Option<&Repository>, head: &Desired) -> Vec<(String, &'static str)> {
    let Some(base) = base else {
        return head.roles.keys().map(|t| (t.clone(), "changed")).collect();
    };
    let c = &base.config;
    let arns = repo_arns(base);
    let base_tenants: BTreeMap<&str, &Tenant> =
        base.tenants.iter().map(|t| (t.name.as_str(), t)).collect();
    let names: BTreeSet<&str> = base_tenants
        .keys()
        .copied()
        .chain(head.roles.keys().map(String::as_str))
        .collect();
    names
        .into_iter()
        .filter_map(|t| {
            let kind = match (base_tenants.get(t), head.roles.get(t)) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(bt), Some(head_role)) => {
                    let base_role = render_role(c, &arns, bt);
                    let changed = base_role != *head_role
                        || head.profiles.get(t) != Some(&render_profile(c, bt, &base_role.arn))
                        || head.access.get(t) != Some(&render_access(c, bt, &base_role.arn));
                    if !changed {
                        return None;
                    }
                    "changed"
                }
                (None, None) => return None,
            };
            Some((t.to_string(), kind))
        })
        .collect()
}
