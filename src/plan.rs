//! The planner: `plan(desired, observed, options) -> Plan`.
//!
//! # Guarantees
//! - Pure and deterministic: no I/O, no clock; the same inputs give the same plan.
//! - Only resources carrying kftenant's ownership tags (IAM) or label
//!   (Profiles) *for this cluster* are ever updated or deleted. A live
//!   resource with a desired name but without them is a [`Conflict`], and the
//!   tenant that wants it is left alone.
//! - Policy documents are compared semantically ([`crate::policy::same_policy`]):
//!   a converged world plans to no changes.
//! - Order: repo policies; then per tenant the role, its trust policy,
//!   boundary, session duration, tags, attachments and inline policies, then the
//!   Profile. Deletions run the other way: the Profile first (the Kubeflow
//!   controller needs the role while its finalizer runs), then detach, delete
//!   inline policies and the role; repo policies last, and only when unused.
//! - Mass deletes are refused ([`PlanRefused`]) unless explicitly allowed.

use crate::desired::{
    Desired, DesiredPolicy, DesiredProfile, DesiredRole, MANAGER, TAG_CLUSTER, TAG_MANAGED_BY,
    TAG_TENANT, policy_marker,
};
use crate::model::MANAGED_BY_LABEL;
use crate::observed::{Observed, ObservedPolicy, ObservedProfile, ObservedRole};
use crate::policy;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Version of the plan JSON format.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Options that change what a plan may contain.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Allow deleting more tenants than `[prune] max_deletions`, or all of them.
    pub allow_mass_delete: bool,
    /// The git commit the desired world came from, recorded in the plan.
    pub source_commit: Option<String>,
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The resource does not exist and will be created.
    Create,
    /// The resource exists and will be changed in place.
    Update,
    /// The resource will be deleted.
    Delete,
}

impl Action {
    /// `+`, `~` or `-`.
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        }
    }
}

/// The thing a change acts on. Each kind maps to one executor step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A customer-managed policy from `policies/` (document and tags).
    Policy { name: String },
    /// An IAM role (create: with trust policy, boundary, tags and duration).
    Role { name: String },
    /// A role's trust policy.
    RoleTrustPolicy { role: String },
    /// A role's permissions boundary.
    RoleBoundary { role: String },
    /// A role's maximum session duration.
    RoleMaxSessionDuration { role: String },
    /// A role's tags.
    RoleTags { role: String },
    /// One managed policy attachment.
    RoleAttachment { role: String, policy_arn: String },
    /// One inline policy.
    RoleInlinePolicy { role: String, policy_name: String },
    /// A Kubeflow Profile.
    Profile { name: String },
}

impl Resource {
    /// The field of the role or Profile this resource stands for, for drift summaries.
    pub fn field_name(&self) -> &'static str {
        match self {
            Resource::Policy { .. } | Resource::Role { .. } | Resource::Profile { .. } => {
                "(resource)"
            }
            Resource::RoleTrustPolicy { .. } => "trust_policy",
            Resource::RoleBoundary { .. } => "permissions_boundary",
            Resource::RoleMaxSessionDuration { .. } => "max_session_duration",
            Resource::RoleTags { .. } => "tags",
            Resource::RoleAttachment { .. } => "attached_policies",
            Resource::RoleInlinePolicy { .. } => "inline_policies",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Policy { name } => write!(f, "iam_policy.{name}"),
            Resource::Role { name } => write!(f, "iam_role.{name}"),
            Resource::RoleTrustPolicy { role } => write!(f, "iam_role.{role}.trust_policy"),
            Resource::RoleBoundary { role } => write!(f, "iam_role.{role}.permissions_boundary"),
            Resource::RoleMaxSessionDuration { role } => {
                write!(f, "iam_role.{role}.max_session_duration")
            }
            Resource::RoleTags { role } => write!(f, "iam_role.{role}.tags"),
            Resource::RoleAttachment { role, policy_arn } => {
                write!(f, "iam_role.{role}.attachment[{policy_arn}]")
            }
            Resource::RoleInlinePolicy { role, policy_name } => {
                write!(f, "iam_role.{role}.inline_policy[{policy_name}]")
            }
            Resource::Profile { name } => write!(f, "profile.{name}"),
        }
    }
}

/// One field that differs between the live world and git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Field path, e.g. `tags.team` or `spec.resourceQuotaSpec`.
    pub field: String,
    /// Live value (`null` when absent).
    pub before: Json,
    /// Value from git (`null` when absent).
    pub after: Json,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Stable address, e.g. `iam_role.team-a-prod-role.trust_policy`.
    pub address: String,
    /// What is acted on (typed; executors dispatch on it).
    pub resource: Resource,
    /// The tenant this belongs to; `None` for repo policies.
    pub tenant: Option<String>,
    /// Create, update or delete.
    pub action: Action,
    /// Why this change is needed, in words.
    pub reason: String,
    /// Live value (policies decoded and normalised), `None` when creating.
    pub before: Option<Json>,
    /// Value from git, `None` when deleting.
    pub after: Option<Json>,
    /// The fields that differ (updates only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<FieldDiff>,
    /// True when this corrects drift: a change made to a managed resource outside git.
    pub drift: bool,
}

/// A managed resource that differs from git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Address of the drifted resource.
    pub address: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// The drifted fields (or the resource itself when it was added or removed by hand).
    pub fields: Vec<String>,
    /// What happened, in words.
    pub message: String,
}

/// A live resource that kftenant wants but does not own: never touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// Address of the resource.
    pub address: String,
    /// The tenant that wants it, if any.
    pub tenant: Option<String>,
    /// Why kftenant will not touch it, and what to do.
    pub reason: String,
}

