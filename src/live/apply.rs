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
//! - Deleting a role first waits (bounded) until the tenant's Profile is gone,
//!   so the Kubeflow controller's finalizer still finds the role.
//! - Steps are idempotent: deleting what is already gone, or attaching what is
//!   attached, succeeds.
//! - Retries are bounded: the SDK's adaptive retry for throttling and 5xx, and
//!   our own short backoff for IAM's eventual consistency (a role just created
//!   reported missing, or "Invalid principal" in a trust policy).
//!
//! # Errors
//! Every failure lands in the [`ApplyReport`] with its AWS or Kubernetes error
//! code; `execute` itself only fails on a plan it cannot read.

use super::{Clients, Error, profile_resource};
pub use crate::applied::{ApplyReport, ApplySummary, Outcome, REPORT_FORMAT_VERSION, StepResult};
use crate::plan::{Action, Change, Plan, Resource};
use aws_sdk_iam::types::Tag;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Field manager of kftenant's server-side applies.
pub const FIELD_MANAGER: &str = "kftenant";

/// How to execute.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Tenants worked on at once.
    pub workers: usize,
    /// How long to wait for a deleted Profile to disappear.
    pub profile_delete_timeout: Duration,
    /// Attempts for IAM's eventual-consistency errors.
    pub consistency_attempts: u32,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            workers: 8,
            profile_delete_timeout: Duration::from_secs(120),
            consistency_attempts: 6,
        }
    }
}

/// Runs `steps` in order; after a failure the rest are skipped.
async fn run_group(clients: &Clients, opts: &ApplyOptions, steps: Vec<Change>) -> Vec<StepResult> {
    let mut out = Vec::with_capacity(steps.len());
    let mut failed: Option<String> = None;
    for c in steps {
        let outcome = match &failed {
            Some(f) => Outcome::Skipped {
                after_failure_of: f.clone(),
            },
            None => match execute_change(clients, opts, &c).await {
                Ok(()) => Outcome::Done,
                Err(e) => {
                    failed = Some(c.address.clone());
                    Outcome::Failed {
                        code: e.code().to_string(),
                        message: e.to_string(),
                    }
                }
            },
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
    let changes = &plan.changes;
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
    for c in &changes[..lead] {
        results.extend(run_group(clients, opts, vec![c.clone()]).await);
    }
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
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            run_group(&clients, &opts, steps).await
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
        results.extend(run_group(clients, opts, vec![c.clone()]).await);
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
            .filter(|r| matches!(r.outcome, Outcome::Skipped { .. }))
            .count(),
    };
    ApplyReport {
        format_version: REPORT_FORMAT_VERSION,
        source_commit: plan.source_commit.clone(),
        results,
        summary,
    }
}

fn field<'a>(v: &'a Option<Json>, key: &str, address: &str) -> Result<&'a Json, Error> {
    v.as_ref()
        .and_then(|v| v.get(key))
        .ok_or_else(|| Error::InvalidPlan(format!("{address}: missing `{key}`")))
}

fn doc_string(v: &Json) -> String {
    v.to_string()
}

fn tags_of(v: &Json) -> Vec<Tag> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Tag::builder()
                        .key(k)
                        .value(v.as_str().unwrap_or_default())
                        .build()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
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
async fn with_backoff<F, Fut>(opts: &ApplyOptions, mut f: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
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
fn gone_ok(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(e) if e.is_no_such_entity() => Ok(()),
        other => other,
    }
}

