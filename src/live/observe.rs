//! Reading the live world.
//!
//! IAM, bulk path (default): `GetAccountAuthorizationDetails` (Filter = Role,
//! LocalManagedPolicy), paginated with `MaxItems`/`Marker`, gives every role
//! with its trust policy, attachments, inline policies, boundary and tags,
//! and every customer-managed policy with its versions, in about one call per
//! 1,000 entities. It lacks two fields, read in bulk too: roles' maximum session
//! duration (`ListRoles` under kftenant's path) and policies' tags
//! (`ListPolicyTags`, one call per repo policy).
//!
//! IAM, per-role path ([`IamMode::PerRole`]): for accounts that do not grant
//! `iam:GetAccountAuthorizationDetails`: `ListRoles` under the path, then
//! `GetRole`, `ListAttachedRolePolicies`, `ListRolePolicies` and
//! `GetRolePolicy` per role. Both paths produce the same [`Observed`] world.
//!
//! Documents are stored decoded (compact JSON), whatever encoding IAM used for
//! them, so both paths and every IAM quirk produce the same snapshot.
//!
//! Kubernetes: one LIST of `profiles.kubeflow.org` with kftenant's label, plus
//! a GET per desired Profile that the LIST did not return (a new tenant, or a
//! conflict with an unlabelled Profile).

use super::authorization_policy_resource;
use super::{Clients, Error, profile_resource};
use crate::kubeflow::{ROLE_ANNOTATION, ROLE_ARN_ANNOTATION, USER_ANNOTATION};
use crate::ownership::{MANAGER, TAG_MANAGED_BY, is_policy_marker, owns_labels};
use crate::plan::desired::Desired;
use crate::plan::observed::{
    Observed, ObservedObject, ObservedPolicy, ObservedProfile, ObservedRole,
    SNAPSHOT_FORMAT_VERSION,
};
use aws_sdk_iam::types::EntityType;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams};
use std::collections::{BTreeMap, BTreeSet};

/// Every page of a paginated IAM list call, through [`Clients::iam_pages`].
macro_rules! all_pages {
    ($clients:expr, $op:literal, $req:expr) => {
        $clients
            .iam_pages($op, $req.into_paginator().send().try_collect())
            .await?
    };
}

/// How to read IAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IamMode {
    /// `GetAccountAuthorizationDetails`: a few calls for the whole account.
    #[default]
    Bulk,
    /// Per-role reads, for accounts without `iam:GetAccountAuthorizationDetails`.
    PerRole,
}

/// What to look at: kftenant's path, and the names it wants (for conflicts).
#[derive(Debug, Clone)]
pub struct Scope {
    /// IAM path of kftenant's roles and policies.
    pub path: String,
    /// Role names the desired world wants, lowercase.
    pub role_names: BTreeSet<String>,
    /// Policy names the desired world wants, lowercase.
    pub policy_names: BTreeSet<String>,
    /// Profile names the desired world wants.
    pub profile_names: BTreeSet<String>,
    /// Cluster name (the value of the `kftenant.io/cluster` label).
    pub cluster: String,
    /// Managed policy ARNs (attachments, boundaries) the desired world names
    /// that are not repo policies: checked to exist.
    pub external_policy_arns: BTreeSet<String>,
    /// The account the roles live in (its own customer-managed policies can be checked).
    pub account_id: String,
    /// Service accounts git names, as (namespace, name).
    pub service_accounts: BTreeSet<(String, String)>,
}

impl Scope {
    /// The scope of a desired world.
    pub fn of(desired: &Desired) -> Scope {
        Scope {
            path: desired.iam_path.clone(),
            role_names: desired
                .roles
                .values()
                .map(|r| r.name.to_ascii_lowercase())
                .collect(),
            policy_names: desired
                .policies
                .values()
                .map(|p| p.name.to_ascii_lowercase())
                .collect(),
            profile_names: desired.profiles.keys().cloned().collect(),
            cluster: desired.cluster.clone(),
            external_policy_arns: desired
                .roles
                .values()
                .flat_map(|r| r.managed_policy_arns.iter().chain(&r.permissions_boundary))
                .filter(|arn| !desired.policies.values().any(|p| p.arn == **arn))
                .cloned()
                .collect(),
            service_accounts: desired
                .service_accounts()
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
                .collect(),
            account_id: desired
                .roles
                .values()
                .next()
                .and_then(|r| r.arn.split(':').nth(4))
                .unwrap_or_default()
                .to_string(),
        }
    }

