//! The planner: `plan(desired, observed, options) -> Plan`.
//!
//! [`desired`] and [`observed`] are its two inputs, side by side and unaware
//! of each other; [`Plan`] is its output, data that `report` renders and
//! `live::apply` executes.
//!
//! # Expected flow
//! 1. Index the observed world by name (IAM names case-insensitively, as IAM
//!    compares them).
//! 2. Decide first ([`prune::Removals`]): which managed tenants are gone from
//!    git, and which of them may be deleted: only those `[prune]
//!    decommissioned` lists, and none while more than `[prune] max_deletions`
//!    would go at once. The others are held back ([`Held`]): reported, never
//!    deleted, and nothing else waits for them.
//! 3. Plan field by field: repo policies, then every tenant in git (on every
//!    core; each field's function returns `None` when converged), then the
//!    removals, then repo policies nothing uses any more.
//!
//! # Guarantees
//! - Pure and deterministic: no I/O, no clock; the same inputs give the same plan.
//! - Only resources carrying kftenant's ownership marks *for this cluster*
//!   ([`crate::ownership`]) are ever updated or deleted. A live resource with a
//!   desired name but without them is a [`Conflict`], and the tenant that
//!   wants it is left alone.
//! - Documents are compared semantically ([`crate::policy::normalize`]): a
//!   converged world plans to no changes.
//! - Order: repo policies; then per tenant the role, its trust policy,
//!   boundary, session duration, tags, attachments and inline policies, then the
//!   Profile. Deletions run the other way: the Profile first (the Kubeflow
//!   controller needs the role while its finalizer runs), then detach, delete
//!   inline policies and the role; repo policies last, and only when unused.
//! - A tenant's namespace is deleted (with its Profile) only when git
//!   confirms it in `[prune] decommissioned`.

mod access;
pub mod converged;
pub mod desired;
pub mod observed;
mod operation;
mod policies;
mod profile;
mod prune;
mod role;

pub use operation::{Operation, TagChange, Tags};

use crate::ownership::owns_labels;
use desired::Desired;
use observed::{Observed, ObservedObject, ObservedPolicy, ObservedProfile, ObservedRole};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Version of the plan JSON format.
///
/// - 2: each change carries its typed [`Operation`] (`operation`, tagged by
///   `op`), which is what `apply --plan-file` executes; the untyped `after`
///   value of version 1 is gone (what a create brings into being is in its
///   operation).
pub const PLAN_FORMAT_VERSION: u32 = 2;

/// The words a change's reason carries when it waits for the namespace the
/// Kubeflow controller makes from the tenant's Profile
/// ([`Change::waits_for_namespace`]).
pub(crate) const WAITS_FOR_NAMESPACE: &str = "waits for namespace";

/// Options that change what a plan may contain.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Allow deleting more (decommissioned) tenants than `[prune]
    /// max_deletions` at once, or every tenant.
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
    /// The resource exists, kftenant did not create it, and git asks kftenant
    /// to take it over (`spec.adopt`, or a contributor git lists as it is):
    /// marked as kftenant's and brought to git's state in place, never recreated.
    Adopt,
}

impl Action {
    /// `+`, `~`, `-` or `>` (taken over).
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
            Action::Adopt => '>',
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
    /// A contributor of a tenant: RoleBinding and AuthorizationPolicy of one name.
    Member { namespace: String, name: String },
    /// A service account in a tenant namespace that gets the tenant's role.
    ServiceAccount { namespace: String, name: String },
    /// The owner marks on a tenant's namespace and the controller's owner objects.
    OwnerMarks { namespace: String },
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
            Resource::Member { .. } => "members",
            Resource::ServiceAccount { .. } => "service_accounts",
            Resource::OwnerMarks { .. } => "owner",
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
            Resource::Member { namespace, name } => write!(f, "member.{namespace}.{name}"),
            Resource::ServiceAccount { namespace, name } => {
                write!(f, "service_account.{namespace}.{name}")
            }
            Resource::OwnerMarks { namespace } => write!(f, "namespace.{namespace}.owner"),
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
    /// What is acted on.
    pub resource: Resource,
    /// The tenant this belongs to; `None` for repo policies.
    pub tenant: Option<String>,
    /// Create, update or delete.
    pub action: Action,
    /// Why this change is needed, in words.
    pub reason: String,
    /// Live value (policies decoded and normalised), `None` when creating.
    pub before: Option<Json>,
    /// The fields that differ (updates only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<FieldDiff>,
    /// True when this corrects drift: a change made to a managed resource outside git.
    pub drift: bool,
    /// What the executor does: typed, with every value it needs.
    pub operation: Operation,
}

