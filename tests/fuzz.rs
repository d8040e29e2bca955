//! The fuzz targets (`fuzz/src/lib.rs`), run briefly on stable inside
//! `cargo test`, and the memory bound of loading hostile repositories.
//!
//! - Each target runs over its seeds (sample-repo, tests/fixtures/broken-repo,
//!   `fuzz/seeds/<target>`), every past finding (`fuzz/regressions/<target>`),
//!   and deterministic mutations of them: `KFTENANT_FUZZ_ITERATIONS` per
//!   target (default 300; a few seconds), `KFTENANT_FUZZ_SEED` to vary them.
//!   Each input's heap peak and time are measured and bounded. A failing
//!   input is written to `$CARGO_TARGET_TMPDIR/fuzz-failures/` and named in
//!   the failure; copy it to `fuzz/regressions/<target>/` with the fix.
//!   Long, coverage-guided runs: `scripts/fuzz` (cargo-fuzz, nightly).
//! - The worst repositories we know how to write (alias bombs, deep nesting,
//!   limits on every axis at once) are loaded under the counting allocator,
//!   and their heap peak is held to the bound README's Safety section states.
//!
//! Heap is counted per thread (what this test's thread allocates and has not
//! freed), so tests running beside it do not disturb the figures.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use kftenant::model::{self, MemSource};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Heap accounting.

/// The system allocator, counting the bytes each thread holds and its peak.
struct Counting;

thread_local! {
    static IN_USE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: a thread being torn down has no counters any more.
    let _ = IN_USE.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is passed to `System` unchanged; the counters are
// thread-local `Cell`s with constant initialisers and no destructor, so
// counting neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` come from this allocator, i.e. `System`.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's to vouch for.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`; its result, the most heap this thread held above what it held
/// before, and the time it took.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let start = IN_USE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    let peak = PEAK.with(Cell::get) - start;
    (out, peak.max(0) as usize, took)
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// The short fuzz run.

/// A small deterministic generator (xorshift64*): the same inputs every run
/// unless `KFTENANT_FUZZ_SEED` says otherwise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces of YAML, JSON, TOML and IAM that mutations insert.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "&b [*a, *a, *a]",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "---\n",
    "...\n",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!x ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "\"",
    "'",
    "#",
    "\t",
    "\u{feff}",
    "\\u0000",
    "\\ud800",
    "%",
    "%7B",
    "%22",
    "+",
    "arn:aws:iam::aws:policy/",
    "arn:aws:iam::123456789012:policy/a/b",
    "*",
    "iam:*",
    "9223372036854775808",
    "18446744073709551616",
    "1e999",
    "-0",
    "0x1F",
    ".inf",
    "~",
    "null",
    "true",
    "no",
    "<<: *a\n",
    "\u{301}",
    "é",
    "🦀",
    "[[[[[[[[",
    "]]]]]]]]",
    "{a = ",
    " = ",
    "[iam]\n",
    "[[x]]\n",
    "Statement",
    "Effect",
    "Allow",
    "Action",
    "NotAction",
    "Resource",
    "Condition",
    "Principal",
    "managedPolicies",
    "inlinePolicies",
    "file: ../x.json",
    "document: ",
    "file: inline/fraud-detection-artifacts.json",
    "name: ",
    "owner: ",
    "tags: ",
    "labels: ",
];

fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let piece = out[at..end].to_vec();
                for _ in 0..=rng.below(8) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            4 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(256)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            5 => out.truncate(at),
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, t.iter().copied());
            }
        }
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The seeds of `target`: the repository files of its kind, its own seeds
/// and every regression found so far.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut repo_files = Vec::new();
    files_under(&root().join("sample-repo"), &mut repo_files);
    files_under(&root().join("tests/fixtures/broken-repo"), &mut repo_files);
    let kind = |p: &PathBuf, ext: &str| p.extension().is_some_and(|e| e == ext);
    let mut chosen: Vec<PathBuf> = repo_files
        .into_iter()
        .filter(|p| match target {
            "yaml" => kind(p, "yaml") || kind(p, "json"),
            "tenant_file" => kind(p, "yaml"),
            "config_file" => kind(p, "toml"),
            "policy_file" | "live_document" => kind(p, "json"),
            _ => false,
        })
        .collect();
    files_under(&root().join("fuzz/seeds").join(target), &mut chosen);
    files_under(&root().join("fuzz/regressions").join(target), &mut chosen);
    chosen.sort();
    let mut out: Vec<Vec<u8>> = chosen
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    if target == "live_document" {
        // IAM returns documents percent-encoded.
        let encoded: Vec<Vec<u8>> = out
            .iter()
            .filter_map(|b| std::str::from_utf8(b).ok())
            .map(|s| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .into_bytes()
            })
            .collect();
        out.extend(encoded);
    }
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

