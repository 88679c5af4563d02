//! `pmesh bootstrap` against real hosts: containers of the Debian image built by
//! tests/images/build.sh, running systemd as PID 1 and a real sshd, unprivileged (no
//! `--privileged`), with the host's Docker socket bind-mounted for the agent. The master runs
//! on this machine, listening on the gateway address of a Docker network each test creates,
//! and the agents advertise their container's address, so every connection (SSH, enrolment,
//! the master's mTLS heartbeat) crosses a real network.
//!
//! The agent's unit is installed exactly as shipped, and starts: no drop-in relaxes it. Said
//! plainly, though: in these unprivileged containers systemd cannot make namespaces, and it
//! starts the unit without them. It logs that for `ProtectHostname=`, and silently skips the
//! mount-namespace directives (`ProtectSystem=`, `ProtectHome=`, `PrivateTmp=`): checked by
//! hand with a probe unit, which could write to /usr as root. What is in force here, and
//! checked below, is `NoNewPrivileges=`, the seccomp filter and the empty capability set.
//!
//! What the containers stand in for: a Debian 12 host. The Photon paths (tdnf, ip4save) are
//! covered by unit tests of the scripts, not here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmesh_tests::docker::docker;
use pmesh_tests::{bin, wait_until, Mesh, Run};

const IMAGE: &str = "pmesh-test/sshd:bookworm-1";

/// Runs `docker ARGS` and returns its output, whatever the exit status.
fn docker_output(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker is missing: install the Docker engine and CLI")
}

fn require_image() {
    assert!(
        docker_output(&["image", "inspect", IMAGE]).status.success(),
        "{IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
    );
}

fn unique(tag: &str) -> String {
    format!("pmesh-bs-{tag}-{}", std::process::id())
}

/// A Docker network, removed on drop.
struct Network {
    name: String,
    gateway: String,
}