impl Change {
    /// A change that runs `operation` for `tenant`; its resource and address
    /// come from the operation.
    pub(crate) fn new(
        operation: Operation,
        tenant: Option<&str>,
        action: Action,
        reason: impl Into<String>,
    ) -> Change {
        let resource = operation.resource();
        Change {
            address: resource.to_string(),
            resource,
            tenant: tenant.map(String::from),
            action,
            reason: reason.into(),
            before: None,
            diffs: Vec::new(),
            drift: false,
            operation,
        }
    }

    /// The live value, for the plan to show.
    #[must_use]
    pub(crate) fn before(mut self, before: Json) -> Change {
        self.before = Some(before);
        self
    }

    /// Marks the change as correcting drift, with the fields that drifted.
    #[must_use]
    pub(crate) fn drift(mut self, diffs: Vec<FieldDiff>) -> Change {
        self.diffs = diffs;
        self.drift = true;
        self
    }

    /// `created`, `updated`, `deleted` or `adopted`, for messages.
    pub fn action_word(&self) -> &'static str {
        match self.action {
            Action::Create => "created",
            Action::Update => "updated",
            Action::Delete => "deleted",
            Action::Adopt => "adopted",
        }
    }

    /// True when the change waits for the Kubeflow controller to make the
    /// tenant's namespace (from its Profile) before it can be made.
    pub fn waits_for_namespace(&self) -> bool {
        self.reason.contains(WAITS_FOR_NAMESPACE)
    }

    /// What a create brings into being, as the plan shows it.
    pub fn created(&self) -> Option<Json> {
        (self.action == Action::Create)
            .then(|| self.operation.created())
            .flatten()
    }
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
    /// Changes that take over an existing resource (left out when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub adopt: usize,
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
    /// Deletions held back.
    #[serde(default)]
    pub held: usize,
    /// Tenants with at least one change.
    pub tenants_changed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a plan is for: what the renderers call it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// `kftenant plan` / `apply`: the changes to make.
    #[default]
    Plan,
    /// `kftenant drift`: the differences found, changing nothing.
    Drift,
}

/// The plan: data first; every renderer works from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// JSON format version.
    pub format_version: u32,
    /// A plan or a drift report.
    #[serde(default)]
    pub kind: PlanKind,
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
    /// Tenants gone from git whose deletion is held back, and why.
    #[serde(default)]
    pub held: Vec<Held>,
    /// Tenants this plan deletes: their namespace and everything in it go
    /// with their Profile.
    #[serde(default)]
    pub deleted_tenants: Vec<String>,
    /// Access to tenants that git does not list (contributors added by hand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmanaged_access: Vec<UnmanagedAccess>,
    /// Counts.
    pub summary: Summary,
    /// With `plan --base`: what the pull request changes, against its base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequest>,
    /// Digest of the observed world the plan was computed against
    /// ([`crate::observed::Observed::digest`]); `apply --plan-file` refuses
    /// the plan when the live world no longer has this digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_digest: Option<String>,
}

/// What a pull request changes, against its base revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The base revision as given (`origin/main`).
    pub base: String,
    /// The base's commit.
    pub base_commit: String,
    /// Tenants the pull request adds, removes or changes, with which.
    pub tenants: Vec<(String, String)>,
}

/// What a plan means for the commands' exit codes (the same for `plan`,
/// `drift` and `apply`'s plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do: IAM and the cluster match git.
    Converged,
    /// Changes to make, all of them possible.
    Changes,
    /// Something git wants cannot be done: conflicts, held deletions.
    Blocked,
}

impl Verdict {
    /// 0 converged, 2 changes, 1 blocked (as `terraform plan
    /// -detailed-exitcode` treats anything it cannot do as an error).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Converged => 0,
            Verdict::Changes => 2,
            Verdict::Blocked => 1,
        }
    }
}

impl Plan {
    /// True when applying would do nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Converged, changes, or blocked (conflicts or held deletions).
    pub fn verdict(&self) -> Verdict {
        if !self.conflicts.is_empty() || !self.held.is_empty() {
            Verdict::Blocked
        } else if !self.changes.is_empty()
            // A drift report counts access not in git as a difference; a plan
            // has nothing to do about it (unless it prunes it: then it is a change).
            || (self.kind == PlanKind::Drift && !self.unmanaged_access.is_empty())
        {
            Verdict::Changes
        } else {
            Verdict::Converged
        }
    }

    /// Pull-request mode: `base` is the plan of the base commit against the
    /// same observed world. Drift is then what the live world changed against
    /// the base (`base`'s drift); a change of this plan is drift only when the
    /// base would make the very same change, otherwise it is the pull
    /// request's own.
    pub fn against_base(&mut self, base: &Plan, pull_request: PullRequest) {
        let base_changes: BTreeMap<&str, &Operation> = base
            .changes
            .iter()
            .map(|c| (c.address.as_str(), &c.operation))
            .collect();
        for c in &mut self.changes {
            c.drift = c.drift && base_changes.get(c.address.as_str()) == Some(&&c.operation);
        }
        self.drift.clone_from(&base.drift);
        self.summary.drift = self.drift.len();
        self.pull_request = Some(pull_request);
    }