/// Most heap one input of a fuzz run may take: one file's tree is bounded
/// by `yaml::Limits::FILE`, and a repository target also holds the sample
/// repository (measured peaks: README, Safety).
const INPUT_HEAP_LIMIT: usize = 96 * MIB;
/// Longest one input may take in this (unoptimised) build.
const INPUT_TIME_LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` on `data`; a panic or a limit crossed fails the test, naming a
/// file that holds the input.
fn run_one(target: &str, f: targets::Target, data: &[u8]) -> (usize, Duration) {
    let (outcome, heap, took) =
        measured(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(data))));
    let why = match outcome {
        Err(_) => Some("panicked (message above)".to_string()),
        Ok(()) if heap > INPUT_HEAP_LIMIT => Some(format!("took {} MiB of heap", heap / MIB)),
        Ok(()) if took > INPUT_TIME_LIMIT => Some(format!("took {took:?}")),
        Ok(()) => None,
    };
    if let Some(why) = why {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        let file = dir.join(format!("{target}-{hash:016x}"));
        std::fs::write(&file, data).unwrap();
        panic!(
            "fuzz target `{target}` {why} on the input saved in {}:\n{:?}",
            file.display(),
            String::from_utf8_lossy(&data[..data.len().min(2000)])
        );
    }
    (heap, took)
}

#[test]
fn fuzz_targets_hold_their_properties_on_seeds_regressions_and_mutations() {
    let iterations: usize = std::env::var("KFTENANT_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("KFTENANT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b66_7465_6e61_6e74);
    for (name, f) in targets::TARGETS {
        let inputs = seeds(name);
        let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        let (mut max_heap, mut max_time) = (0, Duration::ZERO);
        for data in &inputs {
            let (h, t) = run_one(name, *f, data);
            max_heap = max_heap.max(h);
            max_time = max_time.max(t);
        }
        for _ in 0..iterations {
            let base = &inputs[rng.below(inputs.len())];
            let data = mutate(&mut rng, base, &inputs);
            let (h, t) = run_one(name, *f, &data);
            max_heap = max_heap.max(h);
            max_time = max_time.max(t);
        }
        eprintln!(
            "fuzz {name}: {} seeds + {iterations} mutations, heap peak {:.1} MiB, slowest {max_time:?}",
            inputs.len(),
            max_heap as f64 / MIB as f64
        );
    }
}

// ---------------------------------------------------------------------------
// The worst repositories we know how to write.

/// `a0` .. `a8`, each nine aliases of the one before.
fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(", ")
        ));
    }
    text
}

/// A valid tenant whose quota scopes (kept in the repository, not checked
/// against Kubernetes' list) are `n` copies of an anchored string of `len`
/// bytes: what the repository keeps grows with the files' nodes and text.
fn hoarding_tenant(name: &str, n: usize, len: usize) -> String {
    format!(
        "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec:\n  owner: &s {}\n  profile:\n    resourceQuota:\n      scopes: [{}]\n",
        "o".repeat(len),
        vec!["*s"; n].join(", ")
    )
}

/// Each worst case: a name, the sample repository with its files added, and
/// the most heap `model::load` may take on it (README, Safety).
fn worst_repositories() -> Vec<(&'static str, MemSource, usize)> {
    let sample = || {
        targets::SAMPLE
            .iter()
            .fold(MemSource::default(), |src, (path, text)| {
                src.with(path, text)
            })
    };
    let mut out = vec![
        (
            "billion laughs",
            sample().with("tenants/bomb.yaml", &billion_laughs()),
            40 * MIB,
        ),
        (
            "4 MiB of aliased text",
            sample().with(
                "tenants/bomb.yaml",
                &format!(
                    "s: &s {}\nl: [{}]\n",
                    "x".repeat(100_000),
                    vec!["*s"; 60].join(", ")
                ),
            ),
            40 * MIB,
        ),
        (
            "a megabyte of values",
            sample().with(
                "tenants/dense.yaml",
                &format!("x: [{}]\n", "a,".repeat(500_000)),
            ),
            40 * MIB,
        ),
        (
            "a megabyte of nesting",
            sample().with("tenants/deep.yaml", &("- ".repeat(500_000) + "x\n")),
            8 * MIB,
        ),
        (
            "a megabyte of JSON nesting",
            sample().with("policies/deep.json", &("[".repeat(1 << 20))),
            8 * MIB,
        ),
    ];
    // A mistake every few bytes: problems are capped.
    let broken =
        "apiVersion: x\nkind: y\nmetadata: {name: Bad_Name}\nspec: {ownr: 1, iam: 2}\n---\n";
    out.push((
        "a problem every 15 bytes",
        sample().with("tenants/broken.yaml", &broken.repeat(10_000 - 1)),
        40 * MIB,
    ));
    // The repository at its limits: nine files of 240,000 nodes, each a valid
    // tenant keeping them all (the tenth file is over the limit, not read).
    let mut nodes = sample();
    for i in 0..10 {
        nodes = nodes.with(
            &format!("tenants/n{i}.yaml"),
            &hoarding_tenant(&format!("n{i}"), 240_000, 1),
        );
    }
    out.push(("2,000,000 values kept", nodes, 160 * MIB));
    // ... and at the text limit: 4,000,000 bytes per file, kept.
    let mut text = sample();
    for i in 0..10 {
        text = text.with(
            &format!("tenants/t{i}.yaml"),
            &hoarding_tenant(&format!("t{i}"), 4_000, 1_000),
        );
    }
    out.push(("32 MiB of text kept", text, 160 * MIB));
    // ... and both at once: 16-byte strings.
    let mut both = sample();
    for i in 0..10 {
        both = both.with(
            &format!("tenants/b{i}.yaml"),
            &hoarding_tenant(&format!("b{i}"), 230_000, 16),
        );
    }
    out.push(("values and text kept", both, 160 * MIB));
    out
}

#[test]
fn the_worst_repositories_stay_within_the_stated_memory() {
    if let Ok(dir) = std::env::var("KFTENANT_WRITE_WORST") {
        // For measuring the binary (README, Safety): each case as a folder.
        for (name, src, _) in worst_repositories() {
            let root = Path::new(&dir).join(name.replace([' ', ','], "-"));
            for (path, text) in &src.0 {
                let file = root.join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, text).unwrap();
            }
        }
    }
    for (name, src, limit) in worst_repositories() {
        let (result, heap, took) = measured(|| model::load(&src));
        eprintln!(
            "worst case `{name}`: heap peak {:.1} MiB (limit {} MiB), {took:?}",
            heap as f64 / MIB as f64,
            limit / MIB
        );
        assert!(heap <= limit, "`{name}` took {} MiB", heap / MIB);
        let problems = result.err().unwrap_or_default();
        assert!(problems.len() <= kftenant::diag::MAX_TOTAL + 100, "{name}");
    }
}
