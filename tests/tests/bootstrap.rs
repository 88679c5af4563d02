//! `pmesh bootstrap` against real hosts: containers of the Debian image built by
//! tests/images/build.sh, running systemd as PID 1 and a real sshd, unprivileged (no
//! `--privileged`), with the host's Docker socket bind-mounted for the agent. The master runs
//! on this machine, listening on the gateway address of a Docker network each test creates,
//! and the agents advertise their container's address, so every connection (SSH, enrolment,
//! the master's mTLS heartbeat) crosses a real network.
//!
//! The agent's unit is installed exactly as shipped, and starts: no drop-in relaxes it (the
//! pattern test's drop-in moves only the data directory, for the reason it gives). Said
//! plainly, though: in these unprivileged containers systemd cannot make namespaces, and it
//! starts the unit without them. It logs that for `ProtectHostname=`, and silently skips the
//! mount-namespace directives (`ProtectSystem=`, `ProtectHome=`, `PrivateTmp=`): checked by
//! hand with a probe unit, which could write to /usr as root. What is in force here, and
//! checked below, is `NoNewPrivileges=`, the seccomp filter and the empty capability set.
//!
//! What the containers stand in for: a Debian 12 host; with Photon's os-release and stand-ins
//! for tdnf and iptables, a Photon one. The pattern test runs the catalog's DNS pattern through
//! a bootstrapped agent, on a host that shares this machine's network (said there, with why).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmesh_tests::docker::{docker, require_tools_image, start_master_on, Host, Instance, Network, TOOLS_IMAGE};
use pmesh_tests::{bin, free_port, wait_until, Daemon, Mesh, Run};

fn unique(tag: &str) -> String {
    format!("pmesh-bs-{tag}-{}", std::process::id())
}

/// A host with systemd and sshd on `network`, the Docker socket at its usual path: the normal
/// target.
fn systemd_host(tag: &str, network: &Network) -> Host {
    let args = ["--hostname", tag, "--network", &network.name, "-v", "/var/run/docker.sock:/var/run/docker.sock"];
    Host::start(&unique(tag), &args, true, &["/lib/systemd/systemd"])
}

/// What a bootstrap would have left behind on `host`, if anything.
fn traces(host: &Host) -> String {
    host.sh("for path in /usr/local/bin/pmesh-agent /etc/systemd/system/pmesh-agent.service /usr/lib/sysusers.d/pmesh.conf \
         /etc/pmesh /var/lib/pmesh-agent; do [ -e $path ] && echo $path; done; \
         getent passwd pmesh-agent; ls /var/tmp | grep pmesh; true")
}

fn agent_pid(host: &Host) -> String {
    host.main_pid("pmesh-agent")
}

/// A mesh whose master the containers reach, and one target host.
struct Lab {
    // Dropped in this order: the host, then the master, then the network, then the files.
    host: Host,
    master: Daemon,
    _network: Option<Network>,
    mesh: Mesh,
}

impl Lab {
    /// A master on the gateway of a new network, and the host `start_host` starts on it.
    fn new(tag: &str, start_host: impl FnOnce(&Network) -> Host) -> Lab {
        let network = Network::create(&unique(tag));
        let (mesh, master) = Lab::master(&network.gateway);
        let host = start_host(&network);
        Lab { host, master, _network: Some(network), mesh }
    }

    /// A master on 127.0.0.1, for a host that shares this machine's network namespace.
    fn on_host_network(start_host: impl FnOnce() -> Host) -> Lab {
        let (mesh, master) = Lab::master("127.0.0.1");
        let host = start_host();
        Lab { host, master, _network: None, mesh }
    }

    /// A new mesh whose master listens on `ip`.
    fn master(ip: &str) -> (Mesh, Daemon) {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("binding the master's address");
        let master_port = listener.local_addr().expect("address").port();
        drop(listener);
        let mesh =
            Mesh { dir: tempfile::tempdir().expect("temp dir"), master_port, check_interval: "1s".into(), extra_serve_args: Vec::new() };
        let address = format!("{ip}:{master_port}");
        let init = mesh.pmesh(&["ca", "init", "--listen", &address]);
        assert_eq!(init.code, 0, "ca init: {}", init.stderr);
        let master = start_master_on(&mesh, &address).unwrap_or_else(|err| panic!("{err:#}"));
        (mesh, master)
    }

    fn dir(&self) -> &Path {
        self.mesh.dir.path()
    }

    /// Runs `pmesh bootstrap TARGET ARGS`, with `stdin` on its stdin.
    fn bootstrap(&self, target: &str, args: &[&str], stdin: &str) -> Run {
        let mut child = self.bootstrap_command(target, args).spawn().expect("running pmesh");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("pmesh exits").into()
    }

