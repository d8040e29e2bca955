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
//!
//! # Guarantees
//! Input is hostile (pull requests from anyone), so what one stream may build
//! is bounded by [`Limits`] ([`Limits::FILE`] for [`load_documents`]):
//! - nesting depth: collections inside collections, counting what an alias
//!   brings in, so every recursive walk of a [`Node`] (conversion, drop, the
//!   decoders) stays shallow;
//! - documents per stream;
//! - nodes and bytes of scalar text *built*, where an alias (`*a`) counts as
//!   every node and byte it copies and an anchor (`&a`) as the copy kept of
//!   it: a few hundred bytes of aliases of aliases (the "billion laughs")
//!   stop at the limit instead of growing until the process dies.
//!
//! The first limit crossed ends the load with a [`LoadError::Limit`] at the
//! line and column of the event that crossed it; nothing of the stream is
//! returned. Events are pulled one at a time (not through `yaml-rust2`'s
//! recursive `Parser::load`), so deep input cannot exhaust the stack either.
//!
//! A byte-order mark at the start of the text is skipped (YAML allows one;
//! editors on Windows write it). Tags are honoured only where they agree with
//! the core schema (`!!str 5` is the string "5"); any other tag is an error,
//! not a silently different value.

use crate::diag::Pos;
use yaml_rust2::parser::{Event, Parser, Tag};
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
    /// An integer within `i64` or `u64` (as serde_json reads JSON integers;
    /// a larger one is a [`Value::Float`], as there).
    Int(i128),
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
            Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (Ok(i), _) => J::from(i),
                (_, Ok(u)) => J::from(u),
                // Not built by the loader (see `resolve_plain`).
                _ => serde_json::Number::from_f64(*i as f64).map_or(J::Null, J::Number),
            },
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

    /// Moves the position of this node and every node in it.
    fn move_positions(&mut self, moved: &impl Fn(Pos) -> Pos) {
        self.pos = moved(self.pos);
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|i| i.move_positions(moved)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.move_positions(moved);
                v.move_positions(moved);
            }),
            _ => {}
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

/// What one YAML stream may build; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Collections nested inside each other (a document that is a mapping of
    /// scalars is 1 deep), counting what aliases bring in.
    pub depth: usize,
    /// Documents in the stream, empty ones included.
    pub documents: usize,
    /// Nodes built (scalars and collections); an alias counts as every node
    /// it copies, an anchor as the copy kept of its node.
    pub nodes: usize,
    /// Bytes of scalar text built, counted like [`Limits::nodes`].
    pub scalar_bytes: usize,
}

impl Limits {
    /// The limits of one repository file (tenant file, policy, inline
    /// policy). The deepest valid tenant document is 12 levels (an inline
    /// policy's condition values); a 1 MiB file of realistic tenants builds
    /// about 70,000 nodes and at most 1 MiB of text. Each limit is several
    /// times that, and small enough that one file's tree stays in tens of
    /// MiB (measured: README, Safety).
    pub const FILE: Limits = Limits {
        depth: 64,
        documents: 10_000,
        nodes: 250_000,
        scalar_bytes: 4 << 20,
    };
}

/// What a load built, in the units of [`Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nodes built, aliases and anchors counted as in [`Limits::nodes`].
    pub nodes: usize,
    /// Bytes of scalar text built.
    pub scalar_bytes: usize,
}

/// Which limit a stream crossed, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::depth`].
    Depth(usize),
    /// [`Limits::documents`].
    Documents(usize),
    /// [`Limits::nodes`].
    Nodes(usize),
    /// [`Limits::scalar_bytes`].
    ScalarBytes(usize),
}

/// Why a stream was not loaded. Nothing of it is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The parser's syntax error.
    #[error("{message}")]
    Syntax {
        /// Where the parser stopped.
        pos: Pos,
        /// The parser's message.
        message: String,
    },
    /// A limit of [`Limits`] was crossed.
    #[error("{}", limit_message(*.limit))]
    Limit {
        /// The event that crossed it.
        pos: Pos,
        /// Which one.
        limit: Limit,
    },
    /// A tag kftenant does not read, or a tagged value that is not of its tag.
    #[error("{message}")]
    Tag {
        /// The tagged node.
        pos: Pos,
        /// What is wrong.
        message: String,
    },
}

