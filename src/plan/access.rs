//! What a tenant needs in its namespace besides what the Kubeflow controller
//! makes: contributors (as KFAM stores them), service accounts with the
//! tenant's role, and the owner marks the controller does not keep.
//!
//! Each function returns the changes that bring one kind of object to git's
//! state; none when converged. The namespace is the controller's: while it
//! does not exist yet (a new tenant), the changes wait for it.

use super::desired::{DesiredAccess, DesiredMember};
use super::{
    Action, Change, FieldDiff, Live, Operation, Part, Resource, UnmanagedAccess,
    WAITS_FOR_NAMESPACE,
};
use crate::kubeflow::{
    NAMESPACE_OWNER_ANNOTATION, OWNER_AUTHORIZATION_POLICY, OWNER_ROLE_BINDING, RBAC_GROUP,
    ROLE_ANNOTATION, ROLE_ARN_ANNOTATION, USER_ANNOTATION,
};
use crate::ownership::{MANAGED_BY_LABEL, MANAGER, owns_labels};
use crate::plan::observed::ObservedObject;
use serde_json::{Value as Json, json};

/// Service accounts that others make in every profile namespace: kftenant
/// only ever annotates them.
const NOT_OURS: [&str; 3] = ["default", "default-editor", "default-viewer"];

/// The changes of one tenant's namespace objects.
pub(super) fn plan(
    out: &mut Part,
    cluster: &str,
    tenant: &str,
    role_arn: &str,
    want: &DesiredAccess,
    live: &Live<'_>,
    prune_unmanaged: bool,
) {
    let namespace = live.namespace(tenant);
    let waits = namespace.is_none();
    if let Some(ns) = namespace {
        out.changes.extend(owner_marks(tenant, want, ns, live));
    }
    members(out, cluster, tenant, want, live, waits, prune_unmanaged);
    service_accounts(out, cluster, tenant, role_arn, want, live, waits);
}

fn waiting_note(waits: bool, tenant: &str) -> String {
    if waits {
        format!(
            "; {WAITS_FOR_NAMESPACE} `{tenant}`, which the Kubeflow controller makes from the Profile"
        )
    } else {
        String::new()
    }
}

/// The owner marks the controller does not update when the owner changes.
fn owner_marks(
    tenant: &str,
    want: &DesiredAccess,
    ns: &ObservedObject,
    live: &Live<'_>,
) -> Option<Change> {
    let annotation =
        |o: Option<&ObservedObject>, key: &str| o.and_then(|o| o.annotations.get(key)).cloned();
    let marks = [
        (
            "namespace.annotations.owner",
            annotation(Some(ns), NAMESPACE_OWNER_ANNOTATION),
        ),
        (
            "namespaceAdmin.annotations.user",
            annotation(live.binding(tenant, OWNER_ROLE_BINDING), USER_ANNOTATION),
        ),
        (
            "ns-owner-access-istio.annotations.user",
            annotation(
                live.authorization(tenant, OWNER_AUTHORIZATION_POLICY),
                USER_ANNOTATION,
            ),
        ),
    ];
    let diffs: Vec<FieldDiff> = marks
        .into_iter()
        // An object the controller has not made yet gets the owner when it is made.
        .filter(|(_, v)| v.as_ref().is_some_and(|v| *v != want.owner))
        .map(|(field, before)| FieldDiff {
            field: field.into(),
            before: json!(before),
            after: json!(want.owner),
        })
        .collect();
    if diffs.is_empty() {
        return None;
    }
    Some(
        Change::new(
            Operation::SetOwnerMarks {
                namespace: tenant.to_string(),
                owner: want.owner.clone(),
            },
            Some(tenant),
            Action::Update,
            "the owner in git differs from the owner the namespace and the dashboard show (the Kubeflow controller does not update them when the owner changes)",
        )
        .before(json!(diffs.iter().map(|d| (&d.field, &d.before)).collect::<Vec<_>>()))
        .drift(diffs),
    )
}

