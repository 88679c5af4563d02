//! The lab file's YAML tree into the [`Lab`] model, every problem collected as a diagnostic
//! at its line and column: unknown or missing keys, names, values, references to components
//! and lab values that do not exist, and cycles among `needs` and references.

use std::collections::{BTreeMap, BTreeSet};

use super::refs::{self, Piece};
use super::{Component, Lab, Placement, Reference, Value, KIND, MAX_COUNT};
use crate::pattern::diagnostic::{excerpt, Mark, Report};
use crate::pattern::graph::{self, Edge};
use crate::pattern::yaml::{Node, Value as Yaml};

const TOP_KEYS: [&str; 5] = ["apiVersion", "kind", "metadata", "values", "components"];
const COMPONENT_KEYS: [&str; 7] = ["pattern", "version", "on", "selector", "values", "needs", "count"];
/// An instance name (`LAB-COMPONENT-INDEX`) is a DNS label: at most 63 characters.
const MAX_INSTANCE: usize = 63;

/// The entries of a mapping, reporting anything else and keys outside `known`.
fn entries<'n>(node: &'n Node, what: &str, known: &[&str], report: &mut Report) -> Vec<(&'n str, &'n Node, Mark)> {
    let Some(map) = node.as_map() else {
        report.error(node.mark, format!("{what} must be a mapping, found {}", node.describe()));
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, value) in map {
        let Some(name) = key.as_str() else {
            report.error(key.mark, format!("{what}: keys must be strings"));
            continue;
        };
        if !known.is_empty() && !known.contains(&name) {
            report.error(key.mark, format!("{what}: unknown key `{}`; expected one of {}", excerpt(name), quoted(known)));
            continue;
        }
        found.push((name, value, key.mark));
    }
    found
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}

fn string<'n>(node: &'n Node, what: &str, report: &mut Report) -> Option<&'n str> {
    match (&node.value, node.as_str()) {
        (Yaml::Scalar(_), Some(text)) => Some(text),
        _ => {
            report.error(node.mark, format!("{what} must be a string, found {}", node.describe()));
            None
        }
    }
}

fn name_problem(name: &str) -> Option<String> {
    crate::identity::validate_name(name).err().map(|err| err.to_string())
}

/// Decodes the whole file; `None` when it is too broken to hold a lab.
pub(super) fn decode(file: &str, root: &Node, report: &mut Report) -> Option<Lab> {
    let top: BTreeMap<&str, (&Node, Mark)> =
        entries(root, "the lab", &TOP_KEYS, report).into_iter().map(|(key, node, mark)| (key, (node, mark))).collect();
    root.as_map()?;
    match top.get("apiVersion") {
        Some((node, _)) => {
            if let Some(version) = string(node, "`apiVersion`", report).filter(|version| *version != crate::pattern::spec::API_VERSION) {
                report.error(node.mark, format!("`apiVersion` is `{}`; this pmesh reads `pmesh/v1`", excerpt(version)));
            }
        }
        None => report.error(root.mark, "`apiVersion: pmesh/v1` is missing"),
    }
    match top.get("kind") {
        Some((node, _)) => {
            if let Some(kind) = string(node, "`kind`", report).filter(|kind| *kind != KIND) {
                let hint = if kind == "Pattern" { "; this is a pattern: `pmesh pattern lint` checks it" } else { "" };
                report.error(node.mark, format!("`kind` is `{}`, not `Lab`{hint}", excerpt(kind)));
            }
        }
        None => report.error(root.mark, "`kind: Lab` is missing"),
    }
    let (name, description) = metadata(top.get("metadata").copied(), root.mark, report);
    let values = lab_values(top.get("values").map(|(node, _)| *node), report);
    let Some((components_node, _)) = top.get("components") else {
        report.error(root.mark, "`components` is missing: a lab needs at least one");
        return None;
    };
    let mut components = Vec::new();
    let listed = entries(components_node, "`components`", &[], report);
    if listed.is_empty() && components_node.as_map().is_some() {
        report.error(components_node.mark, "`components` is empty: a lab needs at least one");
    }
    for (component_name, node, mark) in &listed {
        components.extend(component(component_name, node, *mark, &name, &values, report));
    }
    let lab = Lab { file: file.to_owned(), name, description, components };
    check_graph(&lab, report);
    Some(lab)
}

