//! The house rules a reviewer would otherwise check by hand, checked on every `.rs` file of the
//! repository, as rust-analyzer's tidy test does:
//! - every file opens with a `//!` comment saying what it owns;
//! - no file is over 600 lines;
//! - no production function (outside `#[cfg(test)]` items, `tests.rs` files and `tests/`
//!   folders) is over 100 lines;
//! - no two files of a crate use each other, directly or through others (`use crate::…`,
//!   `use super::…`, `super::x::…`, paths into child modules); a name a `mod.rs` re-exports
//!   counts as a use of the file it comes from, not of the `mod.rs`, and a file's use of its
//!   own ancestor modules is not counted (a module and its submodules are one unit).
//!
//! Each rule has an exception list here, an entry with its reason; an entry that no longer
//! applies fails the test too, so the lists only shrink. The scan is textual: comments,
//! strings and char literals are blanked, then braces and paths are read from what is left.
//! It reads the tree with std::fs and needs neither Docker nor built binaries.
//!
//! `files` finds the files, `rust` reads Rust text (blanking comments and strings, finding
//! functions), and `modules` maps a crate's modules to files and the files each one uses.

mod files;
mod modules;
mod rust;

use std::collections::BTreeMap;

use files::{is_production, relative, repo, rust_files};
use modules::{crate_roots, cycles, file_graph};
use rust::{functions, strip, tokens};

const MAX_FILE_LINES: usize = 600;
const MAX_FUNCTION_LINES: usize = 100;

/// Files allowed past [`MAX_FILE_LINES`]: (file, why).
const LONG_FILES: &[(&str, &str)] = &[];

/// Production functions allowed past [`MAX_FUNCTION_LINES`]: (file, function, why).
const LONG_FUNCTIONS: &[(&str, &str, &str)] = &[];

/// Import cycles allowed for now: (the files of the cycle, sorted; why).
const CYCLES: &[(&[&str], &str)] = &[];

#[test]
fn every_file_opens_with_a_module_comment() {
    let missing: Vec<String> = rust_files()
        .iter()
        .filter(|file| !file.text.starts_with("//!"))
        .map(|file| format!("{}:1: does not open with `//!`", file.path))
        .collect();
    assert!(missing.is_empty(), "say what each file owns in a `//!` comment on its first line:\n{}", missing.join("\n"));
}

#[test]
fn no_file_is_over_600_lines() {
    let long: BTreeMap<String, String> = rust_files()
        .into_iter()
        .map(|file| (file.text.lines().count(), file.path))
        .filter(|(lines, _)| *lines > MAX_FILE_LINES)
        .map(|(lines, path)| (path.clone(), format!("{path}: {lines} lines")))
        .collect();
    let allowed: BTreeMap<String, String> = LONG_FILES.iter().map(|(path, why)| (path.to_string(), why.to_string())).collect();
    check_exceptions("files over 600 lines (split them along a seam)", "LONG_FILES", &long, &allowed);
}

#[test]
fn no_production_function_is_over_100_lines() {
    let mut long = BTreeMap::new();
    for file in rust_files().iter().filter(|file| is_production(&file.path)) {
        for function in functions(&tokens(&strip(&file.text))) {
            if function.lines() > MAX_FUNCTION_LINES {
                let key = format!("{} {}", file.path, function.name);
                long.insert(key, format!("{}:{}: fn {} is {} lines", file.path, function.start, function.name, function.lines()));
            }
        }
    }
    let allowed: BTreeMap<String, String> =
        LONG_FUNCTIONS.iter().map(|(path, name, why)| (format!("{path} {name}"), why.to_string())).collect();
    check_exceptions(
        "production functions over 100 lines (split them over helpers or a context struct)",
        "LONG_FUNCTIONS",
        &long,
        &allowed,
    );
}

#[test]
fn no_import_cycles_between_files() {
    let repo = repo();
    let mut found = BTreeMap::new();
    for root in crate_roots(&repo) {
        let graph = file_graph(&root);
        for cycle in cycles(&graph) {
            let members: Vec<String> = cycle.members.iter().map(|path| relative(&repo, path)).collect();
            let steps: Vec<String> = cycle
                .steps
                .iter()
                .map(|(from, line, to)| format!("{}:{line} uses {}", relative(&repo, from), relative(&repo, to)))
                .collect();
            found.insert(members.join(" "), format!("{} ({})", members.join(" ↔ "), steps.join(", ")));
        }
    }
    let allowed: BTreeMap<String, String> = CYCLES.iter().map(|(files, why)| (files.join(" "), why.to_string())).collect();
    check_exceptions("import cycles between files (move what both need into a module of its own)", "CYCLES", &found, &allowed);
}

/// Fails on a violation not in the exceptions, and on an exception that no longer applies.
fn check_exceptions(rule: &str, list: &str, found: &BTreeMap<String, String>, allowed: &BTreeMap<String, String>) {
    let new: Vec<&String> = found.iter().filter(|(key, _)| !allowed.contains_key(*key)).map(|(_, message)| message).collect();
    let stale: Vec<String> =
        allowed.iter().filter(|(key, _)| !found.contains_key(*key)).map(|(key, why)| format!("{key} ({why})")).collect();
    let mut problems = Vec::new();
    if !new.is_empty() {
        problems.push(format!("{rule}:\n{}", new.iter().map(|message| format!("  {message}")).collect::<Vec<_>>().join("\n")));
    }
    if !stale.is_empty() {
        problems
            .push(format!("entries of {list} in tests/tests/tidy/main.rs that no longer apply, remove them:\n  {}", stale.join("\n  ")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn stale_and_new_exceptions_both_fail() {
    let found = BTreeMap::from([("x.rs".to_owned(), "x.rs: 700 lines".to_owned())]);
    let allowed = BTreeMap::from([("y.rs".to_owned(), "why".to_owned())]);
    let failure = std::panic::catch_unwind(|| check_exceptions("long files", "LONG_FILES", &found, &allowed)).expect_err("it fails");
    let message = failure.downcast_ref::<String>().expect("a message");
    assert!(message.contains("x.rs: 700 lines") && message.contains("y.rs (why)"), "{message}");
    check_exceptions("long files", "LONG_FILES", &found, &BTreeMap::from([("x.rs".to_owned(), "why".to_owned())]));
}