    fn wants_role(&self, path: &str, name: &str, tags: &BTreeMap<String, String>) -> bool {
        path.starts_with(&self.path)
            || tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGER)
            || self.role_names.contains(&name.to_ascii_lowercase())
    }

    fn wants_policy(&self, path: &str, name: &str) -> bool {
        path.starts_with(&self.path) || self.policy_names.contains(&name.to_ascii_lowercase())
    }
}

/// A document as IAM returned it, decoded to compact JSON (or kept raw if it does not parse).
fn decoded(raw: &str) -> String {
    crate::policy::parse_live(raw).map_or_else(|_| raw.to_string(), |v| v.to_string())
}

fn tag_map(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

/// Reads the whole observed world.
pub async fn observe(clients: &Clients, scope: &Scope, mode: IamMode) -> Result<Observed, Error> {
    let (iam, profiles) = tokio::join!(
        async {
            match mode {
                IamMode::Bulk => observe_iam_bulk(clients, scope).await,
                IamMode::PerRole => observe_iam_per_role(clients, scope).await,
            }
        },
        async {
            let profiles = observe_profiles(clients, scope).await?;
            let objects = observe_tenant_objects(clients, scope, &profiles).await?;
            Ok::<_, Error>((profiles, objects))
        }
    );
    let (mut roles, mut policies, local_arns) = iam?;
    let (mut profiles, tenant_objects) = profiles?;
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    let missing_policies = missing_policies(clients, scope, &roles, &policies, local_arns).await?;
    Ok(Observed {
        format_version: SNAPSHOT_FORMAT_VERSION,
        roles,
        policies,
        profiles,
        missing_policies,
        namespaces: tenant_objects.namespaces,
        role_bindings: tenant_objects.role_bindings,
        authorization_policies: tenant_objects.authorization_policies,
        service_accounts: tenant_objects.service_accounts,
    })
}

/// The managed policies the desired world names that do not exist, so the
/// plan shows a tenant that cannot be applied instead of an apply failing
/// half-way. A policy attached to any role read (or read itself) exists;
/// only the others are looked up, in bulk: `ListPolicies` of AWS's policies
/// (two pages), and the account's own from the bulk read (or one
/// `ListPolicies` of them on the per-role path). A converged world costs no
/// call. Policies of other accounts cannot be listed and are taken as they are.
async fn missing_policies(
    clients: &Clients,
    scope: &Scope,
    roles: &[ObservedRole],
    policies: &[ObservedPolicy],
    local_arns: Option<BTreeSet<String>>,
) -> Result<Vec<String>, Error> {
    let known: BTreeSet<&str> = roles
        .iter()
        .flat_map(|r| r.attached_policy_arns.iter().chain(&r.permissions_boundary))
        .chain(policies.iter().map(|p| &p.arn))
        .map(String::as_str)
        .collect();
    let unknown: Vec<&String> = scope
        .external_policy_arns
        .iter()
        .filter(|a| !known.contains(a.as_str()))
        .collect();
    let account_of = |arn: &str| arn.split(':').nth(4).unwrap_or_default().to_string();
    let aws: Vec<&String> = unknown
        .iter()
        .copied()
        .filter(|a| account_of(a) == "aws")
        .collect();
    let local: Vec<&String> = unknown
        .iter()
        .copied()
        .filter(|a| account_of(a) == scope.account_id)
        .collect();
    let mut missing = Vec::new();
    if !aws.is_empty() {
        let existing = list_policy_arns(clients, aws_sdk_iam::types::PolicyScopeType::Aws).await?;
        missing.extend(aws.into_iter().filter(|a| !existing.contains(*a)).cloned());
    }
    if !local.is_empty() {
        let existing = match local_arns {
            Some(arns) => arns,
            None => list_policy_arns(clients, aws_sdk_iam::types::PolicyScopeType::Local).await?,
        };
        missing.extend(
            local
                .into_iter()
                .filter(|a| !existing.contains(*a))
                .cloned(),
        );
    }
    missing.sort();
    Ok(missing)
}

/// The ARNs of every managed policy of a scope (`AWS` or `Local`).
async fn list_policy_arns(
    clients: &Clients,
    scope: aws_sdk_iam::types::PolicyScopeType,
) -> Result<BTreeSet<String>, Error> {
    let pages = all_pages!(
        clients,
        "ListPolicies",
        clients.iam.list_policies().scope(scope).max_items(1000)
    );
    Ok(pages
        .iter()
        .flat_map(|p| p.policies())
        .filter_map(|p| p.arn().map(String::from))
        .collect())
}

/// One page of `GetAccountAuthorizationDetails`, reduced to what we keep.
#[derive(Debug, Default)]
pub struct AuthPage {
    /// Roles on this page (max session duration not known yet).
    pub roles: Vec<ObservedRole>,
    /// Policies on this page (tags not known yet).
    pub policies: Vec<ObservedPolicy>,
    /// The ARN of every customer-managed policy on this page, read or not.
    pub local_arns: Vec<String>,
    /// The marker of the next page, when the response was truncated.
    pub next: Option<String>,
}

/// Follows `Marker` until `IsTruncated` is false, with a bound so a broken
/// server cannot loop us forever.
pub async fn paginate<F, Fut>(mut fetch: F) -> Result<AuthPage, Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<AuthPage, Error>>,
{
    const MAX_PAGES: usize = 10_000;
    let (mut all, mut marker) = (AuthPage::default(), None);
    for _ in 0..MAX_PAGES {
        let page = fetch(marker.take()).await?;
        all.roles.extend(page.roles);
        all.policies.extend(page.policies);
        all.local_arns.extend(page.local_arns);
        match page.next {
            Some(m) => marker = Some(m),
            None => return Ok(all),
        }
    }
    Err(Error::Unbounded {
        operation: "GetAccountAuthorizationDetails",
        pages: MAX_PAGES,
    })
}

async fn auth_page(
    clients: &Clients,
    scope: &Scope,
    marker: Option<String>,
) -> Result<AuthPage, Error> {
    let out = clients
        .iam_call(
            "GetAccountAuthorizationDetails",
            clients
                .iam
                .get_account_authorization_details()
                .filter(EntityType::Role)
                .filter(EntityType::LocalManagedPolicy)
                .max_items(1000)
                .set_marker(marker)
                .send(),
        )
        .await?;
    let mut page = AuthPage {
        next: if out.is_truncated() {
            out.marker().map(String::from)
        } else {
            None
        },
        ..Default::default()
    };
    for r in out.role_detail_list() {
        let (name, path) = (
            r.role_name().unwrap_or_default(),
            r.path().unwrap_or_default(),
        );
        let tags = tag_map(r.tags());
        if !scope.wants_role(path, name, &tags) {
            continue;
        }
        page.roles.push(ObservedRole {
            name: name.to_string(),
            path: path.to_string(),
            arn: r.arn().unwrap_or_default().to_string(),
            assume_role_policy_document: decoded(r.assume_role_policy_document().unwrap_or("{}")),
            permissions_boundary: r
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(String::from),
            max_session_duration: 0,
            tags,
            attached_policy_arns: sorted(
                r.attached_managed_policies()
                    .iter()
                    .filter_map(|a| a.policy_arn().map(String::from)),
            ),
            inline_policies: r
                .role_policy_list()
                .iter()
                .map(|p| {
                    (
                        p.policy_name().unwrap_or_default().to_string(),
                        decoded(p.policy_document().unwrap_or("{}")),
                    )
                })
                .collect(),
        });
    }
    for p in out.policies() {
        let arn = p.arn().unwrap_or_default();
        // moto leaves PolicyName out of this response; the ARN always ends with the name.
        let name = p
            .policy_name()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| arn.rsplit('/').next().unwrap_or_default());
        let path = p.path().unwrap_or_default();
        page.local_arns.push(arn.to_string());
        if !scope.wants_policy(path, name) {
            continue;
        }
        let versions = p.policy_version_list();
        let default = versions.iter().find(|v| v.is_default_version());
        let mut version_ids: Vec<String> = versions
            .iter()
            .filter_map(|v| v.version_id().map(String::from))
            .collect();
        sort_versions(&mut version_ids);
        page.policies.push(ObservedPolicy {
            name: name.to_string(),
            path: path.to_string(),
            arn: arn.to_string(),
            document: default
                .and_then(|v| v.document())
                .map(decoded)
                .unwrap_or_default(),
            default_version_id: p.default_version_id().unwrap_or_default().to_string(),
            version_ids,
            attachment_count: (p.attachment_count().unwrap_or(0)
                + p.permissions_boundary_usage_count().unwrap_or(0))
            .max(0) as usize,
            description: p.description().unwrap_or_default().to_string(),
            tags: None,
        });
    }
    Ok(page)
}

