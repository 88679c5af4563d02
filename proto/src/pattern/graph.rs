//! Checks on the step graph once every step is read: `needs` must not form a cycle (one cycle
//! of each tangle is named), and a step that runs inside a service (exec, exec probe) must need
//! it, directly or through other steps, so the service is up first.
//!
//! Everything here is linear in the number of steps and `needs` edges, and iterative, so a
//! pattern of ten thousand chained steps is checked at once and cannot overflow the stack. The
//! graph arrives as plain edges; this module knows nothing of YAML or the decoder.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::diagnostic::Mark;

/// An edge: (step, a step it needs or runs in, where the reference is written).
pub(crate) type Edge = (String, String, Mark);

/// The steps as numbered nodes, with their `needs` in the order they were written.
struct Graph<'e> {
    names: Vec<&'e str>,
    /// Per node: (needed node, mark of the reference).
    out: Vec<Vec<(usize, Mark)>>,
}

impl<'e> Graph<'e> {
    fn new(edges: &'e [Edge]) -> Self {
        // Numbered in name order, so which cycle is named does not depend on the document order.
        let mut sorted: Vec<&str> = edges.iter().flat_map(|(from, to, _)| [from.as_str(), to.as_str()]).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let index: HashMap<&str, usize> = sorted.iter().enumerate().map(|(idx, name)| (*name, idx)).collect();
        let mut out = vec![Vec::new(); sorted.len()];
        for (from, to, mark) in edges {
            out[index[from.as_str()]].push((index[to.as_str()], *mark));
        }
        Graph { names: sorted, out }
    }

