//! Kubeflow's real profile controller and KFAM in the stack (see
//! `testenv/README.md`): what a test needs to check kftenant's Profiles against
//! what Kubeflow itself does with them.
//!
//! - The controller's results: [`wait_for_namespace`], [`default_editor_annotations`],
//!   [`wait_for_default_editor`], [`wait_for_finalizer`], [`wait_for_profile_gone`].
//! - The controller's IAM calls: [`World::controller_iam`] registers the world's
//!   moto account with the stack's IAM router and returns a [`ControllerIam`]
//!   that reads the calls routed there; [`controller_iam_calls_for_role`] sees
//!   them in every account.
//! - KFAM, asked as the central dashboard asks it: [`kfam_bindings`],
//!   [`kfam_create_binding`], and [`kfam_role_binding`] (a contributor written
//!   by hand exactly as KFAM writes one).
//! - kftenant as a ServiceAccount: [`apply_deploy_rbac`] installs `deploy/`'s
//!   ServiceAccount and RBAC; [`service_account_kubeconfig`] writes a kubeconfig
//!   with a TokenRequest token; [`World::kftenant_as`] runs kftenant with it.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde::Deserialize;
use serde_json::json;

use super::{Stack, World, repo_root};

/// The request header that names the user, as the stack starts KFAM and the
/// controller (`-userid-header kubeflow-userid -userid-prefix ""`, Kubeflow's
/// defaults behind its oauth2-proxy).
pub const USERID_HEADER: &str = "kubeflow-userid";
/// What the controller's `AwsIamForServiceAccount` plugin sets on `default-editor`.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The controller's finalizer on every Profile it has reconciled.
pub const PROFILE_FINALIZER: &str = "profile-finalizer";
/// `deploy/`'s namespace and ServiceAccount (kustomization.yaml, serviceaccount.yaml).
pub const DEPLOY_NAMESPACE: &str = "kubeflow";
pub const DEPLOY_SERVICE_ACCOUNT: &str = "kftenant";
/// How long the helpers here wait for the controller or KFAM by default.
pub const KUBEFLOW_TIMEOUT: Duration = Duration::from_secs(60);

impl Stack {
    fn kubeflow_var(&self, name: &str) -> &str {
        self.vars.get(name).unwrap_or_else(|| {
            panic!(
                "the stack of {} has no {name}: it runs without Kubeflow's profile \
                 controller and KFAM (started with KFTENANT_STACK_KUBEFLOW=off, or by an \
                 older scripts/stack); restart it with them: scripts/stack down; scripts/stack up",
                self.env_file.display()
            )
        })
    }

    /// KFAM's base URL (`http://127.0.0.1:8081`; its port is fixed).
    pub fn kfam_url(&self) -> &str {
        self.kubeflow_var("KFTENANT_KFAM_URL")
    }

    /// The IAM router in front of moto that the profile controller uses as its
    /// `AWS_ENDPOINT_URL` (`testenv/iam_router.py`).
    pub fn controller_iam_router(&self) -> &str {
        self.kubeflow_var("KFTENANT_CONTROLLER_IAM_ROUTER")
    }

    pub fn profile_controller_log(&self) -> &Path {
        Path::new(self.kubeflow_var("KFTENANT_PROFILE_CONTROLLER_LOG"))
    }

    pub fn kfam_log(&self) -> &Path {
        Path::new(self.kubeflow_var("KFTENANT_KFAM_LOG"))
    }

    /// The last `lines` lines of the profile controller's log, for failure messages.
    pub fn profile_controller_log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.profile_controller_log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Run `kubectl ARGS` with `input` on its standard input; panics with its
    /// output if it fails.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        let mut child = Command::new(self.testenv_bin())
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kftenant-testenv kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write kubectl's input");
        let output = child.wait_with_output().expect("wait for kubectl");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
    }
}

// --- waiting ---------------------------------------------------------------------

/// Poll `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`poll`], panicking on timeout with `what` and the end of the controller's log.
pub async fn controller_eventually<T, F, Fut>(
    stack: &Stack,
    what: &str,
    timeout: Duration,
    f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(timeout, f).await {
        Some(value) => value,
        None => panic!(
            "timed out after {timeout:?} waiting for {what}\n\
             last lines of the profile controller's log ({}):\n{}",
            stack.profile_controller_log().display(),
            stack.profile_controller_log_tail(30)
        ),
    }
}

