//! Pattern outputs: what a pattern reports once a run succeeded (the address it serves on, the
//! port, a CA certificate it generated), named and typed so an operator, and later a lab, can
//! read them.
//!
//! An output takes exactly one source: `value`, a string of placeholders (`${param}`,
//! `${host.address}`: the agent's advertised address, `${host.name}`: the agent's name,
//! `${image.NAME}`: the reference an image of the pattern resolved to), or
//! `from`, a file read from a run or service step's container after the run. The model is
//! here; `decode::outputs` reads and lints it; [`render_value`] and [`typed_text`] turn a
//! source into a typed JSON value for a run (the agent reads `from` files itself: proto does
//! no I/O).

use std::collections::BTreeMap;

use super::diagnostic::excerpt;
pub use super::output_spec::{FromFile, Output, OutputType};
use super::param_value::ParamValue;
use super::placeholder::{self, Piece};
use super::spec::{ParamType, Validation};
use super::values::{self, Params};

/// The run facts an output's `value` may name, besides params.
pub const FACTS: [&str; 2] = ["host.address", "host.name"];

/// The facts of the run on its agent that `${host.address}`, `${host.name}` and
/// `${image.NAME}` stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// The agent's advertised address, without the port.
    pub host_address: String,
    /// The agent's name.
    pub host_name: String,
    /// The reference each image of the pattern resolved to on the agent (a built image's
    /// tag), by name: what another pattern's `images` can `ref`.
    pub images: BTreeMap<String, String>,
}

/// One piece of an output's `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValuePiece {
    Literal(String),
    Param {
        name: String,
        offset: usize,
    },
    /// `${host.address}` or `${host.name}` (a name of [`FACTS`]).
    Fact {
        name: &'static str,
    },
    /// `${image.NAME}`: the reference image NAME resolved to.
    Image {
        name: String,
        offset: usize,
    },
    Malformed {
        message: String,
        offset: usize,
    },
}

/// Splits an output's `value` into literal text, params and run facts.
pub(crate) fn scan(text: &str) -> Vec<ValuePiece> {
    let chars: Vec<char> = text.chars().collect();
    placeholder::scan(text)
        .into_iter()
        .map(|piece| match piece {
            Piece::Literal(literal) => ValuePiece::Literal(literal),
            Piece::Param { name, offset } => ValuePiece::Param { name, offset },
            Piece::Malformed { message, offset } => {
                let rest: String = chars[offset..].iter().collect();
                let image = rest.strip_prefix("${image.").and_then(|name| name.split_once('}')).map(|(name, _)| name.to_owned());
                match FACTS.iter().find(|fact| rest.starts_with(&format!("${{{fact}}}"))) {
                    Some(name) => ValuePiece::Fact { name },
                    None if image.is_some() => ValuePiece::Image { name: image.unwrap_or_default(), offset },
                    None if rest.starts_with("${host.") => {
                        let name: String = rest[2..].chars().take_while(|ch| *ch != '}').collect();
                        let message = format!(
                            "unknown placeholder `${{{name}}}`; an output may use params, `${{host.address}}`, `${{host.name}}` and `${{image.NAME}}`"
                        );
                        ValuePiece::Malformed { message, offset }
                    }
                    None => ValuePiece::Malformed { message, offset },
                }
            }
        })
        .collect()
}

/// Why an output has no value in a run; never repeats a secret output's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output `{name}`: {problem}")]
pub struct OutputError {
    pub name: String,
    pub problem: String,
}

