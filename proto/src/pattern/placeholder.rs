//! `${name}` placeholders in pattern strings (URLs, commands, env values, probes): finding them
//! for lint, and replacing them with param values for a run.
//!
//! `$${` writes a literal `${`; a `$` not followed by `{` is literal, so shell text such as
//! `$HOME` needs no escaping.

use thiserror::Error;

use super::formats;
use super::values::Params;

/// One piece of a string with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text taken as it is.
    Literal(String),
    /// `${name}`, starting `offset` characters into the string.
    Param { name: String, offset: usize },
    /// Something that looks like a placeholder but is not one.
    Malformed { message: String, offset: usize },
}

/// Splits `text` into literal text and placeholders.
pub(crate) fn scan(text: &str) -> Vec<Piece> {
    let chars: Vec<char> = text.chars().collect();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut idx = 0;
    while idx < chars.len() {
        let starts_placeholder = chars[idx] == '$' && chars.get(idx + 1) == Some(&'{');
        if chars[idx] == '$' && chars.get(idx + 1) == Some(&'$') && chars.get(idx + 2) == Some(&'{') {
            literal.push_str("${");
            idx += 3;
            continue;
        }
        if !starts_placeholder {
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
        let name: String = chars[idx + 2..idx + close].iter().collect();
        if formats::is_identifier(&name) {
            pieces.push(Piece::Param { name, offset: idx });
        } else {
            let message = format!("`${{{name}}}` is not a placeholder: param names are letters, digits and `_`");
            pieces.push(Piece::Malformed { message, offset: idx });
        }
        idx += close + 1;
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

/// Why a string's placeholders cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubstituteError {
    /// The param has no value in this run (optional, no default, not supplied).
    #[error("`${{{0}}}`: param `{0}` has no value")]
    NoValue(String),
    /// The param is a list or a map, which cannot be put into a string.
    #[error("`${{{0}}}`: param `{0}` is a list or a map and cannot be put into a string")]
    NotScalar(String),
    /// The text holds something that is not a placeholder (lint reports it too).
    #[error("{0}")]
    Malformed(String),
}

/// Replaces every `${name}` in `text` with the value of param `name`. Secrets are revealed, so
/// only call this for the places a secret may go (env values).
///
/// # Errors
/// The first placeholder that cannot be replaced.
pub fn substitute(text: &str, params: &Params) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(text.len());
    for piece in scan(text) {
        match piece {
            Piece::Literal(literal) => out.push_str(&literal),
            Piece::Param { name, .. } => {
                let value = params.get(&name).ok_or_else(|| SubstituteError::NoValue(name.clone()))?;
                out.push_str(&value.as_text().ok_or(SubstituteError::NotScalar(name))?);
            }
            Piece::Malformed { message, .. } => return Err(SubstituteError::Malformed(message)),
        }
    }
    Ok(out)
}

/// The param named by a string that is exactly one placeholder (`"${port}"`).
pub(crate) fn whole(text: &str) -> Option<String> {
    match scan(text).as_slice() {
        [Piece::Param { name, .. }] if text.starts_with("${") && text.ends_with('}') => Some(name.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pattern::param_value::ParamValue;

    #[test]
    fn substitutes() {
        let params = Params::from_values(BTreeMap::from([
            ("zone".to_owned(), ParamValue::String("lab.local".to_owned())),
            ("port".to_owned(), ParamValue::Integer(53)),
            ("records".to_owned(), ParamValue::List(vec![])),
        ]));
        let cases: [(&str, Result<&str, SubstituteError>); 7] = [
            ("${zone}:${port}", Ok("lab.local:53")),
            ("echo $HOME $${zone}", Ok("echo $HOME ${zone}")),
            ("$", Ok("$")),
            ("${nope}", Err(SubstituteError::NoValue("nope".into()))),
            ("${records}", Err(SubstituteError::NotScalar("records".into()))),
            ("${zone", Err(SubstituteError::Malformed("unterminated `${`; write `$${` for a literal `${`".into()))),
            ("${a-b}", Err(SubstituteError::Malformed("`${a-b}` is not a placeholder: param names are letters, digits and `_`".into()))),
        ];
        for (input, expected) in cases {
            assert_eq!(substitute(input, &params), expected.map(str::to_owned), "{input}");
        }
    }

    #[test]
    fn finds_whole_placeholders() {
        assert_eq!(whole("${port}"), Some("port".to_owned()));
        assert_eq!(whole("x${port}"), None);
        assert_eq!(whole("${a}${b}"), None);
    }
}