    /// Reads a plan saved as JSON (`plan --format json`), refusing one of
    /// another format version with a message that says so.
    pub fn from_json(text: &str) -> Result<Plan, SavedPlanError> {
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<u32>,
        }
        let v: Version =
            serde_json::from_str(text).map_err(|e| SavedPlanError::NotAPlan(e.to_string()))?;
        match v.format_version {
            Some(PLAN_FORMAT_VERSION) => {
                serde_json::from_str(text).map_err(|e| SavedPlanError::NotAPlan(e.to_string()))
            }
            Some(found) => Err(SavedPlanError::Version { found }),
            None => Err(SavedPlanError::NotAPlan("no format_version".into())),
        }
    }

    /// Checks that a saved plan was made against `observed`, the live world
    /// as it is now (its digest), so nothing that changed since is overwritten.
    pub fn check_fresh(&self, observed: &Observed) -> Result<(), SavedPlanError> {
        match &self.observed_digest {
            Some(d) if *d == observed.digest() => Ok(()),
            Some(_) => Err(SavedPlanError::Stale),
            None => Err(SavedPlanError::NoDigest),
        }
    }
}

/// Why a saved plan cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    /// The file is not a kftenant JSON plan.
    #[error("not a kftenant JSON plan: {0}")]
    NotAPlan(String),
    /// The plan was written in another format version.
    #[error(
        "the plan has format_version {found}, this kftenant reads {PLAN_FORMAT_VERSION}: make a new plan with this version"
    )]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The live world changed since the plan was made.
    #[error("stale plan: the live world changed since it was made; make a new plan")]
    Stale,
    /// The plan records no digest of the live world.
    #[error("the plan has no observed_digest (make it with `kftenant plan --live --format json`)")]
    NoDigest,
}

/// Access to a tenant that git does not list: a contributor added in the
/// dashboard (or through KFAM). Reported; deleted only with `[members]
/// prune_unmanaged = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmanagedAccess {
    /// The tenant.
    pub tenant: String,
    /// Address of the binding.
    pub binding: String,
    /// The user it names.
    pub user: String,
    /// Its role (`edit`, `view`).
    pub role: String,
}

/// A tenant gone from git whose deletion is held back: nothing of it is
/// deleted, and everything else is planned as usual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The tenant.
    pub tenant: String,
    /// What would be deleted.
    pub resources: Vec<String>,
    /// Why it is held back and what confirms it.
    pub reason: String,
}

/// The observed world indexed by name.
struct Live<'o> {
    /// Roles by lowercase name.
    roles: BTreeMap<String, &'o ObservedRole>,
    /// Policies by lowercase name.
    policies: BTreeMap<String, &'o ObservedPolicy>,
    /// Profiles by name.
    profiles: BTreeMap<&'o str, &'o ObservedProfile>,
    /// Managed policies named in git that do not exist.
    missing_policies: BTreeSet<&'o str>,
    /// Tenant namespaces that exist, by name.
    namespaces: BTreeMap<&'o str, &'o ObservedObject>,
    /// RoleBindings by (namespace, name).
    role_bindings: BTreeMap<(&'o str, &'o str), &'o ObservedObject>,
    /// AuthorizationPolicies by (namespace, name).
    authorization_policies: BTreeMap<(&'o str, &'o str), &'o ObservedObject>,
    /// ServiceAccounts by (namespace, name).
    service_accounts: BTreeMap<(&'o str, &'o str), &'o ObservedObject>,
}

fn by_place(items: &[ObservedObject]) -> BTreeMap<(&str, &str), &ObservedObject> {
    items
        .iter()
        .map(|o| ((o.namespace.as_str(), o.name.as_str()), o))
        .collect()
}

/// The objects of `map` in namespace `ns`.
fn in_namespace<'m, 'o>(
    map: &'m BTreeMap<(&'o str, &'o str), &'o ObservedObject>,
    ns: &'m str,
) -> impl Iterator<Item = &'o ObservedObject> + 'm {
    map.range((ns, "")..)
        .take_while(move |((n, _), _)| *n == ns)
        .map(|(_, o)| *o)
}

impl<'o> Live<'o> {
    fn index(observed: &'o Observed) -> Live<'o> {
        Live {
            roles: observed
                .roles
                .iter()
                .map(|r| (r.name.to_ascii_lowercase(), r))
                .collect(),
            policies: observed
                .policies
                .iter()
                .map(|p| (p.name.to_ascii_lowercase(), p))
                .collect(),
            profiles: observed
                .profiles
                .iter()
                .map(|p| (p.name.as_str(), p))
                .collect(),
            missing_policies: observed
                .missing_policies
                .iter()
                .map(String::as_str)
                .collect(),
            namespaces: observed
                .namespaces
                .iter()
                .filter(|n| !n.deleting)
                .map(|n| (n.name.as_str(), n))
                .collect(),
            role_bindings: by_place(&observed.role_bindings),
            authorization_policies: by_place(&observed.authorization_policies),
            service_accounts: by_place(&observed.service_accounts),
        }
    }

    fn namespace(&self, name: &str) -> Option<&'o ObservedObject> {
        self.namespaces.get(name).copied()
    }

