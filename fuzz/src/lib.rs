//! The fuzz targets of kftenant's input layer, and the properties each
//! checks. One definition serves two drivers:
//!
//! - `fuzz/fuzz_targets/*.rs`: libFuzzer (cargo-fuzz, nightly), coverage
//!   guided, for long runs: `scripts/fuzz`.
//! - `tests/fuzz.rs`: a short, deterministic run on stable inside
//!   `cargo test` (the seeds, the regressions and mutations of them), which
//!   also measures each input's heap and time. It includes this file with
//!   `#[path]`, so this file uses nothing but `kftenant` and its own
//!   dependencies (`serde_json`, `percent-encoding`).
//!
//! Properties, for every input:
//! - no panic (a panic is the fuzzers' crash);
//! - bounded memory and time (libFuzzer's `-rss_limit_mb`, `-malloc_limit_mb`
//!   and `-timeout`; the stable driver's per-input heap peak and clock);
//! - every problem is located inside its file (a line the file has);
//! - a repository that validates converges: planning it against the world
//!   its own apply would leave is empty;
//! - JSON read as YAML (policy files) reads as the same value serde_json does;
//! - `normalize` is idempotent, and `parse_live(percent_encode(doc)) == doc`.

#![forbid(unsafe_code)]

use kftenant::diag::Diagnostic;
use kftenant::model::{self, MemSource, Repository};
use kftenant::plan::{self, PlanOptions, desired, observed::Observed};
use kftenant::policy;
use kftenant::yaml::{self, Node, Value};
use serde_json::Value as Json;

/// The sample repository's files, the base every repository target edits.
pub const SAMPLE: &[(&str, &str)] = &[
    (
        "kftenant.toml",
        include_str!("../../sample-repo/kftenant.toml"),
    ),
    (
        "inline/fraud-detection-artifacts.json",
        include_str!("../../sample-repo/inline/fraud-detection-artifacts.json"),
    ),
    (
        "policies/datalake-read.json",
        include_str!("../../sample-repo/policies/datalake-read.json"),
    ),
    (
        "policies/ecr-pull.json",
        include_str!("../../sample-repo/policies/ecr-pull.json"),
    ),
    (
        "policies/tenant-boundary.json",
        include_str!("../../sample-repo/policies/tenant-boundary.json"),
    ),
    (
        "tenants/forecasting.yaml",
        include_str!("../../sample-repo/tenants/forecasting.yaml"),
    ),
    (
        "tenants/fraud-detection.yaml",
        include_str!("../../sample-repo/tenants/fraud-detection.yaml"),
    ),
    (
        "tenants/platform-sandbox.yaml",
        include_str!("../../sample-repo/tenants/platform-sandbox.yaml"),
    ),
    (
        "tenants/recommendations.yaml",
        include_str!("../../sample-repo/tenants/recommendations.yaml"),
    ),
    (
        "tenants/research.yaml",
        include_str!("../../sample-repo/tenants/research.yaml"),
    ),
];

/// A fuzz target: one input, checked against the properties above.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the names of `fuzz/fuzz_targets/*.rs`).
pub const TARGETS: &[(&str, Target)] = &[
    ("yaml", yaml),
    ("tenant_file", tenant_file),
    ("config_file", config_file),
    ("policy_file", policy_file),
    ("live_document", live_document),
];

/// `yaml::load_documents` on any text: bounded trees, and JSON texts read as
/// the value serde_json reads.
pub fn yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = yaml::load_documents(text);
    if let Ok(docs) = &loaded {
        for d in docs {
            let (depth, nodes) = measure(d);
            assert!(depth <= yaml::Limits::FILE.depth, "depth {depth}");
            assert!(nodes <= yaml::Limits::FILE.nodes, "nodes {nodes}");
            let _ = d.to_json();
        }
    }
    json_reads_the_same(text);
}

/// One tenant file (`tenants/fuzz.yaml`, beside the sample repository's).
pub fn tenant_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_repository(
        sample().with("tenants/fuzz.yaml", text),
        "tenants/fuzz.yaml",
        text,
    );
}

/// `kftenant.toml`, with the sample repository's tenants and policies.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_repository(sample().with("kftenant.toml", text), "kftenant.toml", text);
}

