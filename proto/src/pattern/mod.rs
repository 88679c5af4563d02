//! Patterns: the `pattern.yaml` format, its lint, parameter values and templates.
//!
//! A pattern is a directory: `pattern.yaml` plus the files and templates it names. Callers read
//! the directory and pass its files in, by path relative to the directory, so this module does
//! no I/O:
//!
//! - [`lint`] lists every problem as a [`Diagnostic`] (`file:line:column: message`);
//! - [`parse`] returns the typed [`Pattern`] when there is none;
//! - [`validate_values`] checks the values a run supplies against the params, giving the
//!   [`Params`] to [`render`] templates and [`substitute`] `${name}` placeholders with.
//!
//! Inside: `yaml` builds a tree of nodes with positions, `decode` is the one place it becomes
//! the model of `spec`, `step` and
//! `param_value`, and `graph` checks the step DAG; `values` checks supplied values against it.

#[cfg(test)]
mod catalog_dns_tests;
mod decode;
mod diagnostic;
pub mod formats;
mod graph;
pub mod output;
mod output_spec;
mod param_value;
mod placeholder;
mod probe;
pub mod repeat;
pub mod spec;
pub mod step;
mod template;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use diagnostic::{Diagnostic, Mark};
pub use output::{FromFile, Output, OutputType, RunFacts};
pub use param_value::{ParamValue, Secret};
pub use placeholder::{substitute, SubstituteError};
pub use spec::{Category, Param, ParamType, Pattern, Validation};
pub use template::{render, TemplateError};
pub use values::{parse_assignment, validate_values, values_from_yaml, Params, ValueProblem};

use diagnostic::Report;

/// The file every pattern directory holds.
pub const PATTERN_FILE: &str = "pattern.yaml";

/// Every problem in a pattern, in file, line and column order; empty when it is valid.
///
/// `files` maps paths relative to the pattern directory (with `/` separators) to contents, and
/// must hold [`PATTERN_FILE`] and every file it names.
pub fn lint(files: &BTreeMap<String, Vec<u8>>) -> Vec<Diagnostic> {
    parse(files).err().unwrap_or_default()
}

/// The pattern in `files` (see [`lint`]).
///
/// # Errors
/// Every problem found, in file, line and column order.
pub fn parse(files: &BTreeMap<String, Vec<u8>>) -> Result<Pattern, Vec<Diagnostic>> {
    let mut report = Report::new(PATTERN_FILE);
    let Some(bytes) = files.get(PATTERN_FILE) else {
        report.error(Mark::START, format!("the pattern has no {PATTERN_FILE}"));
        return Err(report.into_sorted());
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default();
            report.error(Mark::of_byte_offset(valid, valid.len()), "the file is not UTF-8 text");
            return Err(report.into_sorted());
        }
    };
    let pattern = match yaml::load(text, &mut report) {
        Some(root) => decode::decode(&root, files, &mut report),
        None => {
            if report.is_clean() {
                report.error(Mark::START, "the file is empty; a pattern needs `apiVersion`, `kind`, `metadata` and `steps`");
            }
            None
        }
    };
    match pattern {
        Some(pattern) if report.is_clean() => Ok(pattern),
        _ => Err(report.into_sorted()),
    }
}
