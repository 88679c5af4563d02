//! Labs end to end through a real master, two real agents and the real Docker engine, with the
//! catalog's shared DNS and NTP patterns (their images mapped to the ones built from Debian
//! packages, as the patterns' own tests do):
//!
//! - `lab lint` asks the master: an unknown agent and an unregistered version are refused at
//!   their line and column with exit 2, nothing recorded;
//! - `lab plan` plans the NTP component and says the DNS one waits for its outputs;
//! - a bad value fails its component, its dependent is blocked and not started; fixing the
//!   file and `lab up` again continues: NTP on pc-2, then DNS on pc-1 (chosen by selector) with
//!   a record made from NTP's address output, which `dig` resolves;
//! - `lab up` again changes nothing and says so per component; a changed DNS record re-runs
//!   only the DNS component;
//! - the master is SIGKILLed while the lab comes up and restarted: the lab completes and no
//!   component ran twice (runs counted per instance);
//! - `lab down` leaves nothing carrying either instance's labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pmesh_tests::docker::{docker_output, instance_objects, require_tools_image, TOOLS_IMAGE};
use pmesh_tests::{free_port, wait_until, Daemon, Mesh, Run};
use serde_json::Value;

const NTP_IMAGE: &str = "pmesh-test/ntp:bookworm-1";

fn pattern(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared").join(name)
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", run.stdout, run.stderr))
}

struct Setup {
    mesh: Mesh,
    master: Option<Daemon>,
    _agents: Vec<Daemon>,
    lab: String,
    dns_port: u16,
    ntp_port: u16,
}

impl Setup {
    fn start() -> anyhow::Result<Setup> {
        require_tools_image();
        anyhow::ensure!(
            docker_output(&["image", "inspect", NTP_IMAGE]).status.success(),
            "{NTP_IMAGE} is missing: build it with tests/images/build.sh"
        );
        let mesh = Mesh::init()?;
        let master = mesh.start_master()?;
        let rewrite = format!(
            "[images.rewrite]\n\"internetsystemsconsortium/bind9:9.18\" = \"{TOOLS_IMAGE}\"\n\"cturra/ntp:latest\" = \"{NTP_IMAGE}\"\n"
        );
        let mut agents = Vec::new();
        for (name, label) in [("pc-1", "role=services"), ("pc-2", "role=time")] {
            mesh.enrol(name, &["--label", label])?;
            std::fs::write(mesh.agent_dir(name).join("agent.toml"), &rewrite)?;
            agents.push(mesh.start_agent(name, &[])?);
        }
        for name in ["dns", "ntp", "nfs"] {
            let push = mesh.pmesh(&["pattern", "push", pattern(name).to_str().expect("utf-8")]);
            anyhow::ensure!(push.code == 0, "push {name} failed: {}", push.stderr);
        }
        let lab = format!("lab{}", std::process::id() % 100_000);
        Ok(Setup { mesh, master: Some(master), _agents: agents, lab, dns_port: free_port(), ntp_port: free_port() })
    }

    /// The lab file: NTP on pc-2, DNS on the agent with role=services, serving a record made of
    /// NTP's address output.
    fn file(&self, stratum: &str, extra_record: &str) -> String {
        format!(
            r#"apiVersion: pmesh/v1
kind: Lab
metadata:
  name: {lab}
values:
  domain: lab.test
components:
  ntp:
    pattern: ntp
    version: "^1.1"
    on: pc-2
    values:
      listen_port: {ntp_port}
      local_stratum: {stratum}
  dns:
    pattern: dns
    version: ">=2.0.0, <3"
    selector: {{role: services}}
    values:
      zone: ${{values.domain}}
      listen_port: {dns_port}
      records: ["ntp A ${{ntp.outputs.address}}"{extra_record}]
"#,
            lab = self.lab,
            ntp_port = self.ntp_port,
            dns_port = self.dns_port,
        )
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.mesh.dir.path().join(name);
        std::fs::write(&path, text).expect("lab file");
        path.display().to_string()
    }

    fn status(&self) -> Value {
        json_of(&self.mesh.pmesh(&["lab", "status", &self.lab, "-o", "json"]))
    }

