//! The catalog's DNS pattern, applied by the real `pmesh-agent pattern apply` process on the
//! real Docker engine. The pattern names the ISC BIND9 image; the agent's image rewrite map
//! points it at the image built from Debian's bind9 package (no registry is reachable here).
//! Answers are checked with a real `dig`, run in a container on the host network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pmesh_tests::docker::{containers_with_label, docker, is_running, require_tools_image, TOOLS_IMAGE};
use pmesh_tests::{bin, free_port, wait_until, Run};

struct Lab {
    dir: tempfile::TempDir,
    instance: String,
    port: u16,
}

impl Lab {
    fn new() -> Lab {
        require_tools_image();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!("[images.rewrite]\n\"internetsystemsconsortium/bind9:9.18\" = \"{TOOLS_IMAGE}\"\n");
        std::fs::write(dir.path().join("agent.toml"), config).expect("agent.toml");
        // Unique per lab: this binary's tests run at once, and a lab's drop destroys its
        // instance (two labs sharing a name removed each other's network mid-run).
        static NEXT_LAB: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let instance = format!("dns-{}-{}", std::process::id(), NEXT_LAB.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        Lab { dir, instance, port: free_port() }
    }

    fn pattern() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/dns")
    }

    /// `pmesh-agent pattern VERB` with `zone=lab.test`, the lab's port and the values file
    /// `values` (YAML).
    fn agent_with(&self, verb: &str, values: &str) -> Run {
        let path = self.dir.path().join("values.yaml");
        std::fs::write(&path, values).expect("values");
        let output = Command::new(bin("pmesh-agent"))
            .args(["--data-dir", self.dir.path().to_str().expect("utf-8"), "pattern", verb])
            .arg(Self::pattern())
            .args(["--instance", &self.instance, "--config"])
            .arg(self.dir.path().join("agent.toml"))
            .args(["-p", "zone=lab.test", "-p", &format!("listen_port={}", self.port), "-f"])
            .arg(&path)
            .output()
            .expect("running pmesh-agent");
        output.into()
    }

    /// The 1.0.0 way: records as strings.
    fn agent(&self, verb: &str, records: &[&str]) -> Run {
        let yaml: String = records.iter().map(|record| format!("\n  - {record}")).collect();
        let yaml = if yaml.is_empty() { " []".to_owned() } else { yaml };
        self.agent_with(verb, &format!("records:{yaml}\n"))
    }

    fn dig(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut command = vec!["run", "--rm", "--network", "host", TOOLS_IMAGE, "dig", "+short", "+time=2", "+tries=3", "@127.0.0.1", "-p"];
        command.push(&port);
        command.extend_from_slice(args);
        docker(&command)
    }

    fn serial(&self, zone: &str) -> u64 {
        let soa = self.dig(&[zone, "SOA"]);
        soa.split_whitespace().nth(2).and_then(|serial| serial.parse().ok()).unwrap_or_else(|| panic!("a SOA for {zone}: {soa:?}"))
    }

    fn named_id(&self) -> String {
        docker(&["inspect", "-f", "{{.Id}}", &format!("pmesh-{}-named", self.instance)])
    }

    /// The zone data pmesh rendered for the instance.
    fn rendered(&self) -> String {
        let path = self.dir.path().join("instances").join(&self.instance).join("files/bind/zones.txt");
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.agent("destroy", &[]);
        pmesh_tests::docker::remove_instance(&self.instance);
    }
}

