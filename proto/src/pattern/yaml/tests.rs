//! The YAML loader's bounds and messages: alias bombs, depth, size, tags, tabs.

use super::*;

/// Loads `text` and returns its diagnostics as `line:column: message` lines, or `ok`.
fn diagnostics(text: &str) -> String {
    let mut report = Report::new("f");
    let root = load(text, &mut report);
    let lines: Vec<String> = report
        .into_sorted()
        .iter()
        .map(|diagnostic| format!("{}:{}: {}", diagnostic.line, diagnostic.column, diagnostic.message))
        .collect();
    if lines.is_empty() {
        assert!(root.is_some() || text.trim().is_empty(), "no diagnostic but no document for {text:?}");
        "ok".to_owned()
    } else {
        lines.join("\n")
    }
}

fn check(text: &str, expected: &str) {
    assert_eq!(diagnostics(text), expected, "{text:?}");
}

/// The classic "billion laughs": nine levels of ten aliases each.
fn alias_bomb() -> String {
    let mut text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        let items = [previous.as_str(); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    text
}

#[test]
fn alias_expansion_is_bounded() {
    let bomb = alias_bomb();
    assert!(bomb.len() < 1400, "{} bytes", bomb.len());
    let found = diagnostics(&bomb);
    assert!(found.contains(&format!("the document expands to more than {MAX_NODES} nodes")), "{found}");
    assert_eq!(found.lines().count(), 1, "{found}");
    // A few aliases are fine.
    check("base: &base {image: tool}\nfirst: *base\nsecond: *base\n", "ok");
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    check(&deep, &format!("1:{}: lists and mappings nest more than {MAX_DEPTH} deep", MAX_DEPTH + 1));
    let fits = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    check(&fits, "ok");
    // An alias of a deep node does not get around the bound.
    let inner = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let aliased = format!("a: &a {inner}\nb: {}*a{}\n", "[".repeat(30), "]".repeat(30));
    check(&aliased, &format!("2:34: lists and mappings nest more than {MAX_DEPTH} deep"));
}

#[test]
fn input_size_is_bounded() {
    let huge = format!("a: \"{}\"\n", "x".repeat(MAX_INPUT_BYTES));
    check(&huge, &format!("1:1: the file is {} bytes; at most {MAX_INPUT_BYTES} bytes of YAML are accepted", huge.len()));
}

#[test]
fn only_core_tags_are_accepted() {
    let refused = "; only `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq` and `!!map` are accepted";
    check("a: !!python/object:os.system x\n", &format!("1:4: unsupported YAML tag `!!python/object:os.system`{refused}"));
    check("a: !!python/object/apply:os.system [ls]\n", &format!("1:4: unsupported YAML tag `!!python/object/apply:os.system`{refused}"));
    check("a: !foo x\n", &format!("1:4: unsupported YAML tag `!foo`{refused}"));
    check("a: !<tag:x> y\n", &format!("1:4: unsupported YAML tag `!<tag:x>`{refused}"));
    check("a: !!binary aGVsbG8=\n", &format!("1:4: unsupported YAML tag `!!binary`{refused}"));
    check("a: !!set {x: null}\n", &format!("1:4: unsupported YAML tag `!!set`{refused}"));
    check("!foo {a: 1}\n", &format!("1:1: unsupported YAML tag `!foo`{refused}"));
    check("a: !!seq {b: 1}\n", "1:4: the tag `!!seq` does not fit this node");
    check("a: !!int abc\n", "1:4: `abc` is not what its tag `!!int` says");
    check("a: !!str 1\nb: !!int 2\nc: !!seq [1]\nd: !!map {x: 1}\ne: !!bool true\nf: !!null ~\ng: !!float 1.5\n", "ok");
}

#[test]
fn tab_errors_point_at_the_tab() {
    let tab = "YAML syntax error: a tab character; YAML indents with spaces";
    check("a: 1\n\tb: 2\n", &format!("2:1: {tab}"));
    check("a: 1\nb:\n\tc: 2\n", &format!("3:1: {tab}"));
    check("a:\n  b: x\n  \t c: 2\n", &format!("3:3: {tab}"));
}

#[test]
fn integers_too_large_are_known_as_such() {
    let mut report = Report::new("f");
    let root = load("[99999999999999999999, 0x1ffffffffffffffff, -9223372036854775809, 12, 1.5, abc]", &mut report).expect("a list");
    let flags: Vec<bool> = root.as_seq().expect("a list").iter().map(Node::is_integer_out_of_range).collect();
    assert_eq!(flags, [true, true, true, false, false, false]);
}

#[test]
fn many_keys_load_quickly() {
    // Duplicate keys are found through a map, not by comparing every pair.
    let text: String = (0..50_000).map(|idx| format!("k{idx}: {idx}\n")).collect();
    check(&text, "ok");
    check("a: 1\nb: 2\na: 3\n", "3:1: duplicate key `a` (first defined at line 1)");
}