    fn binding(&self, ns: &str, name: &str) -> Option<&'o ObservedObject> {
        self.role_bindings.get(&(ns, name)).copied()
    }

    fn bindings_in<'s>(&'s self, ns: &'s str) -> impl Iterator<Item = &'o ObservedObject> + 's {
        in_namespace(&self.role_bindings, ns)
    }

    fn authorization(&self, ns: &str, name: &str) -> Option<&'o ObservedObject> {
        self.authorization_policies.get(&(ns, name)).copied()
    }

    fn service_account(&self, ns: &str, name: &str) -> Option<&'o ObservedObject> {
        self.service_accounts.get(&(ns, name)).copied()
    }

    fn service_accounts_in<'s>(
        &'s self,
        ns: &'s str,
    ) -> impl Iterator<Item = &'o ObservedObject> + 's {
        in_namespace(&self.service_accounts, ns)
    }

    fn role(&self, name: &str) -> Option<&'o ObservedRole> {
        self.roles.get(&name.to_ascii_lowercase()).copied()
    }

    fn policy(&self, name: &str) -> Option<&'o ObservedPolicy> {
        self.policies.get(&name.to_ascii_lowercase()).copied()
    }
}

/// What one part of the planner found.
#[derive(Default)]
struct Part {
    changes: Vec<Change>,
    conflicts: Vec<Conflict>,
    kept: Vec<Kept>,
    unmanaged: Vec<UnmanagedAccess>,
}

impl Part {
    fn conflict(&mut self, resource: &Resource, tenant: Option<&str>, reason: impl Into<String>) {
        self.conflicts.push(Conflict {
            address: resource.to_string(),
            tenant: tenant.map(String::from),
            reason: reason.into(),
        });
    }

    fn keep(&mut self, resource: &Resource, reason: impl Into<String>) {
        self.kept.push(Kept {
            address: resource.to_string(),
            reason: reason.into(),
        });
    }

    fn extend(&mut self, other: Part) {
        self.changes.extend(other.changes);
        self.conflicts.extend(other.conflicts);
        self.kept.extend(other.kept);
        self.unmanaged.extend(other.unmanaged);
    }
}

/// Computes the ordered changes that make `observed` equal to `desired`.
/// See the module docs for the flow, guarantees and errors.
pub fn plan(desired: &Desired, observed: &Observed, opts: &PlanOptions) -> Plan {
    let live = Live::index(observed);
    let removals = prune::Removals::find(desired, observed);
    let decision = removals.decide(desired, opts);

    let mut out = Part::default();
    let blocked = policies::plan_wanted(&mut out, desired, &live);
    out.extend(plan_tenants(desired, &live, &blocked));
    let detached = removals.plan(&mut out, desired, &decision);
    policies::plan_unwanted(&mut out, desired, observed, &detached);
    let mut plan = finish(desired, opts, out);
    plan.summary.held = decision.held.len();
    plan.held = decision.held;
    plan.deleted_tenants = decision.delete.into_iter().collect();
    plan
}