fn limit_message(limit: Limit) -> String {
    match limit {
        Limit::Depth(n) => format!(
            "nested more than {n} levels deep (aliases included), over kftenant's limit; the file was not read further"
        ),
        Limit::Documents(n) => format!(
            "more than {n} documents in one file, over kftenant's limit; the file was not read further"
        ),
        Limit::Nodes(n) => format!(
            "builds more than {n} values (an alias counts as every value it copies), over kftenant's limit; the file was not read further"
        ),
        Limit::ScalarBytes(n) => format!(
            "builds more than {n} bytes of text (an alias counts as the text it copies), over kftenant's limit; the file was not read further"
        ),
    }
}

impl LoadError {
    /// Where the problem is.
    pub fn pos(&self) -> Pos {
        match self {
            LoadError::Syntax { pos, .. }
            | LoadError::Limit { pos, .. }
            | LoadError::Tag { pos, .. } => *pos,
        }
    }

    /// How to fix it, when there is something useful to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LoadError::Syntax { .. } => None,
            LoadError::Limit {
                limit: Limit::Depth(_),
                ..
            } => Some("a tenant document is about 12 levels deep at most; flatten this structure"),
            LoadError::Limit {
                limit: Limit::Documents(_),
                ..
            } => Some("split the file: tenants can live in any number of files under tenants/"),
            LoadError::Limit { .. } => Some(
                "an alias (*name) copies its anchor (&name), and aliases of aliases multiply: write the values out, or split the file",
            ),
            LoadError::Tag { .. } => Some("remove the tag: kftenant reads plain YAML"),
        }
    }
}

/// What [`load`] and [`load_json`] return: the documents (empty ones
/// skipped) and what they built.
pub type Loaded = Result<(Vec<Node>, Usage), LoadError>;

/// Parses every document of a YAML stream within [`Limits::FILE`]. Empty
/// documents are skipped.
pub fn load_documents(text: &str) -> Result<Vec<Node>, LoadError> {
    load(text, &Limits::FILE).map(|(docs, _)| docs)
}

/// Parses every document of a YAML stream within `limits`, and says how much
/// it built. Empty documents are skipped.
pub fn load(text: &str, limits: &Limits) -> Loaded {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let end = end_of(text);
    let mut builder = Builder::new(limits, end);
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| LoadError::Syntax {
            pos: to_pos(e.marker()).min(end),
            message: e.info().to_string(),
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, mark)?;
    }
    let docs = builder
        .docs
        .into_iter()
        .filter(|d| d.value != Value::Null)
        .collect();
    Ok((docs, builder.used))
}

/// Parses a JSON text (a policy file) as YAML within `limits`, for its
/// positions. JSON is YAML 1.2 but for one thing: a character outside the
/// Basic Multilingual Plane may be escaped as a UTF-16 surrogate pair
/// (`"\ud83d\ude00"`, as Python's `json.dumps` writes it), which YAML's `\u`
/// does not read. Each pair is rewritten as YAML's `\U0001f600` before
/// parsing, and the positions after it on its line are moved back by the two
/// characters that took. Call it on text serde_json accepts.
pub fn load_json(text: &str, limits: &Limits) -> Loaded {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (rewritten, shifts) = rewrite_surrogate_pairs(text);
    if shifts.is_empty() {
        return load(text, limits);
    }
    let moved = |pos: Pos| {
        let before = shifts
            .iter()
            .filter(|(line, col)| *line == pos.line && *col <= pos.column)
            .count();
        Pos::new(pos.line, pos.column + 2 * before)
    };
    match load(&rewritten, limits) {
        Ok((mut docs, used)) => {
            for d in &mut docs {
                d.move_positions(&moved);
            }
            Ok((docs, used))
        }
        Err(LoadError::Syntax { pos, message }) => Err(LoadError::Syntax {
            pos: moved(pos),
            message,
        }),
        Err(LoadError::Limit { pos, limit }) => Err(LoadError::Limit {
            pos: moved(pos),
            limit,
        }),
        Err(LoadError::Tag { pos, message }) => Err(LoadError::Tag {
            pos: moved(pos),
            message,
        }),
    }
}

