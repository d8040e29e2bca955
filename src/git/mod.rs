//! The tenant repository in git.
//!
//! [`GitSource`] is the daemon's: a git remote, cloned once into a cache
//! folder and fetched on every cycle. [`tree::GitTreeSource`] reads one
//! commit's files for `plan --base`; [`verify`] checks commit signatures;
//! [`head_commit`] names the commit a working tree has checked out.
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

mod known_hosts;
pub mod tree;
pub mod verify;

pub use tree::GitTreeSource;

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, FetchOptions, RemoteCallbacks, Repository};
use known_hosts::{HostKeyStatus, known_host, known_hosts_name};
use std::path::{Path, PathBuf};
use verify::AllowedSigners;

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
    /// Signers were given and the head commit is not signed by one of them.
    #[error("commit {commit} refused: {reason}")]
    Unverified {
        /// The refused commit.
        commit: String,
        /// Why.
        reason: verify::Refusal,
    },
    /// A commit asked for is not the branch head nor an ancestor of it
    /// (the branch was force-pushed past it), or is not in the clone at all.
    #[error("commit {commit} is not on branch `{branch}` (head {head}): force-pushed away?")]
    NotOnBranch {
        /// The commit asked for.
        commit: String,
        /// The branch followed.
        branch: String,
        /// Its head.
        head: String,
    },
}

pub(crate) fn git(operation: &'static str) -> impl FnOnce(git2::Error) -> SourceError {
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

    /// The files of `commit` from the clone's objects (the checkout is not
    /// touched), provided it is `head` (a fetched branch head) or an
    /// ancestor of it, and, with `signers`, signed by one of them. Blocking.
    ///
    /// For a daemon that restarts on a broken head: the last good commit it
    /// recorded is healed from only while the branch still contains it.
    pub fn commit_tree(
        &self,
        commit: &str,
        head: &str,
        signers: Option<&AllowedSigners>,
    ) -> Result<GitTreeSource, SourceError> {
        let repo = Repository::open(&self.cache_dir).map_err(git("open the clone"))?;
        let not_on_branch = || SourceError::NotOnBranch {
            commit: commit.to_string(),
            branch: self.branch.clone(),
            head: head.to_string(),
        };
        let oid = git2::Oid::from_str(commit).map_err(|_| not_on_branch())?;
        let head_oid = git2::Oid::from_str(head).map_err(git("parse the head commit"))?;
        let reachable = oid == head_oid
            || (repo.find_commit(oid).is_ok()
                && repo
                    .graph_descendant_of(head_oid, oid)
                    .map_err(git("walk the history"))?);
        if !reachable {
            return Err(not_on_branch());
        }
        if let Some(signers) = signers {
            signers
                .verify_commit(&repo, oid)
                .map_err(|reason| SourceError::Unverified {
                    commit: commit.to_string(),
                    reason,
                })?;
        }
        GitTreeSource::at(repo, oid, self.path.clone().unwrap_or_default())
    }
}

/// The commit checked out in the git working tree rooted at `dir` (`dir`
/// itself, not a folder above it), when `dir` is one: what `plan` records as
/// its source commit.
pub fn head_commit(dir: &Path) -> Option<String> {
    let repo = Repository::open(dir).ok()?;
    let oid = repo.head().ok()?.target()?;
    Some(oid.to_string())
}

/// A commit's committer time and the first line of its message, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMeta {
    /// Committer time, Unix seconds.
    pub time_unix: i64,
    /// The first line of the message, cut at 200 characters.
    pub subject: String,
}

/// The [`CommitMeta`] of `commit` in the git repository that holds `dir`
/// (the checkout or a folder in it); `None` when it cannot be read.
pub fn commit_meta(dir: &Path, commit: &str) -> Option<CommitMeta> {
    let repo = Repository::discover(dir).ok()?;
    let c = repo.find_commit(git2::Oid::from_str(commit).ok()?).ok()?;
    let subject = String::from_utf8_lossy(c.summary_bytes().unwrap_or_default());
    Some(CommitMeta {
        time_unix: c.time().seconds(),
        subject: subject.chars().take(200).collect(),
    })
}

