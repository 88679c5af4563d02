//! Labs: one file (`apiVersion: pmesh/v1`, `kind: Lab`) that composes registered patterns
//! into a DAG of components across pattern controllers, with outputs flowing between them.
//!
//! - [`parse`] reads the file through the pattern format's position-carrying YAML tree and
//!   lists every problem it can find alone as a [`Diagnostic`] (`FILE:LINE:COLUMN: message`):
//!   structure, names, unknown components, references, cycles (named, through the pattern
//!   format's `graph`).
//! - [`check`] adds what needs the master's registry, behind the [`Catalog`] trait: patterns
//!   and versions registered, agents known, params and outputs that exist, and an output's
//!   type against the param it feeds.
//! - [`refs`] resolves a component's values once the outputs it references are known.
//!
//! Like the rest of proto, nothing here does I/O: the caller passes the file's text in.

mod check;
mod decode;
pub mod refs;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use check::{check, Catalog, Resolved};

use crate::pattern::diagnostic::Report;
pub use crate::pattern::{Diagnostic, Mark};

/// The `kind` of a lab file.
pub const KIND: &str = "Lab";
/// The most replicas one component may have.
pub const MAX_COUNT: i64 = 64;

/// A lab, as the file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    /// The file name the diagnostics use.
    pub file: String,
    pub name: String,
    pub description: String,
    /// The components, in the order the file lists them.
    pub components: Vec<Component>,
}

/// One component: a registered pattern run on one agent (or `count` instances of it).
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: String,
    pub mark: Mark,
    /// The registered pattern's name.
    pub pattern: String,
    pub pattern_mark: Mark,
    /// The versions accepted (`^2`, `2.0.0`, `>=1.1, <2`); the newest registered when absent.
    pub version: Option<semver::VersionReq>,
    pub version_mark: Mark,
    pub placement: Placement,
    pub placement_mark: Mark,
    /// Values for the pattern's params, lab-wide values already substituted.
    pub values: Vec<Value>,
    /// Components that must have succeeded first, besides those whose outputs it uses.
    pub needs: Vec<(String, Mark)>,
    /// How many instances: `NAME-0` … when more than one.
    pub count: u32,
}

/// Where a component runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `on: AGENT`.
    On(String),
    /// `selector: {k: v}`: the first agent by name carrying every label.
    Selector(BTreeMap<String, String>),
}

/// A value given to one param.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub param: String,
    pub mark: Mark,
    /// The value; strings may hold `${COMPONENT.outputs.NAME}` and `${index}`.
    pub value: serde_json::Value,
    /// The outputs it references, where they are written.
    pub refs: Vec<Reference>,
}

/// `${COMPONENT.outputs.NAME}` inside a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub component: String,
    pub output: String,
    pub mark: Mark,
    /// The reference is the whole string, so it takes the output's typed value (a list for a
    /// repeated component); otherwise it is spliced in as text.
    pub whole: bool,
    /// The reference is inside a list item or a mapping's value, which the pattern validates
    /// item by item when the run starts, rather than the whole param.
    pub nested: bool,
}

impl Lab {
    /// The component called `name`.
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|component| component.name == name)
    }

    /// The components one depends on: its `needs` and every component whose outputs it uses.
    pub fn dependencies(component: &Component) -> BTreeSet<String> {
        let mut deps: BTreeSet<String> = component.needs.iter().map(|(name, _)| name.clone()).collect();
        deps.extend(component.values.iter().flat_map(|value| value.refs.iter().map(|reference| reference.component.clone())));
        deps
    }

    /// The components in an order where each comes after its dependencies (file order among
    /// those that are free to go); a parsed lab has no cycle.
    pub fn order(&self) -> Vec<&Component> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut ordered = Vec::with_capacity(self.components.len());
        while ordered.len() < self.components.len() {
            let before = ordered.len();
            for component in &self.components {
                if done.contains(component.name.as_str()) {
                    continue;
                }
                if Lab::dependencies(component).iter().all(|dep| done.contains(dep.as_str())) {
                    done.insert(component.name.as_str());
                    ordered.push(component);
                }
            }
            if ordered.len() == before {
                // A cycle (parse refuses those): the rest in file order.
                ordered.extend(self.components.iter().filter(|component| !done.contains(component.name.as_str())));
                break;
            }
        }
        ordered
    }

    /// The instance name of replica `index` of `component`: `LAB-COMPONENT`, with `-INDEX`
    /// when the component has a count above one.
    pub fn instance(&self, component: &Component, index: u32) -> String {
        if component.count > 1 {
            format!("{}-{}-{index}", self.name, component.name)
        } else {
            format!("{}-{}", self.name, component.name)
        }
    }
}

/// The lab in `text`; `file` names it in diagnostics.
///
/// # Errors
/// Every problem found in the file alone, in line and column order.
pub fn parse(file: &str, text: &str) -> Result<Lab, Vec<Diagnostic>> {
    let mut report = Report::new(file);
    let lab = match crate::pattern::yaml::load(text, &mut report) {
        Some(root) => decode::decode(file, &root, &mut report),
        None => {
            if report.is_clean() {
                report.error(Mark::START, "the file is empty; a lab needs `apiVersion`, `kind`, `metadata` and `components`");
            }
            None
        }
    };
    match lab {
        Some(lab) if report.is_clean() => Ok(lab),
        _ => Err(report.into_sorted()),
    }
}

/// Every problem of the lab in `text`, from the file alone; empty when it parses.
pub fn lint(file: &str, text: &str) -> Vec<Diagnostic> {
    parse(file, text).err().unwrap_or_default()
}