/// `text` with every `\uD8xx\uDCxx` escape pair inside a JSON string
/// written as one `\U000xxxxx`, and where each rewrite ends: its line and
/// the column just after it, in the rewritten text.
fn rewrite_surrogate_pairs(text: &str) -> (std::borrow::Cow<'_, str>, Vec<(usize, usize)>) {
    if !text.contains("\\u") {
        return (std::borrow::Cow::Borrowed(text), Vec::new());
    }
    let hex4 = |s: &[char]| -> Option<u32> {
        let h: String = s.iter().collect();
        (s.len() == 4 && s.iter().all(char::is_ascii_hexdigit))
            .then(|| u32::from_str_radix(&h, 16).ok())
            .flatten()
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut shifts = Vec::new();
    let (mut line, mut col) = (1, 1);
    let (mut in_string, mut i) = (false, 0);
    while i < chars.len() {
        let c = chars[i];
        if in_string && c == '\\' && chars.get(i + 1) == Some(&'u') {
            let high = chars.get(i + 2..i + 6).and_then(hex4);
            let low = (chars.get(i + 6) == Some(&'\\') && chars.get(i + 7) == Some(&'u'))
                .then(|| chars.get(i + 8..i + 12).and_then(hex4))
                .flatten();
            if let (Some(h @ 0xD800..=0xDBFF), Some(l @ 0xDC00..=0xDFFF)) = (high, low) {
                let code = 0x10000 + ((h - 0xD800) << 10) + (l - 0xDC00);
                let escape = format!("\\U{code:08x}");
                col += escape.len();
                out.push_str(&escape);
                shifts.push((line, col));
                i += 12;
                continue;
            }
            // Any other escape: copied as it is (both characters).
            out.push_str("\\u");
            col += 2;
            i += 2;
            continue;
        }
        if in_string && c == '\\' {
            out.push(c);
            if let Some(&next) = chars.get(i + 1) {
                out.push(next);
            }
            col += 2;
            i += 2;
            continue;
        }
        if c == '"' {
            in_string = !in_string;
        }
        out.push(c);
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
        i += 1;
    }
    (std::borrow::Cow::Owned(out), shifts)
}

/// The position just after the last character of `text`: the parser marks
/// what ends there (an empty value, an unclosed bracket) on the line after a
/// last line without a newline, which an editor does not have.
fn end_of(text: &str) -> Pos {
    let lines = text.split('\n').count();
    let last = text.rsplit('\n').next().unwrap_or_default();
    Pos::new(lines, last.chars().count() + 1)
}

fn to_pos(m: &Marker) -> Pos {
    // yaml-rust2 markers are 1-based for lines and 0-based for columns.
    Pos::new(m.line(), m.col() + 1)
}

/// What a subtree holds, for charging an alias of it.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    scalar_bytes: usize,
    /// Collections nested in it, itself included (a scalar is 0).
    height: usize,
}

/// A collection being filled.
struct Frame {
    node: Node,
    /// For mappings: a key waiting for its value.
    key: Option<Node>,
    anchor: usize,
    /// Its children so far (their nodes, bytes and tallest height).
    children: Size,
}

struct Builder<'l> {
    limits: &'l Limits,
    /// Where the text ends; no position is after it.
    end: Pos,
    docs: Vec<Node>,
    stack: Vec<Frame>,
    /// Anchored nodes of the current document, kept for their aliases.
    anchors: Vec<(usize, Node, Size)>,
    used: Usage,
    documents: usize,
}

impl<'l> Builder<'l> {
    fn new(limits: &'l Limits, end: Pos) -> Self {
        Builder {
            limits,
            end,
            docs: Vec::new(),
            stack: Vec::new(),
            anchors: Vec::new(),
            used: Usage::default(),
            documents: 0,
        }
    }

    /// Counts `size` as built, failing at `pos` when a limit is crossed.
    fn charge(&mut self, size: Size, pos: Pos) -> Result<(), LoadError> {
        let limit = |limit| LoadError::Limit { pos, limit };
        self.used.nodes = self.used.nodes.saturating_add(size.nodes);
        self.used.scalar_bytes = self.used.scalar_bytes.saturating_add(size.scalar_bytes);
        if self.used.nodes > self.limits.nodes {
            return Err(limit(Limit::Nodes(self.limits.nodes)));
        }
        if self.used.scalar_bytes > self.limits.scalar_bytes {
            return Err(limit(Limit::ScalarBytes(self.limits.scalar_bytes)));
        }
        Ok(())
    }

