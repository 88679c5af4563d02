//! Templates: minijinja (Jinja syntax) rendered with a run's params, and the lint checks on
//! them (syntax, variables that are not params, filters and tests minijinja does not have, and
//! `include`, `import`, `from` and `extends`, which can never render: a template renders alone,
//! with no loader for other files).
//!
//! Rendering is strict: using a param that has no value is an error, not an empty string
//! (`{% if name is defined %}` tests for optional params). Output is not escaped and keeps its
//! final newline, since templates render configuration files, not HTML; as in Ansible, the
//! newline after a block tag (`{% ... %}`) is removed.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use regex::Regex;
use thiserror::Error;

mod checks;

use super::diagnostic::{excerpt, tidy, Diagnostic, Mark};
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
    checks::add(&mut env);
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
    TemplateError { line: mark.line, column: mark.column, message: tidy(&message) }
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
    let mut diagnostics = unsupported(file, text, &env);
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut undeclared: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !params.contains(name) && !globals.contains(name.as_str()))
        .collect();
    undeclared.sort();
    diagnostics.extend(undeclared.into_iter().map(|name| {
        let mark = locate_variable(text, &name).unwrap_or(Mark::START);
        Diagnostic::new(file, mark, format!("template uses `{}`, which is not a param of the pattern", excerpt(&name)))
    }));
    diagnostics
}

/// What the template uses that cannot render: other templates (`include`, `import`, `from`,
/// `extends`), and filters and tests the environment does not have. Syntax is already checked,
/// so the scan only has to skip string literals.
fn unsupported(file: &str, text: &str, env: &Environment<'_>) -> Vec<Diagnostic> {
    static BLOCK: OnceLock<Regex> = OnceLock::new();
    static TOKEN: OnceLock<Regex> = OnceLock::new();
    let block = BLOCK.get_or_init(|| Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}").expect("a valid regex"));
    // Strings first, so a `|` or `is` inside one is not read as a filter or test.
    let token = TOKEN.get_or_init(|| {
        Regex::new(r#"(?s)"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\|\s*([A-Za-z_][A-Za-z0-9_]*)|\bis\s+(?:not\s+)?([A-Za-z_][A-Za-z0-9_]*)|^\{%-?\s*(include|import|from|extends)\b|^\{%-?\s*filter\s+([A-Za-z_][A-Za-z0-9_]*)"#)
            .expect("a valid regex")
    });
    let mut diagnostics = Vec::new();
    for found in block.find_iter(text) {
        for captures in token.captures_iter(found.as_str()) {
            let (name, problem) = if let Some(name) = captures.get(1).or_else(|| captures.get(4)) {
                (name, (!has(env, &format!("{{{{ none|{} }}}}", name.as_str()), ErrorKind::UnknownFilter)).then_some("filter"))
            } else if let Some(name) = captures.get(2) {
                (name, (!has(env, &format!("{{{{ none is {} }}}}", name.as_str()), ErrorKind::UnknownTest)).then_some("test"))
            } else if let Some(tag) = captures.get(3) {
                (tag, Some("tag"))
            } else {
                continue;
            };
            let Some(what) = problem else { continue };
            let mark = Mark::of_byte_offset(text, found.start() + name.start());
            let message = match what {
                "tag" => format!(
                    "`{{% {} %}}` cannot render: a pattern's template renders alone, without other templates; put the text in this one",
                    name.as_str()
                ),
                _ => format!("unknown {what} `{}`", excerpt(name.as_str())),
            };
            diagnostics.push(Diagnostic::new(file, mark, message));
        }
    }
    diagnostics
}

/// Whether `probe` (a template using one filter or test) finds it: rendering fails with
/// `missing` only when the environment lacks it; any other outcome means it exists.
fn has(env: &Environment<'_>, probe: &str, missing: ErrorKind) -> bool {
    match env.render_str(probe, ()) {
        Ok(_) => true,
        Err(err) => err.kind() != missing,
    }
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

    /// Lint of one template against the params `zone` and `records`: the diagnostics as
    /// `line:column: message` lines.
    fn check_lint(text: &str, expected: &[&str]) {
        let params = BTreeSet::from(["zone".to_owned(), "records".to_owned()]);
        let found: Vec<String> = check("t.j2", text, &params)
            .iter()
            .map(|diagnostic| format!("{}:{}: {}", diagnostic.line, diagnostic.column, diagnostic.message))
            .collect();
        assert_eq!(found, expected, "{text:?}");
    }

    #[test]
    fn lint_refuses_what_cannot_render() {
        let alone = "cannot render: a pattern's template renders alone, without other templates; put the text in this one";
        check_lint("{{ zone|upper }} {{ records|join(', ') }} {% if zone is defined %}x{% endif %}", &[]);
        check_lint("{{ range(3)|list }} {{ zone|default('a|nope') }} {{ 'is nope' }}", &[]);
        check_lint("a\n{{ zone|nope }}", &["2:9: unknown filter `nope`"]);
        check_lint("{{ zone | upper | shout(1) }}", &["1:19: unknown filter `shout`"]);
        check_lint("{% for r in records if r is not fancy %}{% endfor %}", &["1:33: unknown test `fancy`"]);
        check_lint("{% filter upper %}x{% endfilter %}{% filter nope %}x{% endfilter %}", &["1:45: unknown filter `nope`"]);
        check_lint("{{ nope(1) }}", &["1:4: template uses `nope`, which is not a param of the pattern"]);
        check_lint("x\n{% include 'other.j2' %}", &[&format!("2:4: `{{% include %}}` {alone}")]);
        check_lint("{%- import 'm.j2' as m %}", &[&format!("1:5: `{{% import %}}` {alone}")]);
        check_lint("{% from 'm.j2' import a %}", &[&format!("1:4: `{{% from %}}` {alone}")]);
        check_lint("{% extends 'base.j2' %}", &[&format!("1:4: `{{% extends %}}` {alone}")]);
    }

    fn checked() -> Params {
        Params::from_values(BTreeMap::from([("name".to_owned(), ParamValue::String("www.lab".to_owned()))]))
    }

    #[test]
    fn matching_tests_the_whole_value() {
        let text = "{{ name is matching('[a-z.]+') }} {{ name is matching('www') }} {{ 3 is matching('3') }}";
        assert_eq!(render(text, &checked()).as_deref(), Ok("True False False"));
        let bad = render("{{ name is matching('(') }}", &checked()).expect_err("a bad regex");
        assert!(bad.message.starts_with("invalid operation: invalid regex `(`"), "{}", bad.message);
    }

    #[test]
    fn fail_stops_rendering_with_its_message() {
        let text = "ok\n{% if name is not matching('[0-9.]+') %}{{ fail('record 1: `' ~ name ~ '` is not an IPv4 address') }}{% endif %}";
        let err = render(text, &checked()).expect_err("fails");
        assert_eq!(err.to_string(), "2:44: invalid operation: record 1: `www.lab` is not an IPv4 address");
    }

    #[test]
    fn lint_knows_the_checks_templates_can_make() {
        check_lint("{% if zone is not matching('x') %}{{ fail('no') }}{% endif %}", &[]);
    }

    #[test]
    fn locates_variables() {
        let text = "x = \"records\"\n{% for r in records %}{{ r.zone }} {{ zone }}{% endfor %}";
        assert_eq!(locate_variable(text, "records"), Some(Mark { line: 2, column: 13 }));
        assert_eq!(locate_variable(text, "zone"), Some(Mark { line: 2, column: 39 }));
        assert_eq!(locate_variable(text, "nope"), None);
    }
}