/// Plans every tenant in git. Tenants are independent: they are planned on
/// every core and the parts joined in tenant order, so the plan is the same
/// whatever the thread count.
fn plan_tenants(desired: &Desired, live: &Live<'_>, blocked: &BTreeSet<String>) -> Part {
    let tenants: Vec<&String> = desired.roles.keys().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = tenants.len().div_ceil(threads).max(512);
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = tenants
            .chunks(chunk)
            .map(|names| {
                s.spawn(move || {
                    let mut part = Part::default();
                    for tenant in names {
                        plan_tenant(&mut part, desired, tenant, live, blocked);
                    }
                    part
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("planner thread"))
            .collect()
    });
    let mut out = Part::default();
    for part in parts {
        out.extend(part);
    }
    out
}

/// Plans one tenant that is in git: conflicts first (a conflict skips the
/// tenant), then its role and Profile.
fn plan_tenant(
    out: &mut Part,
    desired: &Desired,
    tenant: &str,
    live: &Live<'_>,
    blocked: &BTreeSet<String>,
) {
    let missing = &live.missing_policies;
    let cluster = desired.cluster.as_str();
    let role = &desired.roles[tenant];
    let profile = &desired.profiles[tenant];
    let live_role = live.role(&role.name);
    let live_profile = live.profiles.get(tenant).copied();
    let before = out.conflicts.len();
    let ownership = live_role.map(|lr| role::check_ownership(out, cluster, role, lr));
    let mut adopt_profile = false;
    if let Some(lp) = live_profile.filter(|p| !owns_labels(&p.labels, cluster)) {
        match profile::refuse_adoption(cluster, profile, lp) {
            None => adopt_profile = true,
            Some(reason) => profile::conflict(out, lp, reason),
        }
    }
    for arn in role
        .managed_policy_arns
        .iter()
        .chain(role.permissions_boundary.iter())
        .filter(|arn| missing.contains(arn.as_str()))
    {
        out.conflict(
            &Resource::RoleAttachment {
                role: role.name.clone(),
                policy_arn: arn.clone(),
            },
            Some(tenant),
            format!(
                "tenant `{tenant}` names policy `{arn}`, which does not exist (IAM says so); nothing of the tenant is changed until the ARN in its file is fixed"
            ),
        );
    }
    for arn in role
        .managed_policy_arns
        .iter()
        .chain(role.permissions_boundary.iter())
        .filter(|arn| blocked.contains(*arn))
    {
        out.conflict(
            &Resource::Role {
                name: role.name.clone(),
            },
            Some(tenant),
            format!("tenant `{tenant}` uses policy `{arn}`, which is in conflict"),
        );
    }
    if out.conflicts.len() > before {
        return;
    }
    // An adopted Profile goes first: with `annotateOnly` set, the Kubeflow
    // controller stops editing the role's trust policy before kftenant
    // replaces it.
    if let (true, Some(lp)) = (adopt_profile, live_profile) {
        out.changes.push(profile::adopt(profile, lp));
    }
    match (live_role, ownership) {
        (Some(lr), Some(role::Ownership::Adopt)) => out.changes.extend(role::adopt(role, lr)),
        (Some(lr), _) => out.changes.extend(role::update(role, lr)),
        (None, _) => out.changes.extend(role::create(role)),
    }
    if !adopt_profile {
        out.changes.extend(profile::change(profile, live_profile));
    }
    if let Some(access) = desired.access.get(tenant) {
        access::plan(
            out,
            cluster,
            tenant,
            &role.arn,
            access,
            live,
            desired.prune_unmanaged_members,
        );
    }
}

/// Drift and counts, from the changes.
fn finish(desired: &Desired, opts: &PlanOptions, out: Part) -> Plan {
    let drift: Vec<Drift> = out
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
        .collect();
    let count = |a: Action| out.changes.iter().filter(|c| c.action == a).count();
    let summary = Summary {
        adopt: count(Action::Adopt),
        create: count(Action::Create),
        update: count(Action::Update),
        delete: count(Action::Delete),
        drift: drift.len(),
        conflicts: out.conflicts.len(),
        held: 0,
        tenants_changed: out
            .changes
            .iter()
            .filter_map(|c| c.tenant.as_deref())
            .collect::<BTreeSet<_>>()
            .len(),
    };
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        kind: PlanKind::Plan,
        source_commit: opts.source_commit.clone(),
        cluster: desired.cluster.clone(),
        changes: out.changes,
        drift,
        conflicts: out.conflicts,
        kept: out.kept,
        held: Vec::new(),
        deleted_tenants: Vec::new(),
        unmanaged_access: out.unmanaged,
        summary,
        pull_request: None,
        observed_digest: None,
    }
}

/// The fields of two string maps that differ, as `prefix.key`.
fn diff_maps(
    prefix: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<FieldDiff> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| FieldDiff {
            field: format!("{prefix}.{k}"),
            before: serde_json::json!(before.get(k)),
            after: serde_json::json!(after.get(k)),
        })
        .collect()
}

