//! The catalog's NTP pattern through the real mesh: a master, an agent and Docker, the pattern
//! pushed and run with `pmesh run`. The pattern names the cturra/ntp image; the agent's image
//! rewrite map points it at the image built from Debian's chrony package. Every check of the
//! service is a real NTP exchange: chrony's one-shot client (`chronyd -Q`, which sets nothing)
//! in another container asks the published port on loopback; the server's own state is read
//! with `chronyc` inside its container.

use std::path::{Path, PathBuf};

use pmesh_tests::docker::{docker, docker_output, Instance, Network};
use pmesh_tests::{free_port, Daemon, Mesh, Run};

const NTP_IMAGE: &str = "pmesh-test/ntp:bookworm-1";
const UPSTREAM_IMAGE: &str = "cturra/ntp:latest";
const AGENT: &str = "pc-1";

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/ntp")
}

/// A master and one agent whose image map points the pattern's image at the Debian one, with
/// the pattern pushed.
struct Lab {
    mesh: Mesh,
    _master: Daemon,
    _agent: Daemon,
}

impl Lab {
    fn start() -> anyhow::Result<Lab> {
        anyhow::ensure!(
            docker_output(&["image", "inspect", NTP_IMAGE]).status.success(),
            "{NTP_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
        );
        let mesh = Mesh::init()?;
        let master = mesh.start_master()?;
        mesh.enrol(AGENT, &[])?;
        std::fs::write(mesh.agent_dir(AGENT).join("agent.toml"), format!("[images.rewrite]\n\"{UPSTREAM_IMAGE}\" = \"{NTP_IMAGE}\"\n"))?;
        let agent = mesh.start_agent(AGENT, &[])?;
        let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
        anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
        Ok(Lab { mesh, _master: master, _agent: agent })
    }

    /// `pmesh run ntp` on the agent with `-p` for each of `values`.
    fn run(&self, instance: &Instance, values: &[String]) -> Run {
        let mut args = vec!["run", "ntp", "--on", AGENT, "--instance", &instance.0];
        for value in values {
            args.extend(["-p", value]);
        }
        self.mesh.pmesh(&args)
    }

    fn runs(&self) -> usize {
        let listed = self.mesh.pmesh(&["runs", "ls", "-o", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&listed.stdout).map(|runs| runs.len()).unwrap_or(usize::MAX)
    }
}

fn server(instance: &Instance) -> String {
    format!("pmesh-{AGENT}-{}-chronyd", instance.0)
}

fn container_id(instance: &Instance) -> String {
    docker(&["inspect", "-f", "{{.Id}}", &server(instance)])
}

/// Asks the NTP server on this machine's loopback `port` with chrony's one-shot client, in its
/// own container on the host network; it exits 0 once it accepted one sample.
fn ask(port: u16) -> Run {
    docker_output(&[
        "run",
        "--rm",
        "--network",
        "host",
        NTP_IMAGE,
        "chronyd",
        "-Q",
        "-t",
        "4",
        &format!("server 127.0.0.1 port {port} iburst maxsamples 1"),
    ])
    .into()
}

fn assert_answers(port: u16) {
    let asked = ask(port);
    assert_eq!(asked.code, 0, "the client got time from port {port}: {}", asked.stderr);
    assert!(asked.stderr.contains("System clock wrong by"), "the client measured an offset: {}", asked.stderr);
}

/// The server's state as `chronyc tracking` prints it: stratum and leap status.
fn tracking(instance: &Instance) -> (u32, String) {
    let text = docker(&["exec", &server(instance), "chronyc", "tracking"]);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, value)| value.trim().to_owned())
    };
    let stratum = field("Stratum").and_then(|value| value.parse().ok()).unwrap_or(0);
    (stratum, field("Leap status").unwrap_or_default())
}

