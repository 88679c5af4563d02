//! Placeholders in a lab's values: `${COMPONENT.outputs.NAME}` (another component's output),
//! `${values.NAME}` (a lab-wide value), `${lab.name}` and `${index}` (the replica's number
//! in a component with a count). `$${` writes a literal `${`.
//!
//! [`scan`] finds them for the decoder; [`resolve`] replaces output references and `${index}`
//! once the outputs are known. A reference that is the whole string takes the output's typed
//! value (a list for a repeated component); one inside text is spliced in as text.

use crate::pattern::diagnostic::excerpt;
use crate::pattern::formats::{is_dns_label, is_identifier};

/// One piece of a value's string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Index { offset: usize },
    LabName { offset: usize },
    LabValue { name: String, offset: usize },
    Output { component: String, output: String, offset: usize },
    Malformed { message: String, offset: usize },
}

/// Splits `text` into literal text and placeholders; offsets count characters.
pub(crate) fn scan(text: &str) -> Vec<Piece> {
    let chars: Vec<char> = text.chars().collect();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut idx = 0;
    while idx < chars.len() {
        if chars[idx] == '$' && chars.get(idx + 1) == Some(&'$') && chars.get(idx + 2) == Some(&'{') {
            literal.push_str("${");
            idx += 3;
            continue;
        }
        if !(chars[idx] == '$' && chars.get(idx + 1) == Some(&'{')) {
            literal.push(chars[idx]);
            idx += 1;
            continue;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        let Some(close) = chars[idx..].iter().position(|ch| *ch == '}') else {
            pieces.push(Piece::Malformed { message: "unterminated `${`; write `$${` for a literal `${`".to_owned(), offset: idx });
            return pieces;
        };
        let inner: String = chars[idx + 2..idx + close].iter().collect();
        pieces.push(piece(&inner, idx));
        idx += close + 1;
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

fn piece(inner: &str, offset: usize) -> Piece {
    let parts: Vec<&str> = inner.split('.').collect();
    match parts.as_slice() {
        ["index"] => Piece::Index { offset },
        ["lab", "name"] => Piece::LabName { offset },
        ["values", name] if is_identifier(name) => Piece::LabValue { name: (*name).to_owned(), offset },
        [component, "outputs", output] if is_dns_label(component) && is_identifier(output) => {
            Piece::Output { component: (*component).to_owned(), output: (*output).to_owned(), offset }
        }
        [_, "output", _] => Piece::Malformed { message: format!("`${{{}}}`: write `outputs`, plural", excerpt(inner)), offset },
        _ => Piece::Malformed {
            message: format!(
                "`${{{}}}` is not a lab placeholder: use `${{COMPONENT.outputs.NAME}}`, `${{values.NAME}}`, `${{lab.name}}` or `${{index}}`",
                excerpt(inner)
            ),
            offset,
        },
    }
}

/// `text` with every `${` written `$${`, so it survives another scan as literal text.
pub(crate) fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

/// Why a value cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// An output the value references has no value (the component has not succeeded, or the
    /// output is secret and was not given).
    #[error("the output `{component}.outputs.{output}` is not known")]
    Unknown { component: String, output: String },
    /// A list or mapping output cannot be spliced into text.
    #[error("the output `{component}.outputs.{output}` is a list or mapping: use it as the whole value")]
    NotText { component: String, output: String },
}

/// The components and outputs a value's string references, in order.
pub fn references(value: &serde_json::Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    walk(value, &mut |text| {
        for piece in scan(text) {
            if let Piece::Output { component, output, .. } = piece {
                found.push((component, output));
            }
        }
    });
    found
}

fn walk(value: &serde_json::Value, visit: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::String(text) => visit(text),
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, visit)),
        serde_json::Value::Object(map) => map.values().for_each(|item| walk(item, visit)),
        _ => {}
    }
}

/// `value` with its output references replaced by what `output(component, name)` gives, and
/// `${index}` by `index`.
///
/// # Errors
/// [`ResolveError`] naming the first reference that cannot be resolved.
pub fn resolve(
    value: &serde_json::Value,
    index: u32,
    output: &dyn Fn(&str, &str) -> Option<serde_json::Value>,
) -> Result<serde_json::Value, ResolveError> {
    Ok(match value {
        serde_json::Value::String(text) => {
            let pieces = scan(text);
            if let [Piece::Output { component, output: name, .. }] = pieces.as_slice() {
                return output(component, name).ok_or_else(|| ResolveError::Unknown { component: component.clone(), output: name.clone() });
            }
            let mut resolved = String::new();
            for piece in pieces {
                match piece {
                    Piece::Literal(literal) => resolved.push_str(&literal),
                    Piece::Index { .. } => resolved.push_str(&index.to_string()),
                    Piece::Output { component, output: name, .. } => match output(&component, &name) {
                        Some(serde_json::Value::String(text)) => resolved.push_str(&text),
                        Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => resolved.push_str(&value.to_string()),
                        Some(_) => return Err(ResolveError::NotText { component, output: name }),
                        None => return Err(ResolveError::Unknown { component, output: name }),
                    },
                    // The decoder substituted these and refused the malformed ones.
                    Piece::LabName { .. } | Piece::LabValue { .. } | Piece::Malformed { .. } => {}
                }
            }
            serde_json::Value::String(resolved)
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(|item| resolve(item, index, output)).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter().map(|(key, item)| Ok((key.clone(), resolve(item, index, output)?))).collect::<Result<_, ResolveError>>()?,
        ),
        other => other.clone(),
    })
}
