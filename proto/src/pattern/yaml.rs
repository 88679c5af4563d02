//! A YAML document as a tree of nodes that remember where they start, so every problem the
//! decoder finds can be reported at its exact line and column.
//!
//! Built from `saphyr-parser`'s events. The tree keeps each scalar's raw text and style and
//! leaves typing to the decoder (YAML 1.2 core schema for plain scalars), keeps mapping entries
//! in document order, reports duplicate keys, and resolves aliases by copying the anchored node.
//! A syntax error stops the load: nothing after it can be trusted.
//!
//! Every YAML input (a pattern, a values file, the pattern inside a bundle pushed to the master)
//! is loaded here, so the bounds hold for all of them: at most [`MAX_INPUT_BYTES`] of text, at
//! most [`MAX_NODES`] nodes counting every copy an alias makes (a few anchors nested ten deep
//! would otherwise expand to billions), nesting at most [`MAX_DEPTH`] deep, and only the core
//! tags (`!!python/object` and the like are refused, never interpreted).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::diagnostic::{excerpt, Mark, Report};

/// The largest YAML text accepted, in bytes.
pub(crate) const MAX_INPUT_BYTES: usize = 1 << 20;
/// The most nodes one document may produce, each alias counting the nodes it copies.
pub(crate) const MAX_NODES: usize = 200_000;
/// The deepest nesting of lists and mappings, aliases included.
pub(crate) const MAX_DEPTH: usize = 64;
/// The tags accepted on scalars, besides `!!str` (which makes a scalar a string).
const SCALAR_TAGS: [&str; 4] = ["int", "float", "bool", "null"];
const ACCEPTED_TAGS: &str = "`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq` and `!!map`";

/// One YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub mark: Mark,
    /// How many characters the node spans in the source.
    span_chars: usize,
    /// Whether the node starts and ends on the same line.
    single_line: bool,
    /// How many nodes the tree under this one holds, itself included (what an alias copies).
    n_nodes: usize,
    /// How deep the tree under this one goes: 0 for a scalar.
    height: usize,
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

    /// Whether the node is written as an integer (decimal, `0x` or `0o`) too large for 64 bits,
    /// so messages can say it is out of range rather than not an integer.
    pub(crate) fn is_integer_out_of_range(&self) -> bool {
        let Some(text) = self.plain() else { return false };
        let (digits, radix) = match (text.strip_prefix("0x"), text.strip_prefix("0o")) {
            (Some(hex), _) => (hex, 16),
            (_, Some(octal)) => (octal, 8),
            _ => (text.strip_prefix(['-', '+']).unwrap_or(text), 10),
        };
        !digits.is_empty() && digits.chars().all(|character| character.is_digit(radix)) && self.as_int().is_none()
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
            Value::Scalar(_) if self.is_integer_out_of_range() => "an integer out of range",
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

/// A tag as written: `!!int`, `!local`, or the verbatim form.
fn tag_text(tag: &Tag) -> String {
    let text = if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else {
        format!("!<{}{}>", tag.handle, tag.suffix)
    };
    excerpt(&text)
}

enum Frame {
    Seq { start: Span, anchor: usize, items: Vec<Node> },
    Map { start: Span, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node>, lines: HashMap<String, usize> },
}

struct Builder<'r> {
    report: &'r mut Report,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    /// Nodes produced so far, alias copies included.
    n_nodes: usize,
}

/// Why the load stops.
enum Stop {
    /// After the first document: it is kept, and what follows is reported.
    KeepRoot,
    /// A bound was passed: nothing of the document is kept.
    Discard,
}