    /// Fails at `pos` when a subtree `height` deep placed here would nest
    /// deeper than the limit.
    fn check_depth(&self, height: usize, pos: Pos) -> Result<(), LoadError> {
        if self.stack.len().saturating_add(height) > self.limits.depth {
            return Err(LoadError::Limit {
                pos,
                limit: Limit::Depth(self.limits.depth),
            });
        }
        Ok(())
    }

    /// Places a finished node in its parent (or as a document), keeping a
    /// copy when it is anchored.
    fn insert(&mut self, node: Node, size: Size, anchor: usize) -> Result<(), LoadError> {
        if anchor > 0 {
            self.charge(size, node.pos)?;
            self.anchors.push((anchor, node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(frame) => {
                let c = &mut frame.children;
                c.nodes = c.nodes.saturating_add(size.nodes);
                c.scalar_bytes = c.scalar_bytes.saturating_add(size.scalar_bytes);
                c.height = c.height.max(size.height);
                match &mut frame.node.value {
                    Value::Seq(items) => items.push(node),
                    Value::Map(entries) => match frame.key.take() {
                        None => frame.key = Some(node),
                        Some(key) => entries.push((key, node)),
                    },
                    _ => unreachable!("only collections are pushed on the stack"),
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, value: Value, anchor: usize, pos: Pos) -> Result<(), LoadError> {
        self.check_depth(1, pos)?;
        self.charge(
            Size {
                nodes: 1,
                ..Size::default()
            },
            pos,
        )?;
        self.stack.push(Frame {
            node: Node { value, pos },
            key: None,
            anchor,
            children: Size::default(),
        });
        Ok(())
    }

    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), LoadError> {
        let pos = to_pos(&mark).min(self.end);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let size = Size {
                    nodes: 1,
                    scalar_bytes: text.len(),
                    height: 0,
                };
                self.charge(size, pos)?;
                let value = scalar(text, style, tag.as_ref(), pos)?;
                self.insert(Node { value, pos }, size, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                collection_tag(tag.as_ref(), "seq", pos)?;
                self.open(Value::Seq(Vec::new()), anchor, pos)
            }
            Event::MappingStart(anchor, tag) => {
                collection_tag(tag.as_ref(), "map", pos)?;
                self.open(Value::Map(Vec::new()), anchor, pos)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(Frame {
                    mut node,
                    anchor,
                    children,
                    ..
                }) = self.stack.pop()
                else {
                    return Ok(());
                };
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
                let size = Size {
                    nodes: children.nodes.saturating_add(1),
                    scalar_bytes: children.scalar_bytes,
                    height: children.height + 1,
                };
                self.insert(node, size, anchor)
            }
            Event::Alias(id) => {
                let Some((value, size)) = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _, _)| *a == id)
                    .map(|(_, n, size)| (n.value.clone(), *size))
                else {
                    // The parser refuses unknown anchors; this is not reached.
                    return self.insert(
                        Node {
                            value: Value::Null,
                            pos,
                        },
                        Size::default(),
                        0,
                    );
                };
                self.check_depth(size.height, pos)?;
                self.charge(size, pos)?;
                self.insert(Node { value, pos }, size, 0)
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > self.limits.documents {
                    return Err(LoadError::Limit {
                        pos,
                        limit: Limit::Documents(self.limits.documents),
                    });
                }
                self.anchors.clear();
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `!!str`, `!!int`, ... as written.
fn tag_text(tag: &Tag) -> String {
    if tag.handle == CORE_TAG_PREFIX {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// The non-specific tag `!`, which makes a scalar a string.
fn is_non_specific(tag: &Tag) -> bool {
    tag.handle.is_empty() && tag.suffix == "!"
}

fn unsupported(tag: &Tag, pos: Pos) -> LoadError {
    LoadError::Tag {
        pos,
        message: format!(
            "YAML tag `{}` is not supported: kftenant reads strings, numbers, booleans, null, lists and mappings",
            tag_text(tag)
        ),
    }
}

/// A collection's tag must be absent, `!`, or its own core tag.
fn collection_tag(tag: Option<&Tag>, core: &str, pos: Pos) -> Result<(), LoadError> {
    match tag {
        None => Ok(()),
        Some(t) if is_non_specific(t) || (t.handle == CORE_TAG_PREFIX && t.suffix == core) => {
            Ok(())
        }
        Some(t) => Err(unsupported(t, pos)),
    }
}

/// A scalar's value: by the core schema when plain and untagged, a string
/// when quoted, and as its tag says when tagged with a core tag.
fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Value, LoadError> {
    let Some(tag) = tag else {
        return Ok(if style == TScalarStyle::Plain {
            resolve_plain(&text)
        } else {
            Value::Str(text)
        });
    };
    if is_non_specific(tag) {
        return Ok(Value::Str(text));
    }
    if tag.handle != CORE_TAG_PREFIX {
        return Err(unsupported(tag, pos));
    }
    let resolved = match tag.suffix.as_str() {
        "str" => return Ok(Value::Str(text)),
        "null" | "bool" | "int" | "float" => resolve_plain(&text),
        _ => return Err(unsupported(tag, pos)),
    };
    match (tag.suffix.as_str(), resolved) {
        ("null", v @ Value::Null)
        | ("bool", v @ Value::Bool(_))
        | ("int", v @ Value::Int(_))
        | ("float", v @ Value::Float(_)) => Ok(v),
        ("float", Value::Int(i)) => Ok(Value::Float(i as f64)),
        _ => Err(LoadError::Tag {
            pos,
            message: format!("`{text}` is not a valid `{}`", tag_text(tag)),
        }),
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
            return Value::Int(i.into());
        }
        if let Ok(u) = text.parse::<u64>() {
            return Value::Int(u.into());
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
        assert!(matches!(err, LoadError::Syntax { .. }), "{err:?}");
        assert!(err.pos().line >= 1, "{err:?}");
        assert!(!err.to_string().is_empty());
    }

    /// Nine aliases of nine aliases ... nine levels deep: 9^9 nodes from a
    /// few hundred bytes.
    fn billion_laughs() -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        text
    }

    fn limit_of(text: &str) -> (Pos, Limit) {
        match load_documents(text) {
            Err(LoadError::Limit { pos, limit }) => (pos, limit),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_expansion_is_bounded_with_a_position() {
        let text = billion_laughs();
        assert!(text.len() < 500, "{}", text.len());
        let (pos, limit) = limit_of(&text);
        assert_eq!(limit, Limit::Nodes(Limits::FILE.nodes));
        // a4 is 66,430 nodes; with the anchors' kept copies, the second
        // alias of it on line 6 crosses 250,000.
        assert_eq!(pos, Pos::new(6, 15));
        // One long string copied many times is bounded by its bytes.
        let long = "x".repeat(100_000);
        let aliases = vec!["*s"; 50].join(", ");
        let (pos, limit) = limit_of(&format!("s: &s {long}\nl: [{aliases}]\n"));
        assert_eq!(limit, Limit::ScalarBytes(Limits::FILE.scalar_bytes));
        assert_eq!(pos.line, 2);
        // A few aliases are fine, and counted.
        let (docs, used) =
            load("q: &q {cpu: 1, memory: 2Gi}\na: *q\nb: *q\n", &Limits::FILE).unwrap();
        assert_eq!(
            docs[0].get("b").unwrap().to_json(),
            serde_json::json!({"cpu": 1, "memory": "2Gi"})
        );
        // The document, 3 keys, the anchored mapping (5) and its kept copy (5), two copies (10).
        assert_eq!(used.nodes, 1 + 3 + 5 + 5 + 10);
    }

    #[test]
    fn nesting_is_bounded_and_deep_input_does_not_overflow_the_stack() {
        let deep = |n: usize| "- ".repeat(n) + "x\n";
        assert!(load_documents(&deep(Limits::FILE.depth)).is_ok());
        let (pos, limit) = limit_of(&deep(Limits::FILE.depth + 1));
        assert_eq!(limit, Limit::Depth(64));
        assert_eq!(pos, Pos::new(1, 129));
        // A megabyte of nesting, block and flow, stops at the limit.
        assert!(matches!(limit_of(&deep(500_000)).1, Limit::Depth(64)));
        let flow = "[".repeat(1 << 20);
        assert!(load_documents(&flow).is_err());
        // An alias of a deep node, placed deep, counts both.
        let half = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let text = format!(
            "a: &a {}\nb: {}*a{}\n",
            half(40),
            "[".repeat(30),
            "]".repeat(30)
        );
        assert_eq!(limit_of(&text), (Pos::new(2, 34), Limit::Depth(64)));
    }

    #[test]
    fn documents_per_file_are_bounded() {
        let many = |n: usize| "---\na: 1\n".repeat(n);
        assert_eq!(
            load_documents(&many(Limits::FILE.documents)).unwrap().len(),
            10_000
        );
        let (pos, limit) = limit_of(&many(Limits::FILE.documents + 1));
        assert_eq!(limit, Limit::Documents(10_000));
        assert_eq!(pos, Pos::new(20_001, 1));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let docs = load_documents("\u{feff}a: 1\nb: x\n").unwrap();
        assert_eq!(docs[0].get("b").unwrap().pos, Pos::new(2, 4));
        assert_eq!(docs[0].pos, Pos::new(1, 1));
        let json = load_documents("\u{feff}{\"a\": [1]}").unwrap();
        assert_eq!(json[0].to_json(), serde_json::json!({"a": [1]}));
    }

    #[test]
    fn tags_are_honoured_or_refused() {
        let docs =
            load_documents("a: !!str 7200\nb: !!int 5\nc: !!float 1\nd: ! 12\ne: !!map {x: 1}\n")
                .unwrap();
        let d = &docs[0];
        assert_eq!(d.get("a").unwrap().as_str(), Some("7200"));
        assert_eq!(d.get("b").unwrap().value, Value::Int(5));
        assert_eq!(d.get("c").unwrap().value, Value::Float(1.0));
        assert_eq!(d.get("d").unwrap().as_str(), Some("12"));
        for (text, message) in [
            ("a: !!int x\n", "`x` is not a valid `!!int`"),
            (
                "a: !!binary aGk=\n",
                "YAML tag `!!binary` is not supported: kftenant reads strings, numbers, booleans, null, lists and mappings",
            ),
            (
                "a: !custom {x: 1}\n",
                "YAML tag `!custom` is not supported: kftenant reads strings, numbers, booleans, null, lists and mappings",
            ),
        ] {
            let e = load_documents(text).unwrap_err();
            assert!(matches!(e, LoadError::Tag { .. }), "{e:?}");
            assert_eq!(e.to_string(), message);
            assert_eq!(e.pos().line, 1);
        }
    }

    #[test]
    fn an_error_at_the_end_is_on_the_last_line() {
        let e = load_documents("a: [[[").unwrap_err();
        assert_eq!(e.pos(), Pos::new(1, 7), "{e:?}");
        let e = load_documents("a: [[[\n").unwrap_err();
        assert_eq!(e.pos(), Pos::new(2, 1), "{e:?}");
        let docs = load_documents("a: 1\nb:").unwrap();
        assert_eq!(docs[0].get("b").unwrap().pos, Pos::new(2, 3));
    }

    #[test]
    fn json_surrogate_pairs_and_large_integers_read_as_serde_json_reads_them() {
        let text = "{\"a\": [\"\\ud83d\\ude00-\\ud83e\\udd80\", \"x\"], \"b\": 18446744073709551615,\n \"c\": \"\\u00e9\"}";
        let (docs, _) = load_json(text, &Limits::FILE).unwrap();
        let want: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(docs[0].to_json(), want);
        assert_eq!(want["a"][0], "😀-🦀");
        // Positions after a rewritten pair are those of the text as written.
        let Value::Seq(a) = &docs[0].get("a").unwrap().value else {
            panic!()
        };
        assert_eq!(a[1].pos, Pos::new(1, 37));
        assert_eq!(docs[0].get("b").unwrap().pos, Pos::new(1, 48));
        assert_eq!(docs[0].get("c").unwrap().pos, Pos::new(2, 7));
        // YAML's own `\u` stays as YAML reads it.
        assert!(load_documents("a: \"\\ud83d\\ude00\"").is_err());
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