/// A managed resource that is no longer wanted but is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// Address of the resource.
    pub address: String,
    /// Why it is kept.
    pub reason: String,
}

/// Counts for summaries and exit codes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Changes that create.
    pub create: usize,
    /// Changes that update.
    pub update: usize,
    /// Changes that delete.
    pub delete: usize,
    /// Drifted resources.
    pub drift: usize,
    /// Conflicts.
    pub conflicts: usize,
    /// Tenants with at least one change.
    pub tenants_changed: usize,
}

/// The plan: data first; every renderer works from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// JSON format version.
    pub format_version: u32,
    /// Git commit of the desired world, when known.
    pub source_commit: Option<String>,
    /// Cluster name.
    pub cluster: String,
    /// Ordered changes.
    pub changes: Vec<Change>,
    /// Drift, also present as the changes that correct it.
    pub drift: Vec<Drift>,
    /// Live resources kftenant wants but does not own.
    pub conflicts: Vec<Conflict>,
    /// Unwanted managed resources that are kept (prune disabled, still in use).
    pub kept: Vec<Kept>,
    /// Counts.
    pub summary: Summary,
    /// Digest of the observed world the plan was computed against
    /// ([`crate::observed::Observed::digest`]); `apply --plan-file` refuses
    /// the plan when the live world no longer has this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_digest: Option<String>,
}

impl Plan {
    /// True when applying would do nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Why a plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefused {
    /// More tenants would be deleted than allowed.
    #[error(
        "refusing to delete {} tenants ({}), more than [prune] max_deletions = {limit}; \
         if this is intended, re-run with --allow-mass-delete",
        tenants.len(), tenants.join(", ")
    )]
    TooManyDeletions {
        /// The tenants that would be deleted.
        tenants: Vec<String>,
        /// The configured limit.
        limit: usize,
    },
    /// Every tenant would be deleted.
    #[error(
        "refusing to delete every tenant ({}): git has no tenants, which usually means an empty or broken tenants/ folder; \
         if this is intended, re-run with --allow-mass-delete",
        tenants.join(", ")
    )]
    AllTenants {
        /// The tenants that would be deleted.
        tenants: Vec<String>,
    },
}

fn owned(tags: &BTreeMap<String, String>, cluster: &str) -> bool {
    tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGER)
        && tags.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
}

/// A policy is ours when kftenant created it for this cluster (its description
/// carries the marker) or when it carries the ownership tags (adopted by hand).
fn policy_owned(p: &ObservedPolicy, cluster: &str) -> bool {
    p.description == policy_marker(cluster) || p.tags.as_ref().is_some_and(|t| owned(t, cluster))
}

/// A Profile is ours with kftenant's label and this cluster's (a Profile
/// labelled for another cluster's kftenant, as when two instances share an
/// API server, is not ours to touch).
fn profile_owned(p: &ObservedProfile, cluster: &str) -> bool {
    p.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
        && p.labels.get(TAG_CLUSTER).map(String::as_str) == Some(cluster)
}

/// A live document decoded and normalised, or the raw text when it does not parse.
fn live_doc(raw: &str) -> Json {
    policy::parse_live(raw).map_or_else(|_| Json::String(raw.to_string()), policy::normalize_owned)
}

fn tags_json(tags: &BTreeMap<String, String>) -> Json {
    serde_json::to_value(tags).expect("tags serialise")
}

#[derive(Default)]
struct Planner {
    changes: Vec<Change>,
    conflicts: Vec<Conflict>,
    kept: Vec<Kept>,
}

impl Planner {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        resource: Resource,
        tenant: Option<&str>,
        action: Action,
        reason: impl Into<String>,
        before: Option<Json>,
        after: Option<Json>,
        diffs: Vec<FieldDiff>,
        drift: bool,
    ) {
        self.changes.push(Change {
            address: resource.to_string(),
            resource,
            tenant: tenant.map(String::from),
            action,
            reason: reason.into(),
            before,
            after,
            diffs,
            drift,
        });
    }

    fn conflict(&mut self, resource: &Resource, tenant: Option<&str>, reason: impl Into<String>) {
        self.conflicts.push(Conflict {
            address: resource.to_string(),
            tenant: tenant.map(String::from),
            reason: reason.into(),
        });
    }
}

