//! Reading one value of the YAML tree: mappings with their allowed fields, and scalars of each
//! type. Every reader reports what is wrong at the node and returns `None`, so the caller goes
//! on with the next field.

use std::time::Duration;

use super::super::diagnostic::{excerpt, Mark};
use super::super::formats;
use super::super::placeholder::{self, Piece};
use super::super::spec::{ParamType, PortValue, StepKind};
use super::super::values::quoted_list;
use super::super::yaml::Node;
use super::Decoder;

/// The longest duration a pattern may give (timeouts, deadlines, intervals, backoffs).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The entries of a mapping whose keys were checked against the allowed fields.
pub(crate) struct Fields<'n> {
    /// Where to report a missing field: the key that introduces the mapping.
    owner: Mark,
    /// What the mapping is, for messages ("metadata", "step `named`").
    what: String,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The key and value of `field`, unless it is absent or null.
    pub(crate) fn get(&self, field: &str) -> Option<(&'n Node, &'n Node)> {
        self.entries.iter().find(|(name, _, value)| *name == field && !value.is_null()).map(|(_, key, value)| (*key, *value))
    }

    /// Like [`Fields::get`], reporting a missing field.
    pub(crate) fn required(&self, decoder: &mut Decoder<'_>, field: &str) -> Option<(&'n Node, &'n Node)> {
        let found = self.get(field);
        if found.is_none() {
            match self.entries.iter().find(|(name, _, _)| *name == field) {
                Some((_, _, value)) => decoder.report.error(value.mark, format!("`{field}` needs a value")),
                None => decoder.report.error(self.owner, format!("{} is missing field `{field}`", self.what)),
            }
        }
        found
    }
}

