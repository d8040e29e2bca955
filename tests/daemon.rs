//! `kftenant run` end to end: a real git repository in a temp dir, the real
//! local stack, and the daemon's own HTTP endpoints.

mod support;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

fn status(port: u16) -> serde_json::Value {
    let (code, body) = http(port, "GET", "/status", &[], b"");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
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
    assert_eq!(ops.first(), Some(&"delete_profile"), "{ops:?}");
    assert_eq!(ops.last(), Some(&"delete_role"), "{ops:?}");
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