/// Computes the ordered changes that make `observed` equal to `desired`.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    opts: &PlanOptions,
) -> Result<Plan, PlanRefused> {
    let cluster = desired.cluster.as_str();
    let roles: BTreeMap<String, &ObservedRole> = observed
        .roles
        .iter()
        .map(|r| (r.name.to_ascii_lowercase(), r))
        .collect();
    let policies: BTreeMap<String, &ObservedPolicy> = observed
        .policies
        .iter()
        .map(|p| (p.name.to_ascii_lowercase(), p))
        .collect();
    let profiles: BTreeMap<&str, &ObservedProfile> = observed
        .profiles
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let mut pl = Planner {
        changes: Vec::new(),
        conflicts: Vec::new(),
        kept: Vec::new(),
    };

    // 1. Repo policies.
    let mut blocked_policies = BTreeSet::new();
    for p in desired.policies.values() {
        match policies.get(&p.name.to_ascii_lowercase()) {
            Some(live) if !policy_owned(live, cluster) => {
                blocked_policies.insert(p.arn.clone());
                pl.conflict(&Resource::Policy { name: p.name.clone() }, None, format!("policy `{}` exists ({}) without kftenant's ownership tags for cluster `{cluster}`; kftenant will not touch it. Rename policies/{}.json, or tag the live policy {TAG_MANAGED_BY}={MANAGER} and {TAG_CLUSTER}={cluster} to adopt it", p.name, live.arn, p.name));
            }
            Some(live) => plan_policy_update(&mut pl, p, live),
            None => pl.push(
                Resource::Policy {
                    name: p.name.clone(),
                },
                None,
                Action::Create,
                "in git, not in IAM",
                None,
                Some(json!({"arn": p.arn, "path": p.path, "document": p.document, "tags": p.tags, "description": policy_marker(cluster)})),
                vec![],
                false,
            ),
        }
    }

    // 2. Tenants in git.
    // Tenants are independent: plan them on every core, then join the parts
    // in tenant order, so the plan is the same whatever the thread count.
    let tenants: Vec<(&String, &DesiredRole)> = desired.roles.iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = tenants.len().div_ceil(threads).max(512);
    let parts: Vec<Planner> = std::thread::scope(|s| {
        let handles: Vec<_> = tenants
            .chunks(chunk)
            .map(|part| {
                let (roles, profiles, blocked) = (&roles, &profiles, &blocked_policies);
                s.spawn(move || {
                    let mut p = Planner::default();
                    for (tenant, role) in part {
                        plan_tenant(
                            &mut p,
                            cluster,
                            tenant,
                            role,
                            &desired.profiles[*tenant],
                            roles,
                            profiles,
                            blocked,
                        );
                    }
                    p
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("planner thread"))
            .collect()
    });
    for part in parts {
        pl.changes.extend(part.changes);
        pl.conflicts.extend(part.conflicts);
    }

    // 3. Managed things no longer in git, grouped by tenant: Profile first, role after.
    let wanted_roles: BTreeSet<String> = desired
        .roles
        .values()
        .map(|r| r.name.to_ascii_lowercase())
        .collect();
    let mut orphan_roles: BTreeMap<String, Vec<&ObservedRole>> = BTreeMap::new();
    for r in &observed.roles {
        if owned(&r.tags, cluster) && !wanted_roles.contains(&r.name.to_ascii_lowercase()) {
            let tenant = r
                .tags
                .get(TAG_TENANT)
                .cloned()
                .unwrap_or_else(|| r.name.clone());
            orphan_roles.entry(tenant).or_default().push(r);
        }
    }
    let mut orphan_profiles: BTreeMap<String, &ObservedProfile> = BTreeMap::new();
    for p in &observed.profiles {
        if profile_owned(p, cluster) && !desired.profiles.contains_key(&p.name) {
            orphan_profiles.insert(p.name.clone(), p);
        }
    }
    let orphan_tenants: BTreeSet<String> = orphan_roles
        .keys()
        .chain(orphan_profiles.keys())
        .cloned()
        .collect();
    let removed_tenants: Vec<String> = orphan_tenants
        .iter()
        .filter(|t| !desired.roles.contains_key(*t))
        .cloned()
        .collect();
    if desired.prune && !opts.allow_mass_delete && !removed_tenants.is_empty() {
        if desired.roles.is_empty() {
            return Err(PlanRefused::AllTenants {
                tenants: removed_tenants,
            });
        }
        if removed_tenants.len() > desired.max_deletions {
            return Err(PlanRefused::TooManyDeletions {
                tenants: removed_tenants,
                limit: desired.max_deletions,
            });
        }
    }
    let mut detached: BTreeMap<String, usize> = BTreeMap::new();
    for tenant in &orphan_tenants {
        if let Some(p) = orphan_profiles.get(tenant) {
            let res = Resource::Profile {
                name: p.name.clone(),
            };
            if !desired.prune {
                pl.kept.push(Kept {
                    address: res.to_string(),
                    reason: "no longer in git; [prune] enabled = false".into(),
                });
            } else if p.deleting {
                pl.kept.push(Kept {
                    address: res.to_string(),
                    reason: "already being deleted (waiting for finalizers)".into(),
                });
            } else {
                pl.push(
                    res,
                    Some(tenant),
                    Action::Delete,
                    "no longer in git",
                    Some(profile_view(p)),
                    None,
                    vec![],
                    false,
                );
            }
        }
        for r in orphan_roles.get(tenant).into_iter().flatten() {
            if !desired.prune {
                pl.kept.push(Kept {
                    address: Resource::Role {
                        name: r.name.clone(),
                    }
                    .to_string(),
                    reason: "no longer in git; [prune] enabled = false".into(),
                });
                continue;
            }
            let why = if desired.roles.contains_key(tenant) {
                "role name no longer rendered from git (tenant renamed or role_name_template changed)"
            } else {
                "tenant no longer in git"
            };
            let mut arns: Vec<&String> = r.attached_policy_arns.iter().collect();
            arns.sort();
            for arn in arns {
                *detached.entry(arn.clone()).or_default() += 1;
                pl.push(
                    Resource::RoleAttachment {
                        role: r.name.clone(),
                        policy_arn: arn.clone(),
                    },
                    Some(tenant),
                    Action::Delete,
                    format!("detach before deleting the role: {why}"),
                    Some(json!(arn)),
                    None,
                    vec![],
                    false,
                );
            }
            for (name, doc) in &r.inline_policies {
                pl.push(
                    Resource::RoleInlinePolicy {
                        role: r.name.clone(),
                        policy_name: name.clone(),
                    },
                    Some(tenant),
                    Action::Delete,
                    format!("delete before deleting the role: {why}"),
                    Some(live_doc(doc)),
                    None,
                    vec![],
                    false,
                );
            }
            pl.push(
                Resource::Role {
                    name: r.name.clone(),
                },
                Some(tenant),
                Action::Delete,
                why,
                Some(role_view(r)),
                None,
                vec![],
                false,
            );
        }
    }

    // 4. Repo policies no longer in git: last, and only when nothing uses them.
    let wanted_policies: BTreeSet<String> = desired
        .policies
        .values()
        .map(|p| p.name.to_ascii_lowercase())
        .collect();
    let mut old: Vec<&ObservedPolicy> = observed
        .policies
        .iter()
        .filter(|p| {
            policy_owned(p, cluster) && !wanted_policies.contains(&p.name.to_ascii_lowercase())
        })
        .collect();
    old.sort_by(|a, b| a.name.cmp(&b.name));
    for p in old {
        let res = Resource::Policy {
            name: p.name.clone(),
        };
        let still = p
            .attachment_count
            .saturating_sub(detached.get(&p.arn).copied().unwrap_or(0));
        let used_as_boundary = observed.roles.iter().any(|r| {
            r.permissions_boundary.as_ref() == Some(&p.arn)
                && wanted_roles.contains(&r.name.to_ascii_lowercase())
        });
        if !desired.prune {
            pl.kept.push(Kept {
                address: res.to_string(),
                reason: "no longer in git; [prune] enabled = false".into(),
            });
        } else if still > 0 || used_as_boundary {
            pl.kept.push(Kept { address: res.to_string(), reason: format!("no longer in git, but still attached to {still} other entities or used as a boundary; delete it once unused") });
        } else {
            pl.push(
                res,
                None,
                Action::Delete,
                "no longer in git and no longer attached",
                Some(json!({"arn": p.arn, "path": p.path, "document": live_doc(&p.document), "tags": p.tags})),
                None,
                vec![],
                false,
            );
        }
    }

    let drift = pl
        .changes
        .iter()
        .filter(|c| c.drift)
        .map(|c| Drift {
            address: c.address.clone(),
            tenant: c.tenant.clone(),
            fields: if c.diffs.is_empty() {
                vec![c.resource.field_name().to_string()]
            } else {
                c.diffs.iter().map(|d| d.field.clone()).collect()
            },
            message: c.reason.clone(),
        })
        .collect::<Vec<_>>();
    let summary = Summary {
        create: pl
            .changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .count(),
        update: pl
            .changes
            .iter()
            .filter(|c| c.action == Action::Update)
            .count(),
        delete: pl
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .count(),
        drift: drift.len(),
        conflicts: pl.conflicts.len(),
        tenants_changed: pl
            .changes
            .iter()
            .filter_map(|c| c.tenant.as_deref())
            .collect::<BTreeSet<_>>()
            .len(),
    };
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        source_commit: opts.source_commit.clone(),
        cluster: cluster.to_string(),
        changes: pl.changes,
        drift,
        conflicts: pl.conflicts,
        kept: pl.kept,
        summary,
        observed_digest: None,
    })
}

/// Plans one tenant that is in git: conflicts first (a conflict skips the
/// tenant), then its role and Profile.
#[allow(clippy::too_many_arguments)]
fn plan_tenant(
    pl: &mut Planner,
    cluster: &str,
    tenant: &String,
    role: &DesiredRole,
    profile: &DesiredProfile,
    roles: &BTreeMap<String, &ObservedRole>,
    profiles: &BTreeMap<&str, &ObservedProfile>,
    blocked_policies: &BTreeSet<String>,
) {
    let live_role = roles.get(&role.name.to_ascii_lowercase()).copied();
    let live_profile = profiles.get(tenant.as_str()).copied();
    let mut blocked = false;
    if let Some(lr) = live_role {
        let res = Resource::Role {
            name: role.name.clone(),
        };
        if !owned(&lr.tags, cluster) {
            blocked = true;
            pl.conflict(&res, Some(tenant), format!("role `{}` exists without kftenant's ownership tags for cluster `{cluster}`; kftenant will not touch it or tenant `{tenant}`. Rename the tenant or [iam] role_name_template, or delete the live role", lr.name));
        } else if lr.tags.get(TAG_TENANT) != Some(tenant) {
            blocked = true;
            pl.conflict(
                &res,
                Some(tenant),
                format!(
                    "role `{}` is managed by kftenant for tenant `{}`, not `{tenant}`",
                    lr.name,
                    lr.tags.get(TAG_TENANT).map_or("?", String::as_str)
                ),
            );
        } else if lr.path != role.path {
            blocked = true;
            pl.conflict(&res, Some(tenant), format!("role `{}` has path `{}` but git wants `{}`; IAM cannot move a role, so delete it by hand and kftenant will recreate it", lr.name, lr.path, role.path));
        }
    }
    if let Some(lp) = live_profile {
        if !profile_owned(lp, cluster) {
            blocked = true;
            pl.conflict(&Resource::Profile { name: tenant.clone() }, Some(tenant), format!("Profile `{tenant}` exists without the labels {MANAGED_BY_LABEL}={MANAGER} and {TAG_CLUSTER}={cluster}; kftenant will not touch it. Label it to adopt it, or rename the tenant"));
        }
    }
    for arn in role
        .managed_policy_arns
        .iter()
        .chain(role.permissions_boundary.iter())
    {
        if blocked_policies.contains(arn) {
            blocked = true;
            pl.conflict(
                &Resource::Role {
                    name: role.name.clone(),
                },
                Some(tenant),
                format!("tenant `{tenant}` uses policy `{arn}`, which is in conflict"),
            );
        }
    }
    if blocked {
        return;
    }
    match live_role {
        None => plan_role_create(pl, role),
        Some(lr) => plan_role_update(pl, role, lr),
    }
    plan_profile(pl, profile, live_profile);
}

fn plan_policy_update(pl: &mut Planner, p: &DesiredPolicy, live: &ObservedPolicy) {
    let mut diffs = Vec::new();
    let before_doc = live_doc(&live.document);
    let after_doc = policy::normalize_owned(p.document.to_json());
    if before_doc != after_doc {
        diffs.push(FieldDiff {
            field: "document".into(),
            before: before_doc.clone(),
            after: after_doc.clone(),
        });
    }
    // Tags not read (a marked policy): nothing to compare them with.
    if let Some(tags) = &live.tags {
        diff_maps("tags", tags, &p.tags, &mut diffs);
    }
    if !diffs.is_empty() {
        let reason = if diffs.iter().any(|d| d.field == "document") {
            "document in IAM differs from git (a new policy version will be created)"
        } else {
            "tags in IAM differ from git"
        };
        pl.push(
            Resource::Policy {
                name: p.name.clone(),
            },
            None,
            Action::Update,
            reason,
            Some(json!({"arn": live.arn, "document": before_doc, "tags": live.tags})),
            Some(json!({"arn": p.arn, "document": after_doc, "tags": p.tags})),
            diffs,
            true,
        );
    }
}

fn diff_maps(
    prefix: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    diffs: &mut Vec<FieldDiff>,
) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        let (b, a) = (before.get(k), after.get(k));
        if b != a {
            diffs.push(FieldDiff {
                field: format!("{prefix}.{k}"),
                before: json!(b),
                after: json!(a),
            });
        }
    }
}