/// The value of output `name` whose source is `value: text`, typed as its `kind`.
///
/// A `value` that is exactly one placeholder of a list or map param takes the param's value;
/// otherwise the placeholders are replaced and the text typed by [`typed_text`].
///
/// # Errors
/// A placeholder without a value, or text that does not fit the type.
pub fn render_value(name: &str, output: &Output, text: &str, params: &Params, facts: &RunFacts) -> Result<serde_json::Value, OutputError> {
    let fail = |problem: String| OutputError { name: name.to_owned(), problem };
    if let Some(param) = placeholder::whole(text) {
        if let Some(value @ (ParamValue::List(_) | ParamValue::Map(_))) = params.get(&param) {
            return serde_json::to_value(value).map_err(|err| fail(err.to_string()));
        }
    }
    let mut rendered = String::with_capacity(text.len());
    for piece in scan(text) {
        match piece {
            ValuePiece::Literal(literal) => rendered.push_str(&literal),
            ValuePiece::Fact { name: "host.address" } => rendered.push_str(&facts.host_address),
            ValuePiece::Fact { .. } => rendered.push_str(&facts.host_name),
            ValuePiece::Image { name: image, .. } => {
                let reference =
                    facts.images.get(&image).ok_or_else(|| fail(format!("`${{image.{image}}}`: no image `{image}` in this run")))?;
                rendered.push_str(reference);
            }
            ValuePiece::Param { name: param, .. } => {
                let value = params.get(&param).ok_or_else(|| fail(format!("`${{{param}}}`: param `{param}` has no value")))?;
                let text = value.as_text().ok_or_else(|| fail(format!("`${{{param}}}`: param `{param}` is a list or a map")))?;
                rendered.push_str(&text);
            }
            ValuePiece::Malformed { message, .. } => return Err(fail(message)),
        }
    }
    typed_text(output.kind, &rendered, output.secret).map_err(fail)
}

/// Text (a rendered `value`, or a file read for `from`) as a value of `kind`: numbers and
/// booleans parsed (surrounding white space ignored), addresses and URLs checked, a list one
/// item per non-empty line, a map a JSON object. A string is kept exactly, line breaks
/// included (a PEM certificate); other control characters are refused.
///
/// # Errors
/// Why the text does not fit; a `secret` value is never quoted.
pub fn typed_text(kind: OutputType, text: &str, secret: bool) -> Result<serde_json::Value, String> {
    let shown = |text: &str| if secret { "the value".to_owned() } else { format!("`{}`", excerpt(text)) };
    match kind {
        OutputType::Url => {
            let trimmed = text.trim();
            let scheme = trimmed.split_once("://").map(|(scheme, _)| scheme).unwrap_or_default();
            let scheme_ok = scheme.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic())
                && scheme.chars().all(|ch| ch.is_ascii_alphanumeric() || "+-.".contains(ch));
            if !scheme_ok || trimmed.len() == scheme.len() + 3 || trimmed.chars().any(char::is_whitespace) {
                return Err(format!("{} is not a URL such as ldaps://host:636", shown(trimmed)));
            }
            Ok(serde_json::Value::String(trimmed.to_owned()))
        }
        OutputType::List => {
            let items: Vec<serde_json::Value> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::Value::String(line.to_owned()))
                .collect();
            Ok(serde_json::Value::Array(items))
        }
        OutputType::Map => match serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text) {
            Ok(map) => Ok(serde_json::Value::Object(map.into_iter().collect())),
            Err(_) => Err(format!("{} is not a JSON object", shown(text))),
        },
        OutputType::String => {
            let value = ParamValue::String(text.to_owned());
            let validation = Validation { multiline: true, ..Validation::default() };
            values::coerce(ParamType::String, &validation, &value).map(|_| serde_json::Value::String(text.to_owned())).map_err(|problems| {
                if secret {
                    "the value holds a control character".to_owned()
                } else {
                    problems.join("; ")
                }
            })
        }
        scalar => {
            let param_type = param_type(scalar).unwrap_or(ParamType::String);
            let value = ParamValue::String(text.trim().to_owned());
            match values::coerce(param_type, &Validation::default(), &value) {
                Ok(ParamValue::Integer(number)) => Ok(serde_json::Value::from(number)),
                Ok(ParamValue::Boolean(flag)) => Ok(serde_json::Value::Bool(flag)),
                Ok(_) => Ok(serde_json::Value::String(text.trim().to_owned())),
                Err(_) if secret => Err(format!("the value is not {}", article(scalar.name()))),
                Err(problems) => Err(problems.join("; ")),
            }
        }
    }
}

/// The param type of the same values as `kind`; `None` for `url`.
fn param_type(kind: OutputType) -> Option<ParamType> {
    Some(match kind {
        OutputType::String => ParamType::String,
        OutputType::Integer => ParamType::Integer,
        OutputType::Boolean => ParamType::Boolean,
        OutputType::Ip => ParamType::Ip,
        OutputType::Cidr => ParamType::Cidr,
        OutputType::Hostname => ParamType::Hostname,
        OutputType::Port => ParamType::Port,
        OutputType::List => ParamType::List,
        OutputType::Map => ParamType::Map,
        OutputType::Url => return None,
    })
}

