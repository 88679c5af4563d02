//! The lab format's tests: a table of malformed files, each refused at its line and column,
//! a valid file's model, the checks against a catalog, and value resolution.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::refs::{resolve, ResolveError};
use super::*;

const GOOD: &str = r#"apiVersion: pmesh/v1
kind: Lab
metadata:
  name: lab1
values:
  domain: lab.local
components:
  dns:
    pattern: dns
    version: "^2"
    on: pc-1
    values:
      zone: ${values.domain}
      records: ["ntp A 10.0.0.2"]
  ntp:
    pattern: ntp
    selector: {role: services}
    needs: [dns]
  esxi:
    pattern: esxi
    on: pc-2
    count: 3
    values:
      hostname: esxi-${index}.${values.domain}
      dns_server: ${dns.outputs.address}
      ntp_server: "${ntp.outputs.address}"
      banner: "lab ${lab.name} dns ${dns.outputs.address}:${dns.outputs.port}"
  vcenter:
    pattern: vcenter
    on: pc-2
    values:
      hosts: ${esxi.outputs.address}
"#;

/// Lints `text` and compares `LINE:COLUMN: message` lines with the expected ones, each given
/// as `LINE:COLUMN: ` and the start of its message; the mismatch, if any.
fn check_lint(text: &str, expected: &[&str]) -> Option<String> {
    let found: Vec<String> = lint("lab.yaml", text).iter().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect();
    let fits = found.len() == expected.len() && found.iter().zip(expected).all(|(line, fragment)| line.starts_with(fragment));
    (!fits).then(|| format!("for\n{text}\nexpected {expected:?}\nfound    {found:?}"))
}

const HEAD: &str = "apiVersion: pmesh/v1\nkind: Lab\nmetadata: {name: lab1}\n";

