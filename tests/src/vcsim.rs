//! vcsim, the govmomi vCenter simulator, for the vSphere patterns' tests: one container per
//! test on a Docker network of the test's own, removed (with the network) when its handle
//! drops; and govc run against it from a container of the same network, for checks made from
//! outside pmesh.
//!
//! Both images come from `tests/images/build.sh` (built from Debian's govmomi source). Every
//! simulator has its own login password and its own certificate, so a test can pin the
//! thumbprint it printed and look for the password where it must not be. The password reaches
//! `docker` only through the environment (`-e NAME` without a value), never a command line.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context;

use crate::docker::{docker, docker_output, Network};
use crate::wait_until;

/// The simulator's image: `vcsim -l 0.0.0.0:443`, a VPX model with one cluster of three hosts.
pub const VCSIM_IMAGE: &str = "pmesh-test/vcsim:0.24.2-1";
/// govc (the subset pmesh's patterns use) with busybox's sh, for patterns and checks.
pub const GOVC_IMAGE: &str = "pmesh-test/govc:0.24.2-1";
/// The simulator's name on its network: patterns reach it as `https://vcsim/sdk`.
pub const VCSIM_HOST: &str = "vcsim";
/// The simulator's login user.
pub const VCSIM_USER: &str = "administrator@vsphere.local";

/// Fails with instructions when the images are missing; never skips.
pub fn require_images() {
    for image in [VCSIM_IMAGE, GOVC_IMAGE] {
        assert!(
            docker_output(&["image", "inspect", image]).status.success(),
            "{image} is missing: build it with tests/images/build.sh (tests/run.sh does)"
        );
    }
}

/// A running simulator; the container and its network are removed on drop.
pub struct Vcsim {
    pub container: String,
    pub network: Network,
    /// The login password, made for this simulator.
    pub password: String,
    /// The SHA-1 thumbprint of its certificate, `AA:BB:…`, as vSphere shows it.
    pub thumbprint: String,
    /// A directory holding `known_hosts` for the checks' govc.
    pin_dir: tempfile::TempDir,
}

impl Vcsim {
    /// Starts a simulator on the Docker network `network` (created here, and removed on drop),
    /// reachable there as [`VCSIM_HOST`]. A pattern's containers reach it when `network` is
    /// the instance's own network name (`pmesh-AGENT-INSTANCE`), which the agent then uses as
    /// it finds it.
    ///
    /// # Errors
    /// When the container does not start or never prints its thumbprint.
    pub fn start(network: &str) -> anyhow::Result<Vcsim> {
        require_images();
        let network = Network::create(network);
        let container = format!("pmt-vcsim-{}", network.name);
        let password = format!("pw-{:016x}", rand_u64());
        let _ = docker_output(&["rm", "-f", &container]);
        let started = Command::new("docker")
            .args(["run", "-d", "--name", &container, "--network", &network.name, "--network-alias", VCSIM_HOST])
            .args(["-e", "VCSIM_PASSWORD", VCSIM_IMAGE, "-l", "0.0.0.0:443", "-username", VCSIM_USER])
            .env("VCSIM_PASSWORD", &password)
            .output()
            .context("starting vcsim")?;
        anyhow::ensure!(started.status.success(), "docker run vcsim: {}", String::from_utf8_lossy(&started.stderr));
        let mut thumbprint = String::new();
        wait_until("vcsim prints its thumbprint", Duration::from_secs(60), || {
            let logs = docker_output(&["logs", &container]);
            let text = String::from_utf8_lossy(&logs.stdout);
            match text.lines().find_map(|line| line.split_once(" thumbprint ")) {
                Some((_, print)) => {
                    thumbprint = print.trim().to_owned();
                    true
                }
                None => false,
            }
        })?;
        let pin_dir = tempfile::tempdir()?;
        std::fs::write(pin_dir.path().join("known_hosts"), format!("{VCSIM_HOST} {thumbprint}\n"))?;
        Ok(Vcsim { container, network, password, thumbprint, pin_dir })
    }

