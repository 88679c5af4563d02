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
    master: Daemon,
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
        Ok(Lab { mesh, master, _agents: agents })
    }

    /// Stops the master (SIGKILL), so that the CLI finds nothing at its address.
    pub fn stop_master(&mut self) {
        self.master.kill();
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

/// What a terminal `cols` columns wide shows after `command` (a shell command line) ran in it,
/// as tmux renders it: the screen's lines as text, the same with their colour escapes, and
/// the command's exit code.
///
/// # Panics
/// When tmux is missing (`apt-get install tmux`) or the command does not end within a minute.
pub fn on_terminal(command: &str, cols: u16) -> (String, String, i32) {
    let socket = format!("pmesh-test-{}-{}", std::process::id(), pmesh_tests::free_port());
    let tmux = |args: &[&str]| {
        let output = Command::new("tmux").arg("-L").arg(&socket).args(args).output().expect("tmux runs (apt-get install tmux)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let script = format!("{command}; echo pmesh-exit=$?; sleep 600");
    tmux(&["new-session", "-d", "-x", &cols.to_string(), "-y", "60", "env", "TERM=xterm-256color", "sh", "-c", &script]);
    // -J joins lines the terminal wrapped, so a line the CLI printed too long shows as one.
    let screen = |escapes: bool| {
        let mut args = vec!["capture-pane", "-p", "-J", "-S", "-200"];
        args.extend(escapes.then_some("-e"));
        tmux(&args)
    };
    let finished = pmesh_tests::wait_until("the command to end on the terminal", std::time::Duration::from_secs(60), || {
        screen(false).contains("pmesh-exit=")
    });
    let (text, escaped) = (screen(false), screen(true));
    tmux(&["kill-server"]);
    finished.unwrap_or_else(|err| panic!("{err}: {text}"));
    let code = text.split("pmesh-exit=").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|code| code.parse().ok());
    (text, escaped, code.unwrap_or(-1))
}