fn metadata(entry: Option<(&Node, Mark)>, root: Mark, report: &mut Report) -> (String, String) {
    let Some((node, _)) = entry else {
        report.error(root, "`metadata` is missing: a lab needs `metadata: {name: …}`");
        return (String::new(), String::new());
    };
    let fields = entries(node, "`metadata`", &["name", "description"], report);
    let mut name = String::new();
    let mut description = String::new();
    for (key, value, _) in &fields {
        let Some(text) = string(value, &format!("`metadata.{key}`"), report) else { continue };
        if *key == "name" {
            if let Some(problem) = name_problem(text) {
                report.error(value.mark, format!("`metadata.name`: {problem}"));
            }
            name = text.to_owned();
        } else {
            description = text.to_owned();
        }
    }
    if name.is_empty() && node.as_map().is_some() && !fields.iter().any(|(key, _, _)| *key == "name") {
        report.error(node.mark, "`metadata.name` is missing");
    }
    (name, description)
}

/// The lab-wide values (`${values.NAME}`), as JSON.
fn lab_values(node: Option<&Node>, report: &mut Report) -> BTreeMap<String, serde_json::Value> {
    let mut values = BTreeMap::new();
    let Some(node) = node else { return values };
    for (key, value, mark) in entries(node, "`values`", &[], report) {
        if !crate::pattern::formats::is_identifier(key) {
            report.error(mark, format!("lab value `{}`: names are letters, digits and `_`", excerpt(key)));
            continue;
        }
        if let Some(json) = to_json(value, report) {
            values.insert(key.to_owned(), json);
        }
    }
    values
}

/// A YAML node as JSON (YAML 1.2 core schema for plain scalars; quoted ones are strings).
fn to_json(node: &Node, report: &mut Report) -> Option<serde_json::Value> {
    Some(match &node.value {
        Yaml::Scalar(_) if node.is_null() => {
            report.error(node.mark, "a value cannot be null");
            return None;
        }
        Yaml::Scalar(scalar) => match (node.as_bool(), node.as_int(), node.as_float()) {
            (Some(value), _, _) => serde_json::Value::Bool(value),
            (_, Some(value), _) => serde_json::Value::from(value),
            (_, _, Some(value)) => serde_json::Value::from(value),
            _ => serde_json::Value::String(scalar.text.clone()),
        },
        Yaml::Seq(items) => serde_json::Value::Array(items.iter().map(|item| to_json(item, report)).collect::<Option<_>>()?),
        Yaml::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (key, value) in entries {
                let Some(key) = key.as_str() else {
                    report.error(key.mark, "map keys must be strings");
                    return None;
                };
                map.insert(key.to_owned(), to_json(value, report)?);
            }
            serde_json::Value::Object(map)
        }
    })
}

fn component(
    name: &str,
    node: &Node,
    mark: Mark,
    lab: &str,
    lab_values: &BTreeMap<String, serde_json::Value>,
    report: &mut Report,
) -> Option<Component> {
    if let Some(problem) = name_problem(name) {
        report.error(mark, format!("component `{}`: {problem}", excerpt(name)));
    }
    let what = |key: &str| format!("component `{name}`: `{key}`");
    let fields: BTreeMap<&str, (&Node, Mark)> = entries(node, &format!("component `{name}`"), &COMPONENT_KEYS, report)
        .into_iter()
        .map(|(key, value, at)| (key, (value, at)))
        .collect();
    node.as_map()?;
    let pattern = match fields.get("pattern") {
        Some((value, _)) => string(value, &what("pattern"), report).map(|text| (text.to_owned(), value.mark)),
        None => {
            report.error(mark, format!("component `{name}`: `pattern` is missing (the registered pattern's name)"));
            None
        }
    };
    if let Some((text, at)) = &pattern {
        if text.contains('@') {
            report.error(*at, format!("{}: give the version in `version`, not after `@`", what("pattern")));
        } else if let Some(problem) = name_problem(text) {
            report.error(*at, format!("{}: {problem}", what("pattern")));
        }
    }
    let (version, version_mark) = match fields.get("version") {
        Some((value, _)) => {
            let text = value.as_str().unwrap_or_default();
            match semver::VersionReq::parse(text) {
                Ok(req) => (Some(req), value.mark),
                Err(err) => {
                    report.error(value.mark, format!("{}: `{}` is not a version or range ({err})", what("version"), excerpt(text)));
                    (None, value.mark)
                }
            }
        }
        None => (None, mark),
    };
    let placement = placement(name, mark, &fields, report);
    let count = match fields.get("count") {
        None => 1,
        Some((value, _)) => match value.as_int() {
            Some(count) if (1..=MAX_COUNT).contains(&count) => count as u32,
            _ => {
                let shown = value.as_str().map_or_else(|| value.describe().to_owned(), |text| format!("`{}`", excerpt(text)));
                report.error(value.mark, format!("{}: a whole number from 1 to {MAX_COUNT}, not {shown}", what("count")));
                1
            }
        },
    };
    let longest = if count > 1 { format!("{lab}-{name}-{}", count - 1) } else { format!("{lab}-{name}") };
    if !lab.is_empty() && longest.len() > MAX_INSTANCE {
        report.error(mark, format!("component `{name}`: its instance name `{longest}` is longer than {MAX_INSTANCE} characters; shorten the lab's or the component's name"));
    }
    let needs = match fields.get("needs") {
        None => Vec::new(),
        Some((value, _)) => match value.as_seq() {
            Some(items) => {
                items.iter().filter_map(|item| string(item, &what("needs"), report).map(|text| (text.to_owned(), item.mark))).collect()
            }
            None => {
                report.error(value.mark, format!("{} must be a list of component names, found {}", what("needs"), value.describe()));
                Vec::new()
            }
        },
    };
    let values = fields.get("values").map(|(node, _)| values_of(node, &what("values"), lab, lab_values, report)).unwrap_or_default();
    let (pattern, pattern_mark) = pattern?;
    let (placement, placement_mark) = placement?;
    Some(Component {
        name: name.to_owned(),
        mark,
        pattern,
        pattern_mark,
        version,
        version_mark,
        placement,
        placement_mark,
        values,
        needs,
        count,
    })
}