fn plan_role_create(pl: &mut Planner, r: &DesiredRole) {
    let t = Some(r.tenant.as_str());
    pl.push(
        Resource::Role { name: r.name.clone() },
        t,
        Action::Create,
        format!("tenant `{}` is in git and has no role", r.tenant),
        None,
        Some(json!({
            "path": r.path, "arn": r.arn, "trust_policy": r.trust_policy,
            "permissions_boundary": r.permissions_boundary, "max_session_duration": r.max_session_duration, "tags": r.tags,
        })),
        vec![],
        false,
    );
    for arn in &r.managed_policy_arns {
        pl.push(
            Resource::RoleAttachment {
                role: r.name.clone(),
                policy_arn: arn.clone(),
            },
            t,
            Action::Create,
            "attach to the new role",
            None,
            Some(json!(arn)),
            vec![],
            false,
        );
    }
    for (name, doc) in &r.inline_policies {
        pl.push(
            Resource::RoleInlinePolicy {
                role: r.name.clone(),
                policy_name: name.clone(),
            },
            t,
            Action::Create,
            "inline policy of the new role",
            None,
            Some(doc.to_json()),
            vec![],
            false,
        );
    }
}

fn plan_role_update(pl: &mut Planner, r: &DesiredRole, live: &ObservedRole) {
    let t = Some(r.tenant.as_str());
    let role = r.name.clone();
    let before = live_doc(&live.assume_role_policy_document);
    let after = policy::normalize_owned(r.trust_policy.to_json());
    if before != after {
        pl.push(
            Resource::RoleTrustPolicy { role: role.clone() },
            t,
            Action::Update,
            "trust policy in IAM differs from git",
            Some(before.clone()),
            Some(after.clone()),
            vec![FieldDiff {
                field: "trust_policy".into(),
                before,
                after,
            }],
            true,
        );
    }
    if live.permissions_boundary != r.permissions_boundary {
        let (action, reason) = match (&live.permissions_boundary, &r.permissions_boundary) {
            (None, Some(_)) => (
                Action::Create,
                "role has no permissions boundary; git sets one",
            ),
            (Some(_), None) => (
                Action::Delete,
                "role has a permissions boundary that git does not set",
            ),
            _ => (
                Action::Update,
                "permissions boundary in IAM differs from git",
            ),
        };
        let (b, a) = (
            json!(live.permissions_boundary),
            json!(r.permissions_boundary),
        );
        pl.push(
            Resource::RoleBoundary { role: role.clone() },
            t,
            action,
            reason,
            Some(b.clone()),
            Some(a.clone()),
            vec![FieldDiff {
                field: "permissions_boundary".into(),
                before: b,
                after: a,
            }],
            true,
        );
    }
    if live.max_session_duration != r.max_session_duration {
        let (b, a) = (
            json!(live.max_session_duration),
            json!(r.max_session_duration),
        );
        pl.push(
            Resource::RoleMaxSessionDuration { role: role.clone() },
            t,
            Action::Update,
            "maximum session duration in IAM differs from git",
            Some(b.clone()),
            Some(a.clone()),
            vec![FieldDiff {
                field: "max_session_duration".into(),
                before: b,
                after: a,
            }],
            true,
        );
    }
    let mut tag_diffs = Vec::new();
    if live.tags != r.tags {
        diff_maps("tags", &live.tags, &r.tags, &mut tag_diffs);
    }
    if !tag_diffs.is_empty() {
        pl.push(
            Resource::RoleTags { role: role.clone() },
            t,
            Action::Update,
            "tags in IAM differ from git",
            Some(tags_json(&live.tags)),
            Some(tags_json(&r.tags)),
            tag_diffs,
            true,
        );
    }
    let live_arns: BTreeSet<&String> = live.attached_policy_arns.iter().collect();
    for arn in &r.managed_policy_arns {
        if !live_arns.contains(arn) {
            pl.push(
                Resource::RoleAttachment {
                    role: role.clone(),
                    policy_arn: arn.clone(),
                },
                t,
                Action::Create,
                "in git, not attached in IAM",
                None,
                Some(json!(arn)),
                vec![],
                true,
            );
        }
    }
    for arn in live_arns {
        if !r.managed_policy_arns.contains(arn) {
            pl.push(
                Resource::RoleAttachment {
                    role: role.clone(),
                    policy_arn: arn.clone(),
                },
                t,
                Action::Delete,
                "attached in IAM, not in git",
                Some(json!(arn)),
                None,
                vec![],
                true,
            );
        }
    }
    for (name, doc) in &r.inline_policies {
        let after = policy::normalize_owned(doc.to_json());
        match live.inline_policies.get(name) {
            None => pl.push(
                Resource::RoleInlinePolicy {
                    role: role.clone(),
                    policy_name: name.clone(),
                },
                t,
                Action::Create,
                "in git, not in IAM",
                None,
                Some(doc.to_json()),
                vec![],
                true,
            ),
            Some(raw) => {
                let before = live_doc(raw);
                if before != after {
                    pl.push(
                        Resource::RoleInlinePolicy {
                            role: role.clone(),
                            policy_name: name.clone(),
                        },
                        t,
                        Action::Update,
                        "inline policy in IAM differs from git",
                        Some(before.clone()),
                        Some(after.clone()),
                        vec![FieldDiff {
                            field: "document".into(),
                            before,
                            after,
                        }],
                        true,
                    );
                }
            }
        }
    }
    for (name, raw) in &live.inline_policies {
        if !r.inline_policies.contains_key(name) {
            pl.push(
                Resource::RoleInlinePolicy {
                    role: role.clone(),
                    policy_name: name.clone(),
                },
                t,
                Action::Delete,
                "inline policy in IAM, not in git",
                Some(live_doc(raw)),
                None,
                vec![],
                true,
            );
        }
    }
}