async fn execute_change(clients: &Clients, opts: &ApplyOptions, c: &Change) -> Result<(), Error> {
    let iam = &clients.iam;
    let calls = &clients.calls;
    let a = c.address.as_str();
    match (&c.resource, c.action) {
        (Resource::Policy { name }, Action::Create) => {
            let doc = doc_string(field(&c.after, "document", a)?);
            let path = field(&c.after, "path", a)?
                .as_str()
                .unwrap_or("/")
                .to_string();
            let tags = tags_of(field(&c.after, "tags", a)?);
            let description = c
                .after
                .as_ref()
                .and_then(|v| v.get("description"))
                .and_then(Json::as_str)
                .map(String::from);
            with_backoff(opts, || {
                calls.add("iam:CreatePolicy");
                let req = iam
                    .create_policy()
                    .policy_name(name)
                    .path(&path)
                    .policy_document(&doc)
                    .set_description(description.clone())
                    .set_tags(Some(tags.clone()));
                async move {
                    match req.send().await.map_err(|e| Error::iam("CreatePolicy", e)) {
                        Err(e) if e.code() == "EntityAlreadyExists" => Ok(()),
                        r => r.map(|_| ()),
                    }
                }
            })
            .await
        }
        (Resource::Policy { .. }, Action::Update) => {
            let arn = field(&c.after, "arn", a)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            for d in &c.diffs {
                if d.field == "document" {
                    make_room_for_version(clients, &arn).await?;
                    let doc = doc_string(&d.after);
                    with_backoff(opts, || {
                        calls.add("iam:CreatePolicyVersion");
                        let req = iam
                            .create_policy_version()
                            .policy_arn(&arn)
                            .policy_document(&doc)
                            .set_as_default(true);
                        async move {
                            req.send()
                                .await
                                .map(|_| ())
                                .map_err(|e| Error::iam("CreatePolicyVersion", e))
                        }
                    })
                    .await?;
                }
            }
            // Only when the plan compared tags (it does not for a marked policy).
            let (set, unset) = if c.diffs.iter().any(|d| d.field.starts_with("tags.")) {
                tag_changes(&c.before, &c.after)
            } else {
                Default::default()
            };
            if !unset.is_empty() {
                calls.add("iam:UntagPolicy");
                iam.untag_policy()
                    .policy_arn(&arn)
                    .set_tag_keys(Some(unset))
                    .send()
                    .await
                    .map_err(|e| Error::iam("UntagPolicy", e))?;
            }
            if !set.is_empty() {
                calls.add("iam:TagPolicy");
                iam.tag_policy()
                    .policy_arn(&arn)
                    .set_tags(Some(set))
                    .send()
                    .await
                    .map_err(|e| Error::iam("TagPolicy", e))?;
            }
            Ok(())
        }
        (Resource::Policy { .. }, Action::Delete) => {
            let arn = field(&c.before, "arn", a)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            calls.add("iam:ListPolicyVersions");
            let versions = match iam
                .list_policy_versions()
                .policy_arn(&arn)
                .send()
                .await
                .map_err(|e| Error::iam("ListPolicyVersions", e))
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
                calls.add("iam:DeletePolicyVersion");
                gone_ok(
                    iam.delete_policy_version()
                        .policy_arn(&arn)
                        .set_version_id(v.version_id().map(String::from))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| Error::iam("DeletePolicyVersion", e)),
                )?;
            }
            calls.add("iam:DeletePolicy");
            gone_ok(
                iam.delete_policy()
                    .policy_arn(&arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::iam("DeletePolicy", e)),
            )
        }
        (Resource::Role { name }, Action::Create) => {
            let trust = doc_string(field(&c.after, "trust_policy", a)?);
            let path = field(&c.after, "path", a)?
                .as_str()
                .unwrap_or("/")
                .to_string();
            let boundary = c
                .after
                .as_ref()
                .and_then(|v| v.get("permissions_boundary"))
                .and_then(Json::as_str)
                .map(String::from);
            let duration = field(&c.after, "max_session_duration", a)?
                .as_i64()
                .unwrap_or(3600) as i32;
            let tags = tags_of(field(&c.after, "tags", a)?);
            with_backoff(opts, || {
                calls.add("iam:CreateRole");
                let req = iam
                    .create_role()
                    .role_name(name)
                    .path(&path)
                    .assume_role_policy_document(&trust)
                    .max_session_duration(duration)
                    .set_permissions_boundary(boundary.clone())
                    .set_tags(Some(tags.clone()));
                async move {
                    match req.send().await.map_err(|e| Error::iam("CreateRole", e)) {
                        // A retry after a lost response: the role is there.
                        Err(e) if e.code() == "EntityAlreadyExists" => Ok(()),
                        r => r.map(|_| ()),
                    }
                }
            })
            .await
        }
        (Resource::Role { name }, Action::Delete) => {
            if let Some(t) = &c.tenant {
                wait_profile_gone(clients, t, opts.profile_delete_timeout).await?;
            }
            calls.add("iam:DeleteRole");
            gone_ok(
                iam.delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::iam("DeleteRole", e)),
            )
        }
        (Resource::Role { .. }, Action::Update) => Err(Error::InvalidPlan(format!(
            "{a}: roles are updated field by field, never as a whole"
        ))),
        (Resource::RoleTrustPolicy { role }, _) => {
            let doc = doc_string(
                c.after
                    .as_ref()
                    .ok_or_else(|| Error::InvalidPlan(format!("{a}: no document")))?,
            );
            with_backoff(opts, || {
                calls.add("iam:UpdateAssumeRolePolicy");
                let req = iam
                    .update_assume_role_policy()
                    .role_name(role)
                    .policy_document(&doc);
                async move {
                    req.send()
                        .await
                        .map(|_| ())
                        .map_err(|e| Error::iam("UpdateAssumeRolePolicy", e))
                }
            })
            .await
        }
        (Resource::RoleBoundary { role }, Action::Delete) => {
            calls.add("iam:DeleteRolePermissionsBoundary");
            gone_ok(
                iam.delete_role_permissions_boundary()
                    .role_name(role)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::iam("DeleteRolePermissionsBoundary", e)),
            )
        }
        (Resource::RoleBoundary { role }, _) => {
            let arn = c
                .after
                .as_ref()
                .and_then(Json::as_str)
                .ok_or_else(|| Error::InvalidPlan(format!("{a}: no boundary ARN")))?
                .to_string();
            with_backoff(opts, || {
                calls.add("iam:PutRolePermissionsBoundary");
                let req = iam
                    .put_role_permissions_boundary()
                    .role_name(role)
                    .permissions_boundary(&arn);
                async move {
                    req.send()
                        .await
                        .map(|_| ())
                        .map_err(|e| Error::iam("PutRolePermissionsBoundary", e))
                }
            })
            .await
        }
        (Resource::RoleMaxSessionDuration { role }, _) => {
            let d = c.after.as_ref().and_then(Json::as_i64).unwrap_or(3600) as i32;
            calls.add("iam:UpdateRole");
            iam.update_role()
                .role_name(role)
                .max_session_duration(d)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::iam("UpdateRole", e))
        }
        (Resource::RoleTags { role }, _) => {
            let (set, unset) = tag_changes(&c.before, &c.after);
            if !unset.is_empty() {
                calls.add("iam:UntagRole");
                iam.untag_role()
                    .role_name(role)
                    .set_tag_keys(Some(unset))
                    .send()
                    .await
                    .map_err(|e| Error::iam("UntagRole", e))?;
            }
            if !set.is_empty() {
                calls.add("iam:TagRole");
                iam.tag_role()
                    .role_name(role)
                    .set_tags(Some(set))
                    .send()
                    .await
                    .map_err(|e| Error::iam("TagRole", e))?;
            }
            Ok(())
        }
        (Resource::RoleAttachment { role, policy_arn }, Action::Delete) => {
            calls.add("iam:DetachRolePolicy");
            gone_ok(
                iam.detach_role_policy()
                    .role_name(role)
                    .policy_arn(policy_arn)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::iam("DetachRolePolicy", e)),
            )
        }
        (Resource::RoleAttachment { role, policy_arn }, _) => {
            with_backoff(opts, || {
                calls.add("iam:AttachRolePolicy");
                let req = iam
                    .attach_role_policy()
                    .role_name(role)
                    .policy_arn(policy_arn);
                async move {
                    req.send()
                        .await
                        .map(|_| ())
                        .map_err(|e| Error::iam("AttachRolePolicy", e))
                }
            })
            .await
        }
        (Resource::RoleInlinePolicy { role, policy_name }, Action::Delete) => {
            calls.add("iam:DeleteRolePolicy");
            gone_ok(
                iam.delete_role_policy()
                    .role_name(role)
                    .policy_name(policy_name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::iam("DeleteRolePolicy", e)),
            )
        }
        (Resource::RoleInlinePolicy { role, policy_name }, _) => {
            let doc = doc_string(
                c.after
                    .as_ref()
                    .ok_or_else(|| Error::InvalidPlan(format!("{a}: no document")))?,
            );
            with_backoff(opts, || {
                calls.add("iam:PutRolePolicy");
                let req = iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(policy_name)
                    .policy_document(&doc);
                async move {
                    req.send()
                        .await
                        .map(|_| ())
                        .map_err(|e| Error::iam("PutRolePolicy", e))
                }
            })
            .await
        }
        (Resource::Profile { name }, Action::Delete) => {
            let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
            calls.add("kube:delete");
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => return Err(Error::kube(format!("delete Profile {name}"), e)),
            }
            wait_profile_gone(clients, name, opts.profile_delete_timeout).await
        }
        (Resource::Profile { name }, _) => {
            let after = c
                .after
                .as_ref()
                .ok_or_else(|| Error::InvalidPlan(format!("{a}: no Profile")))?;
            let manifest = json!({
                "apiVersion": "kubeflow.org/v1",
                "kind": "Profile",
                "metadata": {"name": name, "labels": after.get("labels"), "annotations": after.get("annotations")},
                "spec": after.get("spec"),
            });
            let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
            calls.add("kube:apply");
            // Server-side apply as `kftenant`, forcing ownership of our fields only:
            // fields of other managers (the Kubeflow controller's finalizer,
            // status, others' labels) are left alone.
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&manifest),
            )
            .await
            .map(|_| ())
            .map_err(|e| Error::kube(format!("apply Profile {name}"), e))
        }
    }
}