    fn bootstrap_command(&self, target: &str, args: &[&str]) -> Command {
        let mut command = Command::new(bin("pmesh"));
        command
            .arg("--data-dir")
            .arg(self.mesh.master_dir())
            .arg("bootstrap")
            .arg(target)
            .args(args)
            .env_remove("PMESH_HOME")
            .env_remove("PMESH_CREDENTIALS")
            .env("HOME", self.dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The agent `name` as `pmesh agents ls -o json` lists it.
    fn listed(&self, name: &str) -> Option<serde_json::Value> {
        self.mesh.agents().expect("agents ls").into_iter().find(|agent| agent["name"] == name)
    }
}

fn assert_success(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what} failed\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

#[test]
fn by_key_a_dry_run_changes_nothing_then_the_agent_runs_under_systemd_and_a_rerun_changes_nothing() {
    let lab = Lab::new("pc-a", |network| systemd_host("pc-a", network));
    lab.host.add_docker_group();
    let key = lab.host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", lab.host.ip);

    let dry = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key", "--dry-run"], "");
    assert_success(&dry, "the dry run");
    assert!(dry.stdout.contains("[binary] would upload pmesh-agent"), "{}", dry.stdout);
    assert!(dry.stdout.contains("[enrol] would enrol as agent pc-a"), "{}", dry.stdout);
    assert_eq!(traces(&lab.host), "", "a dry run leaves nothing on the host");
    assert!(lab.mesh.agents().expect("agents ls").is_empty(), "a dry run enrols nothing");
    assert!(!lab.mesh.master_dir().join("known_hosts").exists(), "a dry run records no host key");

    let first = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key"], "");
    assert_success(&first, "the first bootstrap");
    for line in ["[account]", "[binary]", "[config]", "[enrol]", "[unit]", "[service]"] {
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
    let listed = lab.listed("pc-a").expect("pc-a is listed");
    assert_eq!(listed["status"], "up", "{listed}");
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

#[test]
fn by_password_through_sudo_and_no_secret_shows_in_output_processes_logs_or_state() {
    const PASSWORD: &str = "Tr0ub4dor&3-pmesh-secret";
    let lab = Lab::new("pc-b", |network| systemd_host("pc-b", network));
    lab.host.add_docker_group();
    lab.host.ok(&format!(
        "useradd -m -s /bin/bash ops && echo 'ops:{PASSWORD}' | chpasswd && \
         echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops"
    ));
    // This host offers no SFTP, so the binary travels on a command's stdin instead.
    lab.host.ok("sed -i 's/^Subsystem/#Subsystem/' /etc/ssh/sshd_config && systemctl restart ssh");
    let target = format!("ops@{}", lab.host.ip);

    let wrong = lab.bootstrap(&target, &["--password-stdin", "--accept-new-host-key"], "not-the-password\n");
    assert_eq!(wrong.code, 5, "a wrong password is refused: {}", wrong.stderr);
    assert!(wrong.stderr.contains("refused the password of user ops"), "{}", wrong.stderr);
    assert_eq!(traces(&lab.host), "");

    // Watch every process's arguments while bootstrap runs. This machine's /proc shows the
    // container's processes too (sshd, sudo, the shells, `pmesh-agent join`), so a tight loop
    // over it sees even short-lived commands; best effort all the same, since a process that
    // lives less than one pass can slip through.
    let seen = Arc::new(Mutex::new((0usize, std::collections::BTreeSet::<String>::new())));
    let running = Arc::new(AtomicBool::new(true));
    // Other test binaries run on this machine too (a developer's, or a second checkout's), and
    // their harness enrols agents with `target/.../pmesh-agent join --token`: those are not this
    // bootstrap's, which runs the agent only as /usr/local/bin/pmesh-agent on the host.
    let harness_agent = bin("pmesh-agent").display().to_string();
    let other_harness = move |args: &str| args.contains("/target/debug/pmesh-agent join") || args.starts_with(&harness_agent);
    let watcher = {
        let (seen, running) = (seen.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let leaks = process_arguments()
                    .into_iter()
                    .filter(|args| args.contains(PASSWORD) || (args.contains("pmt_") && !other_harness(args)));
                let mut seen = seen.lock().expect("lock");
                seen.0 += 1;
                seen.1.extend(leaks);
            }
        })
    };
    let run = lab.bootstrap(
        &target,
        &["--password-stdin", "--accept-new-host-key", "--name", "pc-b", "--label", "site=lab"],
        &format!("{PASSWORD}\n"),
    );
    running.store(false, Ordering::Relaxed);
    watcher.join().expect("watcher");
    assert_success(&run, "bootstrap by password");
    assert!(run.stdout.contains("uploaded over a command's stdin (no SFTP on this host), sha256 verified"), "{}", run.stdout);
    assert_eq!(lab.host.sh("systemctl is-active pmesh-agent"), "active");
    let listed = lab.listed("pc-b").expect("pc-b is listed");
    assert_eq!((listed["status"].as_str(), listed["labels"]["site"].as_str()), (Some("up"), Some("lab")), "{listed}");

    // The secrets: the password, and any join token (they all start with pmt_).
    let (n_passes, leaks) = seen.lock().expect("lock").clone();
    assert!(n_passes > 100, "the watcher looked at the processes only {n_passes} times");
    assert!(leaks.is_empty(), "a secret shows in a process's arguments: {leaks:?}");
    for (what, text) in [
        ("bootstrap's output", format!("{}{}{}{}", run.stdout, run.stderr, wrong.stdout, wrong.stderr)),
        ("the host's journal (sshd, sudo, the agent)", lab.host.sh("journalctl --no-pager -o cat")),
        ("the agent's files", lab.host.sh("cat /etc/pmesh/* /var/lib/pmesh-agent/*.json /etc/systemd/system/pmesh-agent.service")),
        ("the master's log", std::fs::read_to_string(&lab.master.log).unwrap_or_default()),
    ] {
        assert!(!text.contains(PASSWORD), "the password shows in {what}");
        assert!(!text.contains("pmt_"), "a join token shows in {what}");
    }
    assert!(
        lab.host.ok("grep -rl -- 'Tr0ub4dor' /var/lib/pmesh-agent /etc/pmesh /var/tmp || true").is_empty(),
        "the password is stored on the host"
    );
    assert!(!tree_contains(&lab.mesh.master_dir(), PASSWORD.as_bytes()), "the password is stored by the master");
}

#[test]
fn host_keys_unknown_changed_or_not_the_pinned_one_are_refused_and_an_expired_password_stops_preflight() {
    let lab = Lab::new("pc-c", |network| systemd_host("pc-c", network));
    lab.host.add_docker_group();
    let key = lab.host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", lab.host.ip);
    let fingerprint = lab.host.host_key_fingerprint();
    let known_hosts = lab.mesh.master_dir().join("known_hosts");

    // An RSA key is refused by name, before the host is contacted: the host key is unknown
    // here, which would have been refused first (exit 5) had bootstrap connected.
    let rsa = lab.host.authorise_key_of_type("root", "rsa", lab.dir());
    let refused = lab.bootstrap(&target, &["--identity", rsa.to_str().expect("utf-8"), "--dry-run"], "");
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("holds an SSH key of type RSA") && refused.stderr.contains("ssh-keygen -t ed25519"),
        "{}",
        refused.stderr
    );

    let unknown = lab.bootstrap(&target, &["--identity", key, "--dry-run"], "");
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("is unknown") && unknown.stderr.contains(&fingerprint), "the fingerprint is shown: {}", unknown.stderr);
    assert!(!known_hosts.exists(), "a refused key is not recorded");

