//! A tenant's role, field by field: each function returns the change that
//! brings one field of the live role to git's value, or `None` when that
//! field is converged.

use super::desired::DesiredRole;
use super::observed::ObservedRole;
use super::{Action, Change, FieldDiff, Operation, Part, Resource, TagChange, diff_maps, live_doc};
use crate::ownership::{RESERVED_PREFIX, TAG_TENANT, owns_tags};
use crate::policy;
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;

/// Whether the live role with the desired name is this tenant's to change:
/// kftenant's for this cluster and this tenant, on the desired path; or,
/// when git asks for it (`spec.adopt.role`), no kftenant's at all and exactly
/// the role git names. Otherwise records the conflict.
pub(super) fn check_ownership(
    out: &mut Part,
    cluster: &str,
    want: &DesiredRole,
    live: &ObservedRole,
) -> Ownership {
    let tenant = want.tenant.as_str();
    let res = Resource::Role {
        name: want.name.clone(),
    };
    let foreign = !live.tags.keys().any(|k| k.starts_with(RESERVED_PREFIX));
    let reason = if owns_tags(&live.tags, cluster) {
        if live.tags.get(TAG_TENANT).map(String::as_str) != Some(tenant) {
            format!(
                "role `{}` is managed by kftenant for tenant `{}`, not `{tenant}`",
                live.name,
                live.tags.get(TAG_TENANT).map_or("?", String::as_str)
            )
        } else if live.path != want.path {
            format!(
                "role `{}` has path `{}` but git wants `{}`; IAM cannot move a role, so delete it by hand and kftenant will recreate it",
                live.name, live.path, want.path
            )
        } else {
            return Ownership::Ours;
        }
    } else if !want.adopt {
        format!(
            "role `{}` exists without kftenant's ownership tags for cluster `{cluster}`; kftenant will not touch it or tenant `{tenant}`. To take it over, add `adopt: {{role: {}}}` to the tenant's spec (`kftenant import` writes it); else rename the tenant or [iam] role_name_template, or delete the live role",
            live.name, live.arn
        )
    } else if !foreign {
        format!(
            "role `{}` carries kftenant's tags of another cluster or tenant ({}); adoption never takes over what another kftenant manages",
            live.name,
            live.tags
                .iter()
                .filter(|(k, _)| k.starts_with(RESERVED_PREFIX))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if live.name != want.name {
        format!(
            "git adopts role `{}`, but IAM names it `{}` (names differ in case); write `roleName: {}` in spec.iam",
            want.name, live.name, live.name
        )
    } else if live.path != want.path {
        format!(
            "git adopts role `{}` at path `{}`, but it lives at `{}` and IAM cannot move a role; write `rolePath: {}` in spec.iam",
            live.name, want.path, live.path, live.path
        )
    } else {
        return Ownership::Adopt;
    };
    out.conflict(&res, Some(tenant), reason);
    Ownership::Conflict
}

/// What the live role of a tenant's name is to kftenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ownership {
    /// kftenant's, for this tenant: planned field by field.
    Ours,
    /// Not kftenant's, and git adopts it.
    Adopt,
    /// Not this tenant's to change (recorded as a conflict).
    Conflict,
}

/// Taking over a live role git adopts: one `adopt` change that tags it
/// (ownership tags and git's tags) and brings its trust policy to
/// kftenant's shape; then, as ordinary changes, whatever else git wants
/// different (attachments, inline policies, boundary, session duration).
/// None of it is drift: the role was not kftenant's.
pub(super) fn adopt(want: &DesiredRole, live: &ObservedRole) -> Vec<Change> {
    let trust_before = live_doc(&live.assume_role_policy_document);
    let trust_after = policy::normalize_owned(want.trust_policy.to_json());
    let mut diffs = Vec::new();
    let trust = if trust_before == trust_after {
        None
    } else {
        diffs.push(FieldDiff {
            field: "trust_policy".into(),
            before: trust_before.clone(),
            after: trust_after,
        });
        Some(want.trust_policy.clone())
    };
    diffs.extend(diff_maps("tags", &live.tags, &want.tags));
    let mut adopt = Change::new(
        Operation::AdoptRole {
            name: want.name.clone(),
            tags: TagChange::between(&live.tags, &want.tags),
            trust_policy: trust,
        },
        Some(&want.tenant),
        Action::Adopt,
        format!(
            "git adopts role `{}` (spec.adopt.role): kftenant's ownership tags, and the trust policy kftenant renders (default-editor and the tenant's service accounts, which the Kubeflow controller accepts as it is)",
            want.name
        ),
    )
    .before(json!({"trust_policy": trust_before, "tags": live.tags}));
    adopt.diffs = diffs;
    // The rest, against the role as it is once adopted.
    let adopted = ObservedRole {
        tags: want.tags.clone(),
        assume_role_policy_document: want.trust_policy.as_str().to_string(),
        ..live.clone()
    };
    std::iter::once(adopt)
        .chain(update(want, &adopted).into_iter().map(|mut c| {
            c.drift = false;
            c
        }))
        .collect()
}

/// A new role: the role itself (trust policy, boundary, duration and tags
/// come with `CreateRole`), then its attachments and inline policies.
pub(super) fn create(r: &DesiredRole) -> Vec<Change> {
    let t = Some(r.tenant.as_str());
    let mut changes = vec![Change::new(
        Operation::CreateRole {
            name: r.name.clone(),
            path: r.path.clone(),
            arn: r.arn.clone(),
            trust_policy: r.trust_policy.clone(),
            permissions_boundary: r.permissions_boundary.clone(),
            max_session_duration: r.max_session_duration,
            tags: r.tags.clone(),
        },
        t,
        Action::Create,
        format!("tenant `{}` is in git and has no role", r.tenant),
    )];
    changes.extend(r.managed_policy_arns.iter().map(|arn| {
        Change::new(
            Operation::AttachPolicy {
                role: r.name.clone(),
                arn: arn.clone(),
            },
            t,
            Action::Create,
            "attach to the new role",
        )
    }));
    changes.extend(r.inline_policies.iter().map(|(name, doc)| {
        Change::new(
            Operation::PutInlinePolicy {
                role: r.name.clone(),
                name: name.clone(),
                document: doc.clone(),
            },
            t,
            Action::Create,
            "inline policy of the new role",
        )
    }));
    changes
}

/// An existing role of this tenant: every field that differs, in order.
pub(super) fn update(want: &DesiredRole, live: &ObservedRole) -> Vec<Change> {
    [
        trust_policy(want, live),
        boundary(want, live),
        max_session_duration(want, live),
        tags(want, live),
    ]
    .into_iter()
    .flatten()
    .chain(attachments(want, live))
    .chain(inline_policies(want, live))
    .map(|c| c.tenant_of(want))
    .collect()
}

impl Change {
    fn tenant_of(mut self, role: &DesiredRole) -> Change {
        self.tenant = Some(role.tenant.clone());
        self
    }
}

/// A drift-correcting update of one scalar field.
fn field_update(
    operation: Operation,
    reason: &str,
    field: &str,
    before: Json,
    after: Json,
) -> Change {
    Change::new(operation, None, Action::Update, reason)
        .before(before.clone())
        .drift(vec![FieldDiff {
            field: field.into(),
            before,
            after,
        }])
}

fn trust_policy(want: &DesiredRole, live: &ObservedRole) -> Option<Change> {
    let before = live_doc(&live.assume_role_policy_document);
    let after = policy::normalize_owned(want.trust_policy.to_json());
    (before != after).then(|| {
        field_update(
            Operation::UpdateTrustPolicy {
                role: want.name.clone(),
                document: want.trust_policy.clone(),
            },
            "trust policy in IAM differs from git",
            "trust_policy",
            before,
            after,
        )
    })
}

fn boundary(want: &DesiredRole, live: &ObservedRole) -> Option<Change> {
    if live.permissions_boundary == want.permissions_boundary {
        return None;
    }
    let role = want.name.clone();
    let (action, reason, operation) = match (&live.permissions_boundary, &want.permissions_boundary)
    {
        (_, None) => (
            Action::Delete,
            "role has a permissions boundary that git does not set",
            Operation::DeleteBoundary { role },
        ),
        (None, Some(arn)) => (
            Action::Create,
            "role has no permissions boundary; git sets one",
            Operation::PutBoundary {
                role,
                arn: arn.clone(),
            },
        ),
        (Some(_), Some(arn)) => (
            Action::Update,
            "permissions boundary in IAM differs from git",
            Operation::PutBoundary {
                role,
                arn: arn.clone(),
            },
        ),
    };
    let (before, after) = (
        json!(live.permissions_boundary),
        json!(want.permissions_boundary),
    );
    let mut c = field_update(operation, reason, "permissions_boundary", before, after);
    c.action = action;
    Some(c)
}

fn max_session_duration(want: &DesiredRole, live: &ObservedRole) -> Option<Change> {
    (live.max_session_duration != want.max_session_duration).then(|| {
        field_update(
            Operation::SetMaxSessionDuration {
                role: want.name.clone(),
                seconds: want.max_session_duration,
            },
            "maximum session duration in IAM differs from git",
            "max_session_duration",
            json!(live.max_session_duration),
            json!(want.max_session_duration),
        )
    })
}

fn tags(want: &DesiredRole, live: &ObservedRole) -> Option<Change> {
    if live.tags == want.tags {
        return None;
    }
    let diffs = diff_maps("tags", &live.tags, &want.tags);
    Some(
        Change::new(
            Operation::UpdateRoleTags {
                role: want.name.clone(),
                tags: TagChange::between(&live.tags, &want.tags),
            },
            None,
            Action::Update,
            "tags in IAM differ from git",
        )
        .before(json!(live.tags))
        .drift(diffs),
    )
}

fn attachments<'a>(
    want: &'a DesiredRole,
    live: &'a ObservedRole,
) -> impl Iterator<Item = Change> + 'a {
    let live_arns: BTreeSet<&String> = live.attached_policy_arns.iter().collect();
    let attach = want
        .managed_policy_arns
        .iter()
        .filter(move |arn| !live.attached_policy_arns.contains(arn))
        .map(|arn| {
            Change::new(
                Operation::AttachPolicy {
                    role: want.name.clone(),
                    arn: arn.clone(),
                },
                None,
                Action::Create,
                "in git, not attached in IAM",
            )
            .drift(vec![])
        });
    let detach = live_arns
        .into_iter()
        .filter(|arn| !want.managed_policy_arns.contains(*arn))
        .map(|arn| {
            Change::new(
                Operation::DetachPolicy {
                    role: want.name.clone(),
                    arn: arn.clone(),
                },
                None,
                Action::Delete,
                "attached in IAM, not in git",
            )
            .before(json!(arn))
            .drift(vec![])
        });
    attach.chain(detach)
}