/// The namespace the controller makes for Profile `name`, once it exists.
pub async fn wait_for_namespace(stack: &Stack, client: &kube::Client, name: &str) -> Namespace {
    let api: Api<Namespace> = Api::all(client.clone());
    controller_eventually(
        stack,
        &format!("namespace {name}"),
        KUBEFLOW_TIMEOUT,
        || async { api.get_opt(name).await.expect("get namespace") },
    )
    .await
}

/// `default-editor` in `namespace` once `accept` holds for its annotations.
pub async fn wait_for_default_editor(
    stack: &Stack,
    client: &kube::Client,
    namespace: &str,
    what: &str,
    accept: impl Fn(&BTreeMap<String, String>) -> bool,
) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    controller_eventually(
        stack,
        &format!("default-editor in {namespace}: {what}"),
        KUBEFLOW_TIMEOUT,
        || async {
            let sa = api
                .get_opt("default-editor")
                .await
                .expect("get default-editor")?;
            accept(&sa.metadata.annotations.clone().unwrap_or_default()).then_some(sa)
        },
    )
    .await
}

/// The annotations of `default-editor` in `namespace`, once the controller has
/// made it and annotated it with an IAM role (the plugin's first step).
pub async fn default_editor_annotations(
    stack: &Stack,
    client: &kube::Client,
    namespace: &str,
) -> BTreeMap<String, String> {
    wait_for_default_editor(stack, client, namespace, "annotated with a role", |a| {
        a.contains_key(ROLE_ARN_ANNOTATION)
    })
    .await
    .metadata
    .annotations
    .unwrap_or_default()
}

/// Wait until the controller has reconciled Profile `name` once to the end: its
/// finalizer comes after the namespace, the RBAC, the quota and the plugins.
pub async fn wait_for_finalizer(stack: &Stack, api: &Api<kube::api::DynamicObject>, name: &str) {
    controller_eventually(
        stack,
        &format!("the controller's finalizer on Profile {name}"),
        KUBEFLOW_TIMEOUT,
        || async {
            let profile = api.get(name).await.expect("get Profile");
            profile
                .metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == PROFILE_FINALIZER)
                .then_some(())
        },
    )
    .await
}

/// Wait until cluster-scoped `api` has no object `name` (a Profile after its
/// finalizer ran).
pub async fn wait_for_profile_gone(stack: &Stack, api: &Api<kube::api::DynamicObject>, name: &str) {
    controller_eventually(
        stack,
        &format!("Profile {name} to be gone"),
        KUBEFLOW_TIMEOUT,
        || async {
            api.get_opt(name)
                .await
                .expect("get Profile")
                .is_none()
                .then_some(())
        },
    )
    .await
}

// --- HTTP to loopback servers ------------------------------------------------------

/// One HTTP/1.0 request (no chunked answers, the server closes the connection)
/// to `base` (`http://127.0.0.1:PORT`): status and body.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let host = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    for (key, value) in headers {
        request.push_str(&format!("{key}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

// --- the controller's IAM calls ------------------------------------------------------

/// One IAM call of the profile controller, as the stack's router forwarded it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RouterCall {
    /// The moto account it was forwarded to (`None`: refused as ambiguous).
    pub account: Option<String>,
    /// `GetRole`, `UpdateAssumeRolePolicy`, ...
    pub action: String,
    pub role: Option<String>,
    /// moto's HTTP status.
    pub status: u16,
    /// IAM's error code when the status is an error (`NoSuchEntity`, ...).
    pub error: Option<String>,
}

fn router_calls(stack: &Stack, query: &str) -> Vec<RouterCall> {
    let (status, body) = http_request(
        stack.controller_iam_router(),
        "GET",
        &format!("/_router/calls?{query}"),
        &[],
        "",
    )
    .expect("ask the controller's IAM router");
    assert_eq!(status, 200, "GET /_router/calls?{query}: {body}");
    serde_json::from_str(&body).expect("the router's calls are JSON")
}

/// Every IAM call the controller made naming role `role_name`, in any account
/// (for checking it made none at all).
pub fn controller_iam_calls_for_role(stack: &Stack, role_name: &str) -> Vec<RouterCall> {
    router_calls(stack, &format!("role={role_name}"))
}

/// A world's account, registered with the controller's IAM router: the
/// controller's calls on roles of this account are forwarded here and can be
/// read back. Dropping it unregisters the account.
pub struct ControllerIam {
    stack: &'static Stack,
    pub account_id: String,
}

impl ControllerIam {
    /// The controller's calls routed to this account, oldest first.
    pub fn calls(&self) -> Vec<RouterCall> {
        router_calls(self.stack, &format!("account={}", self.account_id))
    }

    /// Calls per IAM action in this account.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for call in self.calls() {
            *counts.entry(call.action).or_default() += 1;
        }
        counts
    }

    /// The calls moto answered with an error.
    pub fn errors(&self) -> Vec<RouterCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.status >= 400)
            .collect()
    }
}

