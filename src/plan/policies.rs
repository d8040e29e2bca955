//! Repo policies (`policies/*.json`): created and updated first, deleted last
//! and only when nothing uses them any more.

use super::desired::{Desired, DesiredPolicy};
use super::observed::{Observed, ObservedPolicy};
use super::{
    Action, Change, FieldDiff, Live, Operation, Part, Resource, TagChange, diff_maps, live_doc,
};
use crate::ownership::{RESERVED_PREFIX, owns_policy, policy_marker};
use crate::policy;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

fn owned(p: &ObservedPolicy, cluster: &str) -> bool {
    owns_policy(&p.description, p.tags.as_ref(), cluster)
}

/// Plans every policy in git. Returns the ARNs of the policies in conflict:
/// tenants that use them are not planned.
pub(super) fn plan_wanted(out: &mut Part, desired: &Desired, live: &Live<'_>) -> BTreeSet<String> {
    let cluster = desired.cluster.as_str();
    let mut blocked = BTreeSet::new();
    for p in desired.policies.values() {
        match live.policy(&p.name) {
            Some(lp) if !owned(lp, cluster) => match refuse_adoption(p, lp) {
                None => out.changes.push(adopt(p, lp, desired)),
                Some(why) => {
                    blocked.insert(p.arn.clone());
                    out.conflict(
                        &Resource::Policy {
                            name: p.name.clone(),
                        },
                        None,
                        why.unwrap_or_else(|| format!(
                            "policy `{}` exists ({}) without kftenant's ownership tags for cluster `{cluster}`; kftenant will not touch it. Rename policies/{}.json; or, to take it over, name it by its ARN in the tenants that attach it and list it in one tenant's `spec.adopt.policies` (`kftenant import --import-policies` writes both)",
                            p.name, lp.arn, p.name
                        )),
                    );
                }
            },
            Some(lp) => out.changes.extend(update(p, lp)),
            None => out.changes.push(Change::new(
                Operation::CreatePolicy {
                    name: p.name.clone(),
                    path: p.path.clone(),
                    arn: p.arn.clone(),
                    document: p.document.clone(),
                    tags: p.tags.clone(),
                    description: policy_marker(cluster),
                },
                None,
                Action::Create,
                "in git, not in IAM",
            )),
        }
    }
    blocked
}

/// `None` when git adopts the live policy `live` and may: no kftenant's
/// marks of another cluster, and exactly the ARN git names. Otherwise
/// `Some(why)`, with `None` inside for the plain "not kftenant's" conflict.
fn refuse_adoption(want: &DesiredPolicy, live: &ObservedPolicy) -> Option<Option<String>> {
    if !want.adopt {
        return Some(None);
    }
    let marked = live.description.starts_with("Managed by kftenant")
        || live
            .tags
            .iter()
            .flatten()
            .any(|(k, _)| k.starts_with(RESERVED_PREFIX));
    if marked {
        return Some(Some(format!(
            "policy `{}` carries kftenant's marks of another cluster; adoption never takes over what another kftenant manages",
            live.arn
        )));
    }
    if live.arn != want.arn {
        return Some(Some(format!(
            "git adopts policy `{}`, but the live one is `{}`; name it by that ARN",
            want.arn, live.arn
        )));
    }
    None
}

