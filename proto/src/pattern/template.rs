//! Templates: minijinja (Jinja syntax) rendered with a run's params, and the lint checks on
//! them (syntax, variables that are not params).
//!
//! Rendering is strict: using a param that has no value is an error, not an empty string
//! (`{% if name is defined %}` tests for optional params). Output is not escaped and keeps its
//! final newline, since templates render configuration files, not HTML; as in Ansible, the
//! newline after a block tag (`{% ... %}`) is removed.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use regex::Regex;
use thiserror::Error;

use super::diagnostic::{Diagnostic, Mark};
use super::values::Params;

/// Why a template did not render, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{line}:{column}: {message}")]
pub struct TemplateError {
    /// The line in the template, starting at 1.
    pub line: usize,
    /// The column in the template, starting at 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax =
        SyntaxConfig::builder().trim_blocks(true).keep_trailing_newline(true).build().expect("the default delimiters are a valid syntax");
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

fn template_error(text: &str, err: &minijinja::Error) -> TemplateError {
    let mark = match (err.range(), err.line()) {
        (Some(range), _) => Mark::of_byte_offset(text, range.start),
        (None, Some(line)) => Mark { line, column: 1 },
        (None, None) => Mark::START,
    };
    let message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    TemplateError { line: mark.line, column: mark.column, message }
}

/// Renders `template_text` with `params`; secrets are revealed, since the output is a file
/// mounted into a container.
///
/// # Errors
/// A [`TemplateError`] for a syntax error, a use of a param that has no value, or a failing
/// filter or expression.
pub fn render(template_text: &str, params: &Params) -> Result<String, TemplateError> {
    let env = environment();
    let template = env.template_from_str(template_text).map_err(|err| template_error(template_text, &err))?;
    let context: std::collections::BTreeMap<String, minijinja::Value> =
        params.iter().map(|(name, value)| (name.clone(), value.to_jinja())).collect();
    template.render(context).map_err(|err| template_error(template_text, &err))
}

/// Lint of one template: its syntax, and every variable that is neither a param nor defined by
/// the template itself.
pub(crate) fn check(file: &str, text: &str, params: &BTreeSet<String>) -> Vec<Diagnostic> {
    let env = environment();
    let template = match env.template_from_named_str(file, text) {
        Ok(template) => template,
        Err(err) => {
            let err = template_error(text, &err);
            return vec![Diagnostic::new(file, Mark { line: err.line, column: err.column }, err.message)];
        }
    };
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut undeclared: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !params.contains(name) && !globals.contains(name.as_str()))
        .collect();
    undeclared.sort();
    undeclared
        .into_iter()
        .map(|name| {
            let mark = locate_variable(text, &name).unwrap_or(Mark::START);
            Diagnostic::new(file, mark, format!("template uses `{name}`, which is not a param of the pattern"))
        })
        .collect()
}

/// Where `name` is first used as a variable inside a `{{ }}` or `{% %}` block.
fn locate_variable(text: &str, name: &str) -> Option<Mark> {
    static BLOCK: OnceLock<Regex> = OnceLock::new();
    static WORD: OnceLock<Regex> = OnceLock::new();
    let block = BLOCK.get_or_init(|| Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}").expect("a valid regex"));
    let word = WORD.get_or_init(|| Regex::new(r#""[^"]*"|'[^']*'|\.?\s*[A-Za-z_][A-Za-z0-9_]*"#).expect("a valid regex"));
    for found in block.find_iter(text) {
        for token in word.find_iter(found.as_str()) {
            let token_text = token.as_str();
            if token_text.starts_with(['"', '\'', '.']) {
                continue;
            }
            if token_text.trim_start() == name {
                let start = found.start() + token.start() + (token_text.len() - token_text.trim_start().len());
                return Some(Mark::of_byte_offset(text, start));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pattern::param_value::{ParamValue, Secret};

    fn params() -> Params {
        Params::from_values(BTreeMap::from([
            ("zone".to_owned(), ParamValue::String("lab.local".to_owned())),
            ("password".to_owned(), ParamValue::Secret(Secret::new("s3cret"))),
            ("records".to_owned(), ParamValue::List(vec![ParamValue::String("ns1".to_owned())])),
        ]))
    }

    #[test]
    fn renders() {
        let cases: [(&str, Result<&str, &str>); 5] = [
            ("zone {{ zone }}\n", Ok("zone lab.local\n")),
            ("{% for r in records %}{{ r }};{% endfor %}", Ok("ns1;")),
            ("{{ password }} <&>", Ok("s3cret <&>")),
            ("{% if ttl is defined %}{{ ttl }}{% else %}3600{% endif %}", Ok("3600")),
            ("a\n{{ ttl }}", Err("2:4: undefined value: `ttl` is undefined")),
        ];
        for (input, expected) in cases {
            let got = render(input, &params()).map_err(|err| err.to_string());
            assert_eq!(got.as_deref(), expected.map_err(str::to_owned).as_deref(), "{input:?}");
        }
    }

    #[test]
    fn locates_variables() {
        let text = "x = \"records\"\n{% for r in records %}{{ r.zone }} {{ zone }}{% endfor %}";
        assert_eq!(locate_variable(text, "records"), Some(Mark { line: 2, column: 13 }));
        assert_eq!(locate_variable(text, "zone"), Some(Mark { line: 2, column: 39 }));
        assert_eq!(locate_variable(text, "nope"), None);
    }
}