fn sorted(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = it.collect();
    v.sort();
    v
}

/// `v1`, `v2`, ..., `v10` in numeric order (oldest first).
fn sort_versions(ids: &mut [String]) {
    ids.sort_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap_or(u64::MAX));
}

/// Roles and policies, and the ARN of every customer-managed policy of the
/// account when the read listed them all (the bulk read does).
type IamWorld = (
    Vec<ObservedRole>,
    Vec<ObservedPolicy>,
    Option<BTreeSet<String>>,
);

async fn observe_iam_bulk(clients: &Clients, scope: &Scope) -> Result<IamWorld, Error> {
    let AuthPage {
        mut roles,
        mut policies,
        local_arns,
        ..
    } = paginate(|marker| auth_page(clients, scope, marker)).await?;
    let durations = list_role_durations(clients, &scope.path).await?;
    for r in &mut roles {
        r.max_session_duration = match durations.get(&r.name) {
            Some(d) => *d,
            // Outside kftenant's path (a conflict by name): one extra read.
            None => get_role(clients, &r.name)
                .await?
                .map_or(3600, |g| g.max_session_duration),
        };
    }
    // A policy kftenant created carries its marker (this cluster's or, in a
    // shared account, another cluster's: never this cluster's to touch);
    // only the others (adopted by tags, or conflicts by name) cost a tag read.
    for p in policies
        .iter_mut()
        .filter(|p| !is_policy_marker(&p.description))
    {
        p.tags = Some(policy_tags(clients, &p.arn).await?);
    }
    Ok((roles, policies, Some(local_arns.into_iter().collect())))
}

