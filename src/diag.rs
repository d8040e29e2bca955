//! Diagnostics: one problem in the repository, with the place it was found.
//!
//! Validation never stops at the first problem: every loader pushes
//! [`Diagnostic`]s into a [`Diagnostics`] list and carries on, so a pull
//! request author sees every mistake in one run.

use serde::Serialize;
use std::fmt;

/// A position in a file. Lines and columns are 1-based, as editors show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

impl Diagnostic {
    /// A diagnostic at a position in `file`.
    pub fn at(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            pos: Some(pos),
            message: message.into(),
            hint: None,
        }
    }

    /// A diagnostic about a whole file or folder.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            pos: None,
            message: message.into(),
            hint: None,
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

/// The problems found so far, in the order they were found until [`Diagnostics::sorted`].
#[derive(Debug, Default, Clone, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Records one problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Records a problem at `pos` in `file`.
    pub fn error(&mut self, file: &str, pos: Pos, message: impl Into<String>) {
        self.push(Diagnostic::at(file, pos, message));
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems ordered by file, then position, then message, so output is stable.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.0
            .sort_by(|a, b| (&a.file, a.pos, &a.message).cmp(&(&b.file, b.pos, &b.message)));
        self.0.dedup();
        self.0
    }
}

/// The closest candidate to `word` by edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
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
