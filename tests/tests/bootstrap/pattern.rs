//! A pattern (the catalog's DNS one) run through a bootstrapped agent, and `--upgrade` under
//! it, on a host that shares this machine's network.

use std::io::Write;
use std::path::{Path, PathBuf};

use pmesh_tests::docker::{docker, require_tools_image, Host, Instance, TOOLS_IMAGE};
use pmesh_tests::{bin, free_port};

use crate::lab::{agent_pid, assert_success, sha256_of, unique, Lab};

/// The catalog's DNS pattern.
fn dns_pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/dns")
}

/// Id, running state and start time of every container of `instance`, sorted.
fn instance_containers(instance: &str) -> Vec<String> {
    let ids = docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=io.pmesh.instance={instance}")]);
    let mut states: Vec<String> = ids
        .split_whitespace()
        .map(|id| docker(&["inspect", "-f", "{{.Id}} running={{.State.Running}} started={{.State.StartedAt}}", id]))
        .collect();
    states.sort();
    states
}

/// `dig +short NAME` against 127.0.0.1:`port`, from a container on the host network.
fn dig(port: u16, name: &str) -> String {
    let port = port.to_string();
    docker(&["run", "--rm", "--network", "host", TOOLS_IMAGE, "dig", "+short", "+time=2", "+tries=3", "@127.0.0.1", "-p", &port, name])
}

/// The sha256 of the binary the agent process in `host` runs, read through this machine's
/// /proc (inside the container, /proc/PID/exe of another user's process is not readable).
fn running_agent_sha256(host: &Host) -> String {
    let processes = docker(&["top", &host.name, "-eo", "pid,args"]);
    let pid = processes.lines().find(|line| line.contains("pmesh-agent run")).and_then(|line| line.split_whitespace().next());
    let pid = pid.unwrap_or_else(|| panic!("no pmesh-agent process in {}:\n{processes}", host.name));
    sha256_of(&Path::new("/proc").join(pid).join("exe"))
}