/// A live document decoded and normalised, or the raw text when it does not parse.
fn live_doc(raw: &str) -> Json {
    crate::policy::parse_live(raw).map_or_else(
        |_| Json::String(raw.to_string()),
        crate::policy::normalize_owned,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::{
        MANAGED_BY_LABEL, MANAGER, TAG_CLUSTER, TAG_MANAGED_BY, ownership_tags, policy_marker,
    };
    use converged::iam_encode;
    use desired::{DesiredPolicy, DesiredProfile, DesiredRole};
    use serde_json::json;

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
            decommissioned: BTreeSet::new(),
            access: BTreeMap::new(),
            prune_unmanaged_members: false,
        };
        d.policies.insert(
            "s3".into(),
            DesiredPolicy {
                name: "s3".into(),
                path: "/kftenant/".into(),
                arn: ARN_S3.into(),
                document: doc("s3:GetObject").into(),
                tags: ownership_tags("prod", None),
                adopt: false,
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
                    adopt: false,
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
                    adopt: false,
                },
            );
        }
        d
    }

    fn run(d: &Desired, o: &Observed) -> Plan {
        plan(d, o, &PlanOptions::default())
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
        d.decommissioned.insert("a".into());
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
        let mut d = world(&["z"]);
        d.decommissioned.insert("a".into());
        let p = run(&d, &o);
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
            create.created().unwrap()["description"],
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
    fn quota_rewritten_by_the_kubeflow_controller_is_not_drift() {
        let mut d = world(&["a"]);
        let want = json!({"hard": {"cpu": "1500m", "memory": "1Gi", "requests.nvidia.com/gpu": "0"}, "scopes": ["NotTerminating", "NotBestEffort"]});
        let profile = d.profiles.get_mut("a").unwrap();
        profile.spec =
            json!({"owner": {"kind": "User", "name": "a@x"}, "resourceQuotaSpec": want}).into();
        let with_quota = |rqs: Json| {
            let mut o = Observed::converged(&d);
            o.profiles[0].spec =
                json!({"owner": {"kind": "User", "name": "a@x"}, "resourceQuotaSpec": rqs}).into();
            run(&d, &o)
        };
        // Same amounts in other forms, scopes in another order.
        let p = with_quota(
            json!({"hard": {"cpu": "1.5", "memory": "1024Mi", "requests.nvidia.com/gpu": 0}, "scopes": ["NotBestEffort", "NotTerminating"]}),
        );
        assert!(p.is_empty(), "{:#?}", p.changes);
        // A real change is one update of the Profile, showing only the quota.
        let p = with_quota(
            json!({"hard": {"cpu": "2", "memory": "1Gi", "requests.nvidia.com/gpu": "0"}, "scopes": ["NotTerminating", "NotBestEffort"]}),
        );
        assert_eq!(addrs(&p), vec![(Action::Update, "profile.a".into())]);
        let diffs: Vec<&str> = p.changes[0]
            .diffs
            .iter()
            .map(|d| d.field.as_str())
            .collect();
        assert_eq!(diffs, vec!["spec.resourceQuotaSpec"]);
        // No quota: kftenant writes `{}`; absent (never reconciled) is the same.
        let profile = d.profiles.get_mut("a").unwrap();
        profile.spec =
            json!({"owner": {"kind": "User", "name": "a@x"}, "resourceQuotaSpec": {}}).into();
        let mut o = Observed::converged(&d);
        o.profiles[0].spec = json!({"owner": {"kind": "User", "name": "a@x"}}).into();
        assert!(run(&d, &o).is_empty());
        // ... but another field's change does not drag the quota into the diff.
        o.profiles[0].spec = json!({"owner": {"kind": "User", "name": "b@x"}}).into();
        let p = run(&d, &o);
        let diffs: Vec<&str> = p.changes[0]
            .diffs
            .iter()
            .map(|d| d.field.as_str())
            .collect();
        assert_eq!(diffs, vec!["spec.owner"]);
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
    fn a_policy_iam_does_not_have_blocks_its_tenant_only() {
        let mut d = world(&["a", "b"]);
        let typo = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAcess".to_string();
        d.roles
            .get_mut("a")
            .unwrap()
            .managed_policy_arns
            .insert(typo.clone());
        let o = Observed {
            missing_policies: vec![typo.clone()],
            ..Default::default()
        };
        let p = run(&d, &o);
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(
            p.conflicts[0].address,
            format!("iam_role.a-role.attachment[{typo}]")
        );
        assert!(p.conflicts[0].reason.contains("does not exist"));
        assert!(
            p.changes.iter().all(|c| c.tenant.as_deref() != Some("a")),
            "nothing of `a` is created"
        );
        assert!(p.changes.iter().any(|c| c.tenant.as_deref() == Some("b")));
        assert_eq!(p.verdict(), Verdict::Blocked);
    }

    #[test]
    fn a_tenant_gone_from_git_is_held_back_until_git_decommissions_it() {
        let full = world(&["a", "b"]);
        let mut o = Observed::converged(&full);
        // Drift on the tenant that stays: still corrected while `a` is held.
        o.roles[1].max_session_duration = 7200;
        let mut d = world(&["b"]);
        let p = run(&d, &o);
        assert_eq!(
            addrs(&p),
            vec![(
                Action::Update,
                "iam_role.b-role.max_session_duration".into()
            )]
        );
        assert_eq!(p.held.len(), 1);
        assert_eq!(p.held[0].tenant, "a");
        assert_eq!(p.held[0].resources, vec!["profile.a", "iam_role.a-role"]);
        assert!(
            p.held[0].reason.contains("[prune] decommissioned"),
            "{}",
            p.held[0].reason
        );
        assert_eq!(p.verdict(), Verdict::Blocked);
        assert!(p.deleted_tenants.is_empty());

        d.decommissioned.insert("a".into());
        let p = run(&d, &o);
        assert!(p.held.is_empty());
        assert_eq!(p.deleted_tenants, vec!["a"]);
        let deletes: Vec<String> = p
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.address.clone())
            .collect();
        assert_eq!(deletes[0], "profile.a", "the Profile goes first");
        assert_eq!(deletes.last().unwrap(), "iam_role.a-role");
        assert!(
            p.changes[0..]
                .iter()
                .any(|c| c.reason.contains("deletes namespace `a`"))
        );
        assert_eq!(p.verdict(), Verdict::Changes);
    }

    #[test]
    fn guard_counts_tenants_not_resources_and_holds_without_stopping_the_rest() {
        let full = world(&["a", "b", "c", "d"]);
        let mut d = world(&["d"]);
        d.decommissioned = ["a", "b", "c"].map(String::from).into();
        d.max_deletions = 2;
        let mut o = Observed::converged(&full);
        o.roles[3].max_session_duration = 7200;
        let p = plan(&d, &o, &PlanOptions::default());
        assert_eq!(
            p.held.iter().map(|h| h.tenant.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert!(
            p.held[0].reason.contains("max_deletions = 2"),
            "{:?}",
            p.held
        );
        assert_eq!(
            addrs(&p),
            vec![(
                Action::Update,
                "iam_role.d-role.max_session_duration".into()
            )],
            "the drift of `d` is corrected all the same"
        );
        let allowed = PlanOptions {
            allow_mass_delete: true,
            ..Default::default()
        };
        assert_eq!(plan(&d, &o, &allowed).deleted_tenants.len(), 3);
        d.max_deletions = 3;
        let p = plan(&d, &o, &PlanOptions::default());
        assert!(p.held.is_empty() && p.deleted_tenants.len() == 3);
        // No tenant left in git: held, however many are allowed.
        let mut empty = world(&[]);
        empty.decommissioned = ["a", "b", "c", "d"].map(String::from).into();
        empty.max_deletions = 100;
        let p = plan(&empty, &o, &PlanOptions::default());
        assert_eq!(p.held.len(), 4);
        assert!(p.changes.iter().all(|c| c.action != Action::Delete));
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
        let mut d = world(&["b"]);
        d.decommissioned.insert("a".into());
        let p = run(&d, &o);
        assert!(!addrs(&p).contains(&(Action::Delete, "profile.a".into())));
        assert_eq!(p.kept[0].address, "profile.a");
        // The role is still deleted after: the executor waits for the Profile to be gone.
        assert_eq!(
            addrs(&p).last(),
            Some(&(Action::Delete, "iam_role.a-role".into()))
        );
    }

    /// `world(&["a"])` with its role and Profile made by hand before
    /// kftenant: no ownership marks, the guide's trust policy (`aud` only),
    /// a Profile without `annotateOnly`. Git keeps the role's tag `team`.
    fn made_by_hand() -> (Desired, Observed) {
        let mut d = world(&["a"]);
        d.roles
            .get_mut("a")
            .unwrap()
            .tags
            .insert("team".into(), "x".into());
        let mut o = Observed::converged(&d);
        let role = &mut o.roles[0];
        role.tags = [("team".to_string(), "x".to_string())].into();
        role.assume_role_policy_document = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": "arn:x"}, "Condition": {"StringEquals": {"issuer:aud": "sts.amazonaws.com"}}}]}).to_string();
        let profile = &mut o.profiles[0];
        profile.labels.clear();
        profile.spec = json!({"owner": {"kind": "User", "name": "a@x"}, "plugins": [{"kind": "AwsIamForServiceAccount", "spec": {"awsIamRole": "arn"}}]}).into();
        (d, o)
    }

    fn adopt(d: &mut Desired) {
        d.roles.get_mut("a").unwrap().adopt = true;
        d.profiles.get_mut("a").unwrap().adopt = true;
    }

    #[test]
    fn what_kftenant_did_not_make_is_adopted_only_when_git_asks() {
        let (mut d, o) = made_by_hand();
        // Without `spec.adopt`: conflicts, nothing changes, nothing deleted.
        let p = run(&d, &o);
        assert!(p.changes.is_empty(), "{:#?}", p.changes);
        assert_eq!(
            p.conflicts
                .iter()
                .map(|c| c.address.as_str())
                .collect::<Vec<_>>(),
            vec!["iam_role.a-role", "profile.a"]
        );
        assert!(
            p.conflicts[0]
                .reason
                .contains("adopt: {role: arn:aws:iam::123456789012:role/kftenant/a-role}"),
            "{}",
            p.conflicts[0].reason
        );
        assert_eq!(p.verdict(), Verdict::Blocked);
        // With it: one adopt change per resource, the Profile first; no drift.
        adopt(&mut d);
        let p = run(&d, &o);
        assert_eq!(
            addrs(&p),
            vec![
                (Action::Adopt, "profile.a".into()),
                (Action::Adopt, "iam_role.a-role".into()),
            ]
        );
        assert!(p.conflicts.is_empty() && p.drift.is_empty());
        assert_eq!((p.summary.adopt, p.summary.tenants_changed), (2, 1));
        assert_eq!(p.verdict(), Verdict::Changes);
        match &p.changes[1].operation {
            Operation::AdoptRole {
                tags, trust_policy, ..
            } => {
                assert_eq!(tags.set, ownership_tags("prod", Some("a")));
                assert!(tags.unset.is_empty(), "the role's own tag stays: {tags:?}");
                assert_eq!(trust_policy.as_ref(), Some(&d.roles["a"].trust_policy));
            }
            other => panic!("{other:?}"),
        }
        let fields: Vec<&str> = p.changes[1]
            .diffs
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(
            fields,
            vec![
                "trust_policy",
                "tags.kftenant.io/cluster",
                "tags.kftenant.io/managed-by",
                "tags.kftenant.io/tenant"
            ]
        );
        let fields: Vec<&str> = p.changes[0]
            .diffs
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(
            fields,
            vec![
                "labels.app.kubernetes.io/managed-by",
                "labels.kftenant.io/cluster",
                "spec.plugins"
            ]
        );
        // Once adopted: nothing more, whether `spec.adopt` stays or goes.
        let after = Observed::converged(&d);
        assert!(run(&d, &after).is_empty());
        let mut without = d.clone();
        without.roles.get_mut("a").unwrap().adopt = false;
        without.profiles.get_mut("a").unwrap().adopt = false;
        assert!(run(&without, &after).is_empty());
    }

    #[test]
    fn adoption_never_takes_what_another_kftenant_owns_nor_moves_a_role() {
        let (mut d, mut o) = made_by_hand();
        adopt(&mut d);
        o.roles[0]
            .tags
            .insert(TAG_MANAGED_BY.into(), MANAGER.into());
        o.roles[0].tags.insert(TAG_CLUSTER.into(), "staging".into());
        o.profiles[0]
            .labels
            .insert(TAG_CLUSTER.into(), "staging".into());
        let p = run(&d, &o);
        assert!(p.changes.is_empty(), "{:#?}", p.changes);
        assert!(
            p.conflicts[0].reason.contains("adoption never takes over"),
            "{:?}",
            p.conflicts
        );
        assert!(
            p.conflicts[1].reason.contains("adoption never takes over"),
            "{:?}",
            p.conflicts
        );
        // A role elsewhere than git says: git must name its path.
        let (mut d, mut o) = made_by_hand();
        adopt(&mut d);
        o.roles[0].path = "/".into();
        let p = run(&d, &o);
        assert_eq!(p.conflicts.len(), 1);
        assert!(
            p.conflicts[0]
                .reason
                .contains("write `rolePath: /` in spec.iam"),
            "{}",
            p.conflicts[0].reason
        );
        assert!(p.changes.is_empty());
    }

    #[test]
    fn what_else_git_wants_of_an_adopted_role_follows_its_adoption() {
        let (mut d, mut o) = made_by_hand();
        adopt(&mut d);
        let extra = "arn:aws:iam::aws:policy/ReadOnlyAccess".to_string();
        o.roles[0].attached_policy_arns.push(extra.clone());
        o.roles[0].max_session_duration = 7200;
        let p = run(&d, &o);
        assert_eq!(
            addrs(&p),
            vec![
                (Action::Adopt, "profile.a".into()),
                (Action::Adopt, "iam_role.a-role".into()),
                (
                    Action::Update,
                    "iam_role.a-role.max_session_duration".into()
                ),
                (
                    Action::Delete,
                    format!("iam_role.a-role.attachment[{extra}]")
                ),
            ]
        );
        assert!(
            p.changes.iter().all(|c| !c.drift),
            "not kftenant's before: no drift"
        );
    }

    #[test]
    fn a_policy_made_by_hand_is_adopted_when_a_tenant_asks() {
        let mut d = world(&["a"]);
        let mut o = Observed::converged(&d);
        o.policies[0].description = String::new();
        o.policies[0].tags = Some(BTreeMap::new());
        o.policies[0].attachment_count = 3;
        assert_eq!(run(&d, &o).conflicts.len(), 2, "policy and tenant");
        d.policies.get_mut("s3").unwrap().adopt = true;
        let p = run(&d, &o);
        assert!(p.conflicts.is_empty(), "{:#?}", p.conflicts);
        assert_eq!(addrs(&p), vec![(Action::Adopt, "iam_policy.s3".into())]);
        assert!(
            p.changes[0]
                .reason
                .contains("also attached to 2 roles, users or groups no tenant names"),
            "{}",
            p.changes[0].reason
        );
        match &p.changes[0].operation {
            Operation::AdoptPolicy { tags, document, .. } => {
                assert_eq!(tags.set, ownership_tags("prod", None));
                assert!(document.is_none(), "same document: no new version");
            }
            other => panic!("{other:?}"),
        }
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