/// A value as one line of text, for tables: strings as they are, lists joined with `, `,
/// anything else as JSON.
pub fn display(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn article(what: &str) -> String {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {what}"),
        _ => format!("a {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(kind: OutputType, secret: bool) -> Output {
        Output { kind, description: String::new(), secret, value: None, from: None }
    }

    fn facts() -> RunFacts {
        RunFacts {
            host_address: "10.0.0.5".to_owned(),
            host_name: "pc-1".to_owned(),
            images: BTreeMap::from([("tool".to_owned(), "pmesh/p-tool:0123".to_owned())]),
        }
    }

    fn params() -> Params {
        Params::from_values(BTreeMap::from([
            ("port".to_owned(), ParamValue::Integer(5353)),
            ("zones".to_owned(), ParamValue::List(vec![ParamValue::String("lab.local".to_owned())])),
            ("password".to_owned(), ParamValue::Secret(super::super::Secret::new("hunter22"))),
        ]))
    }

    #[test]
    fn values_take_params_and_run_facts_and_are_typed() {
        let render = |kind, text: &str| render_value("out", &output(kind, false), text, &params(), &facts());
        assert_eq!(render(OutputType::String, "${host.name} at ${host.address}:${port}"), Ok("pc-1 at 10.0.0.5:5353".into()));
        assert_eq!(render(OutputType::Port, "${port}"), Ok(serde_json::json!(5353)));
        assert_eq!(render(OutputType::Ip, "${host.address}"), Ok("10.0.0.5".into()));
        assert_eq!(render(OutputType::String, "${image.tool}"), Ok("pmesh/p-tool:0123".into()));
        assert_eq!(render(OutputType::Url, "ldaps://${host.address}:${port}"), Ok("ldaps://10.0.0.5:5353".into()));
        assert_eq!(render(OutputType::List, "${zones}"), Ok(serde_json::json!(["lab.local"])));
        assert_eq!(
            render(OutputType::Boolean, "$${literal}"),
            Err(OutputError { name: "out".into(), problem: "expected `true` or `false`, found `${literal}`".into() })
        );
        let unknown = render(OutputType::String, "${host.ip}").unwrap_err();
        assert!(unknown.problem.starts_with("unknown placeholder `${host.ip}`"), "{unknown}");
        assert_eq!(render(OutputType::Port, "${nope}").unwrap_err().problem, "`${nope}`: param `nope` has no value");
    }

    #[test]
    fn secret_values_are_never_quoted_in_problems() {
        let secret = render_value("pw", &output(OutputType::Port, true), "${password}", &params(), &facts()).unwrap_err();
        assert_eq!(secret.to_string(), "output `pw`: the value is not a port");
        let revealed = render_value("pw", &output(OutputType::String, true), "${password}", &params(), &facts());
        assert_eq!(revealed, Ok("hunter22".into()));
        assert_eq!(typed_text(OutputType::Url, "hunter22", true), Err("the value is not a URL such as ldaps://host:636".into()));
    }

    #[test]
    fn file_text_is_typed() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(typed_text(OutputType::String, pem, false), Ok(pem.into()));
        assert_eq!(typed_text(OutputType::Port, " 636\n", false), Ok(serde_json::json!(636)));
        assert_eq!(typed_text(OutputType::List, "/a\n\n /b \n", false), Ok(serde_json::json!(["/a", "/b"])));
        assert_eq!(typed_text(OutputType::Map, r#"{"a": 1}"#, false), Ok(serde_json::json!({"a": 1})));
        assert_eq!(typed_text(OutputType::Port, "0", false), Err("0 is not a port (1 to 65535)".into()));
        assert!(typed_text(OutputType::String, "bell\u{7}", false).is_err());
        assert!(typed_text(OutputType::Url, "no scheme", false).is_err());
        assert_eq!(display(&serde_json::json!(["a", "b"])), "a, b");
        assert_eq!(display(&serde_json::json!(53)), "53");
    }

    #[test]
    fn every_type_round_trips_by_name() {
        for name in OutputType::ALL {
            assert_eq!(OutputType::from_name(name).map(OutputType::name), Some(name));
        }
        assert_eq!(OutputType::from_name("secret"), None);
    }
}
