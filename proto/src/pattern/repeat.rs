//! A `run` step repeated over a list or a count: the model (`repeat: {over, count, parallel}`),
//! the names its repetitions run under (`deploy[esxi-01]`, `deploy[3]`), and the two
//! placeholders a repeated step adds, `${item}` and `${index}`.
//!
//! Each repetition is a step of its own to the runner, with its own container and its own line
//! in the live view; at most `parallel` of one step's repetitions run at once. A step that
//! needs the repeated one waits for every repetition.

use serde::{Deserialize, Serialize};

/// The most repetitions one step may have.
pub const MAX_REPETITIONS: u64 = 1000;
/// Placeholders every string of a pattern's steps may use: the instance's name and the
/// agent's ("" for a local apply), for marking what a pattern creates outside Docker (a VM's
/// ExtraConfig) as the instance's.
pub const RUN_PLACEHOLDERS: [&str; 2] = ["pmesh_instance", "pmesh_agent"];
/// The placeholders only a repeated step has: the item (a list's item, or the index under a
/// count) and the index, from 1.
pub const REPEAT_PLACEHOLDERS: [&str; 2] = ["item", "index"];

/// How a step is repeated: exactly one of `over` and `count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// The name of a `list` param: one repetition per item (`"${hosts}"` in YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over: Option<String>,
    /// A number of repetitions, `${index}` from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Count>,
    /// At most this many repetitions at once (default 1).
    #[serde(default = "default_parallel")]
    pub parallel: u32,
}

/// A count given as a number or as a `${param}` placeholder naming an integer param.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Count {
    /// A fixed count.
    Number(u64),
    /// `${name}`: the value of a param.
    Param(String),
}

fn default_parallel() -> u32 {
    1
}

/// The step name a repetition runs under: `STEP[ITEM]`.
pub fn repetition_name(step: &str, item: &str) -> String {
    format!("{step}[{item}]")
}

/// Why `item` cannot name a repetition, if it cannot: it becomes part of a step name, a
/// container name and a label, so it is 1 to 63 letters, digits, `.`, `_` and `-`.
pub fn item_problem(item: &str) -> Option<String> {
    let valid = !item.is_empty()
        && item.len() <= 63
        && item.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        && !item.starts_with(['.', '-']);
    (!valid).then(|| {
        format!("item `{}` cannot name a repetition: use 1 to 63 letters, digits, `.`, `_` and `-`", super::diagnostic::excerpt(item))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_items() {
        assert_eq!(repetition_name("deploy", "esxi-01"), "deploy[esxi-01]");
        assert_eq!(item_problem("esxi-01.lab"), None);
        for bad in ["", "a b", "-x", "x]", &"x".repeat(64)] {
            assert!(item_problem(bad).is_some(), "{bad:?} should be refused");
        }
    }
}