    fn component<'v>(status: &'v Value, name: &str) -> &'v Value {
        status["components"]
            .as_array()
            .and_then(|items| items.iter().find(|item| item["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    }

    /// Runs started per instance, from the master's runs.
    fn runs_per_instance(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for run in json_of(&self.mesh.pmesh(&["runs", "ls", "-o", "json"])).as_array().cloned().unwrap_or_default() {
            *counts.entry(run["instance"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
        }
        counts
    }

    fn dig(&self, name: &str) -> String {
        let port = self.dns_port.to_string();
        let out = docker_output(&[
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
            &port,
            name,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn instances(&self) -> [String; 2] {
        [format!("{}-ntp", self.lab), format!("{}-dns", self.lab)]
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for instance in self.instances() {
            pmesh_tests::docker::remove_instance(&instance);
        }
    }
}

#[test]
fn a_lab_comes_up_across_two_agents_converges_resumes_and_goes_down() -> anyhow::Result<()> {
    let mut setup = Setup::start()?;
    let [ntp_instance, dns_instance] = setup.instances();

    // Lint asks the master: an unknown agent and an unregistered version, at their places.
    let bad = setup.file("10", "").replace("on: pc-2", "on: pc-9").replace("\">=2.0.0, <3\"", "\"^3\"");
    let bad_path = setup.write("bad.yaml", &bad);
    let linted = setup.mesh.pmesh(&["lab", "lint", &bad_path]);
    assert_eq!(linted.code, 2, "{}\n{}", linted.stdout, linted.stderr);
    assert!(linted.stdout.contains(&format!("{bad_path}:11:9: component `ntp`: no agent named `pc-9` is registered")), "{}", linted.stdout);
    assert!(
        linted.stdout.contains(&format!("{bad_path}:17:14: component `dns`: no registered version of `dns` matches `^3`")),
        "{}",
        linted.stdout
    );
    // The reference lab fits the registry (NTP, NFS and DNS on the role=services agent).
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../labs/shared-services.yaml");
    let linted = setup.mesh.pmesh(&["lab", "lint", reference.to_str().expect("utf-8")]);
    assert_eq!(linted.code, 0, "{}\n{}", linted.stdout, linted.stderr);
    assert!(!linted.stderr.contains("not checked"), "checked against the master: {}", linted.stderr);
    let refused = setup.mesh.pmesh(&["lab", "up", &bad_path]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(setup.mesh.pmesh(&["lab", "ls", "-o", "json"]).stdout.trim(), "[]", "nothing recorded");

    // A bad value: NTP fails to start, DNS (which needs its output) is blocked; nothing runs.
    let broken_path = setup.write("broken.yaml", &setup.file("99", ""));
    let planned = setup.mesh.pmesh(&["lab", "plan", &setup.write("plan.yaml", &setup.file("10", ""))]);
    assert!(planned.stdout.contains("values known after ntp succeed(s)"), "{}\n{}", planned.stdout, planned.stderr);
    assert!(planned.stdout.contains("chronyd"), "NTP's plan names its step: {}", planned.stdout);
    let failed = setup.mesh.pmesh(&["lab", "up", &broken_path]);
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    let status = setup.status();
    assert_eq!(Setup::component(&status, "ntp")["state"], "failed", "{status}");
    assert!(Setup::component(&status, "ntp")["error"].as_str().unwrap_or_default().contains("local_stratum"), "{status}");
    assert_eq!(Setup::component(&status, "dns")["state"], "blocked", "{status}");
    assert_eq!(setup.runs_per_instance().get(&dns_instance), None, "the blocked component never started");

    // Fixed: lab up continues from there.
    let good_path = setup.write("lab.yaml", &setup.file("10", ""));
    let up = setup.mesh.pmesh(&["lab", "up", &good_path]);
    assert_eq!(up.code, 0, "{}\n{}", up.stdout, up.stderr);
    let status = setup.status();
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(Setup::component(&status, "dns")["agent"], "pc-1", "the selector chose pc-1");
    assert_eq!(Setup::component(&status, "ntp")["agent"], "pc-2");
    assert_eq!(setup.dig("ntp.lab.test"), "127.0.0.1", "DNS serves the record made from NTP's address output");
    let counts = setup.runs_per_instance();
    assert_eq!((counts.get(&ntp_instance), counts.get(&dns_instance)), (Some(&1), Some(&1)), "{counts:?}");

    let logs = setup.mesh.pmesh(&["lab", "logs", &setup.lab, "--component", "dns"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains(&format!("== dns ({dns_instance}, run lab-{}-dns-0-1)", setup.lab)), "{}", logs.stdout);
    assert!(!logs.stdout.contains("== ntp"), "{}", logs.stdout);

    // Again: nothing changes, and each component says so.
    let again = setup.mesh.pmesh(&["lab", "up", &good_path]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(again.stdout.matches("unchanged").count(), 2, "{}", again.stdout);
    assert_eq!(setup.runs_per_instance(), counts, "no run started");

    // A changed record re-runs DNS only.
    let changed_path = setup.write("lab.yaml", &setup.file("10", ", \"www A 10.0.0.9\""));
    let changed = setup.mesh.pmesh(&["lab", "up", &changed_path]);
    assert_eq!(changed.code, 0, "{}\n{}", changed.stdout, changed.stderr);
    let status = setup.status();
    assert_eq!(Setup::component(&status, "ntp")["unchanged"], true, "{status}");
    assert_eq!(Setup::component(&status, "dns")["unchanged"], false, "{status}");
    let counts = setup.runs_per_instance();
    assert_eq!((counts.get(&ntp_instance), counts.get(&dns_instance)), (Some(&1), Some(&2)), "{counts:?}");
    assert_eq!(setup.dig("www.lab.test"), "10.0.0.9");

    // Down, then up detached with the master killed while it comes up: it resumes after the
    // restart and nothing runs twice.
    let down = setup.mesh.pmesh(&["lab", "down", &setup.lab]);
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    for instance in [&ntp_instance, &dns_instance] {
        assert_eq!(instance_objects(instance), Vec::<String>::new(), "{instance} is gone after lab down");
    }
    assert_eq!(setup.status()["state"], "down");
    let detached = setup.mesh.pmesh(&["lab", "up", &changed_path, "--detach"]);
    assert_eq!(detached.code, 0, "{}\n{}", detached.stdout, detached.stderr);
    wait_until("the NTP component to start", Duration::from_secs(30), || Setup::component(&setup.status(), "ntp")["state"] != "pending")?;
    if let Some(mut master) = setup.master.take() {
        master.kill();
    }
    setup.master = Some(setup.mesh.start_master()?);
    wait_until("the lab to finish after the restart", Duration::from_secs(120), || setup.status()["state"] != "active")?;
    let status = setup.status();
    assert_eq!(status["state"], "done", "{status}");
    let after = setup.runs_per_instance();
    assert_eq!((after.get(&ntp_instance), after.get(&dns_instance)), (Some(&2), Some(&3)), "one new run each: {after:?}");
    assert_eq!(setup.dig("ntp.lab.test"), "127.0.0.1");

    // A component dropped from the file is kept for `lab down`, which still destroys it.
    let without_ntp = setup.file("10", "").replace("\"ntp A ${ntp.outputs.address}\"", "\"ntp A 10.0.0.3\"");
    let without_ntp =
        without_ntp[..without_ntp.find("  ntp:").expect("ntp")].to_owned() + &without_ntp[without_ntp.find("  dns:").expect("dns")..];
    let dropped = setup.mesh.pmesh(&["lab", "up", &setup.write("dropped.yaml", &without_ntp)]);
    assert_eq!(dropped.code, 0, "{}\n{}", dropped.stdout, dropped.stderr);
    let status = setup.status();
    assert!(Setup::component(&status, "ntp")["error"].as_str().unwrap_or_default().contains("no longer in the lab file"), "{status}");
    assert_eq!(setup.dig("ntp.lab.test"), "10.0.0.3");
    assert!(!instance_objects(&ntp_instance).is_empty(), "the dropped component's instance still stands");

    let down = setup.mesh.pmesh(&["lab", "down", &setup.lab]);
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    for instance in [&ntp_instance, &dns_instance] {
        assert_eq!(instance_objects(instance), Vec::<String>::new(), "{instance} is gone after lab down");
    }
    let unknown = setup.mesh.pmesh(&["lab", "status", "no-such-lab"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    Ok(())
}