/// A JSON policy document, as a shared policy (`policies/fuzz.json`) that a
/// tenant attaches and as the same tenant's inline policy file: the grammar
/// checks, guardrails and sizes of `model` over `policy::check_grammar`.
pub fn policy_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tenant = "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: fuzz\nspec:\n  owner: fuzz@example.com\n  iam:\n    managedPolicies: [fuzz]\n    inlinePolicies:\n      - {name: fuzz, file: inline/fuzz.json}\n";
    let src = sample()
        .with("policies/fuzz.json", text)
        .with("inline/fuzz.json", text)
        .with("tenants/fuzz.yaml", tenant);
    check_repository(src, "policies/fuzz.json", text);
}

/// A policy document as IAM returns it: `parse_live`, then `normalize`.
pub fn live_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = policy::parse_live(text) else {
        return;
    };
    let once = policy::normalize(&doc);
    assert_eq!(policy::normalize(&once), once, "normalize is idempotent");
    assert!(policy::same_policy(&doc, &once));
    // What kftenant sends, IAM returns percent-encoded; it must read back as sent.
    let sent = doc.to_string();
    let encoded = percent_encoding::utf8_percent_encode(&sent, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    assert_eq!(
        policy::parse_live(&encoded).as_ref(),
        Ok(&doc),
        "percent-encoded round trip"
    );
    assert_eq!(
        policy::parse_live(&sent).as_ref(),
        Ok(&doc),
        "plain round trip"
    );
}

fn sample() -> MemSource {
    SAMPLE
        .iter()
        .fold(MemSource::default(), |src, (path, text)| {
            src.with(path, text)
        })
}

/// Loads `src`; problems in `file` (whose text is `text`) must be at a line
/// it has; a valid repository must converge.
fn check_repository(src: MemSource, file: &str, text: &str) {
    match model::load(&src) {
        Ok(repo) => converges(&repo),
        Err(problems) => {
            let lines = text.split('\n').count();
            for p in problems.iter().filter(|p| p.file == file) {
                located_inside(p, lines);
            }
        }
    }
}

fn located_inside(p: &Diagnostic, lines: usize) {
    if let Some(pos) = p.pos {
        assert!(
            pos.line >= 1 && pos.line <= lines && pos.column >= 1,
            "{p} is outside the file's {lines} lines"
        );
    }
}

/// Planning a valid repository against the world its own apply leaves is empty.
fn converges(repo: &Repository) {
    let want = desired::render(repo);
    let applied = Observed::converged(&want);
    let p = plan::plan(&want, &applied, &PlanOptions::default());
    assert!(
        p.is_empty(),
        "a valid repository does not converge: {:?}",
        p.changes
    );
}

/// Depth (collections nested) and node count of a tree.
fn measure(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Seq(items) => items.iter().fold((1, 1), |(d, n), i| {
            let (id, inn) = measure(i);
            (d.max(id + 1), n + inn)
        }),
        Value::Map(entries) => entries.iter().fold((1, 1), |(d, n), (k, v)| {
            let (kd, kn) = measure(k);
            let (vd, vn) = measure(v);
            (d.max(kd + 1).max(vd + 1), n + kn + vn)
        }),
        _ => (0, 1),
    }
}

/// When serde_json reads `text` as JSON, `yaml::load_json` reads the same
/// value (policy files are checked with serde_json and read with it, for
/// positions), or refuses it at a limit.
fn json_reads_the_same(text: &str) {
    let Ok(json) = serde_json::from_str::<Json>(text) else {
        return;
    };
    let loaded = yaml::load_json(text, &yaml::Limits::FILE).map(|(docs, _)| docs);
    let docs = match &loaded {
        Ok(docs) => docs,
        Err(yaml::LoadError::Limit { .. }) => return,
        Err(e) => panic!(
            "valid JSON that the YAML loader refuses: {e} at {:?}",
            e.pos()
        ),
    };
    match (json, docs.as_slice()) {
        (Json::Null, []) => {}
        (json, [doc]) => {
            let read = doc.to_json();
            assert!(same_json(&json, &read), "JSON {json} was read as {read}");
        }
        (json, docs) => panic!("JSON {json} was read as {} documents", docs.len()),
    }
}

/// Equal JSON values; numbers by value (`1.0` and `1e0` are one number, an
/// integer equals a float only when the float is exactly it).
fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(i), Some(j), _, _) => i == j,
                (_, _, Some(i), Some(j)) => i == j,
                _ => match (x.as_f64(), y.as_f64()) {
                    (Some(f), Some(g)) if x.is_f64() && y.is_f64() => f == g,
                    // One integer, one float: the float must be exactly that integer.
                    _ => exact(x) == exact(y),
                },
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

/// A number as an exact integer when it is one, else `None`.
fn exact(n: &serde_json::Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 1.7e38).then_some(f as i128)
}
