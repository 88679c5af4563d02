//! A crate's module tree, read from its `mod` items, and which file uses which: every path a
//! file names (`use` trees, and `crate::…`, `super::…`, `self::…` or `child::…` paths in code)
//! is followed to the module file it lands in, through `pub use` re-exports; then the groups of
//! files that reach one another.
//!
//! A file's use of one of its own ancestor modules (`super::Error` in a child of the module
//! that defines it) is not an edge: a module and its submodules are one unit, and a parent
//! naming its child's items while the child names the parent's is how Rust modules are built.
//! Cycles between siblings and cousins are what this finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::files::{read, relative};
use crate::rust::{closing_brace, is_ident_token, strip, tokens, Token};

/// The root files of every crate of the workspace: libraries, binaries, integration tests and
/// build scripts.
pub fn crate_roots(repo: &Path) -> Vec<PathBuf> {
    let workspace = read(&repo.join("Cargo.toml"));
    let members = workspace.lines().find_map(|line| line.strip_prefix("members = [")).expect("the workspace's members, on one line");
    let packages: Vec<&str> = members.split('"').skip(1).step_by(2).collect();
    assert!(packages.len() >= 5, "members: {packages:?}");
    let mut roots = Vec::new();
    for package in packages {
        let dir = repo.join(package);
        assert!(read(&dir.join("Cargo.toml")).contains("[package]"), "{package} is not a package");
        roots.extend(["src/lib.rs", "src/main.rs", "build.rs"].iter().map(|file| dir.join(file)).filter(|path| path.exists()));
        for (folder, main) in [("src/bin", "main.rs"), ("tests", "main.rs")] {
            let Ok(entries) = std::fs::read_dir(dir.join(folder)) else { continue };
            for path in entries.map(|entry| entry.expect("a directory entry").path()) {
                if path.extension().is_some_and(|ext| ext == "rs") {
                    roots.push(path);
                } else if path.join(main).exists() {
                    roots.push(path.join(main));
                }
            }
        }
    }
    roots.sort();
    roots
}

/// A path a file names, in the module where it names it.
#[derive(Clone)]
struct Reference {
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
    /// The name a `pub use` makes it known by in `scope`.
    exported_as: Option<String>,
}

/// What one file says: the modules it declares (with the file of each, or its own for an
/// inline one) and the paths it names.
fn scan(file: &Path, module: &[String], is_root: bool) -> (Vec<(Vec<String>, PathBuf)>, Vec<Reference>) {
    let tokens = tokens(&strip(&read(file)));
    let text = |index: usize| tokens.get(index).map_or("", |token: &Token| token.text.as_str());
    // A crate root's and a mod.rs's child modules are beside it; another file's are in the
    // folder of its name.
    let children_dir =
        if is_root || file.ends_with("mod.rs") { file.parent().expect("a parent").to_path_buf() } else { file.with_extension("") };
    let (mut modules, mut references) = (Vec::new(), Vec::new());
    // The inline modules the walk is in, with the index of each one's closing brace.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        inline.retain(|(_, close)| index < *close);
        let scope: Vec<String> = module.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect();
        let after_path = index > 0 && matches!(text(index - 1), "::" | "$" | ".");
        if text(index) == "mod" && tokens.get(index + 1).is_some_and(is_ident_token) {
            let name = text(index + 1).to_owned();
            let child: Vec<String> = scope.iter().cloned().chain([name.clone()]).collect();
            if text(index + 2) == "{" {
                inline.push((name, closing_brace(&tokens, index + 2)));
                modules.push((child, file.to_path_buf()));
            } else {
                let dir = inline.iter().fold(children_dir.clone(), |dir, (name, _)| dir.join(name));
                let flat = dir.join(format!("{name}.rs"));
                modules.push((child, if flat.exists() { flat } else { dir.join(&name).join("mod.rs") }));
            }
            index += 2;
        } else if text(index) == "use" {
            let mut paths = Vec::new();
            let line = tokens[index].line;
            // `pub use`, `pub(crate) use`, `pub(in some::path) use`.
            let before = |back: usize| if index >= back { text(index - back) } else { "" };
            let public = before(1) == "pub" || (before(1) == ")" && (3..=7).any(|back| before(back) == "pub"));
            index = use_tree(&tokens, index + 1, Vec::new(), &mut paths);
            references.extend(paths.into_iter().map(|(segments, name)| Reference {
                scope: scope.clone(),
                segments,
                line,
                exported_as: name.filter(|_| public),
            }));
        } else if !after_path && is_ident_token(&tokens[index]) && text(index + 1) == "::" {
            let mut segments = vec![text(index).to_owned()];
            while text(index + 1) == "::" && tokens.get(index + 2).is_some_and(is_ident_token) {
                segments.push(text(index + 2).to_owned());
                index += 2;
            }
            references.push(Reference { scope, segments, line: tokens[index].line, exported_as: None });
            index += 1;
        } else {
            index += 1;
        }
    }
    (modules, references)
}