    /// The strongly connected components, each as a list of nodes (Tarjan's algorithm with an
    /// explicit stack).
    fn components(&self) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n_nodes = self.names.len();
        let (mut order, mut low, mut on_stack) = (vec![UNSEEN; n_nodes], vec![0; n_nodes], vec![false; n_nodes]);
        let (mut stack, mut components, mut next_order) = (Vec::new(), Vec::new(), 0);
        for root in 0..n_nodes {
            if order[root] != UNSEEN {
                continue;
            }
            // Each frame: a node and how many of its edges were followed.
            let mut frames = vec![(root, 0)];
            order[root] = next_order;
            low[root] = next_order;
            next_order += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(frame) = frames.last_mut() {
                let (node, edge_idx) = *frame;
                if let Some(&(next, _)) = self.out[node].get(edge_idx) {
                    frame.1 += 1;
                    if order[next] == UNSEEN {
                        order[next] = next_order;
                        low[next] = next_order;
                        next_order += 1;
                        stack.push(next);
                        on_stack[next] = true;
                        frames.push((next, 0));
                    } else if on_stack[next] {
                        low[node] = low[node].min(order[next]);
                    }
                    continue;
                }
                frames.pop();
                if let Some(&(parent, _)) = frames.last() {
                    low[parent] = low[parent].min(low[node]);
                }
                if low[node] == order[node] {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack[member] = false;
                        component.push(member);
                        if member == node {
                            break;
                        }
                    }
                    components.push(component);
                }
            }
        }
        components
    }

    /// The shortest cycle from `start` back to it through `members`, with the mark of its first
    /// edge (breadth-first, so linear in the component's size).
    fn cycle_through(&self, start: usize, members: &[bool]) -> Option<(Vec<usize>, Mark)> {
        let mut came_from: HashMap<usize, (usize, Mark)> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &(next, mark) in &self.out[node] {
                if next == start {
                    let mut path = vec![node];
                    let mut first_mark = mark;
                    let mut current = node;
                    while let Some(&(previous, edge_mark)) = came_from.get(&current) {
                        path.push(previous);
                        first_mark = edge_mark;
                        current = previous;
                    }
                    path.reverse();
                    return Some((path, first_mark));
                }
                if members[next] && next != start && !came_from.contains_key(&next) {
                    came_from.insert(next, (node, mark));
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Every node from which `target` can be reached through `needs` (itself included).
    fn reaching(&self, target: usize) -> Vec<bool> {
        let mut reversed: Vec<Vec<usize>> = vec![Vec::new(); self.names.len()];
        for (from, edges) in self.out.iter().enumerate() {
            for &(to, _) in edges {
                reversed[to].push(from);
            }
        }
        let mut seen = vec![false; self.names.len()];
        seen[target] = true;
        let mut stack = vec![target];
        while let Some(node) = stack.pop() {
            for &previous in &reversed[node] {
                if !seen[previous] {
                    seen[previous] = true;
                    stack.push(previous);
                }
            }
        }
        seen
    }
}

/// Cycles among any named nodes' edges (a lab's components, for one): one cycle named per
/// tangle, at the edge leaving its first node by name, each message `WHAT: a -> b -> a`.
pub(crate) fn cycles(edges: &[Edge], what: &str) -> Vec<(Mark, String)> {
    named_cycles(&Graph::new(edges), what)
}

fn named_cycles(graph: &Graph<'_>, what: &str) -> Vec<(Mark, String)> {
    let mut problems = Vec::new();
    for component in graph.components() {
        let first = *component.iter().min().expect("a component has a member");
        let self_loop = graph.out[first].iter().any(|(next, _)| *next == first);
        if component.len() == 1 && !self_loop {
            continue;
        }
        let mut members = vec![false; graph.names.len()];
        for member in &component {
            members[*member] = true;
        }
        if let Some((cycle, mark)) = graph.cycle_through(first, &members) {
            let path: Vec<&str> = cycle.iter().chain(std::iter::once(&first)).map(|node| graph.names[*node]).collect();
            problems.push((mark, format!("{what}: {}", path.join(" -> "))));
        }
    }
    problems
}

/// Problems of the step graph: cycles among `needs` (one cycle named per tangle, at the edge
/// leaving its first step by name), and steps that run in a service they do not need.
/// `needs` holds the edges that name an existing step; `runs_in` the (step, service) pairs.
pub(crate) fn check(needs: &[Edge], runs_in: &[Edge]) -> Vec<(Mark, String)> {
    let graph = Graph::new(needs);
    let mut problems = named_cycles(&graph, "the steps' `needs` form a cycle");
    let index: HashMap<&str, usize> = graph.names.iter().enumerate().map(|(idx, name)| (*name, idx)).collect();
    let mut reaching: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for (step, service, mark) in runs_in {
        let needs_it = match (index.get(step.as_str()), index.get(service.as_str())) {
            (Some(&step_idx), Some(&service_idx)) => {
                let reach = reaching.entry(service.as_str()).or_insert_with(|| graph.reaching(service_idx));
                step_idx != service_idx && reach[step_idx]
            }
            _ => false,
        };
        if !needs_it {
            problems
                .push((*mark, format!("step `{step}` runs in service `{service}` but does not need it; add `{service}` to its `needs`")));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> Vec<Edge> {
        pairs.iter().enumerate().map(|(idx, (from, to))| (from.to_string(), to.to_string(), Mark { line: idx + 1, column: 1 })).collect()
    }

    /// The problems of a graph as `line: message` lines.
    fn check_graph(needs: &[(&str, &str)], runs_in: &[(&str, &str)], expected: &[&str]) {
        let found: Vec<String> =
            check(&edges(needs), &edges(runs_in)).iter().map(|(mark, message)| format!("{}: {message}", mark.line)).collect();
        assert_eq!(found, expected, "{needs:?} {runs_in:?}");
    }

    #[test]
    fn names_one_cycle_per_tangle() {
        check_graph(
            &[("a", "c"), ("b", "a"), ("c", "b"), ("d", "d"), ("e", "a")],
            &[],
            &["1: the steps' `needs` form a cycle: a -> c -> b -> a", "4: the steps' `needs` form a cycle: d -> d"],
        );
        check_graph(&[("a", "b"), ("b", "c")], &[], &[]);
        // Two cycles sharing a step are one tangle: the shortest cycle through its first step.
        check_graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("b", "a")], &[], &["1: the steps' `needs` form a cycle: a -> b -> a"]);
    }

    #[test]
    fn steps_in_a_service_must_need_it() {
        let needs = [("exec", "ready"), ("ready", "svc"), ("other", "ready")];
        check_graph(
            &needs,
            &[("exec", "svc"), ("lonely", "svc"), ("svc", "svc")],
            &[
                "2: step `lonely` runs in service `svc` but does not need it; add `svc` to its `needs`",
                "3: step `svc` runs in service `svc` but does not need it; add `svc` to its `needs`",
            ],
        );
    }

    /// Ten thousand chained steps, and the same chain closed into one cycle: linear and
    /// iterative, so this is quick and cannot overflow the stack in a debug build.
    #[test]
    fn long_chains_are_checked_in_linear_time() {
        let n_steps = 10_000;
        let names: Vec<String> = (0..n_steps).map(|idx| format!("s{idx:05}")).collect();
        let mut needs: Vec<Edge> = names.windows(2).map(|pair| (pair[1].clone(), pair[0].clone(), Mark::START)).collect();
        let runs_in: Vec<Edge> = names[1..].iter().map(|name| (name.clone(), names[0].clone(), Mark::START)).collect();
        assert!(check(&needs, &runs_in).is_empty());
        needs.push((names[0].clone(), names[n_steps - 1].clone(), Mark { line: 2, column: 1 }));
        let problems = check(&needs, &[]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.starts_with("the steps' `needs` form a cycle: s00000 -> s09999 -> s09998"), "{}", &problems[0].1[..80]);
    }
}