impl Drop for ControllerIam {
    fn drop(&mut self) {
        let _ = http_request(
            self.stack.controller_iam_router(),
            "DELETE",
            &format!("/_router/accounts/{}", self.account_id),
            &[],
            "",
        );
    }
}

impl World {
    /// Put the profile controller's IAM calls on this world's roles into this
    /// world's moto account (the controller itself cannot choose a moto account).
    pub fn controller_iam(&self) -> ControllerIam {
        let (status, body) = http_request(
            self.stack.controller_iam_router(),
            "PUT",
            &format!("/_router/accounts/{}", self.account_id),
            &[],
            "",
        )
        .expect("register the world's account with the controller's IAM router");
        assert_eq!(status, 200, "register account: {body}");
        ControllerIam {
            stack: self.stack,
            account_id: self.account_id.clone(),
        }
    }

    /// A `kftenant` command pointed at this world, talking to Kubernetes with
    /// `kubeconfig` (e.g. a ServiceAccount's, from [`service_account_kubeconfig`]).
    pub fn kftenant_as(&self, kubeconfig: &Path) -> Command {
        let mut command = self.kftenant();
        command.env("KUBECONFIG", kubeconfig);
        command
    }
}

// --- KFAM ----------------------------------------------------------------------

/// A contributor as KFAM returns it (`kfam/model_binding.go`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct KfamBinding {
    pub user: KfamSubject,
    #[serde(rename = "referredNamespace")]
    pub namespace: String,
    #[serde(rename = "RoleRef")]
    pub role_ref: KfamRoleRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct KfamSubject {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct KfamRoleRef {
    pub kind: String,
    /// The dashboard's role name: `admin`, `edit` or `view`.
    pub name: String,
}

impl KfamBinding {
    /// `(user, role)`, for comparing with an expected list.
    pub fn user_role(&self) -> (String, String) {
        (self.user.name.clone(), self.role_ref.name.clone())
    }
}

/// `GET /kfam/v1/bindings?namespace=NS` as the central dashboard sends it (as
/// user `as_user`): the contributors KFAM shows for a namespace, owner included.
/// KFAM reads RoleBindings from an informer cache, so a new one shows up after
/// a moment; see [`wait_for_kfam_bindings`].
pub fn kfam_bindings(stack: &Stack, namespace: &str, as_user: &str) -> Vec<KfamBinding> {
    let (status, body) = http_request(
        stack.kfam_url(),
        "GET",
        &format!("/kfam/v1/bindings?namespace={namespace}"),
        &[(USERID_HEADER, as_user)],
        "",
    )
    .expect("ask KFAM");
    assert_eq!(
        status, 200,
        "GET /kfam/v1/bindings?namespace={namespace}: {body}"
    );
    #[derive(Deserialize)]
    struct Entries {
        #[serde(default)]
        bindings: Vec<KfamBinding>,
    }
    serde_json::from_str::<Entries>(&body)
        .unwrap_or_else(|e| panic!("KFAM's bindings: {e}: {body}"))
        .bindings
}

/// Poll [`kfam_bindings`] until its `(user, role)` pairs, sorted, equal `want`.
pub async fn wait_for_kfam_bindings(
    stack: &Stack,
    namespace: &str,
    as_user: &str,
    want: &[(&str, &str)],
) -> Vec<KfamBinding> {
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(u, r)| (u.to_string(), r.to_string()))
        .collect();
    want.sort();
    let mut last = Vec::new();
    let found = poll(KUBEFLOW_TIMEOUT, || {
        let bindings = kfam_bindings(stack, namespace, as_user);
        let mut got: Vec<_> = bindings.iter().map(KfamBinding::user_role).collect();
        got.sort();
        let done = got == want;
        last = got;
        async move { done.then_some(bindings) }
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "KFAM lists {last:?} for {namespace}, want {want:?} (log: {})",
            stack.kfam_log().display()
        )
    })
}