impl Decoder<'_> {
    /// The entries of the mapping `node`, reporting a node that is not a mapping, keys that
    /// are not strings and fields not in `allowed`.
    pub(crate) fn fields<'n>(&mut self, node: &'n Node, owner: Mark, allowed: &[&str], what: &str) -> Option<Fields<'n>> {
        let entries = self.mapping(node)?;
        let mut fields = Fields { owner, what: what.to_owned(), entries: Vec::new() };
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.report.error(key.mark, format!("expected a field name, found {}", key.describe()));
                continue;
            };
            if allowed.contains(&name) {
                fields.entries.push((name, key, value));
            } else {
                self.report.error(key.mark, format!("unknown field `{name}` in {what}; expected one of {}", quoted_list(allowed)));
            }
        }
        Some(fields)
    }

    pub(crate) fn mapping<'n>(&mut self, node: &'n Node) -> Option<&'n [(Node, Node)]> {
        if node.is_null() {
            return Some(&[]);
        }
        let entries = node.as_map();
        if entries.is_none() {
            self.report.error(node.mark, format!("expected a mapping, found {}", node.describe()));
        }
        entries
    }

    pub(crate) fn sequence<'n>(&mut self, node: &'n Node) -> Option<&'n [Node]> {
        let items = node.as_seq();
        if items.is_none() {
            self.report.error(node.mark, format!("expected a list, found {}", node.describe()));
        }
        items
    }

    pub(crate) fn string(&mut self, node: &Node) -> Option<String> {
        let text = node.as_str().map(str::to_owned);
        if text.is_none() {
            self.report.error(node.mark, format!("expected a string, found {}", node.describe()));
        }
        text
    }

    pub(crate) fn boolean(&mut self, node: &Node) -> Option<bool> {
        let flag = node.as_bool();
        if flag.is_none() {
            self.report.error(node.mark, format!("expected `true` or `false`, found {}", node.describe()));
        }
        flag
    }

    /// An integer from `min` to `max`.
    pub(crate) fn integer(&mut self, node: &Node, min: i64, max: i64) -> Option<i64> {
        let range = if max == i64::MAX { format!("at least {min}") } else { format!("from {min} to {max}") };
        let Some(number) = node.as_int() else {
            if node.is_integer_out_of_range() {
                let text = excerpt(node.as_str().unwrap_or_default());
                self.report.error(node.mark, format!("{text} is out of range: expected {range}"));
            } else {
                self.report.error(node.mark, format!("expected an integer, found {}", node.describe()));
            }
            return None;
        };
        if number < min || number > max {
            self.report.error(node.mark, format!("{number} is out of range: expected {range}"));
            return None;
        }
        Some(number)
    }

    /// A list of strings, each with its placeholders checked.
    pub(crate) fn string_list(&mut self, node: &Node, secrets: bool) -> Option<Vec<String>> {
        let items = self.sequence(node)?;
        items.iter().map(|item| self.text(item, secrets)).collect::<Vec<_>>().into_iter().collect()
    }

    /// One of `allowed`, reported otherwise.
    pub(crate) fn one_of<T>(&mut self, node: &Node, text: &str, what: &str, allowed: &[&str]) -> Option<T> {
        self.report.error(node.mark, format!("unknown {what} `{text}`; expected one of {}", quoted_list(allowed)));
        None
    }

    /// A DNS label naming something of the pattern.
    pub(crate) fn label(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = self.string(node)?;
        if formats::is_dns_label(&text) {
            return Some(text);
        }
        self.report.error(
            node.mark,
            format!("`{text}` is not a valid {what}: use lowercase letters, digits and `-` (at most 63, not first or last)"),
        );
        None
    }

    /// A humantime duration ("30s", "10m", "1h30m") of at most [`MAX_DURATION`]; zero only
    /// when `allow_zero`. The bound keeps `now + duration` a time the runner can compute.
    pub(crate) fn duration(&mut self, node: &Node, allow_zero: bool) -> Option<Duration> {
        let text = self.string(node)?;
        let shown = excerpt(&text);
        match humantime::parse_duration(&text) {
            Ok(duration) if duration > MAX_DURATION => {
                self.report.error(node.mark, format!("`{shown}` is out of range: at most 365d"));
                None
            }
            Ok(duration) if allow_zero || !duration.is_zero() => Some(duration),
            Ok(_) => {
                self.report.error(node.mark, "the duration must be longer than 0s");
                None
            }
            Err(humantime::DurationError::NumberOverflow) => {
                self.report.error(node.mark, format!("`{shown}` is out of range: at most 365d"));
                None
            }
            Err(_) => {
                self.report.error(node.mark, format!("`{shown}` is not a duration such as `30s`, `10m` or `1h30m`"));
                None
            }
        }
    }

    /// A string whose `${name}` placeholders name params that always have a scalar value;
    /// secrets only where `secrets` is set (env values).
    pub(crate) fn text(&mut self, node: &Node, secrets: bool) -> Option<String> {
        let text = self.string(node)?;
        let mut clean = true;
        for piece in placeholder::scan(&text) {
            let (name, offset) = match piece {
                Piece::Literal(_) => continue,
                Piece::Malformed { message, offset } => {
                    self.report.error(node.mark_at(offset), message);
                    clean = false;
                    continue;
                }
                Piece::Param { name, offset } => (name, offset),
            };
            let mark = node.mark_at(offset);
            let problem = self.placeholder_problem(&name, secrets);
            if let Some(problem) = problem {
                self.report.error(mark, problem);
                clean = false;
            }
        }
        clean.then_some(text)
    }

    /// Why `${name}` cannot be used in a string (where secrets may go when `secrets` is set).
    pub(crate) fn placeholder_problem(&self, name: &str, secrets: bool) -> Option<String> {
        let repeat = super::super::repeat::REPEAT_PLACEHOLDERS.contains(&name) && !self.scope.params.contains_key(name);
        if (repeat && self.repeating) || super::super::repeat::RUN_PLACEHOLDERS.contains(&name) {
            return None;
        }
        if repeat {
            return Some(format!("`${{{name}}}` is a placeholder of repeated steps only, and this step has no `repeat`"));
        }
        let info = self.scope.params.get(name);
        match (info, info.and_then(|info| info.kind)) {
            (None, _) => Some(format!("`${{{name}}}` refers to `{name}`, which is not a param")),
            (Some(_), None) => None,
            (Some(_), Some(kind)) if !kind.is_scalar() => {
                Some(format!("`${{{name}}}`: param `{name}` is a {} and cannot be put into a string", kind.name()))
            }
            (Some(_), Some(ParamType::Secret)) if !secrets => {
                Some(format!("secret param `{name}` may only be used in env values, templates, artifact URLs and artifact `auth`"))
            }
            (Some(info), _) if !info.always_set => Some(format!(
                "`${{{name}}}`: param `{name}` is optional without a default, so it may have no value; give it a default or make it required"
            )),
            (Some(_), _) => None,
        }
    }

    /// The name of a declared param of one of `kinds`.
    pub(crate) fn param_ref(&mut self, node: &Node, kinds: &[ParamType], what: &str) -> Option<String> {
        let name = self.string(node)?;
        let problem = match self.scope.params.get(&name).map(|info| info.kind) {
            None => format!("{what} names `{name}`, which is not a param"),
            Some(Some(kind)) if !kinds.contains(&kind) => {
                let names: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
                format!("{what} param `{name}` must be of type {}, not {}", names.join(" or "), kind.name())
            }
            Some(_) => return Some(name),
        };
        self.report.error(node.mark, problem);
        None
    }

    /// The name of a declared artifact, image or file (`what` says which).
    pub(crate) fn reference(&mut self, node: &Node, what: &str) -> Option<String> {
        let name = self.string(node)?;
        let known = match what {
            "artifact" => self.scope.artifacts.contains(&name),
            "image" => self.scope.images.contains(&name),
            _ => self.scope.file_dests.contains(&name),
        };
        if !known {
            self.report.error(node.mark, format!("`{name}` is not {} of the pattern", article(what)));
            return None;
        }
        Some(name)
    }

    /// The name of a step of kind `service`.
    pub(crate) fn service_ref(&mut self, node: &Node) -> Option<String> {
        let name = self.string(node)?;
        let problem = match self.scope.steps.get(&name) {
            None => format!("`{name}` is not a step of the pattern"),
            Some(Some(StepKind::Service)) => return Some(name),
            Some(Some(kind)) => format!("`{name}` is a {} step, not a service", kind.name()),
            Some(None) => return None,
        };
        self.report.error(node.mark, problem);
        None
    }

    /// A port: a number from 1 to 65535, or `${name}` naming a port or integer param.
    pub(crate) fn port_value(&mut self, node: &Node) -> Option<PortValue> {
        if node.as_int().is_some() || node.is_integer_out_of_range() {
            return self.integer(node, 1, 65535).map(|port| PortValue::Number(port as u16));
        }
        let Some(name) = node.as_str().and_then(placeholder::whole) else {
            self.report.error(node.mark, format!("expected a port (1 to 65535) or `${{param}}`, found {}", node.describe()));
            return None;
        };
        let problem = match self.scope.params.get(&name).and_then(|info| info.kind) {
            Some(kind) if !matches!(kind, ParamType::Port | ParamType::Integer) => {
                Some(format!("`${{{name}}}`: param `{name}` is a {}, but a port needs a port or integer param", kind.name()))
            }
            _ => self.placeholder_problem(&name, false),
        };
        match problem {
            Some(problem) => {
                self.report.error(node.mark_at(0), problem);
                None
            }
            None => Some(PortValue::Param(name)),
        }
    }

    /// A regex; with `one_group`, it must have exactly one capture group (a progress regex).
    pub(crate) fn regex(&mut self, node: &Node, one_group: bool) -> Option<String> {
        let text = self.string(node)?;
        match regex::Regex::new(&text) {
            Ok(regex) if one_group && regex.captures_len() != 2 => {
                let n_groups = regex.captures_len() - 1;
                self.report.error(
                    node.mark,
                    format!("progress regex `{text}` must have exactly one capture group (the percentage), found {n_groups}"),
                );
                None
            }
            Ok(_) => Some(text),
            Err(err) => {
                let reason = super::super::values::first_line(&err.to_string());
                self.report.error(node.mark, format!("invalid regex `{text}`: {reason}"));
                None
            }
        }
    }
}

pub(super) fn article(what: &str) -> String {
    match what.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {what}"),
        _ => format!("a {what}"),
    }
}