    let closed = lab.bootstrap(&target, &["--identity", key, "--dry-run", "--port", "2"], "");
    assert_eq!(closed.code, 4, "no SSH server there: {}", closed.stderr);
    assert!(closed.stderr.contains(&format!("cannot reach {}:2", lab.host.ip)), "{}", closed.stderr);

    let other = format!("SHA256:{}", "A".repeat(43));
    let mismatch = lab.bootstrap(&target, &["--identity", key, "--dry-run", "--host-key", &other], "");
    assert_eq!(mismatch.code, 5, "{}", mismatch.stderr);
    assert!(mismatch.stderr.contains(&format!("not the pinned {other}")), "{}", mismatch.stderr);

    let pinned = lab.bootstrap(&target, &["--identity", key, "--dry-run", "--host-key", &fingerprint], "");
    assert_success(&pinned, "a dry run with the pinned key");

    // A user whose password has expired: sshd lets the key in but runs nothing.
    lab.host.ok("useradd -m -s /bin/bash stale && echo 'stale:Old-pass-123' | chpasswd && chage -d 0 stale && \
         echo 'stale ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/stale");
    let stale_key = lab.host.authorise_key("stale", lab.dir());
    let stale = lab.bootstrap(
        &format!("stale@{}", lab.host.ip),
        &["--identity", stale_key.to_str().expect("utf-8"), "--host-key", &fingerprint],
        "",
    );
    assert_eq!(stale.code, 2, "{}\n{}", stale.stdout, stale.stderr);
    assert!(stale.stderr.contains("the password of stale on") && stale.stderr.contains("has expired"), "{}", stale.stderr);

