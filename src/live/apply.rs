//! Executing a plan: one thin, idempotent step per change.
//!
//! # Expected flow
//! Shared policy creates and updates first, one by one; then every tenant's
//! changes, tenants concurrently (at most `workers` at once) and each
//! tenant's changes in plan order; then shared policy deletes.
//!
//! # Guarantees
//! - A failed step stops the rest of *its* tenant (reported as skipped); other
//!   tenants go on.
//! - The [`WriteGuard`] of [`ApplyOptions`] is asked before every call
//!   (every attempt, the AWS SDK's retries included); once it refuses,
//!   nothing more is sent and every step not yet begun is reported as
//!   stopped with its code (`LostLeadership` in the daemon). Kubernetes calls
//!   are retried by [`Clients::kube_call`] (429, 500, 502, 503, 504, broken
//!   connections, at most 4 attempts), not by kube's own retry layer, which
//!   the guard could not see.
//! - `EntityAlreadyExists` from `CreateRole` / `CreatePolicy` counts as done
//!   only when the entity carries kftenant's tags (or marker) for this
//!   cluster; anything else is a `Conflict`: nothing written to it, the rest
//!   of its tenant skipped, a conflicted repo policy attached to no tenant.
//! - `CreatePolicyVersion` is sent without the SDK's retries; after an
//!   unknown outcome the versions are read back before it is sent again.
//! - Deleting a role first waits (bounded) until the tenant's Profile is gone,
//!   so the Kubeflow controller's finalizer still finds the role.
//! - Steps are idempotent: deleting what is already gone, or attaching what is
//!   attached, succeeds.
//! - Retries are bounded: the SDK's standard retry for throttling and 5xx
//!   (writes paced once IAM throttles, see [`super::pace`]), and
//!   our own short backoff for IAM's eventual consistency (a role just created
//!   reported missing, or "Invalid principal" in a trust policy).
//! - Each [`Operation`] has one small function below that makes its calls
//!   through [`Clients::iam_call`] / [`Clients::kube_call`] /
//!   [`Clients::kube_write`] (counted, timed and guarded there).
//!
//! # Errors
//! Every failure lands in the [`ApplyReport`] with its AWS or Kubernetes
//! error code; `execute` itself cannot fail.

use super::{Clients, Error, authorization_policy_resource, profile_resource};
pub use crate::applied::{ApplyReport, ApplySummary, Outcome, REPORT_FORMAT_VERSION, StepResult};
use crate::document::Document;
use crate::kubeflow::{
    ISTIO_SECURITY_GROUP, ISTIO_SECURITY_VERSION, MemberRole, NAMESPACE_OWNER_ANNOTATION,
    OWNER_AUTHORIZATION_POLICY, OWNER_ROLE_BINDING, PROFILE_GROUP, PROFILE_KIND, PROFILE_VERSION,
    RBAC_GROUP, ROLE_ANNOTATION, ROLE_ARN_ANNOTATION, USER_ANNOTATION,
};
use crate::ownership::{MANAGER, TAG_CLUSTER, owns_policy, owns_tags};
use crate::plan::{Action, Change, Operation, Plan, TagChange, Tags};
use aws_config::retry::RetryConfig;
use aws_sdk_iam::types::Tag;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Field manager of kftenant's server-side applies.
pub const FIELD_MANAGER: &str = MANAGER;

/// Asked before every call the executor makes (each IAM or Kubernetes
/// write, and each attempt of the AWS SDK's own retries): once it refuses,
/// nothing more is sent, and the steps not yet begun are reported as
/// [`Outcome::Stopped`] with its code.
///
/// The daemon's guard says whether this replica still holds the leader lease
/// with a margin (`daemon::lease::Leadership`); the CLI, whose user is the
/// only writer, passes [`AlwaysWrite`].
pub trait WriteGuard: std::fmt::Debug + Send + Sync {
    /// `Ok(())` when a call may be sent now; otherwise why not.
    fn check(&self) -> Result<(), Stopped>;
}

/// Why the executor stopped writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Stopped {
    /// Stable label for reports and metrics, e.g. `LostLeadership`.
    pub code: &'static str,
    /// In words.
    pub reason: String,
}

/// A guard that always lets writes through.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysWrite;

impl WriteGuard for AlwaysWrite {
    fn check(&self) -> Result<(), Stopped> {
        Ok(())
    }
}

/// How to execute.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Tenants worked on at once.
    pub workers: usize,
    /// How long to wait for a deleted Profile to disappear.
    pub profile_delete_timeout: Duration,
    /// Attempts for IAM's eventual-consistency errors.
    pub consistency_attempts: u32,
    /// How long to wait for the Kubeflow controller to make a new tenant's namespace.
    pub namespace_timeout: Duration,
    /// Asked before every call; see [`WriteGuard`].
    pub guard: Arc<dyn WriteGuard>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            workers: 8,
            profile_delete_timeout: Duration::from_secs(120),
            consistency_attempts: 6,
            namespace_timeout: Duration::from_secs(60),
            guard: Arc::new(AlwaysWrite),
        }
    }
}

