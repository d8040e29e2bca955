//! The module structure, checked: no import cycle between top-level modules,
//! and no client, runtime or git crate (nor the clock) in the pure modules.
//!
//! `cargo test --test architecture -- --nocapture` prints the module graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must not touch the network, the clock, an async runtime, git
/// or a client library: what they need comes in as data.
const PURE: &[&str] = &[
    "diag",
    "names",
    "ownership",
    "document",
    "kubeflow",
    "quantity",
    "quota",
    "yaml",
    "policy",
    "config",
    "model",
    "plan",
    "report",
    "status_page",
    "applied",
    "schema",
    "import",
];

/// What the pure modules must not name.
const FORBIDDEN: &[&str] = &[
    "tokio::",
    "kube::",
    "k8s_openapi::",
    "aws_sdk_iam::",
    "aws_config::",
    "git2::",
    "hyper::",
    "hyper_util::",
    "clap::",
    "tracing::",
    "SystemTime",
    "Instant::now",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests (kept last, after `#[cfg(test)]`)
/// and without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module of each source file, with its code.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let name = first.trim_end_matches(".rs").to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        out.entry(name).or_default().push_str(&code(&f));
    }
    out
}

/// Edges `module -> module it names through crate::`.
fn graph(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    modules
        .iter()
        .map(|(name, code)| {
            let uses = code
                .match_indices("crate::")
                .map(|(i, m)| {
                    code[i + m.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .chain(
                    // `use crate::{a, b::c}`
                    code.match_indices("crate::{").flat_map(|(i, m)| {
                        let rest = &code[i + m.len()..];
                        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
                        group
                            .split(',')
                            .map(|p| p.trim().split("::").next().unwrap_or_default().to_string())
                            .collect::<Vec<_>>()
                    }),
                )
                .filter(|m| m != name && modules.contains_key(m))
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

/// The modules on an import cycle (or importing one): peel off modules
/// whose imports are all peeled already (a topological order, leaves first);
/// what is left cannot be ordered.
fn on_cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut ordered: BTreeSet<&String> = BTreeSet::new();
    loop {
        let next: Vec<&String> = g
            .iter()
            .filter(|(m, deps)| !ordered.contains(m) && deps.iter().all(|d| ordered.contains(d)))
            .map(|(m, _)| m)
            .collect();
        if next.is_empty() {
            break;
        }
        ordered.extend(next);
    }
    g.keys().filter(|m| !ordered.contains(m)).cloned().collect()
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let modules = modules();
    let g = graph(&modules);
    for (m, deps) in &g {
        println!(
            "{m} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let stuck = on_cycles(&g);
    assert!(stuck.is_empty(), "import cycle among {stuck:?}: {g:#?}");
}

#[test]
fn pure_modules_use_no_client_runtime_git_or_clock() {
    let modules = modules();
    for m in PURE {
        let code = modules.get(*m).unwrap_or_else(|| panic!("no module {m}"));
        for f in FORBIDDEN {
            assert!(!code.contains(f), "pure module `{m}` names `{f}`");
        }
    }
    // And they import only each other.
    let g = graph(&modules);
    for m in PURE {
        for d in &g[*m] {
            assert!(
                PURE.contains(&d.as_str()),
                "pure module `{m}` imports `{d}`"
            );
        }
    }
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    // A check that could never fail would prove nothing: feed it a cycle.
    let modules: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::b::X;".to_string()),
        ("b".to_string(), "use crate::{c, a::Y};".to_string()),
        ("c".to_string(), "fn f() { crate::diag::x() }".to_string()),
    ]
    .into();
    let g = graph(&modules);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(g["b"], BTreeSet::from(["a".to_string(), "c".to_string()]));
    assert!(g["c"].is_empty(), "diag is not in this set of modules");
    assert_eq!(on_cycles(&g), vec!["a".to_string(), "b".to_string()]);
}
