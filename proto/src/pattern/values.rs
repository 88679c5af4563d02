//! Parameter values: how supplied values are read and checked against a param's type and
//! validation, and the resolved set a run renders with. The values themselves are model types
//! (`param_value`).
//!
//! Values arrive as text (`pmesh run -p name=value`) or as YAML (a values file, a param's
//! default) and are coerced to the param's type, so `-p port=53` and `port: 53` mean the same.
//! Messages never repeat a secret's value.

use std::collections::BTreeMap;
use std::fmt;

use super::diagnostic::{excerpt, tidy, Diagnostic, Mark, Report};
use super::formats;
use super::param_value::{ParamValue, Secret};
use super::spec::{Param, ParamType, Pattern, Validation};
use super::yaml::{self, Node, Value};

impl ParamValue {
    /// The value of a YAML node, or where and why it has none (it holds null).
    pub(crate) fn from_node(node: &Node) -> Result<ParamValue, (Mark, String)> {
        Ok(match &node.value {
            Value::Scalar(_) if node.is_null() => return Err((node.mark, "a value cannot be null".to_owned())),
            Value::Scalar(scalar) => match (node.as_bool(), node.as_int()) {
                (Some(value), _) => ParamValue::Boolean(value),
                (_, Some(value)) => ParamValue::Integer(value),
                _ => ParamValue::String(scalar.text.clone()),
            },
            Value::Seq(items) => ParamValue::List(items.iter().map(ParamValue::from_node).collect::<Result<_, _>>()?),
            Value::Map(entries) => {
                let mut map = BTreeMap::new();
                for (key, value) in entries {
                    let key = key.as_str().ok_or((key.mark, "map keys must be strings".to_owned()))?;
                    map.insert(key.to_owned(), ParamValue::from_node(value)?);
                }
                ParamValue::Map(map)
            }
        })
    }
}

