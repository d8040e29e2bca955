//! Where a repository's files come from: a folder on disk ([`DirSource`]) or
//! memory ([`MemSource`]); `crate::git` reads a commit's tree.

use std::collections::BTreeMap;
use std::path::PathBuf;

// ---------------------------------------------------------------------------
// Reading files.

/// Where the repository's files come from.
pub trait Source {
    /// The text of a file (path relative to the root, `/`-separated), or `None` if it does not exist.
    fn read(&self, path: &str) -> Option<Result<String, String>>;
    /// The file names directly inside a folder, sorted; `None` if the folder does not exist.
    fn list(&self, dir: &str) -> Option<Vec<String>>;
}

/// A repository checked out on disk.
pub struct DirSource(pub PathBuf);

impl Source for DirSource {
    fn read(&self, path: &str) -> Option<Result<String, String>> {
        let p = self.0.join(path);
        if !p.is_file() {
            return None;
        }
        Some(std::fs::read_to_string(&p).map_err(|e| e.to_string()))
    }

    fn list(&self, dir: &str) -> Option<Vec<String>> {
        let rd = std::fs::read_dir(self.0.join(dir)).ok()?;
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Some(names)
    }
}

/// Loads and validates the repository at `root`.
/// A repository held in memory (tests, and callers that read files another way).
#[derive(Debug, Default, Clone)]
pub struct MemSource(pub BTreeMap<String, String>);

impl MemSource {
    /// Adds or replaces a file.
    #[must_use]
    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.0.insert(path.to_string(), text.to_string());
        self
    }
}

impl Source for MemSource {
    fn read(&self, path: &str) -> Option<Result<String, String>> {
        self.0.get(path).cloned().map(Ok)
    }

    fn list(&self, dir: &str) -> Option<Vec<String>> {
        let prefix = format!("{dir}/");
        let names: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.contains('/'))
            .map(String::from)
            .collect();
        // A folder exists when something is in it, or when a `.keep` marker is.
        (!names.is_empty()).then_some(names.into_iter().filter(|n| n != ".keep").collect())
    }
}
