//! Broken repositories through the binary: a copy of sample-repo with one
//! planted mistake (or a few together), `kftenant validate` on it, and the
//! exact `file:line:column: message` of every problem it reports (hints
//! aside), with exit 1. Written as a table so each mistake sits beside what
//! kftenant says about it; `tests/fixtures/broken-repo` (above) is the
//! committed repository with many mistakes at once and its full output.
//!
//! Symbolic links are made here, not committed: git does not keep them
//! portably.

use super::{kftenant, root, text};
use crate::support::broken::{Case, apply, cases};
use crate::support::repo::copy_dir;

/// Every problem's first line from `kftenant validate` on the broken copy.
fn validate_broken(c: &Case) -> (Option<i32>, Vec<String>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_dir(&root().join("sample-repo"), &repo);
    let outside = tmp.path().join("outside.json");
    std::fs::write(&outside, "{\"secret\": \"TOP SECRET\"}").unwrap();
    apply(&repo, &outside, &c.edits);
    let out = kftenant(&["validate", repo.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    let lines = stderr
        .lines()
        .filter(|l| !l.starts_with("  hint: ") && !l.ends_with("nothing was planned or applied."))
        .map(String::from)
        .collect();
    (out.status.code(), lines, stderr)
}

#[test]
fn each_planted_mistake_is_reported_at_its_place_through_the_binary() {
    let cases = cases();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for c in &cases {
        let (code, problems, stderr) = validate_broken(c);
        let expect_code = if c.expect.is_empty() { 0 } else { 1 };
        if code != Some(expect_code) || problems != c.expect {
            failures.push(format!("{}: exit {code:?}\n{stderr}", c.name));
        }
        assert!(!stderr.contains("TOP SECRET"), "{}: {stderr}", c.name);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", c.name);
        if expect_code == 1 {
            // A line that stands for problems not shown counts them.
            let not_shown: usize = problems
                .iter()
                .filter(|p| p.contains(" in this file not shown (at most "))
                .filter_map(|p| {
                    p.split(": ")
                        .nth(1)?
                        .split(' ')
                        .next()?
                        .parse::<usize>()
                        .ok()
                })
                .sum();
            let n = problems.len() + not_shown.saturating_sub(usize::from(not_shown > 0));
            let more = if not_shown > 0 {
                format!(" ({not_shown} not shown)")
            } else {
                String::new()
            };
            assert!(
                stderr.ends_with(&format!(
                    "{n} problem{} found{more}; nothing was planned or applied.\n",
                    if n == 1 { "" } else { "s" }
                )),
                "{}: {stderr}",
                c.name
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
