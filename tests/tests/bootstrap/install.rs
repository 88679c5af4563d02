//! The normal path, by key as root: a dry run changes nothing, bootstrap installs an agent that
//! runs under systemd with its unit as shipped, and a second run changes nothing. The host has
//! the Docker socket (the test machine's, mounted in) but no docker group, as a socket
//! bind-mounted into a container does: bootstrap makes the group with the socket's gid.

use std::io::Write;
use std::path::Path;

use pmesh_tests::bin;

use crate::lab::{agent_pid, assert_success, sha256_of, systemd_host, traces, Lab};

#[test]
fn by_key_a_dry_run_changes_nothing_then_the_agent_runs_under_systemd_and_a_rerun_changes_nothing() {
    let lab = Lab::new("pc-a", |network| systemd_host("pc-a", network));
    let socket_gid =
        std::fs::metadata("/var/run/docker.sock").map(|meta| std::os::unix::fs::MetadataExt::gid(&meta)).expect("a Docker socket");
    assert_eq!(lab.host.sh("getent group docker || true"), "", "the host starts without a docker group");
    let key = lab.host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", lab.host.ip);

    let dry = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key", "--dry-run"], "");
    assert_success(&dry, "the dry run");
    assert!(dry.stdout.contains("[binary] would upload pmesh-agent"), "{}", dry.stdout);
    assert!(dry.stdout.contains("[enrol] would enrol as agent pc-a"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains(&format!("[docker-group] would create the docker group with gid {socket_gid}, the group that owns")),
        "{}",
        dry.stdout
    );
    assert_eq!(traces(&lab.host), "", "a dry run leaves nothing on the host");
    assert_eq!(lab.host.sh("getent group docker || true"), "", "nor a group");
    assert!(lab.mesh.agents().expect("agents ls").is_empty(), "a dry run enrols nothing");
    assert!(!lab.mesh.master_dir().join("known_hosts").exists(), "a dry run records no host key");

    let first = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key"], "");
    assert_success(&first, "the first bootstrap");
    for line in ["[docker-group]", "[account]", "[binary]", "[config]", "[enrol]", "[unit]", "[service]"] {
        assert!(first.stdout.lines().any(|l| l.starts_with(line) && l.contains("done")), "{line} not done:\n{}", first.stdout);
    }
    assert!(first.stdout.contains("uploaded by SFTP, sha256 verified on the host"), "{}", first.stdout);
    assert!(first.stdout.contains("agent pc-a is up"), "{}", first.stdout);
    assert_eq!(lab.host.sh("systemctl is-active pmesh-agent"), "active");
    assert_eq!(lab.host.sh("systemctl is-enabled pmesh-agent"), "enabled");
    assert_eq!(lab.host.sh("ps -o user= -p $(systemctl show -p MainPID --value pmesh-agent)"), "pmesh-agent");
    assert_eq!(
        lab.host.sh("stat -c '%a %U' /var/lib/pmesh-agent/identity/agent.pem"),
        "600 pmesh-agent",
        "the key was made on the host, private"
    );
    let status = lab.host.sh("grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/$(systemctl show -p MainPID --value pmesh-agent)/status");
    assert_eq!(
        status.split_whitespace().collect::<Vec<_>>(),
        ["CapEff:", "0000000000000000", "NoNewPrivs:", "1", "Seccomp:", "2"],
        "{status}"
    );
    assert_eq!(lab.host.sh("getent group docker | cut -d: -f3"), socket_gid.to_string());
    let listed = lab.listed("pc-a").expect("pc-a is listed");
    assert_eq!(listed["status"], "up", "{listed}");
    assert_eq!(listed["docker_reachable"], true, "the agent reaches Docker through the group: {listed}");
    assert_eq!(listed["address"], format!("{}:7444", lab.host.ip), "{listed}");
    let local_sha = sha256_of(&bin("pmesh-agent"));
    assert_eq!(lab.host.sh("sha256sum /usr/local/bin/pmesh-agent | cut -d' ' -f1"), local_sha);

    // Again, with the host key now known: nothing changes, and it says so.
    let pid = agent_pid(&lab.host);
    let second = lab.bootstrap(&target, &["--identity", key], "");
    assert_success(&second, "the second bootstrap");
    assert!(
        second.stdout.contains(&format!("nothing changed: {} is already a pattern controller (agent pc-a)", lab.host.ip)),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("done"), "{}", second.stdout);
    assert_eq!(agent_pid(&lab.host), pid, "the agent was not restarted");

    // Another binary is kept without --upgrade, and replaced (with a restart) with it.
    let other = lab.dir().join("pmesh-agent-next");
    std::fs::copy(bin("pmesh-agent"), &other).expect("copying the agent");
    std::fs::OpenOptions::new().append(true).open(&other).and_then(|mut file| file.write_all(b"next")).expect("changing the copy");
    let other = other.to_str().expect("utf-8");
    let kept = lab.bootstrap(&target, &["--identity", key, "--agent-binary", other], "");
    assert_success(&kept, "bootstrap with another binary");
    assert!(kept.stdout.contains("pass --upgrade to replace it"), "{}", kept.stdout);
    assert_eq!(agent_pid(&lab.host), pid);
    let upgraded = lab.bootstrap(&target, &["--identity", key, "--agent-binary", other, "--upgrade"], "");
    assert_success(&upgraded, "bootstrap --upgrade");
    assert!(upgraded.stdout.contains("[service] restart pmesh-agent.service ... done"), "{}", upgraded.stdout);
    assert_ne!(agent_pid(&lab.host), pid, "the unit was restarted");
    assert_eq!(lab.host.sh("sha256sum /usr/local/bin/pmesh-agent | cut -d' ' -f1"), sha256_of(Path::new(other)));
    assert_eq!(lab.listed("pc-a").expect("listed")["status"], "up");
}