/// A component's `values`, lab values substituted and output references collected.
fn values_of(node: &Node, what: &str, lab: &str, lab_values: &BTreeMap<String, serde_json::Value>, report: &mut Report) -> Vec<Value> {
    let mut values = Vec::new();
    for (param, value, at) in entries(node, what, &[], report) {
        let Some(json) = to_json(value, report) else { continue };
        let mut refs = Vec::new();
        let json = expand(json, value, lab, lab_values, &mut refs, report);
        let nested = !matches!(value.value, Yaml::Scalar(_));
        for reference in &mut refs {
            reference.nested = nested;
        }
        values.push(Value { param: param.to_owned(), mark: at, value: json, refs });
    }
    values
}

fn placement(name: &str, mark: Mark, fields: &BTreeMap<&str, (&Node, Mark)>, report: &mut Report) -> Option<(Placement, Mark)> {
    match (fields.get("on"), fields.get("selector")) {
        (Some(_), Some((_, at))) => {
            report.error(*at, format!("component `{name}`: give `on` or `selector`, not both"));
            None
        }
        (None, None) => {
            report.error(mark, format!("component `{name}`: say where it runs, with `on: AGENT` or `selector: {{label: value}}`"));
            None
        }
        (Some((value, _)), None) => {
            let agent = string(value, &format!("component `{name}`: `on`"), report)?;
            if let Some(problem) = name_problem(agent) {
                report.error(value.mark, format!("component `{name}`: `on`: {problem}"));
                return None;
            }
            Some((Placement::On(agent.to_owned()), value.mark))
        }
        (None, Some((value, _))) => {
            let mut labels = BTreeMap::new();
            for (key, label, _) in entries(value, &format!("component `{name}`: `selector`"), &[], report) {
                match label.as_str() {
                    Some(text) if matches!(label.value, Yaml::Scalar(_)) => {
                        labels.insert(key.to_owned(), text.to_owned());
                    }
                    _ => report.error(label.mark, format!("component `{name}`: selector label `{key}` must be a string")),
                }
            }
            if labels.is_empty() && value.as_map().is_some() {
                report.error(value.mark, format!("component `{name}`: `selector` is empty; name at least one label"));
                return None;
            }
            Some((Placement::Selector(labels), value.mark))
        }
    }
}