/// Coerces `value` to `kind` and checks `validation`; the problems are sentences that never
/// repeat a secret.
pub(crate) fn coerce(kind: ParamType, validation: &Validation, value: &ParamValue) -> Result<ParamValue, Vec<String>> {
    let scalar_text = match value {
        ParamValue::String(text) => Some(text.clone()),
        ParamValue::Integer(_) | ParamValue::Boolean(_) | ParamValue::Secret(_) => value.as_text(),
        ParamValue::List(_) | ParamValue::Map(_) => None,
    };
    let expected = |what: &str| Err(vec![format!("expected {what}, found {}", value.describe())]);
    match kind {
        ParamType::String | ParamType::Secret => {
            let Some(text) = scalar_text else { return expected("a string") };
            let shown = if kind == ParamType::Secret { "the value".to_owned() } else { format!("`{}`", excerpt(&text)) };
            if let Some(problem) = control_problem(&text, validation.multiline) {
                return Err(vec![format!("{shown} {problem}")]);
            }
            if let Some(pattern) = &validation.pattern {
                let regex = anchored(pattern).map_err(|err| vec![err])?;
                if !regex.is_match(&text) {
                    return Err(vec![format!("{shown} does not match the pattern `{}`", excerpt(pattern))]);
                }
            }
            Ok(if kind == ParamType::Secret { ParamValue::Secret(Secret::new(text)) } else { ParamValue::String(text) })
        }
        ParamType::Integer | ParamType::Port => {
            let number = match value {
                ParamValue::Integer(number) => Some(*number),
                ParamValue::String(text) => text.trim().parse().ok(),
                _ => None,
            };
            let Some(number) = number else {
                let digits = match value {
                    ParamValue::String(text) => Some(text.trim()),
                    _ => None,
                };
                let too_large = digits.is_some_and(|text| {
                    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
                    !unsigned.is_empty() && unsigned.bytes().all(|byte| byte.is_ascii_digit())
                });
                return match (too_large, kind) {
                    (true, ParamType::Port) => {
                        Err(vec![format!("{} is out of range for a port (1 to 65535)", excerpt(digits.unwrap_or_default()))])
                    }
                    (true, _) => Err(vec![format!(
                        "{} is out of range for an integer ({} to {})",
                        excerpt(digits.unwrap_or_default()),
                        i64::MIN,
                        i64::MAX
                    )]),
                    (false, ParamType::Port) => expected("a port"),
                    (false, _) => expected("an integer"),
                };
            };
            if kind == ParamType::Port && !(1..=65535).contains(&number) {
                return Err(vec![format!("{number} is not a port (1 to 65535)")]);
            }
            if let Some(min) = validation.min.filter(|min| number < *min) {
                return Err(vec![format!("{number} is less than the minimum {min}")]);
            }
            if let Some(max) = validation.max.filter(|max| number > *max) {
                return Err(vec![format!("{number} is more than the maximum {max}")]);
            }
            Ok(ParamValue::Integer(number))
        }
        ParamType::Boolean => match value {
            ParamValue::Boolean(flag) => Ok(ParamValue::Boolean(*flag)),
            ParamValue::String(text) if text == "true" || text == "false" => Ok(ParamValue::Boolean(text == "true")),
            _ => expected("`true` or `false`"),
        },
        ParamType::Ip | ParamType::Cidr | ParamType::Hostname | ParamType::Enum => {
            let Some(text) = scalar_text else { return expected("a string") };
            let problem = match kind {
                ParamType::Ip => (!formats::is_ip(&text)).then(|| format!("`{}` is not an IP address", excerpt(&text))),
                ParamType::Cidr => {
                    (!formats::is_cidr(&text)).then(|| format!("`{}` is not a CIDR block such as 10.0.0.0/24", excerpt(&text)))
                }
                ParamType::Hostname => (!formats::is_hostname(&text)).then(|| format!("`{}` is not a hostname", excerpt(&text))),
                _ => (!validation.values.contains(&text))
                    .then(|| format!("`{}` is not one of {}", excerpt(&text), quoted_list(&validation.values))),
            };
            match problem {
                Some(problem) => Err(vec![problem]),
                None => Ok(ParamValue::String(text)),
            }
        }
        ParamType::List | ParamType::Map => coerce_collection(kind, validation, value),
    }
}

fn coerce_collection(kind: ParamType, validation: &Validation, value: &ParamValue) -> Result<ParamValue, Vec<String>> {
    let item_kind = validation.items.unwrap_or(ParamType::String);
    // A collection's `pattern` and `multiline` apply to each item (list) or value (map).
    let item_validation = Validation { pattern: validation.pattern.clone(), multiline: validation.multiline, ..Validation::default() };
    let value = match value {
        ParamValue::String(text) => parse_collection_text(kind, text)?,
        other => other.clone(),
    };
    let mut problems = Vec::new();
    let mut check = |label: String, item: &ParamValue| match coerce_item(item_kind, &item_validation, &validation.fields, item) {
        Ok(item) => Some(item),
        Err(item_problems) => {
            problems.extend(item_problems.into_iter().map(|problem| format!("{label}: {problem}")));
            None
        }
    };
    let coerced = match (kind, &value) {
        (ParamType::List, ParamValue::List(items)) => {
            ParamValue::List(items.iter().enumerate().filter_map(|(idx, item)| check(format!("item {}", idx + 1), item)).collect())
        }
        (ParamType::Map, ParamValue::Map(entries)) => {
            for key in entries.keys() {
                if let Some(problem) = control_problem(key, false) {
                    return Err(vec![format!("key `{}` {problem}", excerpt(key))]);
                }
            }
            ParamValue::Map(
                entries.iter().filter_map(|(key, item)| Some((key.clone(), check(format!("key `{}`", excerpt(key)), item)?))).collect(),
            )
        }
        (ParamType::List, _) => return Err(vec![format!("expected a list, found {}", value.describe())]),
        _ => return Err(vec![format!("expected a mapping, found {}", value.describe())]),
    };
    if problems.is_empty() {
        Ok(coerced)
    } else {
        Err(problems)
    }
}

