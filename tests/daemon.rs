//! `kftenant run` end to end: a real git repository in a temp dir, the real
//! local stack, and the daemon's own HTTP endpoints.

mod support;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use support::daemon::{free_port, status, wait_for};
use support::repo::Repo;
use support::{World, git};

const SECRET: &str = "webhook-secret-for-tests";

fn commit_all(dir: &Path, msg: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", msg]);
}

fn head(dir: &Path) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A minimal HTTP/1.1 client for the daemon's endpoints.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("daemon listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A world, its IAM client, and the sample tenants committed to a fresh git repository.
async fn setup(name: &str) -> (World, aws_sdk_iam::Client, Repo) {
    let world = World::new(name);
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let repo = Repo::new(&world);
    git(repo.dir.path(), &["init", "-q", "-b", "main"]);
    commit_all(repo.dir.path(), "initial tenants");
    (world, iam, repo)
}

/// Waits until `commit` is applied, then checks that a plan against the live world is empty.
fn converged(world: &World, repo: &Repo, port: u16, commit: &str) {
    wait_for("the commit to be applied", Duration::from_secs(60), || {
        status(port)["last_applied_commit"] == commit
    });
    let out = world
        .kftenant()
        .args(["plan", repo.path(), "--live"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Sends SIGTERM and waits (bounded) for the exit code.
fn terminate(d: &mut Daemon) -> Option<i32> {
    let pid = d.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            return st.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "daemon did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(world: &World, remote: &Path, cache: &Path, interval: &str, extra: &[&str]) -> Daemon {
    start_with_log(world, remote, cache, interval, extra, None)
}

/// [`start`], with the daemon's standard error (its logs) in `log` when given.
fn start_with_log(
    world: &World,
    remote: &Path,
    cache: &Path,
    interval: &str,
    extra: &[&str],
    log: Option<&Path>,
) -> Daemon {
    start_with_env(world, remote, cache, interval, extra, log, &[])
}

/// [`start_with_log`], with environment variables set over the world's
/// (another IAM endpoint, another kubeconfig, a lease identity).
fn start_with_env(
    world: &World,
    remote: &Path,
    cache: &Path,
    interval: &str,
    extra: &[&str],
    log: Option<&Path>,
    env: &[(&str, String)],
) -> Daemon {
    let port = free_port();
    let secret = cache.join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let mut cmd = world.kftenant();
    cmd.args([
        "run",
        "--repo",
        remote.to_str().unwrap(),
        "--interval",
        interval,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--cache-dir",
        cache.join("clone").to_str().unwrap(),
        "--webhook-secret-file",
        secret.to_str().unwrap(),
    ])
    .args(extra)
    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
    .stdout(Stdio::null())
    .stderr(match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    });
    let child = cmd.spawn().expect("kftenant run starts");
    let d = Daemon { child, port };
    wait_for("the daemon to listen", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    d
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_converges_rejects_broken_commits_and_heals_drift() {
    let (world, iam, repo) = setup("daemon").await;
    let remote = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    let d = start(&world, remote, cache.path(), "2s", &[]);

    // First cycle converges the sample repository.
    let first = head(remote);
    converged(&world, &repo, d.port, &first);
    assert_eq!(http(d.port, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(http(d.port, "GET", "/readyz", &[], b"").0, 200);

    // A broken commit: nothing applied, reported with file:line, the last good commit stays.
    let file = remote.join("tenants/forecasting.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        good.replace("  owner: sam.okafor@acme.example", "  owner: [broken"),
    )
    .unwrap();
    commit_all(remote, "broken yaml");
    let broken = head(remote);
    wait_for(
        "the broken commit to be reported",
        Duration::from_secs(30),
        || {
            let st = status(d.port);
            st["current_commit"] == broken.as_str()
                && !st["validation_errors"].as_array().unwrap().is_empty()
        },
    );
    let st = status(d.port);
    assert!(
        st["validation_errors"][0]
            .as_str()
            .unwrap()
            .starts_with("tenants/forecasting.yaml:"),
        "{st}"
    );
    assert_eq!(st["last_good_commit"], first.as_str());
    let (_, metrics) = http(d.port, "GET", "/metrics", &[], b"");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kftenant_validation_errors ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(metrics.contains("kftenant_cycles_total{result=\"invalid_commit\"}"));
    // The forecasting tenant is still there (nothing deleted because of a parse error).
    let forecasting = repo.role("forecasting");
    iam.get_role()
        .role_name(&forecasting)
        .send()
        .await
        .expect("role kept");

    // An invalid webhook does nothing; a valid one triggers at once.
    let body = br#"{"ref":"refs/heads/main"}"#;
    assert_eq!(
        http(
            d.port,
            "POST",
            "/hook",
            &[("x-hub-signature-256", "sha256=00".into())],
            body
        )
        .0,
        401
    );
    assert_eq!(http(d.port, "POST", "/hook", &[], body).0, 401);

    // A good commit adding a tenant converges; measure push-to-converged with the webhook.
    std::fs::write(&file, &good).unwrap();
    std::fs::write(remote.join("tenants/new-team.yaml"), format!("apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {}\nspec:\n  owner: new@acme.example\n", repo.tenant("new-team"))).unwrap();
    commit_all(remote, "fix and add a tenant");
    let fixed = head(remote);
    let pushed = Instant::now();
    assert_eq!(
        http(
            d.port,
            "POST",
            "/hook",
            &[("x-hub-signature-256", sign(body))],
            body
        )
        .0,
        202
    );
    wait_for(
        "the new tenant to be applied",
        Duration::from_secs(60),
        || status(d.port)["last_applied_commit"] == fixed.as_str(),
    );
    eprintln!(
        "push-to-converged (webhook, one new tenant): {:?}",
        pushed.elapsed()
    );
    iam.get_role()
        .role_name(repo.role("new-team"))
        .send()
        .await
        .expect("new role exists");
    assert!(
        status(d.port)["validation_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Hand-made drift is corrected on the next timer cycle, without a new commit.
    iam.attach_role_policy()
        .role_name(&forecasting)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    wait_for("the drift to be corrected", Duration::from_secs(30), || {
        let rt = tokio::runtime::Handle::current();
        let attached = tokio::task::block_in_place(|| {
            rt.block_on(
                iam.list_attached_role_policies()
                    .role_name(&forecasting)
                    .send(),
            )
            .expect("list attached policies")
        });
        !attached
            .attached_policies()
            .iter()
            .any(|a| a.policy_arn() == Some("arn:aws:iam::aws:policy/AdministratorAccess"))
    });

    // /report serves the latest plan; SIGTERM exits cleanly.
    let (code, report) = http(d.port, "GET", "/report", &[], b"");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&report).unwrap()["format_version"],
        kftenant::plan::PLAN_FORMAT_VERSION
    );
    let mut d = d;
    let code = terminate(&mut d);
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_only_reports_drift_without_writing() {
    let (world, iam, repo) = setup("daemon plan only").await;
    let remote = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    let d = start(&world, remote, cache.path(), "1s", &["--plan-only"]);
    wait_for("a plan to be published", Duration::from_secs(30), || {
        status(d.port)["last_plan_summary"]["create"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    world.proxy.reset();
    std::thread::sleep(Duration::from_secs(3));
    let writes: u64 = world
        .proxy
        .calls()
        .iter()
        .filter(|(a, _)| !(a.starts_with("Get") || a.starts_with("List")))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        writes,
        0,
        "plan-only never writes: {:?}",
        world.proxy.calls()
    );
    assert_eq!(
        iam.list_roles()
            .path_prefix("/kftenant/")
            .send()
            .await
            .unwrap()
            .roles()
            .len(),
        0
    );
    let (code, md) = http(d.port, "GET", "/report?format=markdown", &[], b"");
    assert_eq!(code, 200);
    assert!(md.contains("to create"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_remote_keeps_the_world_and_recovers() {
    let (world, iam, repo) = setup("daemon remote gone").await;
    let remote = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    let d = start(&world, remote, cache.path(), "1s", &["--ready-grace", "4s"]);
    let first = head(remote);
    wait_for(
        "the first commit to be applied",
        Duration::from_secs(60),
        || status(d.port)["last_applied_commit"] == first.as_str(),
    );
    // The remote disappears for several cycles.
    let moved = remote.with_extension("away");
    std::fs::rename(remote, &moved).unwrap();
    wait_for(
        "fetch failures to be reported",
        Duration::from_secs(20),
        || {
            let (_, m) = http(d.port, "GET", "/metrics", &[], b"");
            m.lines().any(|l| {
                l.starts_with("kftenant_git_fetch_failures_total ")
                    && l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                        >= 3
            })
        },
    );
    assert!(
        status(d.port)["last_errors"][0]
            .as_str()
            .unwrap()
            .starts_with("fetch:")
    );
    for base in ["forecasting", "fraud-detection"] {
        iam.get_role()
            .role_name(repo.role(base))
            .send()
            .await
            .expect("nothing deleted while the remote is away");
    }
    // Readiness reflects it once the last good cycle is older than the grace period.
    wait_for("/readyz to fail", Duration::from_secs(20), || {
        http(d.port, "GET", "/readyz", &[], b"").0 == 503
    });
    assert_eq!(
        http(d.port, "GET", "/healthz", &[], b"").0,
        200,
        "alive all the same"
    );
    std::fs::rename(&moved, remote).unwrap();
    wait_for("recovery", Duration::from_secs(20), || {
        status(d.port)["last_errors"].as_array().unwrap().is_empty()
    });
    wait_for("/readyz to recover", Duration::from_secs(20), || {
        http(d.port, "GET", "/readyz", &[], b"").0 == 200
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_cycle_exits_cleanly_and_the_next_start_converges() {
    let (world, iam, repo) = setup("daemon sigterm").await;
    let remote = repo.dir.path();
    // Slow IAM writes down so the first cycle is still applying when SIGTERM comes.
    world.proxy.add_fault(support::proxy::FaultRule::latency(
        "CreateRole",
        Duration::from_millis(400),
    ));
    let cache = tempfile::tempdir().unwrap();
    let mut d = start(&world, remote, cache.path(), "1s", &[]);
    wait_for("the first CreateRole", Duration::from_secs(30), || {
        world.proxy.action("CreateRole").calls >= 1
    });
    let code = terminate(&mut d);
    assert_eq!(
        code,
        Some(0),
        "clean exit after finishing the running steps"
    );
    world.proxy.clear_faults();
    let d2 = start(&world, remote, cache.path(), "1s", &[]);
    let first = head(remote);
    converged(&world, &repo, d2.port, &first);
    let _ = iam;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_one_writer_and_failover() {
    let (world, iam, repo) = setup("daemon lease").await;
    let remote = repo.dir.path();
    let lease = format!("{}-lease", repo.p);
    let args = [
        "--lease-name",
        lease.as_str(),
        "--lease-namespace",
        "default",
    ];
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(&world, remote, c1.path(), "1s", &args);
    let b = start(&world, remote, c2.path(), "1s", &args);
    let leaders = |ports: &[u16]| {
        ports
            .iter()
            .filter(|p| status(**p)["leader"] == true)
            .count()
    };
    wait_for("exactly one leader", Duration::from_secs(30), || {
        leaders(&[a.port, b.port]) == 1
    });
    let first = head(remote);
    wait_for("convergence by the leader", Duration::from_secs(60), || {
        [a.port, b.port]
            .iter()
            .any(|p| status(*p)["last_applied_commit"] == first.as_str())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(leaders(&[a.port, b.port]), 1, "still exactly one leader");
    // Kill the leader without letting it release the lease: the follower takes over
    // once the lease expires (15 s) and then corrects drift.
    let (mut leader, follower) = if status(a.port)["leader"] == true {
        (a, b)
    } else {
        (b, a)
    };
    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let took = wait_for("the follower to take over", Duration::from_secs(40), || {
        status(follower.port)["leader"] == true
    });
    eprintln!("failover after the leader died: {took:?}");
    let role = repo.role("forecasting");
    iam.attach_role_policy()
        .role_name(&role)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    wait_for(
        "the new leader to correct drift",
        Duration::from_secs(30),
        || {
            let rt = tokio::runtime::Handle::current();
            let attached = tokio::task::block_in_place(|| {
                rt.block_on(iam.list_attached_role_policies().role_name(&role).send())
                    .expect("list attached policies")
            });
            !attached
                .attached_policies()
                .iter()
                .any(|p| p.policy_arn() == Some("arn:aws:iam::aws:policy/AdministratorAccess"))
        },
    );
}

/// The JSON log lines of a daemon (`--log-format json`).
fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_deletion_stops_nothing_else_and_every_write_is_audited() {
    let (world, iam, repo) = setup("held").await;
    let remote = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    let log = cache.path().join("daemon.log");
    let d = start_with_log(
        &world,
        remote,
        cache.path(),
        "2s",
        &["--log-format", "json"],
        Some(&log),
    );
    converged(&world, &repo, d.port, &head(remote));

    // A tenant's file is removed without decommissioning it, and someone
    // attaches AdministratorAccess by hand to another tenant's role.
    let forecasting = repo.role("forecasting");
    std::fs::remove_file(repo.tenant_file("forecasting").unwrap()).unwrap();
    commit_all(remote, "forecasting's file is gone (moved? lost?)");
    let recommendations = repo.role("recommendations");
    iam.attach_role_policy()
        .role_name(&recommendations)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
    // The drift is healed all the same.
    wait_for(
        "the hand-made attachment to be removed",
        Duration::from_secs(60),
        || {
            let rt = tokio::runtime::Handle::current();
            let attached = tokio::task::block_in_place(|| {
                rt.block_on(
                    iam.list_attached_role_policies()
                        .role_name(&recommendations)
                        .send(),
                )
                .expect("list attached policies")
            });
            !attached
                .attached_policies()
                .iter()
                .any(|a| a.policy_arn() == Some("arn:aws:iam::aws:policy/AdministratorAccess"))
        },
    );
    // The held deletion is visible: /status, the metric, a WARN line; nothing was deleted.
    let st = status(d.port);
    assert_eq!(
        st["held_deletions"][0]["tenant"],
        repo.tenant("forecasting"),
        "{st:#}"
    );
    assert_eq!(st["last_plan_summary"]["held"], 1, "{st:#}");
    let (_, metrics) = http(d.port, "GET", "/metrics", &[], b"");
    assert!(
        metrics.lines().any(|l| l == "kftenant_held_deletions 1"),
        "{metrics}"
    );
    iam.get_role()
        .role_name(&forecasting)
        .send()
        .await
        .expect("role kept");
    let lines = log_lines(&log);
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"] == "deletion held back"
            && l["tenant"] == repo.tenant("forecasting")),
        "no WARN line for the held deletion"
    );
    let detach = lines
        .iter()
        .find(|l| l["target"] == "kftenant::audit" && l["op"] == "detach_policy")
        .expect("an audit line for the detach");
    assert_eq!(detach["result"], "done");
    assert_eq!(detach["tenant"], repo.tenant("recommendations"));
    assert_eq!(detach["commit"], head(remote));
    assert!(detach["duration_ms"].is_u64());

    // Git confirms: the tenant goes, Profile first, and the Profile gets an Event.
    repo.decommission_listed_only(&["forecasting"]);
    commit_all(remote, "decommission forecasting");
    let decommissioned = head(remote);
    converged(&world, &repo, d.port, &decommissioned);
    let err = iam
        .get_role()
        .role_name(&forecasting)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&err),
        Some("NoSuchEntity")
    );
    let lines = log_lines(&log);
    let ops: Vec<&str> = lines
        .iter()
        // The lines of the decommissioning commit: the first convergence
        // created the tenant, with lines of its own.
        .filter(|l| {
            l["target"] == "kftenant::audit"
                && l["tenant"] == repo.tenant("forecasting")
                && l["commit"] == decommissioned.as_str()
        })
        .filter_map(|l| l["op"].as_str())
        .collect();
    // After its creation at the start: the Profile goes first, the role last.
    let from = ops
        .iter()
        .position(|op| *op == "delete_profile")
        .expect("deleted");
    assert_eq!(ops.last(), Some(&"delete_role"), "{ops:?}");
    assert!(
        ops[from..]
            .iter()
            .all(|op| op.starts_with("delete_") || *op == "detach_policy"),
        "{ops:?}"
    );
    let events = world.stack.kubectl(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &format!("involvedObject.name={}", repo.tenant("forecasting")),
        "-o",
        "json",
    ]);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "Deleted" && e["source"]["component"] == "kftenant"),
        "{events:#}"
    );
}

#[test]
fn an_empty_webhook_secret_or_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for flag in ["--webhook-secret-file", "--git-token-file"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kftenant"))
            .args([
                "run",
                "--repo",
                "/nonexistent",
                flag,
                empty.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is empty: refusing to start"), "{flag}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .args(["run", "--repo", "/nonexistent"])
        .env("KFTENANT_GIT_TOKEN", " ")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KFTENANT_GIT_TOKEN is set but empty"));
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`) to the daemon.
fn signal(d: &Daemon, signal: &str) {
    let pid = d.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// The Lease `name` in `default`, read from the API server.
async fn read_lease(
    world: &World,
    name: &str,
) -> Option<k8s_openapi::api::coordination::v1::Lease> {
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(world.kube_client().await, "default");
    api.get_opt(name).await.unwrap()
}

/// When `holder` took the lease over (its `acquireTime`, by the same clock
/// as the proxies' timelines: every process runs on this machine).
async fn takeover_time(world: &World, lease: &str, holder: &str) -> SystemTime {
    let l = read_lease(world, lease).await.expect("the lease exists");
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(holder));
    SystemTime::from(spec.acquire_time.expect("acquireTime").0)
}

/// A second IAM proxy into the same world's moto account, for a second replica.
fn second_proxy(world: &World) -> support::proxy::IamProxy {
    support::proxy::IamProxy::start(
        support::proxy::ProxyConfig::new(world.stack.moto_endpoint())
            .account_id(world.account_id.clone()),
    )
    .expect("start a second IAM proxy")
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn lease_args(lease: &str) -> Vec<&str> {
    vec![
        "--lease-name",
        lease,
        "--lease-namespace",
        "default",
        // One tenant at a time: the apply is long, and at most one IAM
        // call of the old leader is in flight at any moment.
        "--workers",
        "1",
    ]
}

/// Starts replica `a` through its own slow IAM proxy (every call 400 ms) and
/// waits until it leads, then replica `b` through the world's proxy.
/// `a_env` is added to `a`'s environment.
fn two_replicas(
    world: &World,
    remote: &Path,
    caches: (&Path, &Path),
    lease: &str,
    proxy_a: &support::proxy::IamProxy,
    a_env: &[(&str, String)],
) -> (Daemon, Daemon) {
    proxy_a.add_fault(support::proxy::FaultRule::latency(
        "*",
        Duration::from_millis(400),
    ));
    let mut env_a = vec![
        ("POD_NAME", "replica-a".to_string()),
        ("AWS_ENDPOINT_URL", proxy_a.endpoint()),
    ];
    env_a.extend(a_env.iter().cloned());
    let a = start_with_env(
        world,
        remote,
        caches.0,
        "1s",
        &lease_args(lease),
        None,
        &env_a,
    );
    wait_for("replica a to lead", Duration::from_secs(30), || {
        status(a.port)["leader"] == true
    });
    let b = start_with_env(
        world,
        remote,
        caches.1,
        "1s",
        &lease_args(lease),
        None,
        &[("POD_NAME", "replica-b".to_string())],
    );
    (a, b)
}

/// Waits until `proxy` has passed `n` writes and one is in flight: the
/// replica behind it is in the middle of an IAM write.
fn wait_mid_write(proxy: &support::proxy::IamProxy, n: usize) {
    wait_for(
        "the leader to be mid-write",
        Duration::from_secs(60),
        || {
            let t = proxy.timeline();
            t.iter().filter(|c| c.is_write()).count() >= n
                && t.last()
                    .is_some_and(|c| c.is_write() && c.answered.is_none())
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_paused_mid_apply_writes_nothing_once_a_follower_took_over() {
    let (world, iam, repo) = setup("split brain pause").await;
    let remote = repo.dir.path();
    let lease = format!("{}-lease", repo.p);
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proxy_a = second_proxy(&world);
    let (a, b) = two_replicas(
        &world,
        remote,
        (c1.path(), c2.path()),
        &lease,
        &proxy_a,
        &[],
    );

    // Replica a is applying (one IAM write in flight): stop the process.
    wait_mid_write(&proxy_a, 4);
    signal(&a, "STOP");
    let stopped = SystemTime::now();
    let took = wait_for("replica b to take over", Duration::from_secs(45), || {
        status(b.port)["leader"] == true
    });
    let takeover = takeover_time(&world, &lease, "replica-b").await;
    eprintln!(
        "takeover {took:?} after the stop ({:.1} s by the lease)",
        secs_between(stopped, takeover)
    );
    // Let b write for a while, then let a run again: its apply resumes
    // where it was stopped, with its lease long gone.
    std::thread::sleep(Duration::from_secs(2));
    let resumed = SystemTime::now();
    signal(&a, "CONT");
    wait_for(
        "replica a to report that it stopped writing",
        Duration::from_secs(60),
        || {
            let st = status(a.port);
            st["leader"] == false
                && st["last_errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().contains("LostLeadership"))
        },
    );
    let writes: Vec<_> = proxy_a
        .timeline()
        .into_iter()
        .filter(|c| c.is_write())
        .collect();
    let last = writes.iter().filter_map(|c| c.answered).max().unwrap();
    eprintln!(
        "replica a: {} IAM writes; the last landed {:.2} s before the takeover; {} sent after SIGCONT",
        writes.len(),
        secs_between(last, takeover),
        writes.iter().filter(|c| c.received > resumed).count()
    );
    for w in &writes {
        assert!(
            w.received < stopped,
            "replica a sent {} after it was stopped",
            w.action
        );
        let landed = w
            .answered
            .unwrap_or_else(|| panic!("{} never answered", w.action));
        assert!(
            landed < takeover,
            "replica a's {} landed {:.2} s after b took over",
            w.action,
            secs_between(takeover, landed)
        );
    }
    // The new leader converges alone.
    converged(&world, &repo, b.port, &head(remote));
    let _ = iam;
}

/// AWS-managed policies attached by hand to every role, for drift that
/// takes many IAM writes (and no Kubernetes write) to correct.
const EXTRA_POLICIES: [&str; 5] = [
    "arn:aws:iam::aws:policy/ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonEC2ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess",
    "arn:aws:iam::aws:policy/AmazonSQSReadOnlyAccess",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_api_server_stops_writing_before_a_takeover() {
    let (world, iam, repo) = setup("split brain partition").await;
    let remote = repo.dir.path();
    let lease = format!("{}-lease", repo.p);
    let (c1, c2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proxy_a = second_proxy(&world);
    // Replica a reaches the API server through a proxy the test can cut.
    let api = support::tcp_proxy::TcpProxy::start(support::tcp_proxy::api_server(
        world.stack.kubeconfig(),
    ));
    let kubeconfig =
        support::tcp_proxy::kubeconfig_via(world.stack.kubeconfig(), api.addr(), c1.path());
    // A cycle of replica a's only on the webhook (or to wait for the
    // Kubeflow controller), so it sees all the drift below at once.
    let a = start_with_env(
        &world,
        remote,
        c1.path(),
        "1h",
        &lease_args(&lease),
        None,
        &[
            ("POD_NAME", "replica-a".to_string()),
            ("AWS_ENDPOINT_URL", proxy_a.endpoint()),
            ("KUBECONFIG", kubeconfig.display().to_string()),
        ],
    );
    converged(&world, &repo, a.port, &head(remote));
    let b = start_with_env(
        &world,
        remote,
        c2.path(),
        "1s",
        &lease_args(&lease),
        None,
        &[("POD_NAME", "replica-b".to_string())],
    );
    // Drift that only IAM writes correct: five policies attached by hand
    // to each role, 30 DetachRolePolicy at 400 ms each for replica a, in
    // one cycle that starts on the webhook. Left alone, it would go on
    // writing for 12 s without the API server.
    proxy_a.add_fault(support::proxy::FaultRule::latency(
        "*",
        Duration::from_millis(400),
    ));
    let roles: Vec<String> = [
        "forecasting",
        "fraud-detection",
        "recommendations",
        "platform-sandbox",
        "nlp-research",
        "vision-research",
    ]
    .iter()
    .map(|b| repo.role(b))
    .collect();
    for role in &roles {
        for arn in EXTRA_POLICIES {
            iam.attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("attach {arn} to {role}: {e:?}"));
        }
    }
    let hook = br#"{"ref":"refs/heads/main"}"#;
    let (code, _) = http(
        a.port,
        "POST",
        "/hook",
        &[("x-hub-signature-256", sign(hook))],
        hook,
    );
    assert_eq!(code, 202);
    let detaches = || {
        proxy_a
            .timeline()
            .into_iter()
            .filter(|c| c.action == "DetachRolePolicy")
            .collect::<Vec<_>>()
    };
    wait_for("replica a to be detaching", Duration::from_secs(60), || {
        detaches().len() >= 3
    });
    api.cut();
    let cut = SystemTime::now();
    wait_for("replica b to take over", Duration::from_secs(45), || {
        status(b.port)["leader"] == true
    });
    let takeover = takeover_time(&world, &lease, "replica-b").await;
    // Replica a is still running, its IAM reachable: give it time to write.
    std::thread::sleep(Duration::from_secs(3));
    let writes: Vec<_> = proxy_a
        .timeline()
        .into_iter()
        .filter(|c| c.is_write() && c.received > cut - Duration::from_secs(30))
        .collect();
    let last_sent = writes.iter().map(|c| c.received).max().unwrap();
    let last_landed = writes.iter().filter_map(|c| c.answered).max().unwrap();
    eprintln!(
        "replica a cut off: {} of 30 detaches made, the last sent {:.2} s after the cut and landed {:.2} s before b took over ({:.1} s after the cut)",
        detaches().len(),
        secs_between(cut, last_sent),
        secs_between(last_landed, takeover),
        secs_between(cut, takeover)
    );
    // Its last renewal was before the cut: it writes at most 10 s (the
    // renew deadline) after it, and nothing lands once b leads.
    assert!(
        secs_between(cut, last_sent) < 10.0,
        "replica a wrote {:.2} s after the cut",
        secs_between(cut, last_sent)
    );
    assert!(
        writes
            .iter()
            .all(|w| w.answered.is_some_and(|t| t < takeover))
    );
    assert!(
        detaches().len() < 30,
        "replica a stopped before the end of its apply"
    );
    wait_for(
        "replica a to say why it stopped",
        Duration::from_secs(20),
        || {
            let st = status(a.port);
            st["leader"] == false
                && st["last_errors"].as_array().unwrap().iter().any(|e| {
                    e.as_str()
                        .unwrap()
                        .starts_with("LostLeadership: writing stopped")
                })
        },
    );
    // The new leader finishes the job.
    for role in &roles {
        let rt = tokio::runtime::Handle::current();
        wait_for(
            "b to detach the extra policies",
            Duration::from_secs(60),
            || {
                let attached = tokio::task::block_in_place(|| {
                    rt.block_on(iam.list_attached_role_policies().role_name(role).send())
                        .unwrap()
                });
                !attached
                    .attached_policies()
                    .iter()
                    .any(|p| EXTRA_POLICIES.contains(&p.policy_arn().unwrap_or_default()))
            },
        );
    }
    assert!(world.proxy.action("DetachRolePolicy").calls > 0);
    let (_, metrics) = http(b.port, "GET", "/metrics", &[], b"");
    assert!(
        metrics.lines().any(|l| l == "kftenant_leader 1"),
        "{metrics}"
    );
    drop(a);
}

/// True when `role` has AdministratorAccess attached.
async fn has_admin(iam: &aws_sdk_iam::Client, role: &str) -> bool {
    iam.list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .expect("list attached policies")
        .attached_policies()
        .iter()
        .any(|p| p.policy_arn() == Some("arn:aws:iam::aws:policy/AdministratorAccess"))
}

/// Attaches AdministratorAccess to `role` by hand (drift).
async fn attach_admin(iam: &aws_sdk_iam::Client, role: &str) {
    iam.attach_role_policy()
        .role_name(role)
        .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
        .send()
        .await
        .unwrap();
}

/// Waits until the daemon has removed the hand-made attachment.
fn wait_healed(iam: &aws_sdk_iam::Client, role: &str) {
    wait_for("the drift to be corrected", Duration::from_secs(60), || {
        let rt = tokio::runtime::Handle::current();
        !tokio::task::block_in_place(|| rt.block_on(has_admin(iam, role)))
    });
}

/// Breaks the YAML of tenant `base`'s file.
fn break_tenant(repo: &Repo, base: &str) {
    let file = repo.tenant_file(base).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("  owner: ", "  owner: [broken ", 1)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_a_broken_head_heals_from_the_last_good_commit_on_the_lease() {
    let (world, iam, repo) = setup("restart broken head").await;
    let remote = repo.dir.path();
    let lease = format!("{}-lease", repo.p);
    let args = [
        "--lease-name",
        lease.as_str(),
        "--lease-namespace",
        "default",
    ];
    let start_as = |name: &str, cache: &Path| {
        start_with_env(
            &world,
            remote,
            cache,
            "1s",
            &args,
            None,
            &[("POD_NAME", name.to_string())],
        )
    };
    let c1 = tempfile::tempdir().unwrap();
    let mut d = start_as("first", c1.path());
    let good = head(remote);
    converged(&world, &repo, d.port, &good);
    let annotation = |l: &k8s_openapi::api::coordination::v1::Lease| {
        l.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kftenant.io/last-good-commit").cloned())
    };
    let rt = tokio::runtime::Handle::current();
    let lease_now = || tokio::task::block_in_place(|| rt.block_on(read_lease(&world, &lease)));
    wait_for(
        "the last good commit on the lease",
        Duration::from_secs(10),
        || lease_now().and_then(|l| annotation(&l)) == Some(good.clone()),
    );

    // A broken commit, then a restart: a new pod, with an empty cache.
    break_tenant(&repo, "forecasting");
    commit_all(remote, "broken yaml");
    let broken = head(remote);
    wait_for(
        "the broken head to be reported",
        Duration::from_secs(30),
        || status(d.port)["current_commit"] == broken.as_str(),
    );
    assert_eq!(terminate(&mut d), Some(0));
    // Released on SIGTERM, the last good commit kept.
    let released = lease_now().unwrap();
    assert_eq!(released.spec.as_ref().unwrap().holder_identity, None);
    assert_eq!(annotation(&released), Some(good.clone()));

    let c2 = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let d = start_as("second", c2.path());
    wait_for("the new replica to lead", Duration::from_secs(10), || {
        status(d.port)["leader"] == true
    });
    // A released lease is taken at once, not after its 15 s.
    eprintln!("lead after restart: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_for(
        "the last good commit to be healed from",
        Duration::from_secs(30),
        || status(d.port)["last_good_commit"] == good.as_str(),
    );
    let st = status(d.port);
    assert_eq!(st["current_commit"], broken.as_str(), "{st:#}");
    assert_eq!(st["last_good_source"], "lease", "{st:#}");
    assert!(
        st["validation_errors"][0]
            .as_str()
            .unwrap()
            .starts_with("tenants/forecasting.yaml:"),
        "{st:#}"
    );
    // Hand-made drift is corrected from the last good commit.
    let role = repo.role("recommendations");
    attach_admin(&iam, &role).await;
    wait_healed(&iam, &role);
    wait_for(
        "the last good commit to be applied",
        Duration::from_secs(30),
        || status(d.port)["last_applied_commit"] == good.as_str(),
    );

    // The branch is force-pushed to a history without the good commit, and
    // the daemon restarts again: the recorded commit is refused, and nothing
    // is applied (the drift stays) until the head is valid.
    let mut d = d;
    assert_eq!(terminate(&mut d), Some(0));
    git(remote, &["checkout", "-q", "--orphan", "rewritten"]);
    commit_all(remote, "history rewritten, still broken");
    git(remote, &["branch", "-q", "-M", "rewritten", "main"]);
    let c3 = tempfile::tempdir().unwrap();
    world.proxy.reset();
    let d = start_as("third", c3.path());
    attach_admin(&iam, &role).await;
    world.proxy.reset();
    wait_for(
        "the recorded commit to be refused",
        Duration::from_secs(30),
        || {
            status(d.port)["last_errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap().contains("is not on branch `main`"))
        },
    );
    let st = status(d.port);
    eprintln!("{}", st["last_errors"][0]);
    assert_eq!(st["last_good_commit"], serde_json::Value::Null, "{st:#}");
    std::thread::sleep(Duration::from_secs(3));
    let writes: u64 = world
        .proxy
        .calls()
        .iter()
        .filter(|(a, _)| !(a.starts_with("Get") || a.starts_with("List")))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(writes, 0, "nothing applied: {:?}", world.proxy.calls());
    assert!(has_admin(&iam, &role).await, "the drift stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_body_over_1_mib_gets_413_and_triggers_nothing() {
    let (world, _iam, repo) = setup("daemon hook limit").await;
    let remote = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    // No timer cycle during the test: only a webhook starts one.
    let d = start(&world, remote, cache.path(), "1h", &["--plan-only"]);
    wait_for("the first cycle", Duration::from_secs(30), || {
        status(d.port)["cycle"] == 1
    });
    let body = vec![b' '; kftenant::daemon::http::MAX_HOOK_BODY + 1];
    let (code, _) = http(
        d.port,
        "POST",
        "/hook",
        &[("x-hub-signature-256", sign(&body))],
        &body,
    );
    assert_eq!(code, 413, "a correctly signed body one byte over the cap");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(d.port)["cycle"], 1, "no cycle triggered");
    let (_, metrics) = http(d.port, "GET", "/metrics", &[], b"");
    assert!(
        metrics
            .lines()
            .any(|l| l == "kftenant_webhooks_total{result=\"too_large\"} 1"),
        "{metrics}"
    );
    // At the cap exactly, the same webhook is taken (so the count above
    // could have moved).
    let body = vec![b' '; kftenant::daemon::http::MAX_HOOK_BODY];
    let (code, _) = http(
        d.port,
        "POST",
        "/hook",
        &[("x-hub-signature-256", sign(&body))],
        &body,
    );
    assert_eq!(code, 202);
    wait_for("the webhook's cycle", Duration::from_secs(30), || {
        status(d.port)["cycle"] == 2
    });
}

/// A new Ed25519 key made by `ssh-keygen`: (private key file, public key line).
fn ssh_key(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (install openssh-client)");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    (key.display().to_string(), public.trim().to_string())
}

/// Commits everything, SSH-signed with `key` or unsigned; the new head.
fn commit_signed(dir: &Path, msg: &str, key: Option<&str>) -> String {
    git(dir, &["add", "-A"]);
    let signing = key.map(|k| format!("user.signingkey={k}"));
    let mut args = vec!["-c", "gpg.format=ssh"];
    if let Some(s) = &signing {
        args.extend(["-c", s.as_str()]);
    }
    args.extend(["commit", "-q", "-m", msg]);
    if key.is_some() {
        args.push("-S");
    }
    git(dir, &args);
    head(dir)
}

fn tenant_yaml(repo: &Repo, base: &str) -> String {
    format!(
        "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {}\nspec:\n  owner: {base}@acme.example\n",
        repo.tenant(base)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn only_commits_signed_by_an_allowed_key_are_applied() {
    let world = World::new("daemon signed");
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let repo = Repo::new(&world);
    let remote = repo.dir.path();
    let keys = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = ssh_key(keys.path(), "alice");
    let (mallory, _) = ssh_key(keys.path(), "mallory");
    let signers = keys.path().join("allowed_signers");
    std::fs::write(&signers, format!("alice@acme.example {alice_pub}\n")).unwrap();
    git(remote, &["init", "-q", "-b", "main"]);
    let signed = commit_signed(remote, "initial tenants", Some(&alice));

    let cache = tempfile::tempdir().unwrap();
    let d = start(
        &world,
        remote,
        cache.path(),
        "1s",
        &["--verify-signers", signers.to_str().unwrap()],
    );
    converged(&world, &repo, d.port, &signed);
    assert_eq!(status(d.port)["verify_signers"], true);

    // An unsigned commit, then one signed by a key that is not allowed:
    // each adds a tenant; neither is applied, both are on /status.
    std::fs::write(
        remote.join("tenants/unsigned.yaml"),
        tenant_yaml(&repo, "unsigned"),
    )
    .unwrap();
    let unsigned = commit_signed(remote, "unsigned", None);
    wait_for(
        "the unsigned commit to be refused",
        Duration::from_secs(30),
        || status(d.port)["refused_commits"][0]["commit"] == unsigned.as_str(),
    );
    std::fs::write(
        remote.join("tenants/mallory.yaml"),
        tenant_yaml(&repo, "mallory"),
    )
    .unwrap();
    let unknown = commit_signed(remote, "signed by mallory", Some(&mallory));
    wait_for(
        "the unknown key's commit to be refused",
        Duration::from_secs(30),
        || status(d.port)["refused_commits"][0]["commit"] == unknown.as_str(),
    );
    let st = status(d.port);
    assert_eq!(st["current_commit"], unknown.as_str(), "{st:#}");
    assert_eq!(st["current_commit_refused"], true, "{st:#}");
    assert_eq!(st["refused_commits"][0]["kind"], "unknown_key", "{st:#}");
    assert!(
        st["refused_commits"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("which is not an allowed signer"),
        "{st:#}"
    );
    assert_eq!(
        st["refused_commits"][1]["commit"],
        unsigned.as_str(),
        "{st:#}"
    );
    assert_eq!(st["refused_commits"][1]["kind"], "unsigned", "{st:#}");
    assert_eq!(st["last_good_commit"], signed.as_str(), "{st:#}");
    assert_eq!(st["last_applied_commit"], signed.as_str(), "{st:#}");
    let (_, metrics) = http(d.port, "GET", "/metrics", &[], b"");
    for line in [
        "kftenant_refused_commits_total{reason=\"unsigned\"} 1",
        "kftenant_refused_commits_total{reason=\"unknown_key\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("kftenant_cycles_total{result=\"refused_commit\"}"));
    // The last good commit stays the desired world: drift is healed, and
    // the refused commits' tenants never appear.
    let role = repo.role("forecasting");
    attach_admin(&iam, &role).await;
    wait_healed(&iam, &role);
    for base in ["unsigned", "mallory"] {
        assert!(
            iam.get_role()
                .role_name(repo.role(base))
                .send()
                .await
                .is_err(),
            "{base}'s role was created"
        );
    }
    // Alice signs the next head: it is applied, and with it the tree she
    // vouches for (both tenants).
    std::fs::write(
        remote.join("tenants/alice.yaml"),
        tenant_yaml(&repo, "alice"),
    )
    .unwrap();
    let next = commit_signed(remote, "signed by alice", Some(&alice));
    converged(&world, &repo, d.port, &next);
    assert_eq!(status(d.port)["current_commit_refused"], false);
}

#[test]
fn a_bad_allowed_signers_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allowed_signers");
    std::fs::write(&file, "alice@acme.example ssh-ed25519 notbase64\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .args(["run", "--repo", "/nonexistent", "--verify-signers"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allowed_signers:1: bad public key"), "{err}");
}

/// The whole broken corpus (`tests/support/broken.rs`, also run through
/// `kftenant validate` by `tests/cli`) pushed to a running daemon, one
/// commit on top of the good one each: every repository `validate` refuses,
/// the daemon refuses too, reporting the same first problem, keeps the good
/// commit as the desired world, and writes nothing to IAM.
#[tokio::test(flavor = "multi_thread")]
async fn every_broken_repository_keeps_the_last_good_commit() {
    use support::broken::{Edit, apply, cases};
    let (world, _iam, repo) = setup("corpus").await;
    let remote = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret_file = outside.path().join("outside.json");
    std::fs::write(&secret_file, "{\"secret\": \"TOP SECRET\"}").unwrap();
    let mut d = start(&world, remote, cache.path(), "1h", &[]);
    let good = head(remote);
    converged(&world, &repo, d.port, &good);
    let writes_before = world
        .proxy
        .timeline()
        .iter()
        .filter(|c| c.is_write())
        .count();
    let (mut refused, mut skipped) = (0, Vec::new());
    for c in cases() {
        git(remote, &["reset", "-q", "--hard", &good]);
        git(remote, &["clean", "-q", "-f", "-d", "-x"]);
        // The world's copy names its tenants with a prefix: a case that
        // replaces text the copy does not have is not this test's.
        let applicable = c.edits.iter().all(|e| match e {
            Edit::Replace(path, from, _) => {
                std::fs::read_to_string(remote.join(path)).is_ok_and(|t| t.contains(from))
            }
            _ => true,
        });
        if !applicable {
            skipped.push(c.name);
            continue;
        }
        apply(remote, &secret_file, &c.edits);
        let out = world
            .kftenant()
            .args(["validate", repo.path()])
            .output()
            .unwrap();
        if out.status.code() == Some(0) {
            skipped.push(c.name);
            continue;
        }
        let first = support::text(&out.stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        commit_all(remote, c.name);
        let commit = head(remote);
        let body = br#"{"ref":"refs/heads/main"}"#;
        assert_eq!(
            http(
                d.port,
                "POST",
                "/hook",
                &[("x-hub-signature-256", sign(body))],
                body
            )
            .0,
            202,
            "{}",
            c.name
        );
        wait_for(c.name, Duration::from_secs(30), || {
            let st = status(d.port);
            st["current_commit"] == commit.as_str()
                && !st["validation_errors"].as_array().unwrap().is_empty()
        });
        let st = status(d.port);
        let reported = st["validation_errors"][0].as_str().unwrap_or_default();
        assert_eq!(
            reported.lines().next(),
            Some(first.as_str()),
            "{}: {st}",
            c.name
        );
        assert!(!st.to_string().contains("TOP SECRET"), "{}", c.name);
        assert_eq!(st["last_good_commit"], good.as_str(), "{}", c.name);
        refused += 1;
    }
    let writes_after = world
        .proxy
        .timeline()
        .iter()
        .filter(|c| c.is_write())
        .count();
    assert_eq!(
        writes_after, writes_before,
        "nothing written while refusing"
    );
    assert!(refused >= 40, "{refused} refused; skipped: {skipped:?}");
    eprintln!("{refused} broken repositories refused by the daemon; skipped {skipped:?}");
    terminate(&mut d);
}
