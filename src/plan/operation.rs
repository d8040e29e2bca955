//! [`Operation`]: what the executor does for one change, typed, with every
//! value it needs. The planner decides; the executor (`crate::live::apply`)
//! only matches on the operation and makes the call.

use super::Resource;
use crate::document::Document;
use crate::kubeflow::MemberRole;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

/// Tags as IAM stores them.
pub type Tags = BTreeMap<String, String>;

/// Tags to set (added or changed) and tag keys to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagChange {
    /// Tags to add or overwrite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: Tags,
    /// Tag keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset: Vec<String>,
}

impl TagChange {
    /// What turns `live` into `want`.
    pub fn between(live: &Tags, want: &Tags) -> TagChange {
        TagChange {
            set: want
                .iter()
                .filter(|(k, v)| live.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            unset: live
                .keys()
                .filter(|k| !want.contains_key(*k))
                .cloned()
                .collect(),
        }
    }

    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }
}

/// One executor step: a single IAM or Kubernetes write (or, for policy
/// versions and deletions, the short fixed sequence IAM requires).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// `CreatePolicy` with its ownership marker and tags.
    CreatePolicy {
        /// Policy name.
        name: String,
        /// IAM path.
        path: String,
        /// The ARN it will have.
        arn: String,
        /// Document.
        document: Document,
        /// Ownership tags.
        tags: Tags,
        /// [`crate::ownership::policy_marker`].
        description: String,
    },
    /// A new default version (deleting the oldest at IAM's limit of 5) and/or tag changes.
    UpdatePolicy {
        /// Policy ARN.
        arn: String,
        /// The new default version's document, when the document changes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document: Option<Document>,
        /// Tag changes.
        #[serde(default, skip_serializing_if = "TagChange::is_empty")]
        tags: TagChange,
    },
    /// Deletes every non-default version, then the policy.
    DeletePolicy {
        /// Policy ARN.
        arn: String,
    },
    /// `CreateRole` with trust policy, boundary, session duration and tags.
    CreateRole {
        /// Role name.
        name: String,
        /// IAM path.
        path: String,
        /// The ARN it will have.
        arn: String,
        /// Trust policy.
        trust_policy: Document,
        /// Boundary policy ARN.
        permissions_boundary: Option<String>,
        /// Seconds.
        max_session_duration: u32,
        /// All tags, ownership tags included.
        tags: Tags,
    },
    /// `DeleteRole`, after the tenant's Profile is gone (its controller's
    /// finalizer still needs the role).
    DeleteRole {
        /// Role name.
        name: String,
        /// The Profile to wait for before deleting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_profile: Option<String>,
    },
    /// `UpdateAssumeRolePolicy`.
    UpdateTrustPolicy {
        /// Role name.
        role: String,
        /// The trust policy.
        document: Document,
    },
    /// `PutRolePermissionsBoundary`.
    PutBoundary {
        /// Role name.
        role: String,
        /// Boundary policy ARN.
        arn: String,
    },
    /// `DeleteRolePermissionsBoundary`.
    DeleteBoundary {
        /// Role name.
        role: String,
    },
    /// `UpdateRole` with the maximum session duration.
    SetMaxSessionDuration {
        /// Role name.
        role: String,
        /// Seconds.
        seconds: u32,
    },
    /// `UntagRole` and `TagRole`.
    UpdateRoleTags {
        /// Role name.
        role: String,
        /// Tag changes.
        tags: TagChange,
    },
    /// `AttachRolePolicy`.
    AttachPolicy {
        /// Role name.
        role: String,
        /// Managed policy ARN.
        arn: String,
    },
    /// `DetachRolePolicy`.
    DetachPolicy {
        /// Role name.
        role: String,
        /// Managed policy ARN.
        arn: String,
    },
    /// `PutRolePolicy`.
    PutInlinePolicy {
        /// Role name.
        role: String,
        /// Inline policy name.
        name: String,
        /// Document.
        document: Document,
    },
    /// `DeleteRolePolicy`.
    DeleteInlinePolicy {
        /// Role name.
        role: String,
        /// Inline policy name.
        name: String,
    },
    /// Server-side apply of a Profile (field manager `kftenant`, forced on
    /// kftenant's fields only).
    ApplyProfile {
        /// Profile name.
        name: String,
        /// Labels kftenant sets.
        labels: Tags,
        /// Annotations kftenant sets.
        annotations: Tags,
        /// `spec` as kftenant sets it.
        spec: Document,
    },
    /// Deletes a Profile and waits (bounded) until its finalizers have run.
    DeleteProfile {
        /// Profile name.
        name: String,
    },
    /// Server-side apply of a contributor's RoleBinding and AuthorizationPolicy.
    ApplyMember {
        /// Tenant namespace.
        namespace: String,
        /// Binding name (KFAM's).
        name: String,
        /// The user.
        user: String,
        /// `edit` or `view`.
        role: MemberRole,
        /// Ownership labels.
        labels: Tags,
        /// The AuthorizationPolicy's `spec`.
        authorization: Document,
        /// The namespace does not exist yet: wait (bounded) for the Kubeflow
        /// controller to make it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        after_namespace: bool,
    },
    /// Deletes a contributor's RoleBinding and AuthorizationPolicy.
    DeleteMember {
        /// Tenant namespace.
        namespace: String,
        /// Binding name.
        name: String,
    },
    /// Server-side apply of a service account's role annotation (and, when
    /// kftenant creates the account, its labels).
    ApplyServiceAccount {
        /// Tenant namespace.
        namespace: String,
        /// Service account name.
        name: String,
        /// The role (`eks.amazonaws.com/role-arn`).
        role_arn: String,
        /// Ownership labels: set when kftenant creates the account, empty when
        /// it only annotates someone else's.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: Tags,
        /// See [`Operation::ApplyMember`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        after_namespace: bool,
    },
    /// Deletes a service account kftenant created.
    DeleteServiceAccount {
        /// Tenant namespace.
        namespace: String,
        /// Service account name.
        name: String,
    },
    /// Removes kftenant's role annotation from someone else's service account.
    ReleaseServiceAccount {
        /// Tenant namespace.
        namespace: String,
        /// Service account name.
        name: String,
    },
    /// Takes over a role kftenant did not create, as git asks
    /// (`spec.adopt.role`): tags it (ownership tags and git's tags; first,
    /// so the role is kftenant's from then on and a failure later is planned
    /// again as an ordinary change), then brings its trust policy to
    /// kftenant's shape. Never recreates it.
    AdoptRole {
        /// Role name.
        name: String,
        /// Tag changes: kftenant's ownership tags added, git's tags.
        tags: TagChange,
        /// The trust policy, when it is not already kftenant's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trust_policy: Option<Document>,
    },
    /// Takes over a Profile kftenant did not create, as git asks
    /// (`spec.adopt.profile`): a server-side apply of kftenant's labels and
    /// spec (field manager `kftenant`), which updates the Profile in place
    /// (same UID, same namespace).
    AdoptProfile {
        /// Profile name.
        name: String,
        /// Labels kftenant sets.
        labels: Tags,
        /// Annotations kftenant sets.
        annotations: Tags,
        /// `spec` as kftenant sets it.
        spec: Document,
    },
    /// Takes over a customer-managed policy kftenant did not create, as git
    /// asks (a tenant's `spec.adopt.policies`): tags it, then a new default
    /// version when git's document differs.
    AdoptPolicy {
        /// Policy ARN.
        arn: String,
        /// Tag changes: kftenant's ownership tags.
        tags: TagChange,
        /// The new default version's document, when the document differs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document: Option<Document>,
    },
    /// Sets the owner where the Kubeflow controller does not when the owner
    /// changes (kubeflow/kubeflow#6576): the namespace's `owner` annotation
    /// (without it the controller stops), and the `user` annotation of its
    /// `namespaceAdmin` RoleBinding and `ns-owner-access-istio` policy (what
    /// the dashboard shows).
    SetOwnerMarks {
        /// Tenant namespace.
        namespace: String,
        /// The owner.
        owner: String,
    },
}