/// One list item or map value: a mapping of `fields` when there are fields (or, with a
/// `pattern`, a string matching it), else a value of `kind`.
fn coerce_item(
    kind: ParamType,
    validation: &Validation,
    fields: &BTreeMap<String, Param>,
    item: &ParamValue,
) -> Result<ParamValue, Vec<String>> {
    if fields.is_empty() {
        return coerce(kind, validation, item);
    }
    let ParamValue::Map(entries) = item else {
        let names = quoted_list(&fields.keys().collect::<Vec<_>>());
        return match (item, &validation.pattern) {
            (ParamValue::String(_), Some(_)) => coerce(ParamType::String, validation, item),
            (_, Some(_)) => Err(vec![format!("expected a string or a mapping with the fields {names}, found {}", item.describe())]),
            _ => Err(vec![format!("expected a mapping with the fields {names}, found {}", item.describe())]),
        };
    };
    let mut problems = Vec::new();
    for key in entries.keys().filter(|key| !fields.contains_key(*key)) {
        problems.push(format!("unknown field `{}`; expected one of {}", excerpt(key), quoted_list(&fields.keys().collect::<Vec<_>>())));
    }
    let mut coerced = BTreeMap::new();
    for (name, field) in fields {
        match resolve(field, entries.get(name)) {
            Ok(Some(value)) => {
                coerced.insert(name.clone(), value);
            }
            Ok(None) => {}
            Err(messages) => problems.extend(messages.into_iter().map(|message| format!("field `{name}`: {message}"))),
        }
    }
    if problems.is_empty() {
        Ok(ParamValue::Map(coerced))
    } else {
        Err(problems)
    }
}

/// A list or map given as text: YAML flow syntax (`[a, b]`, `{a: 1}`), or for lists also
/// comma-separated items.
fn parse_collection_text(kind: ParamType, text: &str) -> Result<ParamValue, Vec<String>> {
    let trimmed = text.trim();
    if kind == ParamType::List && !trimmed.starts_with(['[', '{']) {
        let items = trimmed.split(',').map(str::trim).filter(|item| !item.is_empty());
        return Ok(ParamValue::List(items.map(|item| ParamValue::String(item.to_owned())).collect()));
    }
    let mut report = Report::new("value");
    let node = yaml::load(trimmed, &mut report);
    match node.map(|node| ParamValue::from_node(&node)) {
        Some(Ok(value)) if report.is_clean() => Ok(value),
        Some(Err((_, problem))) => Err(vec![problem]),
        _ => {
            let example = if kind == ParamType::List { "`[a, b]` or `a,b`" } else { "`{key: value}`" };
            Err(vec![format!("`{}` cannot be read as a {}; write it as {example}", excerpt(text), kind.name())])
        }
    }
}

/// Why `text` may not be a value: a control character, which would reach a rendered file or a
/// command line; with `multiline`, line breaks (`\n`, `\r\n`) and tabs are allowed.
fn control_problem(text: &str, multiline: bool) -> Option<String> {
    let allowed = |character: char| multiline && matches!(character, '\n' | '\r' | '\t');
    let found = text.chars().find(|character| character.is_control() && !allowed(*character))?;
    let name = match found {
        '\n' | '\r' => "a line break".to_owned(),
        '\t' => "a tab".to_owned(),
        other => format!("the control character {}", other.escape_debug()),
    };
    let hint = if multiline { "" } else { "; a param with `validation.multiline: true` may hold line breaks and tabs" };
    Some(format!("holds {name}{hint}"))
}

/// The regex for a validation pattern, which must match the whole value.
pub(crate) fn anchored(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|err| format!("invalid regex `{}`: {}", excerpt(pattern), first_line(&err.to_string())))
}

/// The last line of a multi-line library error (regex errors draw a caret diagram first).
pub(crate) fn first_line(text: &str) -> String {
    text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or(text).trim().trim_start_matches("error: ").to_owned()
}

