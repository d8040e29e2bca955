//! Diagnostics: one problem in the repository, with the place it was found.
//!
//! Validation never stops at the first problem: every loader pushes
//! [`Diagnostic`]s into a [`Diagnostics`] list and carries on, so a pull
//! request author sees every mistake in one run.

use serde::Serialize;
use std::fmt;

/// A position in a file. Lines and columns are 1-based, as editors show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Pos {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number.
    pub column: usize,
}

impl Pos {
    /// A position at `line`, `column` (both 1-based).
    pub fn new(line: usize, column: usize) -> Self {
        Pos { line, column }
    }
}

/// One problem found while loading or validating the repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Diagnostic {
    /// File path relative to the repository root, with `/` separators.
    pub file: String,
    /// Where in the file; `None` for problems about a whole file or folder.
    pub pos: Option<Pos>,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// On the one line per file that stands for problems left out (see
    /// [`MAX_PER_FILE`]): how many. Zero on every real problem.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_shown: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How many problems `diags` stands for: each one, plus those left out.
pub fn count(diags: &[Diagnostic]) -> usize {
    diags
        .iter()
        .map(|d| if d.not_shown > 0 { d.not_shown } else { 1 })
        .sum()
}

impl Diagnostic {
    /// A diagnostic at a position in `file`.
    pub fn at(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            pos: Some(pos),
            message: message.into(),
            hint: None,
            not_shown: 0,
        }
    }

    /// A diagnostic about a whole file or folder.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            pos: None,
            message: message.into(),
            hint: None,
            not_shown: 0,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// At most this many problems are kept per file; the rest are counted, and
/// one line per file says how many were not shown. A hostile file can hold a
/// mistake every few bytes; nobody reads the 101st.
pub const MAX_PER_FILE: usize = 100;
/// At most this many problems are kept in all (then only counted).
pub const MAX_TOTAL: usize = 10_000;
/// Messages and hints are cut to this many characters: they quote what the
/// file says (a key, a name), which can be megabytes long.
pub const MAX_TEXT_CHARS: usize = 1_000;

/// The problems found so far, in the order they were found until [`Diagnostics::sorted`].
///
/// Bounded: see [`MAX_PER_FILE`], [`MAX_TOTAL`], [`MAX_TEXT_CHARS`]. Every
/// problem counts in [`Diagnostics::len`], kept or not, so "did this check
/// find anything" (`len()` before and after) never misses one.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    kept: Vec<Diagnostic>,
    /// Problems per file, kept or not.
    per_file: std::collections::BTreeMap<String, usize>,
    /// Every problem pushed.
    total: usize,
}

impl Diagnostics {
    /// Records one problem.
    pub fn push(&mut self, mut d: Diagnostic) {
        self.total += 1;
        let n = self.per_file.entry(d.file.clone()).or_default();
        *n += 1;
        if *n > MAX_PER_FILE || self.kept.len() >= MAX_TOTAL {
            return;
        }
        cut(&mut d.message);
        if let Some(h) = &mut d.hint {
            cut(h);
        }
        self.kept.push(d);
    }

    /// The problems kept, and per file how many were found, kept or not.
    pub fn into_parts(self) -> (Vec<Diagnostic>, std::collections::BTreeMap<String, usize>) {
        (self.kept, self.per_file)
    }

    /// Adds problems found elsewhere (another cluster's view of the same
    /// files): each of `kept`, then per file as many more as `found` says
    /// were found there and were not kept, so the line saying how many were
    /// left out stays true.
    pub fn absorb(
        &mut self,
        kept: Vec<Diagnostic>,
        found: std::collections::BTreeMap<String, usize>,
    ) {
        let mut pushed = std::collections::BTreeMap::<String, usize>::new();
        for d in kept {
            *pushed.entry(d.file.clone()).or_default() += 1;
            self.push(d);
        }
        for (file, n) in found {
            let more = n.saturating_sub(pushed.get(&file).copied().unwrap_or(0));
            if more > 0 {
                *self.per_file.entry(file).or_default() += more;
                self.total += more;
            }
        }
    }

