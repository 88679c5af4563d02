//! What the bootstrap tests share: the target hosts (containers with systemd and sshd), the
//! lab (a master the hosts reach, and one host), running `pmesh bootstrap`, and what a
//! bootstrap leaves on a host.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use pmesh_tests::docker::{start_master_on, Host, Network};
use pmesh_tests::{bin, Daemon, Mesh, Run};

pub fn unique(tag: &str) -> String {
    format!("pmesh-bs-{tag}-{}", std::process::id())
}

/// A host with systemd and sshd on `network`, the Docker socket at its usual path: the normal
/// target.
pub fn systemd_host(tag: &str, network: &Network) -> Host {
    let args = ["--hostname", tag, "--network", &network.name, "-v", "/var/run/docker.sock:/var/run/docker.sock"];
    Host::start(&unique(tag), &args, true, &["/lib/systemd/systemd"])
}

/// What a bootstrap would have left behind on `host`, if anything.
pub fn traces(host: &Host) -> String {
    host.sh("for path in /usr/local/bin/pmesh-agent /etc/systemd/system/pmesh-agent.service /usr/lib/sysusers.d/pmesh.conf \
         /etc/pmesh /var/lib/pmesh-agent; do [ -e $path ] && echo $path; done; \
         getent passwd pmesh-agent; ls /var/tmp | grep pmesh; true")
}

pub fn agent_pid(host: &Host) -> String {
    host.main_pid("pmesh-agent")
}

/// A mesh whose master the containers reach, and one target host.
pub struct Lab {
    // Dropped in this order: the host, then the master, then the network, then the files.
    pub host: Host,
    pub master: Daemon,
    _network: Option<Network>,
    pub mesh: Mesh,
}

impl Lab {
    /// A master on the gateway of a new network, and the host `start_host` starts on it.
    pub fn new(tag: &str, start_host: impl FnOnce(&Network) -> Host) -> Lab {
        let network = Network::create(&unique(tag));
        let (mesh, master) = Lab::master(&network.gateway);
        let host = start_host(&network);
        Lab { host, master, _network: Some(network), mesh }
    }

    /// A master on 127.0.0.1, for a host that shares this machine's network namespace.
    pub fn on_host_network(start_host: impl FnOnce() -> Host) -> Lab {
        let (mesh, master) = Lab::master("127.0.0.1");
        let host = start_host();
        Lab { host, master, _network: None, mesh }
    }

    /// A new mesh whose master listens on `ip`.
    pub fn master(ip: &str) -> (Mesh, Daemon) {
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

    pub fn dir(&self) -> &Path {
        self.mesh.dir.path()
    }

    /// Runs `pmesh bootstrap TARGET ARGS`, with `stdin` on its stdin.
    pub fn bootstrap(&self, target: &str, args: &[&str], stdin: &str) -> Run {
        let mut child = self.bootstrap_command(target, args).spawn().expect("running pmesh");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("pmesh exits").into()
    }

    pub fn bootstrap_command(&self, target: &str, args: &[&str]) -> Command {
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
    pub fn listed(&self, name: &str) -> Option<serde_json::Value> {
        self.mesh.agents().expect("agents ls").into_iter().find(|agent| agent["name"] == name)
    }
}

pub fn assert_success(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what} failed\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

pub fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}
