//! Test harness for integration tests against the real local stack.
//!
//! One stack (etcd, kube-apiserver, moto, Kubeflow's profile controller and
//! KFAM; see `scripts/stack`) per test binary, started on first use and shared
//! by its tests. Each test takes a [`World`]:
//! a unique name prefix for its cluster-scoped Kubernetes objects, its own moto
//! account, and an [`IamProxy`] in front of moto that puts the test's calls in
//! that account and counts them. kftenant itself is pointed at the world with
//! standard settings only (`KUBECONFIG`, `AWS_ENDPOINT_URL`, ...; see
//! [`World::kftenant_env`]), so it needs no test-only code path.
//!
//! Lifetime: `scripts/stack up --watch-pid <this process>` leaves a watchdog
//! that stops the stack when this process exits, however it exits (a panic, a
//! `cargo test` that runs no destructors, a SIGKILL).
//!
//! Reuse: with `KFTENANT_STACK_ENV=<env file of a running stack>` (from
//! `scripts/stack up; scripts/stack env`) no stack is started or stopped.
//!
//! A missing component (Go, python3, a failed build) fails the test with what
//! to run; it never skips.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod broken;
pub mod browser;
pub mod check;
pub mod daemon;
pub mod git_http;
pub mod git_ssh;
pub mod kube_proxy;
pub mod kubeflow;
pub mod proxy;
pub mod repo;
pub mod tcp_proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs git in `dir` as a fixed test author; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git (install it: apt-get install git)");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git prints UTF-8")
        .trim()
        .to_string()
}

use proxy::{IamProxy, ProxyConfig};

/// The label every test puts on the cluster-scoped objects it creates, with
/// the world's prefix as its value, so leftovers can be traced to a test.
pub const WORLD_LABEL: &str = "kftenant.test/world";

/// The OIDC issuer of the pretend EKS cluster the sample config names.
pub const DEFAULT_OIDC_ISSUER: &str =
    "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E";

/// A running stack, as described by its env file.
#[derive(Debug)]
pub struct Stack {
    /// The sourceable env file `scripts/stack up` wrote.
    pub env_file: PathBuf,
    /// Its variables (`KUBECONFIG`, `AWS_ENDPOINT_URL`, ...).
    pub vars: BTreeMap<String, String>,
}

impl Stack {
    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{} has no {name}", self.env_file.display()))
    }

    pub fn kubeconfig(&self) -> &Path {
        Path::new(self.var("KUBECONFIG"))
    }

    /// moto's own URL (tests normally go through a [`World`]'s proxy instead).
    pub fn moto_endpoint(&self) -> &str {
        self.var("AWS_ENDPOINT_URL")
    }

    /// The kftenant-testenv binary, for `kubectl` in tests.
    pub fn testenv_bin(&self) -> &Path {
        Path::new(self.var("KFTENANT_TESTENV_BIN"))
    }

    pub fn oidc_issuer(&self) -> &str {
        self.vars
            .get("KFTENANT_STACK_OIDC_ISSUER")
            .map_or(DEFAULT_OIDC_ISSUER, String::as_str)
    }

    /// Run `kubectl ARGS` against the stack; panics with its output if it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = Command::new(self.testenv_bin())
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("run kftenant-testenv kubectl");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The stack of this test binary, started on first use.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();
    match STACK.get_or_init(start_or_reuse) {
        Ok(stack) => stack,
        Err(message) => panic!("{message}"),
    }
}

fn start_or_reuse() -> Result<Stack, String> {
    if let Some(env_file) = std::env::var_os("KFTENANT_STACK_ENV") {
        return read_env_file(Path::new(&env_file)).map_err(|e| format!("KFTENANT_STACK_ENV: {e}"));
    }
    let state_dir = std::env::temp_dir().join(format!("kftenant-stack-{}", std::process::id()));
    let script = repo_root().join("scripts/stack");
    let output = Command::new("bash")
        .arg(&script)
        .args(["up", "--watch-pid", &std::process::id().to_string()])
        .env("KFTENANT_STACK_DIR", &state_dir)
        .output()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "the local test stack did not start (scripts/stack up exited with {}).\n\
             {}\n\
             Install what it needs with `scripts/ci-stack-prereqs` (Go >= 1.26, python3-venv, \
             openssl, curl), or build it with `scripts/stack build`; see testenv/README.md.",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    let env_file = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    read_env_file(&env_file)
}