/// Taking over a live policy git adopts: its ownership tags and, when git's
/// document differs, a new default version. Attached elsewhere too, its
/// changes reach those roles, users and groups: the reason says how many.
fn adopt(want: &DesiredPolicy, live: &ObservedPolicy, desired: &Desired) -> Change {
    let before_doc = live_doc(&live.document);
    let after_doc = policy::normalize_owned(want.document.to_json());
    let live_tags = live.tags.clone().unwrap_or_default();
    let mut diffs = Vec::new();
    let document = (before_doc != after_doc).then(|| {
        diffs.push(FieldDiff {
            field: "document".into(),
            before: before_doc.clone(),
            after: after_doc,
        });
        want.document.clone()
    });
    diffs.extend(diff_maps("tags", &live_tags, &want.tags));
    let ours = desired
        .roles
        .values()
        .filter(|r| {
            r.managed_policy_arns.contains(&want.arn)
                || r.permissions_boundary.as_ref() == Some(&want.arn)
        })
        .count();
    let others = live.attachment_count.saturating_sub(ours);
    let mut reason = format!(
        "git adopts policy `{}` (spec.adopt.policies): kftenant's ownership tags",
        want.name
    );
    if document.is_some() {
        reason.push_str(", and git's document as a new default version");
    }
    if others > 0 {
        reason.push_str(&format!(
            "; it is also attached to {others} roles, users or groups no tenant names, which its changes reach"
        ));
    }
    let mut c = Change::new(
        Operation::AdoptPolicy {
            arn: live.arn.clone(),
            tags: TagChange::between(&live_tags, &want.tags),
            document,
        },
        None,
        Action::Adopt,
        reason,
    )
    .before(json!({"arn": live.arn, "document": before_doc, "tags": live_tags}));
    c.diffs = diffs;
    c
}

/// A managed policy whose document or tags differ from git, or `None`.
fn update(want: &DesiredPolicy, live: &ObservedPolicy) -> Option<Change> {
    let mut diffs = Vec::new();
    let before_doc = live_doc(&live.document);
    let after_doc = policy::normalize_owned(want.document.to_json());
    let new_version = before_doc != after_doc;
    if new_version {
        diffs.push(FieldDiff {
            field: "document".into(),
            before: before_doc.clone(),
            after: after_doc,
        });
    }
    // Tags not read (a marked policy): nothing to compare them with.
    let tags = match &live.tags {
        Some(tags) => {
            diffs.extend(diff_maps("tags", tags, &want.tags));
            TagChange::between(tags, &want.tags)
        }
        None => TagChange::default(),
    };
    if diffs.is_empty() {
        return None;
    }
    let reason = if new_version {
        "document in IAM differs from git (a new policy version will be created)"
    } else {
        "tags in IAM differ from git"
    };
    Some(
        Change::new(
            Operation::UpdatePolicy {
                arn: live.arn.clone(),
                document: new_version.then(|| want.document.clone()),
                tags,
            },
            None,
            Action::Update,
            reason,
        )
        .before(json!({"arn": live.arn, "document": before_doc, "tags": live.tags}))
        .drift(diffs),
    )
}

/// Plans the managed policies no longer in git: deleted when nothing uses
/// them once `detached` (policy ARN → attachments this plan removes) are
/// gone, kept otherwise.
pub(super) fn plan_unwanted(
    out: &mut Part,
    desired: &Desired,
    observed: &Observed,
    detached: &BTreeMap<String, usize>,
) {
    let cluster = desired.cluster.as_str();
    let wanted: BTreeSet<String> = desired
        .policies
        .values()
        .map(|p| p.name.to_ascii_lowercase())
        .collect();
    let wanted_roles: BTreeSet<String> = desired
        .roles
        .values()
        .map(|r| r.name.to_ascii_lowercase())
        .collect();
    let mut old: Vec<&ObservedPolicy> = observed
        .policies
        .iter()
        .filter(|p| owned(p, cluster) && !wanted.contains(&p.name.to_ascii_lowercase()))
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
            out.keep(&res, "no longer in git; [prune] enabled = false");
        } else if still > 0 || used_as_boundary {
            out.keep(
                &res,
                format!(
                    "no longer in git, but still attached to {still} other entities or used as a boundary; delete it once unused"
                ),
            );
        } else {
            out.changes.push(
                Change::new(
                    Operation::DeletePolicy { arn: p.arn.clone() },
                    None,
                    Action::Delete,
                    "no longer in git and no longer attached",
                )
                .before(json!({"arn": p.arn, "path": p.path, "document": live_doc(&p.document), "tags": p.tags})),
            );
        }
    }
}
