//! A tenant repository for one test world: a copy of `sample-repo` with the
//! world's account, its own cluster name and prefixed tenant names.

use super::World;
use std::path::{Path, PathBuf};

#[path = "../../benches/synthetic.rs"]
mod synthetic;

/// A copy of `sample-repo` for one world: its account, its own cluster name,
/// tenant names prefixed so cluster-scoped Profiles do not collide.
pub struct Repo {
    pub dir: tempfile::TempDir,
    /// Short unique prefix, also the cluster name.
    pub p: String,
}

/// The short prefix (and cluster name) of a world's repositories.
fn short_prefix(world: &World) -> String {
    let mut h: u32 = 2166136261;
    for b in world.prefix.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("k{:06x}", h & 0xff_ffff)
}

impl Repo {
    /// The benchmarks' synthetic repository of `n` tenants (`team-00000`...,
    /// 21 shared policies, 3 attachments, an inline policy and an extra
    /// service account each) for one world: its account, its own cluster
    /// name, prefixed tenant names.
    pub fn synthetic(world: &World, n: usize) -> Repo {
        let p = short_prefix(world);
        let dir = tempfile::tempdir().unwrap();
        let tenant_prefix = format!("{p}-");
        let names = synthetic::Names {
            account_id: &world.account_id,
            cluster: &p,
            tenant_prefix: &tenant_prefix,
        };
        for (path, text) in synthetic::repository_at(n, &names).0 {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        Repo { dir, p }
    }

    pub fn new(world: &World) -> Repo {
        let p = short_prefix(world);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo"),
            dir.path(),
        );
        let cfg = dir.path().join("kftenant.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("123456789012", &world.account_id)
            .replace("name = \"kubeflow-prod\"", &format!("name = \"{p}\""));
        std::fs::write(&cfg, text).unwrap();
        for e in std::fs::read_dir(dir.path().join("tenants")).unwrap() {
            let path = e.unwrap().path();
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| match l.strip_prefix("  name: ") {
                    Some(n) => format!("  name: {p}-{n}\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            std::fs::write(&path, text).unwrap();
        }
        Repo { dir, p }
    }

    pub fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    pub fn tenant(&self, base: &str) -> String {
        format!("{}-{base}", self.p)
    }

    pub fn role(&self, base: &str) -> String {
        format!("{}-{base}-{}-role", self.p, self.p)
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Lists tenants in `[prune] decommissioned` (their files already gone).
    pub fn decommission_listed_only(&self, bases: &[&str]) {
        let names: Vec<String> = bases
            .iter()
            .map(|b| format!("{:?}", self.tenant(b)))
            .collect();
        let cfg = self.file("kftenant.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace(
            "[prune]\n",
            &format!("[prune]\ndecommissioned = [{}]\n", names.join(", ")),
        );
        std::fs::write(&cfg, text).unwrap();
    }

    /// Removes tenants (their files) and confirms their deletion in git
    /// (`[prune] decommissioned`), as a pull request that decommissions them does.
    pub fn decommission(&self, bases: &[&str]) {
        for base in bases {
            let file = self
                .tenant_file(base)
                .unwrap_or_else(|| panic!("no file defines tenant {base}"));
            let text = std::fs::read_to_string(&file).unwrap();
            // A file may define more than one tenant; only whole files are removed here.
            assert_eq!(
                text.matches("kind: Tenant").count(),
                1,
                "{file:?} defines more than {base}"
            );
            std::fs::remove_file(file).unwrap();
        }
        let names: Vec<String> = bases
            .iter()
            .map(|b| format!("{:?}", self.tenant(b)))
            .collect();
        let cfg = self.file("kftenant.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace(
            "[prune]\n",
            &format!("[prune]\ndecommissioned = [{}]\n", names.join(", ")),
        );
        std::fs::write(&cfg, text).unwrap();
    }

    /// The file under tenants/ that defines tenant `base`.
    pub fn tenant_file(&self, base: &str) -> Option<PathBuf> {
        let needle = format!("  name: {}\n", self.tenant(base));
        std::fs::read_dir(self.file("tenants"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| std::fs::read_to_string(p).unwrap().contains(&needle))
    }

    pub fn desired(&self) -> kftenant::plan::desired::Desired {
        kftenant::plan::desired::render(
            &kftenant::model::load_dir(self.dir.path()).expect("test repo is valid"),
        )
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