/// `POST /kfam/v1/bindings` as the dashboard's "Manage contributors" sends it:
/// `as_user` adds `user` to `namespace` with dashboard role `role` (`edit` or
/// `view`). KFAM allows it for the namespace's owner (or a cluster admin; the
/// stack names none). Returns KFAM's status and body.
pub fn kfam_create_binding(
    stack: &Stack,
    as_user: &str,
    namespace: &str,
    user: &str,
    role: &str,
) -> (u16, String) {
    let body = json!({
        "user": {"kind": "User", "name": user},
        "referredNamespace": namespace,
        "RoleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
    })
    .to_string();
    http_request(
        stack.kfam_url(),
        "POST",
        "/kfam/v1/bindings",
        &[
            (USERID_HEADER, as_user),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .expect("ask KFAM")
}

/// The RoleBinding KFAM writes for contributor `user` with dashboard role `role`
/// (`edit` or `view`) in `namespace`, as `kfam/bindings.go` builds it: name
/// `user-<user, non-alphanumerics as ->-clusterrole-<role>`, annotations `user`
/// and `role` (what KFAM lists by), ClusterRole `kubeflow-<role>`, one User
/// subject. (KFAM also writes an Istio AuthorizationPolicy of the same name for
/// the dashboard's traffic; listing does not read it.)
pub fn kfam_role_binding(namespace: &str, user: &str, role: &str) -> RoleBinding {
    let dashed = |s: &str| {
        let mut out = String::new();
        for c in s.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        out
    };
    let name = dashed(&format!("user-{}-clusterrole-{role}", dashed(user)).to_lowercase());
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            annotations: Some(BTreeMap::from([
                ("user".to_string(), user.to_string()),
                ("role".to_string(), role.to_string()),
            ])),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: format!("kubeflow-{role}"),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.to_string(),
            namespace: None,
        }]),
    }
}

// --- kftenant as a ServiceAccount ----------------------------------------------------

/// Apply `deploy/`'s ServiceAccount, ClusterRole(Binding) and Role(Binding) to
/// the stack, rendered as `kubectl apply -k deploy/` would (namespace
/// `kubeflow`, kustomize's labels), without the Deployment, Service and the
/// rest (no kubelet runs them). Once per test process.
pub fn apply_deploy_rbac(stack: &Stack) {
    static APPLIED: OnceLock<()> = OnceLock::new();
    APPLIED.get_or_init(|| {
        let deploy = repo_root().join("deploy");
        let rendered = stack.kubectl(&["kustomize", &deploy.display().to_string()]);
        const KINDS: [&str; 5] = [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ];
        let mut input =
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {DEPLOY_NAMESPACE}\n");
        let mut kinds = Vec::new();
        for document in rendered.split("\n---\n") {
            let kind = document
                .lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .unwrap_or_default()
                .trim();
            if KINDS.contains(&kind) {
                input.push_str("---\n");
                input.push_str(document.trim_start_matches("---\n"));
                input.push('\n');
                kinds.push(kind.to_string());
            }
        }
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "ServiceAccount"
            ],
            "deploy/ renders these RBAC objects (update this helper if deploy/ changed)"
        );
        stack.kubectl_stdin(&["apply", "-f", "-"], &input);
    });
}

/// Create ServiceAccount `namespace/name` if missing (the namespace too), ask
/// the apiserver for a token (TokenRequest, one hour), and write a kubeconfig
/// at `path` that talks to the stack with that bearer token only.
pub async fn service_account_kubeconfig(
    stack: &Stack,
    client: &kube::Client,
    namespace: &str,
    name: &str,
    path: &Path,
) -> PathBuf {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    ignore_exists(namespaces.create(&PostParams::default(), &ns).await);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    ignore_exists(accounts.create(&PostParams::default(), &sa).await);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
        .status
        .and_then(|status| status.token)
        .expect("TokenRequest answers with a token");

    let admin =
        kube::config::Kubeconfig::read_from(stack.kubeconfig()).expect("read the stack kubeconfig");
    let cluster = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .expect("the stack kubeconfig names its cluster");
    let server = cluster.server.as_deref().expect("server");
    let ca = cluster
        .certificate_authority_data
        .as_deref()
        .expect("certificate-authority-data");
    let user = format!("system:serviceaccount:{namespace}:{name}");
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: kftenant-testenv\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: {user}\n  context:\n    cluster: kftenant-testenv\n    user: {user}\n\
             current-context: {user}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A kube client that talks to the stack with `kubeconfig`.
pub async fn kube_client_for(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kube config from the kubeconfig");
    kube::Client::try_from(config).expect("kube client")
}

fn ignore_exists<T>(result: Result<T, kube::Error>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(e) => panic!("create: {e}"),
    }
}