impl Builder<'_> {
    fn node(start: &Span, end: &Span, value: Value) -> Node {
        let children: Vec<&Node> = match &value {
            Value::Scalar(_) => Vec::new(),
            Value::Seq(items) => items.iter().collect(),
            Value::Map(entries) => entries.iter().flat_map(|(key, value)| [key, value]).collect(),
        };
        let n_nodes = 1 + children.iter().map(|child| child.n_nodes).sum::<usize>();
        let height = children.iter().map(|child| child.height + 1).max().unwrap_or(0);
        Node {
            mark: mark_of(start),
            span_chars: end.end.index().saturating_sub(start.start.index()),
            single_line: start.start.line() == end.end.line(),
            n_nodes,
            height,
            value,
        }
    }

    /// Counts `n_nodes` more nodes against the document's budget.
    fn spend(&mut self, mark: Mark, n_nodes: usize) -> Result<(), Stop> {
        self.n_nodes = self.n_nodes.saturating_add(n_nodes);
        if self.n_nodes > MAX_NODES {
            self.report
                .error(mark, format!("the document expands to more than {MAX_NODES} nodes (aliases counted as copies); refusing it"));
            return Err(Stop::Discard);
        }
        Ok(())
    }

    /// Checks that a node `height` deep fits at the current depth.
    fn nest(&mut self, mark: Mark, height: usize) -> Result<(), Stop> {
        if self.stack.len() + height > MAX_DEPTH {
            self.report.error(mark, format!("lists and mappings nest more than {MAX_DEPTH} deep"));
            return Err(Stop::Discard);
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, lines, .. }) => match key.take() {
                None => *key = Some(node),
                Some(key_node) => {
                    let first = key_node.as_str().and_then(|text| lines.get(text).copied());
                    match first {
                        Some(first_line) => self.report.error(
                            key_node.mark,
                            format!(
                                "duplicate key `{}` (first defined at line {first_line})",
                                excerpt(key_node.as_str().unwrap_or_default())
                            ),
                        ),
                        None => {
                            if let Some(text) = key_node.as_str() {
                                lines.insert(text.to_owned(), key_node.mark.line);
                            }
                            entries.push((key_node, node));
                        }
                    }
                }
            },
        }
    }

    /// Reports a tag other than the core ones that fit `kind` ("seq", "map", or a scalar).
    fn check_tag(&mut self, span: &Span, tag: Option<&Tag>, kind: &str) {
        let Some(tag) = tag else { return };
        if tag.is_yaml_core_schema() && tag.suffix == kind {
            return;
        }
        let message = if tag.is_yaml_core_schema() && ["seq", "map", "str"].iter().chain(&SCALAR_TAGS).any(|core| *core == tag.suffix) {
            format!("the tag `{}` does not fit this node", tag_text(tag))
        } else {
            format!("unsupported YAML tag `{}`; only {ACCEPTED_TAGS} are accepted", tag_text(tag))
        };
        self.report.error(mark_of(span), message);
    }

    fn scalar(&mut self, span: &Span, text: String, style: ScalarStyle, tag: Option<&Tag>) -> Node {
        let mut style = match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
            ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
        };
        let core = tag.filter(|tag| tag.is_yaml_core_schema()).map(|tag| tag.suffix.as_str());
        match core {
            Some("str") => style = Style::Quoted,
            Some(suffix) if SCALAR_TAGS.contains(&suffix) => style = Style::Plain,
            _ => self.check_tag(span, tag, "str"),
        }
        let node = Self::node(span, span, Value::Scalar(Scalar { text, style }));
        let fits = match core {
            Some("int") => node.as_int().is_some() || node.is_integer_out_of_range(),
            Some("float") => node.as_float().is_some() || matches!(node.plain(), Some(".inf" | "-.inf" | ".nan")),
            Some("bool") => node.as_bool().is_some(),
            Some("null") => node.is_null(),
            _ => true,
        };
        if !fits {
            let tag = tag.map(tag_text).unwrap_or_default();
            let text = node.plain().map(excerpt).unwrap_or_default();
            self.report.error(node.mark, format!("`{text}` is not what its tag `{tag}` says"));
        }
        node
    }

    /// Handles one event; `Err` when the load must stop.
    fn event(&mut self, event: Event<'_>, span: Span, n_documents: &mut usize) -> Result<(), Stop> {
        match event {
            Event::DocumentStart(_) => {
                *n_documents += 1;
                if *n_documents > 1 {
                    self.report.error(mark_of(&span), "a pattern file holds one YAML document; a second one starts here");
                    return Err(Stop::KeepRoot);
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.spend(mark_of(&span), 1)?;
                let node = self.scalar(&span, text.into_owned(), style, tag.as_deref());
                self.finish(node, anchor);
            }
            Event::Alias(anchor) => {
                let Some(anchored) = self.anchors.get(&anchor) else {
                    self.report.error(mark_of(&span), "alias to an unknown anchor");
                    return Err(Stop::Discard);
                };
                let (n_nodes, height) = (anchored.n_nodes, anchored.height);
                // Checked before the copy, so the copy itself stays within the budget.
                self.spend(mark_of(&span), n_nodes)?;
                self.nest(mark_of(&span), height)?;
                let mut node = self.anchors.get(&anchor).cloned().expect("the anchor was found above");
                node.mark = mark_of(&span);
                self.finish(node, 0);
            }
            Event::SequenceStart(anchor, tag) => {
                self.spend(mark_of(&span), 1)?;
                self.nest(mark_of(&span), 1)?;
                self.check_tag(&span, tag.as_deref(), "seq");
                self.stack.push(Frame::Seq { start: span, anchor, items: Vec::new() });
            }
            Event::MappingStart(anchor, tag) => {
                self.spend(mark_of(&span), 1)?;
                self.nest(mark_of(&span), 1)?;
                self.check_tag(&span, tag.as_deref(), "map");
                self.stack.push(Frame::Map { start: span, anchor, entries: Vec::new(), key: None, lines: HashMap::new() });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else { return Err(Stop::KeepRoot) };
                let (node, anchor) = match frame {
                    Frame::Seq { start, anchor, items } => (Self::node(&start, &span, Value::Seq(items)), anchor),
                    Frame::Map { start, anchor, entries, .. } => (Self::node(&start, &span, Value::Map(entries)), anchor),
                };
                self.finish(node, anchor);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }
}

/// Where a syntax error about a tab should point: the first tab from the start of the line the
/// parser stopped on. The parser reports such errors at the scalar it was reading, which is
/// often on the line before the tab.
fn tab_mark(text: &str, error_index: usize) -> Option<Mark> {
    let error_offset = text.char_indices().nth(error_index).map_or(text.len(), |(offset, _)| offset);
    let line_start = text[..error_offset].rfind('\n').map_or(0, |idx| idx + 1);
    let tab = text[line_start..].find('\t')? + line_start;
    Some(Mark::of_byte_offset(text, tab))
}

/// Loads the one document in `text`; `None` when there is none or it is not valid YAML (the
/// reason is in `report`).
pub(crate) fn load(text: &str, report: &mut Report) -> Option<Node> {
    if text.len() > MAX_INPUT_BYTES {
        report.error(Mark::START, format!("the file is {} bytes; at most {MAX_INPUT_BYTES} bytes of YAML are accepted", text.len()));
        return None;
    }
    let mut builder = Builder { report, stack: Vec::new(), anchors: HashMap::new(), root: None, n_nodes: 0 };
    let mut n_documents = 0;
    for next in Parser::new_from_str(text) {
        match next {
            Ok((event, span)) => {
                match builder.event(event, span, &mut n_documents) {
                    Ok(()) => {}
                    Err(Stop::KeepRoot) => break,
                    // A document cut short is not the document written: nothing of it is kept.
                    Err(Stop::Discard) => return None,
                }
            }
            Err(err) => {
                let marker = err.marker();
                let at_tab = if err.info().contains("tab") { tab_mark(text, marker.index()) } else { None };
                let (mark, info) = match at_tab {
                    Some(mark) => (mark, "a tab character; YAML indents with spaces".to_owned()),
                    None => (Mark { line: marker.line(), column: marker.col() + 1 }, err.info().to_owned()),
                };
                builder.report.error(mark, format!("YAML syntax error: {}", excerpt(&info)));
                return None;
            }
        }
    }
    builder.root
}

#[cfg(test)]
mod tests;
