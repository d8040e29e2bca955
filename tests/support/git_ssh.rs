//! A real SSH git server for the tests of `GitAuth::Ssh`: `kftenant-gitssh`
//! (testenv/gitssh/main.go, golang.org/x/crypto/ssh) accepting one public key
//! and running the real `git upload-pack` for `git-upload-pack '<path>'`.
//!
//! # Why a Go program and not a Rust SSH crate
//! Measured on this 2-core machine: `russh` (the newest release that builds
//! with rust-version 1.85 is 0.58; 0.65 needs 1.89), even without default
//! features and on aws-lc-rs, adds 112 crates to Cargo.lock and about 115 s
//! (66 s CPU) to a cold build — and every CI run builds cold, in a fresh
//! clone. The Go server is one file whose only module, golang.org/x/crypto
//! v0.47.0, is already in the module cache for testenv/ (it builds with
//! `GOPROXY=off`); it is built once per machine into
//! `$KFTENANT_CACHE/gitssh-<hash of its source>/` in about 2 s when the Go
//! build cache is warm from testenv/ (40 s CPU with an empty one), and Go is
//! already required by the local stack. x/crypto/ssh is also the more
//! widely used server of the two (Gitea, Gogs and soft-serve run on it).
//!
//! It lives in its own module, not in testenv/'s, whose build is keyed by its
//! own go.mod and takes ~11 min cold.
//!
//! Lifetime: the server exits when its standard input closes, which happens
//! when the [`GitSshServer`] is dropped or the test process ends in any way.

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// An ed25519 key pair made by `ssh-keygen` (no passphrase).
#[derive(Debug, Clone)]
pub struct SshKeyPair {
    /// The private key, OpenSSH format.
    pub private: PathBuf,
    /// The public key, `ssh-ed25519 AAAA... comment`.
    pub public: PathBuf,
}

impl SshKeyPair {
    /// `ssh-keygen -t ed25519 -N '' -f DIR/NAME`.
    pub fn generate(dir: &Path, name: &str) -> SshKeyPair {
        let private = dir.join(name);
        let output = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run ssh-keygen ({e}): the SSH tests need OpenSSH's client tools \
                     (apt-get install openssh-client)"
                )
            });
        assert!(
            output.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SshKeyPair {
            public: private.with_extension("pub"),
            private,
        }
    }

    /// `TYPE BASE64` of the public key, without its comment.
    pub fn public_key(&self) -> String {
        let text = std::fs::read_to_string(&self.public).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A running `kftenant-gitssh`, serving the repositories under one folder.
pub struct GitSshServer {
    /// Its standard input: closing it (on drop) stops the server.
    stdin: Option<ChildStdin>,
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its log: one line per auth attempt, connection and command.
    pub log: PathBuf,
}

impl GitSshServer {
    /// Serves `root` with host key `host_key`, accepting only `authorized`.
    /// `listen` is `127.0.0.1:0` for a free port, or a port to reuse.
    pub fn start(
        root: &Path,
        host_key: &SshKeyPair,
        authorized: &SshKeyPair,
        listen: &str,
        log: PathBuf,
    ) -> GitSshServer {
        let bin = gitssh_bin();
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin)
            .arg("-host-key")
            .arg(&host_key.private)
            .arg("-authorized-key")
            .arg(&authorized.public)
            .arg("-root")
            .arg(root)
            .args(["-listen", listen])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut first = String::new();
        // The server prints its address once it accepts connections, or exits.
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let Some(port) = first
            .trim()
            .strip_prefix("listening 127.0.0.1:")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kftenant-gitssh did not start (said {first:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        GitSshServer {
            stdin: child.stdin.take(),
            child,
            port,
            log,
        }
    }

    /// `ssh://git@127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{path}", self.port)
    }

    /// The server's known_hosts entry as OpenSSH writes it off port 22.
    pub fn known_hosts_line(&self, host_key: &SshKeyPair) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, host_key.public_key())
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Public-key auth attempts so far (offers and signed attempts alike).
    pub fn auth_attempts(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("auth attempt"))
            .count()
    }

    /// Stops the server and waits for it (its port is free afterwards).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stdin.take());
        // EOF on stdin makes it exit; kill in case it is stuck.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GitSshServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `kftenant-gitssh` binary, built on first use (once per machine and
/// version of its source). Panics with what to install if Go is missing.
pub fn gitssh_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_gitssh) {
        Ok(bin) => bin,
        Err(message) => panic!("{message}"),
    }
}

fn build_gitssh() -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testenv/gitssh");
    let bin_dir = cache_dir().join(format!("gitssh-{}", source_hash(&src)?));
    let bin = bin_dir.join("kftenant-gitssh");
    if bin.is_file() {
        return Ok(bin);
    }
    let go = find_go().ok_or_else(|| {
        format!(
            "Go is not installed: tests/git_ssh.rs builds its SSH git server from {} with \
             Go >= 1.24. Run scripts/ci-stack-prereqs (it installs Go into /usr/local/go), \
             or install Go and put it on PATH.",
            src.display()
        )
    })?;
    std::fs::create_dir_all(&bin_dir)
        .map_err(|e| format!("cannot create {}: {e}", bin_dir.display()))?;
    // Unique per process: several test binaries may build at once; the
    // rename makes whichever finishes last win with an identical binary.
    let tmp = bin_dir.join(format!("kftenant-gitssh.tmp{}", std::process::id()));
    let output = Command::new(&go)
        .args(["build", "-trimpath", "-buildvcs=false", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        // go.sum is committed; never rewrite the source tree from a test.
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
    if !output.status.success() {
        return Err(format!(
            "go build of {} failed:\n{}\nIf a module could not be downloaded, run \
             `go mod download` there with the Go module proxy reachable.",
            src.display(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    std::fs::rename(&tmp, &bin).map_err(|e| format!("cannot move {}: {e}", tmp.display()))?;
    Ok(bin)
}

/// `KFTENANT_CACHE`, or `~/.cache/kftenant` as scripts/stack uses.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KFTENANT_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/kftenant")
}

/// Where scripts/stack finds Go: `$KFTENANT_GO_DIR/bin/go` (default
/// /usr/local/go, where machines of this kind ship it), else `go` on PATH.
fn find_go() -> Option<PathBuf> {
    let dir = std::env::var_os("KFTENANT_GO_DIR").unwrap_or_else(|| "/usr/local/go".into());
    let bundled = PathBuf::from(dir).join("bin/go");
    if bundled.is_file() {
        return Some(bundled);
    }
    let on_path = Command::new("go").arg("version").output();
    matches!(on_path, Ok(o) if o.status.success()).then(|| PathBuf::from("go"))
}

/// First 12 hex digits of SHA-256 over go.mod, go.sum and the .go files
/// (sorted by name), so an edit there builds a new binary.
fn source_hash(src: &Path) -> Result<String, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(|e| format!("cannot read {}: {e}", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "go")
                || p.file_name()
                    .is_some_and(|n| n == "go.mod" || n == "go.sum")
        })
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for file in &files {
        hash.update(file.file_name().unwrap().as_encoded_bytes());
        hash.update(std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?);
    }
    Ok(hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