/// The part of a live Profile that kftenant compares: its own label and
/// annotation keys, and the spec fields it sets. Fields of other managers
/// (the Kubeflow controller's finalizer, other labels) are not kftenant's.
fn profile_subset(live: &ObservedProfile, want: &DesiredProfile) -> Json {
    let labels: BTreeMap<&String, &String> = live
        .labels
        .iter()
        .filter(|(k, _)| want.labels.contains_key(*k))
        .collect();
    let annotations: BTreeMap<&String, &String> = live
        .annotations
        .iter()
        .filter(|(k, _)| want.annotations.contains_key(*k))
        .collect();
    let mut spec = serde_json::Map::new();
    let live_spec = live.spec.to_json();
    for key in ["owner", "plugins", "resourceQuotaSpec"] {
        if let Some(v) = live_spec.get(key) {
            spec.insert(key.to_string(), v.clone());
        }
    }
    json!({"labels": labels, "annotations": annotations, "spec": spec})
}

fn profile_view(p: &ObservedProfile) -> Json {
    json!({"labels": p.labels, "annotations": p.annotations, "spec": p.spec})
}

fn role_view(r: &ObservedRole) -> Json {
    json!({"path": r.path, "arn": r.arn, "permissions_boundary": r.permissions_boundary, "max_session_duration": r.max_session_duration, "tags": r.tags})
}

