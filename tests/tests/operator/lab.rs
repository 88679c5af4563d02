//! The mesh these tests share: a master and named agents, running, with the test patterns
//! pushed, and `pmesh` run with its output wherever a test wants it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use pmesh_tests::docker::require_tools_image;
use pmesh_tests::{bin, Daemon, Mesh, Run};

/// A test pattern of `tests/patterns`.
pub fn pattern(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/patterns/").to_owned() + name
}

/// A running mesh; its processes stop when it drops.
pub struct Lab {
    pub mesh: Mesh,
    _master: Daemon,
    _agents: Vec<Daemon>,
}

impl Lab {
    /// A master and `names` agents, running, with `patterns` pushed.
    pub fn start(names: &[&str], patterns: &[&str]) -> anyhow::Result<Lab> {
        require_tools_image();
        let mesh = Mesh::init()?;
        let master = mesh.start_master()?;
        let mut agents = Vec::new();
        for name in names {
            mesh.enrol(name, &["--label", "site=lab"])?;
            agents.push(mesh.start_agent(name, &[])?);
        }
        for name in patterns {
            let push = mesh.pmesh(&["pattern", "push", &pattern(name)]);
            anyhow::ensure!(push.code == 0, "push {name} failed: {}", push.stderr);
        }
        Ok(Lab { mesh, _master: master, _agents: agents })
    }

    /// `pmesh --data-dir MASTER ARGS`, with stdout going to `stdout`.
    pub fn pmesh_into(&self, args: &[&str], stdout: Stdio) -> Run {
        pmesh_into(Some(self.mesh.master_dir()), args, stdout)
    }
}

/// `pmesh [--data-dir DIR] ARGS` with stdout going to `stdout`, stderr captured.
pub fn pmesh_into(data_dir: Option<PathBuf>, args: &[&str], stdout: Stdio) -> Run {
    let mut command = Command::new(bin("pmesh"));
    if let Some(dir) = data_dir {
        command.arg("--data-dir").arg(dir);
    }
    command
        .args(args)
        .env_remove("PMESH_HOME")
        .env_remove("PMESH_CREDENTIALS")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("running pmesh")
        .into()
}