    /// Records a problem at `pos` in `file`.
    pub fn error(&mut self, file: &str, pos: Pos, message: impl Into<String>) {
        self.push(Diagnostic::at(file, pos, message));
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Number of problems found, shown or not.
    pub fn len(&self) -> usize {
        self.total
    }

    /// The problems ordered by file, then position, then message, so output
    /// is stable; per file whose problems were not all kept, one more line
    /// saying how many were left out.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        let kept_per_file = {
            let mut m = std::collections::BTreeMap::<&str, usize>::new();
            for d in &self.kept {
                *m.entry(d.file.as_str()).or_default() += 1;
            }
            m.into_iter()
                .map(|(f, n)| (f.to_string(), n))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        for (file, n) in &self.per_file {
            let kept = kept_per_file.get(file).copied().unwrap_or(0);
            if *n > kept {
                let left = n - kept;
                self.kept.push(Diagnostic {
                    not_shown: left,
                    ..Diagnostic::file(
                        file.clone(),
                        format!(
                            "{left} more problem{} in this file not shown (at most {MAX_PER_FILE} per file, {MAX_TOTAL} in all)",
                            if left == 1 { "" } else { "s" }
                        ),
                    )
                });
            }
        }
        self.kept
            .sort_by(|a, b| (&a.file, a.pos, &a.message).cmp(&(&b.file, b.pos, &b.message)));
        self.kept.dedup();
        self.kept
    }
}

/// Cuts `text` to [`MAX_TEXT_CHARS`] characters, marking the cut.
fn cut(text: &mut String) {
    if let Some((at, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        text.truncate(at);
        text.push_str("… (cut)");
    }
}

/// The closest candidate to `word` by edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let chars = word.chars().count();
    candidates
        .iter()
        // The distance is at least the difference in length: a word far
        // longer than every candidate (a hostile key of a megabyte) costs nothing.
        .filter(|c| chars.abs_diff(c.chars().count()) <= 2.max(c.len() / 3))
        .map(|c| {
            (
                edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_column_and_hint() {
        let d = Diagnostic::at("tenants/a.yaml", Pos::new(3, 5), "bad").with_hint("fix it");
        assert_eq!(d.to_string(), "tenants/a.yaml:3:5: bad\n  hint: fix it");
        assert_eq!(
            Diagnostic::file("tenants", "missing").to_string(),
            "tenants: missing"
        );
    }

    #[test]
    fn problems_are_bounded_per_file_in_all_and_in_length() {
        let mut d = Diagnostics::default();
        for i in 0..(MAX_PER_FILE + 5) {
            d.error("a.yaml", Pos::new(i + 1, 1), "x".repeat(5_000));
        }
        d.error("b.yaml", Pos::new(1, 1), "fine");
        assert_eq!(d.len(), MAX_PER_FILE + 6, "every problem counts");
        let shown = d.sorted();
        assert_eq!(shown.len(), MAX_PER_FILE + 2);
        assert_eq!(count(&shown), MAX_PER_FILE + 6);
        assert_eq!(
            shown[0].to_string(),
            "a.yaml: 5 more problems in this file not shown (at most 100 per file, 10000 in all)"
        );
        assert_eq!(
            shown[1].message.chars().count(),
            MAX_TEXT_CHARS + "… (cut)".chars().count()
        );
        assert_eq!(shown.last().unwrap().to_string(), "b.yaml:1:1: fine");
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        assert_eq!(
            did_you_mean("ownr", &["owner", "iam", "profile"]),
            Some("owner")
        );
        assert_eq!(
            did_you_mean("managedPolicy", &["managedPolicies", "tags"]),
            Some("managedPolicies")
        );
        assert_eq!(did_you_mean("zzzzzz", &["owner", "iam"]), None);
    }
}
