//! SSH key auth against a real SSH git server (`support::git_ssh`:
//! golang.org/x/crypto/ssh running the real `git upload-pack`), with the
//! server's host key checked against known_hosts files as OpenSSH writes them.
//!
//! Needs git, `ssh-keygen` and `ssh` (openssh-client) and Go (to build the
//! server once); a missing one fails the test with what to install.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kftenant::git::{Checkout, GitAuth, GitSource};
use support::git;
use support::git_ssh::{GitSshServer, SshKeyPair};

/// Far above a refused login's few round trips on loopback (measured well
/// under a second), far below "forever".
const SYNC_LIMIT: Duration = Duration::from_secs(30);

/// A served repository, the keys and a folder for everything a test writes.
struct Fixture {
    // Declared first, so it stops before its folder is removed.
    server: GitSshServer,
    /// The repository the server serves as `/tenants`; tests commit here.
    work: PathBuf,
    host_key: SshKeyPair,
    client_key: SshKeyPair,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            git2::Version::get().ssh(),
            "kftenant's git2 was built without SSH support (libgit2-sys feature `ssh`), \
             so ssh:// remotes cannot work: build git2 with its default features"
        );
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("served/tenants");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("a.txt"), "1").unwrap();
        git(&work, &["add", "a.txt"]);
        git(&work, &["commit", "-q", "-m", "one"]);
        let host_key = SshKeyPair::generate(dir.path(), "host_ed25519");
        let client_key = SshKeyPair::generate(dir.path(), "client_ed25519");
        let server = GitSshServer::start(
            &dir.path().join("served"),
            &host_key,
            &client_key,
            "127.0.0.1:0",
            dir.path().join("gitssh.log"),
        );
        Fixture {
            server,
            work,
            host_key,
            client_key,
            dir,
        }
    }

    fn commit(&self, content: &str) -> String {
        std::fs::write(self.work.join("a.txt"), content).unwrap();
        git(&self.work, &["commit", "-q", "-am", content]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn source(&self, url: &str, key: &Path, known_hosts: &Path, cache: &str) -> GitSource {
        GitSource {
            url: url.to_string(),
            branch: "main".into(),
            path: None,
            cache_dir: self.dir.path().join(cache),
            auth: GitAuth::Ssh {
                key: key.to_path_buf(),
                known_hosts: known_hosts.to_path_buf(),
            },
        }
    }

    /// The known_hosts entry for this server, under `[127.0.0.1]:PORT`.
    fn known_hosts_line(&self) -> String {
        self.server.known_hosts_line(&self.host_key)
    }
}

/// Runs `sync` on a thread, so a client that never gives up fails the test
/// instead of hanging it. Errors come back as their display text.
fn sync_bounded(source: &GitSource) -> (Result<Checkout, String>, Duration) {
    let (tx, rx) = mpsc::channel();
    let source = source.clone();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(source.sync().map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(SYNC_LIMIT) {
        Ok(result) => (result, start.elapsed()),
        Err(_) => panic!("GitSource::sync did not return within {SYNC_LIMIT:?}"),
    }
}

fn read(checkout: &Checkout, file: &str) -> String {
    std::fs::read_to_string(checkout.root.join(file)).unwrap()
}

/// Asserts `cache` holds no checkout: no file, no commit.
fn assert_nothing_checked_out(cache: &Path) {
    assert!(
        !cache.join("a.txt").exists(),
        "{} has a checkout",
        cache.display()
    );
    if let Ok(repo) = git2::Repository::open(cache) {
        assert!(repo.head().is_err(), "{} has a HEAD", cache.display());
    }
}

#[test]
fn ssh_key_clones_and_a_later_fetch_follows_a_new_commit() {
    let f = Fixture::new();
    let known_hosts = f.write(
        "known_hosts",
        &format!(
            "# other servers first, as in a real file\n\
             github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n\
             {}",
            f.known_hosts_line()
        ),
    );
    let source = f.source(
        &f.server.url("tenants"),
        &f.client_key.private,
        &known_hosts,
        "cache",
    );

    let (first, took) = sync_bounded(&source);
    let first = first.unwrap();
    eprintln!("clone over SSH: {took:?}");
    assert_eq!(first.commit, git(&f.work, &["rev-parse", "HEAD"]));
    assert_eq!(read(&first, "a.txt"), "1");

    let new_head = f.commit("2");
    let (second, took) = sync_bounded(&source);
    let second = second.unwrap();
    eprintln!("fetch over SSH: {took:?}");
    assert_eq!(second.commit, new_head);
    assert_eq!(read(&second, "a.txt"), "2");
    assert!(
        f.server.log_text().contains("exec git upload-pack"),
        "{}",
        f.server.log_text()
    );

    // The same known_hosts file and key work for OpenSSH's own client, so the
    // file is what `ssh` writes and accepts, not just what kftenant reads.
    let openssh_clone = f.dir.path().join("openssh-clone");
    let ssh_command = format!(
        "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes \
         -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -i {}",
        known_hosts.display(),
        f.client_key.private.display()
    );
    let output = Command::new("git")
        .args(["clone", "-q", &f.server.url("tenants")])
        .arg(&openssh_clone)
        .env("GIT_SSH_COMMAND", &ssh_command)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git clone with OpenSSH ({ssh_command}): {}\n(needs `ssh`: apt-get install openssh-client)",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(git(&openssh_clone, &["rev-parse", "HEAD"]), new_head);
}

#[test]
fn hashed_known_hosts_and_a_url_without_user_work() {
    let f = Fixture::new();
    let known_hosts = f.write("known_hosts", &f.known_hosts_line());
    // Hash it the way `HashKnownHosts yes` files are: with OpenSSH itself.
    let output = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known_hosts)
        .output()
        .expect("ssh-keygen runs");
    assert!(output.status.success(), "ssh-keygen -H: {output:?}");
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        hashed.starts_with("|1|") && !hashed.contains("127.0.0.1"),
        "{hashed}"
    );

    // No user in the URL: libgit2 first asks for one, and gets `git`.
    let url = format!("ssh://127.0.0.1:{}/tenants", f.server.port);
    let source = f.source(&url, &f.client_key.private, &known_hosts, "cache");
    let (checkout, _) = sync_bounded(&source);
    let checkout = checkout.unwrap();
    assert_eq!(read(&checkout, "a.txt"), "1");
    assert!(
        f.server.log_text().contains("authenticated as \"git\""),
        "{}",
        f.server.log_text()
    );
}

