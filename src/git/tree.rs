//! The files of one commit, read straight from git's object database (no
//! checkout): the base side of a pull-request plan (`plan --base`).

use super::{SourceError, git};
use crate::model::source::{MAX_DEPTH, MAX_FILE_BYTES, ReadError, Source, Tree};
use git2::Repository;
use std::collections::HashMap;
use std::path::Path;

/// The files of one commit of a local repository, read straight from git's
/// object database (no checkout): the base side of a pull-request plan.
/// Symbolic links are followed as on disk, and only inside the repository
/// root (see `crate::model::source`).
pub struct GitTreeSource {
    repo: Repository,
    tree: git2::Oid,
    prefix: String,
    /// Entries of each folder read so far, by full folder path.
    /// A tree object is parsed once, not once per file in it (10,000 tenants:
    /// 54 s of re-parsing `tenants/` otherwise).
    folders: std::cell::RefCell<HashMap<String, Option<Folder>>>,
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    File,
    Link,
    Dir,
}

type Folder = HashMap<String, (git2::Oid, Kind)>;

/// Links followed one after another before giving up (a cycle of links).
const MAX_LINK_HOPS: usize = 16;

/// `path` with `.` and `..` resolved, relative to the root; `None` when it
/// climbs above the root.
fn normalize(path: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            p => out.push(p.to_string()),
        }
    }
    Some(out)
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

    /// The files of `commit` in `repo`, under the folder `prefix` ("" for
    /// the root).
    pub fn at(
        repo: Repository,
        commit: git2::Oid,
        prefix: String,
    ) -> Result<GitTreeSource, SourceError> {
        let tree = repo
            .find_commit(commit)
            .map_err(git("find commit"))?
            .tree_id();
        Ok(GitTreeSource {
            repo,
            tree,
            prefix: prefix.trim_matches('/').to_string(),
            folders: Default::default(),
        })
    }

    fn full(&self, parts: &[String]) -> String {
        let rel = parts.join("/");
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel,
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
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
                    let kind = match e.kind()? {
                        git2::ObjectType::Tree => Kind::Dir,
                        git2::ObjectType::Blob if e.filemode() == 0o120_000 => Kind::Link,
                        git2::ObjectType::Blob => Kind::File,
                        _ => return None,
                    };
                    Some((e.name()?.to_string(), (e.id(), kind)))
                })
                .collect();
            Some(entries)
        });
        f(folder.as_ref()?)
    }

    fn entry(&self, dir: &[String], name: &str) -> Option<(git2::Oid, Kind)> {
        self.with_folder(&self.full(dir), |f| f.get(name).copied())
    }

    /// Follows `path` (relative to the root) through links, as the file
    /// system would: the object and kind it ends at, `None` when nothing is
    /// there, an error when a link leads outside the root.
    fn resolve(&self, path: &str) -> Result<Option<(git2::Oid, Kind, Vec<String>)>, ReadError> {
        let mut todo: Vec<String> = normalize(path).ok_or(ReadError::OutsideRoot)?;
        let mut hops = 0;
        'restart: loop {
            let mut dir: Vec<String> = Vec::new();
            for (i, name) in todo.iter().enumerate() {
                let Some((id, kind)) = self.entry(&dir, name) else {
                    return Ok(None);
                };
                let last = i + 1 == todo.len();
                match kind {
                    Kind::Link => {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(ReadError::Io("too many levels of symbolic links".into()));
                        }
                        let target = self
                            .repo
                            .find_blob(id)
                            .map_err(|e| ReadError::Io(e.message().into()))?;
                        let target = String::from_utf8_lossy(target.content()).to_string();
                        if target.starts_with('/') {
                            return Err(ReadError::OutsideRoot);
                        }
                        let joined =
                            format!("{}/{target}/{}", dir.join("/"), todo[i + 1..].join("/"));
                        todo = normalize(&joined).ok_or(ReadError::OutsideRoot)?;
                        continue 'restart;
                    }
                    _ if last => return Ok(Some((id, kind, todo.clone()))),
                    Kind::Dir => dir.push(name.clone()),
                    Kind::File => return Ok(None),
                }
            }
            return Ok(None);
        }
    }

    /// Walks the folder at `real` (links resolved), listing its entries
    /// under `shown` (the path the walk came by); `seen` holds the real
    /// folders the walk is inside.
    fn walk(
        &self,
        real: &[String],
        shown: &[String],
        seen: &mut std::collections::BTreeSet<Vec<String>>,
        tree: &mut Tree,
    ) {
        if tree.is_full() {
            return;
        }
        if shown.len() > MAX_DEPTH {
            tree.truncated = Some(format!(
                "`{}` is nested more than {MAX_DEPTH} folders deep; it was not read",
                shown.join("/")
            ));
            return;
        }
        // A link back to a folder the walk is inside would loop; other links
        // list the files again under their path (and a tenant read twice is
        // reported as a duplicate).
        if !seen.insert(real.to_vec()) {
            return;
        }
        let Some(mut names) = self.with_folder(&self.full(real), |f| {
            Some(
                f.iter()
                    .map(|(n, (_, k))| (n.clone(), *k))
                    .collect::<Vec<_>>(),
            )
        }) else {
            return;
        };
        names.sort();
        for (name, kind) in names.into_iter().filter(|(n, _)| !n.starts_with('.')) {
            let mut path = shown.to_vec();
            path.push(name.clone());
            let mut target = real.to_vec();
            target.push(name);
            let target = match kind {
                Kind::Link => match self.resolve(&target.join("/")) {
                    Ok(Some((_, Kind::Dir, resolved))) => Some(resolved),
                    // Listed as a file: reading it says where it leads (or that
                    // it leads nowhere).
                    _ => None,
                },
                Kind::Dir => Some(target),
                Kind::File => None,
            };
            match target {
                Some(dir) => {
                    if !tree.add_dir(path.join("/")) {
                        return;
                    }
                    self.walk(&dir, &path, seen, tree);
                    seen.remove(&dir);
                }
                None => {
                    if !tree.add_file(path.join("/")) {
                        return;
                    }
                }
            }
        }
    }
}

