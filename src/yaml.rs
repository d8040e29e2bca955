//! A YAML tree that remembers where each node came from.
//!
//! `serde_yaml` (archived upstream since 2024) only reports positions for
//! syntax and type errors, but our semantic checks (a duplicate tenant, a bad
//! ARN, a guardrail) must point at the offending node too. We therefore build
//! our own small tree from the event stream of `yaml-rust2`: a maintained,
//! pure-Rust YAML 1.2 parser whose events carry a line/column [`Marker`]. Scalars are
//! resolved with the YAML 1.2 core schema (so `no` stays a string).
//!
//! The same loader reads JSON policy files (JSON is YAML 1.2), which gives
//! grammar errors inside a policy document a line and column as well.

use crate::diag::Pos;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's content.
    pub value: Value,
    /// Where the node starts in its file.
    pub pos: Pos,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// Any other scalar, or a quoted one.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order; keys are nodes so their positions are kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type for messages ("a string", "a mapping").
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The string content, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` when this node is a mapping with that (string) key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node as JSON (positions dropped). Keys that are not strings are
    /// rendered as their YAML text, as Kubernetes does.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The text of a scalar node (for keys and messages).
    pub fn scalar_text(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Seq(_) => "[...]".into(),
            Value::Map(_) => "{...}".into(),
        }
    }
}

/// A syntax error, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// The parser's message.
    pub message: String,
}

/// Parses every document of a YAML stream. Empty documents are skipped.
pub fn load_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        pos: to_pos(e.marker()),
        message: e.info().to_string(),
    })?;
    Ok(builder
        .docs
        .into_iter()
        .filter(|d| d.value != Value::Null)
        .collect())
}

fn to_pos(m: &Marker) -> Pos {
    // yaml-rust2 markers are 1-based for lines and 0-based for columns.
    Pos::new(m.line(), m.col() + 1)
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    /// Open collections: the node being filled and, for mappings, a pending key.
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: Vec<(usize, Node)>,
}

impl Builder {
    fn insert(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some((parent, pending, _)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                _ => unreachable!("only collections are pushed on the stack"),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = to_pos(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Value::Str(text)
                };
                self.insert(Node { value, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Node {
                    value: Value::Seq(Vec::new()),
                    pos,
                },
                None,
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Node {
                    value: Value::Map(Vec::new()),
                    pos,
                },
                None,
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, _, anchor)) = self.stack.pop() {
                    // A block mapping's start event is marked after its first key;
                    // the node starts where its first entry does.
                    let first = match &node.value {
                        Value::Map(entries) => entries.first().map(|(k, _)| k.pos),
                        Value::Seq(items) => items.first().map(|i| i.pos),
                        _ => None,
                    };
                    if let Some(first) = first {
                        node.pos = node.pos.min(first);
                    }
                    self.insert(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| Node {
                        value: n.value.clone(),
                        pos,
                    })
                    .unwrap_or(Node {
                        value: Value::Null,
                        pos,
                    });
                self.insert(node, 0);
            }
            Event::DocumentStart => self.anchors.clear(),
            _ => {}
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if looks_numeric {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            if text.contains(|c: char| c.is_ascii_digit()) {
                return Value::Float(f);
            }
        }
    }
    Value::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let docs = load_documents("a: 1\nb:\n  - x\n  - \"y\"\n").unwrap();
        assert_eq!(docs.len(), 1);
        let b = docs[0].get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos::new(3, 5));
        assert_eq!(items[1].as_str(), Some("y"));
        assert_eq!(docs[0].get("a").unwrap().value, Value::Int(1));
    }

    #[test]
    fn multiple_documents_and_core_schema() {
        let docs = load_documents("---\nx: no\ny: 1.5\nz: ~\n---\n---\nq: true\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("x").unwrap().as_str(), Some("no"));
        assert_eq!(docs[0].get("y").unwrap().value, Value::Float(1.5));
        assert_eq!(docs[0].get("z").unwrap().value, Value::Null);
        assert_eq!(docs[1].get("q").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = load_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn json_is_read_with_positions() {
        let docs =
            load_documents("{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}").unwrap();
        assert_eq!(docs[0].get("Statement").unwrap().pos.line, 3);
        assert_eq!(
            docs[0].to_json(),
            serde_json::json!({"Version": "2012-10-17", "Statement": []})
        );
    }

    #[test]
    fn aliases_are_resolved() {
        let docs = load_documents("a: &q {cpu: 1}\nb: *q\n").unwrap();
        assert_eq!(
            docs[0].get("b").unwrap().to_json(),
            serde_json::json!({"cpu": 1})
        );
    }
}