impl Network {
    fn create(tag: &str) -> Network {
        let name = unique(tag);
        let _ = docker_output(&["network", "rm", &name]);
        docker(&["network", "create", &name]);
        let gateway = docker(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", &name]);
        assert!(!gateway.is_empty(), "network {name} has no gateway address");
        Network { name, gateway }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker_output(&["network", "rm", &self.name]);
    }
}

/// A container, removed on drop.
struct Container {
    name: String,
    ip: String,
}

impl Container {
    /// Starts `command` in the test image on `network`, with the Docker socket mounted at
    /// `socket`.
    fn start(tag: &str, network: &Network, systemd: bool, socket: &str, command: &[&str]) -> Container {
        require_image();
        let name = unique(tag);
        let _ = docker_output(&["rm", "-f", &name]);
        let mut args = vec!["run", "-d", "--name", &name, "--hostname", tag, "--network", &network.name];
        if systemd {
            args.extend(["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock"]);
        }
        let mount = format!("/var/run/docker.sock:{socket}");
        args.extend(["-v", &mount, IMAGE]);
        args.extend_from_slice(command);
        docker(&args);
        let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &name]);
        let container = Container { name, ip };
        if systemd {
            wait_until("sshd to run under systemd", Duration::from_secs(60), || container.sh("systemctl is-active ssh") == "active")
                .unwrap_or_else(|err| panic!("{err}: {}", container.sh("systemctl --failed --no-pager; journalctl -b --no-pager | tail -20")));
        }
        container
    }

    /// A host with systemd and sshd: the normal target.
    fn host(tag: &str, network: &Network) -> Container {
        Container::start(tag, network, true, "/var/run/docker.sock", &["/lib/systemd/systemd"])
    }

    /// Runs a shell command inside; returns stdout (trimmed) whatever the exit status.
    fn sh(&self, script: &str) -> String {
        let output = docker_output(&["exec", &self.name, "sh", "-c", script]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs a shell command inside and asserts it succeeded.
    fn ok(&self, script: &str) -> String {
        let output = docker_output(&["exec", &self.name, "sh", "-c", script]);
        assert!(output.status.success(), "{script}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Lets units in the container use the bind-mounted Docker socket: a `docker` group with
    /// the socket's group id (the agent's unit names the group, as on a real host).
    fn add_docker_group(&self) {
        let gid = std::fs::metadata("/var/run/docker.sock")
            .map(|meta| std::os::unix::fs::MetadataExt::gid(&meta))
            .expect("/var/run/docker.sock is missing: these tests need a running Docker engine");
        self.ok(&format!("groupadd -o -g {gid} docker"));
    }

    /// Generates a key pair for `user` inside, authorises it, and returns the private key file
    /// copied to `dir`.
    fn authorise_key(&self, user: &str, dir: &Path) -> PathBuf {
        let home = self.ok(&format!("getent passwd {user} | cut -d: -f6"));
        self.ok(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f /tmp/key-{user} && install -d -m 700 -o {user} {home}/.ssh && \
             cat /tmp/key-{user}.pub >> {home}/.ssh/authorized_keys && chown {user} {home}/.ssh/authorized_keys"
        ));
        let path = dir.join(format!("key-{user}"));
        std::fs::write(&path, self.ok(&format!("cat /tmp/key-{user}")) + "\n").expect("writing the key");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        path
    }

    /// The host's ed25519 key fingerprint, as `ssh-keygen -lf` prints it.
    fn host_key_fingerprint(&self) -> String {
        let line = self.ok("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
        line.split_whitespace().nth(1).expect("a fingerprint").to_owned()
    }

    /// What a bootstrap would have left behind, if anything.
    fn traces(&self) -> String {
        self.sh(
            "for path in /usr/local/bin/pmesh-agent /etc/systemd/system/pmesh-agent.service /usr/lib/sysusers.d/pmesh.conf \
             /etc/pmesh /var/lib/pmesh-agent; do [ -e $path ] && echo $path; done; \
             getent passwd pmesh-agent; ls /var/tmp | grep pmesh; true",
        )
    }

    fn main_pid(&self) -> String {
        self.sh("systemctl show -p MainPID --value pmesh-agent")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// `pmesh serve` on the network's gateway address, killed on drop.
struct MasterProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mesh whose master the containers reach, and one target host.
struct Lab {
    // Dropped in this order: the host, then the master, then the network, then the files.
    host: Container,
    master: MasterProcess,
    _network: Network,
    mesh: Mesh,
}

impl Lab {
    fn new(tag: &str, start_host: impl FnOnce(&Network) -> Container) -> Lab {
        let network = Network::create(tag);
        let listener = std::net::TcpListener::bind((network.gateway.as_str(), 0)).expect("binding the gateway address");
        let master_port = listener.local_addr().expect("address").port();
        drop(listener);
        let mesh = Mesh { dir: tempfile::tempdir().expect("temp dir"), master_port, check_interval: "1s".into(), extra_serve_args: Vec::new() };
        let address = format!("{}:{master_port}", network.gateway);
        let init = mesh.pmesh(&["ca", "init", "--listen", &address]);
        assert_eq!(init.code, 0, "ca init: {}", init.stderr);
        let master = start_master(&mesh, &address);
        let host = start_host(&network);
        Lab { host, master, _network: network, mesh }
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

fn start_master(mesh: &Mesh, address: &str) -> MasterProcess {
    let log = mesh.dir.path().join("master.log");
    let file = std::fs::File::create(&log).expect("master log");
    let child = Command::new(bin("pmesh"))
        .args(["serve", "--check-interval", "1s", "--data-dir"])
        .arg(mesh.master_dir())
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .env_remove("PMESH_HOME")
        .spawn()
        .expect("starting pmesh serve");
    let master = MasterProcess { child, log };
    wait_until("the master to listen", Duration::from_secs(20), || std::net::TcpStream::connect(address).is_ok())
        .unwrap_or_else(|err| panic!("{err}: {}", std::fs::read_to_string(&master.log).unwrap_or_default()));
    master
}

fn assert_success(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what} failed\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

#[test]
fn by_key_a_dry_run_changes_nothing_then_the_agent_runs_under_systemd_and_a_rerun_changes_nothing() {
    let lab = Lab::new("pc-a", |network| Container::host("pc-a", network));
    lab.host.add_docker_group();
    let key = lab.host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", lab.host.ip);

    let dry = lab.bootstrap(&target, &["--identity", key, "--accept-new-host-key", "--dry-run"], "");
    assert_success(&dry, "the dry run");
    assert!(dry.stdout.contains("[binary] would upload pmesh-agent"), "{}", dry.stdout);
    assert!(dry.stdout.contains("[enrol] would enrol as agent pc-a"), "{}", dry.stdout);
    assert_eq!(lab.host.traces(), "", "a dry run leaves nothing on the host");
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
    assert_eq!(lab.host.sh("stat -c '%a %U' /var/lib/pmesh-agent/identity/agent.pem"), "600 pmesh-agent", "the key was made on the host, private");
    let status = lab.host.sh("grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/$(systemctl show -p MainPID --value pmesh-agent)/status");
    assert_eq!(status.split_whitespace().collect::<Vec<_>>(), ["CapEff:", "0000000000000000", "NoNewPrivs:", "1", "Seccomp:", "2"], "{status}");
    let listed = lab.listed("pc-a").expect("pc-a is listed");
    assert_eq!(listed["status"], "up", "{listed}");
    assert_eq!(listed["address"], format!("{}:7444", lab.host.ip), "{listed}");
    let local_sha = sha256_of(&bin("pmesh-agent"));
    assert_eq!(lab.host.sh("sha256sum /usr/local/bin/pmesh-agent | cut -d' ' -f1"), local_sha);

    // Again, with the host key now known: nothing changes, and it says so.
    let pid = lab.host.main_pid();
    let second = lab.bootstrap(&target, &["--identity", key], "");
    assert_success(&second, "the second bootstrap");
    assert!(second.stdout.contains(&format!("nothing changed: {} is already a pattern controller (agent pc-a)", lab.host.ip)), "{}", second.stdout);
    assert!(!second.stdout.contains("done"), "{}", second.stdout);
    assert_eq!(lab.host.main_pid(), pid, "the agent was not restarted");

    // Another binary is kept without --upgrade, and replaced (with a restart) with it.
    let other = lab.dir().join("pmesh-agent-next");
    std::fs::copy(bin("pmesh-agent"), &other).expect("copying the agent");
    std::fs::OpenOptions::new().append(true).open(&other).and_then(|mut file| file.write_all(b"next")).expect("changing the copy");
    let other = other.to_str().expect("utf-8");
    let kept = lab.bootstrap(&target, &["--identity", key, "--agent-binary", other], "");
    assert_success(&kept, "bootstrap with another binary");
    assert!(kept.stdout.contains("pass --upgrade to replace it"), "{}", kept.stdout);
    assert_eq!(lab.host.main_pid(), pid);
    let upgraded = lab.bootstrap(&target, &["--identity", key, "--agent-binary", other, "--upgrade"], "");
    assert_success(&upgraded, "bootstrap --upgrade");
    assert!(upgraded.stdout.contains("[service] restart pmesh-agent.service ... done"), "{}", upgraded.stdout);
    assert_ne!(lab.host.main_pid(), pid, "the unit was restarted");
    assert_eq!(lab.host.sh("sha256sum /usr/local/bin/pmesh-agent | cut -d' ' -f1"), sha256_of(Path::new(other)));
    assert_eq!(lab.listed("pc-a").expect("listed")["status"], "up");
}

#[test]
fn by_password_through_sudo_and_no_secret_shows_in_output_processes_logs_or_state() {
    const PASSWORD: &str = "Tr0ub4dor&3-pmesh-secret";
    let lab = Lab::new("pc-b", |network| Container::host("pc-b", network));
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
    assert_eq!(lab.host.traces(), "");

    // Watch every process's arguments while bootstrap runs. This machine's /proc shows the
    // container's processes too (sshd, sudo, the shells, `pmesh-agent join`), so a tight loop
    // over it sees even short-lived commands; best effort all the same, since a process that
    // lives less than one pass can slip through.
    let seen = Arc::new(Mutex::new((0usize, std::collections::BTreeSet::<String>::new())));
    let running = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (seen, running) = (seen.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let leaks = process_arguments().into_iter().filter(|args| args.contains(PASSWORD) || args.contains("pmt_"));
                let mut seen = seen.lock().expect("lock");
                seen.0 += 1;
                seen.1.extend(leaks);
            }
        })
    };
    let run = lab.bootstrap(&target, &["--password-stdin", "--accept-new-host-key", "--name", "pc-b", "--label", "site=lab"], &format!("{PASSWORD}\n"));
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
    assert!(lab.host.ok("grep -rl -- 'Tr0ub4dor' /var/lib/pmesh-agent /etc/pmesh /var/tmp || true").is_empty(), "the password is stored on the host");
    assert!(!tree_contains(&lab.mesh.master_dir(), PASSWORD.as_bytes()), "the password is stored by the master");
}

#[test]
fn host_keys_unknown_changed_or_not_the_pinned_one_are_refused_and_an_expired_password_stops_preflight() {
    let lab = Lab::new("pc-c", |network| Container::host("pc-c", network));
    lab.host.add_docker_group();
    let key = lab.host.authorise_key("root", lab.dir());
    let key = key.to_str().expect("utf-8");
    let target = format!("root@{}", lab.host.ip);
    let fingerprint = lab.host.host_key_fingerprint();
    let known_hosts = lab.mesh.master_dir().join("known_hosts");

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
    lab.host.ok(
        "useradd -m -s /bin/bash stale && echo 'stale:Old-pass-123' | chpasswd && chage -d 0 stale && \
         echo 'stale ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/stale",
    );
    let stale_key = lab.host.authorise_key("stale", lab.dir());
    let stale = lab.bootstrap(&format!("stale@{}", lab.host.ip), &["--identity", stale_key.to_str().expect("utf-8"), "--host-key", &fingerprint], "");
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
    assert_eq!(lab.host.traces(), "", "refusals and dry runs leave nothing on the host");
}

#[test]
fn preflight_lists_every_problem_at_once_and_changes_nothing() {
    // A host without systemd (sshd is PID 1), its agent port taken, the Docker socket there but
    // no docker group, and an agent binary for another architecture.
    let lab = Lab::new("pc-d", |network| {
        Container::start(
            "pc-d",
            network,
            false,
            "/var/run/docker.sock",
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
    assert_eq!(lab.host.traces(), "");
    assert!(lab.mesh.agents().expect("agents ls").is_empty(), "no token was spent and no agent enrolled");
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
    let lab = Lab::new("pc-e", |network| Container::start("pc-e", network, true, "/host-docker.sock", &["/lib/systemd/systemd"]));
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
    assert!(run.stdout.contains("[firewall] open tcp/7444: a live iptables rule, persisted in /etc/systemd/scripts/ip4save ... done"), "{}", run.stdout);
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