/// A contributor's RoleBinding as the API server stores it.
fn binding_body(m: &DesiredMember) -> Json {
    json!({
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": m.role.cluster_role()},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": m.user}],
    })
}

/// True when the live pair (RoleBinding, AuthorizationPolicy) is what git wants.
fn member_converged(
    m: &DesiredMember,
    binding: &ObservedObject,
    policy: Option<&ObservedObject>,
) -> bool {
    let annotations_ok = |o: &ObservedObject| {
        o.annotations.get(USER_ANNOTATION) == Some(&m.user)
            && o.annotations.get(ROLE_ANNOTATION).map(String::as_str) == Some(m.role.as_str())
            && m.labels.iter().all(|(k, v)| o.labels.get(k) == Some(v))
    };
    annotations_ok(binding)
        && binding.body.to_json() == binding_body(m)
        && policy.is_some_and(|p| annotations_ok(p) && p.body == m.authorization)
}

fn members(
    out: &mut Part,
    cluster: &str,
    tenant: &str,
    want: &DesiredAccess,
    live: &Live<'_>,
    waits: bool,
    prune_unmanaged: bool,
) {
    let apply = |name: &str, m: &DesiredMember| Operation::ApplyMember {
        namespace: tenant.to_string(),
        name: name.to_string(),
        user: m.user.clone(),
        role: m.role,
        labels: m.labels.clone(),
        authorization: m.authorization.clone(),
        after_namespace: waits,
    };
    for (name, m) in &want.members {
        let Some(binding) = live.binding(tenant, name) else {
            out.changes.push(Change::new(
                apply(name, m),
                Some(tenant),
                Action::Create,
                format!(
                    "{} `{}` is in git{}",
                    m.role.as_str(),
                    m.user,
                    waiting_note(waits, tenant)
                ),
            ));
            continue;
        };
        let policy = live.authorization(tenant, name);
        if owns_labels(&binding.labels, cluster) {
            if !member_converged(m, binding, policy) {
                out.changes.push(
                    Change::new(
                        apply(name, m),
                        Some(tenant),
                        Action::Update,
                        "contributor in the cluster differs from git",
                    )
                    .before(binding.body.to_json())
                    .drift(vec![]),
                );
            }
        } else if binding.annotations.get(USER_ANNOTATION) == Some(&m.user)
            && binding.body.to_json() == binding_body(m)
        {
            // Added in the dashboard, and now in git too: the same user and
            // role, so git asks for exactly this binding. kftenant labels it:
            // an adoption, as `spec.adopt` is for the role and the Profile.
            out.changes.push(
                Change::new(
                    apply(name, m),
                    Some(tenant),
                    Action::Adopt,
                    format!(
                        "`{}` was added as {} in the dashboard and is now in git: kftenant takes the binding over (adds its labels)",
                        m.user,
                        m.role.as_str()
                    ),
                )
                .before(binding.body.to_json()),
            );
        } else {
            out.conflict(
                &Resource::Member {
                    namespace: tenant.to_string(),
                    name: name.clone(),
                },
                Some(tenant),
                format!(
                    "RoleBinding {tenant}/{name} exists, is not kftenant's, and does not bind `{}` as {}; kftenant will not change it",
                    m.user,
                    m.role.as_str()
                ),
            );
        }
    }
    // Bindings git no longer lists: kftenant's are deleted; the others (added
    // in the dashboard, or by KFAM) are access not in git.
    for b in live.bindings_in(tenant) {
        if b.name == OWNER_ROLE_BINDING || want.members.contains_key(&b.name) {
            continue;
        }
        let res = Resource::Member {
            namespace: tenant.to_string(),
            name: b.name.clone(),
        };
        let delete = || Operation::DeleteMember {
            namespace: tenant.to_string(),
            name: b.name.clone(),
        };
        if owns_labels(&b.labels, cluster) {
            out.changes.push(
                Change::new(
                    delete(),
                    Some(tenant),
                    Action::Delete,
                    "contributor no longer in git",
                )
                .before(b.body.to_json()),
            );
            continue;
        }
        let access = UnmanagedAccess {
            tenant: tenant.to_string(),
            binding: res.to_string(),
            user: b
                .annotations
                .get(USER_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            role: b
                .annotations
                .get(ROLE_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        };
        if prune_unmanaged {
            out.changes.push(
                Change::new(
                    delete(),
                    Some(tenant),
                    Action::Delete,
                    format!(
                        "`{}` ({}) was added outside git and [members] prune_unmanaged = true",
                        access.user, access.role
                    ),
                )
                .before(b.body.to_json()),
            );
        } else {
            out.unmanaged.push(access);
        }
    }
}

fn service_accounts(
    out: &mut Part,
    cluster: &str,
    tenant: &str,
    role_arn: &str,
    want: &DesiredAccess,
    live: &Live<'_>,
    waits: bool,
) {
    for (name, sa) in &want.service_accounts {
        let live_sa = live.service_account(tenant, name);
        // Kubernetes makes `default` in every namespace (and the controller
        // its two): never kftenant's to label or delete, even when kftenant's
        // apply comes first (a new namespace).
        let ours = !NOT_OURS.contains(&name.as_str())
            && live_sa.is_none_or(|a| owns_labels(&a.labels, cluster));
        let annotated = live_sa.and_then(|a| a.annotations.get(ROLE_ARN_ANNOTATION));
        let labelled = live_sa
            .is_none_or(|a| !ours || sa.labels.iter().all(|(k, v)| a.labels.get(k) == Some(v)));
        if annotated == Some(&sa.role_arn) && labelled {
            continue;
        }
        let (action, reason) = match live_sa {
            None => (
                Action::Create,
                format!(
                    "service account `{name}` is in git: created with the tenant's role{}",
                    waiting_note(waits, tenant)
                ),
            ),
            Some(_) if ours => (
                Action::Update,
                "service account's role annotation differs from git".to_string(),
            ),
            Some(_) => (
                Action::Update,
                format!(
                    "service account `{name}` exists (not kftenant's): kftenant sets only its role annotation"
                ),
            ),
        };
        let mut change = Change::new(
            Operation::ApplyServiceAccount {
                namespace: tenant.to_string(),
                name: name.clone(),
                role_arn: sa.role_arn.clone(),
                labels: if ours {
                    sa.labels.clone()
                } else {
                    Default::default()
                },
                after_namespace: waits,
            },
            Some(tenant),
            action,
            reason,
        );
        if let Some(a) = annotated {
            change = change.before(json!(a)).drift(vec![FieldDiff {
                field: format!("annotations.{ROLE_ARN_ANNOTATION}"),
                before: json!(a),
                after: json!(sa.role_arn),
            }]);
        }
        out.changes.push(change);
    }
    for a in live.service_accounts_in(tenant) {
        if want.service_accounts.contains_key(&a.name) {
            continue;
        }
        let ours = owns_labels(&a.labels, cluster)
            && a.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
            && !NOT_OURS.contains(&a.name.as_str());
        let operation = if ours {
            Operation::DeleteServiceAccount {
                namespace: tenant.to_string(),
                name: a.name.clone(),
            }
        } else if a.annotations.get(ROLE_ARN_ANNOTATION).map(String::as_str) == Some(role_arn)
            && a.name != crate::kubeflow::DEFAULT_SERVICE_ACCOUNT
        {
            Operation::ReleaseServiceAccount {
                namespace: tenant.to_string(),
                name: a.name.clone(),
            }
        } else {
            continue;
        };
        let reason = if ours {
            "service account kftenant made is no longer in git"
        } else {
            "service account no longer in git: kftenant removes the role annotation it set"
        };
        out.changes.push(
            Change::new(operation, Some(tenant), Action::Delete, reason)
                .before(json!(a.annotations.get(ROLE_ARN_ANNOTATION))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Action, PlanOptions, Verdict, plan};
    use crate::kubeflow::{OWNER_ROLE_BINDING, USER_ANNOTATION};
    use crate::model::{self, MemSource};
    use crate::plan::desired::{self, Desired};
    use crate::plan::observed::{Observed, ObservedObject};
    use serde_json::json;

    const CONFIG: &str = "[cluster]\nname = \"prod\"\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\noidc_issuer = \"oidc.example/id/X\"\n";

    fn desired(members: &str, prune_unmanaged: bool) -> Desired {
        let config = if prune_unmanaged {
            format!("{CONFIG}[members]\nprune_unmanaged = true\n")
        } else {
            CONFIG.to_string()
        };
        let tenant = format!(
            "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: team\nspec:\n  owner: o@x.io\n  iam:\n    serviceAccounts: [default, runner]\n  members:\n{members}"
        );
        let src = MemSource::default()
            .with("kftenant.toml", &config)
            .with("tenants/team.yaml", &tenant);
        desired::render(&model::load(&src).unwrap_or_else(|d| panic!("{d:#?}")))
    }

    const MEMBERS: &str =
        "    - {user: Alice@x.io, role: edit}\n    - {user: bob@x.io, role: view}\n";

    fn addresses(d: &Desired, o: &Observed) -> Vec<(Action, String)> {
        plan(d, o, &PlanOptions::default())
            .changes
            .iter()
            .map(|c| (c.action, c.address.clone()))
            .collect()
    }

    #[test]
    fn a_converged_namespace_plans_nothing_and_a_new_one_waits() {
        let d = desired(MEMBERS, false);
        assert!(plan(&d, &Observed::converged(&d), &PlanOptions::default()).is_empty());
        // No namespace yet: everything in it waits for the controller to make it.
        let mut o = Observed::converged(&d);
        o.namespaces.clear();
        o.role_bindings.clear();
        o.authorization_policies.clear();
        o.service_accounts.clear();
        let p = plan(&d, &o, &PlanOptions::default());
        let waiting: Vec<&str> = p
            .changes
            .iter()
            .filter(|c| c.reason.contains("waits for namespace `team`"))
            .map(|c| c.address.as_str())
            .collect();
        assert_eq!(
            waiting,
            vec![
                "member.team.user-alice-x-io-clusterrole-edit",
                "member.team.user-bob-x-io-clusterrole-view",
                "service_account.team.default",
                "service_account.team.runner",
            ]
        );
    }

    #[test]
    fn members_are_created_taken_over_from_the_dashboard_and_removed() {
        let d = desired(MEMBERS, false);
        let mut o = Observed::converged(&d);
        // Bob was added in the dashboard before git listed him: same binding,
        // no labels. Carol was added in the dashboard only.
        let bob = o
            .role_bindings
            .iter_mut()
            .find(|b| b.name == "user-bob-x-io-clusterrole-view")
            .unwrap();
        bob.labels.clear();
        let mut carol = bob.clone();
        carol.name = "user-carol-x-io-clusterrole-edit".into();
        carol
            .annotations
            .insert(USER_ANNOTATION.into(), "carol@x.io".into());
        o.role_bindings.push(carol);
        let p = plan(&d, &o, &PlanOptions::default());
        assert_eq!(
            p.changes
                .iter()
                .map(|c| (c.action, c.address.as_str()))
                .collect::<Vec<_>>(),
            vec![(Action::Adopt, "member.team.user-bob-x-io-clusterrole-view")]
        );
        assert!(p.changes[0].reason.contains("takes the binding over"));
        assert_eq!(p.unmanaged_access.len(), 1);
        assert_eq!(p.unmanaged_access[0].user, "carol@x.io");
        assert_eq!(
            p.verdict(),
            Verdict::Changes,
            "access not in git is reported, not blocking"
        );
        // With prune_unmanaged, Carol goes; the owner's namespaceAdmin never does.
        let d2 = desired(MEMBERS, true);
        let deletes: Vec<(Action, String)> = addresses(&d2, &o)
            .into_iter()
            .filter(|(a, _)| *a == Action::Delete)
            .collect();
        assert_eq!(
            deletes,
            vec![(
                Action::Delete,
                "member.team.user-carol-x-io-clusterrole-edit".into()
            )]
        );
        // Alice removed from git: kftenant's binding is deleted.
        let d3 = desired("    - {user: bob@x.io, role: view}\n", false);
        assert!(addresses(&d3, &Observed::converged(&d)).contains(&(
            Action::Delete,
            "member.team.user-alice-x-io-clusterrole-edit".into()
        )));
    }

    #[test]
    fn a_foreign_binding_with_a_members_name_is_a_conflict() {
        let d = desired(MEMBERS, false);
        let mut o = Observed::converged(&d);
        let alice = o
            .role_bindings
            .iter_mut()
            .find(|b| b.name.starts_with("user-alice"))
            .unwrap();
        alice.labels.clear();
        alice.body = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-admin"}, "subjects": []}).into();
        let p = plan(&d, &o, &PlanOptions::default());
        assert!(p.changes.is_empty(), "{:#?}", p.changes);
        assert_eq!(
            p.conflicts[0].address,
            "member.team.user-alice-x-io-clusterrole-edit"
        );
    }

    #[test]
    fn service_accounts_are_created_annotated_released_or_deleted() {
        let d = desired(MEMBERS, false);
        let mut o = Observed::converged(&d);
        // `default` belongs to Kubernetes: kftenant only annotates it.
        let default = o
            .service_accounts
            .iter_mut()
            .find(|a| a.name == "default")
            .unwrap();
        default.labels.clear();
        default.annotations.clear();
        let p = plan(&d, &o, &PlanOptions::default());
        assert_eq!(p.changes.len(), 1);
        match &p.changes[0].operation {
            super::Operation::ApplyServiceAccount { name, labels, .. } => {
                assert_eq!(name, "default");
                assert!(labels.is_empty(), "not kftenant's: only the annotation");
            }
            other => panic!("{other:?}"),
        }
        // Both removed from git: kftenant's `runner` is deleted, `default` released.
        let mut o = Observed::converged(&d);
        o.service_accounts
            .iter_mut()
            .find(|a| a.name == "default")
            .unwrap()
            .labels
            .clear();
        let tenant = "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: team\nspec:\n  owner: o@x.io\n";
        let src = MemSource::default()
            .with("kftenant.toml", CONFIG)
            .with("tenants/team.yaml", tenant);
        let d2 = desired::render(&model::load(&src).unwrap());
        let mut got = addresses(&d2, &o);
        got.sort();
        assert!(got.contains(&(Action::Delete, "service_account.team.runner".into())));
        assert!(got.contains(&(Action::Delete, "service_account.team.default".into())));
        let p = plan(&d2, &o, &PlanOptions::default());
        let default = p
            .changes
            .iter()
            .find(|c| c.address == "service_account.team.default")
            .unwrap();
        assert!(matches!(
            default.operation,
            super::Operation::ReleaseServiceAccount { .. }
        ));
    }

    #[test]
    fn an_owner_change_sets_the_marks_the_controller_does_not() {
        let d = desired(MEMBERS, false);
        let mut o = Observed::converged(&d);
        let set = |objs: &mut Vec<ObservedObject>, name: &str, key: &str| {
            let obj = objs.iter_mut().find(|x| x.name == name).unwrap();
            obj.annotations.insert(key.into(), "previous@x.io".into());
        };
        set(&mut o.namespaces, "team", "owner");
        set(&mut o.role_bindings, OWNER_ROLE_BINDING, USER_ANNOTATION);
        let p = plan(&d, &o, &PlanOptions::default());
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].address, "namespace.team.owner");
        assert_eq!(
            p.changes[0]
                .diffs
                .iter()
                .map(|d| d.field.as_str())
                .collect::<Vec<_>>(),
            vec![
                "namespace.annotations.owner",
                "namespaceAdmin.annotations.user"
            ]
        );
    }
}
