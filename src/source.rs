//! The tenant repository as the daemon sees it: a git remote, cloned once
//! into a cache folder and fetched on every cycle.
//!
//! # Guarantees
//! - A failed fetch (remote unreachable, bad credentials) returns an error and
//!   leaves the last checkout as it was: the caller keeps its last good
//!   desired world and never deletes anything because of it.
//! - The checkout is the exact tree of the branch head (forced, untracked
//!   files removed), detached at that commit.
//!
//! Auth: an HTTPS token (as the password of user `x-access-token`, what
//! GitHub, GitLab and Bitbucket accept), an SSH key with the host key checked
//! against a known_hosts file, or nothing for local paths and `file://` URLs.

use crate::verify::AllowedSigners;
use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, FetchOptions, RemoteCallbacks, Repository};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How to authenticate to the remote.
#[derive(Clone, Default)]
pub enum GitAuth {
    /// Local paths, `file://`, public remotes.
    #[default]
    None,
    /// HTTPS token (never logged).
    Token(String),
    /// SSH private key, and the known_hosts file the server's key must be in.
    Ssh {
        /// Private key file.
        key: PathBuf,
        /// known_hosts file (OpenSSH format).
        known_hosts: PathBuf,
    },
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        match self {
            GitAuth::None => write!(f, "None"),
            GitAuth::Token(_) => write!(f, "Token(<redacted>)"),
            GitAuth::Ssh { key, known_hosts } => {
                write!(f, "Ssh {{ key: {key:?}, known_hosts: {known_hosts:?} }}")
            }
        }
    }
}

/// Where the tenant repository comes from.
#[derive(Debug, Clone)]
pub struct GitSource {
    /// Remote URL or local path.
    pub url: String,
    /// Branch to follow.
    pub branch: String,
    /// Folder inside the repository that holds `kftenant.toml`.
    pub path: Option<String>,
    /// Where the clone lives.
    pub cache_dir: PathBuf,
    /// Credentials.
    pub auth: GitAuth,
}

/// A checked-out commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit id.
    pub commit: String,
    /// The folder with `kftenant.toml` inside the checkout.
    pub root: PathBuf,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A git operation failed.
    #[error("git {operation}: {source}")]
    Git {
        /// What was attempted.
        operation: &'static str,
        /// The libgit2 error.
        #[source]
        source: git2::Error,
    },
    /// The branch does not exist on the remote.
    #[error("branch `{0}` not found on the remote")]
    NoBranch(String),
    /// `--verify-signers` is set and the head commit is not signed by an allowed key.
    #[error("commit {commit} refused: {reason}")]
    Unverified {
        /// The refused commit.
        commit: String,
        /// Why.
        reason: String,
    },
}

fn git(operation: &'static str) -> impl FnOnce(git2::Error) -> SourceError {
    move |source| SourceError::Git { operation, source }
}

impl GitSource {
    /// A source following `main` of a local repository, without credentials (tests).
    #[cfg(test)]
    pub(crate) fn local(remote: &Path, cache_dir: &Path) -> GitSource {
        GitSource {
            url: remote.display().to_string(),
            branch: "main".into(),
            path: None,
            cache_dir: cache_dir.join("repo"),
            auth: GitAuth::None,
        }
    }