#[test]
fn the_dns_pattern_serves_converges_and_is_destroyed_cleanly() {
    let lab = Lab::new();
    let lint = Command::new(bin("pmesh")).args(["pattern", "lint"]).arg(Lab::pattern()).output().expect("pmesh");
    assert!(lint.status.success(), "the catalog pattern lints clean: {}", String::from_utf8_lossy(&lint.stdout));

    // 1.0.0's string records still work.
    let first = lab.agent("apply", &["www A 10.0.0.7", "vcsa 300 IN A 10.0.0.10"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("check-zone     | OK"), "{}", first.stdout);
    assert_eq!(lab.dig(&["www.lab.test"]), "10.0.0.7");
    assert_eq!(lab.dig(&["vcsa.lab.test"]), "10.0.0.10");
    let named = lab.named_id();

    // Same inputs: nothing is restarted or reloaded.
    let again = lab.agent("apply", &["www A 10.0.0.7", "vcsa 300 IN A 10.0.0.10"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("named          unchanged"), "{}", again.stdout);
    assert_eq!(lab.named_id(), named);

    // A changed record: the same container reloads and serves it.
    let changed = lab.agent("apply", &["www A 10.0.0.8", "vcsa 300 IN A 10.0.0.10"]);
    assert_eq!(changed.code, 0, "{}\n{}", changed.stdout, changed.stderr);
    assert!(changed.stdout.contains("reloading in place"), "{}", changed.stdout);
    assert_eq!(lab.named_id(), named);
    wait_until("the changed record is served", Duration::from_secs(20), || lab.dig(&["www.lab.test"]) == "10.0.0.8").expect("reloaded");

    // Destroy removes exactly the instance's objects and leaves a bystander running.
    let bystander = format!("bystander-{}", lab.instance);
    docker(&["run", "-d", "--rm", "--name", &bystander, TOOLS_IMAGE, "sleep", "120"]);
    let destroyed = lab.agent("destroy", &[]);
    assert_eq!(destroyed.code, 0, "{}", destroyed.stderr);
    assert!(destroyed.stdout.contains(&format!("pmesh-{}-named", lab.instance)), "{}", destroyed.stdout);
    assert!(containers_with_label("io.pmesh.instance", &lab.instance).is_empty());
    let volumes = docker(&["volume", "ls", "-q", "--filter", &format!("label=io.pmesh.instance={}", lab.instance)]);
    assert!(volumes.is_empty(), "volumes removed: {volumes}");
    assert!(is_running(&bystander));
    docker(&["rm", "-f", &bystander]);
}

/// Two forward zones, two reverse networks, records in both forms.
fn lab_values(www: &str) -> String {
    format!(
        r#"zones: [corp.test]
reverse: [10.0.0.0/24, 172.16.0.0/16]
records:
  - {{name: www, type: A, value: "{www}"}}
  - vcsa A 10.0.0.10
  - {{name: esx01.corp.test., type: A, value: 10.0.0.11}}
  - {{name: dc, type: A, value: 172.16.5.4, zone: corp.test}}
  - {{name: vc, type: CNAME, value: vcsa}}
  - {{name: _ldap._tcp, type: SRV, value: "0 100 389 dc.corp.test.", ttl: 300}}
  - {{name: "@", type: TXT, value: "v=lab managed by pmesh"}}
  - {{name: v6, type: AAAA, value: "fd00::6"}}
"#
    )
}

/// Every A record resolves forward and backward; SRV, CNAME, TXT and AAAA answer; a change of
/// records reloads the same container while a query loop sees no failure, and raises the
/// serial; the same inputs again change nothing.
#[test]
fn records_resolve_both_ways_and_a_change_reloads_without_dropping_queries() {
    let lab = Lab::new();
    let first = lab.agent_with("apply", &lab_values("10.0.0.7"));
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let forward =
        [("www.lab.test", "10.0.0.7"), ("vcsa.lab.test", "10.0.0.10"), ("esx01.corp.test", "10.0.0.11"), ("dc.corp.test", "172.16.5.4")];
    for (name, address) in forward {
        assert_eq!(lab.dig(&[name, "A"]), address, "{name}");
        assert_eq!(lab.dig(&["-x", address]), format!("{name}."), "{address} resolves back");
    }
    assert_eq!(lab.dig(&["_ldap._tcp.lab.test", "SRV"]), "0 100 389 dc.corp.test.");
    assert_eq!(lab.dig(&["vc.lab.test", "CNAME"]), "vcsa.lab.test.");
    assert_eq!(lab.dig(&["vc.lab.test", "A"]), "vcsa.lab.test.\n10.0.0.10");
    assert_eq!(lab.dig(&["lab.test", "TXT"]), "\"v=lab managed by pmesh\"");
    assert_eq!(lab.dig(&["v6.lab.test", "AAAA"]), "fd00::6");
    let named = lab.named_id();
    let serial = lab.serial("lab.test");
    let (corp, reverse) = (lab.serial("corp.test"), lab.serial("0.0.10.in-addr.arpa"));

    // A query loop runs through the change: every answer is the old or the new address.
    let port = lab.port.to_string();
    let script = "end=$(($(date +%s) + 10)); n=0; bad=0; while [ $(date +%s) -lt $end ]; do \
                  got=$(dig +short +time=1 +tries=1 @127.0.0.1 -p $0 www.lab.test A); \
                  case \"$got\" in 10.0.0.7|10.0.0.8) ;; *) bad=$((bad + 1)); echo \"failed: $got\" >&2;; esac; n=$((n + 1)); done; echo $n $bad";
    let queries = Command::new("docker")
        .args(["run", "--rm", "--network", "host", TOOLS_IMAGE, "sh", "-c", script, &port])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker run");
    wait_until("the query loop answers", Duration::from_secs(10), || lab.dig(&["www.lab.test"]) == "10.0.0.7").expect("serving");
    let changed = lab.agent_with("apply", &lab_values("10.0.0.8"));
    assert_eq!(changed.code, 0, "{}\n{}", changed.stdout, changed.stderr);
    assert!(changed.stdout.contains("reloading in place"), "{}", changed.stdout);
    let loop_output = queries.wait_with_output().expect("the query loop ends");
    let counted = String::from_utf8_lossy(&loop_output.stdout).trim().to_owned();
    let (total, failed) = counted.split_once(' ').unwrap_or_else(|| panic!("the loop's count: {counted:?}"));
    let total: u32 = total.parse().expect("a count");
    assert_eq!(failed, "0", "no query failed during the reload ({total} queries): {}", String::from_utf8_lossy(&loop_output.stderr));
    assert!(total > 20, "the loop queried throughout: {total}");
    eprintln!("queries during the change: {total}, failed: {failed}");

    assert_eq!(lab.named_id(), named, "the container was not replaced");
    assert_eq!(lab.dig(&["www.lab.test"]), "10.0.0.8");
    assert_eq!(lab.dig(&["-x", "10.0.0.8"]), "www.lab.test.");
    assert_eq!(lab.dig(&["-x", "10.0.0.7"]), "", "the old address no longer resolves back");
    assert!(lab.serial("lab.test") > serial, "the changed zone's serial rose");
    assert!(lab.serial("0.0.10.in-addr.arpa") > reverse, "so did its reverse zone's");
    assert_eq!(lab.serial("corp.test"), corp, "an unchanged zone keeps its serial");

    // The same inputs again: no replacement, no reload, the same serial.
    let serial = lab.serial("lab.test");
    let again = lab.agent_with("apply", &lab_values("10.0.0.8"));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("named          unchanged"), "{}", again.stdout);
    assert_eq!(lab.named_id(), named);
    assert_eq!(lab.serial("lab.test"), serial);
}

/// Values that would break a zone file are refused with exit 2, naming the record and why,
/// before anything changes: the running server, its files and its serial stay as they were.
#[test]
fn invalid_records_exit_2_and_change_nothing() {
    let lab = Lab::new();
    let first = lab.agent_with("apply", "records: [www A 10.0.0.7]\nreverse: [10.0.0.0/24]\n");
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let (named, serial, rendered) = (lab.named_id(), lab.serial("lab.test"), lab.rendered());
    let cases = [
        ("records: [{name: www, type: A, value: \"10.0.0.8; x\"}]\n", "param records: item 1: field `value`: `10.0.0.8; x` does not match"),
        (
            "records: [\"www A 10.0.0.8\\n$INCLUDE /etc/shadow\"]\n",
            "param records: item 1: `www A 10.0.0.8\\n$INCLUDE /etc/shadow` holds a line break",
        ),
        ("records: [{name: \"bad name\", type: A, value: 10.0.0.8}]\n", "param records: item 1: field `name`: `bad name` does not match"),
        ("records: [{name: www, type: NS, value: x}]\n", "param records: item 1: field `type`:"),
        ("records: [{name: www, type: A, value: www2}]\n", "records item 1: a A record's value must be an IPv4 address, found `www2`"),
        ("records: [www CNAME -bad-]\n", "records item 1: a CNAME record's value must be a DNS name, found `-bad-`"),
        (
            "records: [{name: srv, type: SRV, value: \"0 100 389\"}]\n",
            "records item 1: a SRV record's value must be PRIORITY WEIGHT PORT TARGET",
        ),
        (
            "records: [{name: x.other.test., type: A, value: 10.0.0.1}]\n",
            "records item 1: `x.other.test.` is under none of the zones lab.test",
        ),
        (
            "records: [{name: www, type: A, value: 10.0.0.1, zone: nope.test}]\n",
            "records item 1: zone `nope.test` is not one of `zone` and `zones`",
        ),
        ("records: [www A 10.0.0.1, www CNAME vcsa]\n", "records item 2: `www.lab.test` has a CNAME, so it can have no other record"),
        ("reverse: [10.0.0.0/28]\n", "reverse item 1: `10.0.0.0/28`: reverse zones are made for IPv4 networks from /8 to /24"),
        ("zones: [lab.test]\n", "a zone is named twice"),
    ];
    for (values, expected) in cases {
        let run = lab.agent_with("apply", values);
        assert_eq!(run.code, 2, "{values}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{values}: expected {expected:?} in:\n{}", run.stderr);
    }
    assert_eq!(lab.named_id(), named);
    assert_eq!(lab.rendered(), rendered, "no file was rewritten");
    assert_eq!(lab.serial("lab.test"), serial);
    assert_eq!(lab.dig(&["www.lab.test"]), "10.0.0.7");
}

#[test]
fn invalid_values_change_nothing_and_exit_2() {
    let lab = Lab::new();
    let output = Command::new(bin("pmesh-agent"))
        .args(["--data-dir", lab.dir.path().to_str().expect("utf-8"), "pattern", "apply"])
        .arg(Lab::pattern())
        .args(["--instance", &lab.instance, "-p", "listen_port=99999", "-p", "ttl=5"])
        .output()
        .expect("running pmesh-agent");
    let run: Run = output.into();
    assert_eq!(run.code, 2, "{}", run.stderr);
    for problem in ["zone", "listen_port", "ttl"] {
        assert!(run.stderr.contains(&format!("param {problem}")), "every problem is listed: {}", run.stderr);
    }
    assert!(containers_with_label("io.pmesh.instance", &lab.instance).is_empty());
    assert!(!lab.dir.path().join("instances").exists(), "no files were written");
}