/// Substitutes `${lab.name}` and `${values.NAME}` in a value's strings and collects its
/// output references, reporting malformed and unknown placeholders at `node`'s position.
fn expand(
    json: serde_json::Value,
    node: &Node,
    lab: &str,
    lab_values: &BTreeMap<String, serde_json::Value>,
    found: &mut Vec<Reference>,
    report: &mut Report,
) -> serde_json::Value {
    match json {
        serde_json::Value::String(text) => {
            let pieces = refs::scan(&text);
            let whole = pieces.len() == 1;
            let mut rebuilt = String::new();
            for piece in &pieces {
                match piece {
                    Piece::Literal(literal) => rebuilt.push_str(&refs::escape(literal)),
                    Piece::Index { .. } => rebuilt.push_str("${index}"),
                    Piece::LabName { .. } => rebuilt.push_str(&refs::escape(lab)),
                    Piece::LabValue { name, offset } => match lab_values.get(name) {
                        Some(serde_json::Value::String(text)) if whole => return serde_json::Value::String(refs::escape(text)),
                        Some(value) if whole => return value.clone(),
                        Some(serde_json::Value::String(text)) => rebuilt.push_str(&refs::escape(text)),
                        Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => rebuilt.push_str(&value.to_string()),
                        Some(_) => report
                            .error(node.mark_at(*offset), format!("lab value `{name}` is a list or mapping: use it as the whole value")),
                        None => {
                            let known: Vec<&str> = lab_values.keys().map(String::as_str).collect();
                            let known = if known.is_empty() {
                                "the lab has no `values`".to_owned()
                            } else {
                                format!("the lab's values are {}", quoted(&known))
                            };
                            report.error(node.mark_at(*offset), format!("unknown lab value `${{values.{name}}}`; {known}"));
                        }
                    },
                    Piece::Output { component, output, offset } => {
                        found.push(Reference {
                            component: component.clone(),
                            output: output.clone(),
                            mark: node.mark_at(*offset),
                            whole,
                            nested: false,
                        });
                        rebuilt.push_str(&format!("${{{component}.outputs.{output}}}"));
                    }
                    Piece::Malformed { message, offset } => report.error(node.mark_at(*offset), message.clone()),
                }
            }
            serde_json::Value::String(rebuilt)
        }
        serde_json::Value::Array(items) => {
            let nodes = node.as_seq().unwrap_or_default();
            serde_json::Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(idx, item)| expand(item, nodes.get(idx).unwrap_or(node), lab, lab_values, found, report))
                    .collect(),
            )
        }
        serde_json::Value::Object(map) => {
            let nodes = node.as_map().unwrap_or_default();
            serde_json::Value::Object(
                map.into_iter()
                    .map(|(key, item)| {
                        let at = nodes.iter().find(|(name, _)| name.as_str() == Some(key.as_str())).map_or(node, |(_, value)| value);
                        let expanded = expand(item, at, lab, lab_values, found, report);
                        (key, expanded)
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

/// Unknown components in `needs` and references, self references, and cycles.
fn check_graph(lab: &Lab, report: &mut Report) {
    let names: BTreeSet<&str> = lab.components.iter().map(|component| component.name.as_str()).collect();
    let known = || quoted(&names.iter().copied().collect::<Vec<_>>());
    let mut edges: Vec<Edge> = Vec::new();
    for component in &lab.components {
        let mut seen = BTreeSet::new();
        for (need, at) in &component.needs {
            if !seen.insert(need.as_str()) {
                report.error(*at, format!("component `{}`: `{need}` is listed twice in `needs`", component.name));
            } else if !names.contains(need.as_str()) {
                report.error(
                    *at,
                    format!(
                        "component `{}` needs `{}`, which is not a component; the components are {}",
                        component.name,
                        excerpt(need),
                        known()
                    ),
                );
            } else {
                edges.push((component.name.clone(), need.clone(), *at));
            }
        }
        for value in &component.values {
            for reference in &value.refs {
                if reference.component == component.name {
                    report
                        .error(reference.mark, format!("component `{}` cannot use its own output `{}`", component.name, reference.output));
                } else if !names.contains(reference.component.as_str()) {
                    report.error(
                        reference.mark,
                        format!(
                            "`{}.outputs.{}`: `{}` is not a component; the components are {}",
                            reference.component,
                            reference.output,
                            reference.component,
                            known()
                        ),
                    );
                } else {
                    edges.push((component.name.clone(), reference.component.clone(), reference.mark));
                    if !reference.whole && lab.component(&reference.component).is_some_and(|producer| producer.count > 1) {
                        report.error(
                            reference.mark,
                            format!(
                                "`{}` has a count, so its output `{}` is a list: use it as the whole value",
                                reference.component, reference.output
                            ),
                        );
                    }
                }
            }
        }
    }
    for (mark, message) in graph::cycles(&edges, "the components depend on each other in a cycle") {
        report.error(mark, message);
    }
}