fn inline_policies<'a>(
    want: &'a DesiredRole,
    live: &'a ObservedRole,
) -> impl Iterator<Item = Change> + 'a {
    let put = want.inline_policies.iter().filter_map(|(name, doc)| {
        let operation = Operation::PutInlinePolicy {
            role: want.name.clone(),
            name: name.clone(),
            document: doc.clone(),
        };
        let Some(raw) = live.inline_policies.get(name) else {
            return Some(
                Change::new(operation, None, Action::Create, "in git, not in IAM").drift(vec![]),
            );
        };
        let (before, after) = (live_doc(raw), policy::normalize_owned(doc.to_json()));
        (before != after).then(|| {
            field_update(
                operation,
                "inline policy in IAM differs from git",
                "document",
                before,
                after,
            )
        })
    });
    let delete = live
        .inline_policies
        .iter()
        .filter(|(name, _)| !want.inline_policies.contains_key(*name))
        .map(|(name, raw)| {
            Change::new(
                Operation::DeleteInlinePolicy {
                    role: want.name.clone(),
                    name: name.clone(),
                },
                None,
                Action::Delete,
                "inline policy in IAM, not in git",
            )
            .before(live_doc(raw))
            .drift(vec![])
        });
    put.chain(delete)
}

/// The role's deletion with everything that must go first: detach every
/// policy, delete every inline policy, then the role (after its tenant's
/// Profile is gone). `why` says why the role goes.
pub(super) fn delete(live: &ObservedRole, tenant: &str, why: &str) -> Vec<Change> {
    let t = Some(tenant);
    let mut arns: Vec<&String> = live.attached_policy_arns.iter().collect();
    arns.sort();
    let detach = arns.into_iter().map(|arn| {
        Change::new(
            Operation::DetachPolicy {
                role: live.name.clone(),
                arn: arn.clone(),
            },
            t,
            Action::Delete,
            format!("detach before deleting the role: {why}"),
        )
        .before(json!(arn))
    });
    let inline = live.inline_policies.iter().map(|(name, doc)| {
        Change::new(
            Operation::DeleteInlinePolicy {
                role: live.name.clone(),
                name: name.clone(),
            },
            t,
            Action::Delete,
            format!("delete before deleting the role: {why}"),
        )
        .before(live_doc(doc))
    });
    let role = Change::new(
        Operation::DeleteRole {
            name: live.name.clone(),
            after_profile: Some(tenant.to_string()),
        },
        t,
        Action::Delete,
        why,
    )
    .before(json!({
        "path": live.path, "arn": live.arn,
        "permissions_boundary": live.permissions_boundary,
        "max_session_duration": live.max_session_duration, "tags": live.tags,
    }));
    detach.chain(inline).chain(std::iter::once(role)).collect()
}