/// `url` without the user information it may carry (`https://user:token@host/x`
/// becomes `https://host/x`), for display; and the secret in it, to redact
/// wherever an error message might repeat it: the password, or over HTTP(S)
/// a lone user name (a token can stand there). An SSH user name (`git`) is
/// no secret.
pub fn url_without_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let userinfo = &rest[..at];
    let secret = match userinfo.split_once(':') {
        Some((_, password)) => Some(password),
        None if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            Some(userinfo)
        }
        None => None,
    };
    (
        format!("{scheme}://{}", &rest[at + 1..]),
        secret.filter(|s| !s.is_empty()).map(String::from),
    )
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// `git commit -q ARGS` as a fixed test author.
    pub(crate) fn commit(dir: &Path, args: &[&str]) {
        let mut all = vec!["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q"];
        all.extend(args);
        sh(dir, &all);
    }

    pub(crate) fn sh(dir: &Path, args: &[&str]) {
        let st = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git runs");
        assert!(st.success(), "git {args:?}");
    }

    pub(crate) fn remote_with_commit() -> tempfile::TempDir {
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
    fn a_recorded_commit_is_read_only_while_the_branch_contains_it() {
        let remote = remote_with_commit();
        std::fs::write(remote.path().join("a.txt"), "good").unwrap();
        sh(remote.path(), &["add", "a.txt"]);
        commit(remote.path(), &["-m", "good"]);
        let cache = tempfile::tempdir().unwrap();
        let src = GitSource::local(remote.path(), cache.path());
        let good = src.sync().unwrap().commit;
        std::fs::write(remote.path().join("a.txt"), "broken").unwrap();
        commit(remote.path(), &["-am", "broken"]);
        let head = src.sync().unwrap().commit;
        // An ancestor of the head: read from the objects, the checkout untouched.
        let tree = src.commit_tree(&good, &head, None).unwrap();
        use crate::model::source::Source;
        assert_eq!(tree.read("a.txt").unwrap().unwrap(), "good");
        assert_eq!(
            src.commit_tree(&head, &head, None)
                .unwrap()
                .read("a.txt")
                .unwrap()
                .unwrap(),
            "broken"
        );
        // The branch is rewritten without it: refused, though the clone still has it.
        sh(remote.path(), &["checkout", "-q", "--orphan", "rewritten"]);
        commit(remote.path(), &["-m", "history rewritten"]);
        sh(remote.path(), &["branch", "-q", "-M", "rewritten", "main"]);
        let rewritten = src.sync().unwrap().commit;
        match src.commit_tree(&good, &rewritten, None) {
            Err(SourceError::NotOnBranch { commit, .. }) => assert_eq!(commit, good),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a commit off the branch was read"),
        }
        // Not in the clone at all, or not a commit id.
        for unknown in ["0123456789abcdef0123456789abcdef01234567", "nonsense"] {
            assert!(matches!(
                src.commit_tree(unknown, &rewritten, None),
                Err(SourceError::NotOnBranch { .. })
            ));
        }
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
    fn credentials_are_taken_out_of_urls() {
        let cases = [
            (
                "https://x-access-token:s3cr3t@github.com/acme/t.git",
                "https://github.com/acme/t.git",
                Some("s3cr3t"),
            ),
            (
                "https://ghp_token@github.com/acme/t",
                "https://github.com/acme/t",
                Some("ghp_token"),
            ),
            (
                "ssh://git@example.com:2222/t.git",
                "ssh://example.com:2222/t.git",
                None,
            ),
            (
                "ssh://git:pw@example.com/t.git",
                "ssh://example.com/t.git",
                Some("pw"),
            ),
            (
                "https://github.com/acme/t@v1",
                "https://github.com/acme/t@v1",
                None,
            ),
            (
                "git@github.com:acme/t.git",
                "git@github.com:acme/t.git",
                None,
            ),
            ("/srv/git/tenants", "/srv/git/tenants", None),
        ];
        for (url, shown, secret) in cases {
            assert_eq!(
                url_without_credentials(url),
                (shown.to_string(), secret.map(String::from)),
                "{url}"
            );
        }
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
}