/// Runs `steps` in order; after a failure the rest are skipped, and once
/// the guard refuses, the rest are stopped. Every write leaves an audit line
/// (target `kftenant::audit`) and, for a Profile, a Kubernetes Event on it.
async fn run_group(
    clients: &Clients,
    opts: &ApplyOptions,
    commit: Option<&str>,
    conflicted: &BTreeSet<String>,
    steps: Vec<Change>,
) -> Vec<StepResult> {
    let mut out = Vec::with_capacity(steps.len());
    let mut failed: Option<String> = None;
    let mut stopped: Option<Stopped> = None;
    for c in steps {
        // Asked here as well as before each call, so that a step not begun
        // is reported as stopped rather than as failed.
        if stopped.is_none() && failed.is_none() {
            stopped = opts.guard.check().err();
        }
        let outcome = match (&stopped, &failed) {
            (Some(s), _) => Outcome::Stopped {
                code: s.code.to_string(),
                reason: s.reason.clone(),
            },
            (None, Some(f)) => Outcome::Skipped {
                after_failure_of: f.clone(),
            },
            (None, None) => {
                let started = std::time::Instant::now();
                let executed = match uses_conflicted_policy(&c.operation, conflicted) {
                    Some(refused) => Err(refused),
                    None => execute_operation(clients, opts, &c.operation).await,
                };
                let (result, uid) = match executed {
                    Ok(uid) => (Ok(()), uid),
                    Err(e) => (Err(e), None),
                };
                audit(&c, commit, &result, started.elapsed());
                if let Operation::ApplyProfile { name, .. }
                | Operation::AdoptProfile { name, .. }
                | Operation::DeleteProfile { name } = &c.operation
                {
                    profile_event(clients, name, uid, &c, commit, &result).await;
                }
                match result {
                    Ok(()) => Outcome::Done,
                    Err(e) => {
                        // Refused half-way through the step: some of its
                        // calls may have been made, so it failed; the rest stop.
                        if let Error::Stopped(s) = &e {
                            stopped = Some(s.clone());
                        }
                        failed = Some(c.address.clone());
                        Outcome::Failed {
                            code: e.code().to_string(),
                            message: e.to_string(),
                        }
                    }
                }
            }
        };
        out.push(StepResult {
            address: c.address,
            tenant: c.tenant,
            action: c.action,
            outcome,
        });
    }
    out
}

/// Executes `plan`. See the module docs for order and guarantees.
pub async fn execute(clients: &Clients, plan: &Plan, opts: &ApplyOptions) -> ApplyReport {
    let clients = &clients.for_writes(opts.guard.clone());
    let changes = &plan.changes;
    let commit = plan.source_commit.as_deref();
    let lead = changes.iter().take_while(|c| c.tenant.is_none()).count();
    let tail_start = changes.len()
        - changes
            .iter()
            .rev()
            .take_while(|c| c.tenant.is_none())
            .count();
    let tail_start = tail_start.max(lead);
    let mut results = Vec::new();
    // Shared policies one by one: a failure of one does not stop the others.
    let none = BTreeSet::new();
    for c in &changes[..lead] {
        results.extend(run_group(clients, opts, commit, &none, vec![c.clone()]).await);
    }
    // A repo policy whose name someone else took is attached to no tenant.
    let conflicted: Arc<BTreeSet<String>> = Arc::new(
        changes[..lead]
            .iter()
            .zip(&results)
            .filter(
                |(_, r)| matches!(&r.outcome, Outcome::Failed { code, .. } if code == "Conflict"),
            )
            .filter_map(|(c, _)| match &c.operation {
                Operation::CreatePolicy { arn, .. } => Some(arn.clone()),
                _ => None,
            })
            .collect(),
    );
    let mut groups: BTreeMap<usize, (String, Vec<Change>)> = BTreeMap::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in changes[lead..tail_start].iter().enumerate() {
        let tenant = c.tenant.clone().unwrap_or_default();
        let slot = *index.entry(tenant.clone()).or_insert(i);
        groups
            .entry(slot)
            .or_insert_with(|| (tenant, Vec::new()))
            .1
            .push(c.clone());
    }
    let sem = Arc::new(Semaphore::new(opts.workers.max(1)));
    let mut tasks = Vec::new();
    for (_, (_, steps)) in groups {
        let (clients, opts, sem) = (clients.clone(), opts.clone(), sem.clone());
        let (commit, conflicted) = (commit.map(String::from), conflicted.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            run_group(&clients, &opts, commit.as_deref(), &conflicted, steps).await
        }));
    }
    for t in tasks {
        match t.await {
            Ok(r) => results.extend(r),
            Err(e) => results.push(StepResult {
                address: "(worker)".into(),
                tenant: None,
                action: Action::Update,
                outcome: Outcome::Failed {
                    code: "Panic".into(),
                    message: e.to_string(),
                },
            }),
        }
    }
    for c in &changes[tail_start..] {
        results.extend(run_group(clients, opts, commit, &none, vec![c.clone()]).await);
    }
    let summary = ApplySummary {
        done: results
            .iter()
            .filter(|r| r.outcome == Outcome::Done)
            .count(),
        failed: results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
            .count(),
        skipped: results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skipped { .. } | Outcome::Stopped { .. }))
            .count(),
        conflicts: plan.conflicts.len(),
        held: plan.held.len(),
    };
    ApplyReport {
        format_version: REPORT_FORMAT_VERSION,
        source_commit: plan.source_commit.clone(),
        results,
        conflicts: plan.conflicts.clone(),
        held: plan.held.clone(),
        summary,
    }
}

/// One structured line per write, for the audit trail: what, on what, for
/// which tenant and commit, the result and how long it took. Failures at WARN
/// with the AWS or Kubernetes error code.
fn audit(c: &Change, commit: Option<&str>, result: &Result<(), Error>, took: Duration) {
    let op = c.operation.name();
    let tenant = c.tenant.as_deref().unwrap_or("-");
    let commit = commit.unwrap_or("-");
    let duration_ms = took.as_millis() as u64;
    match result {
        Ok(()) => tracing::info!(
            target: "kftenant::audit",
            op, resource = %c.address, tenant, commit, action = ?c.action, result = "done", duration_ms,
            "{}", c.reason
        ),
        Err(e) => tracing::warn!(
            target: "kftenant::audit",
            op, resource = %c.address, tenant, commit, action = ?c.action, result = "failed",
            code = e.code(), duration_ms, error = %e,
            "{}", c.reason
        ),
    }
}

