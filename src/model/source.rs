//! Where a repository's files come from: a folder on disk ([`DirSource`]),
//! memory ([`MemSource`]), or a commit's tree (`crate::git::GitTreeSource`).
//!
//! # Guarantees
//! - Nothing outside the repository root is ever read: a symbolic link that
//!   stays inside is followed, any other is a [`ReadError::OutsideRoot`],
//!   whose message never contains what the link points at.
//! - Bounded: a file over [`MAX_FILE_BYTES`] is not read
//!   ([`ReadError::TooLarge`]); a tree over [`MAX_FILES`] files and folders,
//!   [`MAX_PATH_BYTES`] bytes of paths or [`MAX_DEPTH`] folders deep is
//!   reported, and the walk stops there (links to folders list them again,
//!   so without the stop a few links can make a listing exponential).
//! - Hidden files and folders (a name starting with `.`: `.git`, `.github`,
//!   `.gitkeep`) are not part of the [`Tree`]; they can still be read by path.

use crate::diag::{Diagnostic, Pos};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files larger than this are not read (tenant files and policies are a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// A tree with more files and folders than this is not walked further.
pub const MAX_FILES: usize = 100_000;
/// A tree whose paths add up to more bytes than this is not walked further
/// (100,000 paths of 160 bytes; a real repository has a few hundred KiB).
pub const MAX_PATH_BYTES: usize = 16 << 20;
/// Folders nested deeper than this are not walked.
pub const MAX_DEPTH: usize = 32;

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A symbolic link whose target is outside the repository root.
    #[error("is a symbolic link that leads outside the repository; kftenant does not follow it")]
    OutsideRoot,
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("is {bytes} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("is not UTF-8 text (byte 0x{byte:02x} at line {}, column {})", pos.line, pos.column)]
    NotText {
        /// Where the first byte that is not part of a UTF-8 character is
        /// (the column counts the characters before it on its line).
        pos: Pos,
        /// That byte.
        byte: u8,
    },
    /// The repository's files read so far already add up to the limit.
    #[error(
        "not read: the repository's files add up to more than {limit} bytes, over kftenant's limit"
    )]
    RepositoryTooLarge {
        /// The limit.
        limit: u64,
    },
    /// Any other I/O error.
    #[error("cannot be read: {0}")]
    Io(String),
}

impl ReadError {
    /// The problem, at the place in the file when there is one.
    pub fn diagnostic(&self, path: &str) -> Diagnostic {
        match self {
            ReadError::NotText { pos, byte } => Diagnostic::at(
                path,
                *pos,
                format!("not UTF-8 text: byte 0x{byte:02x} is not part of a UTF-8 character"),
            )
            .with_hint("save the file as UTF-8; kftenant does not read Latin-1 or UTF-16"),
            other => Diagnostic::file(path, other.to_string()),
        }
    }
}

/// `bytes` as text, or where they stop being UTF-8.
pub(crate) fn utf8(bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = std::str::from_utf8(&bytes[..at]).expect("valid up to here");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ReadError::NotText {
            pos: Pos::new(line, column),
            byte: bytes[at],
        }
    })
}

/// The files and folders of a repository, as paths relative to its root
/// with `/` separators, hidden ones left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// Every file.
    pub files: BTreeSet<String>,
    /// Every folder (an empty one too).
    pub dirs: BTreeSet<String>,
    /// Why the walk stopped early, if it did.
    pub truncated: Option<String>,
    /// Bytes of the paths listed so far.
    path_bytes: usize,
}

impl Tree {
    /// Records a file, unless the tree is full.
    pub(crate) fn add_file(&mut self, path: String) -> bool {
        if !self.room_for(&path) {
            return false;
        }
        self.files.insert(path);
        true
    }

    /// Records a folder, unless the tree is full.
    pub(crate) fn add_dir(&mut self, path: String) -> bool {
        if !self.room_for(&path) {
            return false;
        }
        self.dirs.insert(path);
        true
    }

    /// True once the walk has stopped: nothing more is listed.
    pub fn is_full(&self) -> bool {
        self.truncated.is_some()
    }

    fn room_for(&mut self, path: &str) -> bool {
        if self.is_full() {
            return false;
        }
        if self.files.len() + self.dirs.len() >= MAX_FILES {
            self.truncated = Some(format!(
                "the repository has more than {MAX_FILES} files and folders; the rest were not read"
            ));
            return false;
        }
        if self.path_bytes + path.len() > MAX_PATH_BYTES {
            self.truncated = Some(format!(
                "the repository's paths add up to more than {MAX_PATH_BYTES} bytes; the rest were not read"
            ));
            return false;
        }
        self.path_bytes += path.len();
        true
    }
}

