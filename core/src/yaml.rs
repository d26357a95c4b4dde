//! A YAML reader that keeps the position of every node and refuses hostile documents.
//!
//! Workflow files are read into a small tree of [`Node`]s that remember their line and
//! column, so that every later check can point at the exact place. Aliases are expanded
//! here against a node budget, and depth and size are capped, so an alias bomb or a
//! deeply nested document fails fast with a clear message instead of eating memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::Value;

use crate::diag::{Diagnostic, Pos};

/// Caps on what a document may cost to read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted document, in bytes.
    pub max_bytes: usize,
    /// Most nodes after alias expansion.
    pub max_nodes: usize,
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 * 1024 * 1024,
            max_nodes: 200_000,
            max_depth: 128,
        }
    }
}

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts (at the opening quote of a quoted scalar).
    pub pos: Pos,
    /// Where a string's first character stands, when every character of the string
    /// takes exactly one column of one line in the file (a one-line plain or quoted
    /// scalar without escapes), so an offset into the string is an offset in columns.
    pub text: Option<Pos>,
    /// The value.
    pub kind: Kind,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in file order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key stands.
    pub pos: Pos,
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl Node {
    /// The node as JSON, for typed deserialisation.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The value under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key and value under `key` when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The items when this node is a sequence.
    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Seq(items) => items,
            _ => &[],
        }
    }

    /// The node at `path`, when there is one.
    pub fn find(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match seg {
                Seg::Key(k) => node.get(k)?,
                Seg::Index(i) => node.items().get(*i)?,
            };
        }
        Some(node)
    }

    /// The position of the character at byte `offset` of the string at `path`: exact
    /// when the string maps one character to one column (see [`Node::text`]), else the
    /// string's own position.
    pub fn locate_in(&self, path: &[Seg], offset: usize) -> Pos {
        match self.find(path) {
            Some(Node {
                text: Some(start),
                kind: Kind::Str(s),
                ..
            }) => Pos {
                line: start.line,
                col: start.col + s.get(..offset).map_or(0, |p| p.chars().count()) as u32,
            },
            _ => self.locate_value(path),
        }
    }

    /// The position of the value at `path` (where [`Node::locate`] would give the key's),
    /// for problems with a value rather than with the field's presence.
    pub fn locate_value(&self, path: &[Seg]) -> Pos {
        self.find(path).map_or_else(|| self.locate(path), |n| n.pos)
    }

    /// The position of the deepest node along `path` (a key's own position when the
    /// path ends on a key, so "unknown field" points at the field).
    pub fn locate(&self, path: &[Seg]) -> Pos {
        let mut node = self;
        let mut pos = self.pos;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match seg {
                Seg::Key(k) => match node.entry(k) {
                    Some((key, value)) => {
                        pos = if last { key.pos } else { value.pos };
                        node = value;
                    }
                    None => return pos,
                },
                Seg::Index(idx) => match node.items().get(*idx) {
                    Some(item) => {
                        pos = item.pos;
                        node = item;
                    }
                    None => return pos,
                },
            }
        }
        pos
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line() as u32,
        col: span.start.col() as u32 + 1,
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Key, Node)>, Option<Key>),
}