/// The fast check of [`profile_subset`] equality, without building JSON
/// (most Profiles are converged on most runs).
fn profile_converged(live: &ObservedProfile, want: &DesiredProfile) -> bool {
    let same_spec = live.spec == want.spec || {
        let (live_spec, want_spec) = (live.spec.to_json(), want.spec.to_json());
        ["owner", "plugins", "resourceQuotaSpec"]
            .iter()
            .all(|k| live_spec.get(k) == want_spec.get(k))
    };
    same_spec
        && want
            .labels
            .iter()
            .all(|(k, v)| live.labels.get(k) == Some(v))
        && want
            .annotations
            .iter()
            .all(|(k, v)| live.annotations.get(k) == Some(v))
}

fn plan_profile(pl: &mut Planner, want: &DesiredProfile, live: Option<&ObservedProfile>) {
    let res = Resource::Profile {
        name: want.name.clone(),
    };
    if live.is_some_and(|l| profile_converged(l, want)) {
        return;
    }
    let after = json!({"labels": want.labels, "annotations": want.annotations, "spec": want.spec});
    let Some(live) = live else {
        pl.push(
            res,
            Some(&want.name),
            Action::Create,
            format!("tenant `{}` is in git and has no Profile", want.name),
            None,
            Some(after),
            vec![],
            false,
        );
        return;
    };
    let before = profile_subset(live, want);
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for section in ["labels", "annotations", "spec"] {
        let (b, a) = (&before[section], &after[section]);
        let keys: BTreeSet<&String> = b
            .as_object()
            .into_iter()
            .chain(a.as_object())
            .flat_map(|m| m.keys())
            .collect();
        for k in keys {
            if b.get(k) != a.get(k) {
                diffs.push(FieldDiff {
                    field: format!("{section}.{k}"),
                    before: b.get(k).cloned().unwrap_or(Json::Null),
                    after: a.get(k).cloned().unwrap_or(Json::Null),
                });
            }
        }
    }
    pl.push(
        res,
        Some(&want.name),
        Action::Update,
        "Profile in the cluster differs from git",
        Some(before),
        Some(after),
        diffs,
        true,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{DesiredPolicy, DesiredProfile, DesiredRole, ownership_tags};
    use crate::observed::iam_encode;

    const ARN_S3: &str = "arn:aws:iam::123456789012:policy/kftenant/s3";

    fn doc(action: &str) -> Json {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
    }

    fn world(tenants: &[&str]) -> Desired {
        let mut d = Desired {
            cluster: "prod".into(),
            iam_path: "/kftenant/".into(),
            roles: BTreeMap::new(),
            policies: BTreeMap::new(),
            profiles: BTreeMap::new(),
            prune: true,
            max_deletions: 5,
        };
        d.policies.insert(
            "s3".into(),
            DesiredPolicy {
                name: "s3".into(),
                path: "/kftenant/".into(),
                arn: ARN_S3.into(),
                document: doc("s3:GetObject").into(),
                tags: ownership_tags("prod", None),
            },
        );
        for t in tenants {
            let name = format!("{t}-role");
            d.roles.insert(
                t.to_string(),
                DesiredRole {
                    tenant: t.to_string(),
                    arn: format!("arn:aws:iam::123456789012:role/kftenant/{name}"),
                    name,
                    path: "/kftenant/".into(),
                    trust_policy: json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": "arn:x"}}]}).into(),
                    permissions_boundary: None,
                    max_session_duration: 3600,
                    tags: ownership_tags("prod", Some(t)),
                    managed_policy_arns: [ARN_S3.to_string()].into(),
                    inline_policies: [("logs".to_string(), doc("logs:PutLogEvents").into())].into(),
                },
            );
            let mut labels = BTreeMap::new();
            labels.insert(MANAGED_BY_LABEL.to_string(), MANAGER.to_string());
            labels.insert(TAG_CLUSTER.to_string(), "prod".to_string());
            d.profiles.insert(
                t.to_string(),
                DesiredProfile {
                    name: t.to_string(),
                    labels,
                    annotations: BTreeMap::new(),
                    spec: json!({"owner": {"kind": "User", "name": "a@x"}}).into(),
                },
            );
        }
        d
    }

    fn run(d: &Desired, o: &Observed) -> Plan {
        plan(d, o, &PlanOptions::default()).unwrap()
    }

    fn addrs(p: &Plan) -> Vec<(Action, String)> {
        p.changes
            .iter()
            .map(|c| (c.action, c.address.clone()))
            .collect()
    }

    #[test]
    fn plan_is_deterministic_and_converges() {
        let d = world(&["a", "b"]);
        let o = Observed::converged(&d);
        assert!(run(&d, &o).is_empty());
        assert_eq!(run(&d, &Observed::default()), run(&d, &Observed::default()));
    }

    #[test]
    fn repo_policy_is_deleted_last_and_only_when_unused() {
        let full = world(&["a"]);
        let mut d = world(&[]);
        d.policies.clear();
        // A tenant kept alive so that this is not "delete everything".
        let keep = world(&["b"]);
        d.roles = keep.roles.clone();
        d.profiles = keep.profiles.clone();
        for r in d.roles.values_mut() {
            r.managed_policy_arns.clear();
        }
        let mut o = Observed::converged(&full);
        o.roles.extend(Observed::converged(&d).roles);
        o.profiles.extend(Observed::converged(&d).profiles);
        let p = run(&d, &o);
        assert_eq!(
            addrs(&p),
            vec![
                (Action::Delete, "profile.a".into()),
                (
                    Action::Delete,
                    format!("iam_role.a-role.attachment[{ARN_S3}]")
                ),
                (Action::Delete, "iam_role.a-role.inline_policy[logs]".into()),
                (Action::Delete, "iam_role.a-role".into()),
                (Action::Delete, "iam_policy.s3".into()),
            ]
        );
        // Still attached to something kftenant does not manage: kept.
        o.policies[0].attachment_count = 2;
        let p = run(&d, &o);
        assert!(!addrs(&p).contains(&(Action::Delete, "iam_policy.s3".into())));
        assert_eq!(p.kept.len(), 1);
        assert!(p.kept[0].reason.contains("still attached to 1 other"));
    }

    #[test]
    fn prune_disabled_keeps_orphans() {
        let full = world(&["a", "b"]);
        let mut d = world(&["b"]);
        d.prune = false;
        let p = run(&d, &Observed::converged(&full));
        assert!(p.is_empty());
        assert_eq!(
            p.kept
                .iter()
                .map(|k| k.address.as_str())
                .collect::<Vec<_>>(),
            vec!["profile.a", "iam_role.a-role"]
        );
    }

    #[test]
    fn other_clusters_resources_are_not_ours() {
        let d = world(&["a"]);
        let mut o = Observed::converged(&d);
        o.roles[0].tags.insert(TAG_CLUSTER.into(), "staging".into());
        o.policies[0].description = policy_marker("staging");
        let p = run(&d, &o);
        assert!(p.is_empty(), "{:#?}", p.changes);
        assert_eq!(
            p.conflicts.len(),
            3,
            "the policy, the role, and the tenant using the policy: {:#?}",
            p.conflicts
        );
        // IAM orphans of another cluster are never deleted either (Profiles live
        // in this cluster, so the labelled one is ours).
        let p = run(&world(&["z"]), &o);
        let deletes: Vec<&str> = p
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.address.as_str())
            .collect();
        assert_eq!(deletes, vec!["profile.a"]);
    }

    #[test]
    fn policy_ownership_by_marker_or_by_tags() {
        let d = world(&["a"]);
        let tags = d.policies.values().next().unwrap().tags.clone();
        // Created by kftenant: the marker proves it, tags are not read.
        assert!(run(&d, &Observed::converged(&d)).is_empty());
        // Adopted by hand: no marker, the ownership tags, and their drift is planned.
        let mut o = Observed::converged(&d);
        o.policies[0].description = "made by hand".into();
        let mut drifted = tags.clone();
        drifted.insert("extra".into(), "1".into());
        o.policies[0].tags = Some(drifted);
        let p = run(&d, &o);
        assert!(p.conflicts.is_empty(), "{:#?}", p.conflicts);
        assert_eq!(addrs(&p), vec![(Action::Update, "iam_policy.s3".into())]);
        assert_eq!(p.changes[0].diffs[0].field, "tags.extra");
        // Neither marker nor tags: a conflict, never touched.
        o.policies[0].tags = Some(BTreeMap::new());
        let p = run(&d, &o);
        assert!(addrs(&p).is_empty(), "{:#?}", p.changes);
        assert!(
            p.conflicts[0].address == "iam_policy.s3",
            "{:#?}",
            p.conflicts
        );
        // A new policy is created with the marker.
        let p = run(&d, &Observed::default());
        let create = p
            .changes
            .iter()
            .find(|c| c.address == "iam_policy.s3")
            .unwrap();
        assert_eq!(
            create.after.as_ref().unwrap()["description"],
            json!(policy_marker(&d.cluster))
        );
    }

    #[test]
    fn role_field_drift_each_gets_its_change() {
        let d = world(&["a"]);
        let mut o = Observed::converged(&d);
        let r = &mut o.roles[0];
        r.permissions_boundary = Some("arn:aws:iam::aws:policy/X".into());
        r.max_session_duration = 7200;
        r.tags.insert("extra".into(), "1".into());
        r.inline_policies
            .insert("logs".into(), iam_encode(&doc("logs:*")));
        r.inline_policies
            .insert("byhand".into(), iam_encode(&doc("ec2:*")));
        r.attached_policy_arns.clear();
        let mut spec = o.profiles[0].spec.to_json();
        spec["resourceQuotaSpec"] = json!({"hard": {"cpu": "100"}});
        o.profiles[0].spec = spec.into();
        o.profiles[0]
            .labels
            .insert("other-controller/label".into(), "x".into());
        o.policies[0].document = iam_encode(&doc("s3:*"));
        let p = run(&d, &o);
        assert_eq!(
            addrs(&p),
            vec![
                (Action::Update, "iam_policy.s3".into()),
                (
                    Action::Delete,
                    "iam_role.a-role.permissions_boundary".into()
                ),
                (
                    Action::Update,
                    "iam_role.a-role.max_session_duration".into()
                ),
                (Action::Update, "iam_role.a-role.tags".into()),
                (
                    Action::Create,
                    format!("iam_role.a-role.attachment[{ARN_S3}]")
                ),
                (Action::Update, "iam_role.a-role.inline_policy[logs]".into()),
                (
                    Action::Delete,
                    "iam_role.a-role.inline_policy[byhand]".into()
                ),
                (Action::Update, "profile.a".into()),
            ]
        );
        assert!(p.changes.iter().all(|c| c.drift));
        assert_eq!(p.drift.len(), 8);
        let profile = p.changes.last().unwrap();
        assert_eq!(
            profile
                .diffs
                .iter()
                .map(|d| d.field.as_str())
                .collect::<Vec<_>>(),
            vec!["spec.resourceQuotaSpec"],
            "labels of other managers are ignored"
        );
    }

    #[test]
    fn unmanaged_profile_blocks_its_tenant() {
        let d = world(&["a"]);
        let mut o = Observed::default();
        o.profiles.push(ObservedProfile {
            name: "a".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            spec: json!({}).into(),
            deleting: false,
        });
        let p = run(&d, &o);
        assert_eq!(addrs(&p), vec![(Action::Create, "iam_policy.s3".into())]);
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(p.conflicts[0].address, "profile.a");
    }

    #[test]
    fn renamed_template_deletes_old_roles_and_counts_for_the_guard() {
        let old = world(&["a"]);
        let mut d = world(&["a"]);
        let r = d.roles.get_mut("a").unwrap();
        r.name = "a-new-role".into();
        let p = run(&d, &Observed::converged(&old));
        let a = addrs(&p);
        assert_eq!(
            a.first(),
            Some(&(Action::Create, "iam_role.a-new-role".into()))
        );
        assert_eq!(a.last(), Some(&(Action::Delete, "iam_role.a-role".into())));
    }

    #[test]
    fn guard_counts_tenants_not_resources() {
        let full = world(&["a", "b", "c", "d"]);
        let mut d = world(&["d"]);
        d.max_deletions = 2;
        let err = plan(&d, &Observed::converged(&full), &PlanOptions::default()).unwrap_err();
        assert_eq!(
            err,
            PlanRefused::TooManyDeletions {
                tenants: vec!["a".into(), "b".into(), "c".into()],
                limit: 2
            }
        );
        d.max_deletions = 3;
        assert!(plan(&d, &Observed::converged(&full), &PlanOptions::default()).is_ok());
    }

    #[test]
    fn profile_being_deleted_is_not_deleted_again() {
        let full = world(&["a", "b"]);
        let mut o = Observed::converged(&full);
        o.profiles
            .iter_mut()
            .find(|p| p.name == "a")
            .unwrap()
            .deleting = true;
        let p = run(&world(&["b"]), &o);
        assert!(!addrs(&p).contains(&(Action::Delete, "profile.a".into())));
        assert_eq!(p.kept[0].address, "profile.a");
        // The role is still deleted after: the executor waits for the Profile to be gone.
        assert_eq!(
            addrs(&p).last(),
            Some(&(Action::Delete, "iam_role.a-role".into()))
        );
    }

    #[test]
    fn parallel_planning_keeps_tenant_order() {
        let names: Vec<String> = (0..1500).map(|i| format!("t{i:04}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let d = world(&refs);
        let p = run(&d, &Observed::default());
        let tenants: Vec<&str> = p
            .changes
            .iter()
            .filter_map(|c| c.tenant.as_deref())
            .collect();
        let mut sorted = tenants.clone();
        sorted.sort();
        assert_eq!(
            tenants, sorted,
            "changes come in tenant order whatever the thread count"
        );
        assert_eq!(p.summary.tenants_changed, 1500);
        assert!(run(&d, &Observed::converged(&d)).is_empty());
    }
}