impl Source for GitTreeSource {
    fn read(&self, path: &str) -> Option<Result<String, ReadError>> {
        let (id, kind, _) = match self.resolve(path) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        if kind != Kind::File {
            return None;
        }
        let blob = self.repo.find_blob(id).ok()?;
        if blob.size() as u64 > MAX_FILE_BYTES {
            return Some(Err(ReadError::TooLarge {
                bytes: blob.size() as u64,
                limit: MAX_FILE_BYTES,
            }));
        }
        Some(crate::model::source::utf8(blob.content().to_vec()))
    }

    fn tree(&self) -> Tree {
        let mut tree = Tree::default();
        self.walk(&[], &[], &mut Default::default(), &mut tree);
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::tests::{commit, remote_with_commit, sh};

    #[test]
    fn tree_source_reads_a_commit_in_a_subfolder() {
        let remote = remote_with_commit();
        let sub = remote.path().join("infra/tenants-repo");
        std::fs::create_dir_all(sub.join("tenants/nested")).unwrap();
        std::fs::write(sub.join("kftenant.toml"), "old").unwrap();
        std::fs::write(sub.join("tenants/a.yaml"), "a").unwrap();
        std::fs::write(sub.join("tenants/b.yaml"), "b").unwrap();
        std::fs::write(sub.join("tenants/nested/c.yaml"), "c").unwrap();
        std::fs::write(sub.join("tenants/.gitkeep"), "").unwrap();
        std::fs::write(remote.path().join("secret.txt"), "TOP SECRET").unwrap();
        // A link that stays inside, one to a folder inside, and two that leave
        // the root (to the repository above it, and to an absolute path).
        std::os::unix::fs::symlink("a.yaml", sub.join("tenants/link.yaml")).unwrap();
        std::os::unix::fs::symlink("nested", sub.join("tenants/alias")).unwrap();
        std::os::unix::fs::symlink("../../../secret.txt", sub.join("tenants/up.yaml")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", sub.join("tenants/abs.yaml")).unwrap();
        sh(remote.path(), &["add", "-A"]);
        commit(remote.path(), &["-m", "two"]);
        // The working tree moves on; the source reads the commit.
        std::fs::write(sub.join("kftenant.toml"), "new").unwrap();
        let (src, _) = GitTreeSource::open(&sub, "HEAD").unwrap();
        assert_eq!(src.read("kftenant.toml").unwrap().unwrap(), "old");
        assert_eq!(src.read("tenants/b.yaml").unwrap().unwrap(), "b");
        assert_eq!(src.read("tenants/nested/c.yaml").unwrap().unwrap(), "c");
        assert_eq!(src.read("tenants/link.yaml").unwrap().unwrap(), "a");
        assert_eq!(src.read("tenants/alias/c.yaml").unwrap().unwrap(), "c");
        for outside in ["tenants/up.yaml", "tenants/abs.yaml"] {
            let e = src.read(outside).unwrap().unwrap_err();
            assert_eq!(e, ReadError::OutsideRoot, "{outside}");
            assert!(!e.to_string().contains("SECRET"));
        }
        assert!(
            src.read("tenants/nested").is_none(),
            "a folder is not a file"
        );
        assert!(src.read("tenants/zz.yaml").is_none());
        let tree = src.tree();
        assert_eq!(
            tree.files.iter().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "kftenant.toml",
                "tenants/a.yaml",
                "tenants/abs.yaml",
                "tenants/alias/c.yaml",
                "tenants/b.yaml",
                "tenants/link.yaml",
                "tenants/nested/c.yaml",
                "tenants/up.yaml",
            ],
            "hidden files left out, links to folders walked"
        );
        assert!(tree.dirs.contains("tenants") && !tree.dirs.contains("policies"));
    }
}