/// A pattern run through a bootstrapped agent, and `--upgrade` under it.
///
/// The agent runs under systemd in the host container and drives this machine's Docker engine
/// through the bind-mounted socket, so what the agent hands the engine must mean the same to
/// both, as it does on a real VM:
/// - **paths**: the agent asks the engine to bind-mount the files it rendered under its data
///   directory. A directory of this machine is bind-mounted into the container at the same
///   absolute path (and at /var/lib/pmesh-agent, where bootstrap enrols), and a drop-in,
///   written before bootstrap and marked as the test's, runs the unit with that path as
///   `--data-dir`;
/// - **the network**: the pattern's `ready` probe asks 127.0.0.1:PORT, from the agent, for the
///   port the engine publishes. The container shares this machine's network namespace
///   (`--network host`), with sshd on a free loopback port, the agent on another and the master
///   on 127.0.0.1.
///
/// The image rewrite to the locally built BIND image is in an agent.toml written before
/// bootstrap, which keeps an existing config as it is.
#[test]
fn a_dns_pattern_runs_on_a_bootstrapped_agent_and_its_containers_survive_an_upgrade() {
    require_tools_image();
    let shared = tempfile::Builder::new().prefix("pmesh-bs-data-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let shared_dir = shared.path().to_str().expect("utf-8").to_owned();
    let (ssh_port, agent_port, dns_port) = (free_port(), free_port(), free_port());
    let lab = Lab::on_host_network(|| {
        let (same_path, state_dir) = (format!("{shared_dir}:{shared_dir}"), format!("{shared_dir}:/var/lib/pmesh-agent"));
        let socket = "/var/run/docker.sock:/var/run/docker.sock";
        let args = ["--hostname", "pc-dns", "--network", "host", "-v", socket, "-v", &same_path, "-v", &state_dir];
        let sshd = format!(
            "printf 'Port {ssh_port}\\nListenAddress 127.0.0.1\\n' > /etc/ssh/sshd_config.d/pmesh-test.conf && exec /lib/systemd/systemd"
        );
        Host::start(&unique("pc-dns"), &args, true, &["sh", "-c", &sshd])
    });
    let host = &lab.host;
    host.add_docker_group();
    let config =
        format!("listen = \"127.0.0.1:{agent_port}\"\n\n[images.rewrite]\n\"internetsystemsconsortium/bind9:9.18\" = \"{TOOLS_IMAGE}\"\n");
    host.write_file("/etc/pmesh/agent.toml", "0644", &config);
    let drop_in = format!(
        "# Written by pmesh's bootstrap test: the data directory at a path this machine's Docker engine sees too.\n\
         [Service]\nExecStart=\nExecStart=/usr/local/bin/pmesh-agent run --data-dir {shared_dir}\nReadWritePaths={shared_dir}\n"
    );
    host.write_file("/etc/systemd/system/pmesh-agent.service.d/50-test-data-dir.conf", "0644", &drop_in);
    let key = host.authorise_key("root", lab.dir());
    let (key, ssh_port, advertise) = (key.to_str().expect("utf-8"), ssh_port.to_string(), format!("127.0.0.1:{agent_port}"));
    let common = ["--port", &ssh_port, "--identity", key, "--name", "pc-dns", "--advertise", &advertise];

    let first = lab.bootstrap("root@127.0.0.1", &[&common[..], &["--accept-new-host-key"]].concat(), "");
    assert_success(&first, "bootstrap");
    assert!(first.stdout.contains("[config] ok: /etc/pmesh/agent.toml exists; kept as it is"), "{}", first.stdout);
    assert!(first.stdout.contains("agent pc-dns is up"), "{}", first.stdout);

    let push = lab.mesh.pmesh(&["pattern", "push", dns_pattern().to_str().expect("utf-8")]);
    assert_eq!(push.code, 0, "pattern push: {}", push.stderr);
    let instance = Instance::new("bsdns");
    let values = lab.dir().join("values.yaml");
    std::fs::write(&values, "records:\n  - www A 10.0.0.7\n  - vcsa A 10.0.0.10\n").expect("values");
    let (listen_port, values) = (format!("listen_port={dns_port}"), values.to_str().expect("utf-8"));
    let run_dns = || {
        lab.mesh.pmesh(&[
            "run",
            "dns",
            "--on",
            "pc-dns",
            "--instance",
            &instance.0,
            "-p",
            "zone=lab.test",
            "-p",
            &listen_port,
            "-f",
            values,
        ])
    };
    let journal = || host.sh("journalctl -u pmesh-agent --no-pager -o cat | tail -30");
    let run = run_dns();
    assert_eq!(run.code, 0, "pmesh run dns\nstdout:\n{}\nstderr:\n{}\nthe agent's journal:\n{}", run.stdout, run.stderr, journal());
    assert!(run.stdout.contains("check-zone     | OK"), "{}", run.stdout);
    assert_eq!(dig(dns_port, "vcsa.lab.test"), "10.0.0.10");
    let zone = shared.path().join("instances").join(&instance.0).join("files/bind/zones.txt");
    assert!(zone.is_file(), "the agent rendered {} where the engine mounts it from", zone.display());
    let containers = instance_containers(&instance.0);
    assert!(!containers.is_empty() && containers.iter().all(|state| state.contains("running=true")), "{containers:?}");

    // --upgrade with a binary whose sha256 differs: the unit restarts, the containers do not.
    let pid = agent_pid(host);
    let next = lab.dir().join("pmesh-agent-next");
    std::fs::copy(bin("pmesh-agent"), &next).expect("copying the agent");
    std::fs::OpenOptions::new().append(true).open(&next).and_then(|mut file| file.write_all(b"next")).expect("changing the copy");
    let next_sha = sha256_of(&next);
    assert_ne!(next_sha, sha256_of(&bin("pmesh-agent")));
    let upgrade = [&common[..], &["--agent-binary", next.to_str().expect("utf-8"), "--upgrade"]].concat();
    let upgraded = lab.bootstrap("root@127.0.0.1", &upgrade, "");
    assert_success(&upgraded, "bootstrap --upgrade");
    assert!(upgraded.stdout.contains("[service] restart pmesh-agent.service ... done"), "{}", upgraded.stdout);
    assert_eq!(host.sh("sha256sum /usr/local/bin/pmesh-agent | cut -d' ' -f1"), next_sha);
    let new_pid = agent_pid(host);
    assert!(new_pid != pid && new_pid != "0", "the unit was restarted: MainPID {pid}, then {new_pid}");
    assert_eq!(running_agent_sha256(host), next_sha, "the new binary runs");
    assert_eq!(instance_containers(&instance.0), containers, "the containers were neither replaced nor restarted");
    assert_eq!(dig(dns_port, "www.lab.test"), "10.0.0.7");

    // The upgraded agent serves the master: the same run again finds every container current.
    let again = run_dns();
    assert_eq!(
        again.code,
        0,
        "pmesh run dns after the upgrade\nstdout:\n{}\nstderr:\n{}\nthe agent's journal:\n{}",
        again.stdout,
        again.stderr,
        journal()
    );
    assert!(again.stdout.contains("named          unchanged"), "{}", again.stdout);
    assert_eq!(instance_containers(&instance.0), containers);
    assert_eq!(lab.listed("pc-dns").expect("listed")["status"], "up");
}