/// A Kubernetes Event on the Profile for a change to it, as controllers
/// record theirs (`kubectl describe profile NAME` shows it). Events of
/// cluster-scoped objects live in `default`. Best effort: a failure to record
/// is logged, never the step's failure.
async fn profile_event(
    clients: &Clients,
    name: &str,
    uid: Option<String>,
    c: &Change,
    commit: Option<&str>,
    result: &Result<(), Error>,
) {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let (kind, reason) = match (&c.operation, result) {
        (_, Err(_)) => ("Warning", "ApplyFailed"),
        (Operation::DeleteProfile { .. }, Ok(())) => ("Normal", "Deleted"),
        (Operation::AdoptProfile { .. }, Ok(())) => ("Normal", "Adopted"),
        _ => ("Normal", "Applied"),
    };
    let mut message = format!("kftenant {}: {}", c.action_word(), c.reason);
    if let Some(commit) = commit {
        message.push_str(&format!(" (commit {commit})"));
    }
    if let Err(e) = result {
        message.push_str(&format!(": {e}"));
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(format!("{PROFILE_GROUP}/{PROFILE_VERSION}")),
            kind: Some(PROFILE_KIND.into()),
            name: Some(name.into()),
            uid,
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(kind.into()),
        source: Some(EventSource {
            component: Some(MANAGER.into()),
            ..Default::default()
        }),
        reporting_component: Some(MANAGER.into()),
        reporting_instance: Some(MANAGER.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(clients.kube.clone(), "default");
    if let Err(e) = clients
        .kube_call(
            "create",
            format!("record an Event on Profile {name}"),
            || async { api.create(&Default::default(), &event).await },
        )
        .await
    {
        tracing::warn!(error = %e, profile = name, "could not record an Event on the Profile");
    }
}

/// Errors worth retrying a few times because IAM is eventually consistent.
fn transient(e: &Error) -> bool {
    matches!(
        e.code(),
        "NoSuchEntity"
            | "Throttling"
            | "ServiceFailure"
            | "ServiceUnavailable"
            | "DispatchFailure"
            | "Timeout"
    ) || (e.code() == "MalformedPolicyDocument" && e.to_string().contains("Invalid principal"))
}

/// Runs `f` until it succeeds, fails permanently, or the attempts run out.
async fn with_backoff<T, F, Fut>(opts: &ApplyOptions, mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if transient(&e) && attempt < opts.consistency_attempts => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Deletes are idempotent: what is already gone counts as deleted.
fn gone_ok<T>(r: Result<T, Error>) -> Result<(), Error> {
    match r {
        Err(e) if e.is_no_such_entity() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The cluster an operation's ownership tags name.
fn tagged_cluster(tags: &Tags) -> &str {
    tags.get(TAG_CLUSTER).map_or("", String::as_str)
}

/// `CreateRole` answered `EntityAlreadyExists`. Either an earlier attempt
/// landed and its answer was lost (the SDK retried it, or a run was killed),
/// and the role carries kftenant's tags for this cluster: done. Or someone
/// else made a role of that name since the world was read: a conflict, and
/// nothing is written to their role.
async fn existing_role_is_ours(
    clients: &Clients,
    opts: &ApplyOptions,
    name: &str,
    tags: &Tags,
) -> Result<(), Error> {
    let cluster = tagged_cluster(tags);
    let live = with_backoff(opts, || async {
        clients
            .iam_call("GetRole", clients.iam.get_role().role_name(name).send())
            .await
    })
    .await?;
    let live_tags: Tags = live
        .role()
        .map(|r| {
            r.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if owns_tags(&live_tags, cluster) {
        return Ok(());
    }
    Err(Error::Conflict {
        what: format!("role {name}"),
        message: format!(
            "already exists without kftenant's tags for cluster {cluster}: someone else \
             created it after the world was read; nothing was written to it, and the \
             rest of its tenant was skipped"
        ),
    })
}

/// `CreatePolicy` answered `EntityAlreadyExists`: ours when it carries
/// kftenant's `Description` marker or tags for this cluster (an earlier
/// attempt landed), else a conflict, as for roles.
async fn existing_policy_is_ours(
    clients: &Clients,
    opts: &ApplyOptions,
    arn: &str,
    tags: &Tags,
) -> Result<(), Error> {
    let cluster = tagged_cluster(tags);
    let live = with_backoff(opts, || async {
        clients
            .iam_call("GetPolicy", clients.iam.get_policy().policy_arn(arn).send())
            .await
    })
    .await?;
    let policy = live.policy();
    let description = policy.and_then(|p| p.description()).unwrap_or_default();
    let live_tags: Tags = policy
        .map(|p| {
            p.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if owns_policy(description, Some(&live_tags), cluster) {
        return Ok(());
    }
    Err(Error::Conflict {
        what: format!("policy {arn}"),
        message: format!(
            "already exists without kftenant's marker or tags for cluster {cluster}: \
             someone else created it after the world was read; nothing was written to \
             it, and no tenant attaches it"
        ),
    })
}

/// A step that would attach (or set as boundary) a repo policy whose create
/// met someone else's policy: refused, so no tenant is given a stranger's
/// permissions.
fn uses_conflicted_policy(op: &Operation, conflicted: &BTreeSet<String>) -> Option<Error> {
    let arn = match op {
        Operation::AttachPolicy { arn, .. } | Operation::PutBoundary { arn, .. } => Some(arn),
        Operation::CreateRole {
            permissions_boundary,
            ..
        } => permissions_boundary.as_ref(),
        _ => None,
    }?;
    conflicted.contains(arn).then(|| Error::Conflict {
        what: format!("policy {arn}"),
        message: "is not kftenant's (its create met someone else's policy of that name): \
                  not attached, and the rest of this tenant was skipped"
            .to_string(),
    })
}

fn iam_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// Runs one operation; for a Profile, its UID (for its Event).
async fn execute_operation(
    clients: &Clients,
    opts: &ApplyOptions,
    op: &Operation,
) -> Result<Option<String>, Error> {
    use Operation::*;
    match op {
        ApplyProfile {
            name,
            labels,
            annotations,
            spec,
        }
        | AdoptProfile {
            name,
            labels,
            annotations,
            spec,
        } => apply_profile(clients, name, labels, annotations, spec).await,
        DeleteProfile { name } => delete_profile(clients, opts, name).await,
        op => execute_write(clients, opts, op).await.map(|()| None),
    }
}

/// Runs one operation other than a Profile's.
async fn execute_write(
    clients: &Clients,
    opts: &ApplyOptions,
    op: &Operation,
) -> Result<(), Error> {
    use Operation::*;
    match op {
        CreatePolicy {
            name,
            path,
            arn,
            document,
            tags,
            description,
        } => {
            let policy = NewPolicy {
                name,
                path,
                arn,
                document,
                tags,
                description,
            };
            create_policy(clients, opts, &policy).await
        }
        UpdatePolicy {
            arn,
            document,
            tags,
        } => {
            if let Some(doc) = document {
                new_policy_version(clients, opts, arn, doc).await?;
            }
            retag(clients, Tagged::Policy(arn), tags).await
        }
        DeletePolicy { arn } => delete_policy(clients, arn).await,
        CreateRole {
            name,
            path,
            trust_policy,
            permissions_boundary,
            max_session_duration,
            tags,
            ..
        } => {
            let req = || {
                clients
                    .iam
                    .create_role()
                    .role_name(name)
                    .path(path)
                    .assume_role_policy_document(trust_policy.as_str())
                    .max_session_duration(*max_session_duration as i32)
                    .set_permissions_boundary(permissions_boundary.clone())
                    .set_tags(Some(iam_tags(tags)))
                    .send()
            };
            let created = with_backoff(opts, || async {
                clients.iam_call("CreateRole", req()).await.map(|_| ())
            })
            .await;
            match created {
                Err(e) if e.code() == "EntityAlreadyExists" => {
                    existing_role_is_ours(clients, opts, name, tags).await
                }
                other => other,
            }
        }
        DeleteRole {
            name,
            after_profile,
        } => {
            if let Some(profile) = after_profile {
                wait_profile_gone(clients, profile, opts.profile_delete_timeout).await?;
            }
            gone_ok(
                clients
                    .iam_call(
                        "DeleteRole",
                        clients.iam.delete_role().role_name(name).send(),
                    )
                    .await,
            )
        }
        UpdateTrustPolicy { role, document } => {
            update_trust_policy(clients, opts, role, document).await
        }
        AdoptRole {
            name,
            tags,
            trust_policy,
        } => {
            // Tags first: the role is kftenant's from then on, so whatever
            // fails after is planned again as an ordinary change.
            retag(clients, Tagged::Role(name), tags).await?;
            match trust_policy {
                Some(doc) => update_trust_policy(clients, opts, name, doc).await,
                None => Ok(()),
            }
        }
        AdoptPolicy {
            arn,
            tags,
            document,
        } => {
            retag(clients, Tagged::Policy(arn), tags).await?;
            match document {
                Some(doc) => new_policy_version(clients, opts, arn, doc).await,
                None => Ok(()),
            }
        }
        PutBoundary { role, arn } => {
            let req = || {
                clients
                    .iam
                    .put_role_permissions_boundary()
                    .role_name(role)
                    .permissions_boundary(arn)
                    .send()
            };
            with_backoff(opts, || async {
                clients
                    .iam_call("PutRolePermissionsBoundary", req())
                    .await
                    .map(|_| ())
            })
            .await
        }
        DeleteBoundary { role } => gone_ok(
            clients
                .iam_call(
                    "DeleteRolePermissionsBoundary",
                    clients
                        .iam
                        .delete_role_permissions_boundary()
                        .role_name(role)
                        .send(),
                )
                .await,
        ),
        SetMaxSessionDuration { role, seconds } => clients
            .iam_call(
                "UpdateRole",
                clients
                    .iam
                    .update_role()
                    .role_name(role)
                    .max_session_duration(*seconds as i32)
                    .send(),
            )
            .await
            .map(|_| ()),
        UpdateRoleTags { role, tags } => retag(clients, Tagged::Role(role), tags).await,
        AttachPolicy { role, arn } => {
            let req = || {
                clients
                    .iam
                    .attach_role_policy()
                    .role_name(role)
                    .policy_arn(arn)
                    .send()
            };
            with_backoff(opts, || async {
                clients
                    .iam_call("AttachRolePolicy", req())
                    .await
                    .map(|_| ())
            })
            .await
        }
        DetachPolicy { role, arn } => gone_ok(
            clients
                .iam_call(
                    "DetachRolePolicy",
                    clients
                        .iam
                        .detach_role_policy()
                        .role_name(role)
                        .policy_arn(arn)
                        .send(),
                )
                .await,
        ),
        PutInlinePolicy {
            role,
            name,
            document,
        } => {
            let req = || {
                clients
                    .iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .policy_document(document.as_str())
                    .send()
            };
            with_backoff(opts, || async {
                clients.iam_call("PutRolePolicy", req()).await.map(|_| ())
            })
            .await
        }
        DeleteInlinePolicy { role, name } => gone_ok(
            clients
                .iam_call(
                    "DeleteRolePolicy",
                    clients
                        .iam
                        .delete_role_policy()
                        .role_name(role)
                        .policy_name(name)
                        .send(),
                )
                .await,
        ),
        ApplyProfile { .. } | AdoptProfile { .. } | DeleteProfile { .. } => {
            unreachable!("Profiles are written by execute_operation")
        }
        ApplyMember {
            namespace,
            name,
            user,
            role,
            labels,
            authorization,
            after_namespace,
        } => {
            if *after_namespace {
                wait_namespace(clients, namespace, opts.namespace_timeout).await?;
            }
            apply_member(clients, namespace, name, user, *role, labels, authorization).await
        }
        DeleteMember { namespace, name } => delete_member(clients, namespace, name).await,
        ApplyServiceAccount {
            namespace,
            name,
            role_arn,
            labels,
            after_namespace,
        } => {
            if *after_namespace {
                wait_namespace(clients, namespace, opts.namespace_timeout).await?;
            }
            let manifest = json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace, "labels": labels,
                             "annotations": {ROLE_ARN_ANNOTATION: role_arn}},
            });
            let api: Api<ServiceAccount> = Api::namespaced(clients.kube.clone(), namespace);
            clients
                .kube_write(
                    "apply",
                    format!("apply ServiceAccount {namespace}/{name}"),
                    || async {
                        api.patch(
                            name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&manifest),
                        )
                        .await
                    },
                )
                .await
                .map(|_| ())
        }
        DeleteServiceAccount { namespace, name } => {
            let api: Api<ServiceAccount> = Api::namespaced(clients.kube.clone(), namespace);
            not_found_ok(
                clients
                    .kube_write(
                        "delete",
                        format!("delete ServiceAccount {namespace}/{name}"),
                        || async { api.delete(name, &DeleteParams::default()).await },
                    )
                    .await,
            )
        }
        ReleaseServiceAccount { namespace, name } => {
            // A merge patch: the annotation goes whoever set it.
            let api: Api<ServiceAccount> = Api::namespaced(clients.kube.clone(), namespace);
            let patch = json!({"metadata": {"annotations": {ROLE_ARN_ANNOTATION: null}}});
            not_found_ok(
                clients
                    .kube_write(
                        "patch",
                        format!("remove the role annotation of ServiceAccount {namespace}/{name}"),
                        || async {
                            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await
                        },
                    )
                    .await,
            )
        }
        SetOwnerMarks { namespace, owner } => set_owner_marks(clients, namespace, owner).await,
    }
}

/// `UpdateAssumeRolePolicy`, retried while IAM does not know the OIDC
/// provider or the role yet.
async fn update_trust_policy(
    clients: &Clients,
    opts: &ApplyOptions,
    role: &str,
    document: &Document,
) -> Result<(), Error> {
    let req = || {
        clients
            .iam
            .update_assume_role_policy()
            .role_name(role)
            .policy_document(document.as_str())
            .send()
    };
    with_backoff(opts, || async {
        clients
            .iam_call("UpdateAssumeRolePolicy", req())
            .await
            .map(|_| ())
    })
    .await
}

/// Deletes are idempotent: what is already gone counts as deleted.
fn not_found_ok<T>(r: Result<T, Error>) -> Result<(), Error> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

/// A contributor as KFAM writes one: a RoleBinding and an AuthorizationPolicy
/// of the same name with `user` and `role` annotations, each applied
/// server-side as `kftenant` (with kftenant's labels).
async fn apply_member(
    clients: &Clients,
    namespace: &str,
    name: &str,
    user: &str,
    role: MemberRole,
    labels: &Tags,
    authorization: &Document,
) -> Result<(), Error> {
    let metadata = json!({
        "name": name, "namespace": namespace, "labels": labels,
        "annotations": {USER_ANNOTATION: user, ROLE_ANNOTATION: role.as_str()},
    });
    let binding = json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "RoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role.cluster_role()},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": user}],
    });
    let policy = json!({
        "apiVersion": format!("{ISTIO_SECURITY_GROUP}/{ISTIO_SECURITY_VERSION}"),
        "kind": "AuthorizationPolicy",
        "metadata": metadata,
        "spec": authorization,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let bindings: Api<RoleBinding> = Api::namespaced(clients.kube.clone(), namespace);
    clients
        .kube_write(
            "apply",
            format!("apply RoleBinding {namespace}/{name}"),
            || async { bindings.patch(name, &params, &Patch::Apply(&binding)).await },
        )
        .await?;
    let policies: Api<DynamicObject> = Api::namespaced_with(
        clients.kube.clone(),
        namespace,
        &authorization_policy_resource(),
    );
    clients
        .kube_write(
            "apply",
            format!("apply AuthorizationPolicy {namespace}/{name}"),
            || async { policies.patch(name, &params, &Patch::Apply(&policy)).await },
        )
        .await
        .map(|_| ())
}

async fn delete_member(clients: &Clients, namespace: &str, name: &str) -> Result<(), Error> {
    let bindings: Api<RoleBinding> = Api::namespaced(clients.kube.clone(), namespace);
    not_found_ok(
        clients
            .kube_write(
                "delete",
                format!("delete RoleBinding {namespace}/{name}"),
                || async { bindings.delete(name, &DeleteParams::default()).await },
            )
            .await,
    )?;
    let policies: Api<DynamicObject> = Api::namespaced_with(
        clients.kube.clone(),
        namespace,
        &authorization_policy_resource(),
    );
    not_found_ok(
        clients
            .kube_write(
                "delete",
                format!("delete AuthorizationPolicy {namespace}/{name}"),
                || async { policies.delete(name, &DeleteParams::default()).await },
            )
            .await,
    )
}

/// The owner where the controller does not update it: the namespace's
/// `owner` annotation (server-side apply, owning only that key), then the
/// `user` annotation of `namespaceAdmin` and `ns-owner-access-istio` (merge
/// patches; either may not exist yet, which is fine: the controller makes
/// them with the right owner).
async fn set_owner_marks(clients: &Clients, namespace: &str, owner: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(clients.kube.clone());
    let manifest = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "annotations": {NAMESPACE_OWNER_ANNOTATION: owner}},
    });
    clients
        .kube_write(
            "apply",
            format!("apply the owner annotation of Namespace {namespace}"),
            || async {
                namespaces
                    .patch(
                        namespace,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&manifest),
                    )
                    .await
            },
        )
        .await?;
    let patch = json!({"metadata": {"annotations": {USER_ANNOTATION: owner}}});
    let bindings: Api<RoleBinding> = Api::namespaced(clients.kube.clone(), namespace);
    not_found_ok(
        clients
            .kube_write(
                "patch",
                format!(
                    "patch the user annotation of RoleBinding {namespace}/{OWNER_ROLE_BINDING}"
                ),
                || async {
                    bindings
                        .patch(
                            OWNER_ROLE_BINDING,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                },
            )
            .await,
    )?;
    let policies: Api<DynamicObject> = Api::namespaced_with(
        clients.kube.clone(),
        namespace,
        &authorization_policy_resource(),
    );
    not_found_ok(
        clients
            .kube_write("patch", format!("patch the user annotation of AuthorizationPolicy {namespace}/{OWNER_AUTHORIZATION_POLICY}"), || async { policies.patch(OWNER_AUTHORIZATION_POLICY, &PatchParams::default(), &Patch::Merge(&patch)).await })
            .await,
    )
}

