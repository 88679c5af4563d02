//! The catalog's DNS pattern (`patterns/shared/dns`) against the format: it lints clean, its
//! zone template renders both record forms and the reverse zones, and it refuses values that
//! would break a zone file with the item and the reason. Docker runs it in
//! `tests/tests/dns_pattern.rs`.

use std::path::Path;

use super::tests::read_pattern;
use super::*;

fn dns() -> (BTreeMap<String, Vec<u8>>, Pattern) {
    let files = read_pattern(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/dns"));
    let pattern = parse(&files).expect("the catalog's dns pattern parses");
    (files, pattern)
}

/// The zone data for the values file `values`, or the problems as one text.
fn zones(values: &str) -> Result<String, String> {
    let (files, pattern) = dns();
    let supplied = values_from_yaml("values.yaml", values).map_err(|problems| format!("{problems:?}"))?;
    let params =
        validate_values(&pattern, &supplied).map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let template = std::str::from_utf8(&files["templates/zones.j2"]).expect("utf-8");
    render(template, &params).map_err(|err| err.to_string())
}

#[test]
fn the_dns_pattern_lints_clean() {
    let (files, _) = dns();
    assert_eq!(lint(&files).iter().map(ToString::to_string).collect::<Vec<_>>(), Vec::<String>::new());
}

#[test]
fn zones_render_records_in_both_forms_and_reverse_zones() {
    let values = r#"zone: lab.test
zones: [corp.test]
reverse: [10.0.0.0/24, 172.16.0.0/16]
records:
  - vcsa 300 IN A 10.0.0.10
  - {name: www, type: A, value: 10.0.0.7}
  - {name: esx01.corp.test., type: A, value: 10.0.0.11}
  - {name: dc, type: A, value: 172.16.5.4, zone: corp.test}
  - {name: vc, type: CNAME, value: vcsa}
  - {name: _ldap._tcp, type: SRV, value: "0 100 389 dc.corp.test.", ttl: 300}
  - {name: "@", type: TXT, value: "managed by pmesh"}
  - {name: "*.apps", type: A, value: 10.0.0.20}
"#;
    let expected = "\
; Rendered by pmesh from the dns pattern; edits are replaced on the next apply.
;; pmesh-zone lab.test
$ORIGIN lab.test.
$TTL 3600
@ IN SOA ns1.lab.test. hostmaster.lab.test. ( @SERIAL@ 3600 600 86400 3600 )
@ IN NS ns1.lab.test.
ns1 IN A 127.0.0.1
vcsa.lab.test. 300 IN A 10.0.0.10
www.lab.test. IN A 10.0.0.7
vc.lab.test. IN CNAME vcsa
_ldap._tcp.lab.test. 300 IN SRV 0 100 389 dc.corp.test.
lab.test. IN TXT \"managed by pmesh\"
*.apps.lab.test. IN A 10.0.0.20
;; pmesh-zone corp.test
$ORIGIN corp.test.
$TTL 3600
@ IN SOA ns1.lab.test. hostmaster.lab.test. ( @SERIAL@ 3600 600 86400 3600 )
@ IN NS ns1.lab.test.
esx01.corp.test. IN A 10.0.0.11
dc.corp.test. IN A 172.16.5.4
;; pmesh-zone 0.0.10.in-addr.arpa
$ORIGIN 0.0.10.in-addr.arpa.
$TTL 3600
@ IN SOA ns1.lab.test. hostmaster.lab.test. ( @SERIAL@ 3600 600 86400 3600 )
@ IN NS ns1.lab.test.
10 IN PTR vcsa.lab.test.
7 IN PTR www.lab.test.
11 IN PTR esx01.corp.test.
;; pmesh-zone 16.172.in-addr.arpa
$ORIGIN 16.172.in-addr.arpa.
$TTL 3600
@ IN SOA ns1.lab.test. hostmaster.lab.test. ( @SERIAL@ 3600 600 86400 3600 )
@ IN NS ns1.lab.test.
4.5 IN PTR dc.corp.test.
";
    assert_eq!(zones(values).as_deref(), Ok(expected));
}

#[test]
fn prefixes_between_boundaries_split_into_zones() {
    let rendered = zones("zone: lab.test\nreverse: [10.0.4.0/22, 172.16.0.0/12]\nrecords: [a A 10.0.6.1]\n").expect("renders");
    let names: Vec<&str> = rendered.lines().filter_map(|line| line.strip_prefix(";; pmesh-zone ")).collect();
    let sixteen: Vec<String> = (16..32).map(|second| format!("{second}.172.in-addr.arpa")).collect();
    let mut expected = vec!["lab.test", "4.0.10.in-addr.arpa", "5.0.10.in-addr.arpa", "6.0.10.in-addr.arpa", "7.0.10.in-addr.arpa"];
    expected.extend(sixteen.iter().map(String::as_str));
    assert_eq!(names, expected);
    assert!(rendered.contains("$ORIGIN 6.0.10.in-addr.arpa.\n$TTL 3600\n@ IN SOA ns1.lab.test. hostmaster.lab.test. ( @SERIAL@ 3600 600 86400 3600 )\n@ IN NS ns1.lab.test.\n1 IN PTR a.lab.test.\n"), "{rendered}");
}

#[test]
fn records_a_zone_file_cannot_take_are_refused_with_the_item_and_why() {
    let cases = [
        (
            "records: [{name: www, type: A, value: \"10.0.0.8; x\"}]",
            "param records: item 1: field `value`: `10.0.0.8; x` does not match the pattern",
        ),
        (
            "records: [{name: \"bad name\", type: A, value: 10.0.0.8}]",
            "param records: item 1: field `name`: `bad name` does not match the pattern",
        ),
        ("records: [{name: www, type: A, value: www2}]", "records item 1: a A record's value must be an IPv4 address, found `www2`"),
        ("records: [a A 10.0.0.1, www CNAME -bad-]", "records item 2: a CNAME record's value must be a DNS name, found `-bad-`"),
        (
            "records: [{name: s, type: SRV, value: \"0 100 389\"}]",
            "records item 1: a SRV record's value must be PRIORITY WEIGHT PORT TARGET",
        ),
        ("records: [{name: m, type: MX, value: \"70000 mail\"}]", "records item 1: a MX record's value must be PREFERENCE NAME"),
        ("records: [{name: v6, type: AAAA, value: 10.0.0.1}]", "records item 1: a AAAA record's value must be an IPv6 address"),
        (
            "records: [{name: x.other.test., type: A, value: 10.0.0.1}]",
            "records item 1: `x.other.test.` is under none of the zones lab.test",
        ),
        (
            "records: [{name: x.other.test., type: A, value: 10.0.0.1, zone: lab.test}]",
            "records item 1: `x.other.test.` is not under its zone lab.test",
        ),
        (
            "records: [{name: www, type: A, value: 10.0.0.1, zone: nope.test}]",
            "records item 1: zone `nope.test` is not one of `zone` and `zones`",
        ),
        (
            "records: [www A 10.0.0.1, www CNAME vcsa]",
            "records item 2: `www.lab.test` has a CNAME, so it can have no other record (records item 1 is A)",
        ),
        ("reverse: [10.0.0.0/28]", "reverse item 1: `10.0.0.0/28`: reverse zones are made for IPv4 networks from /8 to /24"),
        ("reverse: [10.0.0.0/24]\nzones: [0.0.10.in-addr.arpa]", "reverse item 1: `0.0.10.in-addr.arpa` is also a forward zone"),
        ("zones: [LAB.test.]", "a zone is named twice in `zone` and `zones`"),
    ];
    for (values, expected) in cases {
        let got = zones(&format!("zone: lab.test\n{values}\n")).expect_err(values);
        assert!(got.contains(expected), "{values}: expected {expected:?} in {got:?}");
    }
    let two = zones("zone: lab.test\nrecords: [{name: a, type: A, value: x}, {name: b, type: A, value: y}]\n").expect_err("two");
    assert!(two.contains("found `x`; records item 2: a A record's value"), "every problem at once: {two}");
}