/// Tags to set and keys to remove, from a change's before/after tag maps
/// (a policy change nests them under `tags`).
fn tag_changes(before: &Option<Json>, after: &Option<Json>) -> (Vec<Tag>, Vec<String>) {
    let map = |v: &Option<Json>| -> BTreeMap<String, String> {
        let v = v.as_ref().map(|v| v.get("tags").unwrap_or(v));
        v.and_then(Json::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (b, a) = (map(before), map(after));
    let set = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    let unset = b.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
    (set, unset)
}

/// IAM keeps at most 5 versions of a policy: delete the oldest non-default one when full.
async fn make_room_for_version(clients: &Clients, arn: &str) -> Result<(), Error> {
    clients.calls.add("iam:ListPolicyVersions");
    let out = clients
        .iam
        .list_policy_versions()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| Error::iam("ListPolicyVersions", e))?;
    let mut old: Vec<String> = out
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
        .filter_map(|v| v.version_id().map(String::from))
        .collect();
    if out.versions().len() < 5 {
        return Ok(());
    }
    old.sort_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap_or(u64::MAX));
    if let Some(oldest) = old.first() {
        clients.calls.add("iam:DeletePolicyVersion");
        gone_ok(
            clients
                .iam
                .delete_policy_version()
                .policy_arn(arn)
                .version_id(oldest)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::iam("DeletePolicyVersion", e)),
        )?;
    }
    Ok(())
}

/// Waits until the Profile `name` no longer exists (its finalizers have run).
async fn wait_profile_gone(clients: &Clients, name: &str, timeout: Duration) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::all_with(clients.kube.clone(), &profile_resource());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        clients.calls.add("kube:get");
        match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    what: format!(
                        "Profile {name} to be deleted (its finalizers to finish) before deleting its IAM role"
                    ),
                    seconds: timeout.as_secs(),
                });
            }
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => return Err(Error::kube(format!("get Profile {name}"), e)),
        }
    }
}
