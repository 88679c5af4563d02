//! Docker helpers for tests: the locally built tool image, and the `docker` CLI for checks
//! made from outside pmesh (what is running, what carries which labels); Docker networks and
//! target hosts (containers of the sshd/systemd image) for the bootstrap and appliance tests,
//! each removed when its handle drops.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::{spawn, wait_until, Daemon, Mesh};

/// The image built by `tests/images/build.sh` from Debian packages: bind9, dig, curl, nc.
pub const TOOLS_IMAGE: &str = "pmesh-test/tools:bookworm-1";

/// Fails with instructions when the test image is missing; never skips.
pub fn require_tools_image() {
    let present = Command::new("docker").args(["image", "inspect", TOOLS_IMAGE]).output().map(|out| out.status.success());
    assert!(present.unwrap_or(false), "{TOOLS_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)");
}

/// Runs `docker ARGS` and returns stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().expect("running docker");
    assert!(output.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Names of containers (running or not) whose label `key` is `value`.
pub fn containers_with_label(key: &str, value: &str) -> Vec<String> {
    let out = docker(&["ps", "-a", "--filter", &format!("label={key}={value}"), "--format", "{{.Names}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// Whether the container `name` is running.
pub fn is_running(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "true")
        .unwrap_or(false)
}

/// Removes every container, network and volume labelled with `instance`.
pub fn remove_instance(instance: &str) {
    let filter = format!("label=io.pmesh.instance={instance}");
    for (list, remove) in [
        (vec!["ps", "-aq", "--filter", &filter], vec!["rm", "-f"]),
        (vec!["network", "ls", "-q", "--filter", &filter], vec!["network", "rm"]),
        (vec!["volume", "ls", "-q", "--filter", &filter], vec!["volume", "rm", "-f"]),
    ] {
        let ids =
            Command::new("docker").args(&list).output().map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(&remove).arg(id).output();
        }
    }
}

/// The ids of every container, network and volume labelled with `instance`.
pub fn instance_objects(instance: &str) -> Vec<String> {
    let filter = format!("label=io.pmesh.instance={instance}");
    [["ps", "-aq"], ["network", "ls"], ["volume", "ls"]]
        .iter()
        .flat_map(|list| docker(&[list[0], list[1], "-q", "--filter", &filter]).split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// A unique instance name for a test, removed from Docker when dropped.
pub struct Instance(pub String);

impl Instance {
    pub fn new(prefix: &str) -> Instance {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        Instance(format!("{prefix}-{}-{}", std::process::id() % 10_000, nanos % 100_000))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        remove_instance(&self.0);
    }
}

/// Runs `docker ARGS` and returns its output, whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker is missing: install the Docker engine and CLI")
}

/// The target-host image built by `tests/images/build.sh`: Debian with systemd, sshd, sudo,
/// iproute2 and iptables.
pub const HOST_IMAGE: &str = "pmesh-test/sshd:bookworm-1";

/// Fails with instructions when the host image is missing; never skips.
pub fn require_host_image() {
    assert!(
        docker_output(&["image", "inspect", HOST_IMAGE]).status.success(),
        "{HOST_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
    );
}

/// The flags that let systemd run as PID 1 in an unprivileged container.
pub const SYSTEMD_ARGS: &[&str] = &["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock"];

/// A Docker network, removed on drop; `gateway` is this machine's address on it.
pub struct Network {
    pub name: String,
    pub gateway: String,
}

impl Network {
    /// Creates the network `name` (replacing a leftover of that name).
    pub fn create(name: &str) -> Network {
        let _ = docker_output(&["network", "rm", name]);
        docker(&["network", "create", name]);
        let gateway = docker(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", name]);
        assert!(!gateway.is_empty(), "network {name} has no gateway address");
        Network { name: name.to_owned(), gateway }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker_output(&["network", "rm", &self.name]);
    }
}

/// A container of [`HOST_IMAGE`], removed on drop: a target host.
pub struct Host {
    pub name: String,
    /// Its address on its network; 127.0.0.1 on the host network.
    pub ip: String,
}

impl Host {
    /// Runs `docker run -d --name NAME ARGS HOST_IMAGE COMMAND`, replacing a leftover of that
    /// name; `args` choose the network, mounts and capabilities. With `systemd`, the
    /// [`SYSTEMD_ARGS`] are added and the host is returned once sshd runs under systemd.
    pub fn start(name: &str, args: &[&str], systemd: bool, command: &[&str]) -> Host {
        require_host_image();
        let _ = docker_output(&["rm", "-f", name]);
        let mut full = vec!["run", "-d", "--name", name];
        if systemd {
            full.extend_from_slice(SYSTEMD_ARGS);
        }
        full.extend_from_slice(args);
        full.push(HOST_IMAGE);
        full.extend_from_slice(command);
        docker(&full);
        let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name]);
        let ip = if ip.is_empty() { "127.0.0.1".to_owned() } else { ip };
        let host = Host { name: name.to_owned(), ip };
        if systemd {
            wait_until("sshd to run under systemd", Duration::from_secs(60), || host.sh("systemctl is-active ssh") == "active")
                .unwrap_or_else(|err| panic!("{err}: {}", host.sh("systemctl --failed --no-pager; journalctl -b --no-pager | tail -20")));
        }
        host
    }

    /// Runs a shell command inside; returns stdout (trimmed) whatever the exit status.
    pub fn sh(&self, script: &str) -> String {
        let output = docker_output(&["exec", &self.name, "sh", "-c", script]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs a shell command inside and asserts it succeeded.
    pub fn ok(&self, script: &str) -> String {
        let output = docker_output(&["exec", &self.name, "sh", "-c", script]);
        let said = || format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{script}: {}", said());
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Writes `content` to `path` inside (its directory created) with `mode`. The content
    /// travels on `docker exec`'s stdin, so a secret in it never shows in a process's arguments.
    pub fn write_file(&self, path: &str, mode: &str, content: &str) {
        let script = format!("mkdir -p \"$(dirname '{path}')\" && cat > '{path}' && chmod {mode} '{path}'");
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running docker exec");
        child.stdin.take().expect("stdin").write_all(content.as_bytes()).expect("writing to docker exec");
        let output = child.wait_with_output().expect("docker exec exits");
        assert!(output.status.success(), "writing {path}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Lets units in the container use the bind-mounted Docker socket: a `docker` group with
    /// the socket's group id (the agent's unit names the group, as on a real host).
    pub fn add_docker_group(&self) {
        let gid = std::fs::metadata("/var/run/docker.sock")
            .map(|meta| std::os::unix::fs::MetadataExt::gid(&meta))
            .expect("/var/run/docker.sock is missing: these tests need a running Docker engine");
        self.ok(&format!("groupadd -o -g {gid} docker"));
    }

    /// Generates a key pair of `kind` (an `ssh-keygen -t` type) for `user` inside, authorises
    /// it, and returns the private key file copied to `dir`.
    pub fn authorise_key_of_type(&self, user: &str, kind: &str, dir: &Path) -> PathBuf {
        let home = self.ok(&format!("getent passwd {user} | cut -d: -f6"));
        let file = format!("/tmp/key-{user}-{kind}");
        self.ok(&format!(
            "ssh-keygen -q -t {kind} -N '' -f {file} && install -d -m 700 -o {user} {home}/.ssh && \
             cat {file}.pub >> {home}/.ssh/authorized_keys && chown {user} {home}/.ssh/authorized_keys"
        ));
        let path = dir.join(format!("key-{user}-{kind}"));
        std::fs::write(&path, self.ok(&format!("cat {file}")) + "\n").expect("writing the key");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        path
    }

    /// An ed25519 key for `user`, as [`Host::authorise_key_of_type`] makes it.
    pub fn authorise_key(&self, user: &str, dir: &Path) -> PathBuf {
        self.authorise_key_of_type(user, "ed25519", dir)
    }

    /// The host's ed25519 key fingerprint, as `ssh-keygen -lf` prints it.
    pub fn host_key_fingerprint(&self) -> String {
        let line = self.ok("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
        line.split_whitespace().nth(1).expect("a fingerprint").to_owned()
    }

    /// The main process id of `unit`, as systemd reports it ("0" when it is not running).
    pub fn main_pid(&self, unit: &str) -> String {
        self.sh(&format!("systemctl show -p MainPID --value {unit}"))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// Starts `pmesh serve` for `mesh`, whose `ca init` listened on `address` (a Docker network's
/// gateway, say, so that containers reach it), and waits until it accepts connections.
///
/// # Errors
/// When it does not come up; the error carries its log.
pub fn start_master_on(mesh: &Mesh, address: &str) -> anyhow::Result<Daemon> {
    let data_dir = mesh.master_dir();
    let args = ["serve", "--check-interval", &mesh.check_interval, "--data-dir", data_dir.to_str().expect("utf-8 temp path")];
    let daemon = spawn(&crate::bin("pmesh"), &args, &mesh.dir.path().join("master.log"))?;
    if let Err(err) = wait_until("the master to listen", Duration::from_secs(20), || std::net::TcpStream::connect(address).is_ok()) {
        anyhow::bail!("{err}: {}", daemon.log_text());
    }
    Ok(daemon)
}
