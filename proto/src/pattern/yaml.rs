//! A YAML document as a tree of nodes that remember where they start, so every problem the
//! decoder finds can be reported at its exact line and column.
//!
//! Built from `saphyr-parser`'s events. The tree keeps each scalar's raw text and style and
//! leaves typing to the decoder (YAML 1.2 core schema for plain scalars), keeps mapping entries
//! in document order, reports duplicate keys, and resolves aliases by copying the anchored node.
//! A syntax error stops the load: nothing after it can be trusted.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::diagnostic::{Mark, Report};

/// One YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub mark: Mark,
    /// How many characters the node spans in the source.
    span_chars: usize,
    /// Whether the node starts and ends on the same line.
    single_line: bool,
    pub value: Value,
}

/// The content of a node.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A scalar's text as written, and whether it was quoted (or tagged `!!str`), which makes it a
/// string whatever it looks like.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: String,
    pub style: Style,
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Quoted,
    Block,
}

impl Node {
    /// The plain text of a scalar, whatever its type, unless it is null.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(scalar) if !self.is_null() => Some(&scalar.text),
            _ => None,
        }
    }

    pub(crate) fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    fn plain(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(Scalar { text, style: Style::Plain }) => Some(text),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.plain(), Some("" | "~" | "null" | "Null" | "NULL"))
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self.plain()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        let text = self.plain()?;
        if let Some(hex) = text.strip_prefix("0x") {
            return i64::from_str_radix(hex, 16).ok();
        }
        if let Some(octal) = text.strip_prefix("0o") {
            return i64::from_str_radix(octal, 8).ok();
        }
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    pub(crate) fn as_float(&self) -> Option<f64> {
        if let Some(int) = self.as_int() {
            return Some(int as f64);
        }
        let text = self.plain()?;
        let looks_numeric =
            text.bytes().any(|byte| byte.is_ascii_digit()) && text.bytes().all(|byte| byte.is_ascii_digit() || b"+-.eE".contains(&byte));
        if looks_numeric {
            text.parse().ok()
        } else {
            None
        }
    }

    /// What kind of value this is, for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar(_) if self.is_null() => "nothing",
            Value::Scalar(_) if self.as_bool().is_some() => "a boolean",
            Value::Scalar(_) if self.as_int().is_some() => "an integer",
            Value::Scalar(_) if self.as_float().is_some() => "a number",
            Value::Scalar(_) => "a string",
        }
    }

    /// The mark of the character at `offset` (in characters) inside a scalar's text, when the
    /// scalar is written on one line without escapes; its start otherwise.
    pub(crate) fn mark_at(&self, offset: usize) -> Mark {
        let Value::Scalar(scalar) = &self.value else { return self.mark };
        let n_chars = scalar.text.chars().count();
        match scalar.style {
            Style::Plain if self.single_line && self.span_chars == n_chars => self.mark.right(offset),
            Style::Quoted if self.single_line && self.span_chars == n_chars + 2 => self.mark.right(offset + 1),
            _ => self.mark,
        }
    }
}

fn mark_of(span: &Span) -> Mark {
    Mark { line: span.start.line(), column: span.start.col() + 1 }
}

enum Frame {
    Seq { start: Span, anchor: usize, items: Vec<Node> },
    Map { start: Span, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

struct Builder<'r> {
    report: &'r mut Report,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl Builder<'_> {
    fn node(start: &Span, end: &Span, value: Value) -> Node {
        Node {
            mark: mark_of(start),
            span_chars: end.end.index().saturating_sub(start.start.index()),
            single_line: start.start.line() == end.end.line(),
            value,
        }
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(key_node) => {
                    let first = key_node.as_str().and_then(|text| entries.iter().find(|(existing, _)| existing.as_str() == Some(text)));
                    match first {
                        Some((first, _)) => self.report.error(
                            key_node.mark,
                            format!(
                                "duplicate key `{}` (first defined at line {})",
                                key_node.as_str().unwrap_or_default(),
                                first.mark.line
                            ),
                        ),
                        None => entries.push((key_node, node)),
                    }
                }
            },
        }
    }

    fn scalar_style(&mut self, span: &Span, style: ScalarStyle, tag: Option<&Tag>) -> Style {
        if let Some(tag) = tag {
            if tag.is_yaml_core_schema() && tag.suffix == "str" {
                return Style::Quoted;
            }
            if !tag.is_yaml_core_schema() {
                self.report.error(mark_of(span), format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix));
            }
        }
        match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
            ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
        }
    }

    /// Handles one event; false when the load must stop.
    fn event(&mut self, event: Event<'_>, span: Span, n_documents: &mut usize) -> bool {
        match event {
            Event::DocumentStart(_) => {
                *n_documents += 1;
                if *n_documents > 1 {
                    self.report.error(mark_of(&span), "a pattern file holds one YAML document; a second one starts here");
                    return false;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let style = self.scalar_style(&span, style, tag.as_deref());
                let node = Self::node(&span, &span, Value::Scalar(Scalar { text: text.into_owned(), style }));
                self.finish(node, anchor);
            }
            Event::Alias(anchor) => {
                let Some(mut node) = self.anchors.get(&anchor).cloned() else {
                    self.report.error(mark_of(&span), "alias to an unknown anchor");
                    return false;
                };
                node.mark = mark_of(&span);
                self.finish(node, 0);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq { start: span, anchor, items: Vec::new() }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map { start: span, anchor, entries: Vec::new(), key: None }),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else { return false };
                let (node, anchor) = match frame {
                    Frame::Seq { start, anchor, items } => (Self::node(&start, &span, Value::Seq(items)), anchor),
                    Frame::Map { start, anchor, entries, .. } => (Self::node(&start, &span, Value::Map(entries)), anchor),
                };
                self.finish(node, anchor);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        true
    }
}

/// Loads the one document in `text`; `None` when there is none or it is not valid YAML (the
/// reason is in `report`).
pub(crate) fn load(text: &str, report: &mut Report) -> Option<Node> {
    let mut builder = Builder { report, stack: Vec::new(), anchors: HashMap::new(), root: None };
    let mut n_documents = 0;
    for next in Parser::new_from_str(text) {
        match next {
            Ok((event, span)) => {
                if !builder.event(event, span, &mut n_documents) {
                    break;
                }
            }
            Err(err) => {
                let mark = Mark { line: err.marker().line(), column: err.marker().col() + 1 };
                builder.report.error(mark, format!("YAML syntax error: {}", err.info()));
                return None;
            }
        }
    }
    builder.root
}