/// Waits (bounded) until the Kubeflow controller has made the namespace of a
/// new Profile. Every waiting step shares one LIST of namespaces (at most one
/// every 250 ms, see [`super::NamespaceCache`]), so a cold apply of many
/// tenants reads namespaces a few times, not once per tenant.
async fn wait_namespace(clients: &Clients, name: &str, timeout: Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if clients.namespaces.contains(clients, name).await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "namespace {name}, which the Kubeflow profile controller makes from the Profile (is the controller running? `kubectl describe profile {name}` shows its conditions)"
                ),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A repo policy to create, as the plan gives it.
struct NewPolicy<'a> {
    name: &'a str,
    path: &'a str,
    arn: &'a str,
    document: &'a Document,
    tags: &'a Tags,
    description: &'a str,
}

async fn create_policy(
    clients: &Clients,
    opts: &ApplyOptions,
    policy: &NewPolicy<'_>,
) -> Result<(), Error> {
    let NewPolicy {
        name,
        path,
        arn,
        document,
        tags,
        description,
    } = *policy;
    let req = || {
        clients
            .iam
            .create_policy()
            .policy_name(name)
            .path(path)
            .policy_document(document.as_str())
            .description(description)
            .set_tags(Some(iam_tags(tags)))
            .send()
    };
    let created = with_backoff(opts, || async {
        clients.iam_call("CreatePolicy", req()).await.map(|_| ())
    })
    .await;
    match created {
        Err(e) if e.code() == "EntityAlreadyExists" => {
            existing_policy_is_ours(clients, opts, arn, tags).await
        }
        other => other,
    }
}