/// Where the repository's files come from.
pub trait Source {
    /// The text of a file (path relative to the root, `/`-separated), or
    /// `None` if there is no such file.
    fn read(&self, path: &str) -> Option<Result<String, ReadError>>;
    /// Every file and folder, hidden ones left out.
    fn tree(&self) -> Tree;
}

/// True for a hidden path component (`.git`, `.gitkeep`).
fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Joins a relative path and a name.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A repository checked out on disk.
pub struct DirSource {
    root: PathBuf,
    /// The root with every link resolved, for the "inside" check.
    canonical: Option<PathBuf>,
}

impl DirSource {
    /// The repository at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DirSource {
        let root = root.into();
        let canonical = std::fs::canonicalize(&root).ok();
        DirSource { root, canonical }
    }

    /// `path` with every link resolved, when it exists and stays inside the root.
    fn resolve_inside(&self, path: &Path) -> Result<Option<PathBuf>, ReadError> {
        let Ok(real) = std::fs::canonicalize(path) else {
            return Ok(None);
        };
        match &self.canonical {
            Some(root) if real.starts_with(root) => Ok(Some(real)),
            _ => Err(ReadError::OutsideRoot),
        }
    }

    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        depth: usize,
        seen: &mut BTreeSet<PathBuf>,
        tree: &mut Tree,
    ) {
        if tree.is_full() {
            return;
        }
        if depth > MAX_DEPTH {
            tree.truncated = Some(format!(
                "`{rel}` is nested more than {MAX_DEPTH} folders deep; it was not read"
            ));
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .filter(|(name, _)| !hidden(name))
            .collect();
        names.sort();
        for (name, path) in names {
            let rel = join(rel, &name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let target = if meta.file_type().is_symlink() {
                match self.resolve_inside(&path) {
                    // Listed, so reading it reports where it leads: outside.
                    Err(_) => {
                        if !tree.add_file(rel) {
                            return;
                        }
                        continue;
                    }
                    Ok(None) => continue, // dangling
                    Ok(Some(real)) => real,
                }
            } else {
                path.clone()
            };
            if target.is_dir() {
                // A link back to a folder the walk is inside would loop; other
                // links list the files again under their path (a tenant read
                // twice is reported as a duplicate).
                let real = std::fs::canonicalize(&target).unwrap_or(target.clone());
                if seen.insert(real.clone()) {
                    if !tree.add_dir(rel.clone()) {
                        return;
                    }
                    self.walk(&target, &rel, depth + 1, seen, tree);
                    seen.remove(&real);
                }
            } else if !tree.add_file(rel) {
                return;
            }
        }
    }
}

impl Source for DirSource {
    fn read(&self, path: &str) -> Option<Result<String, ReadError>> {
        let full = self.root.join(path);
        let real = match self.resolve_inside(&full) {
            Ok(Some(real)) => real,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let meta = std::fs::metadata(&real).ok()?;
        if !meta.is_file() {
            return None;
        }
        if meta.len() > MAX_FILE_BYTES {
            return Some(Err(ReadError::TooLarge {
                bytes: meta.len(),
                limit: MAX_FILE_BYTES,
            }));
        }
        Some(match std::fs::read(&real) {
            Ok(bytes) => utf8(bytes),
            Err(e) => Err(ReadError::Io(e.kind().to_string())),
        })
    }

    fn tree(&self) -> Tree {
        let mut tree = Tree::default();
        let mut seen = BTreeSet::new();
        if let Some(root) = &self.canonical {
            seen.insert(root.clone());
        }
        self.walk(&self.root, "", 0, &mut seen, &mut tree);
        tree
    }
}

/// A repository held in memory (tests, and callers that read files another way).
#[derive(Debug, Default, Clone)]
pub struct MemSource(pub BTreeMap<String, String>);

impl MemSource {
    /// Adds or replaces a file. A hidden file (`tenants/.keep`) makes its folder exist.
    #[must_use]
    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.0.insert(path.to_string(), text.to_string());
        self
    }
}

impl Source for MemSource {
    fn read(&self, path: &str) -> Option<Result<String, ReadError>> {
        self.0.get(path).cloned().map(Ok)
    }

    fn tree(&self) -> Tree {
        let mut tree = Tree::default();
        for path in self.0.keys() {
            let parts: Vec<&str> = path.split('/').collect();
            let (name, dirs) = parts.split_last().expect("split yields one part");
            let mut dir = String::new();
            let mut visible = true;
            for d in dirs {
                visible &= !hidden(d);
                dir = join(&dir, d);
                if visible && !tree.dirs.contains(&dir) {
                    tree.add_dir(dir.clone());
                }
            }
            if visible && !hidden(name) {
                tree.add_file(path.clone());
            }
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_source_walks_folders_follows_inner_links_and_refuses_outer_ones() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "TOP SECRET").unwrap();
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        std::fs::create_dir_all(r.join("tenants/risk")).unwrap();
        std::fs::create_dir_all(r.join(".github/workflows")).unwrap();
        std::fs::write(r.join("tenants/risk/a.yaml"), "a").unwrap();
        std::fs::write(r.join("tenants/.gitkeep"), "").unwrap();
        std::fs::write(r.join(".github/workflows/ci.yml"), "x").unwrap();
        std::os::unix::fs::symlink(r.join("tenants/risk/a.yaml"), r.join("tenants/b.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), r.join("tenants/c.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("tenants/out")).unwrap();
        // A link back to the root must not loop.
        std::os::unix::fs::symlink(r, r.join("tenants/loop")).unwrap();
        let src = DirSource::new(r);
        let tree = src.tree();
        assert_eq!(
            tree.files.iter().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "tenants/b.yaml",
                "tenants/c.yaml",
                "tenants/out",
                "tenants/risk/a.yaml"
            ]
        );
        assert!(tree.dirs.contains("tenants/risk"));
        assert_eq!(src.read("tenants/b.yaml").unwrap().unwrap(), "a");
        for outer in ["tenants/c.yaml", "tenants/out/secret"] {
            let e = src.read(outer).unwrap().unwrap_err();
            assert_eq!(e, ReadError::OutsideRoot);
            assert!(!e.to_string().contains("SECRET"));
        }
        assert!(src.read("tenants/nope.yaml").is_none());
        assert!(src.read("tenants").is_none(), "a folder is not a file");
    }

    #[test]
    fn links_that_multiply_the_tree_stop_at_the_limit() {
        // d0 holds two links to d1, d1 two to d2, ...: 2^17 listings of
        // d17's file, unless the walk stops at MAX_FILES entries.
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        let depth = 17;
        for i in 0..=depth {
            std::fs::create_dir_all(r.join(format!("d{i}"))).unwrap();
        }
        std::fs::write(r.join(format!("d{depth}/t.yaml")), "x").unwrap();
        for i in 0..depth {
            for l in ["a", "b"] {
                std::os::unix::fs::symlink(
                    r.join(format!("d{}", i + 1)),
                    r.join(format!("d{i}/{l}")),
                )
                .unwrap();
            }
        }
        let tree = DirSource::new(r).tree();
        assert_eq!(tree.files.len() + tree.dirs.len(), MAX_FILES);
        assert_eq!(
            tree.truncated.as_deref(),
            Some("the repository has more than 100000 files and folders; the rest were not read")
        );
    }

    #[test]
    fn large_and_binary_files_are_not_read() {
        let repo = tempfile::tempdir().unwrap();
        let big = vec![b'a'; (MAX_FILE_BYTES + 1) as usize];
        std::fs::write(repo.path().join("big.json"), big).unwrap();
        std::fs::write(repo.path().join("bin.json"), [0xff, 0xfe]).unwrap();
        let src = DirSource::new(repo.path());
        assert!(matches!(
            src.read("big.json"),
            Some(Err(ReadError::TooLarge { .. }))
        ));
        assert_eq!(
            src.read("bin.json"),
            Some(Err(ReadError::NotText {
                pos: Pos::new(1, 1),
                byte: 0xff
            }))
        );
        assert_eq!(
            utf8(b"a: 1\nowner: caf\xe9\n".to_vec())
                .unwrap_err()
                .diagnostic("t.yaml")
                .to_string(),
            "t.yaml:2:11: not UTF-8 text: byte 0xe9 is not part of a UTF-8 character\n  hint: save the file as UTF-8; kftenant does not read Latin-1 or UTF-16"
        );
    }

    #[test]
    fn mem_source_tree_has_folders_and_hides_dotfiles() {
        let src = MemSource::default()
            .with("tenants/.keep", "")
            .with("policies/a.json", "{}")
            .with(".github/ci.yml", "");
        let tree = src.tree();
        assert!(tree.dirs.contains("tenants"));
        assert_eq!(tree.files, BTreeSet::from(["policies/a.json".to_string()]));
    }
}
