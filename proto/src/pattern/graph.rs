//! Checks on the step graph once every step is read: `needs` must not form a cycle (each cycle
//! is named), and a step that runs inside a service (exec, exec probe) must need it, directly
//! or through other steps, so the service is up first.

use std::collections::{BTreeMap, BTreeSet};

use super::decode::Decoder;
use super::diagnostic::Mark;

/// Reports cycles and steps that run in a service they do not wait for.
pub(crate) fn check(decoder: &mut Decoder<'_>) {
    let mut graph: BTreeMap<&str, Vec<(&str, Mark)>> = BTreeMap::new();
    for (from, to, mark) in &decoder.edges {
        graph.entry(from.as_str()).or_default().push((to.as_str(), *mark));
    }
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    for start in graph.keys().copied() {
        if let Some((cycle, mark)) = cycle_from(&graph, start) {
            // Report each cycle once, at the edge leaving its smallest step name.
            let mut key = cycle.clone();
            key.sort_unstable();
            if cycle[0] == key[0] && reported.insert(key) {
                let path = cycle.iter().chain(std::iter::once(&cycle[0])).copied().collect::<Vec<_>>().join(" -> ");
                decoder.report.error(mark, format!("the steps' `needs` form a cycle: {path}"));
            }
        }
    }
    for (step, service, mark) in &decoder.runs_in {
        if !reaches(&graph, step, service) {
            decoder
                .report
                .error(*mark, format!("step `{step}` runs in service `{service}` but does not need it; add `{service}` to its `needs`"));
        }
    }
}

/// The shortest cycle through `start`, with the mark of its first edge.
fn cycle_from<'g>(graph: &BTreeMap<&'g str, Vec<(&'g str, Mark)>>, start: &'g str) -> Option<(Vec<&'g str>, Mark)> {
    // Breadth-first from start; the first path that comes back to start is the shortest cycle.
    let mut queue = std::collections::VecDeque::from([(start, vec![start], None::<Mark>)]);
    let mut seen = BTreeSet::new();
    while let Some((node, path, first_mark)) = queue.pop_front() {
        for (next, mark) in graph.get(node).map(Vec::as_slice).unwrap_or_default() {
            let first_mark = first_mark.unwrap_or(*mark);
            if *next == start {
                return Some((path, first_mark));
            }
            if seen.insert(*next) {
                let mut longer = path.clone();
                longer.push(next);
                queue.push_back((next, longer, Some(first_mark)));
            }
        }
    }
    None
}

/// Whether `from` needs `to`, directly or through other steps.
fn reaches(graph: &BTreeMap<&str, Vec<(&str, Mark)>>, from: &str, to: &str) -> bool {
    let mut stack = vec![from];
    let mut seen = BTreeSet::new();
    while let Some(node) = stack.pop() {
        for (next, _) in graph.get(node).map(Vec::as_slice).unwrap_or_default() {
            if *next == to {
                return true;
            }
            if seen.insert(*next) {
                stack.push(next);
            }
        }
    }
    false
}