/// Reads the use tree starting at `index` into full paths, each with the name it binds (its
/// alias or last segment; none for a glob); returns the index after it.
fn use_tree(tokens: &[Token], mut index: usize, mut path: Vec<String>, paths: &mut Vec<(Vec<String>, Option<String>)>) -> usize {
    let text = |index: usize| tokens.get(index).map_or("", |token: &Token| token.text.as_str());
    loop {
        match text(index) {
            "::" => index += 1,
            "{" => {
                index += 1;
                while !matches!(text(index), "}" | "") {
                    let next = use_tree(tokens, index, path.clone(), paths);
                    // A token the tree does not expect (an attribute) is stepped over.
                    index = if next == index { index + 1 } else { next };
                    if text(index) == "," {
                        index += 1;
                    }
                }
                return index + 1;
            }
            "*" => {
                paths.push((path, None));
                return index + 1;
            }
            _ if tokens.get(index).is_some_and(is_ident_token) => {
                path.push(text(index).to_owned());
                index += 1;
                if text(index) != "::" {
                    let mut name = path.iter().rev().find(|segment| *segment != "self").cloned();
                    if text(index) == "as" {
                        name = Some(text(index + 1).to_owned());
                        index += 2;
                    }
                    paths.push((path, name));
                    return index;
                }
            }
            _ => return index,
        }
    }
}

/// A crate's modules, each with its file, and what each re-exports (`pub use`), by name.
struct Crate {
    modules: BTreeMap<Vec<String>, PathBuf>,
    exports: BTreeMap<Vec<String>, BTreeMap<String, Reference>>,
}

impl Crate {
    /// The file a reference lands in, if it names a module of the crate. A name a module
    /// re-exports lands where the re-export points, so that using a facade's re-export of a
    /// sibling is a use of the sibling, not of the facade.
    fn resolve(&self, reference: &Reference, depth: usize) -> Option<&PathBuf> {
        let segments = &reference.segments;
        let supers = segments.iter().take_while(|segment| *segment == "super").count();
        let (mut current, rest) = match segments[0].as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (reference.scope.clone(), &segments[1..]),
            "super" => (reference.scope[..reference.scope.len().checked_sub(supers)?].to_vec(), &segments[supers..]),
            first if self.modules.contains_key(&[reference.scope.as_slice(), &[first.to_owned()]].concat()) => {
                (reference.scope.clone(), &segments[..])
            }
            _ => return None,
        };
        let mut rest = rest.iter();
        for segment in rest.by_ref() {
            let next = [current.as_slice(), std::slice::from_ref(segment)].concat();
            if !self.modules.contains_key(&next) {
                let exported = self.exports.get(&current).and_then(|names| names.get(segment));
                if let Some(target) = exported.filter(|_| depth < 8).and_then(|export| self.resolve(export, depth + 1)) {
                    return Some(target);
                }
                break;
            }
            current = next;
        }
        self.modules.get(&current)
    }
}

/// Which file uses which, in the crate rooted at `root`, with the line of the first use.
pub fn file_graph(root: &Path) -> BTreeMap<PathBuf, BTreeMap<PathBuf, usize>> {
    let mut modules = BTreeMap::from([(Vec::new(), root.to_path_buf())]);
    let mut references = Vec::new();
    let mut pending = vec![(Vec::new(), root.to_path_buf())];
    while let Some((module, file)) = pending.pop() {
        let (declared, named) = scan(&file, &module, module.is_empty());
        for (child, child_file) in declared {
            if child_file != file {
                assert!(child_file.exists(), "{}: mod {} has no file {}", file.display(), child.join("::"), child_file.display());
                pending.push((child.clone(), child_file.clone()));
            }
            modules.insert(child, child_file);
        }
        references.extend(named.into_iter().map(|reference| (file.clone(), reference)));
    }
    let mut exports: BTreeMap<Vec<String>, BTreeMap<String, Reference>> = BTreeMap::new();
    for (_, reference) in &references {
        if let Some(name) = &reference.exported_as {
            exports.entry(reference.scope.clone()).or_default().insert(name.clone(), reference.clone());
        }
    }
    let module_of: BTreeMap<PathBuf, Vec<String>> = modules.iter().map(|(module, file)| (file.clone(), module.clone())).collect();
    let krate = Crate { modules, exports };
    let is_ancestor = |file: &PathBuf, target: &PathBuf| match (module_of.get(file), module_of.get(target)) {
        (Some(module), Some(ancestor)) => ancestor.len() < module.len() && module.starts_with(ancestor),
        _ => false,
    };
    let mut graph: BTreeMap<PathBuf, BTreeMap<PathBuf, usize>> = BTreeMap::new();
    for (file, reference) in references {
        if let Some(target) = krate.resolve(&reference, 0).filter(|target| **target != file && !is_ancestor(&file, target)) {
            graph.entry(file).or_default().entry(target.clone()).or_insert(reference.line);
        }
    }
    graph
}

