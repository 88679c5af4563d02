//! The catalog's NFS pattern's server, run from the pattern's own files (its start and check
//! scripts, its templates rendered by pmesh's renderer) in the image built from Debian's
//! nfs-ganesha, with exactly the capabilities the pattern declares and nothing else: no
//! `--privileged`, Docker's default seccomp profile. Real clients in another container
//! (`rpcinfo`, `showmount`, libnfs's userspace `nfs-cp`) check it: a file written through the
//! export reads back identical over NFSv3 and NFSv4, and lands in the exports volume.
//!
//! The same server without any one of the declared capabilities fails to serve, which is
//! what makes the declared set the smallest one; those tests start the containers with
//! `docker run`, to take single capabilities away. The pattern itself runs through the real
//! mesh (master, agents, `[images.rewrite]` to the Debian-built image): an agent whose
//! `agent.toml` allows both capabilities serves the export, one that does not refuses the run
//! with exit 2, naming them, and creates nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pmesh_tests::docker::{docker, docker_output, instance_objects, Instance, Network};
use pmesh_tests::{free_port, wait_until, Mesh};

const NFS_IMAGE: &str = "pmesh-test/nfs:bookworm-1";

fn pattern() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patterns/shared/nfs")
}

/// The capabilities the pattern's `ganesha` step declares.
fn declared_capabilities() -> Vec<String> {
    let yaml = std::fs::read_to_string(pattern().join("pattern.yaml")).expect("pattern.yaml");
    let line = yaml.lines().find_map(|line| line.trim().strip_prefix("capabilities: [")).expect("the ganesha step declares capabilities");
    line.trim_end_matches(']').split(',').map(|name| name.trim().to_owned()).collect()
}

/// A container and its exports volume, removed on drop.
struct Server {
    name: String,
    volume: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
        let _ = docker_output(&["volume", "rm", "-f", &self.volume]);
    }
}

struct Lab {
    dir: tempfile::TempDir,
    network: Network,
}

