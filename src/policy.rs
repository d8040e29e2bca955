//! IAM policy documents: grammar checks, sizes, and semantic comparison.
//!
//! IAM hands documents back percent-encoded and re-serialised: a one-element
//! list may come back as a string, statements and values in another order,
//! `Version` filled in. Comparing strings would make every plan show changes
//! forever (the most reported bug of ACK, Crossplane and the Terraform AWS
//! provider), so every comparison goes through [`normalize`].
//!
//! The guardrails hold action patterns against action patterns
//! ([`granted_actions`]): globs on both sides, compared as IAM does (case
//! aside), with [`globs_intersect`] (exact) and [`glob_covers`] (sound).

use crate::diag::{Diagnostics, Pos};
pub use crate::names::glob_match;
use crate::yaml::{Node, Value};
use serde_json::{Map, Value as Json};

/// Which kind of document is being checked: they differ in `Principal` and `Resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// An identity policy (managed or inline): `Resource` required, no `Principal`.
    Identity,
    /// A role trust policy: `Principal` required, no `Resource`.
    Trust,
}

/// The version IAM assumes when a document has none.
pub const DEFAULT_VERSION: &str = "2008-10-17";

/// Parses a document as IAM returns it: plain JSON, or percent-encoded JSON.
///
/// Only percent-decoding is applied: a `+` stays a `+` (IAM documents are not
/// form-encoded, and `+` is legal inside ARNs and conditions).
pub fn parse_live(raw: &str) -> Result<Json, String> {
    let trimmed = raw.trim_start();
    let text = if trimmed.starts_with('{') {
        std::borrow::Cow::Borrowed(raw)
    } else {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|e| format!("document is not valid percent-encoded UTF-8: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("document is not valid JSON: {e}"))
}

/// Canonical form of a policy document: the same value for any two documents
/// that IAM treats as the same.
///
/// - `Version` defaults to [`DEFAULT_VERSION`];
/// - `Statement` as an object becomes a one-element list; statements are sorted;
/// - `Action`, `NotAction`, `Resource`, `NotResource`, principal values and
///   condition values become sorted, de-duplicated lists of strings (a single
///   string equals a one-element list; `true` equals `"true"`);
/// - object keys are sorted (serde_json's map is ordered).
pub fn normalize(doc: &Json) -> Json {
    normalize_owned(doc.clone())
}

/// [`normalize`], consuming the document (no copy: the planner's hot path).
pub fn normalize_owned(doc: Json) -> Json {
    let Json::Object(mut obj) = doc else {
        return doc;
    };
    if let Some(stmt) = obj.remove("Statement") {
        let mut stmts: Vec<Json> = match stmt {
            Json::Array(items) => items.into_iter().map(normalize_statement).collect(),
            other => vec![normalize_statement(other)],
        };
        if stmts.len() > 1 {
            stmts.sort_by_cached_key(|s| s.to_string());
            stmts.dedup();
        }
        obj.insert("Statement".into(), Json::Array(stmts));
    }
    obj.entry("Version")
        .or_insert_with(|| Json::String(DEFAULT_VERSION.into()));
    Json::Object(obj)
}

fn normalize_statement(stmt: Json) -> Json {
    let Json::Object(obj) = stmt else {
        return stmt;
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let v = match k.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => string_set(v),
            "Principal" | "NotPrincipal" => match v {
                Json::Object(p) => {
                    Json::Object(p.into_iter().map(|(pk, pv)| (pk, string_set(pv))).collect())
                }
                other => other,
            },
            "Condition" => match v {
                Json::Object(ops) => Json::Object(
                    ops.into_iter()
                        .map(|(op, keys)| {
                            let keys = match keys {
                                Json::Object(kv) => Json::Object(
                                    kv.into_iter()
                                        .map(|(ck, cv)| (ck, string_set(cv)))
                                        .collect(),
                                ),
                                other => other,
                            };
                            (op, keys)
                        })
                        .collect(),
                ),
                other => other,
            },
            _ => v,
        };
        out.insert(k, v);
    }
    Json::Object(out)
}

fn scalar_string(v: Json) -> Json {
    match v {
        Json::Bool(b) => Json::String(b.to_string()),
        Json::Number(n) => Json::String(n.to_string()),
        other => other,
    }
}

fn string_set(v: Json) -> Json {
    let mut items: Vec<Json> = match v {
        Json::Array(items) => items.into_iter().map(scalar_string).collect(),
        other => vec![scalar_string(other)],
    };
    if items.len() > 1 {
        if items.iter().all(Json::is_string) {
            items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        } else {
            items.sort_by_cached_key(|a| a.to_string());
        }
        items.dedup();
    }
    Json::Array(items)
}

/// True when IAM treats both documents as the same policy.
pub fn same_policy(a: &Json, b: &Json) -> bool {
    normalize(a) == normalize(b)
}

/// The document's size as IAM counts it against its quotas: characters, not
/// counting whitespace outside of strings (we count the compact rendering).
pub fn iam_size(doc: &Json) -> usize {
    doc.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// Checks the IAM policy grammar of `node`, recording every problem with its position.
pub fn check_grammar(node: &Node, kind: PolicyKind, file: &str, diags: &mut Diagnostics) {
    let Value::Map(entries) = &node.value else {
        diags.error(
            file,
            node.pos,
            format!(
                "a policy document must be a JSON object, found {}",
                node.type_name()
            ),
        );
        return;
    };
    let mut has_statement = false;
    for (k, v) in entries {
        match k.as_str().unwrap_or_default() {
            "Version" => match v.as_str() {
                Some("2012-10-17") | Some("2008-10-17") => {}
                _ => diags.push(
                    crate::diag::Diagnostic::at(
                        file,
                        v.pos,
                        format!(
                            "policy Version must be \"2012-10-17\" or \"2008-10-17\", found {}",
                            v.scalar_text()
                        ),
                    )
                    .with_hint("use \"2012-10-17\", the current policy language version"),
                ),
            },
            "Id" => expect_string(v, "Id", file, diags),
            "Statement" => {
                has_statement = true;
                match &v.value {
                    Value::Map(_) => check_statement(v, kind, file, diags),
                    Value::Seq(items) if !items.is_empty() => {
                        for s in items {
                            check_statement(s, kind, file, diags);
                        }
                    }
                    Value::Seq(_) => diags.error(file, v.pos, "policy Statement must not be empty"),
                    _ => diags.error(
                        file,
                        v.pos,
                        format!(
                            "policy Statement must be an object or a list of objects, found {}",
                            v.type_name()
                        ),
                    ),
                }
            }
            other => unknown_key(
                other,
                k.pos,
                &["Version", "Id", "Statement"],
                "policy document",
                file,
                diags,
            ),
        }
    }
    if !has_statement {
        diags.error(file, node.pos, "policy document has no Statement");
    }
}

fn unknown_key(
    key: &str,
    pos: Pos,
    allowed: &[&str],
    what: &str,
    file: &str,
    diags: &mut Diagnostics,
) {
    let mut d =
        crate::diag::Diagnostic::at(file, pos, format!("unknown element `{key}` in {what}"));
    if let Some(s) = crate::diag::did_you_mean(key, allowed) {
        d = d.with_hint(format!(
            "did you mean `{s}`? (policy elements are case-sensitive)"
        ));
    }
    diags.push(d);
}

fn expect_string(v: &Node, what: &str, file: &str, diags: &mut Diagnostics) {
    if v.as_str().is_none() {
        diags.error(
            file,
            v.pos,
            format!("{what} must be a string, found {}", v.type_name()),
        );
    }
}

fn check_string_or_list(
    v: &Node,
    what: &str,
    file: &str,
    diags: &mut Diagnostics,
    each: impl Fn(&str) -> Option<String>,
) {
    let items: Vec<&Node> = match &v.value {
        Value::Seq(items) if !items.is_empty() => items.iter().collect(),
        Value::Seq(_) => {
            diags.error(file, v.pos, format!("{what} must not be an empty list"));
            return;
        }
        _ => vec![v],
    };
    for item in items {
        match item.as_str() {
            Some(s) => {
                if let Some(msg) = each(s) {
                    diags.error(file, item.pos, msg);
                }
            }
            None => diags.error(
                file,
                item.pos,
                format!(
                    "{what} must be a string or a list of strings, found {}",
                    item.type_name()
                ),
            ),
        }
    }
}

/// `service:action` with wildcards, or `*`.
pub fn action_syntax(a: &str) -> Option<String> {
    if a == "*" {
        return None;
    }
    let ok = a.split_once(':').is_some_and(|(svc, act)| {
        !svc.is_empty()
            && svc.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !act.is_empty()
            && act
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
    });
    (!ok).then(|| format!("`{a}` is not a valid IAM action; expected `service:Action` (wildcards `*` and `?` allowed) or `*`"))
}

fn check_statement(s: &Node, kind: PolicyKind, file: &str, diags: &mut Diagnostics) {
    let Value::Map(entries) = &s.value else {
        diags.error(
            file,
            s.pos,
            format!("a Statement must be an object, found {}", s.type_name()),
        );
        return;
    };
    const KEYS: &[&str] = &[
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    ];
    let has = |k: &str| entries.iter().any(|(key, _)| key.as_str() == Some(k));
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        match key {
            "Sid" => match v.as_str() {
                Some(sid) if sid.chars().all(|c| c.is_ascii_alphanumeric()) => {}
                Some(sid) => diags.error(
                    file,
                    v.pos,
                    format!("Sid `{sid}` may contain only letters and digits"),
                ),
                None => expect_string(v, "Sid", file, diags),
            },
            "Effect" => match v.as_str() {
                Some("Allow") | Some("Deny") => {}
                _ => diags.push(
                    crate::diag::Diagnostic::at(
                        file,
                        v.pos,
                        format!(
                            "Effect must be \"Allow\" or \"Deny\", found {}",
                            v.scalar_text()
                        ),
                    )
                    .with_hint("Effect is case-sensitive"),
                ),
            },
            "Action" | "NotAction" => check_string_or_list(v, key, file, diags, action_syntax),
            "Resource" | "NotResource" => {
                if kind == PolicyKind::Trust {
                    diags.error(
                        file,
                        k.pos,
                        format!("{key} is not allowed in a trust policy"),
                    );
                }
                check_string_or_list(v, key, file, diags, |r| {
                    (r != "*" && !r.starts_with("arn:"))
                        .then(|| format!("`{r}` is not a valid resource; expected an ARN or `*`"))
                });
            }
            "Principal" | "NotPrincipal" => {
                if kind == PolicyKind::Identity {
                    diags.push(
                        crate::diag::Diagnostic::at(file, k.pos, format!("{key} is only allowed in trust (resource-based) policies"))
                            .with_hint("identity policies apply to the role they are attached to; remove the Principal"),
                    );
                }
            }
            "Condition" => check_condition(v, file, diags),
            other => unknown_key(other, k.pos, KEYS, "Statement", file, diags),
        }
    }
    if !has("Effect") {
        diags.error(file, s.pos, "Statement has no Effect");
    }
    match (has("Action"), has("NotAction")) {
        (false, false) => diags.error(file, s.pos, "Statement needs Action or NotAction"),
        (true, true) => diags.error(
            file,
            s.pos,
            "Statement must not have both Action and NotAction",
        ),
        _ => {}
    }
    if kind == PolicyKind::Identity {
        match (has("Resource"), has("NotResource")) {
            (false, false) => diags.error(file, s.pos, "Statement needs Resource or NotResource"),
            (true, true) => diags.error(
                file,
                s.pos,
                "Statement must not have both Resource and NotResource",
            ),
            _ => {}
        }
    } else if !has("Principal") && !has("NotPrincipal") {
        diags.error(file, s.pos, "a trust policy Statement needs a Principal");
    }
}

fn check_condition(v: &Node, file: &str, diags: &mut Diagnostics) {
    let Value::Map(ops) = &v.value else {
        diags.error(
            file,
            v.pos,
            format!(
                "Condition must be an object of operators, found {}",
                v.type_name()
            ),
        );
        return;
    };
    for (_, keys) in ops {
        let Value::Map(kv) = &keys.value else {
            diags.error(
                file,
                keys.pos,
                format!(
                    "a Condition operator must map condition keys to values, found {}",
                    keys.type_name()
                ),
            );
            continue;
        };
        for (_, val) in kv {
            let ok = match &val.value {
                Value::Seq(items) => items
                    .iter()
                    .all(|i| !matches!(i.value, Value::Seq(_) | Value::Map(_) | Value::Null)),
                Value::Map(_) | Value::Null => false,
                _ => true,
            };
            if !ok {
                diags.error(
                    file,
                    val.pos,
                    "a Condition value must be a string, number, boolean or a list of them",
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Action patterns, for the guardrails.
//
// IAM compares actions without regard to case; in a pattern `*` stands for any
// run of characters and `?` for any one. The grammar ([`action_syntax`]) admits
// `*` alone or `service:name` with a literal service, so the one detail of the
// action namespace the functions below must know is that a name is never empty.

/// The lowercased characters of a glob, each run of wildcards written one way:
/// its `?`s, then one `*` if it had any (`*?*`, `?*` and `*?` mean the same, and
/// [`glob_covers`] compares patterns symbol by symbol).
fn canonical_glob(p: &str) -> Vec<char> {
    fn flush(out: &mut Vec<char>, q: &mut usize, star: &mut bool) {
        out.extend(std::iter::repeat_n('?', *q));
        if *star {
            out.push('*');
        }
        (*q, *star) = (0, false);
    }
    let mut out = Vec::with_capacity(p.len());
    let (mut q, mut star) = (0, false);
    for c in p.chars() {
        match c {
            '?' => q += 1,
            '*' => star = true,
            c => {
                flush(&mut out, &mut q, &mut star);
                out.push(c.to_ascii_lowercase());
            }
        }
    }
    flush(&mut out, &mut q, &mut star);
    out
}

fn is_wild(c: char) -> bool {
    c == '*' || c == '?'
}

/// True when some string matches both globs (`*` any run, `?` any one
/// character, letters compared without regard to ASCII case). Exact.
///
/// A dynamic programme over suffixes: `common[i][j]` says whether `a[i..]` and
/// `b[j..]` match a common string. A character of the common string is taken
/// by a symbol of each side, or by a `*` of one side and a symbol of the other;
/// a character both sides take with a `*` can be dropped from the common string,
/// so that step is never needed. O(|a|·|b|).
pub fn globs_intersect(a: &str, b: &str) -> bool {
    // A pattern without wildcards is a string: match it.
    if !a.contains(is_wild) {
        return glob_match(&b.to_ascii_lowercase(), &a.to_ascii_lowercase());
    }
    if !b.contains(is_wild) {
        return glob_match(&a.to_ascii_lowercase(), &b.to_ascii_lowercase());
    }
    let (a, b) = (canonical_glob(a), canonical_glob(b));
    let (n, m) = (a.len(), b.len());
    let at = |i: usize, j: usize| i * (m + 1) + j;
    let mut common = vec![false; (n + 1) * (m + 1)];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            common[at(i, j)] = match (a.get(i).copied(), b.get(j).copied()) {
                (None, None) => true,
                (x, y) => {
                    // A `*` that takes nothing more.
                    (x == Some('*') && common[at(i + 1, j)])
                        || (y == Some('*') && common[at(i, j + 1)])
                        // One character of the common string.
                        || match (x, y) {
                            (Some('*'), Some(y)) if y != '*' => common[at(i, j + 1)],
                            (Some(x), Some('*')) if x != '*' => common[at(i + 1, j)],
                            (Some(x), Some(y)) if x != '*' && y != '*' => {
                                (x == y || x == '?' || y == '?') && common[at(i + 1, j + 1)]
                            }
                            _ => false,
                        }
                }
            };
        }
    }
    common[at(0, 0)]
}

/// True when every string `inner` matches is matched by `outer` (glob
/// containment, letters compared without regard to ASCII case).
///
/// **Sound, not complete.** `outer` is read as letters and wildcard runs (a run
/// of `k` `?`s with or without a `*`, in any order); `inner` as symbols. The
/// containment is proved when `outer`'s elements can take consecutive pieces of
/// `inner` in order: a letter takes the same letter; a run without `*` takes
/// `k` symbols none of which is a `*`; a run with `*` takes any piece holding at
/// least `k` symbols that are not `*` (so `*?` contains `*a`, `?*` contains `a*`).
/// Each piece's strings are then the run's, so the proof is sound. A `*` of
/// `inner` is never split across elements of `outer`, so in principle a
/// containment that needs such a split is missed; no pair of patterns of up to
/// five symbols over two letters is (checked once exhaustively; the test below
/// checks up to four). Every caller refuses on `false`, so a miss would err
/// toward denial. O(|outer|·|inner|²).
pub fn glob_covers(outer: &str, inner: &str) -> bool {
    enum El {
        Letter(char),
        Run { q: usize, star: bool },
    }
    let mut els = Vec::new();
    for c in canonical_glob(outer) {
        match (c, els.last_mut()) {
            ('?', Some(El::Run { q, star: false })) => *q += 1,
            ('*', Some(El::Run { star, .. })) => *star = true,
            ('?', _) => els.push(El::Run { q: 1, star: false }),
            ('*', _) => els.push(El::Run { q: 0, star: true }),
            (c, _) => els.push(El::Letter(c)),
        }
    }
    let b = canonical_glob(inner);
    let (n, m) = (els.len(), b.len());
    let at = |i: usize, j: usize| i * (m + 1) + j;
    // covers[i][j]: els[i..] takes all of b[j..].
    let mut covers = vec![false; (n + 1) * (m + 1)];
    covers[at(n, m)] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            covers[at(i, j)] = match els[i] {
                El::Letter(c) => j < m && b[j] == c && covers[at(i + 1, j + 1)],
                El::Run { q, star: false } => {
                    j + q <= m && !b[j..j + q].contains(&'*') && covers[at(i + 1, j + q)]
                }
                El::Run { q, star: true } => {
                    let mut letters = 0;
                    (j..=m).any(|k| {
                        if k > j && b[k - 1] != '*' {
                            letters += 1;
                        }
                        letters >= q && covers[at(i + 1, k)]
                    })
                }
            };
        }
    }
    covers[at(0, 0)]
}

/// True when the pattern `granted` may grant at least one action the pattern
/// `listed` names (`iam:*Polic*` and `iam:Put*` share `iam:PutRolePolicy`).
/// Exact for patterns the grammar admits.
pub fn action_overlaps(granted: &str, listed: &str) -> bool {
    // Different literal services share nothing: skip the programme.
    if let (Some((s1, _)), Some((s2, _))) = (granted.split_once(':'), listed.split_once(':')) {
        if !s1.eq_ignore_ascii_case(s2) {
            return false;
        }
    }
    globs_intersect(granted, listed)
}

/// True when every action the pattern `inner` names is named by `outer`: a
/// `NotAction` entry `outer` excludes all of `inner`. Conservative (see
/// [`glob_covers`]): a `false` may be a containment it could not prove.
pub fn action_contains(outer: &str, inner: &str) -> bool {
    // Names are never empty, so `svc:*` names exactly what `svc:?*` names.
    match inner.split_once(':') {
        Some((svc, name)) if name.chars().all(|c| c == '*') => {
            glob_covers(outer, &format!("{svc}:?*"))
        }
        _ => glob_covers(outer, inner),
    }
}

/// True when the pattern `granted` may grant *every* action that `denied`
/// names: `*` covers `iam:*`; `iam:Create*` does not cover `iam:*`.
///
/// `denied`'s text is matched against the glob `granted`, so a wildcard of
/// `denied` counts as covered by a wildcard of `granted` (`iam:?` "covers"
/// `iam:*`): this over-approximates containment, which errs toward refusing.
pub fn action_covers(granted: &str, denied: &str) -> bool {
    glob_match(&granted.to_ascii_lowercase(), &denied.to_ascii_lowercase())
}

/// How a guardrail's list of action patterns is held against a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The statement may not grant *all* the actions of a listed pattern
    /// (`[guardrails] denied_actions`: `*` refuses `"Action": "*"`, not
    /// `s3:GetObject`). `Action` entries are held with [`action_covers`].
    Whole,
    /// The statement may not grant *any* action of a listed pattern
    /// (`[guardrails] escalation_actions`: `iam:PassRole` refuses `iam:Pass*`,
    /// `iam:*Role*` and `*`). `Action` entries are held with [`action_overlaps`].
    Any,
}

/// An `Allow` statement that grants (some of) a listed action pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Index of the statement in source order (for locating it).
    pub statement: usize,
    /// The listed pattern it grants.
    pub listed: String,
    /// What grants it, for messages: ``Action `iam:*` `` or `NotAction`.
    pub through: String,
}