    // Record the current key the way an operator could (OpenSSH's format), then change it.
    let public = lab.host.ok("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
    std::fs::write(&known_hosts, format!("{} {public}\n", lab.host.ip)).expect("known_hosts");
    assert_success(&lab.bootstrap(&target, &["--identity", key, "--dry-run"], ""), "a dry run with the recorded key");
    lab.host.ok("rm /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh");
    let new_fingerprint = lab.host.host_key_fingerprint();
    for extra in [&[][..], &["--accept-new-host-key"][..], &["--host-key", &new_fingerprint][..]] {
        let mut args = vec!["--identity", key, "--dry-run"];
        args.extend_from_slice(extra);
        let changed = lab.bootstrap(&target, &args, "");
        assert_eq!(changed.code, 5, "{extra:?}: {}", changed.stderr);
        assert!(changed.stderr.contains("has CHANGED") && changed.stderr.contains(&new_fingerprint), "{extra:?}: {}", changed.stderr);
    }
    assert_eq!(traces(&lab.host), "", "refusals and dry runs leave nothing on the host");
}

#[test]
fn preflight_lists_every_problem_at_once_and_changes_nothing() {
    // A host without systemd (sshd is PID 1), its agent port taken, the Docker socket there but
    // no docker group, and an agent binary for another architecture.
    let lab = Lab::new("pc-d", |network| {
        Host::start(
            &unique("pc-d"),
            &["--hostname", "pc-d", "--network", &network.name, "-v", "/var/run/docker.sock:/var/run/docker.sock"],
            false,
            &["sh", "-c", "mkdir -p /run/sshd && (systemd-socket-activate -l 7444 cat &) && exec /usr/sbin/sshd -D -e"],
        )
    });
    let key = lab.host.authorise_key("root", lab.dir());
    wait_until("the port squatter to listen", Duration::from_secs(20), || lab.host.sh("ss -Htln 'sport = :7444'").contains("7444"))
        .expect("squatter");
    let foreign = lab.dir().join("pmesh-agent-aarch64");
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0".to_vec();
    elf.resize(4096, 0);
    std::fs::write(&foreign, elf).expect("a foreign binary");
    let target = format!("root@{}", lab.host.ip);

    let run = lab.bootstrap(
        &target,
        &["--identity", key.to_str().expect("utf-8"), "--accept-new-host-key", "--agent-binary", foreign.to_str().expect("utf-8")],
        "",
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    for problem in [
        "preflight found 4 problem(s); nothing was changed",
        "is built for aarch64",
        "systemd is not running as PID 1",
        "the docker group is missing",
        "port 7444 is already in use on the host",
    ] {
        assert!(run.stderr.contains(problem), "{problem:?} missing from:\n{}", run.stderr);
    }
    assert_eq!(traces(&lab.host), "");
    assert!(lab.mesh.agents().expect("agents ls").is_empty(), "no token was spent and no agent enrolled");
}

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
    let zone = shared.path().join("instances").join(&instance.0).join("files/zone.db");
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

/// Photon's default `/etc/systemd/scripts/ip4save` (the same on 4.0 and 5.0).
const PHOTON_IP4SAVE: &str = "# init\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
-A INPUT -i lo -j ACCEPT\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
-A OUTPUT -j ACCEPT\nCOMMIT\n";

/// A stand-in `tdnf` that records its calls; `install docker` creates what Photon's docker
/// package would (a docker group and a docker.service, disabled), the service here linking
/// the host engine's socket into place instead of running dockerd.
const STAND_IN_TDNF: &str = r#"#!/bin/sh
echo "tdnf $*" >> /var/log/stand-ins.log
case "$*" in *install*docker*)
  getent group docker >/dev/null || groupadd -o -g "$(stat -c %g /host-docker.sock)" docker
  printf '%s\n' '[Unit]' 'Description=stand-in for Docker: links the host engine socket' '[Service]' 'Type=oneshot' \
    'RemainAfterExit=yes' 'ExecStart=/bin/ln -sf /host-docker.sock /var/run/docker.sock' '[Install]' 'WantedBy=multi-user.target' \
    > /etc/systemd/system/docker.service
  systemctl daemon-reload ;;
esac
"#;

/// A stand-in `iptables` (unprivileged containers may not touch netfilter) that records its
/// calls and keeps the rules it was given in a file.
const STAND_IN_IPTABLES: &str = r#"#!/bin/sh
echo "iptables $*" >> /var/log/stand-ins.log
rules=/var/lib/stand-in-iptables
case "$1" in
  -S) echo "-P INPUT DROP"; cat "$rules" 2>/dev/null; exit 0 ;;
  -C) shift; grep -qxF -- "-A $*" "$rules" 2>/dev/null ;;
  -I) shift; echo "-A $*" >> "$rules" ;;
  *) exit 2 ;;