impl Lab {
    fn new() -> Lab {
        assert!(
            docker_output(&["image", "inspect", NFS_IMAGE]).status.success(),
            "{NFS_IMAGE} is missing: build it with tests/images/build.sh (tests/run.sh does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let values = "exports: [datastore, iso]\nclients: [\"*\"]\nversions: [\"3\", \"4.0\", \"4.1\"]\n";
        let params = pmesh_proto::pattern::values_from_yaml("values", values).expect("values");
        let params = pmesh_proto::pattern::Params::from_values(params);
        for name in ["ganesha.conf", "exports.txt", "versions.txt"] {
            let template = std::fs::read_to_string(pattern().join(format!("templates/{name}.j2"))).expect("template");
            let text = pmesh_proto::pattern::render(&template, &params).expect("the template renders");
            std::fs::write(dir.path().join(name), text).expect("rendered file");
        }
        let network = Network::create(&format!("nfs-test-{}-{}", std::process::id(), rand::random::<u16>()));
        Lab { dir, network }
    }

    /// Starts the pattern's `ganesha` container with `capabilities` added.
    fn server(&self, label: &str, capabilities: &[String]) -> Server {
        let name = format!("{}-{label}", self.network.name);
        let server = Server { name: name.clone(), volume: format!("{name}-exports") };
        let mut args = vec!["run".to_owned(), "-d".into(), "--name".into(), name, "--network".into(), self.network.name.clone()];
        args.extend(capabilities.iter().flat_map(|capability| ["--cap-add".to_owned(), capability.clone()]));
        let mounts: BTreeMap<PathBuf, &str> = BTreeMap::from([
            (pattern().join("scripts/start-ganesha.sh"), "/pmesh/start-ganesha.sh"),
            (pattern().join("scripts/check.sh"), "/pmesh/check.sh"),
            (self.dir.path().join("ganesha.conf"), "/etc/ganesha/pmesh.conf"),
            (self.dir.path().join("exports.txt"), "/pmesh/exports.txt"),
            (self.dir.path().join("versions.txt"), "/pmesh/versions.txt"),
        ]);
        for (source, target) in mounts {
            args.extend(["-v".to_owned(), format!("{}:{target}:ro", source.display())]);
        }
        args.extend([
            "-v".to_owned(),
            format!("{}:/exports", server.volume),
            NFS_IMAGE.into(),
            "sh".into(),
            "/pmesh/start-ganesha.sh".into(),
        ]);
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        wait_until("ganesha to start", Duration::from_secs(30), || self.log(&server).contains("NFS SERVER INITIALIZED"))
            .unwrap_or_else(|err| panic!("{err}: {}", self.log(&server)));
        server
    }

    fn log(&self, server: &Server) -> String {
        let output = docker_output(&["logs", &server.name]);
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    }

    /// Runs `script` in a client container on the lab's network, with the lab's directory at
    /// /lab; returns (success, output).
    fn client(&self, script: &str) -> (bool, String) {
        client_on(&self.network.name, self.dir.path(), script)
    }

    /// Writes a random MiB through `url` with nfs-cp, reads it back through `url` into another
    /// file; whether both copies succeeded and the bytes are identical.
    fn round_trip(&self, url: &str) -> (bool, String) {
        self.copy(url, url, 1 << 20)
    }

    /// Writes `size` random bytes through `write_url`, reads them back through `read_url`.
    fn copy(&self, write_url: &str, read_url: &str, size: usize) -> (bool, String) {
        copy_on(&self.network.name, self.dir.path(), write_url, read_url, size)
    }
}

/// Runs `script` in a client container on `network`, with `dir` at /lab; (success, output).
fn client_on(network: &str, dir: &Path, script: &str) -> (bool, String) {
    let mount = format!("{}:/lab", dir.display());
    let output = docker_output(&["run", "--rm", "--network", network, "-v", &mount, NFS_IMAGE, "sh", "-c", script]);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Writes `size` random bytes through `write_url` with nfs-cp from a client on `network`,
/// reads them back through `read_url`; whether both copies succeeded and the bytes match.
fn copy_on(network: &str, dir: &Path, write_url: &str, read_url: &str, size: usize) -> (bool, String) {
    let bytes: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
    std::fs::write(dir.join("sent"), &bytes).expect("sent");
    let _ = std::fs::remove_file(dir.join("received"));
    let (copied, said) = client_on(network, dir, &format!("nfs-cp /lab/sent '{write_url}' && nfs-cp '{read_url}' /lab/received"));
    let received = std::fs::read(dir.join("received")).unwrap_or_default();
    (copied && received == bytes, said)
}

#[test]
fn the_nfs_server_serves_v3_and_v4_with_the_declared_capabilities_only() {
    let lab = Lab::new();
    let capabilities = declared_capabilities();
    assert_eq!(capabilities, ["DAC_READ_SEARCH", "SYS_ADMIN"]);
    let server = lab.server("full", &capabilities);
    // The pattern's healthcheck passes.
    wait_until("the healthcheck to pass", Duration::from_secs(30), || {
        docker_output(&["exec", &server.name, "sh", "/pmesh/check.sh"]).status.success()
    })
    .unwrap_or_else(|err| panic!("{err}: {}", lab.log(&server)));

    let (answered, rpcinfo) = lab.client(&format!("rpcinfo -p {}", server.name));
    assert!(answered, "{rpcinfo}");
    for (program, version, port) in [("100003", "3", "2049"), ("100003", "4", "2049"), ("100005", "3", "20048")] {
        let registered = rpcinfo.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 5 && fields[0] == program && fields[1] == version && fields[2] == "tcp" && fields[3] == port
        });
        assert!(registered, "program {program} version {version} on tcp {port}: {rpcinfo}");
    }
    let (listed, exports) = lab.client(&format!("showmount -e {}", server.name));
    assert!(listed, "{exports}");
    for export in ["/exports/datastore", "/exports/iso"] {
        assert!(exports.lines().any(|line| line.split_whitespace().eq([export, "*"])), "{export} in {exports}");
    }

    let (v3, said) = lab.round_trip(&format!("nfs://{}/exports/datastore/v3.bin?version=3", server.name));
    assert!(v3, "NFSv3 round trip: {said}");
    // NFSv4 (4.0: libnfs's version) reads a MiB written over NFSv3 through the pseudo path,
    // and writes a small file. (libnfs 5.0.2's NFSv4 writes of more than a few KiB fail
    // against this server; see the README.)
    let (v4_read, said) = lab.copy(
        &format!("nfs://{}/exports/iso/v3.bin?version=3", server.name),
        &format!("nfs://{}/iso/v3.bin?version=4", server.name),
        1 << 20,
    );
    assert!(v4_read, "NFSv4 read: {said}");
    let v4_url = format!("nfs://{}/iso/v4.bin?version=4", server.name);
    let (v4_write, said) = lab.copy(&v4_url, &v4_url, 1000);
    assert!(v4_write, "NFSv4 round trip: {said}");
    // The bytes are in the exports volume, written as root stays root (no_root_squash).
    let mount = format!("{}:/exports", server.volume);
    let stored =
        docker(&["run", "--rm", "-v", &mount, NFS_IMAGE, "stat", "-c", "%u %s", "/exports/datastore/v3.bin", "/exports/iso/v3.bin"]);
    assert_eq!(stored, "0 1048576\n0 1048576");
}

#[test]
fn without_either_declared_capability_the_server_cannot_serve_the_export() {
    let lab = Lab::new();
    let capabilities = declared_capabilities();
    let mut servers = Vec::new();
    for (label, kept) in
        [("none", Vec::new()), ("no-sys-admin", vec!["DAC_READ_SEARCH".to_owned()]), ("no-dac", vec!["SYS_ADMIN".to_owned()])]
    {
        assert!(kept.iter().all(|capability| capabilities.contains(capability)));
        let server = lab.server(label, &kept);
        let (served, said) = lab.round_trip(&format!("nfs://{}/exports/datastore/f.bin?version=3", server.name));
        assert!(!served, "{label}: a write through the export succeeded: {said}");
        servers.push((label, server, said));
    }
    // Without SYS_ADMIN, Docker's seccomp profile refuses name_to_handle_at and the export
    // never comes up; without DAC_READ_SEARCH, the kernel refuses open_by_handle_at.
    for (label, server, said) in &servers[..2] {
        assert!(lab.log(server).contains("Could not get handle for path /exports/datastore"), "{label}: {}", lab.log(server));
        assert!(said.contains("MNT3ERR_ACCES"), "{label}: {said}");
        assert!(!docker_output(&["exec", &server.name, "sh", "/pmesh/check.sh"]).status.success(), "{label}: the healthcheck fails");
    }
    let (_, _, said) = &servers[2];
    assert!(said.contains("NFS3ERR_PERM"), "no-dac: {said}");
}

#[test]
fn the_nfs_pattern_runs_through_an_agent_that_allows_its_capabilities_only() -> anyhow::Result<()> {
    assert!(docker_output(&["image", "inspect", NFS_IMAGE]).status.success(), "{NFS_IMAGE} is missing: run tests/images/build.sh");
    let mesh = Mesh::init()?;
    let _master = mesh.start_master()?;
    let rewrite = format!("[images.rewrite]\n\"ghcr.io/kubernetes-sigs/nfs-ganesha:V4.0.8\" = \"{NFS_IMAGE}\"\n");
    mesh.enrol("pc-1", &[])?;
    std::fs::write(mesh.agent_dir("pc-1").join("agent.toml"), &rewrite)?;
    mesh.enrol("pc-2", &[])?;
    let allowed = format!("{rewrite}[security]\nallow_capabilities = [\"DAC_READ_SEARCH\", \"SYS_ADMIN\"]\n");
    std::fs::write(mesh.agent_dir("pc-2").join("agent.toml"), allowed)?;
    let _agents = [mesh.start_agent("pc-1", &[])?, mesh.start_agent("pc-2", &[])?];
    let push = mesh.pmesh(&["pattern", "push", pattern().to_str().expect("utf-8")]);
    anyhow::ensure!(push.code == 0, "push failed: {}", push.stderr);
    let instance = Instance::new("nfs");
    let ports = [("nfs_port", free_port()), ("mount_port", free_port()), ("rpcbind_port", free_port())];
    let run = |agent: &str, plan: bool| {
        let mut args = vec!["run".to_owned(), "nfs".into(), "--on".into(), agent.into(), "--instance".into(), instance.0.clone()];
        args.extend(ports.iter().flat_map(|(name, port)| ["-p".to_owned(), format!("{name}={port}")]));
        if plan {
            args.push("--plan".into());
        }
        mesh.pmesh(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Not allowed: refused with exit 2 at --plan and at start, naming both; nothing created.
    for plan in [true, false] {
        let refused = run("pc-1", plan);
        assert_eq!(refused.code, 2, "plan {plan}: {}\n{}", refused.stdout, refused.stderr);
        let said = format!("{}{}", refused.stdout, refused.stderr);
        for capability in ["DAC_READ_SEARCH", "SYS_ADMIN"] {
            let message = format!("step \"ganesha\" needs capability {capability}, which this agent does not allow; add it to [security] allow_capabilities in agent.toml");
            assert!(said.contains(&message), "plan {plan}: {said}");
        }
    }
    assert_eq!(instance_objects(&instance.0), Vec::<String>::new(), "a refused run creates nothing");
    assert!(!mesh.agent_dir("pc-1").join("instances").join(&instance.0).exists(), "no file was rendered");

    // Allowed: the run succeeds, and real clients on the instance's network use the export.
    let served = run("pc-2", false);
    assert_eq!(served.code, 0, "{}\n{}", served.stdout, served.stderr);
    let (network, server) = (format!("pmesh-pc-2-{}", instance.0), format!("pmesh-pc-2-{}-ganesha", instance.0));
    assert_eq!(
        docker(&["inspect", "-f", "{{json .HostConfig.CapAdd}} {{.HostConfig.Privileged}}", &server]),
        "[\"DAC_READ_SEARCH\",\"SYS_ADMIN\"] false"
    );
    let dir = tempfile::tempdir()?;
    let (answered, rpcinfo) = client_on(&network, dir.path(), &format!("rpcinfo -p {server}"));
    assert!(answered && rpcinfo.lines().any(|line| line.split_whitespace().take(3).eq(["100003", "3", "tcp"])), "{rpcinfo}");
    let (listed, exports) = client_on(&network, dir.path(), &format!("showmount -e {server}"));
    assert!(listed && exports.lines().any(|line| line.split_whitespace().eq(["/exports/datastore", "*"])), "{exports}");
    let url = format!("nfs://{server}/exports/datastore/through-the-agent.bin?version=3");
    let (copied, said) = copy_on(&network, dir.path(), &url, &url, 1 << 20);
    assert!(copied, "NFSv3 round trip through the agent's server: {said}");
    Ok(())
}