/// Every listed pattern an `Allow` statement of `doc` grants, statement by
/// statement, in the order of `listed`.
///
/// `Action`: see [`Reach`]. `NotAction` in an `Allow` grants every action that
/// none of its entries names, so it grants a listed pattern unless one entry
/// contains the whole pattern ([`action_contains`]; several entries that only
/// together cover it are not credited — erring toward refusal), whatever the reach.
/// `Resource` and `Condition` are not considered: a narrow resource can still be
/// an escalation (passing one admin role is enough), and `Deny` statements are
/// not subtracted.
pub fn granted_actions(doc: &Json, listed: &[String], reach: Reach) -> Vec<Grant> {
    // Statements are taken in source order (the index locates them for messages).
    let stmts: Vec<Json> = match doc.get("Statement") {
        Some(Json::Array(items)) => items.iter().cloned().map(normalize_statement).collect(),
        Some(other) => vec![normalize_statement(other.clone())],
        None => Vec::new(),
    };
    let mut found = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        if s.get("Effect").and_then(Json::as_str) != Some("Allow") {
            continue;
        }
        let list = |k: &str| -> Vec<&str> {
            s.get(k)
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default()
        };
        let (actions, not_actions) = (list("Action"), list("NotAction"));
        for d in listed {
            let grants = |a: &str| match reach {
                Reach::Whole => action_covers(a, d),
                Reach::Any => action_overlaps(a, d),
            };
            let through = if let Some(a) = actions.iter().find(|a| grants(a)) {
                format!("Action `{a}`")
            } else if s.get("NotAction").is_some()
                && !not_actions.iter().any(|n| action_contains(n, d))
            {
                "NotAction".to_string()
            } else {
                continue;
            };
            found.push(Grant {
                statement: i,
                listed: d.clone(),
                through,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_documents;
    use serde_json::json;

    fn grammar(text: &str, kind: PolicyKind) -> Vec<String> {
        let node = load_documents(text).unwrap().remove(0);
        let mut d = Diagnostics::default();
        check_grammar(&node, kind, "p.json", &mut d);
        d.sorted().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn percent_encoded_and_plain_documents_parse_the_same() {
        let plain = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/a+b"}]}"#;
        let encoded: String =
            percent_encoding::utf8_percent_encode(plain, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(parse_live(plain).unwrap(), parse_live(&encoded).unwrap());
        // A `+` is not a space: percent-decoding only.
        let doc = parse_live(&encoded).unwrap();
        assert_eq!(doc["Statement"][0]["Resource"], "arn:aws:s3:::b/a+b");
        assert!(parse_live("%7Bnot json").is_err());
    }

    #[test]
    fn normalization_ignores_iam_reserialisation() {
        let git = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"},
            {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": "arn:x"},
             "Condition": {"StringEquals": {"k:sub": ["b", "a"], "k:aud": "sts.amazonaws.com"}, "Bool": {"aws:SecureTransport": true}}}
        ]});
        let live = json!({"Statement": [
            {"Condition": {"Bool": {"aws:SecureTransport": "true"}, "StringEquals": {"k:aud": ["sts.amazonaws.com"], "k:sub": ["a", "b"]}},
             "Principal": {"Federated": ["arn:x"]}, "Action": ["sts:AssumeRoleWithWebIdentity"], "Effect": "Allow"},
            {"Resource": ["*"], "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"]}
        ], "Version": "2012-10-17"});
        assert!(same_policy(&git, &live));
    }

    #[test]
    fn version_defaults_and_real_changes_are_seen() {
        let a = json!({"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}});
        let b = json!({"Version": "2008-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]});
        assert!(same_policy(&a, &b));
        let c = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]});
        assert!(
            !same_policy(&a, &c),
            "Version 2012 differs from the 2008 default"
        );
        let d = json!({"Version": "2008-10-17", "Statement": [{"Effect": "Deny", "Action": ["s3:*"], "Resource": ["*"]}]});
        assert!(!same_policy(&b, &d));
    }

    #[test]
    fn grammar_errors_have_positions() {
        let errs = grammar(
            "{\n \"Version\": \"2012-10-17\",\n \"Statement\": [{\n  \"Effect\": \"allow\",\n  \"Action\": \"s3 GetObject\",\n  \"Principal\": \"*\",\n  \"Resorce\": \"*\"\n }]\n}",
            PolicyKind::Identity,
        );
        assert_eq!(
            errs,
            vec![
                "p.json:3:16: Statement needs Resource or NotResource",
                "p.json:4:13: Effect must be \"Allow\" or \"Deny\", found allow\n  hint: Effect is case-sensitive",
                "p.json:5:13: `s3 GetObject` is not a valid IAM action; expected `service:Action` (wildcards `*` and `?` allowed) or `*`",
                "p.json:6:3: Principal is only allowed in trust (resource-based) policies\n  hint: identity policies apply to the role they are attached to; remove the Principal",
                "p.json:7:3: unknown element `Resorce` in Statement\n  hint: did you mean `Resource`? (policy elements are case-sensitive)",
            ]
        );
    }

    #[test]
    fn grammar_requires_statement_and_version_values() {
        let errs = grammar("{\"Version\": \"2020-01-01\"}", PolicyKind::Identity);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("policy document has no Statement"));
        assert!(errs[1].contains("policy Version must be"));
        assert!(grammar("{\"Statement\": {\"Effect\": \"Allow\", \"Action\": \"sts:AssumeRole\", \"Principal\": {\"AWS\": \"*\"}}}", PolicyKind::Trust).is_empty());
        let trust = grammar(
            "{\"Statement\": {\"Effect\": \"Allow\", \"Action\": \"sts:AssumeRole\", \"Resource\": \"*\"}}",
            PolicyKind::Trust,
        );
        assert_eq!(trust.len(), 2, "{trust:?}");
    }

    #[test]
    fn size_ignores_whitespace() {
        let doc = json!({"Version": "2012-10-17", "Statement": []});
        assert_eq!(
            iam_size(&doc),
            r#"{"Statement":[],"Version":"2012-10-17"}"#.len()
        );
    }

    #[test]
    fn denied_actions_are_found_through_wildcards_and_not_action() {
        let denied = vec!["*".to_string(), "iam:*".to_string()];
        let doc = json!({"Statement": [
            {"Effect": "Allow", "Action": "IAM:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:Get*", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}
        ]});
        let found: Vec<(String, String)> = granted_actions(&doc, &denied, Reach::Whole)
            .into_iter()
            .map(|g| (g.listed, g.through))
            .collect();
        assert_eq!(
            found,
            vec![
                ("iam:*".to_string(), "Action `IAM:*`".to_string()),
                ("*".to_string(), "NotAction".to_string()),
                ("iam:*".to_string(), "NotAction".to_string()),
            ]
        );
        assert!(action_covers("*", "iam:*"));
        assert!(!action_covers("iam:Create*", "iam:*"));
        // A NotAction entry excludes a denied pattern only when it contains all
        // of it: `iam:?` (one-letter names) leaves every IAM action granted.
        // (The entry's text was once matched as a glob against the pattern's
        // text, where `?` matched the `*`, and the statement passed.)
        let doc = json!({"Statement": {"Effect": "Allow", "NotAction": ["iam:?", "s3:*"], "Resource": "*"}});
        let found: Vec<String> = granted_actions(&doc, &denied, Reach::Whole)
            .into_iter()
            .map(|g| g.listed)
            .collect();
        assert_eq!(found, vec!["*", "iam:*"]);
    }

    #[test]
    fn globs_intersect_tricky_cases() {
        let yes = [
            ("iam:*Polic*", "iam:Put*"),       // iam:PutRolePolicy
            ("iam:Put*", "iam:PutRolePolicy"), // pattern against a literal
            ("iam:PutRolePolicy", "iam:Put*"), // ... both ways
            ("IAM:PASSROLE", "iam:passrole"),  // case
            ("*", "iam:PassRole"),
            ("*a", "*b*"),  // "ba"
            ("a*", "*b"),   // "ab"
            ("*x*", "*y*"), // "xy"
            ("?", "a"),
            ("??", "a*"),
            ("a?c", "*b*"), // "abc"
            ("", ""),
            ("", "*"),
            ("***", ""),
            ("iam:*Role*", "iam:*Policy"), // iam:AttachRolePolicy
            ("iam:?assRole", "iam:P*"),
        ];
        for (a, b) in yes {
            assert!(globs_intersect(a, b), "{a} ∩ {b}");
            assert!(globs_intersect(b, a), "{b} ∩ {a}");
        }
        let no = [
            ("iam:Get*", "iam:Put*"),
            ("iam:*Role", "iam:*Policy"),
            ("a*", "b*"),
            ("*a", "*b"),
            ("?", ""),
            ("??", "?"),
            ("a", ""),
            ("", "?*"),
            ("a?", "*bc"),
            ("iam:PassRole", "iam:PassRoles"),
            ("s3:*", "iam:*"),
        ];
        for (a, b) in no {
            assert!(!globs_intersect(a, b), "{a} ∩ {b}");
            assert!(!globs_intersect(b, a), "{b} ∩ {a}");
        }
    }

    #[test]
    fn glob_covers_tricky_cases() {
        let yes = [
            ("*", ""),
            ("*", "iam:*"),
            ("iam:*", "iam:Put*"),
            ("iam:Put*", "IAM:PUTROLEPOLICY"),
            ("iam:*Polic*", "iam:Put*Policy"),
            ("*a*", "?*a"),
            ("*a*", "a*?"),
            ("?*", "*?"), // canonical runs
            ("*?", "??*"),
            ("a?c", "abc"),
            ("a*c", "a?c"),
            ("a*c", "a*b*c"),
            ("", ""),
        ];
        for (a, b) in yes {
            assert!(glob_covers(a, b), "{a} ⊇ {b}");
        }
        let no = [
            ("iam:Put*", "iam:*"),
            ("?*", "*"), // the empty string
            ("a?c", "a*c"),
            ("abc", "a?c"),
            ("iam:?", "iam:*"), // which action_covers over-approximates
            ("*a", "*"),
            ("", "?"),
            ("a*b", "a*"),
        ];
        for (a, b) in no {
            assert!(!glob_covers(a, b), "{a} ⊇ {b}");
        }
        // Names are never empty: `iam:?*` names every IAM action.
        assert!(action_contains("iam:?*", "iam:*"));
        assert!(action_contains("iam:*", "iam:*"));
        assert!(!action_contains("iam:?", "iam:*"));
        assert!(!action_contains("iam:*", "*"));
        assert!(action_contains("*", "*"));
    }

    /// Every pattern over `alphabet` of length up to `max`.
    fn patterns(alphabet: &[char], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Property check against brute force: every pair of globs of up to 4
    /// symbols over `a`, `b`, `*`, `?`, against every string of up to 8 letters
    /// over `a`, `b`, `c` (`c` stands for any letter neither pattern names).
    /// Two such globs that share a string share one of at most 8 letters, so
    /// `globs_intersect` must agree exactly; `glob_covers` must never claim a
    /// containment that a string refutes, and (on this domain) misses none.
    #[test]
    fn globs_agree_with_brute_force() {
        let pats = patterns(&['a', 'b', '*', '?'], 4);
        let strings = patterns(&['a', 'b', 'c'], 8);
        // Which strings each pattern matches, as a bit set.
        let words = strings.len().div_ceil(64);
        let sets: Vec<Vec<u64>> = pats
            .iter()
            .map(|p| {
                let mut set = vec![0u64; words];
                for (k, s) in strings.iter().enumerate() {
                    if glob_match(p, s) {
                        set[k / 64] |= 1 << (k % 64);
                    }
                }
                set
            })
            .collect();
        let (mut missed, mut proved) = (Vec::new(), 0);
        for (i, a) in pats.iter().enumerate() {
            for (j, b) in pats.iter().enumerate() {
                let share = sets[i].iter().zip(&sets[j]).any(|(x, y)| x & y != 0);
                assert_eq!(globs_intersect(a, b), share, "`{a}` ∩ `{b}`");
                let subset = sets[j].iter().zip(&sets[i]).all(|(y, x)| y & !x == 0);
                if glob_covers(a, b) {
                    assert!(subset, "`{a}` ⊇ `{b}` claimed, but a string refutes it");
                    proved += 1;
                } else if subset {
                    missed.push(format!("{a} ⊇ {b}"));
                }
            }
        }
        assert!(proved > 10_000, "{proved}");
        assert!(missed.is_empty(), "containments not proved: {missed:?}");
    }
}
