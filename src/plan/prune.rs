//! Tenants gone from git: found and judged before anything is planned (the
//! prune guard), planned last (Profile first, then the role and what hangs
//! on it).

use super::desired::Desired;
use super::observed::{Observed, ObservedProfile, ObservedRole};
use super::{Part, PlanOptions, PlanRefused, Resource, profile, role};
use crate::ownership::{TAG_TENANT, owns_labels, owns_tags};
use std::collections::{BTreeMap, BTreeSet};

/// Managed roles and Profiles that git no longer wants, by tenant.
pub(super) struct Removals<'o> {
    /// Managed roles whose name git no longer renders, by tenant.
    roles: BTreeMap<String, Vec<&'o ObservedRole>>,
    /// Managed Profiles of tenants no longer in git.
    profiles: BTreeMap<String, &'o ObservedProfile>,
}

impl<'o> Removals<'o> {
    /// Finds what git no longer wants among what kftenant owns.
    pub(super) fn find(desired: &Desired, observed: &'o Observed) -> Removals<'o> {
        let cluster = desired.cluster.as_str();
        let wanted_roles: BTreeSet<String> = desired
            .roles
            .values()
            .map(|r| r.name.to_ascii_lowercase())
            .collect();
        let mut roles: BTreeMap<String, Vec<&ObservedRole>> = BTreeMap::new();
        for r in observed.roles.iter().filter(|r| {
            owns_tags(&r.tags, cluster) && !wanted_roles.contains(&r.name.to_ascii_lowercase())
        }) {
            let tenant = r.tags.get(TAG_TENANT).unwrap_or(&r.name).clone();
            roles.entry(tenant).or_default().push(r);
        }
        let profiles = observed
            .profiles
            .iter()
            .filter(|p| owns_labels(&p.labels, cluster) && !desired.profiles.contains_key(&p.name))
            .map(|p| (p.name.clone(), p))
            .collect();
        Removals { roles, profiles }
    }

    /// Every tenant with something to remove, sorted.
    fn tenants(&self) -> BTreeSet<&String> {
        self.roles.keys().chain(self.profiles.keys()).collect()
    }

    /// The tenants that are gone from git altogether (not merely renamed roles).
    fn removed_tenants(&self, desired: &Desired) -> Vec<String> {
        self.tenants()
            .into_iter()
            .filter(|t| !desired.roles.contains_key(*t))
            .cloned()
            .collect()
    }

    /// The prune guard: refuses deleting every tenant, or more than
    /// `[prune] max_deletions`, unless the options allow it.
    pub(super) fn check(&self, desired: &Desired, opts: &PlanOptions) -> Result<(), PlanRefused> {
        if !desired.prune || opts.allow_mass_delete {
            return Ok(());
        }
        let tenants = self.removed_tenants(desired);
        if tenants.is_empty() {
            Ok(())
        } else if desired.roles.is_empty() {
            Err(PlanRefused::AllTenants { tenants })
        } else if tenants.len() > desired.max_deletions {
            Err(PlanRefused::TooManyDeletions {
                tenants,
                limit: desired.max_deletions,
            })
        } else {
            Ok(())
        }
    }

    /// Plans the removals, tenant by tenant: the Profile first, then each
    /// role with its attachments and inline policies. Returns how many
    /// attachments of each policy ARN the plan removes.
    pub(super) fn plan(&self, out: &mut Part, desired: &Desired) -> BTreeMap<String, usize> {
        const PRUNE_DISABLED: &str = "no longer in git; [prune] enabled = false";
        let mut detached: BTreeMap<String, usize> = BTreeMap::new();
        for tenant in self.tenants() {
            if let Some(p) = self.profiles.get(tenant) {
                let res = Resource::Profile {
                    name: p.name.clone(),
                };
                if !desired.prune {
                    out.keep(&res, PRUNE_DISABLED);
                } else if p.deleting {
                    out.keep(&res, "already being deleted (waiting for finalizers)");
                } else {
                    out.changes
                        .push(profile::delete(p, tenant, "no longer in git"));
                }
            }
            for r in self.roles.get(tenant).into_iter().flatten() {
                if !desired.prune {
                    out.keep(
                        &Resource::Role {
                            name: r.name.clone(),
                        },
                        PRUNE_DISABLED,
                    );
                    continue;
                }
                let why = if desired.roles.contains_key(tenant) {
                    "role name no longer rendered from git (tenant renamed or role_name_template changed)"
                } else {
                    "tenant no longer in git"
                };
                for arn in &r.attached_policy_arns {
                    *detached.entry(arn.clone()).or_default() += 1;
                }
                out.changes.extend(role::delete(r, tenant, why));
            }
        }
        detached
    }
}
