//! IAM policy documents: grammar checks, sizes, and semantic comparison.
//!
//! IAM hands documents back percent-encoded and re-serialised: a one-element
//! list may come back as a string, statements and values in another order,
//! `Version` filled in. Comparing strings would make every plan show changes
//! forever (the most reported bug of ACK, Crossplane and the Terraform AWS
//! provider), so every comparison goes through [`normalize`].

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

/// True when the action pattern `granted` (an IAM glob) grants every action
/// that `denied` names. `*` covers `iam:*`; `iam:Create*` does not cover `iam:*`.
pub fn action_covers(granted: &str, denied: &str) -> bool {
    glob_match(&granted.to_ascii_lowercase(), &denied.to_ascii_lowercase())
}

/// The denied actions an `Allow` statement of `doc` grants, with the statement index.
///
/// `NotAction` in an `Allow` statement grants every denied pattern that none
/// of its entries covers.
pub fn granted_denied_actions(doc: &Json, denied: &[String]) -> Vec<(usize, String, String)> {
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
        let list = |k: &str| -> Vec<String> {
            s.get(k)
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        for d in denied {
            if let Some(a) = list("Action").into_iter().find(|a| action_covers(a, d)) {
                found.push((i, d.clone(), format!("Action `{a}`")));
            } else if s.get("NotAction").is_some()
                && !list("NotAction").iter().any(|n| action_covers(n, d))
            {
                found.push((i, d.clone(), "NotAction".to_string()));
            }
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
        let found: Vec<(String, String)> = granted_denied_actions(&doc, &denied)
            .into_iter()
            .map(|(_, d, how)| (d, how))
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
    }
}