fn read_env_file(path: &Path) -> Result<Stack, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read stack env file {}: {e}", path.display()))?;
    let vars = text
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    for required in ["KUBECONFIG", "AWS_ENDPOINT_URL", "KFTENANT_TESTENV_BIN"] {
        if !vars.contains_key(required) {
            return Err(format!("{} lacks {required}", path.display()));
        }
    }
    Ok(Stack {
        env_file: path.to_path_buf(),
        vars,
    })
}

/// Hold this while a test works on *all* Profiles rather than its own (e.g. runs
/// `kftenant` with an ownership scope that would see other tests' Profiles):
/// Profiles are cluster-scoped, so a name prefix alone keeps tests apart only
/// when each test looks at its own names. IAM needs no lock: every world has
/// its own moto account.
/// An async lock, so holding it across `.await` is fine.
pub async fn exclusive_cluster() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// One test's isolated share of the stack.
pub struct World {
    /// Lower-case, DNS-label-safe, unique per test run: prefix every
    /// cluster-scoped object name with it (see [`World::name`]).
    pub prefix: String,
    /// This test's moto account (12 digits).
    pub account_id: String,
    /// In front of moto; injects `account_id` and counts this test's calls.
    pub proxy: IamProxy,
    pub stack: &'static Stack,
}

impl World {
    /// A new world for the test `test_name` (any string; it is shortened and
    /// sanitised into the prefix).
    pub fn new(test_name: &str) -> World {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let stack = stack();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // pid and clock keep worlds apart across runs that share one stack
        // (KFTENANT_STACK_ENV); seq keeps them apart within a run.
        let account_id = format!("{:04}{:04}{:04}", pid % 10_000, secs % 10_000, seq % 10_000);
        let slug: String = test_name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect::<String>()
            .trim_matches('-')
            .to_string();
        let prefix = format!("t{:x}{:x}-{}", pid, seq, slug);
        let proxy =
            IamProxy::start(ProxyConfig::new(stack.moto_endpoint()).account_id(account_id.clone()))
                .expect("start the IAM proxy");
        World {
            prefix,
            account_id,
            proxy,
            stack,
        }
    }

    /// `<prefix>-<base>`: a name no other test uses.
    pub fn name(&self, base: &str) -> String {
        format!("{}-{}", self.prefix, base)
    }

    /// Labels to put on every object the test creates.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(WORLD_LABEL.to_string(), self.prefix.clone())])
    }

    /// The environment that points a `kftenant` process at this world, using
    /// only standard settings.
    pub fn kftenant_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "KUBECONFIG".into(),
                self.stack.kubeconfig().display().to_string(),
            ),
            ("AWS_ENDPOINT_URL".into(), self.proxy.endpoint()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            // Keep a developer's ~/.aws out of the tests.
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ]
    }

    /// A `kftenant` command (the binary of this crate) pointed at this world.
    pub fn kftenant(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kftenant"));
        command.envs(self.kftenant_env());
        command
    }

    /// A kube client for the stack's apiserver, from its kubeconfig.
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.stack.kubeconfig())
            .expect("read the stack kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config from the stack kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// An IAM client that goes through this world's proxy, with a fast
    /// standard retry policy of `max_attempts` attempts.
    pub async fn iam_client(&self, max_attempts: u32) -> aws_sdk_iam::Client {
        iam_client_at(&self.proxy.endpoint(), max_attempts).await
    }

    /// Create the EKS cluster's IAM OIDC provider in this world's account (the
    /// stack creates it only in the default account), as a real account has it.
    pub async fn create_oidc_provider(&self, iam: &aws_sdk_iam::Client) -> String {
        let out = iam
            .create_open_id_connect_provider()
            .url(format!("https://{}", self.stack.oidc_issuer()))
            .client_id_list("sts.amazonaws.com")
            .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
            .send()
            .await
            .expect("create the OIDC provider");
        out.open_id_connect_provider_arn
            .expect("CreateOpenIDConnectProvider returns an ARN")
    }
}