pub struct Cycle {
    /// The files that all reach one another, sorted.
    pub members: Vec<PathBuf>,
    /// One way round: (file, line, the file it uses there).
    pub steps: Vec<(PathBuf, usize, PathBuf)>,
}

/// The groups of files that reach one another, each with one cycle through its first file.
pub fn cycles(graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, usize>>) -> Vec<Cycle> {
    let reach = |from: &PathBuf| -> BTreeSet<PathBuf> {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from.clone()]);
        while let Some(file) = stack.pop() {
            for next in graph.get(&file).into_iter().flat_map(|uses| uses.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&PathBuf, BTreeSet<PathBuf>> = graph.keys().map(|file| (file, reach(file))).collect();
    let mut grouped = BTreeSet::new();
    let mut found = Vec::new();
    for (file, reached) in &reachable {
        if grouped.contains(*file) || !reached.contains(*file) {
            continue;
        }
        let members: Vec<PathBuf> =
            reached.iter().filter(|other| reachable.get(other).is_some_and(|back| back.contains(*file))).cloned().collect();
        grouped.extend(members.iter().cloned());
        found.push(Cycle { steps: shortest_cycle(graph, file, &members), members });
    }
    found
}

/// The shortest way from `start` back to itself through `members`, breadth first.
fn shortest_cycle(
    graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, usize>>,
    start: &PathBuf,
    members: &[PathBuf],
) -> Vec<(PathBuf, usize, PathBuf)> {
    let mut came_from: BTreeMap<PathBuf, (PathBuf, usize)> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(file) = queue.pop_front() {
        for (next, line) in graph.get(&file).into_iter().flatten() {
            if members.contains(next) && !came_from.contains_key(next) {
                came_from.insert(next.clone(), (file.clone(), *line));
                queue.push_back(next.clone());
            }
        }
        if came_from.contains_key(start) {
            break;
        }
    }
    let mut steps = Vec::new();
    let mut to = start.clone();
    while let Some((from, line)) = came_from.get(&to) {
        steps.push((from.clone(), *line, to.clone()));
        if from == start {
            break;
        }
        to = from.clone();
    }
    steps.reverse();
    steps
}

#[test]
fn the_scanner_finds_a_cycle_through_a_parent_and_a_sibling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod leaf;\nmod facade;\n"),
        // The facade uses its child `user`, which uses the facade's re-export of `error`: no
        // cycle, since the re-export stands for `error`.
        ("facade/mod.rs", "mod error;\nmod user;\npub use error::Error;\nfn f() { user::g(); }\n"),
        ("facade/error.rs", "pub struct Error;\n"),
        ("facade/user.rs", "use super::Error;\n"),
        ("a/mod.rs", "mod child;\nuse child::Thing;\n"),
        ("a/child.rs", "use crate::b::{self, Other};\n"),
        ("b.rs", "fn f() { super::a::g(); }\nuse crate::leaf::*;\n"),
        ("leaf.rs", "// crate::a::x in a comment\nconst S: &str = \"super::a\";\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("writing");
    }
    let found = cycles(&file_graph(&dir.path().join("lib.rs")));
    let names = |paths: Vec<&PathBuf>| -> Vec<String> { paths.into_iter().map(|path| relative(dir.path(), path)).collect() };
    assert_eq!(found.len(), 1);
    assert_eq!(names(found[0].members.iter().collect()), ["a/child.rs", "a/mod.rs", "b.rs"]);
    let steps: Vec<(String, usize)> = found[0].steps.iter().map(|(from, line, _)| (relative(dir.path(), from), *line)).collect();
    assert_eq!(steps, [("a/child.rs".to_owned(), 1), ("b.rs".to_owned(), 1), ("a/mod.rs".to_owned(), 2)]);
}