pub(crate) fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|item| format!("`{}`", excerpt(item.as_ref()))).collect::<Vec<_>>().join(", ")
}

/// The values a run uses: supplied values checked and coerced, defaults filled in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
}

impl Params {
    /// The value of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// Every value, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.values.iter()
    }

    /// Params from values that are already checked (tests, and callers that built them).
    pub fn from_values(values: BTreeMap<String, ParamValue>) -> Self {
        Params { values }
    }
}

/// A problem with a supplied value, displayed as `param NAME: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueProblem {
    /// The param the problem is about.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "param {}: {}", self.param, self.message)
    }
}

/// Splits `name=value` (from `pmesh run -p`) into a name and a text value.
///
/// # Errors
/// A [`ValueProblem`] when there is no `=` or no name.
pub fn parse_assignment(text: &str) -> Result<(String, ParamValue), ValueProblem> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), ParamValue::String(value.to_owned()))),
        _ => Err(ValueProblem { param: excerpt(text), message: "expected `name=value`".to_owned() }),
    }
}

/// Reads a values file: a YAML mapping from param names to values.
///
/// # Errors
/// Every problem in the file, with its location.
pub fn values_from_yaml(file: &str, text: &str) -> Result<BTreeMap<String, ParamValue>, Vec<Diagnostic>> {
    let mut report = Report::new(file);
    let mut values = BTreeMap::new();
    match yaml::load(text, &mut report) {
        None if report.is_clean() => {}
        None => {}
        Some(root) => match root.as_map() {
            None => report.error(root.mark, format!("expected a mapping of param names to values, found {}", root.describe())),
            Some(entries) => {
                for (key, value) in entries {
                    let Some(name) = key.as_str() else {
                        report.error(key.mark, "param names must be strings");
                        continue;
                    };
                    match ParamValue::from_node(value) {
                        Ok(value) => {
                            values.insert(name.to_owned(), value);
                        }
                        Err((mark, problem)) => report.error(mark, problem),
                    }
                }
            }
        },
    }
    if report.is_clean() {
        Ok(values)
    } else {
        Err(report.into_sorted())
    }
}

/// Checks supplied values against the pattern's params and fills in defaults. Every problem is
/// listed: unknown names, missing required params, wrong types, failed validations.
///
/// # Errors
/// The problems, in param name order.
pub fn validate_values(pattern: &Pattern, supplied: &BTreeMap<String, ParamValue>) -> Result<Params, Vec<ValueProblem>> {
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();
    for name in supplied.keys().filter(|name| !pattern.params.contains_key(*name)) {
        let known: Vec<&String> = pattern.params.keys().collect();
        let message = if known.is_empty() {
            "unknown param; this pattern takes none".to_owned()
        } else {
            format!("unknown param; this pattern takes {}", quoted_list(&known))
        };
        problems.push(ValueProblem { param: excerpt(name), message });
    }
    for (name, param) in &pattern.params {
        match resolve(param, supplied.get(name)) {
            Ok(Some(value)) => {
                values.insert(name.clone(), value);
            }
            Ok(None) => {}
            Err(messages) => {
                problems.extend(messages.into_iter().map(|message| ValueProblem { param: name.clone(), message: tidy(&message) }));
            }
        }
    }
    problems.sort_by(|left, right| left.param.cmp(&right.param));
    if problems.is_empty() {
        Ok(Params { values })
    } else {
        Err(problems)
    }
}

fn resolve(param: &Param, supplied: Option<&ParamValue>) -> Result<Option<ParamValue>, Vec<String>> {
    match (supplied, &param.default) {
        (Some(value), _) => coerce(param.kind, &param.validation, value).map(Some),
        (None, Some(default)) => coerce(param.kind, &param.validation, default).map(Some),
        (None, None) if param.required => {
            let about = if param.description.is_empty() { String::new() } else { format!(" ({})", param.description) };
            Err(vec![format!("required {} value missing{about}", param.kind.name())])
        }
        (None, None) => Ok(None),
    }
}