#[test]
fn malformed_labs_are_refused_at_their_place() {
    let head = |rest: &str| format!("{HEAD}{rest}");
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("".to_owned(), vec!["1:1: the file is empty"]),
        (
            "kind: Lab\nmetadata: {name: a}\ncomponents: {x: {pattern: p, on: a}}\n".to_owned(),
            vec!["1:1: `apiVersion: pmesh/v1` is missing"],
        ),
        (
            "apiVersion: pmesh/v2\nkind: Lab\nmetadata: {name: a}\ncomponents: {x: {pattern: p, on: a}}\n".to_owned(),
            vec!["1:13: `apiVersion` is `pmesh/v2`"],
        ),
        (
            "apiVersion: pmesh/v1\nkind: Pattern\nmetadata: {name: a}\ncomponents: {x: {pattern: p, on: a}}\n".to_owned(),
            vec!["2:7: `kind` is `Pattern`, not `Lab`; this is a pattern"],
        ),
        (
            "apiVersion: pmesh/v1\nkind: Lab\nmetadata: {name: Lab_1}\ncomponents: {x: {pattern: p, on: a}}\n".to_owned(),
            vec!["3:18: `metadata.name`: "],
        ),
        (head("components: {}\n"), vec!["4:13: `components` is empty"]),
        (head("components:\n  x: {pattern: p, on: a, colour: red}\n"), vec!["5:26: component `x`: unknown key `colour`"]),
        (head("components:\n  x: {on: a}\n"), vec!["5:3: component `x`: `pattern` is missing"]),
        (head("components:\n  x: {pattern: p}\n"), vec!["5:3: component `x`: say where it runs"]),
        (head("components:\n  x: {pattern: p, on: a, selector: {r: s}}\n"), vec!["5:26: component `x`: give `on` or `selector`, not both"]),
        (
            head("components:\n  x: {pattern: p, version: banana, on: a}\n"),
            vec!["5:28: component `x`: `version`: `banana` is not a version or range"],
        ),
        (
            head("components:\n  x: {pattern: p, on: a, count: 0}\n"),
            vec!["5:33: component `x`: `count`: a whole number from 1 to 64, not `0`"],
        ),
        (head("components:\n  x: {pattern: p, on: a, needs: [y]}\n"), vec!["5:34: component `x` needs `y`, which is not a component"]),
        (
            head("components:\n  a: {pattern: p, on: h, needs: [b]}\n  b: {pattern: p, on: h, values: {v: \"${a.outputs.o}\"}}\n"),
            vec!["5:34: the components depend on each other in a cycle: a -> b -> a"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, values: {v: \"${a.outputs.o}\"}}\n"),
            vec!["5:39: component `a` cannot use its own output `o`"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, values: {v: \"x ${nope.outputs.o}\"}}\n"),
            vec!["5:41: `nope.outputs.o`: `nope` is not a component"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, values: {v: \"${values.missing}\"}}\n"),
            vec!["5:39: unknown lab value `${values.missing}`; the lab has no `values`"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, values: {v: \"${b.output.o}\"}}\n  b: {pattern: p, on: h}\n"),
            vec!["5:39: `${b.output.o}`: write `outputs`, plural"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, values: {v: \"${b.outputs.o\"}}\n  b: {pattern: p, on: h}\n"),
            vec!["5:39: unterminated `${`"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, values: {v: \"x-${b.outputs.o}\"}}\n  b: {pattern: p, on: h, count: 2}\n"),
            vec!["5:41: `b` has a count, so its output `o` is a list: use it as the whole value"],
        ),
        (
            head("components:\n  a: {pattern: p, on: h, needs: [b, b]}\n  b: {pattern: p, on: h}\n"),
            vec!["5:37: component `a`: `b` is listed twice in `needs`"],
        ),
        (head("components:\n  a: {pattern: p@1.0.0, on: h}\n"), vec!["5:16: component `a`: `pattern`: give the version in `version`"]),
        (
            head("components:\n  a: {pattern: p, on: h, selector: {}}\n".replace(", on: h", "").as_str()),
            vec!["5:29: component `a`: `selector` is empty"],
        ),
        (head("components:\n  a: {pattern: p, on: h}\nextra: 1\n"), vec!["6:1: the lab: unknown key `extra`"]),
        (head("components:\n  a: {pattern: p, on: h, values: {v: null}}\n"), vec!["5:38: a value cannot be null"]),
        (
            head(&format!("components:\n  {}: {{pattern: p, on: h}}\n", "c".repeat(60))),
            vec!["5:3: component `cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc`: its instance name"],
        ),
        (
            "apiVersion: pmesh/v1\nkind: Lab\nmetadata: {name: a}\ncomponents: [x]\n".to_owned(),
            vec!["4:13: `components` must be a mapping, found a list"],
        ),
        (head("components:\n  a: {pattern: p, on: h}\n  a: {pattern: q, on: h}\n"), vec!["6:3: duplicate key"]),
    ];
    assert!(cases.len() >= 15);
    let mismatches: Vec<String> = cases.iter().filter_map(|(text, expected)| check_lint(text, expected)).collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn a_good_lab_is_read_with_its_references() {
    let lab = parse("lab.yaml", GOOD).unwrap_or_else(|problems| panic!("{problems:#?}"));
    assert_eq!(lab.name, "lab1");
    let order: Vec<&str> = lab.order().iter().map(|component| component.name.as_str()).collect();
    assert_eq!(order, ["dns", "ntp", "esxi", "vcenter"]);
    let dns = lab.component("dns").expect("dns");
    assert_eq!(dns.values[0].value, serde_json::json!("lab.local"));
    assert_eq!(dns.version, Some(semver::VersionReq::parse("^2").expect("req")));
    let esxi = lab.component("esxi").expect("esxi");
    assert_eq!(esxi.count, 3);
    assert_eq!(Lab::dependencies(esxi).into_iter().collect::<Vec<_>>(), ["dns", "ntp"]);
    let refs: Vec<(&str, &str, bool, usize, usize)> = esxi
        .values
        .iter()
        .flat_map(|value| value.refs.iter().map(|r| (r.component.as_str(), r.output.as_str(), r.whole, r.mark.line, r.mark.column)))
        .collect();
    assert!(esxi.values.iter().all(|value| value.refs.iter().all(|r| !r.nested)));
    assert!(lab.component("dns").expect("dns").values.iter().all(|value| value.refs.is_empty()));
    assert_eq!(
        refs,
        [
            ("dns", "address", true, 25, 19),
            ("ntp", "address", true, 26, 20),
            ("dns", "address", false, 27, 36),
            ("dns", "port", false, 27, 59)
        ]
    );
    assert_eq!(lab.instance(esxi, 2), "lab1-esxi-2");
    assert_eq!(lab.instance(dns, 0), "lab1-dns");
    assert_eq!(lab.component("ntp").expect("ntp").placement, Placement::Selector(BTreeMap::from([("role".into(), "services".into())])));
}

#[test]
fn values_resolve_once_their_outputs_are_known() {
    let lab = parse("lab.yaml", GOOD).expect("parses");
    let esxi = lab.component("esxi").expect("esxi");
    let outputs = |component: &str, name: &str| match (component, name) {
        ("dns", "address") => Some(serde_json::json!("10.0.0.5")),
        ("dns", "port") => Some(serde_json::json!(53)),
        ("ntp", "address") => Some(serde_json::json!("10.0.0.6")),
        _ => None,
    };
    let resolved: Vec<serde_json::Value> = esxi.values.iter().map(|value| resolve(&value.value, 1, &outputs).expect("resolves")).collect();
    assert_eq!(
        resolved,
        [
            serde_json::json!("esxi-1.lab.local"),
            serde_json::json!("10.0.0.5"),
            serde_json::json!("10.0.0.6"),
            serde_json::json!("lab lab1 dns 10.0.0.5:53")
        ]
    );
    let vcenter = lab.component("vcenter").expect("vcenter");
    let missing = resolve(&vcenter.values[0].value, 0, &outputs);
    assert_eq!(missing, Err(ResolveError::Unknown { component: "esxi".into(), output: "address".into() }));
    let listed = resolve(&vcenter.values[0].value, 0, &|_: &str, _: &str| Some(serde_json::json!(["a", "b"]))).expect("resolves");
    assert_eq!(listed, serde_json::json!(["a", "b"]));
    // A literal `$${` stays literal through the lab and reaches the pattern as `${`.
    let text = format!("{HEAD}components:\n  a: {{pattern: p, on: h, values: {{v: \"$${{not.a.ref}}\"}}}}\n");
    let lab = parse("lab.yaml", &text).unwrap_or_else(|problems| panic!("{problems:#?}"));
    assert_eq!(resolve(&lab.components[0].values[0].value, 0, &outputs), Ok(serde_json::json!("${not.a.ref}")));
}

struct Table {
    patterns: BTreeMap<String, Vec<(semver::Version, Arc<Pattern>)>>,
    agents: Vec<(String, BTreeMap<String, String>)>,
}

use crate::pattern::Pattern;

fn pattern(name: &str, version: &str, params: &str, outputs: &str) -> Arc<Pattern> {
    let text = format!(
        "apiVersion: pmesh/v1\nkind: Pattern\nmetadata: {{name: {name}, version: {version}, description: d, category: basic-tool}}\nparams:\n{params}\nimages: {{tools: {{ref: debian:12}}}}\nsteps:\n  s: {{kind: run, image: tools, command: [\"true\"]}}\n{outputs}"
    );
    let files = BTreeMap::from([("pattern.yaml".to_owned(), text.into_bytes())]);
    Arc::new(crate::pattern::parse(&files).unwrap_or_else(|problems| panic!("{problems:#?}")))
}

impl Catalog for Table {
    fn pattern(&self, name: &str, version: Option<&semver::VersionReq>) -> Result<Resolved, String> {
        let versions = self.patterns.get(name).ok_or_else(|| format!("no pattern `{name}` is registered"))?;
        versions
            .iter()
            .filter(|(v, _)| version.is_none_or(|req| req.matches(v)))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(v, pattern)| Resolved { reference: format!("{name}@{v}"), pattern: pattern.clone() })
            .ok_or_else(|| format!("no version of `{name}` matches"))
    }
    fn has_agent(&self, name: &str) -> bool {
        self.agents.iter().any(|(agent, _)| agent == name)
    }
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.agents.iter().any(|(_, have)| labels.iter().all(|(key, value)| have.get(key) == Some(value)))
    }
}

#[test]
fn the_catalog_checks_patterns_agents_params_and_output_types() {
    let dns = pattern(
        "dns",
        "2.0.0",
        "  zone: {type: hostname, required: true}\n  records: {type: list, default: []}",
        "outputs:\n  address: {type: string, value: \"${host.address}\"}\n  port: {type: port, value: \"53\"}\n  key: {type: string, secret: true, value: \"k\"}",
    );
    let ntp = pattern("ntp", "1.0.0", "  allow: {type: list, default: []}", "outputs:\n  address: {type: ip, value: \"${host.address}\"}");
    let esxi = pattern(
        "esxi",
        "1.0.0",
        "  hostname: {type: hostname, required: true}\n  dns_server: {type: ip, required: true}\n  ntp_server: {type: ip, default: 10.0.0.1}\n  banner: {type: string, default: x}\n  dns_port: {type: boolean, default: false}\n  password: {type: secret}",
        "outputs:\n  address: {type: ip, value: \"${host.address}\"}",
    );
    let vcenter = pattern("vcenter", "1.0.0", "  hosts: {type: list, required: true}\n  sso: {type: string, default: x}", "");
    let catalog = Table {
        patterns: BTreeMap::from([
            ("dns".into(), vec![("1.0.0".parse().expect("v"), dns.clone()), ("2.0.0".parse().expect("v"), dns)]),
            ("ntp".into(), vec![("1.0.0".parse().expect("v"), ntp)]),
            ("esxi".into(), vec![("1.0.0".parse().expect("v"), esxi)]),
            ("vcenter".into(), vec![("1.0.0".parse().expect("v"), vcenter)]),
        ]),
        agents: vec![("pc-1".into(), BTreeMap::from([("role".into(), "services".into())])), ("pc-2".into(), BTreeMap::new())],
    };
    let lab = parse("lab.yaml", GOOD).expect("parses");
    assert_eq!(check(&lab, &catalog), vec![], "the good lab fits its catalog");

    let broken = GOOD
        .replace("version: \"^2\"", "version: \"^3\"")
        .replace("selector: {role: services}", "selector: {role: storage}")
        .replace("    on: pc-2\n    count: 3", "    on: pc-9\n    count: 3")
        .replace("banner: \"lab", "dns_port: ${dns.outputs.port}\n      colour: red\n      banner: \"lab")
        .replace("hosts: ${esxi.outputs.address}", "hosts: ${esxi.outputs.name}\n      sso: ${ntp.outputs.address}");
    let lab = parse("lab.yaml", &broken).unwrap_or_else(|problems| panic!("{problems:#?}"));
    let found: Vec<String> = check(&lab, &catalog).iter().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect();
    assert_eq!(
        found,
        [
            "10:14: component `dns`: no version of `dns` matches",
            "17:15: component `ntp`: no registered agent carries the labels role=storage",
            "21:9: component `esxi`: no agent named `pc-9` is registered (`pmesh agents ls` lists them)",
            "28:7: component `esxi`: esxi@1.0.0 has no param `colour`; its params are banner, dns_port, dns_server, hostname, ntp_server, password",
            "34:14: `esxi.outputs.name`: esxi@1.0.0 has no output `name`; its outputs are address",
        ],
        "{broken}"
    );
    // A secret output feeds only a secret param; a list of a repeated component only a list.
    let secret = GOOD
        .replace("ntp_server: \"${ntp.outputs.address}\"", "ntp_server: \"${dns.outputs.key}\"\n      dns_port: ${dns.outputs.port}")
        .replace("hosts: ${esxi.outputs.address}", "hosts: [\"${dns.outputs.address}\"]\n      sso: ${esxi.outputs.address}");
    let lab = parse("lab.yaml", &secret).unwrap_or_else(|problems| panic!("{problems:#?}"));
    let found: Vec<String> = check(&lab, &catalog).iter().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect();
    assert_eq!(
        found,
        [
            "26:20: `dns.outputs.key` is secret and can only feed a secret param; `ntp_server` is ip",
            "27:17: `dns.outputs.port` gives a value of type port, which does not fit param `dns_port` of esxi@1.0.0 (boolean)",
            "34:12: `esxi.outputs.address` gives a list of ip (one per instance), which does not fit param `sso` of vcenter@1.0.0 (string)",
        ]
    );
    // A secret param cannot be given in a lab file: the master keeps the file.
    let secret_param = GOOD.replace("      hostname: esxi", "      password: hunter2\n      hostname: esxi");
    let lab = parse("lab.yaml", &secret_param).expect("parses");
    let found: Vec<String> = check(&lab, &catalog).iter().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("24:7: component `esxi`: `password` is a secret param, which a lab file cannot give yet"), "{found:?}");
    // A required param without a value.
    let missing = GOOD.replace("      zone: ${values.domain}\n", "");
    let lab = parse("lab.yaml", &missing).expect("parses");
    let found: Vec<String> = check(&lab, &catalog).iter().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect();
    assert_eq!(found, ["8:3: component `dns`: dns@2.0.0 requires param `zone`; give it in `values`"]);
}