/// An IAM client for `endpoint` (moto, a proxy, the controller's router) with
/// dummy keys and a fast standard retry policy of `max_attempts` attempts.
pub async fn iam_client_at(endpoint: &str, max_attempts: u32) -> aws_sdk_iam::Client {
    use aws_config::retry::RetryConfig;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "kftenant-tests",
        ))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .load()
        .await;
    aws_sdk_iam::Client::new(&config)
}

/// A second cluster on the stack (`scripts/stack add-cluster second`: its
/// own kube-apiserver and profile controller, the same etcd and moto), started
/// on first use and shared by the tests of this binary; its kubeconfig.
pub fn second_cluster() -> &'static Path {
    static SECOND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = SECOND.get_or_init(|| {
        let stack = stack();
        let script = repo_root().join("scripts/stack");
        let output = Command::new("bash")
            .arg(&script)
            .args(["add-cluster", "second"])
            .env("KFTENANT_STACK_DIR", stack.var("KFTENANT_STACK_DIR"))
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "scripts/stack add-cluster second failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            ));
        }
        let env_file = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let text = std::fs::read_to_string(&env_file)
            .map_err(|e| format!("cannot read {}: {e}", env_file.display()))?;
        text.lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} lacks KUBECONFIG", env_file.display()))
    });
    match result {
        Ok(p) => p,
        Err(message) => panic!("{message}"),
    }
}

/// Writes a kubeconfig at `out` with one context per `(name, kubeconfig)`,
/// named `name`, each the current context of its kubeconfig; the first is
/// the current context.
pub fn merged_kubeconfig(out: &Path, clusters: &[(&str, &Path)]) {
    use kube::config::{Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
    let mut merged = Kubeconfig::default();
    for (name, path) in clusters {
        let k = Kubeconfig::read_from(path).expect("read a stack kubeconfig");
        let current = k.current_context.clone().expect("a current context");
        let ctx = k
            .contexts
            .iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context.clone())
            .expect("the current context");
        let cluster = k
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .and_then(|c| c.cluster.clone());
        let user = k
            .auth_infos
            .iter()
            .find(|u| Some(&u.name) == ctx.user.as_ref())
            .and_then(|u| u.auth_info.clone());
        merged.clusters.push(NamedCluster {
            name: name.to_string(),
            cluster,
            other: Default::default(),
        });
        merged.auth_infos.push(NamedAuthInfo {
            name: name.to_string(),
            auth_info: user,
            other: Default::default(),
        });
        let mut ctx = ctx;
        ctx.cluster = name.to_string();
        ctx.user = Some(name.to_string());
        merged.contexts.push(NamedContext {
            name: name.to_string(),
            context: Some(ctx),
            other: Default::default(),
        });
    }
    merged.current_context = clusters.first().map(|(n, _)| n.to_string());
    // JSON is YAML: kubeconfig readers take it.
    std::fs::write(out, serde_json::to_vec_pretty(&merged).expect("serialise")).expect("write");
}

/// A kube client for the current context of `kubeconfig`.
pub async fn kube_client_at(kubeconfig: &Path) -> kube::Client {
    let k = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(k, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

// --- small helpers of the live tests ---------------------------------------------

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts `out` exited with `code`, showing both streams when not.
#[track_caller]
pub fn expect_code(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Kubeflow `Profile`s (kubeflow.org/v1) of the cluster `client` reaches.
pub fn profiles(client: kube::Client) -> kube::Api<kube::api::DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("kubeflow.org", "v1", "Profile");
    kube::Api::all_with(
        client,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, "profiles"),
    )
}