    /// The URL patterns give as their `url`.
    pub fn url(&self) -> String {
        format!("https://{VCSIM_HOST}/sdk")
    }

    /// Runs `govc ARGS` against the simulator from a container on its network, pinned to its
    /// thumbprint; `mounts` are `-v` specifications (the stub OVA, an options file).
    pub fn govc_with(&self, mounts: &[String], args: &[&str]) -> Output {
        let pin = format!("{}:/pin:ro", self.pin_dir.path().display());
        let mut command = Command::new("docker");
        command.args(["run", "--rm", "--network", &self.network.name, "-v", &pin]);
        for mount in mounts {
            command.args(["-v", mount]);
        }
        command
            .args(["-e", "GOVC_URL", "-e", "GOVC_USERNAME", "-e", "GOVC_PASSWORD", "-e", "GOVC_TLS_KNOWN_HOSTS", GOVC_IMAGE, "govc"])
            .args(args)
            .env("GOVC_URL", self.url())
            .env("GOVC_USERNAME", VCSIM_USER)
            .env("GOVC_PASSWORD", &self.password)
            .env("GOVC_TLS_KNOWN_HOSTS", "/pin/known_hosts");
        command.output().expect("running docker")
    }

    /// `govc ARGS`; its stdout, or a panic with its stderr.
    pub fn govc(&self, args: &[&str]) -> String {
        let output = self.govc_with(&[], args);
        assert!(output.status.success(), "govc {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The inventory paths of the VMs whose names match `glob`, sorted.
    pub fn vms(&self, glob: &str) -> Vec<String> {
        self.govc(&["find", "/", "-type", "m", "-name", glob]).lines().map(str::to_owned).collect()
    }

    /// `govc vm.info -json NAME`: the VM's managed object (Config, Runtime, Guest).
    pub fn vm_json(&self, name: &str) -> serde_json::Value {
        let text = self.govc(&["vm.info", "-json", name]);
        let mut info: serde_json::Value = serde_json::from_str(&text).expect("vm.info -json prints JSON");
        info["VirtualMachines"][0].take()
    }

    /// The VM's ExtraConfig as (key, value) pairs (vcsim 0.24 keeps the OVF properties of an
    /// import there: its vApp config stays empty).
    pub fn extra_config(&self, name: &str) -> Vec<(String, String)> {
        let vm = self.vm_json(name);
        vm["Config"]["ExtraConfig"]
            .as_array()
            .map(|options| {
                options
                    .iter()
                    .map(|option| (option["Key"].as_str().unwrap_or("").to_owned(), option["Value"].as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The simulator's own log, for failure messages.
    pub fn logs(&self) -> String {
        docker(&["logs", "--tail", "50", &self.container])
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.container]);
        // The network is removed after, when `self.network` drops.
    }
}

/// A stub of the nested ESXi OVA: an OVF with a real ProductSection (the nested ESXi
/// appliance's `guestinfo.*` properties), 2 vCPU, 4 GiB, one network and one empty disk (vcsim
/// hashes the uploaded bytes and keeps none). Written to `dir/nested-esxi.ova`.
///
/// # Errors
/// When the file cannot be written.
pub fn stub_ova(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let ovf = include_str!("vcsim/nested-esxi.ovf");
    let mut tar = Vec::new();
    for (name, contents) in [("nested-esxi.ovf", ovf.as_bytes()), ("disk1.vmdk", &b""[..])] {
        tar.extend(tar_header(name, contents.len()));
        tar.extend_from_slice(contents);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let path = dir.join("nested-esxi.ova");
    std::fs::write(&path, tar)?;
    Ok(path)
}

/// A ustar header for a regular file.
fn tar_header(name: &str, size: usize) -> [u8; 512] {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|byte| u32::from(*byte)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    header
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    hasher.finish()
}