#[test]
fn the_ntp_pattern_serves_time_to_a_client_and_a_rerun_replaces_nothing() -> anyhow::Result<()> {
    let lab = Lab::start()?;
    let lint = lab.mesh.command("pmesh", &["pattern", "lint", pattern().to_str().expect("utf-8")]);
    assert_eq!(lint.code, 0, "the catalog pattern lints clean: {}", lint.stdout);

    let first = Instance::new("ntp");
    let port = free_port();
    let values = vec![format!("listen_port={port}"), "local_stratum=7".to_owned()];
    let run = lab.run(&first, &values);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_answers(port);
    assert_eq!(tracking(&first), (7, "Normal".to_owned()), "no servers: the local clock at local_stratum");
    let id = container_id(&first);
    let capabilities = docker(&["inspect", "-f", "{{.HostConfig.CapAdd}} {{.HostConfig.Privileged}}", &server(&first)]);
    assert!(capabilities == "[] false" || capabilities == "<no value> false", "no capability, not privileged: {capabilities}");

    // The same inputs again: nothing is replaced.
    let again = lab.run(&first, &values);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stdout.lines().any(|line| line.contains("chronyd") && line.contains("unchanged")), "{}", again.stdout);
    assert_eq!(container_id(&first), id, "a run with the same inputs replaced the server");

    bad_values_change_nothing(&lab, &first, port, &id);
    an_instance_follows_its_upstream_server(&lab)?;

    // `allow` is applied: with only a network the client is not in, it gets no answer.
    let narrowed = lab.run(&first, &[values, vec!["allow=10.99.0.0/16".to_owned()]].concat());
    assert_eq!(narrowed.code, 0, "{}\n{}", narrowed.stdout, narrowed.stderr);
    assert_ne!(container_id(&first), id, "changed inputs replace the server");
    let refused = ask(port);
    assert_ne!(refused.code, 0, "a client outside allow got time: {}", refused.stderr);
    assert!(refused.stderr.contains("Timeout reached"), "{}", refused.stderr);
    Ok(())
}

/// Every bad value is named, the run exits 2, and the running server is left as it was.
fn bad_values_change_nothing(lab: &Lab, instance: &Instance, port: u16, id: &str) {
    let runs = lab.runs();
    let bad = ["listen_port=0", "local_stratum=16", "allow=10.0.0.0/33", "servers=[ntp.lab.test, bad name]"].map(str::to_owned);
    let refused = lab.run(instance, &bad);
    assert_eq!(refused.code, 2, "{}\n{}", refused.stdout, refused.stderr);
    for param in ["listen_port", "local_stratum", "allow", "servers"] {
        assert!(refused.stderr.contains(param), "{param} is named: {}", refused.stderr);
    }
    assert!(refused.stderr.contains("bad name"), "the bad server is quoted: {}", refused.stderr);
    assert_eq!(lab.runs(), runs, "no run was recorded");
    assert_eq!(container_id(instance), id, "the server was not replaced");
    assert_answers(port);
}

/// A chrony server on this machine's host network (so that every instance's network reaches
/// it at this machine's addresses), serving its clock at stratum 6 on `port`; removed on drop.
struct Upstream {
    name: String,
    _dir: tempfile::TempDir,
}

impl Upstream {
    fn start(port: u16) -> Upstream {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!("port {port}\ncmdport 0\nlocal stratum 6\nallow 10.0.0.0/8\nallow 172.16.0.0/12\nallow 192.168.0.0/16\n");
        std::fs::write(dir.path().join("chrony.conf"), config).expect("chrony.conf");
        let name = format!("ntp-upstream-{}", std::process::id());
        let mount = format!("{}:/etc/chrony/upstream.conf:ro", dir.path().join("chrony.conf").display());
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "-v",
            &mount,
            NTP_IMAGE,
            "chronyd",
            "-d",
            "-x",
            "-f",
            "/etc/chrony/upstream.conf",
        ]);
        Upstream { name, _dir: dir }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// An instance given an upstream server (and no local fallback) is ready only once it
/// synchronised to it, and serves one stratum below. The upstream listens on the host
/// network; the instance reaches it at the gateway address of a network the test makes.
fn an_instance_follows_its_upstream_server(lab: &Lab) -> anyhow::Result<()> {
    let upstream_port = free_port();
    let _upstream = Upstream::start(upstream_port);
    let network = Network::create(&format!("ntp-upstream-{}", std::process::id()));
    let second = Instance::new("ntp-follow");
    let port = free_port();
    let values = [
        format!("listen_port={port}"),
        format!("servers={}", network.gateway),
        format!("server_port={upstream_port}"),
        "local_fallback=false".to_owned(),
    ];
    let run = lab.run(&second, &values);
    anyhow::ensure!(run.code == 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(tracking(&second), (7, "Normal".to_owned()), "synchronised to the stratum 6 upstream");
    let sources = docker(&["exec", &server(&second), "chronyc", "-n", "sources"]);
    let selected = format!("{}:{upstream_port}", network.gateway);
    assert!(
        sources.lines().any(|line| line.starts_with("^*") && line.contains(&network.gateway)),
        "{selected} is the selected source: {sources}"
    );
    assert_answers(port);
    Ok(())
}