async fn list_role_durations(
    clients: &Clients,
    path: &str,
) -> Result<BTreeMap<String, u32>, Error> {
    let pages = all_pages!(
        clients,
        "ListRoles",
        clients.iam.list_roles().path_prefix(path).max_items(1000)
    );
    Ok(pages
        .iter()
        .flat_map(|p| p.roles())
        .map(|r| {
            (
                r.role_name().to_string(),
                r.max_session_duration().unwrap_or(3600) as u32,
            )
        })
        .collect())
}

async fn policy_tags(clients: &Clients, arn: &str) -> Result<BTreeMap<String, String>, Error> {
    let pages = all_pages!(
        clients,
        "ListPolicyTags",
        clients.iam.list_policy_tags().policy_arn(arn)
    );
    Ok(pages.iter().flat_map(|p| tag_map(p.tags())).collect())
}

/// `GetRole` plus the attachments and inline policies of one role; `None` when it does not exist.
async fn get_role(clients: &Clients, name: &str) -> Result<Option<ObservedRole>, Error> {
    let out = match clients
        .iam_call("GetRole", clients.iam.get_role().role_name(name).send())
        .await
    {
        Ok(o) => o,
        Err(e) if e.is_no_such_entity() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(r) = out.role() else { return Ok(None) };
    Ok(Some(ObservedRole {
        name: r.role_name().to_string(),
        path: r.path().to_string(),
        arn: r.arn().to_string(),
        assume_role_policy_document: decoded(r.assume_role_policy_document().unwrap_or("{}")),
        permissions_boundary: r
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(String::from),
        max_session_duration: r.max_session_duration().unwrap_or(3600) as u32,
        tags: tag_map(r.tags()),
        attached_policy_arns: Vec::new(),
        inline_policies: BTreeMap::new(),
    }))
}

async fn fill_role_policies(clients: &Clients, role: &mut ObservedRole) -> Result<(), Error> {
    let pages = all_pages!(
        clients,
        "ListAttachedRolePolicies",
        clients
            .iam
            .list_attached_role_policies()
            .role_name(&role.name)
    );
    role.attached_policy_arns = sorted(
        pages
            .iter()
            .flat_map(|p| p.attached_policies())
            .filter_map(|a| a.policy_arn().map(String::from)),
    );
    let pages = all_pages!(
        clients,
        "ListRolePolicies",
        clients.iam.list_role_policies().role_name(&role.name)
    );
    for n in pages.iter().flat_map(|p| p.policy_names()) {
        let p = clients
            .iam_call(
                "GetRolePolicy",
                clients
                    .iam
                    .get_role_policy()
                    .role_name(&role.name)
                    .policy_name(n)
                    .send(),
            )
            .await?;
        role.inline_policies
            .insert(n.clone(), decoded(p.policy_document()));
    }
    Ok(())
}

async fn observe_iam_per_role(clients: &Clients, scope: &Scope) -> Result<IamWorld, Error> {
    let pages = all_pages!(
        clients,
        "ListRoles",
        clients
            .iam
            .list_roles()
            .path_prefix(&scope.path)
            .max_items(1000)
    );
    let names: BTreeSet<String> = pages
        .iter()
        .flat_map(|p| p.roles())
        .map(|r| r.role_name().to_string())
        .collect();
    let under_path: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    // Desired names outside the path can only be conflicts; look them up by name.
    let mut wanted: Vec<String> = names.into_iter().collect();
    wanted.extend(
        scope
            .role_names
            .iter()
            .filter(|n| !under_path.contains(*n))
            .cloned(),
    );
    let mut roles = Vec::new();
    for name in wanted {
        if let Some(mut r) = get_role(clients, &name).await? {
            if scope.wants_role(&r.path, &r.name, &r.tags) {
                fill_role_policies(clients, &mut r).await?;
                roles.push(r);
            }
        }
    }
    let mut policies = Vec::new();
    let pages = all_pages!(
        clients,
        "ListPolicies",
        clients
            .iam
            .list_policies()
            .scope(aws_sdk_iam::types::PolicyScopeType::Local)
            .path_prefix(&scope.path)
    );
    {
        for p in pages.iter().flat_map(|p| p.policies()) {
            let arn = p.arn().unwrap_or_default().to_string();
            let versions = clients
                .iam_call(
                    "ListPolicyVersions",
                    clients.iam.list_policy_versions().policy_arn(&arn).send(),
                )
                .await?;
            let mut version_ids: Vec<String> = versions
                .versions()
                .iter()
                .filter_map(|v| v.version_id().map(String::from))
                .collect();
            sort_versions(&mut version_ids);
            let default_version_id = p.default_version_id().unwrap_or_default().to_string();
            let v = clients
                .iam_call(
                    "GetPolicyVersion",
                    clients
                        .iam
                        .get_policy_version()
                        .policy_arn(&arn)
                        .version_id(&default_version_id)
                        .send(),
                )
                .await?;
            // ListPolicies leaves out the description and the tags.
            let got = clients
                .iam_call(
                    "GetPolicy",
                    clients.iam.get_policy().policy_arn(&arn).send(),
                )
                .await?;
            let got = got.policy();
            let description = got
                .and_then(|g| g.description())
                .unwrap_or_default()
                .to_string();
            // As the bulk read: tags of a marked policy are not part of the world.
            let tags =
                (!is_policy_marker(&description)).then(|| tag_map(got.map_or(&[], |g| g.tags())));
            policies.push(ObservedPolicy {
                name: p.policy_name().unwrap_or_default().to_string(),
                path: p.path().unwrap_or_default().to_string(),
                document: v
                    .policy_version()
                    .and_then(|v| v.document())
                    .map(decoded)
                    .unwrap_or_default(),
                default_version_id,
                version_ids,
                attachment_count: (p.attachment_count().unwrap_or(0)
                    + p.permissions_boundary_usage_count().unwrap_or(0))
                .max(0) as usize,
                description,
                tags,
                arn,
            });
        }
    }
    Ok((roles, policies, None))
}

fn to_profile(o: DynamicObject) -> ObservedProfile {
    let name = o.metadata.name.clone().unwrap_or_default();
    ObservedProfile {
        labels: o.metadata.labels.clone().unwrap_or_default(),
        annotations: o.metadata.annotations.clone().unwrap_or_default(),
        deleting: o.metadata.deletion_timestamp.is_some(),
        spec: o
            .data
            .get("spec")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
            .into(),
        name,
    }
}

/// Every Profile, in one LIST: the managed ones, and any other with a name
/// git wants (a conflict), without a GET per tenant. Only those are kept.
async fn observe_profiles(clients: &Clients, scope: &Scope) -> Result<Vec<ObservedProfile>, Error> {
    let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
    let list = clients
        .kube_call("list", "list Profiles", || async {
            api.list(&ListParams::default()).await
        })
        .await
        .map_err(|e| match e {
            Error::Kube { code, .. } if code == "NotFound" => Error::Kube {
                operation: "list Profiles".into(),
                code,
                message: "the Profile CRD (profiles.kubeflow.org) is not installed in this cluster"
                    .into(),
            },
            other => other,
        })?;
    Ok(list
        .items
        .into_iter()
        .map(to_profile)
        .filter(|p| owns_labels(&p.labels, &scope.cluster) || scope.profile_names.contains(&p.name))
        .collect())
}

/// Every Profile of the cluster matching `selector` (a label selector;
/// empty for all), in one LIST: what `kftenant import` chooses from.
pub async fn list_profiles(
    clients: &Clients,
    selector: &str,
) -> Result<Vec<ObservedProfile>, Error> {
    let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
    let mut lp = ListParams::default();
    if !selector.is_empty() {
        lp = lp.labels(selector);
    }
    let list = clients
        .kube_call("list", "list Profiles", || api.list(&lp))
        .await?;
    let mut profiles: Vec<ObservedProfile> = list.items.into_iter().map(to_profile).collect();
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(profiles)
}

/// Customer-managed policies by ARN (`GetPolicy` and the default version's
/// document, and their tags), for `kftenant import --import-policies`. A
/// policy that does not exist is left out.
pub async fn policies_by_arn(
    clients: &Clients,
    arns: &BTreeSet<String>,
) -> Result<Vec<ObservedPolicy>, Error> {
    let mut out = Vec::new();
    for arn in arns {
        let got = match clients
            .iam_call("GetPolicy", clients.iam.get_policy().policy_arn(arn).send())
            .await
        {
            Ok(g) => g,
            Err(e) if e.is_no_such_entity() => continue,
            Err(e) => return Err(e),
        };
        let Some(p) = got.policy() else { continue };
        let default_version_id = p.default_version_id().unwrap_or_default().to_string();
        let v = clients
            .iam_call(
                "GetPolicyVersion",
                clients
                    .iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(&default_version_id)
                    .send(),
            )
            .await?;
        out.push(ObservedPolicy {
            name: p.policy_name().unwrap_or_default().to_string(),
            path: p.path().unwrap_or_default().to_string(),
            arn: arn.clone(),
            document: v
                .policy_version()
                .and_then(|v| v.document())
                .map(decoded)
                .unwrap_or_default(),
            default_version_id,
            version_ids: Vec::new(),
            attachment_count: (p.attachment_count().unwrap_or(0)
                + p.permissions_boundary_usage_count().unwrap_or(0))
            .max(0) as usize,
            description: p.description().unwrap_or_default().to_string(),
            tags: Some(policy_tags(clients, arn).await?),
        });
    }
    Ok(out)
}

/// The tenant namespaces' objects kftenant looks at.
#[derive(Default)]
struct TenantObjects {
    namespaces: Vec<ObservedObject>,
    role_bindings: Vec<ObservedObject>,
    authorization_policies: Vec<ObservedObject>,
    service_accounts: Vec<ObservedObject>,
}

fn object(meta: ObjectMeta, body: serde_json::Value) -> ObservedObject {
    ObservedObject {
        namespace: meta.namespace.unwrap_or_default(),
        name: meta.name.unwrap_or_default(),
        labels: meta.labels.unwrap_or_default(),
        annotations: meta.annotations.unwrap_or_default(),
        body: body.into(),
        deleting: meta.deletion_timestamp.is_some(),
    }
}

/// KFAM lists an access object when it has both a `user` and a `role` annotation.
fn kfam_listed(o: &ObservedObject) -> bool {
    o.annotations.contains_key(USER_ANNOTATION) && o.annotations.contains_key(ROLE_ANNOTATION)
}

/// Namespaces, RoleBindings, AuthorizationPolicies and ServiceAccounts of the
/// tenant namespaces (of the Profiles git wants or kftenant manages): one
/// cluster-wide LIST per kind, however many tenants (metadata only where
/// that is all kftenant reads), filtered here.
async fn observe_tenant_objects(
    clients: &Clients,
    scope: &Scope,
    profiles: &[ObservedProfile],
) -> Result<TenantObjects, Error> {
    let tenant_namespaces: BTreeSet<&str> = scope
        .profile_names
        .iter()
        .map(String::as_str)
        .chain(profiles.iter().map(|p| p.name.as_str()))
        .collect();
    let in_tenant = |o: &ObservedObject| tenant_namespaces.contains(o.namespace.as_str());
    let lp = ListParams::default();
    let namespaces: Api<Namespace> = Api::all(clients.kube.clone());
    let bindings: Api<RoleBinding> = Api::all(clients.kube.clone());
    let accounts: Api<ServiceAccount> = Api::all(clients.kube.clone());
    let policies: Api<DynamicObject> =
        Api::all_with(clients.kube.clone(), &authorization_policy_resource());
    let (ns, rb, sa, ap) = tokio::join!(
        clients.kube_call("list", "list Namespaces", || namespaces.list_metadata(&lp)),
        clients.kube_call("list", "list RoleBindings", || bindings.list(&lp)),
        clients.kube_call("list", "list ServiceAccounts", || accounts
            .list_metadata(&lp)),
        clients.kube_call("list", "list AuthorizationPolicies", || policies.list(&lp)),
    );
    let mut out = TenantObjects {
        namespaces: ns?
            .items
            .into_iter()
            .map(|n| object(n.metadata, serde_json::Value::Null))
            .filter(|o| tenant_namespaces.contains(o.name.as_str()))
            .collect(),
        role_bindings: rb?
            .items
            .into_iter()
            .map(|b| {
                let body = serde_json::json!({"roleRef": b.role_ref, "subjects": b.subjects});
                object(b.metadata, body)
            })
            .filter(|o| in_tenant(o) && kfam_listed(o))
            .collect(),
        service_accounts: sa?
            .items
            .into_iter()
            .map(|a| object(a.metadata, serde_json::Value::Null))
            .filter(|o| {
                in_tenant(o)
                    && (scope
                        .service_accounts
                        .contains(&(o.namespace.clone(), o.name.clone()))
                        || owns_labels(&o.labels, &scope.cluster)
                        || o.annotations.contains_key(ROLE_ARN_ANNOTATION))
            })
            .collect(),
        // Istio's CRD may be absent (a cluster without Istio): then there is none.
        authorization_policies: match ap {
            Ok(list) => list
                .items
                .into_iter()
                .map(|p| {
                    let spec = p.data.get("spec").cloned().unwrap_or_default();
                    object(p.metadata, spec)
                })
                .filter(|o| in_tenant(o) && kfam_listed(o))
                .collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        },
    };
    for list in [
        &mut out.namespaces,
        &mut out.role_bindings,
        &mut out.service_accounts,
        &mut out.authorization_policies,
    ] {
        list.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A stand-in for IAM's paginated GetAccountAuthorizationDetails: moto never
    // truncates the response (it ignores MaxItems and Marker), so the marker
    // handling can only be exercised with pages made here.
    #[tokio::test]
    async fn pagination_follows_markers_to_the_end() {
        let role = |n: &str| ObservedRole {
            name: n.into(),
            path: "/kftenant/".into(),
            arn: format!("arn:aws:iam::1:role/kftenant/{n}"),
            assume_role_policy_document: "{}".into(),
            permissions_boundary: None,
            max_session_duration: 0,
            tags: BTreeMap::new(),
            attached_policy_arns: vec![],
            inline_policies: BTreeMap::new(),
        };
        let mut seen = Vec::new();
        let AuthPage { roles, .. } = paginate(|marker| {
            seen.push(marker.clone());
            let page = match marker.as_deref() {
                None => AuthPage {
                    roles: vec![role("a"), role("b")],
                    next: Some("m1".into()),
                    ..Default::default()
                },
                Some("m1") => AuthPage {
                    roles: vec![role("c")],
                    next: Some("m2".into()),
                    ..Default::default()
                },
                Some("m2") => AuthPage {
                    roles: vec![role("d")],
                    next: None,
                    ..Default::default()
                },
                Some(other) => panic!("unexpected marker {other}"),
            };
            async move { Ok(page) }
        })
        .await
        .unwrap();
        assert_eq!(
            roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c", "d"]
        );
        assert_eq!(seen, vec![None, Some("m1".into()), Some("m2".into())]);
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["v10".to_string(), "v2".into(), "v1".into()];
        sort_versions(&mut v);
        assert_eq!(v, vec!["v1", "v2", "v10"]);
    }
}
