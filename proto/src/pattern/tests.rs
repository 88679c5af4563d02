//! Data-driven tests of lint, parsing and values against the fixtures in `testdata/`.
//!
//! - `testdata/lint/CASE/`: a malformed pattern directory and `expected.txt`, the exact
//!   diagnostics lint must print, one per line.
//! - `testdata/valid/CASE/`: patterns that must lint clean.
//!
//! Run with `PMESH_BLESS=1` to write the current output into the `expected.txt` files; review
//! the diff before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

fn testdata(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pattern/testdata").join(kind)
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(testdata(kind))
        .expect("testdata exists")
        .map(|entry| entry.expect("readable testdata").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The files of a pattern directory by relative path, `expected.txt` left out.
pub(crate) fn read_pattern(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
                if relative != "expected.txt" {
                    files.insert(relative, std::fs::read(&path).expect("readable file"));
                }
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

fn lint_text(files: &BTreeMap<String, Vec<u8>>) -> String {
    lint(files).iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Lint of `dir` against its `expected.txt`; the mismatch as text, if any.
fn check(dir: &Path) -> Option<String> {
    let actual = lint_text(&read_pattern(dir));
    let expected_path = dir.join("expected.txt");
    if std::env::var_os("PMESH_BLESS").is_some() {
        std::fs::write(&expected_path, format!("{actual}\n")).expect("writable expected.txt");
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    (actual.trim_end() != expected.trim_end())
        .then(|| format!("--- {}\nexpected:\n{}\nactual:\n{actual}\n", dir.display(), expected.trim_end()))
}

#[test]
fn malformed_patterns_report_exact_locations() {
    let dirs = cases("lint");
    assert!(dirs.len() >= 30, "only {} lint cases", dirs.len());
    let mismatches: Vec<String> = dirs.iter().filter_map(|dir| check(dir)).collect();
    assert!(mismatches.is_empty(), "{} of {} cases differ:\n{}", mismatches.len(), dirs.len(), mismatches.join("\n"));
    for dir in &dirs {
        let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
        assert!(!expected.trim().is_empty(), "{} expects no diagnostic; put it under valid/", dir.display());
    }
}

#[test]
fn valid_patterns_lint_clean() {
    let dirs = cases("valid");
    assert!(dirs.len() >= 2);
    for dir in dirs {
        let files = read_pattern(&dir);
        assert_eq!(lint_text(&files), "", "{}", dir.display());
    }
}

/// Supplied values, all given as text the way `-p name=value` gives them.
fn texts(pairs: &[(&str, &str)]) -> BTreeMap<String, ParamValue> {
    pairs.iter().map(|(name, value)| (name.to_string(), ParamValue::String(value.to_string()))).collect()
}

fn valid(name: &str) -> (BTreeMap<String, Vec<u8>>, Pattern) {
    let files = read_pattern(&testdata("valid").join(name));
    let pattern = parse(&files).expect("a valid pattern");
    (files, pattern)
}

#[test]
fn dns_pattern_has_the_expected_shape() {
    use spec::{PortValue, Probe, Protocol};
    use step::Action;

    let (_, pattern) = valid("dns");
    assert_eq!(pattern.metadata.name, "dns");
    assert_eq!(pattern.metadata.version, semver::Version::new(1, 0, 0));
    assert_eq!(pattern.metadata.category, Category::SharedService);
    let Action::Service(named) = &pattern.steps["named"].action else { panic!("named is a service") };
    assert_eq!(named.container.image, "bind");
    assert_eq!(named.ports[0].host, Some(PortValue::Param("listen_port".to_owned())));
    assert_eq!(named.ports[0].protocol, Protocol::Udp);
    assert_eq!(named.container.resources.memory, Some(256 << 20));
    assert_eq!(named.healthcheck.as_ref().map(|check| check.retries), Some(5));
    let Action::Wait(ready) = &pattern.steps["ready"].action else { panic!("ready is a wait") };
    assert_eq!(
        ready.probe,
        Probe::Dns {
            server: "127.0.0.1".to_owned(),
            port: PortValue::Param("listen_port".to_owned()),
            name: "${zone}".to_owned(),
            record_type: "SOA".to_owned()
        }
    );
    assert_eq!(ready.deadline, std::time::Duration::from_secs(60));
    let Action::Exec(check_config) = &pattern.steps["check-config"].action else { panic!("an exec step") };
    assert_eq!(check_config.service, "named");
    assert_eq!(pattern.steps["check-config"].needs, vec!["ready".to_owned()]);
}

#[test]
fn valid_patterns_survive_a_json_round_trip() {
    for name in ["dns", "vcsa", "repeat"] {
        let (_, pattern) = valid(name);
        let json = serde_json::to_string_pretty(&pattern).expect("serializable");
        let back: Pattern = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, pattern, "{name}: {json}");
    }
}

#[test]
fn serde_refuses_unknown_and_foreign_fields() {
    let (_, pattern) = valid("dns");
    let mut json = serde_json::to_value(&pattern).expect("serializable");
    json["steps"]["ready"]["ports"] = serde_json::json!([{ "container": 53 }]);
    let err = serde_json::from_value::<Pattern>(json).expect_err("ports on a wait step");
    assert!(err.to_string().contains("unknown field `ports` for a wait step"), "{err}");
    let mut json = serde_json::to_value(&pattern).expect("serializable");
    json["metadata"]["owner"] = serde_json::json!("me");
    assert!(serde_json::from_value::<Pattern>(json).is_err());
}

/// Checks `-p` assignments against the DNS pattern: the resolved values as `name=value`
/// (secrets and collections in Debug form), or the problems.
fn check_values(assignments: &[&str], expected: Result<&[&str], &[&str]>) {
    let (_, pattern) = valid("dns");
    let supplied: BTreeMap<String, ParamValue> = assignments.iter().map(|text| parse_assignment(text).expect("name=value")).collect();
    let got = validate_values(&pattern, &supplied)
        .map(|params| params.iter().map(|(name, value)| format!("{name}={value:?}")).collect::<Vec<_>>())
        .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>());
    let expected = expected
        .map(|lines| lines.iter().map(|line| line.to_string()).collect::<Vec<_>>())
        .map_err(|lines| lines.iter().map(|line| line.to_string()).collect::<Vec<_>>());
    assert_eq!(got, expected, "{assignments:?}");
}

#[test]
fn supplied_values_are_checked_against_params() {
    check_values(
        &["zone=lab.local", "forwarders=9.9.9.9, 8.8.8.8", "ttl=300"],
        Ok(&[
            r#"forwarders=List([String("9.9.9.9"), String("8.8.8.8")])"#,
            "listen_port=Integer(53)",
            "records=List([])",
            "ttl=Integer(300)",
            r#"zone=String("lab.local")"#,
        ]),
    );
    check_values(
        &["zone=lab.local", "records=[\"www A 10.0.0.2\"]"],
        Ok(&[
            r#"forwarders=List([String("1.1.1.1")])"#,
            "listen_port=Integer(53)",
            r#"records=List([String("www A 10.0.0.2")])"#,
            "ttl=Integer(3600)",
            r#"zone=String("lab.local")"#,
        ]),
    );
    check_values(&[], Err(&["param zone: required hostname value missing (The zone to serve, such as lab.local)"]));
    check_values(
        &["zone=lab..local", "listen_port=0", "ttl=30", "forwarders=1.1.1.1,nope", "color=red", "records={a: 1}"],
        Err(&[
            "param color: unknown param; this pattern takes `forwarders`, `listen_port`, `records`, `ttl`, `zone`",
            "param forwarders: item 2: `nope` is not an IP address",
            "param listen_port: 0 is not a port (1 to 65535)",
            "param records: expected a list, found a mapping",
            "param ttl: 30 is less than the minimum 60",
            "param zone: `lab..local` is not a hostname",
        ]),
    );
}

#[test]
fn dns_templates_render_with_checked_values() {
    let (files, pattern) = valid("dns");
    let supplied = texts(&[("zone", "lab.local"), ("records", "[vcsa A 10.0.0.10, esx1 A 10.0.0.11]")]);
    let params = validate_values(&pattern, &supplied).expect("valid values");
    let template = std::str::from_utf8(&files["templates/zone.db.j2"]).expect("utf-8");
    let zone = render(template, &params).expect("renders");
    assert_eq!(
        zone,
        "$TTL 3600\n@ IN SOA ns1.lab.local. hostmaster.lab.local. ( 1 3600 600 86400 3600 )\n@ IN NS ns1.lab.local.\nns1 IN A 127.0.0.1\nvcsa A 10.0.0.10\nesx1 A 10.0.0.11\n"
    );
    let port = substitute("${listen_port}", &params).expect("substitutes");
    assert_eq!(port, "53");
}

#[test]
fn secrets_never_show() {
    let (_, pattern) = valid("vcsa");
    let supplied =
        texts(&[("esxi_host", "esx1.lab.local"), ("esxi_password", "VMware1!"), ("depot_token", "t0ken"), ("vcsa_ip", "10.0.0.10")]);
    let params = validate_values(&pattern, &supplied).expect("valid values");
    let shown = format!("{params:?} {}", serde_json::to_string(&params.get("esxi_password")).expect("json"));
    assert!(!shown.contains("VMware1!") && !shown.contains("t0ken"), "{shown}");
    assert!(shown.contains("<redacted>"));
    assert_eq!(substitute("${esxi_password}", &params).expect("env value"), "VMware1!");
    let mut with_pattern = pattern;
    with_pattern.params.get_mut("esxi_password").expect("param").validation.pattern = Some("[a-z]+".to_owned());
    let problems = validate_values(&with_pattern, &supplied).expect_err("does not match");
    assert_eq!(problems[0].to_string(), "param esxi_password: the value does not match the pattern `[a-z]+`");
}

#[test]
fn values_files_report_locations() {
    let cases: [(&str, Result<&str, &str>); 3] = [
        ("zone: lab.local\nttl: 300\n", Ok(r#"{"ttl": Integer(300), "zone": String("lab.local")}"#)),
        ("- zone\n", Err("values.yaml:1:1: expected a mapping of param names to values, found a list")),
        ("zone: lab.local\nrecords: [a, ~]\n", Err("values.yaml:2:14: a value cannot be null")),
    ];
    for (text, expected) in cases {
        let got = values_from_yaml("values.yaml", text)
            .map(|values| format!("{values:?}"))
            .map_err(|diagnostics| diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
        assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "{text}");
    }
}

/// `patterns/schema.json` must describe the same format lint reads.
#[test]
fn json_schema_matches_the_spec() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/schema.json");
    let text = std::fs::read_to_string(&path).expect("patterns/schema.json");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is valid JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let keys = |value: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
        keys.sort();
        keys
    };
    let sorted = |names: &[&str]| -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(keys(&schema["properties"]), sorted(&decode::TOP_FIELDS));
    let defs = &schema["$defs"];
    let enum_of = |value: &serde_json::Value| -> Vec<String> {
        value["enum"].as_array().expect("an enum").iter().map(|item| item.as_str().expect("a string").to_owned()).collect()
    };
    assert_eq!(enum_of(&defs["param"]["properties"]["type"]), ParamType::ALL);
    assert_eq!(enum_of(&defs["validation"]["properties"]["items"]), ParamType::ITEMS);
    assert_eq!(enum_of(&defs["metadata"]["properties"]["category"]), Category::ALL);
    assert_eq!(enum_of(&defs["capabilities"]["items"]), formats::CAPABILITIES);
    let http_probe = &defs["probe"]["oneOf"][1]["properties"]["http"]["properties"];
    assert_eq!(keys(http_probe), sorted(&decode::HTTP_PROBE_FIELDS));
    let steps = defs["step"]["oneOf"].as_array().expect("one schema per kind");
    assert_eq!(steps.len(), step::StepKind::ALL.len());
    for kind_schema in steps {
        let kind = kind_schema["properties"]["kind"]["const"].as_str().expect("a kind");
        let kind = step::StepKind::from_name(kind).expect("a known kind");
        assert_eq!(keys(&kind_schema["properties"]), sorted(&kind.fields()), "{kind:?}");
    }
}

/// The worked example and the lint output in `patterns/README.md` are the fixtures above,
/// verbatim, so a reader copying them gets a pattern that lints clean and the output shown.
#[test]
fn readme_examples_are_the_tested_fixtures() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/README.md");
    let readme = std::fs::read_to_string(readme_path).expect("patterns/README.md");
    let (files, _) = valid("dns");
    for (path, fence) in [("pattern.yaml", "yaml"), ("templates/zone.db.j2", "jinja"), ("templates/named.conf.j2", "jinja")] {
        let text = std::str::from_utf8(&files[path]).expect("utf-8");
        assert!(readme.contains(&format!("```{fence}\n{text}```\n")), "the README does not show {path} as tested");
    }
    let mistakes = testdata("lint").join("readme-dns-mistakes");
    for line in lint_text(&read_pattern(&mistakes)).lines() {
        assert!(readme.contains(&format!("patterns/shared/dns/{line}\n")), "the README does not show `{line}`");
    }
}

/// A pattern of `n_steps` run steps, each needing the one before; `close` makes the first need
/// the last, a cycle through all of them.
fn chained_pattern(n_steps: usize, close: bool) -> BTreeMap<String, Vec<u8>> {
    let mut text = "apiVersion: pmesh/v1\nkind: Pattern\nmetadata: {name: chain, version: 1.0.0, category: basic-tool}\n".to_owned();
    text.push_str("images:\n  tool: {ref: \"debian:bookworm\"}\nsteps:\n");
    for idx in 0..n_steps {
        let needs = match (idx, close) {
            (0, false) => String::new(),
            (0, true) => format!(", needs: [s{}]", n_steps - 1),
            _ => format!(", needs: [s{}]", idx - 1),
        };
        text.push_str(&format!("  s{idx}: {{kind: run, image: tool{needs}}}\n"));
    }
    BTreeMap::from([(PATTERN_FILE.to_owned(), text.into_bytes())])
}

/// Ten thousand chained steps lint at once (the cycle check is linear, nothing recurses).
#[test]
fn long_chains_lint_quickly() {
    assert_eq!(lint_text(&chained_pattern(10_000, false)), "");
    let found = lint_text(&chained_pattern(10_000, true));
    assert_eq!(found.lines().count(), 1, "{}", &found[..found.len().min(300)]);
    assert!(found.starts_with("pattern.yaml:7:40: the steps' `needs` form a cycle: s0 -> s9999 -> s9998"), "{}", &found[..200]);
}

/// No value with a control character reaches a template, list items are checked against the
/// param's pattern, and numbers too large for their type are said to be out of range.
#[test]
fn values_with_control_characters_bad_records_or_huge_numbers_are_refused() {
    let hint = "; a param with `validation.multiline: true` may hold line breaks and tabs";
    check_values(
        &["zone=lab.local", "records=www A 10.0.0.2, @ 300 IN MX 10 mail.lab.local."],
        Ok(&[
            r#"forwarders=List([String("1.1.1.1")])"#,
            "listen_port=Integer(53)",
            r#"records=List([String("www A 10.0.0.2"), String("@ 300 IN MX 10 mail.lab.local.")])"#,
            "ttl=Integer(3600)",
            r#"zone=String("lab.local")"#,
        ]),
    );
    check_values(
        &["zone=lab.local", "records=[\"www A 10.0.0.2\\n$INCLUDE /etc/shadow\", \"nope\", \"a A 1; comment\"]"],
        Err(&[
            &format!("param records: item 1: `www A 10.0.0.2\\n$INCLUDE /etc/shadow` holds a line break{hint}"),
            r"param records: item 2: `nope` does not match the pattern `[A-Za-z0-9_.*@-]+( +[0-9]+)?( +IN)? +[A-Z][A-Z0-9]* +[^;()\s][^;()]*`",
            r"param records: item 3: `a A 1; comment` does not match the pattern `[A-Za-z0-9_.*@-]+( +[0-9]+)?( +IN)? +[A-Z][A-Z0-9]* +[^;()\s][^;()]*`",
        ]),
    );
    check_values(
        &["zone=lab.local", "ttl=99999999999999999999", "listen_port=99999999999999999999"],
        Err(&[
            "param listen_port: 99999999999999999999 is out of range for a port (1 to 65535)",
            "param ttl: 99999999999999999999 is out of range for an integer (-9223372036854775808 to 9223372036854775807)",
        ]),
    );
    let long = "x".repeat(500);
    let cut = format!("`{}…`", "x".repeat(80));
    check_values(
        &["zone=lab.local", &format!("forwarders={long}")],
        Err(&[&format!("param forwarders: item 1: {cut} is not an IP address")]),
    );
}

/// The same rule for a plain string, a map and a secret, and `multiline` lifting it.
#[test]
fn control_characters_need_multiline() {
    let param = |kind: ParamType, multiline: bool| Param {
        kind,
        required: true,
        default: None,
        description: String::new(),
        validation: Validation { multiline, ..Validation::default() },
    };
    let coerce = |param: &Param, value: ParamValue| {
        values::coerce(param.kind, &param.validation, &value).map(|_| ()).map_err(|problems| problems.join("; "))
    };
    let hint = "; a param with `validation.multiline: true` may hold line breaks and tabs";
    let text = |value: &str| ParamValue::String(value.to_owned());
    assert_eq!(coerce(&param(ParamType::String, false), text("a\nb")), Err(format!("`a\\nb` holds a line break{hint}")));
    assert_eq!(coerce(&param(ParamType::String, false), text("a\tb")), Err(format!("`a\\tb` holds a tab{hint}")));
    assert_eq!(coerce(&param(ParamType::String, true), text("line one\n\tline two\r\n")), Ok(()));
    assert_eq!(
        coerce(&param(ParamType::String, true), text("bell\u{7}")),
        Err("`bell\\u{7}` holds the control character \\u{7}".to_owned())
    );
    assert_eq!(coerce(&param(ParamType::Secret, false), text("s3cret\n")), Err(format!("the value holds a line break{hint}")));
    let map = |key: &str, value: &str| ParamValue::Map(BTreeMap::from([(key.to_owned(), text(value))]));
    assert_eq!(coerce(&param(ParamType::Map, false), map("a\nb", "x")), Err(format!("key `a\\nb` holds a line break{hint}")));
    assert_eq!(
        coerce(&param(ParamType::Map, false), map("a", "x\u{1b}[2J")),
        Err(format!("key `a`: `x\\u{{1b}}[2J` holds the control character \\u{{1b}}{hint}"))
    );
    assert_eq!(coerce(&param(ParamType::Map, true), map("a", "x\ny")), Ok(()));
}

/// `validation.fields`: list items are mappings whose fields are checked as params (required,
/// defaults, types, patterns), or, with a `pattern`, strings matching it.
#[test]
fn mapping_items_are_checked_field_by_field() {
    let field = |kind: ParamType, required: bool, default: Option<ParamValue>, pattern: Option<&str>| Param {
        kind,
        required,
        default,
        description: String::new(),
        validation: Validation { pattern: pattern.map(str::to_owned), ..Validation::default() },
    };
    let fields = BTreeMap::from([
        ("name".to_owned(), field(ParamType::String, true, None, Some("[a-z]+"))),
        ("ttl".to_owned(), field(ParamType::Integer, false, Some(ParamValue::Integer(60)), None)),
    ]);
    let strict = Validation { fields: fields.clone(), ..Validation::default() };
    let either = Validation { fields, pattern: Some("[a-z]+ [0-9]+".to_owned()), ..Validation::default() };
    let text = |value: &str| ParamValue::String(value.to_owned());
    let item =
        |pairs: &[(&str, ParamValue)]| ParamValue::Map(pairs.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect());
    let coerce = |validation: &Validation, items: Vec<ParamValue>| {
        values::coerce(ParamType::List, validation, &ParamValue::List(items)).map_err(|problems| problems.join("\n"))
    };
    assert_eq!(
        coerce(&strict, vec![item(&[("name", text("www"))])]),
        Ok(ParamValue::List(vec![item(&[("name", text("www")), ("ttl", ParamValue::Integer(60))])])),
        "a default fills a missing field"
    );
    assert_eq!(coerce(&strict, vec![item(&[("name", text("www")), ("ttl", text("300"))])]).map(|_| ()), Ok(()));
    let missing = coerce(&strict, vec![item(&[("ttl", text("x")), ("colour", text("red"))]), text("www 1")]).unwrap_err();
    let expected = [
        "item 1: unknown field `colour`; expected one of `name`, `ttl`",
        "item 1: field `name`: required string value missing",
        "item 1: field `ttl`: expected an integer, found `x`",
        "item 2: expected a mapping with the fields `name`, `ttl`, found `www 1`",
    ];
    assert_eq!(missing, expected.join("\n"));
    assert_eq!(coerce(&either, vec![text("www 1"), item(&[("name", text("www"))])]).map(|_| ()), Ok(()), "both forms");
    let refused = coerce(&either, vec![text("www"), item(&[("name", text("WWW;"))]), ParamValue::Integer(3)]).unwrap_err();
    assert_eq!(
        refused,
        [
            "item 1: `www` does not match the pattern `[a-z]+ [0-9]+`",
            "item 2: field `name`: `WWW;` does not match the pattern `[a-z]+`",
            "item 3: expected a string or a mapping with the fields `name`, `ttl`, found `3`",
        ]
        .join("\n")
    );
}
