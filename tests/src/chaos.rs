//! A mesh built for fault injection: a master and agents where every link between them runs
//! through a [`Proxy`] the test controls (master → agent at the agent's advertised address,
//! agent → master at the master address the agent joined with), so any agent can be
//! partitioned in both directions, and any daemon can be SIGKILLed and started again on the
//! same ports and data directory.
//!
//! It holds no schedule of its own: the chaos suite (tests/tests/chaos) decides what fails and
//! when; this module only makes each fault one call, and each restart wait for the daemon to
//! listen again (with a deadline, through [`Mesh::start_master`] and
//! [`Mesh::start_agent_listening`]).

use anyhow::Context;

use crate::proxy::Proxy;
use crate::{free_port, Daemon, Mesh};

/// One agent of a [`ChaosMesh`]: its name, the port it really listens on, the proxies in front
/// of it both ways, and its process while it runs.
pub struct ChaosAgent {
    pub name: String,
    /// The loopback address the agent listens on; the master only knows the proxy's.
    pub listen: String,
    /// Master → agent.
    pub inbound: Proxy,
    /// Agent → master.
    pub outbound: Proxy,
    pub daemon: Option<Daemon>,
}

/// A master and agents, every link through a proxy. The daemons are declared first so they
/// are killed before the mesh's directory is removed.
pub struct ChaosMesh {
    pub agents: Vec<ChaosAgent>,
    pub master: Option<Daemon>,
    pub mesh: Mesh,
}

impl ChaosMesh {
    /// Creates the CA, starts the master, and enrols and starts `n_agents` agents named
    /// `pc-1`…, each with `token_args` (labels, say), each behind its two proxies.
    ///
    /// # Errors
    /// When a step of the set-up fails; the error carries the daemon's log where there is one.
    pub fn start(n_agents: usize, token_args: &[&str]) -> anyhow::Result<ChaosMesh> {
        let mesh = Mesh::init()?;
        let master = mesh.start_master()?;
        let master_address = mesh.master_address().parse().context("the master's address")?;
        let mut agents = Vec::with_capacity(n_agents);
        for agent_idx in 1..=n_agents {
            let name = format!("pc-{agent_idx}");
            let listen = format!("127.0.0.1:{}", free_port());
            let inbound = Proxy::start(listen.parse().context("the agent's address")?);
            let outbound = Proxy::start(master_address);
            mesh.enrol_through(&name, &format!("127.0.0.1:{}", outbound.port), &format!("127.0.0.1:{}", inbound.port), token_args)?;
            let daemon = mesh.start_agent_listening(&name, &listen)?;
            agents.push(ChaosAgent { name, listen, inbound, outbound, daemon: Some(daemon) });
        }
        Ok(ChaosMesh { agents, master: Some(master), mesh })
    }

    /// SIGKILLs the master (nothing when it is down already).
    pub fn kill_master(&mut self) {
        if let Some(mut master) = self.master.take() {
            master.kill();
        }
    }

    /// Starts the master again if it is down, and waits until it listens.
    ///
    /// # Errors
    /// When it does not come up.
    pub fn restart_master(&mut self) -> anyhow::Result<()> {
        if self.master.is_none() {
            self.master = Some(self.mesh.start_master()?);
        }
        Ok(())
    }

    /// SIGKILLs agent `agent_idx` (nothing when it is down already).
    pub fn kill_agent(&mut self, agent_idx: usize) {
        if let Some(mut daemon) = self.agents[agent_idx].daemon.take() {
            daemon.kill();
        }
    }

    /// Starts agent `agent_idx` again if it is down, and waits until it listens.
    ///
    /// # Errors
    /// When it does not come up.
    pub fn restart_agent(&mut self, agent_idx: usize) -> anyhow::Result<()> {
        let agent = &mut self.agents[agent_idx];
        if agent.daemon.is_none() {
            agent.daemon = Some(self.mesh.start_agent_listening(&agent.name, &agent.listen)?);
        }
        Ok(())
    }

    /// Cuts both links of agent `agent_idx`: open connections drop, new ones are refused.
    pub fn partition(&self, agent_idx: usize) {
        self.agents[agent_idx].inbound.cut();
        self.agents[agent_idx].outbound.cut();
    }

    /// Heals both links of agent `agent_idx`.
    pub fn heal(&self, agent_idx: usize) {
        self.agents[agent_idx].inbound.restore();
        self.agents[agent_idx].outbound.restore();
    }

    /// Copies every daemon's log into `dest` (created), for reading after a failed run.
    ///
    /// # Errors
    /// When a copy fails.
    pub fn save_logs(&self, dest: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dest)?;
        for entry in std::fs::read_dir(self.mesh.dir.path())?.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "log") {
                std::fs::copy(&path, dest.join(entry.file_name())).with_context(|| format!("copying {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// A small tmpfs mounted (as root) over a directory, unmounted when dropped: a disk the test
/// can fill.
pub struct Tmpfs {
    pub path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (such as `32m`) on `path`, created if missing.
    ///
    /// # Errors
    /// When `mount` fails (the tests run as root; the message says so).
    pub fn mount(path: &std::path::Path, size: &str) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .context("running mount")?;
        anyhow::ensure!(
            mounted.status.success(),
            "mounting a tmpfs on {} failed (the full-disk tests need root): {}",
            path.display(),
            String::from_utf8_lossy(&mounted.stderr)
        );
        Ok(Tmpfs { path: path.to_path_buf() })
    }

    /// Mounts a tmpfs of `size` on the existing directory `path`, keeping what it holds: the
    /// contents move onto the new file system (a master's data directory after `ca init`).
    ///
    /// # Errors
    /// When moving the contents or mounting fails.
    pub fn mount_keeping(path: &std::path::Path, size: &str) -> anyhow::Result<Tmpfs> {
        let aside = path.with_extension("before-tmpfs");
        std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
        let tmpfs = Tmpfs::mount(path, size)?;
        let copied = std::process::Command::new("cp").arg("-a").arg(aside.join(".")).arg(path).output().context("running cp")?;
        anyhow::ensure!(copied.status.success(), "copying {} onto the tmpfs: {}", aside.display(), String::from_utf8_lossy(&copied.stderr));
        std::fs::remove_dir_all(&aside)?;
        Ok(tmpfs)
    }

    /// Fills the file system with `fill`, writing until it is full; returns the file.
    ///
    /// # Errors
    /// When a write fails for another reason than a full disk.
    pub fn fill(&self) -> anyhow::Result<std::path::PathBuf> {
        use std::io::Write;
        let path = self.path.join("fill");
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(28) => break,
                Err(err) => return Err(err).context("filling the tmpfs"),
            }
        }
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a daemon killed a moment ago may still hold a file open.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).output();
    }
}