esac
"#;

#[test]
fn the_photon_path_installs_docker_with_tdnf_and_persists_the_firewall_rule() {
    // A stand-in for Photon OS 5, said plainly: the Debian image with Photon's os-release,
    // Photon's default ip4save, and stand-ins for tdnf and iptables that record their calls.
    // What this shows is what bootstrap asks of a Photon host, not that Photon answers so.
    // The engine's socket is elsewhere until the stand-in docker.service links it into place.
    let lab = Lab::new("pc-e", |network| {
        let args = ["--hostname", "pc-e", "--network", &network.name, "-v", "/var/run/docker.sock:/host-docker.sock"];
        Host::start(&unique("pc-e"), &args, true, &["/lib/systemd/systemd"])
    });
    let host = &lab.host;
    host.ok("rm -f /etc/os-release && printf 'NAME=\"VMware Photon OS\"\\nVERSION_ID=5.0\\nID=photon\\nPRETTY_NAME=\"VMware Photon OS/Linux (stand-in)\"\\n' > /etc/os-release");
    host.ok(&format!("mkdir -p /etc/systemd/scripts && printf '%s' '{PHOTON_IP4SAVE}' > /etc/systemd/scripts/ip4save"));
    host.ok(&format!("cat > /usr/local/bin/tdnf <<'EOF'\n{STAND_IN_TDNF}EOF\nchmod 755 /usr/local/bin/tdnf"));
    host.ok(&format!("cat > /usr/local/sbin/iptables <<'EOF'\n{STAND_IN_IPTABLES}EOF\nchmod 755 /usr/local/sbin/iptables"));
    let key = host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", host.ip);

    let run = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key"], "");
    assert_success(&run, "bootstrap on the Photon stand-in");
    assert!(run.stdout.contains("[docker] install Docker with tdnf, then enable and start docker.service ... done"), "{}", run.stdout);
    assert!(
        run.stdout.contains("[firewall] open tcp/7444: a live iptables rule, persisted in /etc/systemd/scripts/ip4save ... done"),
        "{}",
        run.stdout
    );
    let calls = host.ok("cat /var/log/stand-ins.log");
    assert!(calls.lines().any(|call| call == "tdnf -y -q install docker"), "{calls}");
    assert!(calls.lines().any(|call| call == "iptables -I INPUT -p tcp --dport 7444 -j ACCEPT"), "{calls}");
    assert_eq!(host.sh("systemctl is-enabled docker; systemctl is-active docker"), "enabled\nactive");
    let persisted = host.ok("cat /etc/systemd/scripts/ip4save");
    assert_eq!(persisted, PHOTON_IP4SAVE.replace("COMMIT\n", "-A INPUT -p tcp -m tcp --dport 7444 -j ACCEPT\nCOMMIT").trim_end());
    assert_eq!(host.sh("systemctl is-active pmesh-agent"), "active");
    assert_eq!(lab.listed("pc-e").expect("listed")["status"], "up");

    let again = lab.bootstrap(&target, &["--identity", key], "");
    assert_success(&again, "the second bootstrap on the Photon stand-in");
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(host.ok("grep -c -- '--dport 7444' /etc/systemd/scripts/ip4save"), "1");

    // Docker installed but disabled, as Photon ships it: bootstrap enables and starts it.
    host.ok("systemctl disable --now docker.service");
    let enabled = lab.bootstrap(&target, &["--identity", key], "");
    assert_success(&enabled, "bootstrap with Docker disabled");
    assert!(enabled.stdout.contains("[docker] enable and start docker.service ... done"), "{}", enabled.stdout);
    assert_eq!(host.sh("systemctl is-enabled docker"), "enabled");
}

/// The arguments of every process this machine's /proc shows, one string each.
fn process_arguments() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .collect()
}

fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// Whether any file under `dir` contains `needle`.
fn tree_contains(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            tree_contains(&path, needle)
        } else {
            std::fs::read(&path).map(|bytes| bytes.windows(needle.len()).any(|window| window == needle)).unwrap_or(false)
        }
    })
}