/// Reads one YAML document into a [`Node`] tree, or says what is wrong with it.
pub fn parse(file: &str, src: &str, limits: Limits) -> Result<Node, Vec<Diagnostic>> {
    let err = |pos: Pos, msg: String| vec![Diagnostic::error(file, pos, msg)];
    if src.len() > limits.max_bytes {
        return Err(err(
            Pos { line: 1, col: 1 },
            format!(
                "file is {} bytes, more than the {} bytes a workflow file may have",
                src.len(),
                limits.max_bytes
            ),
        ));
    }
    let chars: Vec<char> = src.chars().collect();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut duplicates: Vec<Diagnostic> = Vec::new();
    let mut documents = 0;

    for item in Parser::new_from_str(src) {
        let (event, span) = match item {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.marker();
                let pos = Pos {
                    line: m.line() as u32,
                    col: m.col() as u32 + 1,
                };
                return Err(err(pos, format!("invalid YAML: {}", e.info())));
            }
        };
        let pos = pos_of(&span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        pos,
                        "more than one YAML document in the file".to_owned(),
                    ));
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    nodes += count(node);
                    if nodes > limits.max_nodes {
                        return Err(err(
                            pos,
                            format!(
                                "document expands to more than {} nodes through aliases",
                                limits.max_nodes
                            ),
                        ));
                    }
                    let mut copy = node.clone();
                    copy.pos = pos;
                    copy.text = None;
                    Some((copy, 0))
                }
                None => return Err(err(pos, "alias to an unknown anchor".to_owned())),
            },
            Event::Scalar(text, style, anchor, tag) => {
                nodes += 1;
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let text_pos = text_start(&chars, &span, &text, pos);
                let kind = if style == ScalarStyle::Plain && !tagged_str {
                    resolve_plain(&text)
                } else {
                    Kind::Str(text.into_owned())
                };
                Some((
                    Node {
                        pos,
                        text: text_pos,
                        kind,
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(err(
                        pos,
                        format!("nesting deeper than {} levels", limits.max_depth),
                    ));
                }
                stack.push(Frame::Seq(pos, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(err(
                        pos,
                        format!("nesting deeper than {} levels", limits.max_depth),
                    ));
                }
                stack.push(Frame::Map(pos, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => {
                    nodes += 1;
                    Some((
                        Node {
                            pos: p,
                            text: None,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    ))
                }
                _ => return Err(err(pos, "unbalanced sequence".to_owned())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, anchor, entries, _)) => {
                    nodes += 1;
                    Some((
                        Node {
                            pos: p,
                            text: None,
                            kind: Kind::Map(entries),
                        },
                        anchor,
                    ))
                }
                _ => return Err(err(pos, "unbalanced mapping".to_owned())),
            },
        };
        if nodes > limits.max_nodes {
            return Err(err(
                pos,
                format!("document has more than {} nodes", limits.max_nodes),
            ));
        }
        let Some((node, anchor)) = finished else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    let name = match &node.kind {
                        Kind::Str(s) => s.clone(),
                        Kind::Int(i) => i.to_string(),
                        Kind::Bool(b) => b.to_string(),
                        Kind::Float(f) => f.to_string(),
                        Kind::Null => "null".to_owned(),
                        Kind::Seq(_) | Kind::Map(_) => {
                            return Err(err(node.pos, "mapping keys must be plain strings".into()));
                        }
                    };
                    if entries.iter().any(|(k, _)| k.name == name) {
                        duplicates.push(Diagnostic::error(
                            file,
                            node.pos,
                            format!("duplicate key `{name}`"),
                        ));
                    }
                    *pending = Some(Key {
                        name,
                        pos: node.pos,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    if !duplicates.is_empty() {
        return Err(duplicates);
    }
    Ok(root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        text: None,
        kind: Kind::Null,
    }))
}

/// Where the characters of a scalar start, when the source at the span's start is the
/// text itself or the text in quotes (no escapes, no folded lines). The span's end is
/// not used: in flow collections it may take in the whitespace after the scalar.
fn text_start(chars: &[char], span: &Span, text: &str, pos: Pos) -> Option<Pos> {
    let raw = chars.get(span.start.index()..)?;
    let len = text.chars().count();
    let same = |from: usize| {
        raw.get(from..from + len)
            .is_some_and(|r| r.iter().copied().eq(text.chars()))
    };
    let quote = raw.first().copied();
    if matches!(quote, Some('"' | '\'')) && same(1) && raw.get(len + 1).copied() == quote {
        Some(Pos {
            line: pos.line,
            col: pos.col + 1,
        })
    } else if same(0) && !text.contains('\n') {
        Some(pos)
    } else {
        None
    }
}

fn count(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + count(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | "+.inf" | ".Inf" | "+.Inf" | ".INF" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Kind::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Kind::Int(i);
    }
    let numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if numeric && text.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Kind::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str, expect: &str) {
        let got = match parse("t.yaml", src, Limits::default()) {
            Ok(node) => node.to_json().to_string(),
            Err(diags) => diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        assert_eq!(got, expect, "for {src:?}");
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        check(
            "a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: 1.2.3\n",
            r#"{"a":1,"b":"1","c":true,"d":null,"e":1.5,"f":"1.2.3"}"#,
        );
        check("a: !!str 12\n", r#"{"a":"12"}"#);
        check("a: -2wd\n", r#"{"a":"-2wd"}"#);
    }

    #[test]
    fn positions_are_one_based() {
        let node = parse(
            "t.yaml",
            "id: x\nsteps:\n  - id: a\n    set: {}\n",
            Limits::default(),
        )
        .unwrap();
        let path = [
            Seg::Key("steps".into()),
            Seg::Index(0),
            Seg::Key("set".into()),
        ];
        assert_eq!(node.locate(&path), Pos { line: 4, col: 5 });
        assert_eq!(
            node.locate(&[Seg::Key("steps".into()), Seg::Index(0)]),
            Pos { line: 3, col: 5 }
        );
    }

    #[test]
    fn syntax_errors_name_the_place() {
        check(
            "a: [1, 2\nb: 3\n",
            "t.yaml:2:2: error: invalid YAML: illegal placement of ':' indicator",
        );
        // Far deeper than the cap: the parser's own recursion guard answers first.
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse("t.yaml", &deep, Limits::default()).is_err());
    }

    #[test]
    fn duplicate_keys_are_errors() {
        check("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: error: duplicate key `a`");
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let err = parse("t.yaml", &src, Limits::default()).unwrap_err();
        assert!(err[0].message.contains("through aliases"), "{}", err[0]);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("{}{}", "[".repeat(150), "]".repeat(150));
        let err = parse("t.yaml", &src, Limits::default()).unwrap_err();
        assert!(
            err[0].message.contains("nesting deeper than 128"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn huge_files_are_refused() {
        let src = "# x\n".repeat(2_000_000);
        let err = parse("t.yaml", &src, Limits::default()).unwrap_err();
        assert!(
            err[0].message.contains("more than the 4194304 bytes"),
            "{}",
            err[0]
        );
    }
}
