//! Token auth against a real git smart-HTTP server: `git http-backend` behind
//! HTTP Basic auth (see `support::git_http`), the way GitHub and GitLab serve
//! HTTPS remotes, minus TLS.
//!
//! The `GitSource` tests need only git. The `kftenant run` tests also need the
//! local stack (the daemon reads IAM and Kubernetes every cycle); the harness
//! starts it on first use.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kftenant::git::{GitAuth, GitSource};
use support::git_http::{self, GitHttpServer, Presented};
use support::repo::Repo;
use support::{World, git};

const TOKEN: &str = "ghs_kftenantTestToken0123456789abcdef";
const WRONG_TOKEN: &str = "ghs_notTheRightOne9876543210fedcba";

/// Commits everything in `work` and pushes it to the served repository;
/// returns the commit id.
fn commit_and_push(work: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "--allow-empty", "-m", message]);
    git(work, &["push", "-q", "origin", "HEAD:main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// A repository served over smart HTTP: `work` is where a test commits,
/// `root/tenants.git` (bare) is what the server serves, `work`'s `origin`.
struct Remote {
    // Declared first, so it stops before its folder is removed.
    server: GitHttpServer,
    _root: tempfile::TempDir,
}

impl Remote {
    /// Serves a bare copy of the git repository in `work` (which must have
    /// a commit on `main`) and makes it `work`'s `origin`.
    fn serve(work: &Path) -> Remote {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("tenants.git");
        git(
            work,
            &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
        );
        git(work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let server = GitHttpServer::start(root.path(), TOKEN);
        Remote {
            server,
            _root: root,
        }
    }

    fn url(&self) -> String {
        self.server.url("tenants.git")
    }
}

/// A work tree with one commit on `main` holding `a.txt` = `content`.
fn work_tree(content: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(work.path().join("a.txt"), content).unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "one"]);
    work
}

fn source(url: String, cache: &Path, token: &str) -> GitSource {
    GitSource {
        url,
        branch: "main".into(),
        path: None,
        cache_dir: cache.join("clone"),
        auth: GitAuth::Token(token.into()),
    }
}

#[test]
fn token_clones_over_smart_http_and_a_later_fetch_follows_a_new_commit() {
    let work = work_tree("1");
    let remote = Remote::serve(work.path());
    let cache = tempfile::tempdir().unwrap();
    let src = source(remote.url(), cache.path(), TOKEN);

    let first = src
        .sync()
        .unwrap_or_else(|e| panic!("clone: {e}\n{}", remote.server.describe()));
    assert_eq!(first.commit, git(work.path(), &["rev-parse", "HEAD"]));
    assert_eq!(
        std::fs::read_to_string(first.root.join("a.txt")).unwrap(),
        "1"
    );

    std::fs::write(work.path().join("a.txt"), "2").unwrap();
    let pushed = commit_and_push(work.path(), "two");
    let second = src
        .sync()
        .unwrap_or_else(|e| panic!("fetch: {e}\n{}", remote.server.describe()));
    assert_eq!(second.commit, pushed);
    assert_eq!(
        std::fs::read_to_string(second.root.join("a.txt")).unwrap(),
        "2"
    );

    // It really went through the auth: every request git answered carried
    // the token, and nothing was refused with a credential.
    let served = remote.server.served();
    assert!(
        served
            .iter()
            .filter(|s| s.status == 200)
            .all(|s| s.presented == Presented::Accepted)
            && served
                .iter()
                .any(|s| s.method == "POST" && s.target.ends_with("/git-upload-pack")),
        "{}",
        remote.server.describe()
    );
    assert_eq!(
        remote.server.refused_credentials(),
        0,
        "{}",
        remote.server.describe()
    );
}

#[test]
fn a_wrong_token_is_offered_once_fails_clearly_and_keeps_the_last_checkout() {
    let work = work_tree("1");
    let remote = Remote::serve(work.path());
    let cache = tempfile::tempdir().unwrap();
    let good = source(remote.url(), cache.path(), TOKEN);
    let kept = good.sync().expect("clone with the right token");

    // The token is rotated on the server side: a new commit is there, but the
    // daemon's token no longer opens the door.
    std::fs::write(work.path().join("a.txt"), "2").unwrap();
    let pushed = commit_and_push(work.path(), "two");
    let bad = source(remote.url(), cache.path(), WRONG_TOKEN);
    let before = remote.server.refused_credentials();
    let started = Instant::now();
    let error = bad.sync().expect_err("a wrong token must fail").to_string();
    let took = started.elapsed();
    assert!(
        error.contains("the remote refused the token"),
        "unclear error: {error}"
    );
    assert!(
        !error.contains(WRONG_TOKEN),
        "the error shows the token: {error}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Offered once per operation: one refused request, not a libgit2 replay
    // loop (it would try 15 times and then report "too many redirects or
    // authentication replays").
    assert_eq!(
        remote.server.refused_credentials() - before,
        1,
        "{}",
        remote.server.describe()
    );
    // The last checkout is as it was.
    assert_eq!(
        std::fs::read_to_string(kept.root.join("a.txt")).unwrap(),
        "1"
    );
    assert_eq!(
        git(&good.cache_dir, &["rev-parse", "HEAD"]),
        kept.commit,
        "HEAD moved"
    );

    // A first clone with a wrong token fails the same way.
    let fresh = tempfile::tempdir().unwrap();
    let error = source(remote.url(), fresh.path(), WRONG_TOKEN)
        .sync()
        .expect_err("a wrong token must fail")
        .to_string();
    assert!(
        error.contains("the remote refused the token"),
        "unclear error: {error}"
    );

    // The right token again: the new commit arrives.
    assert_eq!(
        good.sync().expect("fetch with the right token").commit,
        pushed
    );
}

/// The server itself against git's own client, which (unlike libgit2)
/// compresses large fetch requests: the gzip path of the CGI bridge works,
/// and so does protocol v2 (`Git-Protocol` header).
#[test]
fn git_http_server_serves_git_cli_including_gzip_request_bodies() {
    let work = work_tree("1");
    // Enough distinct branch heads that the clone's list of wants passes
    // the 1 KiB above which git compresses the request.
    for i in 0..40 {
        git(
            work.path(),
            &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")],
        );
        git(work.path(), &["branch", &format!("b{i}")]);
    }
    let remote = Remote::serve(work.path());
    let url = remote
        .url()
        .replacen("http://", &format!("http://x-access-token:{TOKEN}@"), 1);
    let clone = tempfile::tempdir().unwrap();
    let output = Command::new("git")
        .args(["-c", "credential.helper=", "-c", "protocol.version=2"])
        .args(["clone", "-q", &url, "c"])
        .current_dir(clone.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git (install it: apt-get install git)");
    assert!(
        output.status.success(),
        "git clone: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        remote.server.describe()
    );
    assert_eq!(
        git(&clone.path().join("c"), &["rev-parse", "origin/b39"]),
        git(work.path(), &["rev-parse", "b39"])
    );
    let served = remote.server.served();
    assert!(
        served.iter().any(|s| s.method == "POST"
            && s.content_encoding.as_deref() == Some("gzip")
            && s.status == 200),
        "no gzip request was served:\n{}",
        remote.server.describe()
    );
    assert!(
        served.iter().all(|s| s.backend_stderr.is_empty()),
        "{}",
        remote.server.describe()
    );
}

#[test]
fn git_http_cgi_parsing() {
    use git_http::cgi_response;
    let r = cgi_response(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/plain");
    let r = cgi_response(b"Content-Type: a/b\n\nbody\n\nmore").unwrap();
    assert_eq!(r.status(), 200);
    assert!(cgi_response(b"no headers at all").is_err());
}

// ---- `kftenant run` end to end ----

/// A `kftenant run --plan-only` child whose stdout and stderr go to files.
struct Daemon {
    child: Child,
    port: u16,
    logs: tempfile::TempDir,
}

impl Daemon {
    fn start(
        world: &World,
        url: &str,
        cache: &Path,
        auth: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let logs = tempfile::tempdir().unwrap();
        let mut command = world.kftenant();
        command
            .args(["run", "--plan-only", "--repo", url, "--interval", "1s"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--cache-dir", cache.join("clone").to_str().unwrap()])
            .args(auth.iter().flat_map(|(flag, value)| [*flag, *value]))
            .env_remove("KFTENANT_GIT_TOKEN")
            // Debug logs too: the token must not show at any level.
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
            .stdin(Stdio::null());
        let child = command.spawn().expect("kftenant run starts");
        let daemon = Daemon { child, port, logs };
        wait_for("the daemon to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        daemon
    }

    fn status(&self) -> serde_json::Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("daemon listens");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/status: {e}: {body}"))
    }

    /// Stops the daemon and returns everything it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        ["stdout", "stderr"]
            .iter()
            .map(|f| std::fs::read_to_string(self.logs.path().join(f)).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A world with its OIDC provider, and its sample tenants committed in a
/// fresh repository served over smart HTTP.
async fn served_tenants(name: &str) -> (World, Repo, Remote) {
    let world = World::new(name);
    let iam = world.iam_client(5).await;
    world.create_oidc_provider(&iam).await;
    let repo = Repo::new(&world);
    git(repo.dir.path(), &["init", "-q", "-b", "main"]);
    git(repo.dir.path(), &["add", "-A"]);
    git(repo.dir.path(), &["commit", "-q", "-m", "initial tenants"]);
    let remote = Remote::serve(repo.dir.path());
    (world, repo, remote)
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_follows_a_token_protected_remote_and_never_logs_the_token() {
    let (world, repo, remote) = served_tenants("git-http-daemon").await;
    let work = repo.dir.path();
    let cache = tempfile::tempdir().unwrap();
    let token_file = cache.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let daemon = Daemon::start(
        &world,
        &remote.url(),
        cache.path(),
        &[("--git-token-file", token_file.to_str().unwrap())],
        &[],
    );

    let first = git(work, &["rev-parse", "HEAD"]);
    wait_for("the first commit", Duration::from_secs(60), || {
        daemon.status()["last_good_commit"] == first.as_str()
    });
    let tenants_before = daemon.status()["tenants"].as_u64().unwrap();

    // A pushed commit that removes a tenant file is picked up on the next cycle.
    std::fs::remove_file(work.join("tenants/platform-sandbox.yaml")).unwrap();
    let second = commit_and_push(work, "drop platform-sandbox");
    wait_for("the pushed commit", Duration::from_secs(30), || {
        daemon.status()["last_good_commit"] == second.as_str()
    });
    let status = daemon.status();
    assert!(
        status["tenants"].as_u64().unwrap() < tenants_before,
        "{status}"
    );
    assert_eq!(
        remote.server.refused_credentials(),
        0,
        "{}",
        remote.server.describe()
    );

    let logs = daemon.stop();
    assert!(logs.contains("new commit is valid"), "{logs}");
    assert!(
        !logs.contains(TOKEN),
        "the token is in the daemon's output:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_with_a_refused_token_reports_it_and_never_logs_it() {
    let (world, _repo, remote) = served_tenants("git-http-refused").await;
    let cache = tempfile::tempdir().unwrap();
    // The environment variable this time, the other way in.
    let daemon = Daemon::start(
        &world,
        &remote.url(),
        cache.path(),
        &[],
        &[("KFTENANT_GIT_TOKEN", WRONG_TOKEN)],
    );
    wait_for("the fetch failure", Duration::from_secs(30), || {
        daemon.status()["last_errors"].as_array().is_some_and(|e| {
            e.iter().any(|e| {
                e.as_str()
                    .is_some_and(|e| e.contains("the remote refused the token"))
            })
        })
    });
    let status = daemon.status();
    assert!(status["last_good_commit"].is_null(), "{status}");
    let logs = daemon.stop();
    assert!(logs.contains("the remote refused the token"), "{logs}");
    assert!(
        !logs.contains(WRONG_TOKEN),
        "the token is in the daemon's output:\n{logs}"
    );
    assert!(
        remote.server.refused_credentials() >= 1,
        "{}",
        remote.server.describe()
    );
}