    /// `host_key_refusal` receives why an SSH server's host key was refused.
    fn callbacks<'a>(&'a self, host_key_refusal: &'a HostKeyRefusal) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        match &self.auth {
            GitAuth::None => {}
            GitAuth::Token(token) => {
                // libgit2 asks again after every 401 and gives up only after
                // 15 tries, with "too many redirects or authentication
                // replays": 15 refused logins per cycle (a host may lock the
                // token out for that) and an error that does not say what is
                // wrong. Within one sync libgit2 sends the credential it got
                // with every later request, so a second ask means the remote
                // refused the token.
                let mut token_offered = false;
                cb.credentials(move |_url, _user, _allowed| {
                    if std::mem::replace(&mut token_offered, true) {
                        return Err(git2::Error::new(
                            git2::ErrorCode::Auth,
                            git2::ErrorClass::Http,
                            "the remote refused the token (HTTP basic auth as x-access-token): \
                             it is wrong, expired or may not read this repository",
                        ));
                    }
                    Cred::userpass_plaintext("x-access-token", token)
                });
            }
            GitAuth::Ssh { key, known_hosts } => {
                // libgit2 asks again each time the server refuses what it was
                // given (`while (error == GIT_EAUTH)` in ssh_libssh2.c), with
                // no limit of its own, and a server may allow any number of
                // tries: a refused key would loop forever. One sync opens one
                // SSH connection and the key does not change between asks,
                // so a second ask for a key means it was refused.
                let key_offered = std::cell::Cell::new(false);
                cb.credentials(move |_url, user, allowed| {
                    let user = user.unwrap_or(DEFAULT_SSH_USER);
                    if allowed.contains(git2::CredentialType::USERNAME) {
                        // The URL names no user; libgit2 asks for one first.
                        return Cred::username(user);
                    }
                    let refusal = if !allowed.contains(git2::CredentialType::SSH_KEY) {
                        format!(
                            "the SSH server takes no key for user {user} (it offers {allowed:?})"
                        )
                    } else if key_offered.replace(true) {
                        format!(
                            "the SSH server refused key {} for user {user}",
                            key.display()
                        )
                    } else {
                        return Cred::ssh_key(user, None, key, None);
                    };
                    Err(git2::Error::new(
                        git2::ErrorCode::Auth,
                        git2::ErrorClass::Ssh,
                        &refusal,
                    ))
                });
                // libgit2 passes the host without the port; OpenSSH keys
                // known_hosts entries by both (`[host]:port` off port 22).
                let port = ssh_port(&self.url);
                cb.certificate_check(move |cert, host| {
                    let name = known_hosts_name(host, port);
                    let file = known_hosts.display();
                    let hostkey = cert.as_hostkey().and_then(|h| h.hostkey());
                    let reason = match hostkey.map(|k| known_host(known_hosts, &name, k)) {
                        Some(Ok(HostKeyStatus::Known)) => {
                            return Ok(git2::CertificateCheckStatus::CertificateOk);
                        }
                        None => format!("{name} presented no SSH host key"),
                        Some(Ok(HostKeyStatus::Unknown)) => {
                            format!("host key of {name} is not in {file}")
                        }
                        Some(Ok(HostKeyStatus::Changed)) => format!(
                            "host key of {name} differs from the one in {file}: \
                             the server's key changed, or this is not that server"
                        ),
                        Some(Ok(HostKeyStatus::Revoked)) => {
                            format!("host key of {name} is marked @revoked in {file}")
                        }
                        Some(Err(e)) => {
                            format!("cannot check the host key of {name}: cannot read {file}: {e}")
                        }
                    };
                    let error = git2::Error::new(
                        git2::ErrorCode::Certificate,
                        git2::ErrorClass::Ssh,
                        &reason,
                    );
                    *host_key_refusal.0.borrow_mut() = Some(reason);
                    Err(error)
                });
            }
        }
        cb
    }

    /// Clones (first time) or fetches, then checks out the branch head. Blocking.
    pub fn sync(&self) -> Result<Checkout, SourceError> {
        self.sync_verified(None)
    }

    /// As [`GitSource::sync`]; with `signers`, a head commit that is not signed
    /// by one of them is refused ([`SourceError::Unverified`]) and not checked
    /// out, so the last checkout stays as it was.
    pub fn sync_verified(&self, signers: Option<&AllowedSigners>) -> Result<Checkout, SourceError> {
        let dir = &self.cache_dir;
        let host_key_refusal = HostKeyRefusal::default();
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(self.callbacks(&host_key_refusal));
        let repo = match Repository::open(dir) {
            Ok(r) => {
                let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
                // `--repo` may have changed since the clone: fetch from the URL asked for.
                if r.find_remote("origin")
                    .ok()
                    .and_then(|o| o.url().map(String::from))
                    != Some(self.url.clone())
                {
                    r.remote_set_url("origin", &self.url)
                        .map_err(git("set remote url"))?;
                }
                r.find_remote("origin")
                    .map_err(git("find remote"))?
                    .fetch(&[refspec], Some(&mut fo), None)
                    .map_err(|e| host_key_refusal.explain(e))
                    .map_err(git("fetch"))?;
                r
            }
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|e| SourceError::Git {
                    operation: "create cache dir",
                    source: git2::Error::from_str(&e.to_string()),
                })?;
                // No checkout yet: the head is checked out below, once verified.
                let mut nothing = CheckoutBuilder::new();
                nothing.dry_run();
                RepoBuilder::new()
                    .fetch_options(fo)
                    .with_checkout(nothing)
                    .branch(&self.branch)
                    .clone(&self.url, dir)
                    .map_err(|e| host_key_refusal.explain(e))
                    .map_err(git("clone"))?
            }
        };
        let reference = format!("refs/remotes/origin/{}", self.branch);
        let oid = repo
            .refname_to_id(&reference)
            .map_err(|_| SourceError::NoBranch(self.branch.clone()))?;
        if let Some(signers) = signers {
            let signer =
                signers
                    .verify_commit(&repo, oid)
                    .map_err(|reason| SourceError::Unverified {
                        commit: oid.to_string(),
                        reason,
                    })?;
            tracing::debug!(commit = %oid, %signer, "commit signature verified");
        }
        let commit = repo.find_commit(oid).map_err(git("find commit"))?;
        repo.checkout_tree(
            commit.as_object(),
            Some(CheckoutBuilder::new().force().remove_untracked(true)),
        )
        .map_err(git("checkout"))?;
        repo.set_head_detached(oid).map_err(git("set head"))?;
        let root = match &self.path {
            Some(p) => dir.join(p),
            None => dir.clone(),
        };
        Ok(Checkout {
            commit: oid.to_string(),
            root,
        })
    }
}