#[test]
fn server_whose_host_key_is_not_in_known_hosts_is_refused() {
    let f = Fixture::new();
    let url = f.server.url("tenants");
    let name = format!("[127.0.0.1]:{}", f.server.port);
    let other_host_key = SshKeyPair::generate(f.dir.path(), "other_ed25519");
    let right_key = f.host_key.public_key();

    // The right key, but only for the same address on other ports: OpenSSH
    // keys entries by port, so these say nothing of this server.
    let other_ports = f.write(
        "known_hosts_other_ports",
        &format!(
            "127.0.0.1 {right_key}\n[127.0.0.1]:{} {right_key}\n",
            f.server.port.wrapping_add(1)
        ),
    );
    // This server's name with another key: what a man in the middle looks like.
    let other_key = f.write(
        "known_hosts_other_key",
        &format!("{name} {}\n", other_host_key.public_key()),
    );
    let missing = f.dir.path().join("known_hosts_missing");

    for (known_hosts, why) in [
        (&other_ports, "is not in"),
        (&other_key, "differs from the one in"),
        (&missing, "cannot read"),
    ] {
        let source = f.source(&url, &f.client_key.private, known_hosts, "cache");
        let (result, _) = sync_bounded(&source);
        let error = result.expect_err("an unknown host must be refused");
        eprintln!("{}: {error}", known_hosts.display());
        assert!(error.contains(&name) && error.contains(why), "{error}");
        assert!(
            error.contains(&known_hosts.display().to_string()),
            "{error}"
        );
        assert_nothing_checked_out(&source.cache_dir);
    }
    // The client key was never offered to a server it could not verify.
    assert_eq!(f.server.auth_attempts(), 0, "{}", f.server.log_text());

    // Once known_hosts is right, the same cache folder clones.
    let fixed = f.write("known_hosts", &f.known_hosts_line());
    let (checkout, _) = sync_bounded(&f.source(&url, &f.client_key.private, &fixed, "cache"));
    assert_eq!(read(&checkout.unwrap(), "a.txt"), "1");
}

#[test]
fn refused_client_key_fails_in_bounded_time_and_keeps_the_last_checkout() {
    let f = Fixture::new();
    let url = f.server.url("tenants");
    let known_hosts = f.write("known_hosts", &f.known_hosts_line());
    let stranger = SshKeyPair::generate(f.dir.path(), "stranger_ed25519");

    // First sync ever with a key the server refuses: an error, no checkout.
    let refused_clone = f.source(&url, &stranger.private, &known_hosts, "fresh-cache");
    let (result, took) = sync_bounded(&refused_clone);
    let error = result.expect_err("a refused key must fail");
    eprintln!("refused clone: {took:?}: {error}");
    assert!(
        error.contains("refused key") && error.contains(&stranger.private.display().to_string()),
        "{error}"
    );
    assert_nothing_checked_out(&refused_clone.cache_dir);

    // A good checkout, then a new commit fetched with a refused key.
    let good = f.source(&url, &f.client_key.private, &known_hosts, "cache");
    let (first, _) = sync_bounded(&good);
    let first = first.unwrap();
    let new_head = f.commit("2");
    let attempts_before = f.server.auth_attempts();
    let refused = f.source(&url, &stranger.private, &known_hosts, "cache");
    let (result, took) = sync_bounded(&refused);
    let error = result.expect_err("a refused key must fail");
    let attempts = f.server.auth_attempts() - attempts_before;
    eprintln!("refused fetch: {took:?}, {attempts} auth attempt(s) at the server: {error}");
    assert!(error.contains("refused key"), "{error}");
    // The server allows unlimited tries: only the client can stop. One offer
    // of the key (libssh2 may first ask whether the key would do, then sign).
    assert!(
        attempts <= 2,
        "{attempts} attempts:\n{}",
        f.server.log_text()
    );

    // The last checkout is as it was.
    assert_eq!(read(&first, "a.txt"), "1");
    let repo = git2::Repository::open(&good.cache_dir).unwrap();
    assert_eq!(
        repo.head().unwrap().target().unwrap().to_string(),
        first.commit
    );

    // And the right key still follows the branch from there.
    let (second, _) = sync_bounded(&good);
    assert_eq!(second.unwrap().commit, new_head);
}