impl Operation {
    /// The operation's name, as its `op` tag (`attach_policy`).
    pub fn name(&self) -> &'static str {
        use Operation::*;
        match self {
            CreatePolicy { .. } => "create_policy",
            UpdatePolicy { .. } => "update_policy",
            DeletePolicy { .. } => "delete_policy",
            CreateRole { .. } => "create_role",
            DeleteRole { .. } => "delete_role",
            UpdateTrustPolicy { .. } => "update_trust_policy",
            PutBoundary { .. } => "put_boundary",
            DeleteBoundary { .. } => "delete_boundary",
            SetMaxSessionDuration { .. } => "set_max_session_duration",
            UpdateRoleTags { .. } => "update_role_tags",
            AttachPolicy { .. } => "attach_policy",
            DetachPolicy { .. } => "detach_policy",
            PutInlinePolicy { .. } => "put_inline_policy",
            DeleteInlinePolicy { .. } => "delete_inline_policy",
            ApplyProfile { .. } => "apply_profile",
            DeleteProfile { .. } => "delete_profile",
            ApplyMember { .. } => "apply_member",
            DeleteMember { .. } => "delete_member",
            ApplyServiceAccount { .. } => "apply_service_account",
            DeleteServiceAccount { .. } => "delete_service_account",
            ReleaseServiceAccount { .. } => "release_service_account",
            SetOwnerMarks { .. } => "set_owner_marks",
            AdoptRole { .. } => "adopt_role",
            AdoptProfile { .. } => "adopt_profile",
            AdoptPolicy { .. } => "adopt_policy",
        }
    }

    /// The resource this operation acts on.
    pub fn resource(&self) -> Resource {
        use Operation::*;
        match self {
            CreatePolicy { name, .. } => Resource::Policy { name: name.clone() },
            UpdatePolicy { arn, .. } | DeletePolicy { arn } | AdoptPolicy { arn, .. } => {
                Resource::Policy {
                    name: arn.rsplit('/').next().unwrap_or(arn).to_string(),
                }
            }
            CreateRole { name, .. } | DeleteRole { name, .. } | AdoptRole { name, .. } => {
                Resource::Role { name: name.clone() }
            }
            UpdateTrustPolicy { role, .. } => Resource::RoleTrustPolicy { role: role.clone() },
            PutBoundary { role, .. } | DeleteBoundary { role } => {
                Resource::RoleBoundary { role: role.clone() }
            }
            SetMaxSessionDuration { role, .. } => {
                Resource::RoleMaxSessionDuration { role: role.clone() }
            }
            UpdateRoleTags { role, .. } => Resource::RoleTags { role: role.clone() },
            AttachPolicy { role, arn } | DetachPolicy { role, arn } => Resource::RoleAttachment {
                role: role.clone(),
                policy_arn: arn.clone(),
            },
            PutInlinePolicy { role, name, .. } | DeleteInlinePolicy { role, name } => {
                Resource::RoleInlinePolicy {
                    role: role.clone(),
                    policy_name: name.clone(),
                }
            }
            ApplyProfile { name, .. } | DeleteProfile { name } | AdoptProfile { name, .. } => {
                Resource::Profile { name: name.clone() }
            }
            ApplyMember {
                namespace, name, ..
            }
            | DeleteMember { namespace, name } => Resource::Member {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            ApplyServiceAccount {
                namespace, name, ..
            }
            | DeleteServiceAccount { namespace, name }
            | ReleaseServiceAccount { namespace, name } => Resource::ServiceAccount {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            SetOwnerMarks { namespace, .. } => Resource::OwnerMarks {
                namespace: namespace.clone(),
            },
        }
    }

    /// What a create brings into being, as shown in plans (`None` for the
    /// operations that create nothing).
    pub fn created(&self) -> Option<Json> {
        use Operation::*;
        Some(match self {
            CreatePolicy {
                arn,
                path,
                document,
                tags,
                description,
                ..
            } => {
                json!({"arn": arn, "path": path, "document": document, "tags": tags, "description": description})
            }
            CreateRole {
                path,
                arn,
                trust_policy,
                permissions_boundary,
                max_session_duration,
                tags,
                ..
            } => json!({
                "path": path, "arn": arn, "trust_policy": trust_policy,
                "permissions_boundary": permissions_boundary,
                "max_session_duration": max_session_duration, "tags": tags,
            }),
            PutBoundary { arn, .. } | AttachPolicy { arn, .. } => Json::String(arn.clone()),
            PutInlinePolicy { document, .. } => document.to_json(),
            ApplyProfile {
                labels,
                annotations,
                spec,
                ..
            } => json!({"labels": labels, "annotations": annotations, "spec": spec}),
            ApplyMember { user, role, .. } => json!({"user": user, "role": role}),
            ApplyServiceAccount { role_arn, .. } => json!({"role_arn": role_arn}),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_change_sets_what_differs_and_unsets_what_is_gone() {
        let live = Tags::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let want = Tags::from([("a".into(), "1".into()), ("c".into(), "3".into())]);
        let c = TagChange::between(&live, &want);
        assert_eq!(c.set, Tags::from([("c".into(), "3".into())]));
        assert_eq!(c.unset, vec!["b".to_string()]);
        assert!(TagChange::between(&want, &want).is_empty());
    }

    #[test]
    fn operations_serialise_tagged_and_round_trip() {
        let op = Operation::AttachPolicy {
            role: "r".into(),
            arn: "arn:aws:iam::aws:policy/X".into(),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"op":"attach_policy","role":"r","arn":"arn:aws:iam::aws:policy/X"}"#
        );
        assert_eq!(serde_json::from_str::<Operation>(&text).unwrap(), op);
        assert_eq!(
            serde_json::to_value(&op).unwrap()["op"],
            op.name(),
            "name() is the op tag"
        );
        assert_eq!(
            op.resource().to_string(),
            "iam_role.r.attachment[arn:aws:iam::aws:policy/X]"
        );
    }
}
