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

use git2::build::{CheckoutBuilder, RepoBuilder};
use git2::{Cred, FetchOptions, RemoteCallbacks, Repository};
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
}

fn git(operation: &'static str) -> impl FnOnce(git2::Error) -> SourceError {
    move |source| SourceError::Git { operation, source }
}

impl GitSource {
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        match &self.auth {
            GitAuth::None => {}
            GitAuth::Token(token) => {
                cb.credentials(move |_, _, _| Cred::userpass_plaintext("x-access-token", token));
            }
            GitAuth::Ssh { key, known_hosts } => {
                cb.credentials(move |_, user, _| {
                    Cred::ssh_key(user.unwrap_or("git"), None, key, None)
                });
                cb.certificate_check(move |cert, host| {
                    let Some(hostkey) = cert.as_hostkey().and_then(|h| h.hostkey()) else {
                        return Err(git2::Error::from_str(
                            "the server presented no SSH host key",
                        ));
                    };
                    if known_host(known_hosts, host, hostkey) {
                        Ok(git2::CertificateCheckStatus::CertificateOk)
                    } else {
                        Err(git2::Error::from_str(&format!(
                            "host key of {host} is not in {}",
                            known_hosts.display()
                        )))
                    }
                });
            }
        }
        cb
    }

    /// Clones (first time) or fetches, then checks out the branch head. Blocking.
    pub fn sync(&self) -> Result<Checkout, SourceError> {
        let dir = &self.cache_dir;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(self.callbacks());
        let repo = match Repository::open(dir) {
            Ok(r) => {
                let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
                r.find_remote("origin")
                    .map_err(git("find remote"))?
                    .fetch(&[refspec], Some(&mut fo), None)
                    .map_err(git("fetch"))?;
                r
            }
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|e| SourceError::Git {
                    operation: "create cache dir",
                    source: git2::Error::from_str(&e.to_string()),
                })?;
                RepoBuilder::new()
                    .fetch_options(fo)
                    .branch(&self.branch)
                    .clone(&self.url, dir)
                    .map_err(git("clone"))?
            }
        };
        let reference = format!("refs/remotes/origin/{}", self.branch);
        let oid = repo
            .refname_to_id(&reference)
            .map_err(|_| SourceError::NoBranch(self.branch.clone()))?;
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

/// True when `known_hosts` lists `host` with exactly this key (plain host
/// names; hashed entries are not supported and never match).
fn known_host(known_hosts: &Path, host: &str, key: &[u8]) -> bool {
    let Ok(text) = std::fs::read_to_string(known_hosts) else {
        return false;
    };
    let encoded = base64_encode(key);
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| {
            let mut parts = l.split_whitespace();
            let (Some(hosts), Some(_kind), Some(k)) = (parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            k == encoded
                && hosts
                    .split(',')
                    .any(|h| h == host || h.trim_start_matches('[').split(']').next() == Some(host))
        })
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The files of one commit of a local repository, read straight from git's
/// object database (no checkout): the base side of a pull-request plan.
pub struct GitTreeSource {
    repo: Repository,
    tree: git2::Oid,
    prefix: String,
}

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
        Ok((GitTreeSource { repo, tree, prefix }, id))
    }

    fn full(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}

impl crate::model::Source for GitTreeSource {
    fn read(&self, path: &str) -> Option<Result<String, String>> {
        let tree = self.repo.find_tree(self.tree).ok()?;
        let entry = tree.get_path(Path::new(&self.full(path))).ok()?;
        let blob = self.repo.find_blob(entry.id()).ok()?;
        Some(String::from_utf8(blob.content().to_vec()).map_err(|e| e.to_string()))
    }

    fn list(&self, dir: &str) -> Option<Vec<String>> {
        let tree = self.repo.find_tree(self.tree).ok()?;
        let sub = tree
            .get_path(Path::new(&self.full(dir)))
            .ok()?
            .to_object(&self.repo)
            .ok()?
            .into_tree()
            .ok()?;
        let mut names: Vec<String> = sub
            .iter()
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .filter_map(|e| e.name().map(String::from))
            .collect();
        names.sort();
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
        sh(
            remote.path(),
            &[
                "-c",
                "user.email=t@e",
                "-c",
                "user.name=t",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "one",
            ],
        );
        remote
    }

    #[test]
    fn clone_then_fetch_follows_the_branch_and_keeps_the_checkout_on_failure() {
        let remote = remote_with_commit();
        std::fs::write(remote.path().join("a.txt"), "1").unwrap();
        sh(remote.path(), &["add", "a.txt"]);
        sh(
            remote.path(),
            &[
                "-c",
                "user.email=t@e",
                "-c",
                "user.name=t",
                "commit",
                "-q",
                "-m",
                "two",
            ],
        );
        let cache = tempfile::tempdir().unwrap();
        let src = GitSource {
            url: remote.path().display().to_string(),
            branch: "main".into(),
            path: None,
            cache_dir: cache.path().join("repo"),
            auth: GitAuth::None,
        };
        let first = src.sync().unwrap();
        assert_eq!(
            std::fs::read_to_string(first.root.join("a.txt")).unwrap(),
            "1"
        );
        std::fs::write(remote.path().join("a.txt"), "2").unwrap();
        sh(
            remote.path(),
            &[
                "-c",
                "user.email=t@e",
                "-c",
                "user.name=t",
                "commit",
                "-q",
                "-am",
                "three",
            ],
        );
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
    fn missing_branch_is_an_error() {
        let remote = remote_with_commit();
        let cache = tempfile::tempdir().unwrap();
        let src = GitSource {
            url: remote.path().display().to_string(),
            branch: "nope".into(),
            path: None,
            cache_dir: cache.path().join("repo"),
            auth: GitAuth::None,
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
    fn base64_matches_known_vectors() {
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"f"), "Zg==");
    }
}
