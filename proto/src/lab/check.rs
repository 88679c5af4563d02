//! What lab lint checks against the master's registry, behind [`Catalog`] (the master
//! implements it over its store; tests over a table): the pattern and a version in range are
//! registered, the agent exists or the selector matches one, every value names a param of the
//! pattern and every required param without a default has one, each referenced output exists,
//! and its type fits the param it feeds.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Component, Lab, Placement};
use crate::pattern::diagnostic::Diagnostic;
use crate::pattern::{OutputType, ParamType, Pattern};

/// A registered pattern a component resolves to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `NAME@VERSION`.
    pub reference: String,
    pub pattern: Arc<Pattern>,
}

/// What the master knows that a lab file needs.
pub trait Catalog {
    /// The newest registered version of `name` that `version` accepts (any when `None`).
    ///
    /// # Errors
    /// A sentence saying what is registered instead.
    fn pattern(&self, name: &str, version: Option<&semver::VersionReq>) -> Result<Resolved, String>;
    /// Whether an agent `name` is registered.
    fn has_agent(&self, name: &str) -> bool;
    /// Whether some registered agent carries every label.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
}

/// Every problem of a parsed lab that the catalog can tell, in line and column order.
pub fn check(lab: &Lab, catalog: &dyn Catalog) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let resolved: BTreeMap<&str, Resolved> = lab
        .components
        .iter()
        .filter_map(|component| match catalog.pattern(&component.pattern, component.version.as_ref()) {
            Ok(resolved) => Some((component.name.as_str(), resolved)),
            Err(why) => {
                let mark = if component.version.is_some() { component.version_mark } else { component.pattern_mark };
                problems.push(Diagnostic::new(&lab.file, mark, format!("component `{}`: {why}", component.name)));
                None
            }
        })
        .collect();
    for component in &lab.components {
        placement(lab, component, catalog, &mut problems);
        let Some(own) = resolved.get(component.name.as_str()) else { continue };
        params(lab, component, own, &resolved, &mut problems);
    }
    problems.sort();
    problems
}

fn placement(lab: &Lab, component: &Component, catalog: &dyn Catalog, problems: &mut Vec<Diagnostic>) {
    let problem = match &component.placement {
        Placement::On(agent) if !catalog.has_agent(agent) => {
            format!("component `{}`: no agent named `{agent}` is registered (`pmesh agents ls` lists them)", component.name)
        }
        Placement::Selector(labels) if !catalog.selects(labels) => {
            let labels: Vec<String> = labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
            format!("component `{}`: no registered agent carries the labels {}", component.name, labels.join(","))
        }
        _ => return,
    };
    problems.push(Diagnostic::new(&lab.file, component.placement_mark, problem));
}

fn params(lab: &Lab, component: &Component, own: &Resolved, resolved: &BTreeMap<&str, Resolved>, problems: &mut Vec<Diagnostic>) {
    let pattern_params = &own.pattern.params;
    for value in &component.values {
        let Some(param) = pattern_params.get(&value.param) else {
            let known: Vec<&str> = pattern_params.keys().map(String::as_str).collect();
            problems.push(Diagnostic::new(
                &lab.file,
                value.mark,
                format!(
                    "component `{}`: {} has no param `{}`; its params are {}",
                    component.name,
                    own.reference,
                    value.param,
                    known.join(", ")
                ),
            ));
            continue;
        };
        if param.kind == ParamType::Secret {
            // The master keeps the lab file, and a secret output has no value there.
            problems.push(Diagnostic::new(
                &lab.file,
                value.mark,
                format!(
                    "component `{}`: `{}` is a secret param, which a lab file cannot give yet (the master stores the file); run this pattern with `pmesh run -f values.yaml` instead",
                    component.name, value.param
                ),
            ));
            continue;
        }
        for reference in &value.refs {
            let Some(producer) = resolved.get(reference.component.as_str()) else { continue };
            let Some(output) = producer.pattern.outputs.get(&reference.output) else {
                let known: Vec<&str> = producer.pattern.outputs.keys().map(String::as_str).collect();
                let known =
                    if known.is_empty() { "it declares no outputs".to_owned() } else { format!("its outputs are {}", known.join(", ")) };
                problems.push(Diagnostic::new(
                    &lab.file,
                    reference.mark,
                    format!(
                        "`{}.outputs.{}`: {} has no output `{}`; {known}",
                        reference.component, reference.output, producer.reference, reference.output
                    ),
                ));
                continue;
            };
            if output.secret && param.kind != ParamType::Secret {
                problems.push(Diagnostic::new(
                    &lab.file,
                    reference.mark,
                    format!(
                        "`{}.outputs.{}` is secret and can only feed a secret param; `{}` is {}",
                        reference.component,
                        reference.output,
                        value.param,
                        param.kind.name()
                    ),
                ));
                continue;
            }
            let repeated = lab.component(&reference.component).is_some_and(|producer| producer.count > 1);
            let given = if !reference.whole {
                Fed::Text
            } else if repeated {
                Fed::ListOf(output.kind)
            } else {
                Fed::Typed(output.kind)
            };
            // An item of a list or map param is checked against the items' type at the start.
            let item_of_collection =
                reference.nested && matches!(param.kind, ParamType::List | ParamType::Map) && !matches!(given, Fed::ListOf(_));
            if !item_of_collection && !fits(given, param.kind) {
                problems.push(Diagnostic::new(
                    &lab.file,
                    reference.mark,
                    format!(
                        "`{}.outputs.{}` gives {}, which does not fit param `{}` of {} ({})",
                        reference.component,
                        reference.output,
                        given.describe(),
                        value.param,
                        own.reference,
                        param.kind.name()
                    ),
                ));
            }
        }
    }
    let given: Vec<&str> = component.values.iter().map(|value| value.param.as_str()).collect();
    for (name, param) in pattern_params {
        if param.required && param.default.is_none() && !given.contains(&name.as_str()) {
            problems.push(Diagnostic::new(
                &lab.file,
                component.mark,
                format!("component `{}`: {} requires param `{name}`; give it in `values`", component.name, own.reference),
            ));
        }
    }
}

/// What a reference hands a param.
#[derive(Debug, Clone, Copy)]
enum Fed {
    /// Spliced into a string.
    Text,
    Typed(OutputType),
    /// A repeated component's output: one item per instance.
    ListOf(OutputType),
}

impl Fed {
    fn describe(self) -> String {
        match self {
            Fed::Text => "text".to_owned(),
            Fed::Typed(kind) => format!("a value of type {}", kind.name()),
            Fed::ListOf(kind) => format!("a list of {} (one per instance)", kind.name()),
        }
    }
}

/// Whether what a reference gives can feed a param of `kind`. A `string` output fits every
/// text-like param: its value is checked against the param when the run starts, as any value.
fn fits(given: Fed, kind: ParamType) -> bool {
    use OutputType as O;
    use ParamType as P;
    match given {
        Fed::Text => matches!(kind, P::String | P::Hostname | P::Ip | P::Cidr | P::Enum | P::Secret),
        Fed::ListOf(_) => kind == P::List,
        Fed::Typed(output) => match kind {
            P::String | P::Secret | P::Enum => !matches!(output, O::List | O::Map),
            P::Integer => matches!(output, O::Integer | O::Port),
            P::Port => matches!(output, O::Port | O::Integer),
            P::Boolean => output == O::Boolean,
            P::Ip => matches!(output, O::Ip | O::String),
            P::Cidr => matches!(output, O::Cidr | O::String),
            P::Hostname => matches!(output, O::Hostname | O::String),
            P::List => output == O::List,
            P::Map => output == O::Map,
        },
    }
}