/// A policy's versions, oldest first: (id, is default).
async fn policy_versions(clients: &Clients, arn: &str) -> Result<Vec<(String, bool)>, Error> {
    let out = clients
        .iam_call(
            "ListPolicyVersions",
            clients.iam.list_policy_versions().policy_arn(arn).send(),
        )
        .await?;
    let mut versions: Vec<(String, bool)> = out
        .versions()
        .iter()
        .filter_map(|v| Some((v.version_id()?.to_string(), v.is_default_version())))
        .collect();
    versions.sort_by_key(|(v, _)| v.trim_start_matches('v').parse::<u64>().unwrap_or(u64::MAX));
    Ok(versions)
}

/// Errors after which a write may or may not have landed: the request went
/// out and no answer (or a server error) came back.
fn outcome_unknown(e: &Error) -> bool {
    matches!(
        e.code(),
        "DispatchFailure" | "ResponseError" | "Timeout" | "ServiceFailure" | "ServiceUnavailable"
    )
}

/// A new default version of a policy; IAM keeps at most 5, so the oldest
/// non-default one is deleted first when it is full.
///
/// `CreatePolicyVersion` is the one IAM write that is not idempotent: sent
/// twice, it makes two versions. So the SDK does not retry it here; after an
/// error that leaves the outcome unknown (the answer lost, a 500), the
/// versions are read again, and a version made since with this document
/// (made default by the same call) means the write landed: done. Only then
/// is it sent again. A policy never gains more versions than the updates
/// git asked for.
async fn new_policy_version(
    clients: &Clients,
    opts: &ApplyOptions,
    arn: &str,
    document: &Document,
) -> Result<(), Error> {
    let mut known = policy_versions(clients, arn).await?;
    if known.len() >= 5 {
        if let Some(pos) = known.iter().position(|(_, default)| !default) {
            let (oldest, _) = known.remove(pos);
            gone_ok(
                clients
                    .iam_call(
                        "DeletePolicyVersion",
                        clients
                            .iam
                            .delete_policy_version()
                            .policy_arn(arn)
                            .version_id(oldest)
                            .send(),
                    )
                    .await,
            )?;
        }
    }
    let known: BTreeSet<String> = known.into_iter().map(|(v, _)| v).collect();
    let no_sdk_retries =
        aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled());
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let sent = clients
            .iam_call(
                "CreatePolicyVersion",
                clients
                    .iam
                    .create_policy_version()
                    .policy_arn(arn)
                    .policy_document(document.as_str())
                    .set_as_default(true)
                    .customize()
                    .config_override(no_sdk_retries.clone())
                    .send(),
            )
            .await;
        let e = match sent {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if outcome_unknown(&e) && landed_version(clients, arn, &known, document).await? {
            return Ok(());
        }
        if !(transient(&e) || outcome_unknown(&e)) || attempt >= opts.consistency_attempts {
            return Err(e);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// True when a version not in `known` holds `document` and is the default
/// (a `CreatePolicyVersion` whose answer was lost landed). One landed but
/// not made default is made default.
async fn landed_version(
    clients: &Clients,
    arn: &str,
    known: &BTreeSet<String>,
    document: &Document,
) -> Result<bool, Error> {
    let want = document.to_json();
    for (id, default) in policy_versions(clients, arn).await? {
        if known.contains(&id) {
            continue;
        }
        let got = clients
            .iam_call(
                "GetPolicyVersion",
                clients
                    .iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(&id)
                    .send(),
            )
            .await?;
        let same = got
            .policy_version()
            .and_then(|v| v.document())
            .and_then(|d| crate::policy::parse_live(d).ok())
            .is_some_and(|d| crate::policy::same_policy(&d, &want));
        if !same {
            continue;
        }
        if !default {
            clients
                .iam_call(
                    "SetDefaultPolicyVersion",
                    clients
                        .iam
                        .set_default_policy_version()
                        .policy_arn(arn)
                        .version_id(&id)
                        .send(),
                )
                .await?;
        }
        return Ok(true);
    }
    Ok(false)
}

/// What tags are put on: a role (by name) or a policy (by ARN).
#[derive(Clone, Copy)]
enum Tagged<'a> {
    Role(&'a str),
    Policy(&'a str),
}

/// `Untag*` then `Tag*` on a role or a policy, each only when there is something to do.
async fn retag(clients: &Clients, on: Tagged<'_>, tags: &TagChange) -> Result<(), Error> {
    let iam = &clients.iam;
    if !tags.unset.is_empty() {
        let keys = Some(tags.unset.clone());
        match on {
            Tagged::Role(role) => clients
                .iam_call(
                    "UntagRole",
                    iam.untag_role().role_name(role).set_tag_keys(keys).send(),
                )
                .await
                .map(|_| ()),
            Tagged::Policy(arn) => clients
                .iam_call(
                    "UntagPolicy",
                    iam.untag_policy().policy_arn(arn).set_tag_keys(keys).send(),
                )
                .await
                .map(|_| ()),
        }?;
    }
    if !tags.set.is_empty() {
        let set = Some(iam_tags(&tags.set));
        match on {
            Tagged::Role(role) => clients
                .iam_call(
                    "TagRole",
                    iam.tag_role().role_name(role).set_tags(set).send(),
                )
                .await
                .map(|_| ()),
            Tagged::Policy(arn) => clients
                .iam_call(
                    "TagPolicy",
                    iam.tag_policy().policy_arn(arn).set_tags(set).send(),
                )
                .await
                .map(|_| ()),
        }?;
    }
    Ok(())
}

/// Deletes every non-default version, then the policy.
async fn delete_policy(clients: &Clients, arn: &str) -> Result<(), Error> {
    let versions = match clients
        .iam_call(
            "ListPolicyVersions",
            clients.iam.list_policy_versions().policy_arn(arn).send(),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_no_such_entity() => return Ok(()),
        Err(e) => return Err(e),
    };
    for v in versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
    {
        gone_ok(
            clients
                .iam_call(
                    "DeletePolicyVersion",
                    clients
                        .iam
                        .delete_policy_version()
                        .policy_arn(arn)
                        .set_version_id(v.version_id().map(String::from))
                        .send(),
                )
                .await,
        )?;
    }
    gone_ok(
        clients
            .iam_call(
                "DeletePolicy",
                clients.iam.delete_policy().policy_arn(arn).send(),
            )
            .await,
    )
}

/// Deletes a Profile and waits until its finalizers have run; its UID when
/// it was there.
async fn delete_profile(
    clients: &Clients,
    opts: &ApplyOptions,
    name: &str,
) -> Result<Option<String>, Error> {
    let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
    let uid = match clients
        .kube_write("delete", format!("delete Profile {name}"), || async {
            api.delete(name, &DeleteParams::default()).await
        })
        .await
    {
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
        Ok(either) => either.left().and_then(|o| o.metadata.uid),
    };
    wait_profile_gone(clients, name, opts.profile_delete_timeout).await?;
    Ok(uid)
}

/// Server-side apply as `kftenant`, forcing ownership of kftenant's fields
/// only: fields of other managers (the Kubeflow controller's finalizer,
/// status, others' labels) are left alone. The Profile's UID.
async fn apply_profile(
    clients: &Clients,
    name: &str,
    labels: &Tags,
    annotations: &Tags,
    spec: &Document,
) -> Result<Option<String>, Error> {
    let manifest = json!({
        "apiVersion": format!("{PROFILE_GROUP}/{PROFILE_VERSION}"),
        "kind": PROFILE_KIND,
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
    });
    let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
    clients
        .kube_write("apply", format!("apply Profile {name}"), || async {
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&manifest),
            )
            .await
        })
        .await
        .map(|o| o.metadata.uid)
}

/// Waits until the Profile `name` no longer exists (its finalizers have run).
async fn wait_profile_gone(clients: &Clients, name: &str, timeout: Duration) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = clients
            .kube_call("get", format!("get Profile {name}"), || api.get_opt(name))
            .await?;
        match found {
            None => return Ok(()),
            Some(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    what: format!(
                        "Profile {name} to be deleted (its finalizers to finish) before deleting its IAM role"
                    ),
                    seconds: timeout.as_secs(),
                });
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The guard, against a fake API server and IAM endpoint on localhost
    //! (no stack): once it refuses, nothing more is sent.
    use super::*;
    use crate::plan::Action;
    use bytes::Bytes;
    use http_body_util::Full;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Refuses once `lost` is set.
    #[derive(Debug, Default)]
    struct Lease {
        lost: AtomicBool,
        checks: AtomicUsize,
    }

    impl WriteGuard for Lease {
        fn check(&self) -> Result<(), Stopped> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            if self.lost.load(Ordering::SeqCst) {
                return Err(Stopped {
                    code: "LostLeadership",
                    reason: "the test took the lease away".into(),
                });
            }
            Ok(())
        }
    }

    /// What the fake server received, and when to take the lease away.
    #[derive(Debug, Default)]
    struct Server {
        requests: Mutex<Vec<String>>,
        /// Take the lease away once this many Profile writes have arrived.
        lose_after_writes: usize,
        lease: Arc<Lease>,
    }

    impl Server {
        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Serves until the test ends: every Kubernetes request gets a
    /// Profile, every IAM request a `ServiceFailure` (which the SDK retries).
    async fn serve(server: Arc<Server>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let server = server.clone();
                        async move {
                            let line = format!("{} {}", req.method(), req.uri().path());
                            let iam = req.uri().path() == "/";
                            let writes = {
                                let mut r = server.requests.lock().unwrap();
                                r.push(line);
                                r.iter().filter(|l| l.starts_with("PATCH")).count()
                            };
                            if writes >= server.lose_after_writes {
                                server.lease.lost.store(true, Ordering::SeqCst);
                            }
                            let (status, body) = if iam {
                                (500, "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceFailure</Code><Message>try again</Message></Error><RequestId>r</RequestId></ErrorResponse>".to_string())
                            } else {
                                (200, r#"{"apiVersion":"kubeflow.org/v1","kind":"Profile","metadata":{"name":"p","uid":"u"}}"#.to_string())
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header(
                                        "content-type",
                                        if iam { "text/xml" } else { "application/json" },
                                    )
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    async fn clients(url: &str) -> Clients {
        let config = kube::Config::new(url.parse().unwrap());
        Clients::for_tests(kube::Client::try_from(config).unwrap(), url)
    }

    fn profile(name: &str) -> Change {
        Change::new(
            Operation::ApplyProfile {
                name: name.into(),
                labels: Tags::new(),
                annotations: Tags::new(),
                spec: Document::from(json!({"owner": {"kind": "User", "name": "o@e"}})),
            },
            Some(name),
            Action::Create,
            "in git",
        )
    }

    #[tokio::test]
    async fn once_the_guard_refuses_nothing_more_is_sent_and_the_rest_is_stopped() {
        let lease = Arc::new(Lease::default());
        let server = Arc::new(Server {
            lose_after_writes: 2,
            lease: lease.clone(),
            ..Default::default()
        });
        let url = serve(server.clone()).await;
        let opts = ApplyOptions {
            guard: lease.clone(),
            ..Default::default()
        };
        let clients = clients(&url).await.for_writes(opts.guard.clone());
        let steps: Vec<Change> = (1..=4).map(|i| profile(&format!("p{i}"))).collect();
        let results = run_group(&clients, &opts, Some("abc"), &BTreeSet::new(), steps).await;
        let outcomes: Vec<&Outcome> = results.iter().map(|r| &r.outcome).collect();
        // The second write was sent before the lease went: it is done.
        assert_eq!(outcomes[..2], [&Outcome::Done, &Outcome::Done]);
        for o in &outcomes[2..] {
            assert_eq!(
                **o,
                Outcome::Stopped {
                    code: "LostLeadership".into(),
                    reason: "the test took the lease away".into(),
                }
            );
        }
        // Two Profile writes, the first one's Event, and nothing after:
        // not the second's Event, not the two other Profiles.
        assert_eq!(
            server.requests(),
            [
                "PATCH /apis/kubeflow.org/v1/profiles/p1",
                "POST /api/v1/namespaces/default/events",
                "PATCH /apis/kubeflow.org/v1/profiles/p2",
            ]
        );
    }

    #[tokio::test]
    async fn the_sdk_does_not_retry_an_iam_write_past_the_guard() {
        let lease = Arc::new(Lease::default());
        // The first request (an IAM write answered ServiceFailure) takes
        // the lease away; the SDK would retry it.
        let server = Arc::new(Server {
            lose_after_writes: 0,
            lease: lease.clone(),
            ..Default::default()
        });
        let url = serve(server.clone()).await;
        let opts = ApplyOptions {
            guard: lease.clone(),
            consistency_attempts: 1,
            ..Default::default()
        };
        let clients = clients(&url).await.for_writes(opts.guard.clone());
        let attach = Change::new(
            Operation::AttachPolicy {
                role: "r".into(),
                arn: "arn:aws:iam::aws:policy/ReadOnlyAccess".into(),
            },
            Some("t"),
            Action::Update,
            "in git",
        );
        let results = run_group(
            &clients,
            &opts,
            None,
            &BTreeSet::new(),
            vec![attach.clone(), attach],
        )
        .await;
        match &results[0].outcome {
            Outcome::Failed { code, .. } => assert_eq!(code, "LostLeadership"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(results[1].outcome, Outcome::Stopped { .. }));
        assert_eq!(server.requests(), ["POST /"], "one attempt, no SDK retry");
    }
}