/// Why the SSH host key check refused the server. libgit2 replaces the
/// check's error with "invalid or unknown remote ssh hostkey", naming neither
/// the host nor the known_hosts file; this carries the reason past it.
#[derive(Default)]
struct HostKeyRefusal(std::cell::RefCell<Option<String>>);

impl HostKeyRefusal {
    /// `error` with the refusal's reason as its message, if it is that refusal.
    fn explain(&self, error: git2::Error) -> git2::Error {
        match self.0.borrow_mut().take() {
            Some(reason) if error.code() == git2::ErrorCode::Certificate => {
                git2::Error::new(error.code(), error.class(), reason)
            }
            _ => error,
        }
    }
}

/// The user to log in as when the URL names none: GitHub, GitLab and
/// Bitbucket all serve git as `git`.
const DEFAULT_SSH_USER: &str = "git";

/// The port an SSH remote URL connects to, read as libgit2 reads it:
/// `ssh://[user@]host[:port]/path` (also `ssh+git://`, `git+ssh://`, and
/// `[v6]` hosts), or scp-like `[user@]host:path` and `[host:port]:path`.
/// 22 when none is given.
fn ssh_port(url: &str) -> u16 {
    let port = if let Some((_scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        match host_port.strip_prefix('[') {
            Some(v6) => v6.split_once("]:").map(|(_, p)| p),
            None => host_port.split_once(':').map(|(_, p)| p),
        }
    } else {
        // scp-like: only the bracketed form carries a port; `[v6]:path`
        // has more than one colon inside the brackets and none.
        url.strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .map(|(inner, _)| inner)
            .filter(|inner| inner.matches(':').count() == 1)
            .and_then(|inner| inner.rsplit_once(':'))
            .map(|(_, p)| p)
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

/// The name OpenSSH looks a server up by in known_hosts: `host` on port 22,
/// `[host]:port` on any other, in lower case.
fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// What a known_hosts file says of a server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostKeyStatus {
    /// A line for the server has this key.
    Known,
    /// Lines for the server exist, none with this key: the key changed, or
    /// this is another machine.
    Changed,
    /// No line for the server.
    Unknown,
    /// A `@revoked` line for the server has this key (whatever else says).
    Revoked,
}

/// Looks `name` (from [`known_hosts_name`]) up in an OpenSSH known_hosts file
/// with `key`, the host key in SSH wire form. See [`host_key_status`].
fn known_host(known_hosts: &Path, name: &str, key: &[u8]) -> std::io::Result<HostKeyStatus> {
    Ok(host_key_status(
        &std::fs::read_to_string(known_hosts)?,
        name,
        key,
    ))
}

/// As OpenSSH's `ssh` reads known_hosts: comma-separated host patterns with
/// `*` and `?` where a matching `!pattern` rules the line out, hashed names
/// (`|1|salt|hash`, written by `HashKnownHosts yes` and `ssh-keygen -H`), and
/// `@revoked` lines. `@cert-authority` lines are skipped (libgit2 never shows
/// a host certificate), as are lines with an unknown marker.
fn host_key_status(known_hosts: &str, name: &str, key: &[u8]) -> HostKeyStatus {
    let mut status = HostKeyStatus::Unknown;
    for line in known_hosts.lines().map(str::trim_start) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (marker, hosts) = match fields.next() {
            Some(marker) if marker.starts_with('@') => (Some(marker), fields.next()),
            hosts => (None, hosts),
        };
        let (Some(hosts), Some(_key_type), Some(blob)) = (hosts, fields.next(), fields.next())
        else {
            continue;
        };
        if !matches!(marker, None | Some("@revoked")) || !host_matches(hosts, name) {
            continue;
        }
        // The key type is also the blob's first field: comparing blobs is enough.
        let same_key = base64_decode(blob).as_deref() == Some(key);
        match (marker, same_key) {
            (Some(_), true) => return HostKeyStatus::Revoked,
            (Some(_), false) => {}
            (None, true) => status = HostKeyStatus::Known,
            (None, false) if status == HostKeyStatus::Unknown => status = HostKeyStatus::Changed,
            (None, false) => {}
        }
    }
    status
}

/// OpenSSH's `match_hostname`: one hashed name, or patterns (compared in
/// lower case) of which one must match and no negated one may.
fn host_matches(hosts: &str, name: &str) -> bool {
    if let Some(hashed) = hosts.strip_prefix("|1|") {
        return hashed_name_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in hosts.split(',').map(str::to_ascii_lowercase) {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard_match(negated, name) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(&pattern, name),
        }
    }
    matched
}

/// `base64(salt)|base64(HMAC-SHA1(salt, name))`, the rest of a `|1|` name.
fn hashed_name_matches(hashed: &str, name: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` matches any run of characters, `?` any one (OpenSSH's `match_pattern`).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_pi, star_ti)) = star {
            // Let the `*` take one more character and try again after it.
            star = Some((star_pi, star_ti + 1));
            pi = star_pi + 1;
            ti = star_ti + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Standard base64 (RFC 4648 alphabet, padding optional); `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text
        .strip_suffix("==")
        .or_else(|| text.strip_suffix('='))
        .unwrap_or(text);
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The files of one commit of a local repository, read straight from git's
/// object database (no checkout): the base side of a pull-request plan.
pub struct GitTreeSource {
    repo: Repository,
    tree: git2::Oid,
    prefix: String,
    /// Entries of each folder read so far, by full folder path: name -> (object, is a file).
    /// A tree object is parsed once, not once per file in it (10,000 tenants:
    /// 54 s of re-parsing `tenants/` otherwise).
    folders: std::cell::RefCell<HashMap<String, Option<Folder>>>,
}

type Folder = HashMap<String, (git2::Oid, bool)>;

impl GitTreeSource {
    /// Opens the repository containing `dir` at revision `rev` (a branch, tag,
    /// `origin/main`, a commit id...). `dir`'s place inside the repository is
    /// kept, so a tenant repository in a subfolder works.
    pub fn open(dir: &Path, rev: &str) -> Result<(GitTreeSource, String), SourceError> {
        let repo = Repository::discover(dir).map_err(git("open repository"))?;
        let commit = repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(git("resolve base revision"))?;
        let workdir = repo.workdir().map(Path::to_path_buf).unwrap_or_default();
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let work = std::fs::canonicalize(&workdir).unwrap_or(workdir);
        let prefix = abs
            .strip_prefix(&work)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let (id, tree) = (commit.id().to_string(), commit.tree_id());
        drop(commit);
        let folders = Default::default();
        Ok((
            GitTreeSource {
                repo,
                tree,
                prefix,
                folders,
            },
            id,
        ))
    }

    fn full(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        }
    }

    /// Runs `f` on the entries of folder `full` (a full path, "" for the root).
    fn with_folder<T>(&self, full: &str, f: impl FnOnce(&Folder) -> Option<T>) -> Option<T> {
        let mut folders = self.folders.borrow_mut();
        let folder = folders.entry(full.to_string()).or_insert_with(|| {
            let root = self.repo.find_tree(self.tree).ok()?;
            let tree = if full.is_empty() {
                root
            } else {
                root.get_path(Path::new(full))
                    .ok()?
                    .to_object(&self.repo)
                    .ok()?
                    .into_tree()
                    .ok()?
            };
            let entries = tree
                .iter()
                .filter_map(|e| {
                    let file = e.kind() == Some(git2::ObjectType::Blob);
                    Some((e.name()?.to_string(), (e.id(), file)))
                })
                .collect();
            Some(entries)
        });
        f(folder.as_ref()?)
    }
}

impl crate::model::Source for GitTreeSource {
    fn read(&self, path: &str) -> Option<Result<String, String>> {
        let full = self.full(path);
        let (dir, name) = full.rsplit_once('/').unwrap_or(("", full.as_str()));
        let id = self.with_folder(dir, |f| {
            f.get(name).filter(|(_, file)| *file).map(|(id, _)| *id)
        })?;
        let blob = self.repo.find_blob(id).ok()?;
        Some(String::from_utf8(blob.content().to_vec()).map_err(|e| e.to_string()))
    }

    fn list(&self, dir: &str) -> Option<Vec<String>> {
        self.with_folder(&self.full(dir), |f| {
            let mut names: Vec<String> = f
                .iter()
                .filter(|(_, (_, file))| *file)
                .map(|(name, _)| name.clone())
                .collect();
            names.sort();
            Some(names)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// `git commit -q ARGS` as a fixed test author.
    fn commit(dir: &Path, args: &[&str]) {
        let mut all = vec!["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q"];
        all.extend(args);
        sh(dir, &all);
    }

    fn sh(dir: &Path, args: &[&str]) {
        let st = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git runs");
        assert!(st.success(), "git {args:?}");
    }

    fn remote_with_commit() -> tempfile::TempDir {
        let remote = tempfile::tempdir().unwrap();
        sh(remote.path(), &["init", "-q", "-b", "main"]);
        commit(remote.path(), &["--allow-empty", "-m", "one"]);
        remote
    }

    #[test]
    fn clone_then_fetch_follows_the_branch_and_keeps_the_checkout_on_failure() {
        let remote = remote_with_commit();
        std::fs::write(remote.path().join("a.txt"), "1").unwrap();
        sh(remote.path(), &["add", "a.txt"]);
        commit(remote.path(), &["-m", "two"]);
        let cache = tempfile::tempdir().unwrap();
        let src = GitSource::local(remote.path(), cache.path());
        let first = src.sync().unwrap();
        assert_eq!(
            std::fs::read_to_string(first.root.join("a.txt")).unwrap(),
            "1"
        );
        std::fs::write(remote.path().join("a.txt"), "2").unwrap();
        commit(remote.path(), &["-am", "three"]);
        let second = src.sync().unwrap();
        assert_ne!(first.commit, second.commit);
        assert_eq!(
            std::fs::read_to_string(second.root.join("a.txt")).unwrap(),
            "2"
        );
        // The remote disappears: an error, and the checkout stays as it was.
        let gone = GitSource {
            url: "/nonexistent/remote".into(),
            ..src.clone()
        };
        std::fs::remove_dir_all(remote.path()).unwrap();
        assert!(gone.sync().is_err() && src.sync().is_err());
        assert_eq!(
            std::fs::read_to_string(second.root.join("a.txt")).unwrap(),
            "2"
        );
    }

    #[test]
    fn a_changed_repo_url_is_fetched_from_not_the_first_one() {
        let (first, second) = (remote_with_commit(), remote_with_commit());
        std::fs::write(second.path().join("b.txt"), "moved").unwrap();
        sh(second.path(), &["add", "b.txt"]);
        commit(second.path(), &["-m", "b"]);
        let cache = tempfile::tempdir().unwrap();
        let mut src = GitSource::local(first.path(), cache.path());
        src.sync().unwrap();
        src.url = second.path().display().to_string();
        let moved = src.sync().unwrap();
        assert_eq!(
            std::fs::read_to_string(moved.root.join("b.txt")).unwrap(),
            "moved"
        );
    }

    #[test]
    fn tree_source_reads_a_commit_in_a_subfolder() {
        use crate::model::Source;
        let remote = remote_with_commit();
        let sub = remote.path().join("infra/tenants-repo");
        std::fs::create_dir_all(sub.join("tenants/nested")).unwrap();
        std::fs::write(sub.join("kftenant.toml"), "old").unwrap();
        std::fs::write(sub.join("tenants/a.yaml"), "a").unwrap();
        std::fs::write(sub.join("tenants/b.yaml"), "b").unwrap();
        std::fs::write(sub.join("tenants/nested/c.yaml"), "c").unwrap();
        sh(remote.path(), &["add", "-A"]);
        commit(remote.path(), &["-m", "two"]);
        // The working tree moves on; the source reads the commit.
        std::fs::write(sub.join("kftenant.toml"), "new").unwrap();
        let (src, _) = GitTreeSource::open(&sub, "HEAD").unwrap();
        assert_eq!(src.read("kftenant.toml").unwrap().unwrap(), "old");
        assert_eq!(src.read("tenants/b.yaml").unwrap().unwrap(), "b");
        assert_eq!(
            src.list("tenants").unwrap(),
            vec!["a.yaml".to_string(), "b.yaml".to_string()],
            "files only, sorted"
        );
        assert!(
            src.read("tenants/nested").is_none(),
            "a folder is not a file"
        );
        assert!(src.read("tenants/zz.yaml").is_none());
        assert!(src.list("policies").is_none());
        assert_eq!(src.read("tenants/nested/c.yaml").unwrap().unwrap(), "c");
    }

    #[test]
    fn missing_branch_is_an_error() {
        let remote = remote_with_commit();
        let cache = tempfile::tempdir().unwrap();
        let src = GitSource {
            branch: "nope".into(),
            ..GitSource::local(remote.path(), cache.path())
        };
        assert!(src.sync().is_err());
    }

    #[test]
    fn token_is_never_printed() {
        assert_eq!(
            format!("{:?}", GitAuth::Token("s3cret".into())),
            "Token(<redacted>)"
        );
    }

    #[test]
    fn base64_decodes_known_vectors_and_refuses_garbage() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zg").unwrap(), b"f");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert_eq!(base64_decode("Zm9v YmFy"), None);
        assert_eq!(base64_decode("Zm9vY"), None);
        assert_eq!(base64_decode("Zm-v"), None);
    }

    #[test]
    fn ssh_port_reads_the_url_as_libgit2_does() {
        for (url, port) in [
            ("ssh://git@127.0.0.1:2222/tenants", 2222),
            ("ssh://127.0.0.1:2222/tenants", 2222),
            ("ssh://git@github.com/org/tenants.git", 22),
            ("ssh+git://git@host:7999/x", 7999),
            ("git+ssh://git@host/x", 22),
            ("ssh://git@[::1]:2200/x", 2200),
            ("ssh://git@[::1]/x", 22),
            ("ssh://user:secret@host:2022/x", 2022),
            ("git@github.com:org/tenants.git", 22),
            ("[git@host:2222]:org/tenants.git", 2222),
            ("[host:2222]:tenants", 2222),
            ("[::1]:tenants", 22),
        ] {
            assert_eq!(ssh_port(url), port, "{url}");
        }
    }

    #[test]
    fn known_hosts_name_brackets_only_other_ports() {
        assert_eq!(known_hosts_name("GitHub.com", 22), "github.com");
        assert_eq!(known_hosts_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(known_hosts_name("::1", 2222), "[::1]:2222");
    }

    /// Two ed25519 host keys (from ssh-keygen), base64 of the wire form.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIFFbQsltbqOUHlJKiXtceGKVHwmWNpeGMk8CD/RsGGZH";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIMp6pph9/TnOY4z5w/xSKvggSM0KJdA9YeXFI0I1yK9u";

    fn status(known_hosts: &str, name: &str, key: &str) -> HostKeyStatus {
        host_key_status(known_hosts, name, &base64_decode(key).unwrap())
    }

    #[test]
    fn host_key_lookup_keys_by_host_and_port() {
        use HostKeyStatus::*;
        let file = format!(
            "# comment\n\n[127.0.0.1]:2222 ssh-ed25519 {KEY_A} test\n\
             127.0.0.1 ssh-ed25519 {KEY_B}\n"
        );
        assert_eq!(status(&file, "[127.0.0.1]:2222", KEY_A), Known);
        assert_eq!(status(&file, "[127.0.0.1]:2222", KEY_B), Changed);
        // The port-22 entry says nothing of other ports, and the other way round.
        assert_eq!(status(&file, "[127.0.0.1]:2223", KEY_B), Unknown);
        assert_eq!(status(&file, "127.0.0.1", KEY_B), Known);
        assert_eq!(status(&file, "127.0.0.1", KEY_A), Changed);
        assert_eq!(status(&file, "[127.0.0.2]:2222", KEY_A), Unknown);
        assert_eq!(status("", "127.0.0.1", KEY_A), Unknown);
    }

    #[test]
    fn host_key_lookup_takes_lists_wildcards_negation_and_markers() {
        use HostKeyStatus::*;
        let file = format!(
            "git.example.com,Git.Other.COM ssh-ed25519 {KEY_A}\n\
             *.corp.example,!evil.corp.example ssh-ed25519 {KEY_A}\n\
             [gi?.example.org]:* ssh-ed25519 {KEY_A}\n\
             @cert-authority * ssh-ed25519 {KEY_B}\n\
             @revoked old.example.com ssh-ed25519 {KEY_B}\n\
             old.example.com ssh-ed25519 {KEY_B}\n\
             @future * ssh-ed25519 {KEY_B}\n\
             broken-line-without-key\n"
        );
        assert_eq!(status(&file, "git.other.com", KEY_A), Known);
        assert_eq!(status(&file, "a.b.corp.example", KEY_A), Known);
        assert_eq!(status(&file, "evil.corp.example", KEY_A), Unknown);
        assert_eq!(status(&file, "[git.example.org]:2222", KEY_A), Known);
        assert_eq!(status(&file, "git.example.org", KEY_A), Unknown);
        // A certificate authority's key is not a host key.
        assert_eq!(status(&file, "anything.example", KEY_B), Unknown);
        assert_eq!(status(&file, "old.example.com", KEY_B), Revoked);
    }

    #[test]
    fn host_key_lookup_matches_names_hashed_by_ssh_keygen() {
        use HostKeyStatus::*;
        // `ssh-keygen -H` of a line for [git.example.com]:2222 (OpenSSH 9.2).
        let file = format!(
            "|1|hjng7qCH6zfv/ivNYjddfulAWWQ=|hQ+OTEAInBWN2Ultg2ZrcVvJRq8= ssh-ed25519 {KEY_A}\n"
        );
        assert_eq!(status(&file, "[git.example.com]:2222", KEY_A), Known);
        assert_eq!(status(&file, "[git.example.com]:2222", KEY_B), Changed);
        assert_eq!(status(&file, "git.example.com", KEY_A), Unknown);
        assert_eq!(
            status("|1|garbage ssh-ed25519 AAAA\n", "git.example.com", KEY_A),
            Unknown
        );
    }

    #[test]
    fn wildcards_match_like_openssh() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.example.com", "example.com", false),
            ("*b*b*", "abcbd", true),
            ("", "a", false),
        ] {
            assert_eq!(
                wildcard_match(pattern, text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }
}
