//! Tenants gone from git: found and judged before anything is planned,
//! planned last (Profile first, then the role and what hangs on it).
//!
//! A tenant's Profile owns its namespace, so deleting a tenant deletes the
//! namespace and everything in it. Git must say so: only a tenant listed in
//! `[prune] decommissioned` is deleted, and none while more than `[prune]
//! max_deletions` would go at once (or every tenant would). Every other
//! removal is held back ([`Held`]): reported each time, never deleted, and
//! never in the way of the rest of the plan.

use super::desired::Desired;
use super::observed::{Observed, ObservedProfile, ObservedRole};
use super::{Held, Part, PlanOptions, Resource, profile, role};
use crate::ownership::{TAG_TENANT, owns_labels, owns_tags};
use std::collections::{BTreeMap, BTreeSet};

/// Managed roles and Profiles that git no longer wants, by tenant.
pub(super) struct Removals<'o> {
    /// Managed roles whose name git no longer renders, by tenant.
    roles: BTreeMap<String, Vec<&'o ObservedRole>>,
    /// Managed Profiles of tenants no longer in git.
    profiles: BTreeMap<String, &'o ObservedProfile>,
}

/// What the guard decided for the tenants gone from git.
#[derive(Debug, Default)]
pub(super) struct Decision {
    /// Tenants to delete (confirmed in git, within the guard).
    pub delete: BTreeSet<String>,
    /// Tenants held back, with why.
    pub held: Vec<Held>,
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

    /// The addresses of what removing `tenant` would delete.
    fn resources(&self, tenant: &str) -> Vec<String> {
        let profile = self.profiles.get(tenant).map(|p| {
            Resource::Profile {
                name: p.name.clone(),
            }
            .to_string()
        });
        let roles = self.roles.get(tenant).into_iter().flatten().map(|r| {
            Resource::Role {
                name: r.name.clone(),
            }
            .to_string()
        });
        profile.into_iter().chain(roles).collect()
    }

    /// The guard: which tenants gone from git are deleted and which are held
    /// back. (Roles of tenants still in git whose name changed are not
    /// tenant deletions: they go without confirmation.)
    pub(super) fn decide(&self, desired: &Desired, opts: &PlanOptions) -> Decision {
        let mut decision = Decision::default();
        if !desired.prune {
            return decision;
        }
        let removed: Vec<&String> = self
            .tenants()
            .into_iter()
            .filter(|t| !desired.roles.contains_key(*t))
            .collect();
        let (confirmed, unconfirmed): (Vec<&String>, Vec<&String>) = removed
            .into_iter()
            .partition(|t| desired.decommissioned.contains(*t));
        for t in unconfirmed {
            decision.held.push(Held {
                tenant: t.clone(),
                resources: self.resources(t),
                reason: format!(
                    "tenant `{t}` is no longer in git, but kftenant deletes a tenant (and its namespace with everything in it) only when git confirms it: add \"{t}\" to [prune] decommissioned in kftenant.toml to delete it, or restore its file to keep it"
                ),
            });
        }
        let refusal = if opts.allow_mass_delete || confirmed.is_empty() {
            None
        } else if desired.roles.is_empty() {
            Some(format!(
                "every tenant would be deleted ({} of them) and git has none left, which usually means an empty or broken tenants/ folder; run with --allow-mass-delete if this is intended",
                confirmed.len()
            ))
        } else if confirmed.len() > desired.max_deletions {
            Some(format!(
                "{} tenants would be deleted at once, more than [prune] max_deletions = {}; raise max_deletions in kftenant.toml (in the same pull request) or run with --allow-mass-delete",
                confirmed.len(),
                desired.max_deletions
            ))
        } else {
            None
        };
        for t in confirmed {
            match &refusal {
                Some(why) => decision.held.push(Held {
                    tenant: t.clone(),
                    resources: self.resources(t),
                    reason: format!("tenant `{t}` is decommissioned, but {why}"),
                }),
                None => {
                    decision.delete.insert(t.clone());
                }
            }
        }
        decision
    }

    /// Plans the removals, tenant by tenant: the Profile first, then each
    /// role with its attachments and inline policies. Held tenants get
    /// nothing. Returns how many attachments of each policy ARN the plan
    /// removes.
    pub(super) fn plan(
        &self,
        out: &mut Part,
        desired: &Desired,
        decision: &Decision,
    ) -> BTreeMap<String, usize> {
        const PRUNE_DISABLED: &str = "no longer in git; [prune] enabled = false";
        let held: BTreeSet<&str> = decision.held.iter().map(|h| h.tenant.as_str()).collect();
        let mut detached: BTreeMap<String, usize> = BTreeMap::new();
        for tenant in self.tenants() {
            if held.contains(tenant.as_str()) {
                continue;
            }
            if let Some(p) = self.profiles.get(tenant) {
                let res = Resource::Profile {
                    name: p.name.clone(),
                };
                if !desired.prune {
                    out.keep(&res, PRUNE_DISABLED);
                } else if p.deleting {
                    out.keep(&res, "already being deleted (waiting for finalizers)");
                } else {
                    out.changes.push(profile::delete(
                        p,
                        tenant,
                        &format!(
                            "tenant `{tenant}` is decommissioned in kftenant.toml: deletes namespace `{}` and everything in it (notebooks, volumes, pipelines)",
                            p.name
                        ),
                    ));
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
                    "tenant decommissioned in kftenant.toml"
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
