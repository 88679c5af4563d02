//! The catalog's DNS pattern, applied by the real `pmesh-agent pattern apply` process on the
//! real Docker engine. The pattern names the ISC BIND9 image; the agent's image rewrite map
//! points it at the image built from Debian's bind9 package (no registry is reachable here).
//! Answers are checked with a real `dig`, run in a container on the host network.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmesh_tests::docker::{containers_with_label, docker, is_running, require_tools_image, TOOLS_IMAGE};
use pmesh_tests::{bin, free_port, Run};

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

    fn agent(&self, verb: &str, records: &[&str]) -> Run {
        let values = self.dir.path().join("values.yaml");
        let yaml: String = records.iter().map(|record| format!("\n  - {record}")).collect();
        let yaml = if yaml.is_empty() { " []".to_owned() } else { yaml };
        std::fs::write(&values, format!("records:{yaml}\n")).expect("values");
        let output = Command::new(bin("pmesh-agent"))
            .args(["--data-dir", self.dir.path().to_str().expect("utf-8"), "pattern", verb])
            .arg(Self::pattern())
            .args(["--instance", &self.instance, "--config"])
            .arg(self.dir.path().join("agent.toml"))
            .args(["-p", "zone=lab.test", "-p", &format!("listen_port={}", self.port), "-f"])
            .arg(&values)
            .output()
            .expect("running pmesh-agent");
        output.into()
    }

    fn dig(&self, name: &str) -> String {
        docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            TOOLS_IMAGE,
            "dig",
            "+short",
            "+time=2",
            "+tries=3",
            "@127.0.0.1",
            "-p",
            &self.port.to_string(),
            name,
        ])
    }

    fn named_id(&self) -> String {
        docker(&["inspect", "-f", "{{.Id}}", &format!("pmesh-{}-named", self.instance)])
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

    let first = lab.agent("apply", &["www A 10.0.0.7", "vcsa A 10.0.0.10"]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("check-zone     | OK"), "{}", first.stdout);
    assert_eq!(lab.dig("www.lab.test"), "10.0.0.7");
    assert_eq!(lab.dig("vcsa.lab.test"), "10.0.0.10");
    let named = lab.named_id();

    // Same inputs: nothing is restarted.
    let again = lab.agent("apply", &["www A 10.0.0.7", "vcsa A 10.0.0.10"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("named          unchanged"), "{}", again.stdout);
    assert_eq!(lab.named_id(), named);

    // A changed record: the DNS service is replaced and serves it.
    let changed = lab.agent("apply", &["www A 10.0.0.8", "vcsa A 10.0.0.10"]);
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    assert_ne!(lab.named_id(), named);
    assert_eq!(lab.dig("www.lab.test"), "10.0.0.8");

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
